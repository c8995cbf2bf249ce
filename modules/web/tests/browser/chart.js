// A published web site's chart in Debian's Chromium, as a logged-out visitor, driven by
// playwright-core. Run by modules/web/tests/chart.rs, which prepares the site and passes:
//   BASE_URL, CHROMIUM, PLAYWRIGHT (the playwright-core folder), SCREENSHOTS, TOKEN (a
//   manager's API token, to append to the array while the chart is open), ARRAY (its
//   path), LENGTH (its length).
// Prints "step: …" and "ALL STEPS PASSED"; exits 1 on any failure.
"use strict";
const { chromium } = require(process.env.PLAYWRIGHT);
const path = require("path");

const BASE = process.env.BASE_URL;
const LENGTH = Number(process.env.LENGTH);

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
function step(name) {
  console.log("step: " + name);
}
async function attr(el, name) {
  return el.getAttribute(name);
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

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox"],
  });
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    // The draft's 404 (and the favicon's) is expected; anything else is not, CSP
    // refusals ("Refused to …") included.
    if (m.type() === "error" && !/status of 404/.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  try {
    step("a draft page is a 404 for a logged-out visitor");
    const draft = await page.goto(BASE + "/web/lab/draft");
    check(draft.status() === 404, "draft: " + draft.status());

    step("the front page draws the chart with the array's data");
    const paint0 = Date.now();
    const resp = await page.goto(BASE + "/web/lab/");
    check(resp.status() === 200, "front page: " + resp.status());
    const chart = page.locator("div.wendelin-chart").first();
    await until("the chart drawn", async () => (await attr(chart, "data-state")) === "drawn");
    const firstPaint = Date.now() - paint0;
    const points = Number(await attr(chart, "data-points"));
    const width = await chart.evaluate((el) => el.clientWidth);
    check(Number(await attr(chart, "data-length")) === LENGTH, "length " + (await attr(chart, "data-length")));
    check(points > 100 && points <= width, "one bin per pixel column: " + points + " for " + width);
    // The drawn data: bin 0 holds elements 0.. of i % 1000 → min 0; the maximum overall 999.
    const data = await chart.evaluate((el) => {
      const u = el.querySelector(".uplot");
      return !!u;
    });
    check(data, "uPlot rendered");
    // Pixels: the min series' colour is on the canvas.
    const coloured = await chart.evaluate((el) => {
      const c = el.querySelector("canvas");
      const g = c.getContext("2d");
      const px = g.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (Math.abs(px[i] - 0x1f) < 30 && Math.abs(px[i + 1] - 0x77) < 30 && Math.abs(px[i + 2] - 0xb4) < 30) n++;
      }
      return n;
    });
    check(coloured > 200, "the series is drawn: " + coloured + " pixels of its colour");
    await page.screenshot({ path: path.join(process.env.SCREENSHOTS, "web-chart.png") });
    await until("the paint mark", async () => page.evaluate(() => performance.getEntriesByName("wendelin-chart-drawn").length === 1));
    const mark = await page.evaluate(() => performance.getEntriesByName("wendelin-chart-drawn").map((e) => e.startTime));
    check(mark.length === 1, "one Performance mark for the first chart drawn: " + JSON.stringify(mark));
    console.log("first chart paint ms: " + firstPaint + " (Performance API mark: " + mark[0].toFixed(1) + ")");

    step("zooming refetches the range at full resolution");
    const fetches = Number(await attr(chart, "data-fetches"));
    await chart.evaluate((el) => el.wendelinChart.zoom(1000, 1300));
    await until("the zoomed data", async () => (await attr(chart, "data-start")) === "1000");
    check(Number(await attr(chart, "data-points")) === 300, "300 points at full resolution: " + (await attr(chart, "data-points")));
    check(Number(await attr(chart, "data-fetches")) === fetches + 1, "one more fetch");
    // Full resolution: min and max of each bin are the element itself.
    const zoomed = await page.evaluate(async () => {
      const src = document.querySelector("div.wendelin-chart").getAttribute("data-src");
      const r = await fetch(src + "?bins=1000&start=1000&stop=1300");
      return r.json();
    });
    check(zoomed.bins === 300 && zoomed.min[0] === 0 && zoomed.max[299] === 299, "decimated values " + JSON.stringify(zoomed).slice(0, 200));
    await chart.evaluate((el) => el.wendelinChart.reset());
    await until("the whole array again", async () => (await attr(chart, "data-start")) === "0");

    step("the live chart grows after an append");
    const r = await fetch(BASE + "/api/v1/" + process.env.ARRAY + "/append", {
      method: "POST",
      headers: { authorization: "Bearer " + process.env.TOKEN, "content-type": "application/json" },
      body: JSON.stringify({ data: Array.from({ length: 500 }, (_, i) => i) }),
    });
    check(r.ok, "append: " + r.status);
    await until("the chart to follow the append", async () => Number(await attr(chart, "data-length")) === LENGTH + 500);

    step("page scripts run in an opaque origin, even for a logged-in manager");
    check((await page.evaluate(() => window.origin)) === "null", "the sandbox gives the page an opaque origin");
    const login = await fetch(BASE + "/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ login: process.env.LOGIN, password: process.env.PASSWORD }),
    });
    check(login.ok, "login: " + login.status);
    const cookie = login.headers.get("set-cookie").split(";")[0];
    const eq = cookie.indexOf("=");
    const manager = await browser.newContext();
    await manager.addCookies([{ name: cookie.slice(0, eq), value: cookie.slice(eq + 1), url: BASE }]);
    const mp = await manager.newPage();
    const own = await mp.goto(BASE + "/api/v1/me");
    check((await own.json()).login === process.env.LOGIN, "the cookie logs the browser in");
    await mp.goto(BASE + "/web/lab/");
    const seen = await mp.evaluate(async () => {
      try {
        const r = await fetch("/api/v1/me", { credentials: "include" });
        return "read: " + (await r.text());
      } catch (e) {
        return "refused";
      }
    });
    console.log("page script fetching /api/v1/me: " + seen.slice(0, 120));
    check(!seen.includes(process.env.LOGIN), "a page's script cannot act as the visitor: " + seen);
    step("the page editor previews the unsaved body as the author types");
    await mp.goto(BASE + "/ui/" + process.env.HOME_PAGE + "/+module");
    const frame = mp.locator("#web-preview-frame");
    check((await mp.locator("#field-text_content").getAttribute("data-code")) === "html", "the body is a code textarea");
    await until("the first preview", async () => (await frame.getAttribute("data-state")) === "shown");
    const before = Number(await frame.getAttribute("data-previews"));
    const inside = mp.frameLocator("#web-preview-frame");
    check((await inside.locator("h1").first().textContent()) === "Home", "the stored page previewed");
    // The admin UI's code editor (CodeMirror) stands in for the textarea: type into it.
    const editor = mp.locator(".CodeMirror.code-editor[data-code=html]");
    await editor.waitFor();
    await editor.click();
    await mp.keyboard.press("Control+A");
    await mp.keyboard.type("<p id=typed>typed in {{ page.title }}</p>");
    await until("the typed preview", async () => (await inside.locator("#typed").count()) === 1);
    check((await inside.locator("#typed").textContent()) === "typed in Home", "rendered as a template");
    check(Number(await frame.getAttribute("data-previews")) > before, "a new preview");
    check((await frame.getAttribute("sandbox")) === "allow-scripts", "sandboxed without allow-same-origin");
    const stored = await (await fetch(BASE + "/api/v1/" + process.env.HOME_PAGE, { headers: { authorization: "Bearer " + process.env.TOKEN } })).json();
    check(!stored.text_content.includes("typed"), "nothing saved by the preview");
    await mp.screenshot({ path: path.join(process.env.SCREENSHOTS, "web-editor.png"), fullPage: true });

    step("an author builds a site and a chart page through the admin UI and publishes both");
    await mp.goto(BASE + "/ui/web_site_module/+add?type=Web%20Site");
    await mp.fill("#field-id", "lab2");
    await mp.fill("#field-title", "Lab two");
    await mp.fill("#field-front_page", "home2");
    await mp.fill("#field-arrays", process.env.ARRAY);
    await mp.click("button:has-text('Create')");
    await mp.waitForURL(/\/ui\/web_site_module\/lab2/);
    await mp.selectOption("#wf-transition", "publish");
    await mp.click(".workflow button");
    const stateOf = async (doc) => JSON.stringify((await (await fetch(BASE + "/api/v1/" + doc, { headers: { authorization: "Bearer " + process.env.TOKEN } })).json()).workflow_states);
    await until("the site published", async () => (await stateOf("web_site_module/lab2")).includes('"published"'));
    await mp.goto(BASE + "/ui/web_page_module/+add?type=Web%20Page");
    await mp.fill("#field-title", "Home two");
    await mp.fill("#field-page_reference", "home2");
    // The content type is a choice list (the type declares the five it serves).
    await mp.selectOption("#field-content_type", "text/x-tera");
    await mp.fill("#field-text_content", "<h1 id=made>{{ page.title }}</h1>{{ chart(array='" + process.env.ARRAY + "', title='Signal') }}");
    await mp.click("button:has-text('Create')");
    await mp.waitForURL(/\/ui\/web_page_module\/[^+]+$/);
    const made = mp.url().split("/ui/")[1];
    await mp.selectOption("#wf-transition", "publish_alive");
    await mp.click(".workflow button");
    await until("the page published alive", async () => (await stateOf(made)).includes("published_alive"));

    step("a logged-out visitor sees the author's chart");
    const visitor = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    const vp = await visitor.newPage();
    vp.on("console", (m) => {
      if (m.type() === "error" && !/status of 404/.test(m.text())) problems.push(m.text());
    });
    const front = await vp.goto(BASE + "/web/lab2/");
    check(front.status() === 200, "the author's site: " + front.status());
    check((await vp.locator("#made").textContent()) === "Home two", "the author's page is the front page");
    const made2 = vp.locator("div.wendelin-chart").first();
    await until("the author's chart drawn", async () => (await attr(made2, "data-state")) === "drawn");
    check(Number(await attr(made2, "data-length")) === LENGTH + 500, "the chart shows the whole array: " + (await attr(made2, "data-length")));
    const bins = await vp.evaluate(async () => {
      const src = document.querySelector("div.wendelin-chart").getAttribute("data-src");
      return (await fetch(src + "?bins=100&start=0&stop=1000")).json();
    });
    check(bins.min[0] === 0 && bins.max[99] === 999, "the visitor reads the array's data: " + JSON.stringify(bins).slice(0, 160));
    await vp.screenshot({ path: path.join(process.env.SCREENSHOTS, "web-author-site.png") });
    await visitor.close();
    await manager.close();

    check(problems.length === 0, "no console errors (CSP violations included): " + problems.join(" | "));
    console.log("ALL STEPS PASSED");
  } catch (e) {
    console.log("FAILED: " + (e && e.stack ? e.stack : e));
    await page.screenshot({ path: path.join(process.env.SCREENSHOTS, "web-chart-failed.png") }).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
