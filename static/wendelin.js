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
