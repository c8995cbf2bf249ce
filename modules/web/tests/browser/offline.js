// A published chart page read offline, in Debian's Chromium driven by playwright-core.
// Run by modules/web/tests/offline.rs, which starts the server with [web] listen, prepares
// the site "lab" (front page: a live chart of ARRAY) and passes: PUBLIC_URL (the public
// web origin), ADMIN_URL, SERVER_PID (killed here to go offline), CHROMIUM, PLAYWRIGHT,
// SCREENSHOTS, TOKEN (a manager's API token), ARRAY, LENGTH, LOGIN and PASSWORD (a
// manager's).
// Prints "step: …" and "ALL STEPS PASSED"; exits 1 on any failure.
"use strict";
const { chromium } = require(process.env.PLAYWRIGHT);
const path = require("path");

const PUBLIC = process.env.PUBLIC_URL;
const ADMIN = process.env.ADMIN_URL;
const LENGTH = Number(process.env.LENGTH);
const CACHE = "wendelin-web-lab";

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
function step(name) {
  console.log("step: " + name);
}
async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("timed out waiting for " + what + (last ? ": " + last : ""));
}

// Waits for the chart drawn with `length` elements; checks its points and pixels.
async function drawn(page, length, what) {
  const chart = page.locator("div.wendelin-chart").first();
  await until(what, async () => (await chart.getAttribute("data-state")) === "drawn");
  const shown = Number(await chart.getAttribute("data-length"));
  check(shown === length, what + ": length " + shown + ", expected " + length);
  const points = Number(await chart.getAttribute("data-points"));
  const width = await chart.evaluate((el) => el.clientWidth);
  check(points > 100 && points <= width, what + ": one bin per pixel column: " + points + " for " + width);
  const coloured = await chart.evaluate((el) => {
    const c = el.querySelector("canvas");
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - 0x1f) < 30 && Math.abs(px[i + 1] - 0x77) < 30 && Math.abs(px[i + 2] - 0xb4) < 30) n++;
    }
    return n;
  });
  check(coloured > 200, what + ": the series is drawn: " + coloured + " pixels of its colour");
}

async function cachedUrls(page) {
  return page.evaluate(async (name) => {
    const cache = await caches.open(name);
    return (await cache.keys()).map((r) => r.url);
  }, CACHE);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox"],
  });
  const problems = [];
  const watch = (page) => {
    // CSP refusals ("Refused to …") and script errors; failed loads of the stopped
    // server that the worker answers are not errors of the page.
    page.on("console", (m) => {
      if (m.type() === "error" && /Refused|Content Security Policy|Uncaught/.test(m.text())) problems.push(m.text());
    });
    page.on("pageerror", (e) => problems.push(String(e)));
  };
  const visitor = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await visitor.newPage();
  watch(page);
  try {
    step("a logged-out visitor loads the chart page on the public origin");
    const resp = await page.goto(PUBLIC + "/web/lab/");
    check(resp.status() === 200, "front page: " + resp.status());
    check(!resp.headers()["content-security-policy"].includes("sandbox"), "no sandbox on the public origin");
    check((await page.evaluate(() => window.origin)) === PUBLIC, "the page runs in the public origin, not an opaque one");
    await drawn(page, LENGTH, "the chart drawn");

    step("the service worker takes control and stores the first visit");
    await until("the service worker controlling the page", () => page.evaluate(() => !!navigator.serviceWorker.controller));
    const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
    check(scope === PUBLIC + "/web/lab/", "the worker's scope is the site: " + scope);
    await until("the page, its scripts and its data stored", async () => {
      const urls = await cachedUrls(page);
      return (
        urls.includes(PUBLIC + "/web/lab/") &&
        urls.some((u) => u.includes("/web-static/wendelin-chart.js")) &&
        urls.some((u) => u.includes("/web-static/uPlot.iife.min.js")) &&
        urls.some((u) => u.includes("/_arrays/") && u.includes("/decimate?"))
      );
    });
    console.log("stored: " + (await cachedUrls(page)).join(" "));

    step("page scripts on the public origin cannot act as a logged-in manager");
    const login = await fetch(ADMIN + "/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ login: process.env.LOGIN, password: process.env.PASSWORD }),
    });
    check(login.ok, "login: " + login.status);
    const cookie = login.headers.get("set-cookie").split(";")[0];
    const eq = cookie.indexOf("=");
    const manager = await browser.newContext();
    // As the login set it (HttpOnly, SameSite=Lax) for the admin origin; cookies are not
    // isolated by port, so the browser sends it to the public origin too.
    check(/HttpOnly/i.test(login.headers.get("set-cookie")), "the session cookie is HttpOnly");
    await manager.addCookies([
      { name: cookie.slice(0, eq), value: cookie.slice(eq + 1), url: ADMIN, httpOnly: true, sameSite: "Lax" },
    ]);
    const mp = await manager.newPage();
    const own = await mp.goto(ADMIN + "/api/v1/me");
    check((await own.json()).login === process.env.LOGIN, "the cookie logs the browser in");
    await mp.goto(PUBLIC + "/web/lab/");
    const seen = await mp.evaluate(async () => {
      const out = {};
      for (const p of ["/api/v1/me", "/web/lab/draft?preview=1", "/ui/"]) {
        const r = await fetch(p, { credentials: "include" });
        out[p] = r.status + " " + (await r.text()).slice(0, 80);
      }
      out.cookie = document.cookie;
      return out;
    });
    console.log("a page script on the public origin: " + JSON.stringify(seen));
    for (const p of ["/api/v1/me", "/web/lab/draft?preview=1", "/ui/"]) {
      check(seen[p].startsWith("404 "), p + " answers a stranger: " + seen[p]);
      check(!seen[p].includes(process.env.LOGIN), p + " knows the manager: " + seen[p]);
    }
    check(seen.cookie === "", "the session cookie is out of the page's reach: " + seen.cookie);
    await manager.close();

    step("an append shows after a reload, through the worker (network first)");
    const r = await fetch(ADMIN + "/api/v1/" + process.env.ARRAY + "/append", {
      method: "POST",
      headers: { authorization: "Bearer " + process.env.TOKEN, "content-type": "application/json" },
      body: JSON.stringify({ data: Array.from({ length: 500 }, (_, i) => i) }),
    });
    check(r.ok, "append: " + r.status);
    await page.reload();
    check(await page.evaluate(() => !!navigator.serviceWorker.controller), "controlled from the start");
    await drawn(page, LENGTH + 500, "the chart after the append");

    step("the server stops: the page and its chart still show, with the last data");
    process.kill(Number(process.env.SERVER_PID), "SIGKILL");
    await until("the server gone", async () => {
      try {
        await fetch(PUBLIC + "/web/lab/");
        return false;
      } catch (e) {
        return true;
      }
    });
    await page.reload();
    check((await page.locator("h1").first().textContent()) === "Home", "the page is shown offline");
    await drawn(page, LENGTH + 500, "the chart offline");
    await page.screenshot({ path: path.join(process.env.SCREENSHOTS, "web-offline.png") });

    step("a new tab of the site opens offline too");
    const again = await visitor.newPage();
    watch(again);
    await again.goto(PUBLIC + "/web/lab/");
    await drawn(again, LENGTH + 500, "the chart in a new tab offline");

    check(problems.length === 0, "no console errors (CSP violations included): " + problems.join(" | "));
    console.log("ALL STEPS PASSED");
  } catch (e) {
    console.log("FAILED: " + (e && e.stack ? e.stack : e));
    await page.screenshot({ path: path.join(process.env.SCREENSHOTS, "web-offline-failed.png") }).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
