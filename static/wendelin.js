// Small progressive enhancements of the admin UI; every page also works without them.
(function () {
  "use strict";
  // "Select all" in a listbox header toggles the row checkboxes of that listbox.
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("input[data-select-all]")) {
      var form = t.getAttribute("form");
      document.querySelectorAll('input[name="path"][form="' + form + '"]').forEach(function (c) {
        c.checked = t.checked;
      });
    }
  });
  // Keyboard: "/" focuses the search box of the page, as on many admin UIs.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return;
    var box = document.querySelector("input[type=search]");
    if (box) { e.preventDefault(); box.focus(); }
  });
})();
