// The service worker of a published web site: keeps the site readable offline. Served
// by the public web listener ([web] listen) at /web/<site>/_sw.js, so its scope is the
// site; wendelin-chart.js registers it. It is ours: authors cannot edit it.
//
// Network first, for the site's pages and assets, the vendored chart files and the
// charts' data: every successful answer is stored in the cache "wendelin-web-<site>"
// (under its URL), and when the network fails the stored answer of the same URL is
// given instead. A page loaded before the worker controlled it posts the URLs it used
// ({keep: [...]}), which are fetched and stored at once: a site works offline from the
// end of its first visit.
"use strict";

var scope = new URL(self.registration.scope).pathname; // "/web/<site>/"
var CACHE = "wendelin-web-" + scope.split("/")[2];

function kept(url) {
  var u = new URL(url, self.location.href);
  return (
    u.origin === self.location.origin &&
    (u.pathname.indexOf(scope) === 0 ||
      u.pathname.indexOf("/web-static/") === 0 ||
      /^\/api\/v1\/data_array_module\/[^/]+\/decimate$/.test(u.pathname))
  );
}

function store(request, response) {
  // Only whole same-origin answers (not errors, redirects or partial content).
  if (response.status !== 200 || response.type !== "basic") {
    return Promise.resolve();
  }
  var copy = response.clone();
  return caches.open(CACHE).then(function (cache) {
    return cache.put(request, copy);
  });
}

self.addEventListener("install", function () {
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET" || !kept(request.url)) {
    return;
  }
  event.respondWith(
    fetch(request).then(
      function (response) {
        event.waitUntil(store(request, response));
        return response;
      },
      function (offline) {
        return caches
          .open(CACHE)
          .then(function (cache) {
            // Answers vary by credentials on the admin origin; here all are anonymous.
            return cache.match(request, { ignoreVary: true });
          })
          .then(function (stored) {
            if (!stored) {
              throw offline;
            }
            return stored;
          });
      }
    )
  );
});

self.addEventListener("message", function (event) {
  var urls = (event.data && event.data.keep) || [];
  event.waitUntil(
    Promise.all(
      urls.filter(kept).map(function (url) {
        return fetch(url).then(
          function (response) {
            return store(url, response);
          },
          function () {}
        );
      })
    )
  );
});
