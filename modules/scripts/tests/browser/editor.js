// The Script edit form's code editor in Debian's Chromium, driven by playwright-core.
// Run by modules/scripts/tests/editor.rs, which starts the server and passes BASE_URL,
// CHROMIUM, LOGIN and PASSWORD (a Manager) and NODE_PATH (tests/browser/node_modules).
// Prints "step: …" as it goes and "ALL STEPS PASSED" at the end; exits 1 on failure.
"use strict";
const { chromium } = require("playwright-core");

const BASE = process.env.BASE_URL;

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
function step(name) {
  console.log("step: " + name);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update"],
  });
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (m) => {
    // A refused save's own 422 (and a missing favicon) are responses, not problems.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  try {
    step("log in");
    await page.goto(BASE + "/ui/");
    await page.fill("#login", process.env.LOGIN);
    await page.fill("#password", process.env.PASSWORD);
    await page.click("button[type=submit]");
    await page.waitForURL(BASE + "/ui/");

    step("the edit form shows the body in the code editor");
    await page.goto(BASE + "/ui/portal_skins/Base_hello/+edit");
    const editor = page.locator(".CodeMirror.code-editor[data-code=rhai]");
    await editor.waitFor({ state: "visible", timeout: 10000 });
    check(!(await page.locator("textarea[name=body]").isVisible()), "the textarea is replaced");
    const shown = await page.evaluate(() => document.querySelector(".CodeMirror").CodeMirror.getValue());
    check(shown === '"hello"', "the editor holds the body, got " + JSON.stringify(shown));
    check((await page.locator(".CodeMirror .CodeMirror-linenumber").count()) > 0, "line numbers");

    step("a body that does not compile is refused, its position shown, the text kept");
    await page.click(".CodeMirror");
    // The keys go to CodeMirror's own input only once it has the focus: on a loaded
    // machine the click's focus may come late (the CI run of 2026-12-07 typed into
    // nothing), so give it the focus through its API and wait until it has it.
    await page.evaluate(() => document.querySelector(".CodeMirror").CodeMirror.focus());
    await page.waitForFunction(() => document.querySelector(".CodeMirror").CodeMirror.hasFocus(),
      null, { timeout: 15000 });
    await page.keyboard.press("Control+A");
    await page.keyboard.type('"hello";\nlet x = ;');
    // The editor hands what was typed to the form's textarea as it changes; on a loaded
    // machine that may come after the last key event returns: wait for it before saving.
    await page.waitForFunction(() => {
      const t = document.querySelector("textarea[data-code]");
      return t && t.value === '"hello";\nlet x = ;';
    }, null, { timeout: 15000 });
    await Promise.all([page.waitForNavigation(), page.click("form.edit button.primary")]);
    const error = await page.locator("main").innerText();
    check(error.includes("line 2, column 9"), "the error names its position, got " + error);
    await editor.waitFor({ state: "visible", timeout: 10000 });
    const kept = await page.evaluate(() => document.querySelector(".CodeMirror").CodeMirror.getValue());
    check(kept === '"hello";\nlet x = ;', "the editor keeps the text typed, got " + JSON.stringify(kept));

    step("a save through the editor works");
    await page.evaluate(() =>
      document.querySelector(".CodeMirror").CodeMirror.setValue('"hello from the editor"'));
    await Promise.all([page.waitForNavigation(), page.click("form.edit button.primary")]);
    check(!page.url().includes("+edit"), "saved: back on the document's page, at " + page.url());
    check(problems.length === 0, "no script errors or CSP refusals: " + problems.join("; "));
    console.log("ALL STEPS PASSED");
  } catch (e) {
    console.log("FAILED: " + e.message);
    console.log(await page.content().catch(() => ""));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
