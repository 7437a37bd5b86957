// The metrics page's charts: uPlot (static/vendor, v1.6.32) drawing each panel of the page's JSON,
// at every refresh of live.js (the "live:data" event; data-live-eager asks for the first one at
// once). An element <div data-chart="ID"> draws data.panels[ID]: {x: [bucket start, s], series:
// [{label, values: [number|null], breaks: [index]}], unit}. Series on one panel share x; a null
// where a series merely missed a bucket is spanned, a null listed in breaks is a gap.
//
// Under the page's Content-Security-Policy: this file and uPlot are scripts of this site; uPlot
// builds its DOM with createElement and textContent (labels are the server's neutralised text),
// and sizes and colours elements through element.style (CSSOM, which style-src does not govern,
// unlike a style attribute in markup); it writes no HTML string anywhere, so Trusted Types
// (require-trusted-types-for 'script') need no policy. Neither does this file.
(function () {
  "use strict";

  var HEIGHT = 220;
  // The time axis in 24-hour time, a date where the day changes (and the year where it does),
  // days and months as dates: uPlot's table of tick formats (its axes "values" option, in
  // fmtDate templates): [the smallest tick step it applies to (s), the label, then the labels
  // when the year, month, day, hour, minute or second rolls over (null: the same), and 1: the
  // roll-over label is added under the label]. The legend's time: the pages' own format.
  var DAY = 86400;
  var TIME_TICKS = [
    // step      label             year                   month day              hour  min   sec   mode
    [365 * DAY, "{YYYY}",         null,                  null, null,            null, null, null, 1],
    [28 * DAY,  "{MMM}",          "\n{YYYY}",            null, null,            null, null, null, 1],
    [DAY,       "{DD} {MMM}",     "\n{YYYY}",            null, null,            null, null, null, 1],
    [3600,      "{HH}:{mm}",      "\n{DD} {MMM} {YYYY}", null, "\n{DD} {MMM}",  null, null, null, 1],
    [60,        "{HH}:{mm}",      "\n{DD} {MMM} {YYYY}", null, "\n{DD} {MMM}",  null, null, null, 1],
    [1,         "{HH}:{mm}:{ss}", "\n{DD} {MMM} {YYYY}", null, "\n{DD} {MMM}",  null, null, null, 1]
  ];
  var LEGEND_TIME = "{YYYY}-{MM}-{DD} {HH}:{mm}";
  var TICK_SPACE = 80;          // CSS px at least between two time labels ("23:45", "06 Dec")
  var charts = {};      // chart id -> {plot, labels, unit}
  var last = null;      // the last JSON, to redraw on a theme change or a resize

  function css(name, fallback) {
    var value = window.getComputedStyle(document.documentElement).getPropertyValue(name);
    return (value && value.trim()) || fallback;
  }

  function palette() {
    var colours = [];
    for (var i = 1; i <= 8; i++) colours.push(css("--chart-" + i, "#2d6cdf"));
    return colours;
  }

  function number(value) {
    if (value === null || value === undefined || !isFinite(value)) return "--";
    var abs = Math.abs(value);
    return abs >= 1000 || abs === 0 ? String(Math.round(value)) :
      String(Number(value.toPrecision(3)));
  }

  function withUnit(value, unit) {
    var text = number(value);
    return text === "--" || !unit ? text : text + " " + unit;
  }

  // uPlot's data: x, then each series with a missed bucket as undefined (spanned) and a gap null
  function table(panel) {
    var data = [panel.x.slice()];
    panel.series.forEach(function (series) {
      var values = series.values.map(function (v) { return v === null ? undefined : v; });
      (series.breaks || []).forEach(function (i) {
        if (i >= 0 && i < values.length) values[i] = null;
      });
      data.push(values);
    });
    return data;
  }

  function options(panel, width) {
    var colours = palette();
    var muted = css("--muted", "#5b6470");
    var line = css("--line", "#d9dee5");
    var unit = typeof panel.unit === "string" ? panel.unit : "";
    var series = [{value: LEGEND_TIME}];     // the time, as a fmtDate template
    panel.series.forEach(function (s, i) {
      series.push({
        label: String(s.label),                    // set with textContent by uPlot
        stroke: colours[i % colours.length],
        width: 1.5,
        spanGaps: false,
        points: {show: false},
        value: function (u, v) { return withUnit(v, unit); }
      });
    });
    var axis = {stroke: muted, grid: {stroke: line, width: 1}, ticks: {stroke: line, width: 1}};
    return {
      width: width,
      height: HEIGHT,
      series: series,
      scales: {x: {time: true}},
      axes: [
        Object.assign({}, axis, {values: TIME_TICKS, space: TICK_SPACE}),
        Object.assign({}, axis, {
          size: 60,
          values: function (u, splits) { return splits.map(function (v) { return number(v); }); },
          label: unit,
          labelSize: 20
        })
      ],
      legend: {live: true},      // its text colour follows the theme (app.css, .u-legend)
      cursor: {points: {show: false}},
      focus: {alpha: 0.4}
    };
  }

  function widthOf(el) {
    return Math.max(260, Math.floor(el.clientWidth || el.parentElement.clientWidth || 600));
  }

  function destroy(id) {
    if (charts[id]) {
      charts[id].plot.destroy();
      delete charts[id];
    }
  }

  function draw(el, panel, rebuild) {
    var id = el.getAttribute("data-chart");
    if (!panel || panel.empty || !Array.isArray(panel.x) || !Array.isArray(panel.series) ||
        panel.series.length === 0) {
      destroy(id);
      return;
    }
    var labels = panel.series.map(function (s) { return String(s.label); }).join("\n");
    var existing = charts[id];
    if (existing && !rebuild && existing.labels === labels && existing.unit === panel.unit) {
      existing.plot.setData(table(panel));
      return;
    }
    destroy(id);
    // x is in seconds, uPlot's default for a time scale
    charts[id] = {plot: new window.uPlot(options(panel, widthOf(el)), table(panel), el),
                  el: el, labels: labels, unit: panel.unit};
  }

  function drawAll(data, rebuild) {
    if (!window.uPlot || !data || typeof data.panels !== "object" || data.panels === null) return;
    last = data;
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var id = el.getAttribute("data-chart");
      var panel = Object.prototype.hasOwnProperty.call(data.panels, id) ? data.panels[id] : null;
      if (el.hidden) panel = null;
      draw(el, panel, rebuild);
    });
  }

  document.addEventListener("live:data", function (event) { drawAll(event.detail, false); });

  var resizing = null;
  window.addEventListener("resize", function () {
    if (resizing) window.clearTimeout(resizing);
    resizing = window.setTimeout(function () {
      Object.keys(charts).forEach(function (id) {
        charts[id].plot.setSize({width: widthOf(charts[id].el), height: HEIGHT});
      });
    }, 150);
  });

  // the theme toggle (theme.js sets data-theme) or the system's scheme: new colours, redrawn
  function themeChanged() { if (last) drawAll(last, true); }
  new MutationObserver(themeChanged).observe(document.documentElement,
                                             {attributes: true, attributeFilter: ["data-theme"]});
  if (window.matchMedia) {
    var query = window.matchMedia("(prefers-color-scheme: dark)");
    if (query.addEventListener) query.addEventListener("change", themeChanged);
  }
})();
