// End-to-end walk through the admin UI in Debian's Chromium, driven by playwright-core.
// Run by tests/tests/browser.rs, which starts the server and passes:
//   BASE_URL, CHROMIUM (executable), SCREENSHOTS (folder), USERS (JSON login → password).
// Prints "step: …" as it goes and "ALL STEPS PASSED" at the end; exits 1 on any failure.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

const BASE = process.env.BASE_URL;
const SHOTS = process.env.SCREENSHOTS;
const USERS = JSON.parse(process.env.USERS);
const XSS_TITLE = "Boiler 7 <script>window.__xss = 1; alert(1)</script> temperature";

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}
function step(name) {
  console.log("step: " + name);
}
async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}
async function text(page, selector) {
  return (await page.locator(selector).first().innerText()).trim();
}
// The title must render as text: no script ran, and the text shows the tag.
async function noScriptRan(page) {
  const ran = await page.evaluate(() => window.__xss);
  check(ran === undefined, "a <script> from a title ran on " + page.url());
}
async function retry(what, fn, tries = 30) {
  let last;
  for (let i = 0; i < tries; i++) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 400));
    }
  }
  throw new Error(what + ": " + last);
}

async function login(page, who) {
  await page.goto(BASE + "/ui/");
  check(page.url().includes("/login"), "anonymous /ui/ goes to the login page, got " + page.url());
  await page.fill("#login", who);
  await page.fill("#password", USERS[who]);
  await page.click("button[type=submit]");
  await page.waitForURL(BASE + "/ui/");
  check((await text(page, ".top .who")) === who, "logged in as " + who);
}
async function logout(page) {
  await page.click(".logout button");
  await page.waitForURL(/\/login/);
  // The session is gone: the UI sends us back to the login page.
  await page.goto(BASE + "/ui/");
  check(page.url().includes("/login"), "after logout /ui/ asks to log in again");
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wendelin-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(15000);
  const page = context.pages()[0] || (await context.newPage());
  // The Content-Security-Policy allows no inline script, style or eval: anything the UI
  // needs that it blocks shows up here and fails the walkthrough.
  const cspViolations = [];
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) cspViolations.push(page.url() + ": " + m.text() + " at " + JSON.stringify(m.location()));
  });
  page.on("dialog", async (d) => {
    console.log("unexpected dialog: " + d.message());
    process.exitCode = 1;
    await d.dismiss();
  });
  try {
    step("alice logs in and sees the module tiles");
    await login(page, "alice");
    const tile = page.locator(".tile", { hasText: "Data Streams" });
    check((await tile.locator(".tile-count").innerText()).trim() === "0", "no data stream yet");
    await shot(page, "01-home");

    step("alice creates a Data Stream from the listbox's add button");
    await tile.click();
    await page.waitForURL(BASE + "/ui/data_stream_module");
    await page.click("text=Add Data Stream");
    await page.fill("#field-title", XSS_TITLE);
    await page.fill("#field-reference", "boiler7.temperature");
    await page.fill("#field-content_type", "text/csv");
    await shot(page, "02-add-form");
    await page.click("button:has-text('Create')");
    await page.waitForURL(BASE + "/ui/data_stream_module/1");
    check((await text(page, ".flash")).includes("Created Data Stream 1"), "creation flash");
    check((await text(page, "h1")) === XSS_TITLE, "the title renders as text");
    await noScriptRan(page);
    await shot(page, "03-view");

    step("alice edits it");
    await page.click(".tabs >> text=Edit");
    await page.fill("#field-description", "hall 3, north wall");
    await page.fill("#field-version", "v2");
    await page.click("button:has-text('Save')");
    await page.waitForURL(BASE + "/ui/data_stream_module/1");
    check((await text(page, ".flash")) === "Saved.", "saved flash");
    check((await page.locator("dl.fields").innerText()).includes("hall 3, north wall"), "new description shown");

    step("a wrong value gets a message next to its field");
    await page.goto(BASE + "/ui/image_module/+add?type=Image");
    await page.fill("#field-title", "boiler photo");
    await page.fill("#field-width", "1.5");
    await page.click("button:has-text('Create')");
    const err = page.locator("#err-width");
    await err.waitFor();
    check((await err.innerText()).includes("whole number"), "width error says what is wrong");
    check((await page.getAttribute("#field-width", "aria-invalid")) === "true", "field marked invalid");
    check((await page.inputValue("#field-width")) === "1.5", "the typed value is kept");
    await shot(page, "04-validation-error");
    await page.fill("#field-width", "640");
    await page.click("button:has-text('Create')");
    await page.waitForURL(BASE + "/ui/image_module/1");

    step("a concurrent edit is shown as a conflict with the other change");
    await page.goto(BASE + "/ui/data_stream_module/1/+edit");
    const other = await context.newPage();
    await other.goto(BASE + "/ui/data_stream_module/1/+edit");
    await other.fill("#field-description", "changed in another tab");
    await other.click("button:has-text('Save')");
    await other.waitForURL(BASE + "/ui/data_stream_module/1");
    await other.close();
    await page.fill("#field-description", "hall 3, south wall");
    await page.click("button:has-text('Save')");
    await page.locator(".conflict").waitFor();
    check((await text(page, ".conflict")).includes("Someone else saved"), "conflict explained");
    check((await text(page, ".field.differs .stored")).includes("changed in another tab"), "the other change shown");
    await shot(page, "05-conflict");
    await page.click("button:has-text('Save')");
    await page.waitForURL(BASE + "/ui/data_stream_module/1");
    check((await page.locator("dl.fields").innerText()).includes("hall 3, south wall"), "second save wins");

    step("alice validates it from the workflow menu, with a comment");
    const options = await page.locator("#wf-transition option").allInnerTexts();
    check(options.join(",") === "Validate", "only fireable transitions offered, got " + options);
    await page.selectOption("#wf-transition", "validate");
    await page.fill("#wf-comment", "checked by alice");
    await page.click(".workflow button");
    await page.waitForURL(BASE + "/ui/data_stream_module/1");
    check((await text(page, ".flash")).includes("now Validated"), "transition flash");
    check((await text(page, ".badge")) === "Validated", "state badge");
    check((await page.locator(".tabs >> text=Edit").count()) === 0, "validated: no Edit tab for its owner");
    check((await page.locator("#wf-transition").count()) === 0, "no transition left for alice");

    step("alice adds a second stream and finds the first with the search box");
    await page.goto(BASE + "/ui/data_stream_module/+add?type=Data%20Stream");
    await page.fill("#field-title", "Pump pressure");
    await page.fill("#field-reference", "pump.pressure");
    await page.click("button:has-text('Create')");
    await page.waitForURL(BASE + "/ui/data_stream_module/2");

    step("alice appends a file to it from the edit form; the module tab shows its size");
    await page.goto(BASE + "/ui/data_stream_module/2/+edit");
    const upload = path.join(os.tmpdir(), "wendelin-upload-" + process.pid + ".csv");
    fs.writeFileSync(upload, "pressure,1.5\npressure,1.7\n");
    await page.setInputFiles("#upload-file", upload);
    await shot(page, "05a-edit-upload");
    await page.click(".upload button");
    await page.waitForURL(BASE + "/ui/data_stream_module/2/+module");
    fs.unlinkSync(upload);
    check((await text(page, "#size")) === "26", "26 bytes after the upload, got " + (await text(page, "#size")));
    const download = await page.locator(".module-view a[href$='/data']").first().getAttribute("href");
    const bytes = await page.evaluate(async (u) => (await fetch(u)).text(), download);
    check(bytes === "pressure,1.5\npressure,1.7\n", "download gives the uploaded bytes: " + bytes);
    await shot(page, "05b-module-tab");
    await page.click(".crumbs >> text=Data Streams");
    await page.waitForURL(BASE + "/ui/data_stream_module");
    check((await text(page, "#count")) === "1–2 of 2", "two streams listed");
    await page.keyboard.press("/");
    check(await page.evaluate(() => document.activeElement.id === "q"), "'/' focuses the search box");
    // Full-text indexing is asynchronous (within about a second): search until found.
    await retry("search for boiler", async () => {
      await page.fill("#q", "boiler");
      await page.press("#q", "Enter");
      await page.waitForFunction(() => document.querySelector("#count").innerText.trim() === "1–1 of 1", null, { timeout: 1500 });
    });
    check((await page.locator("table.listbox tbody tr").count()) === 1, "one row");
    check((await text(page, "table.listbox tbody tr")).includes("<script>"), "title as text in the listbox");
    check(page.url().includes("q=boiler"), "the search is in the URL (htmx pushes it): " + page.url());
    await noScriptRan(page);
    await shot(page, "06-listbox-search");

    step("column filter and sorting");
    await page.fill("#q", "");
    await page.fill("#f_reference", "pump");
    await page.waitForFunction(() =>
      document.querySelector("#count").innerText.trim() === "1–1 of 1" &&
      document.querySelector("table.listbox tbody").innerText.includes("Pump"));
    check((await text(page, "table.listbox tbody tr")).includes("Pump pressure"), "filtered by reference");
    await page.fill("#f_reference", "");
    await page.waitForFunction(() => document.querySelector("#count").innerText.trim() === "1–2 of 2");
    await page.click("th >> text=Title");
    await page.waitForFunction(() => document.querySelector("th[aria-sort=ascending]") !== null);
    let first = await text(page, "table.listbox tbody tr:first-child td:nth-child(2)");
    check(first.startsWith("Boiler"), "title ascending puts Boiler first, got " + first);
    await page.click("th >> text=Title");
    await page.waitForFunction(() => document.querySelector("th[aria-sort=descending]") !== null);
    first = await text(page, "table.listbox tbody tr:first-child td:nth-child(2)");
    check(first.startsWith("Pump"), "title descending puts Pump first, got " + first);
    await shot(page, "07-listbox-sorted");

    step("typing while the list refreshes is neither dropped nor overwritten");
    // A keystroke right after a response was swapped in, before htmx has wired up the new
    // content, still refreshes the list.
    await page.evaluate(() => document.addEventListener("htmx:afterSwap", () => {
      const f = document.querySelector("#f_reference");
      f.value = "pump";
      f.dispatchEvent(new Event("input", { bubbles: true }));
    }, { once: true }));
    await page.fill("#f_reference", "boi");
    await page.waitForFunction(() =>
      document.querySelector("#count").innerText.trim() === "1–1 of 1" &&
      document.querySelector("table.listbox tbody").innerText.includes("Pump"));
    check(page.url().includes("f_reference=pump"), "the late keystroke's search is in the URL: " + page.url());
    // Text typed while a request is on its way stays in the box, and the list follows it.
    await page.evaluate(() => document.addEventListener("htmx:beforeSwap", () => {
      const f = document.querySelector("#f_reference");
      f.value = "boiler";
      f.dispatchEvent(new Event("input", { bubbles: true }));
    }, { once: true }));
    await page.fill("#f_reference", "pum");
    await page.waitForFunction(() =>
      document.querySelector("#count").innerText.trim() === "1–1 of 1" &&
      document.querySelector("table.listbox tbody").innerText.includes("Boiler"));
    check((await page.inputValue("#f_reference")) === "boiler", "typed text kept: " + (await page.inputValue("#f_reference")));
    await page.fill("#f_reference", "");
    await page.waitForFunction(() => document.querySelector("#count").innerText.trim() === "1–2 of 2");

    step("bulk action: validate the selected row");
    await page.check("input[name=path][value='data_stream_module/2']");
    await page.selectOption("#bulk-transition", "validate");
    await page.click(".bulk button");
    await page.waitForURL(/data_stream_module/);
    check((await text(page, ".flash")).includes("done on 1 document"), "bulk flash: " + (await text(page, ".flash")));
    check((await text(page, "table.listbox")).split("validated").length - 1 === 2, "both validated");

    step("history tab shows the transition and its comment");
    await page.goto(BASE + "/ui/data_stream_module/1/+history");
    const history = await text(page, "table.history tbody");
    check(history.includes("validate") && history.includes("checked by alice") && history.includes("alice"), "history row: " + history);
    await noScriptRan(page);
    await shot(page, "08-history");

    step("alice gives carol a local role");
    await page.click(".tabs >> text=Local roles");
    await page.fill("#principal", "carol");
    await page.check(".roles-new input[value=Assignee]");
    await page.click("button:has-text('Give roles')");
    await page.waitForURL(BASE + "/ui/data_stream_module/1/+roles");
    check((await text(page, ".flash")).includes("user:carol now has Assignee"), "roles flash");
    check((await page.locator("legend", { hasText: "user:carol" }).count()) === 1, "carol listed");
    await noScriptRan(page);
    await shot(page, "09-local-roles");

    step("a tablet-sized window still shows the listbox");
    await page.setViewportSize({ width: 820, height: 1180 });
    await page.goto(BASE + "/ui/data_stream_module");
    await shot(page, "10-listbox-tablet");
    await page.setViewportSize({ width: 1280, height: 860 });

    step("alice logs out");
    await logout(page);
    await shot(page, "11-login");

    step("bob, without roles, sees none of it");
    await login(page, "bob");
    const bobTile = page.locator(".tile", { hasText: "Data Streams" });
    check((await bobTile.locator(".tile-count").innerText()).trim() === "0", "bob counts 0 streams");
    await page.goto(BASE + "/ui/data_stream_module?q=boiler");
    check((await text(page, "#count")) === "No documents", "bob finds nothing");
    const resp = await page.goto(BASE + "/ui/data_stream_module/1");
    check(resp.status() === 404, "bob gets 404 for the stream, got " + resp.status());
    check((await text(page, "h1")) === "Not found", "404 page in the layout");
    check(!(await page.content()).includes("Boiler 7"), "nothing of the stream leaks");
    await shot(page, "12-bob-404");
    await logout(page);

    step("carol, given Assignee on it, sees exactly that stream");
    await login(page, "carol");
    await page.goto(BASE + "/ui/data_stream_module");
    check((await text(page, "#count")) === "1–1 of 1", "carol sees one stream");
    check((await text(page, "table.listbox tbody")).includes("Boiler 7"), "the one alice shared");
    await noScriptRan(page);
    await logout(page);

    step("without JavaScript the same pages still work (plain links and forms)");
    const plainProfile = fs.mkdtempSync(path.join(os.tmpdir(), "wendelin-chromium-nojs-"));
    const plain = await chromium.launchPersistentContext(plainProfile, {
      executablePath: process.env.CHROMIUM,
      headless: true,
      javaScriptEnabled: false,
      viewport: { width: 1280, height: 860 },
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const p2 = plain.pages()[0] || (await plain.newPage());
      await login(p2, "alice");
      await p2.goto(BASE + "/ui/data_stream_module");
      await p2.fill("#q", "pump");
      await p2.press("#q", "Enter");
      await p2.waitForURL(/q=pump/);
      check((await text(p2, "#count")) === "1–1 of 1", "search by submitting the form");
      await p2.click("table.listbox tbody a");
      await p2.waitForURL(BASE + "/ui/data_stream_module/2");
      check((await text(p2, "h1")) === "Pump pressure", "row link opens the document");
      // A new stream, and a file appended to it by the plain form (multipart POST).
      await p2.goto(BASE + "/ui/data_stream_module/+add?type=Data%20Stream");
      await p2.fill("#field-title", "Flow without scripts");
      await p2.click("button:has-text('Create')");
      await p2.waitForURL(/data_stream_module\/\d+$/);
      const plainDoc = p2.url();
      await p2.goto(plainDoc + "/+edit");
      // A second tab loads the same form now, while the stream is still empty.
      const p3 = await plain.newPage();
      await p3.goto(plainDoc + "/+edit");
      const plainFile = path.join(os.tmpdir(), "wendelin-upload-nojs-" + process.pid + ".csv");
      fs.writeFileSync(plainFile, "flow,3\n");
      await p2.setInputFiles("#upload-file", plainFile);
      await p2.click(".upload button");
      await p2.waitForURL(plainDoc + "/+module");
      check((await text(p2, "#size")) === "7", "7 bytes after the plain upload, got " + (await text(p2, "#size")));
      check((await text(p2, ".flash")).includes("Appended 7 bytes"), "flash: " + (await text(p2, ".flash")));
      // The second tab's form still says the stream is empty: its upload is refused.
      await p3.setInputFiles("#upload-file", plainFile);
      await p3.click(".upload button");
      await p3.waitForLoadState();
      check((await p3.content()).includes("holds 7 bytes"), "stale upload refused: " + (await text(p3, "body")));
      await p3.close();
      fs.unlinkSync(plainFile);
      await p2.goto(plainDoc + "/+module");
      check((await text(p2, "#size")) === "7", "the refused upload changed nothing");
      await logout(p2);
    } finally {
      await plain.close();
      fs.rmSync(plainProfile, { recursive: true, force: true });
    }

    if (process.exitCode) throw new Error("a dialog opened: a script ran");
    check(cspViolations.length === 0, "the UI broke its Content-Security-Policy: " + cspViolations.join(" | "));
    console.log("ALL STEPS PASSED");
  } catch (e) {
    await shot(page, "99-failure").catch(() => {});
    console.log("page at failure: " + page.url());
    throw e;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
