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
  // Typing in a listbox filter refreshes the list: the never-swapped live wrapper listens
  // for "filter-input" (an htmx trigger filter would need eval, which the CSP forbids).
  document.addEventListener("input", function (e) {
    var t = e.target;
    if (!t || !t.classList || !t.classList.contains("filter")) return;
    var live = t.closest("[data-live-filter]");
    if (live) live.dispatchEvent(new Event("filter-input"));
  });
  // Code editor: every <textarea data-code="LANGUAGE"> becomes a CodeMirror editor
  // (loaded from this server, only on pages that have one); the textarea stays the form
  // field, kept up to date, so forms post the same with or without this script.
  var me = document.currentScript;
  var modes = {
    rhai: "rust", rust: "rust", javascript: "javascript", js: "javascript",
    json: { name: "javascript", json: true }, html: "htmlmixed", css: "css",
    markdown: "markdown", md: "markdown", xml: "xml"
  };
  var loading = null;
  function editorLoaded() {
    if (window.CodeMirror) return Promise.resolve(window.CodeMirror);
    if (loading) return loading;
    loading = new Promise(function (resolve, reject) {
      var css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = me.getAttribute("data-editor-css");
      document.head.appendChild(css);
      var js = document.createElement("script");
      js.src = me.getAttribute("data-editor");
      js.onload = function () { resolve(window.CodeMirror); };
      js.onerror = reject;
      document.head.appendChild(js);
    });
    return loading;
  }
  function upgrade(root) {
    if (!me || !root.querySelectorAll) return;
    var areas = Array.prototype.filter.call(
      root.querySelectorAll("textarea[data-code]"),
      function (t) { return !t.hasAttribute("data-code-editor"); });
    if (!areas.length) return;
    editorLoaded().then(function (CM) {
      areas.forEach(function (t) {
        if (t.hasAttribute("data-code-editor") || !t.isConnected) return;
        t.setAttribute("data-code-editor", "");
        var lang = t.getAttribute("data-code");
        var cm = CM.fromTextArea(t, {
          mode: Object.prototype.hasOwnProperty.call(modes, lang) ? modes[lang] : null,
          lineNumbers: true, indentUnit: 4, tabSize: 4, indentWithTabs: false,
          lineWrapping: true, viewportMargin: Infinity,
          readOnly: t.readOnly ? "nocursor" : false
        });
        var wrapper = cm.getWrapperElement();
        wrapper.classList.add("code-editor");
        wrapper.setAttribute("data-code", lang);
        if (t.getAttribute("aria-invalid") === "true") wrapper.classList.add("invalid");
        var label = t.id && document.querySelector('label[for="' + t.id + '"]');
        if (label) cm.getInputField().setAttribute("aria-label", label.textContent.trim());
        // Keep the textarea the form's field (also for htmx and fetch-posted forms), and
        // tell listeners of the textarea (a live preview) that it changed.
        cm.on("change", function () {
          cm.save();
          t.dispatchEvent(new Event("input", { bubbles: true }));
        });
      });
    }, function () { /* no editor: the plain textarea works as it is */ });
  }
  upgrade(document);
  document.addEventListener("htmx:load", function (e) { upgrade(e.target); });
  // Keyboard: "/" focuses the search box of the page, as on many admin UIs.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return;
    var box = document.querySelector("input[type=search]");
    if (box) { e.preventDefault(); box.focus(); }
  });
  // File upload (types that hold a file): the bytes go to the module's endpoint with a
  // PUT appending at the current size, authenticated by the session and its CSRF token.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || !form.matches || !form.matches("form[data-upload]")) return;
    e.preventDefault();
    var input = form.querySelector("input[type=file]");
    var status = form.querySelector(".upload-status");
    var file = input && input.files && input.files[0];
    if (!file || file.size === 0) {
      status.textContent = "Choose a file that is not empty first.";
      return;
    }
    var at = Number(form.getAttribute("data-size"));
    var end = at + file.size;
    status.textContent = "Uploading " + file.size + " bytes…";
    fetch(form.getAttribute("data-upload"), {
      method: "PUT",
      credentials: "same-origin",
      headers: {
        "X-CSRF-Token": form.getAttribute("data-csrf"),
        "Content-Type": file.type || "application/octet-stream",
        "Content-Range": "bytes " + at + "-" + (end - 1) + "/" + end
      },
      body: file
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.ok) {
          window.location.assign(form.getAttribute("data-done"));
        } else {
          status.textContent = "Upload refused (" + r.status + "): " +
            ((body.error && body.error.message) || r.statusText);
        }
      });
    }, function () {
      status.textContent = "Upload failed: the server could not be reached.";
    });
  });
})();
