// Real-browser test of the /ui parts of issue 17: "N replies" on a message, the thread view, and
// the divider where retention removed messages. Run by tests/ui_mesh_browser.rs, which starts the
// server (with messages retention really deleted) and passes, in the environment:
//   WORKSHOP_URL  the server;  ROOT  a message on #general with two replies (one of them replied
//   to on #elsewhere);  GONE  a channel whose only messages retention deleted;
//   CHROMIUM (default /usr/bin/chromium);  UI_SCREENSHOTS  where screenshots go (optional).
import { mkdirSync } from "node:fs";
import path from "node:path";
import { assert, launchChromium } from "./harness.mjs";

const BASE = process.env.WORKSHOP_URL;
const ROOT = process.env.ROOT;
const GONE = process.env.GONE;
const SHOTS = process.env.UI_SCREENSHOTS;
if (!BASE || !ROOT || !GONE) { console.error("set WORKSHOP_URL, ROOT and GONE"); process.exit(2); }

const pageErrors = [];
const shot = async (page, name) => {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + ".png") });
};

const browser = await launchChromium();
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) pageErrors.push(m.text()); });

  // "N replies" on the root, counted from what the page has loaded
  await page.goto(BASE + "/ui");
  const link = `#feed .row[data-id="${ROOT}"] .replies`;
  await page.waitForSelector(link);
  assert((await page.textContent(link)) === "2 replies", "root shows 2 replies, got " + await page.textContent(link));

  // clicking opens the whole thread, from the server: root, both replies, and the reply to a reply
  await page.click(link);
  await page.waitForSelector("#thread .tlist .row");
  const ids = await page.$$eval("#thread .tlist .row", (rows) => rows.map((r) => r.dataset.id));
  assert(ids.length === 4 && ids[0] === ROOT, "thread rows " + JSON.stringify(ids));
  assert(await page.isVisible(`#thread .row.sel[data-id="${ROOT}"]`), "the opened message is marked");
  await shot(page, "mesh-thread");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#thread", { state: "detached" });

  // a reply arriving live updates the count
  await page.evaluate(async (root) => {
    const r = await fetch("/ch/general", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ from: "ui.test", type: "msg.text", body: { text: "late answer" }, reply_to: root }) });
    if (r.status !== 201) throw new Error("publish answered " + r.status);
  }, ROOT);
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "3 replies", link);

  // a channel whose messages retention deleted: the stream says so, and the page marks the place
  await page.goto(BASE + "/ui?ch=" + encodeURIComponent(GONE));
  await page.waitForSelector("#feed .gap");
  const label = await page.textContent("#feed .gap");
  assert(label === "older messages were removed by retention", "divider text " + JSON.stringify(label));
  await page.evaluate(async (ch) => {
    const r = await fetch("/ch/" + ch, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ from: "ui.test", type: "msg.text", body: { text: "after the gap" } }) });
    if (r.status !== 201) throw new Error("publish answered " + r.status);
  }, GONE);
  await page.waitForSelector("#feed .row");
  const after = await page.evaluate(() => {
    const gap = document.querySelector("#feed .gap"), row = document.querySelector("#feed .row");
    return Boolean(gap.compareDocumentPosition(row) & Node.DOCUMENT_POSITION_FOLLOWING);
  });
  assert(after, "the new message is drawn after the divider");
  await shot(page, "mesh-gap");
  assert(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  console.log("ok: replies link, thread view, live reply count, retention divider");
} catch (e) {
  if (page && SHOTS) await shot(page, "mesh-FAILED").catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
