// Real-browser test of /ui against what other agents can send it: bursts of new channels and
// tasks, more open tasks than the board reads, names and titles with bidirectional overrides,
// forged task failures, crafted /ui links, server strings that are JavaScript property names, and
// the keyboard around the thread overlay. Debian's chromium driven by playwright-core against
// the real server binary, as in ui.test.mjs. Run by tests/ui_hardening_browser.rs, or alone:
//
//   WORKSHOP_BIN=target/release/workshop node tests/browser/hardening.test.mjs
//
// Environment: WORKSHOP_BIN (required); WORKSHOP_TEST_DIR a scratch folder (else a temp dir);
// UI_SCREENSHOTS where screenshots go (else target/ui-screenshots); CHROMIUM (default
// /usr/bin/chromium); KEEP_GOING=1 runs every step even after one failed (each step sets up what
// it needs), to see which steps an older build fails.
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cspState } from "./csp.mjs";
import { assert, launchChromium, publish as publishTo, request, run, sleep, startServer, step, stopServer, tally, testDir } from "./harness.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BIN = process.env.WORKSHOP_BIN;
const SHOTS = path.resolve(process.env.UI_SCREENSHOTS || path.join(REPO, "target/ui-screenshots"));
const { dir: DIR, own: OWN_DIR } = testDir("workshop-ui-hardening-");
const DEADLINE_MS = 300_000;
const KEEP_GOING = !!process.env.KEEP_GOING;

if (!BIN) { console.error("set WORKSHOP_BIN to the workshop server binary"); process.exit(2); }
mkdirSync(SHOTS, { recursive: true });

// ---- the server ---------------------------------------------------------------------------------
let server = null;
const serverLog = [];
const startHub = () => startServer(BIN, {
  cwd: DIR,
  env: { ...process.env, PORT: "0", HOST: "127.0.0.1", DB_PATH: path.join(DIR, "w.db"), BLOBS_DIR: path.join(DIR, "blobs") },
  onStdout: (line) => serverLog.push("[server] " + line),
  onStderr: (line) => serverLog.push("[server!] " + line),
});

// ---- helpers ------------------------------------------------------------------------------------
let BASE = "";
const http = (method, p, body, raw) => request(BASE, method, p, body, raw);
const publish = (ch, msg) => publishTo(BASE, ch, msg);
async function shot(page, name) { await page.screenshot({ path: path.join(SHOTS, name + ".png") }); }
// Runs `fn(i)` for i in 0..n, `width` at a time.
async function pool(n, width, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < n) await fn(next++); }));
}
async function createTask(body) {
  const r = await http("POST", "/tasks", body);
  if (r.status !== 201) throw new Error(`create task answered ${r.status}: ${r.text}`);
  return r.data.id;
}
// KEEP_GOING: a failed step is reported and the next one runs.
const check = KEEP_GOING ? (name, fn) => step(name, fn).catch(() => { failures++; }) : step;
let failures = 0;

let browser;
const pageErrors = [];
const cspViolations = [];
// A new page on /ui (or `where`), its errors recorded, once its stream is live.
async function openUi(where = "/ui", viewport = { width: 1400, height: 900 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (err) => pageErrors.push(where + ": " + err));
  page.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
  await page.goto(BASE + where);
  return page;
}
const live = (page) => page.locator('#conn[data-state="live"]').waitFor();
// Counts, in the page, how often `selector`'s children are replaced (each redraw is one record).
const countRedraws = (page, selector) => page.evaluate((sel) => {
  window.__redraws = 0;
  new MutationObserver((records) => { window.__redraws += records.length; }).observe(document.querySelector(sel), { childList: true });
}, selector);
// Records the page's longest event-loop stall from here on (a 50 ms timer that fires late).
const watchStalls = (page) => page.evaluate(() => {
  window.__stall = 0;
  let last = performance.now();
  setInterval(() => { const now = performance.now(); window.__stall = Math.max(window.__stall, now - last - 50); last = now; }, 50);
});

