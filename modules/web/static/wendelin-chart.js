// The chart component of web pages: fills every <div class="wendelin-chart"> that the
// template function chart() writes with a uPlot chart of a Data Array's decimation
// (min and max per pixel column, GET <data-src>?format=f64&bins=<width>). Dragging
// over the chart zooms: the zoomed range is fetched again at full resolution (one bin
// per element once the range is narrower than the chart). A double click shows the
// whole array again. data-live="N" refetches every N seconds while not zoomed, so the
// chart follows appends. State for tests and scripts: data-state (loading, drawn,
// error), data-points, data-start, data-stop, data-fetches; el.wendelinChart has
// zoom(start, stop) and reset(). The first chart drawn on a page leaves the Performance
// API mark "wendelin-chart-drawn" (its startTime: milliseconds since navigation start).
// On the public web origin ([web] listen) it registers the site's service worker
// (/web/<site>/_sw.js), which keeps the page and its last data for offline use; on the
// admin origin pages are sandboxed (an opaque origin, "null") and it does not.
(function () {
  "use strict";

  var worker = null; // the registration, once ready, if it did not control the page
  var kept = {}; // URLs already handed to it

  function register() {
    var site = location.pathname.match(/^\/web\/[^/]+\//);
    if (self.origin === "null" || !("serviceWorker" in navigator) || !site) {
      return;
    }
    var controlled = !!navigator.serviceWorker.controller;
    navigator.serviceWorker
      .register(site[0] + "_sw.js", { scope: site[0] })
      .then(function () {
        return navigator.serviceWorker.ready;
      })
      .then(function (reg) {
        if (!controlled) {
          worker = reg;
          keep();
        }
      })
      .catch(function () {});
  }

  // Hands the worker what this page loaded (the page, its scripts, its charts' data)
  // when it was not controlled from the start, to be stored now; each URL once.
  function keep() {
    if (!worker || !worker.active) {
      return;
    }
    var urls = [location.href];
    performance.getEntriesByType("resource").forEach(function (e) {
      urls.push(e.name);
    });
    urls = urls.filter(function (u) {
      var fresh = !kept[u];
      kept[u] = true;
      return fresh;
    });
    if (urls.length) {
      worker.active.postMessage({ keep: urls });
    }
  }

  function load(src, bins, range) {
    var url = src + "?format=f64&bins=" + bins;
    if (range) {
      url += "&start=" + range[0] + "&stop=" + range[1];
    }
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) {
        throw new Error("HTTP " + r.status);
      }
      var n = Number(r.headers.get("x-decimate-bins") || "0");
      var shape = (r.headers.get("x-array-shape") || "0").split(",").map(Number);
      return r.arrayBuffer().then(function (buf) {
        var all = new Float64Array(buf);
        return {
          length: shape[0],
          x: Array.from(all.subarray(0, n)),
          min: Array.from(all.subarray(n, 2 * n)),
          max: Array.from(all.subarray(2 * n, 3 * n)),
        };
      });
    });
  }

  function nan2null(a) {
    return a.map(function (v) {
      return Number.isNaN(v) ? null : v;
    });
  }

  function setup(el) {
    var src = el.getAttribute("data-src");
    var title = el.getAttribute("data-title") || "";
    var live = Number(el.getAttribute("data-live") || "0");
    var height = Number(el.getAttribute("data-height") || "300");
    var width = Math.max(200, el.clientWidth || 800);
    var bins = Math.round(width);
    var plot = null;
    var range = null; // [start, stop] while zoomed
    var fetches = 0;
    el.setAttribute("data-state", "loading");

    function draw(d) {
      var data = [d.x, nan2null(d.min), nan2null(d.max)];
      el.setAttribute("data-points", String(d.x.length));
      el.setAttribute("data-start", String(range ? range[0] : 0));
      el.setAttribute("data-stop", String(range ? range[1] : d.length));
      el.setAttribute("data-length", String(d.length));
      if (plot) {
        plot.setData(data, true);
      } else {
        plot = new uPlot(
          {
            title: title,
            width: width,
            height: height,
            cursor: { drag: { x: true, y: false, setScale: false } },
            scales: { x: { time: false } },
            series: [
              { label: "index" },
              { label: "min", stroke: "#1f77b4" },
              { label: "max", stroke: "#d62728" },
            ],
            hooks: {
              setSelect: [
                function (u) {
                  if (u.select.width < 2) {
                    return;
                  }
                  var a = Math.max(0, Math.floor(u.posToVal(u.select.left, "x")));
                  var b = Math.ceil(u.posToVal(u.select.left + u.select.width, "x")) + 1;
                  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
                  zoom(a, b);
                },
              ],
            },
          },
          data,
          el
        );
        plot.over.addEventListener("dblclick", function () {
          reset();
        });
      }
      el.setAttribute("data-state", "drawn");
      setTimeout(keep, 0);
      if (!window.wendelinChartMarked && window.performance && performance.mark) {
        // At the next frame: the canvas is painted with it.
        window.wendelinChartMarked = true;
        requestAnimationFrame(function () {
          performance.mark("wendelin-chart-drawn");
        });
      }
    }

    function fetchAndDraw() {
      fetches += 1;
      el.setAttribute("data-fetches", String(fetches));
      return load(src, bins, range)
        .then(draw)
        .catch(function (e) {
          el.setAttribute("data-state", "error");
          el.setAttribute("data-error", String(e && e.message));
        });
    }

    function zoom(start, stop) {
      if (stop - start < 2) {
        return Promise.resolve();
      }
      range = [start, stop];
      return fetchAndDraw();
    }

    function reset() {
      range = null;
      return fetchAndDraw();
    }

    el.wendelinChart = { zoom: zoom, reset: reset };
    fetchAndDraw();
    if (live > 0) {
      setInterval(function () {
        if (!range && document.visibilityState !== "hidden") {
          fetchAndDraw();
        }
      }, live * 1000);
    }
  }

  function start() {
    register();
    var charts = document.querySelectorAll("div.wendelin-chart[data-src]");
    for (var i = 0; i < charts.length; i++) {
      setup(charts[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
