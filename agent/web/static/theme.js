// Light or dark: the operator's choice (kept in this browser's localStorage), else the system's
// (prefers-color-scheme, which the style sheet follows by itself). Loaded in <head>, before the
// page is drawn, so a dark page never flashes light.
(function () {
  "use strict";
  var KEY = "homelab-monitor-theme";
  var root = document.documentElement;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch (err) {
      return null;  // storage refused (private mode): follow the system
    }
  }

  function current() {
    return stored() || (window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)")
      .matches ? "dark" : "light");
  }

  function apply(theme) {
    root.setAttribute("data-theme", theme);
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("aria-pressed", theme === "dark" ? "true" : "false");
      button.setAttribute("title", theme === "dark" ? "Switch to the light theme"
                                                     : "Switch to the dark theme");
    }
  }

  apply(current());
  document.addEventListener("DOMContentLoaded", function () {
    apply(current());
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      var next = current() === "dark" ? "light" : "dark";
      try {
        window.localStorage.setItem(KEY, next);
      } catch (err) { /* not kept: this page still switches */ }
      apply(next);
    });
  });
})();