async function main() {
  await step("ui.html's CSP hash matches its script", () => {
    const { want, have } = cspState();
    assert(have === want, `ui.html pins sha256-${have}, the script hashes to sha256-${want}: run \`node tests/browser/csp.mjs --write\``);
  });

  await step("server starts", async () => {
    server = await startHub();
    BASE = `http://127.0.0.1:${server.port}`;
    await publish("general", { from: "human.x", type: "msg.text", body: { text: "hello" } });
  });
  browser = await launchChromium();

  await check("a burst of new channels redraws the sidebar a few times, not once per channel", async () => {
    const N = 800;
    const page = await openUi();
    await live(page);
    await countRedraws(page, "#chans");
    await watchStalls(page);
    const t0 = Date.now();
    await pool(N, 8, (i) => publish("burst-" + String(i).padStart(4, "0"), { from: "gen.bot", type: "msg.text", body: { text: "hi " + i } }));
    const sent = Date.now() - t0;
    await page.locator(`#chans .chan[data-ch="burst-${String(N - 1).padStart(4, "0")}"]`).waitFor({ timeout: 60_000 });
    await page.waitForFunction((n) => document.querySelectorAll('#chans .chan[data-ch^="burst-"]').length === n, N, { timeout: 60_000 });
    const drawn = Date.now() - t0;
    const { redraws, stall } = await page.evaluate(() => ({ redraws: window.__redraws, stall: Math.round(window.__stall) }));
    console.log(`     ${N} channels published in ${sent} ms, all listed after ${drawn} ms; ${redraws} sidebar redraws, longest stall ${stall} ms`);
    // One redraw per channel (the old page) is N; coalesced, a redraw every 100 ms at most.
    assert(redraws < N / 4, `${redraws} sidebar redraws for ${N} new channels`);
    assert(stall < 2000, `the page stalled for ${stall} ms`);
    await page.context().close();
  });

  await check("a burst of task.created: a few task reads and board redraws, not one per task", async () => {
    const N = 300;
    const page = await openUi();
    await live(page);
    const reads = [];
    page.on("request", (req) => { const p = new URL(req.url()).pathname; if (/^\/tasks\/[^/]+$/.test(p)) reads.push(p); });
    await countRedraws(page, "#lanes");
    await pool(N, 8, (i) => createTask({ from: "gen.bot", title: `burst task ${i}`, ch: "burst-tasks" }));
    const last = await createTask({ from: "gen.bot", title: "the last of the burst", ch: "burst-tasks" });
    await page.locator(`.card[data-task-id="${last}"]`).waitFor({ timeout: 30_000 });
    await sleep(1500);   // rounds still under way would show here
    const redraws = await page.evaluate(() => window.__redraws);
    console.log(`     ${N + 1} tasks created: ${reads.length} task reads, ${redraws} board redraws`);
    assert(reads.length <= 30, `${reads.length} GET /tasks/:id for ${N + 1} task.created`);
    assert(redraws <= 60, `${redraws} board redraws for ${N + 1} task.created`);
    await page.context().close();
  });

  await check("task.* messages whose task-id is no task id cost no request", async () => {
    const page = await openUi();
    await live(page);
    const reads = [];
    page.on("request", (req) => { const p = new URL(req.url()).pathname; if (p.startsWith("/tasks/")) reads.push(p); });
    for (const id of ["nope", "../../status", "01ARZ3NDEKTSV4RRFFQ69G5FAVX", "81ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ3NDEKTSV4RRFFQ69G5FAU"]) {
      await publish("forged", { from: "mallory", type: "task.updated", body: { "task-id": id, note: "made up" } });
    }
    await publish("forged", { from: "mallory", type: "msg.text", body: { text: "sentinel after the forged ids" } });
    await page.locator("#feed .row .b", { hasText: "sentinel after the forged ids" }).waitFor();
    await sleep(800);   // a task read is made 150 ms after its message
    assert(reads.length === 0, "task reads for made-up ids: " + reads.join(", "));
    await page.context().close();
  });

  await check("more open tasks than the board reads: it says 200+ and that it shows only some", async () => {
    await pool(210, 8, (i) => createTask({ from: "gen.bot", title: `many ${i}`, ch: "many" }));
    const open = (await http("GET", "/tasks?status=open&n=1000")).data.length;
    const page = await openUi();
    await live(page);
    const lane = page.locator('.lane[data-status="open"]');
    await lane.locator(".card").first().waitFor();
    const header = await page.textContent("#tcount");
    const count = await lane.locator("h3 .k").textContent();
    const cards = await lane.locator(".card").count();
    console.log(`     ${open} open on the server; the board says "${header}", its lane "${count}", with ${cards} cards`);
    assert(/^200\+ open/.test(header), "board header: " + header);
    assert(count === "200+", "open lane count: " + count);
    assert(cards === 200, cards + " open cards");
    await lane.locator(".more", { hasText: "showing 200 of more than 200 open tasks" }).waitFor();
    await shot(page, "h1-board-200-plus");
    // live: one more is counted and the count stays a lower bound
    await createTask({ from: "gen.bot", title: "one more, live", ch: "many" });
    await page.locator("#tcount", { hasText: /^201\+ open/ }).waitFor();
    await page.context().close();
  });

  await check("bidirectional overrides show as escapes, and a right-to-left name cannot reorder its neighbour", async () => {
    const RLO = "\u202e";
    const blob = await http("POST", "/files", undefined, "MZ not really an exe");
    await publish("bidi", { from: "f.bot", type: "file.uploaded", files: [blob.data.hash], body: { name: `invoice${RLO}fdp.exe`, size: 20 } });
    await publish("bidi", { from: "f.bot", type: `msg.${RLO}txet`, body: { text: `pay ${RLO}0001 now` } });
    await createTask({ from: "f.bot", title: `report${RLO}gnp.exe`, ch: "bidi" });
    // Hebrew letters are no control: the name shows as it is, but isolated: unisolated, its last
    // letters would pull the "#42" after it to their left
    const r = await http("POST", "/presence", { from: "bot.שלום", channels: ["42"] });
    assert(r.status === 200, "presence " + r.status + " " + r.text);
    const page = await openUi();
    await live(page);
    const link = page.locator("#feed .row .fl a", { hasText: "invoice" });
    await link.waitFor();
    const linkText = await link.textContent();
    assert(linkText === "↓invoice\\u{202e}fdp.exe", "file link text: " + JSON.stringify(linkText));
    assert((await link.getAttribute("download")) === "invoice_fdp.exe", "saved as " + JSON.stringify(await link.getAttribute("download")));
    assert((await link.getAttribute("href")).endsWith("?name=invoice_fdp.exe"), "href " + (await link.getAttribute("href")));
    const title = await page.locator(".card .ti", { hasText: "report" }).textContent();
    assert(title === "report\\u{202e}gnp.exe", "task title: " + JSON.stringify(title));
    const badge = await page.locator("#feed .row .badge", { hasText: "txet" }).textContent();
    assert(badge === "msg.\\u{202e}txet", "type: " + JSON.stringify(badge));
    const body = page.locator("#feed .row .b", { hasText: "pay" });
    assert((await body.textContent()) === "pay \\u{202e}0001 now", "body: " + JSON.stringify(await body.textContent()));
    await body.click();   // the JSON view escapes it as JSON does
    await page.locator("#feed .detail", { hasText: '"text": "pay \\u202e0001 now"' }).waitFor();
    const hidden = await page.evaluate(() => (document.body.innerText.match(/[\u202a-\u202e\u2066-\u2069]/g) || []).length);
    assert(hidden === 0, hidden + " bidirectional controls in the page's text");
    const agent = page.locator("#presence .agent", { hasText: "bot.שלום" });
    await agent.waitFor();
    const order = await agent.evaluate((el) => ({ name: el.querySelector(".a").getBoundingClientRect().right, chans: el.querySelector(".c").getBoundingClientRect().left }));
    assert(order.chans >= order.name, `"#42" drawn left of the name before it: ${JSON.stringify(order)}`);
    await shot(page, "h2-bidi-escaped");
    await page.context().close();
  });

  await check("a failed task's last failure comes from its channel and its claimer, not from anyone anywhere", async () => {
    const id = await createTask({ from: "lead", title: "migrate the db", ch: "jobs-fail", max_attempts: 1 });
    const claim = await http("POST", `/tasks/${id}/claim`, { from: "worker.w" });
    assert(claim.status === 200, "claim " + claim.status);
    const gone = await http("POST", `/tasks/${id}/abandon`, { from: "worker.w", reason: "disk full on worker.w" });
    assert(gone.status === 200 && gone.data.status === "failed", "abandon: " + gone.text);
    const forge = (ch, reason) => publish(ch, { from: "mallory", type: "task.error", body: { "task-id": id, reason } });
    await forge("random", "forged on another channel");
    await forge("jobs-fail", "forged by a stranger");
    const page = await openUi();
    await live(page);
    const why = page.locator(`.lane[data-status="failed"] .card[data-task-id="${id}"] .lastfail`);
    await why.waitFor();
    assert((await why.textContent()) === "last failure: disk full on worker.w", "before: " + (await why.textContent()));
    // and live: a forged one after the page loaded, then a message to know it has been seen
    await forge("jobs-fail", "forged live");
    await publish("jobs-fail", { from: "lead", type: "msg.text", body: { text: "after the live forgery" } });
    await page.locator("#feed .row .b", { hasText: "after the live forgery" }).waitFor();
    await sleep(500);
    assert((await why.textContent()) === "last failure: disk full on worker.w", "after: " + (await why.textContent()));
    await page.context().close();
  });

  await check("crafted /ui links open every channel with a notice, and never read as offline", async () => {
    const links = ["/ui#%E0%A4%A", "/ui#no%20such%20channel!", "/ui#..", "/ui?ch=bad%20name", "/ui?ch=" + "x".repeat(65)];
    for (const link of links) {
      const page = await openUi(link);
      await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 }).catch(async () => {
        throw new Error(`${link}: the stream is "${await page.textContent("#conn")}", not live`);
      });
      await page.locator(".toast.err", { hasText: "is no channel name" }).waitFor();
      const seen = await page.evaluate(() => ({ view: document.getElementById("viewname").textContent, ch: document.getElementById("c-ch").value, url: location.pathname + location.search + location.hash }));
      assert(seen.view === "* all" && seen.ch === "general" && seen.url === "/ui", `${link}: ${JSON.stringify(seen)}`);
      await page.locator('#chans .chan[data-ch="general"]').waitFor();
      const errors = pageErrors.filter((e) => e.startsWith(link + ": "));
      assert(errors.length === 0, errors.join(" | "));
      await page.context().close();
    }
    // a good link still opens its channel
    const page = await openUi("/ui#general");
    await live(page);
    assert((await page.textContent("#viewname")) === "#general", "#general link: " + (await page.textContent("#viewname")));
    await page.context().close();
  });

  await check("server strings that are property names: x.constructor is no image, #__proto__ keeps its mute", async () => {
    const blob = await http("POST", "/files", undefined, "not an image at all");
    const hash = blob.data.hash;
    await publish("proto", { from: "f.bot", type: "file.uploaded", files: [hash], body: { name: "x.constructor", size: 19 } });
    const long = "a-very-long-file-name-".repeat(20) + ".txt";
    await publish("proto", { from: "f.bot", type: "file.uploaded", files: [hash], body: { name: long, size: 19 } });
    await publish("__proto__", { from: "f.bot", type: "msg.text", body: { text: "in the channel called __proto__" } });
    const page = await openUi();
    const fetched = [];
    page.on("request", (req) => { if (new URL(req.url()).pathname.startsWith("/files/")) fetched.push(req.url()); });
    await page.reload();
    await live(page);
    const row = page.locator("#feed .row", { has: page.locator(".fl a", { hasText: "x.constructor" }) });
    await row.waitFor();
    await sleep(500);   // a preview is fetched as the row is drawn
    assert(await row.locator("img.thumb").count() === 0, "x.constructor got an image preview");
    assert(fetched.length === 0, "files fetched for previews: " + fetched.join(", "));
    const longRow = page.locator("#feed .row", { has: page.locator(".fl a", { hasText: "a-very-long" }) });
    const edges = await longRow.evaluate((r) => ({ row: r.getBoundingClientRect().right, link: r.querySelector(".fl").getBoundingClientRect().right }));
    assert(edges.link <= edges.row + 1, "a long file name runs off its row: " + JSON.stringify(edges));
    // mute and hide #__proto__, then reload: both kept
    await page.click('#chans .chan[data-ch="__proto__"]');
    await page.click("#notify-btn");
    await page.locator('#notify input[data-pref="mute"]').check();
    await page.locator('#notify input[data-pref="hide"]').check();
    await page.keyboard.press("Escape");
    await page.reload();
    await live(page);
    await page.locator('#chans .chan.muted[data-ch="__proto__"]').waitFor({ timeout: 5_000 });
    const stored = await page.evaluate(() => localStorage.getItem("workshop.notify"));
    assert(stored === '{"__proto__":{"mute":true,"hide":true}}', "stored: " + stored);
    await page.context().close();
  });

  await check("keyboard: j/k do not move rows hidden behind the thread; channels and lanes take Tab and Enter", async () => {
    const root = await publish("kb", { from: "a.bot", type: "msg.text", body: { text: "the thread's root" } });
    await publish("kb", { from: "b.bot", type: "msg.text", body: { text: "a reply" }, reply_to: root });
    await createTask({ from: "a.bot", title: "a task to see a lane", ch: "kb" });
    const page = await openUi("/ui#kb");
    await live(page);
    await page.locator("#feed .row .replies").first().click();
    await page.locator("#thread").waitFor();
    const before = await page.evaluate(() => window.__workshop.selected);
    for (const key of ["j", "j", "k", "Enter", "r"]) await page.keyboard.press(key);
    const after = await page.evaluate(() => ({ selected: window.__workshop.selected, replying: !document.getElementById("replying").classList.contains("hidden") }));
    assert(after.selected === before && !after.replying, `keys behind the thread: ${JSON.stringify({ before, after })}`);
    await page.keyboard.press("Escape");
    await page.locator("#thread").waitFor({ state: "detached" });
    await page.keyboard.press("j");   // and back at the feed, they work
    assert(await page.evaluate(() => window.__workshop.selected) !== before, "j moves the selection once the thread is closed");
    // Tab from the last button of the top bar reaches the channel list; Enter opens a channel
    await page.focus("#help-btn");
    await page.keyboard.press("Tab");
    const tabbed = await page.evaluate(() => document.activeElement.matches("#chans .chan") && document.activeElement.dataset.ch);
    assert(tabbed === "", "Tab after the top bar reached " + (await page.evaluate(() => document.activeElement.outerHTML.slice(0, 80))));
    await page.keyboard.press("Enter");
    assert((await page.textContent("#viewname")) === "* all", "Enter on * all");
    await page.focus('#chans .chan[data-ch="kb"]');
    await page.keyboard.press("Enter");
    await page.locator("#viewname", { hasText: "#kb" }).waitFor({ timeout: 5_000 });
    assert(await page.evaluate(() => document.activeElement.dataset.ch) === "kb", "the focus stays on #kb after the sidebar redraw");
    // Tab from the board's last header button reaches the first lane's fold; Enter folds and unfolds
    await page.focus("#t-refresh");
    await page.keyboard.press("Tab");
    const fold = await page.evaluate(() => document.activeElement.closest(".lane") && document.activeElement.closest(".lane").dataset.status);
    assert(fold === "open", "Tab after the board's header reached " + (await page.evaluate(() => document.activeElement.outerHTML.slice(0, 80))));
    await page.keyboard.press("Enter");
    await page.locator('.lane.collapsed[data-status="open"]').waitFor({ timeout: 5_000 });
    await page.keyboard.press("Enter");
    await page.locator('.lane[data-status="open"]:not(.collapsed)').waitFor({ timeout: 5_000 });
    await page.context().close();
  });

  await step("no script error, no CSP violation", async () => {
    assert(pageErrors.length === 0, "page errors: " + pageErrors.join(" | "));
    assert(cspViolations.length === 0, "CSP violations: " + cspViolations.join(" | "));
  });
  if (failures) throw new Error(`${failures} step(s) failed`);
}

// ---- run ----------------------------------------------------------------------------------------
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (server) await stopServer(server).catch(() => {});
  if (OWN_DIR) rmSync(DIR, { recursive: true, force: true });
}
const t0 = Date.now();
const failed = await run(main, { deadlineMs: DEADLINE_MS, cleanup, onFailure: async () => {
  console.log("---- last server output ----\n" + serverLog.slice(-40).join("\n"));
} });
console.log(`browser: ${tally(failed)}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
