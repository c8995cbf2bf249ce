// First chart paint of a published page in headless Chromium (Debian's, driven by
// playwright-core from tests/browser/node_modules), for bench/web.py: loads URL RUNS
// times, each in a fresh browser context (empty cache), and prints one line per run with
// the Performance API mark "wendelin-chart-drawn" (ms since navigation start, left by
// wendelin-chart.js at the frame after the first chart is drawn) and the chart's points.
// Env: URL, CHROMIUM, PLAYWRIGHT, RUNS.
"use strict";
const { chromium } = require(process.env.PLAYWRIGHT);

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
  try {
    for (let i = 0; i < Number(process.env.RUNS || "5"); i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await context.newPage();
      const resp = await page.goto(process.env.URL);
      if (resp.status() !== 200) throw new Error("status " + resp.status());
      await page.waitForFunction(() => performance.getEntriesByName("wendelin-chart-drawn").length === 1, null, { timeout: 30000 });
      const r = await page.evaluate(() => ({
        mark: performance.getEntriesByName("wendelin-chart-drawn")[0].startTime,
        points: document.querySelector("div.wendelin-chart").getAttribute("data-points"),
        length: document.querySelector("div.wendelin-chart").getAttribute("data-length"),
      }));
      console.log("paint " + r.mark.toFixed(1) + " ms, " + r.points + " bins of " + r.length + " points");
      await context.close();
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
