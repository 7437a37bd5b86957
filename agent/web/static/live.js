// Live data for every dashboard page, without a reload. A page opts in with one attribute on
// its <main>: data-live-src="/api/..." (its JSON twin; data-live-interval in ms, default 5000;
// data-live-eager: the first refresh at once, for a page that draws from the JSON).
// Inside it, elements bind to the JSON by dotted paths:
//   data-field="a.b"        its text becomes the value ("" when absent)
//   data-state-field="p"    its data-state attribute (CSS styles up/down/...) becomes the value
//   data-sev-field="p"      its data-sev attribute (high/medium/low/none) becomes the value
//   data-href-field="p"     its href becomes the value, when that is a path of this site
//   data-show-if="p"        hidden unless the value is there and not empty, 0 or false
//   data-hide-if="p"        hidden when it is
//   data-list="p"           its rows are rebuilt from the array at p, each a copy of the
//                           <template> child bound with the row as the root of its paths
// Text is only ever set with textContent: nothing from the server is parsed as HTML (and the
// page's Content-Security-Policy asks the browser to refuse it). After each refresh the page
// gets a "live:data" event whose detail is the JSON, for what a page draws itself (charts).
(function () {
  "use strict";

  var SAFE_TOKEN = /^[a-z0-9_-]{0,32}$/;

  function pick(data, path) {
    var value = data;
    var parts = path.split(".");
    for (var i = 0; i < parts.length; i++) {
      if (value === null || typeof value !== "object" || Array.isArray(value) ||
          !Object.prototype.hasOwnProperty.call(value, parts[i])) {
        return undefined;
      }
      value = value[parts[i]];
    }
    return value;
  }

  function asText(value) {
    if (value === undefined || value === null || typeof value === "object") return "";
    if (typeof value === "boolean") return value ? "yes" : "no";
    return String(value);
  }

  function truthy(value) {
    if (Array.isArray(value)) return value.length > 0;
    return Boolean(value);
  }

  function localPath(value) {
    return typeof value === "string" && value.charAt(0) === "/" && value.charAt(1) !== "/" &&
      value.indexOf("\\") < 0;
  }

  // the elements of root that bind, without those inside a nested list's rows or templates
  function own(root, selector) {
    var found = [];
    if (root.matches && root.matches(selector)) found.push(root);
    root.querySelectorAll(selector).forEach(function (el) {
      var list = el.parentElement && el.parentElement.closest("[data-list]");
      if (list && list !== root && root.contains(list)) return;
      found.push(el);
    });
    return found;
  }

  function bindList(list, data) {
    var template = list.querySelector(":scope > template");
    if (!template) return;
    var rows = pick(data, list.getAttribute("data-list"));
    rows = Array.isArray(rows) ? rows : [];
    Array.prototype.slice.call(list.children).forEach(function (child) {
      if (child !== template) list.removeChild(child);
    });
    rows.forEach(function (row) {
      var copy = template.content.cloneNode(true);
      Array.prototype.slice.call(copy.children).forEach(function (el) {
        bind(el, row);
        list.appendChild(el);
      });
    });
  }

  function bind(root, data) {
    own(root, "[data-field]").forEach(function (el) {
      var text = asText(pick(data, el.getAttribute("data-field")));
      if (el.textContent !== text) el.textContent = text;
    });
    [["data-state-field", "state"], ["data-sev-field", "sev"]].forEach(function (pair) {
      own(root, "[" + pair[0] + "]").forEach(function (el) {
        var value = asText(pick(data, el.getAttribute(pair[0])));
        el.setAttribute("data-" + pair[1], SAFE_TOKEN.test(value) ? value : "");
      });
    });
    own(root, "[data-href-field]").forEach(function (el) {
      var href = pick(data, el.getAttribute("data-href-field"));
      if (localPath(href)) el.setAttribute("href", href);
      else el.removeAttribute("href");
    });
    own(root, "[data-show-if]").forEach(function (el) {
      el.hidden = !truthy(pick(data, el.getAttribute("data-show-if")));
    });
    own(root, "[data-hide-if]").forEach(function (el) {
      el.hidden = truthy(pick(data, el.getAttribute("data-hide-if")));
    });
    own(root, "[data-list]").forEach(function (el) {
      if (el !== root) bindList(el, data);
    });
  }

  function start(main) {
    var src = main.getAttribute("data-live-src");
    if (!localPath(src)) return;
    var every = Math.max(2000, parseInt(main.getAttribute("data-live-interval"), 10) || 5000);
    var status = document.querySelector("[data-live-status]");
    var last = Date.now();
    var timer = null;
    var busy = false;

    function say(text, state) {
      if (!status) return;
      status.hidden = false;
      status.textContent = text;
      status.setAttribute("data-state", state);
    }

    function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(src, {credentials: "same-origin", cache: "no-store",
                  headers: {"Accept": "application/json"}})
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign("/login?next=" +
              encodeURIComponent(window.location.pathname + window.location.search));
            throw new Error("logged out");
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          bind(main, data);
          last = Date.now();
          say("live", "up");
          main.dispatchEvent(new CustomEvent("live:data", {detail: data, bubbles: true}));
        })
        .catch(function () {
          var ago = Math.round((Date.now() - last) / 1000);
          say("no update for " + ago + " s", "down");
        })
        .finally(function () { busy = false; });
    }

    function schedule() {
      if (timer) window.clearInterval(timer);
      timer = window.setInterval(refresh, every);
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
    say("live", "up");
    schedule();
    // a page that draws from the JSON (charts) asks for it at once rather than in 5 s
    if (main.hasAttribute("data-live-eager")) refresh();
  }

  window.homelabLive = {bind: bind, pick: pick};
  document.addEventListener("DOMContentLoaded", function () {
    var main = document.querySelector("main[data-live-src]");
    if (main) start(main);
  });
})();
