// The Web Page editor of the admin UI (WebPage_view): fills the form's CSRF token from
// the page's own (a module view does not hold the session), and shows a live preview of
// the unsaved draft: on input, after a short pause, the form's fields are posted to
// POST /web/<site>/_preview and the answer is shown in a sandboxed iframe (srcdoc, no
// allow-same-origin: the draft's scripts run in an opaque origin, as on /web/). State
// for tests: the iframe's data-state (loading, shown, error) and data-previews (count).
(function () {
  "use strict";
  var form = document.getElementById("web-page-editor");
  if (!form) {
    return;
  }
  var own = document.querySelector('form.logout input[name="csrf_token"]');
  if (own) {
    form.elements.csrf_token.value = own.value;
  }
  var frame = document.getElementById("web-preview-frame");
  var site = document.getElementById("preview-site");
  var status = document.querySelector(".web-preview .preview-status");
  if (!frame || !site) {
    return;
  }
  var timer = null;
  var sent = 0;
  var shown = 0;

  function field(name) {
    var f = form.elements[name];
    return f ? f.value : "";
  }

  function refresh() {
    sent += 1;
    var n = sent;
    frame.setAttribute("data-state", "loading");
    fetch("/web/" + encodeURIComponent(site.value) + "/_preview", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": field("csrf_token") },
      body: JSON.stringify({
        page: field("page"),
        title: field("title"),
        content_type: field("content_type"),
        text_content: field("text_content"),
      }),
    })
      .then(function (r) {
        return r.text().then(function (t) {
          return { ok: r.ok, status: r.status, text: t };
        });
      })
      .then(function (res) {
        if (n !== sent) {
          return; // a later preview is on its way
        }
        shown += 1;
        frame.srcdoc = res.text;
        frame.setAttribute("data-previews", String(shown));
        frame.setAttribute("data-state", res.ok ? "shown" : "error");
        if (status) {
          status.textContent = res.ok ? "" : "The preview answered HTTP " + res.status + ".";
        }
      })
      .catch(function (e) {
        frame.setAttribute("data-state", "error");
        if (status) {
          status.textContent = "No preview: " + (e && e.message);
        }
      });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  site.addEventListener("change", later);
  refresh();
})();
