// Real-browser test of issue 17's UI parts (parts 3 and 5): the text filter's "search history"
// action, which asks the server's full-text index, and the "locks" panel, kept current from the
// live stream. Debian's chromium driven by playwright-core against the real server binary, as in
// ui.test.mjs (whose launcher this follows). Run by tests/ui_mesh2_browser.rs, or alone:
//
//   WORKSHOP_BIN=target/release/workshop node tests/browser/mesh2.test.mjs
//
// Environment: WORKSHOP_BIN (required); WORKSHOP_TEST_DIR a scratch folder (else a temp dir);
// UI_SCREENSHOTS where screenshots go (else target/ui-screenshots); CHROMIUM (default
// /usr/bin/chromium).
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cspState } from "./csp.mjs";
import { assert, launchChromium, publish as publishTo, request, run, startServer, step, stopServer, tally, testDir } from "./harness.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BIN = process.env.WORKSHOP_BIN;
const SHOTS = path.resolve(process.env.UI_SCREENSHOTS || path.join(REPO, "target/ui-screenshots"));
const { dir: DIR, own: OWN_DIR } = testDir("workshop-ui-mesh2-");
const DEADLINE_MS = 180_000;

if (!BIN) { console.error("set WORKSHOP_BIN to the workshop server binary"); process.exit(2); }
mkdirSync(SHOTS, { recursive: true });

// ---- the server ---------------------------------------------------------------------------------
let server = null;
const serverLog = [];
const startMeshServer = () => startServer(BIN, {
  cwd: DIR,
  env: { ...process.env, PORT: "0", HOST: "127.0.0.1", DB_PATH: path.join(DIR, "w.db"), BLOBS_DIR: path.join(DIR, "blobs") },
  onStdout: (line) => serverLog.push("[server] " + line),
  onStderr: (line) => serverLog.push("[server!] " + line),
});

// ---- helpers ------------------------------------------------------------------------------------
let BASE = "";
const http = (method, p, body) => request(BASE, method, p, body);
const publish = (ch, msg) => publishTo(BASE, ch, msg);
async function lock(action, body) {
  const r = await http("POST", "/locks/" + action, body);
  if (r.status !== 200) throw new Error(`${action} answered ${r.status}: ${r.text}`);
}
async function shot(page, name) { await page.screenshot({ path: path.join(SHOTS, name + ".png") }); }

let browser, page;
const searches = [];
const pageErrors = [];
const cspViolations = [];
const ids = {};

async function main() {
  await step("ui.html's CSP hash matches its script", () => {
    const { want, have } = cspState();
    assert(have === want, `ui.html pins sha256-${have}, the script hashes to sha256-${want}: run \`node tests/browser/csp.mjs --write\``);
  });

  await step("server starts; seed messages and a lock", async () => {
    server = await startMeshServer();
    BASE = `http://127.0.0.1:${server.port}`;
    ids.weak = await publish("jobs", { from: "worker.a", type: "job.log", body: { text: "the disk of the build box was found full this morning, after the backup ran" } });
    ids.strong = await publish("jobs", { from: "worker.b", type: "job.error", body: { error: "disk full", detail: "disk full on /var" } });
    ids.ops = await publish("ops", { from: "worker.c", type: "alert.disk", body: { text: "disk full" } });
    await publish("general", { from: "human.x", type: "msg.text", body: { text: "lunch?" } });
    await lock("acquire", { from: "coder.alice", name: "src/main.rs", ttl_s: 600, note: "refactoring the router" });
  });

  browser = await launchChromium();
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on("request", (req) => { if (new URL(req.url()).pathname === "/search") searches.push(req.url()); });
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });

  await step("the locks panel lists the held lock", async () => {
    await page.goto(BASE + "/ui");
    await page.locator('#conn[data-state="live"]').waitFor();
    const held = page.locator('#locks .lock[data-name="src/main.rs"]');
    await held.waitFor();
    assert((await held.textContent()).includes("coder.alice"), "holder shown: " + await held.textContent());
    assert((await held.getAttribute("title")).includes("refactoring the router"), "note in the tooltip");
    assert((await page.locator("#lcount").textContent()) === "1", "count 1");
  });

  await step("locks acquired and released elsewhere show up live", async () => {
    // The panel is also re-read every 10 s (ui.html's setInterval(refreshLocks, 10000)), which
    // would show both changes even with the live path broken. So act right after one of those
    // periodic reads (no lock event is pending here, so the next GET /locks is the poll) and
    // allow each change LIVE_MS: both land long before the next poll, which is 10 s away.
    // A slower machine can only let a poll mask a broken live path, never fail a working one.
    const LIVE_MS = 3_000;
    const isLocks = (r) => new URL(r.url()).pathname === "/locks" && r.request().method() === "GET";
    await page.waitForResponse(isLocks, { timeout: 15_000 });
    const polled = Date.now();
    await lock("acquire", { from: "coder.bob", name: "docs/api.md", ttl_s: 60 });
    await page.locator('#locks .lock[data-name="docs/api.md"]', { hasText: "coder.bob" }).waitFor({ timeout: LIVE_MS });
    await shot(page, "mesh2-01-locks");
    await lock("release", { from: "coder.alice", name: "src/main.rs" });
    await page.locator('#locks .lock[data-name="src/main.rs"]').waitFor({ state: "detached", timeout: LIVE_MS });
    const took = Date.now() - polled;
    assert((await page.locator("#lcount").textContent()) === "1", "count back to 1");
    if (took > 9_000) console.log(`  (both changes took ${took} ms after the poll: a poll may have shown them)`);
  });

  await step("search history asks the server and lists the best match first", async () => {
    await page.locator("#q").fill("disk full");
    await page.locator("#q-search").click();
    const hits = page.locator("#results .hit");
    await page.locator("#results .ph", { hasText: "3 stored messages" }).waitFor();
    assert(searches.length === 1 && searches[0].includes("q=disk+full"), "one GET /search: " + searches.join(", "));
    const order = await hits.evaluateAll((els) => els.map((e) => e.dataset.id));
    // Both short "disk full" messages outrank the long one that merely has both words.
    assert(order.length === 3, "three hits: " + order.join(", "));
    assert([ids.strong, ids.ops].every((id) => order.slice(0, 2).includes(id)), "best matches first: " + order.join(", "));
    assert(order[2] === ids.weak, "the weakest match last: " + order.join(", "));
    await hits.first().click();
    await page.locator("#results .detail", { hasText: "\"disk full" }).waitFor();
    await shot(page, "mesh2-02-search");
  });

  await step("Enter searches within the open channel; no match says so; Escape closes", async () => {
    await page.locator('#chans .chan[data-ch="ops"]').click();
    await page.locator("#q").fill("disk full");
    await page.locator("#q").press("Enter");
    await page.locator("#results .ph", { hasText: "1 stored message with “disk full” in #ops" }).waitFor();
    assert(searches.at(-1).includes("ch=ops"), "channel sent: " + searches.at(-1));
    assert((await page.locator("#results .hit").getAttribute("data-id")) === ids.ops, "the ops message");
    await page.locator("#q").fill("zebra crossing");
    await page.locator("#q").press("Enter");
    await page.locator("#results .empty", { hasText: "no stored message has every word" }).waitFor();
    await page.locator("#q").press("Escape");
    await page.locator("#results").waitFor({ state: "hidden" });
  });

  await step("no page errors, no CSP violations", () => {
    assert(pageErrors.length === 0, "page errors: " + pageErrors.join(" | "));
    assert(cspViolations.length === 0, "CSP violations: " + cspViolations.join(" | "));
  });
}

// ---- run ----------------------------------------------------------------------------------------
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (server) await stopServer(server).catch(() => {});
  if (OWN_DIR) rmSync(DIR, { recursive: true, force: true });
}
const failed = await run(main, { deadlineMs: DEADLINE_MS, cleanup, onFailure: async () => {
  if (page) await page.screenshot({ path: path.join(SHOTS, "mesh2-FAILED.png") }).catch(() => {});
  console.log("---- last server output ----\n" + serverLog.slice(-40).join("\n"));
} });
console.log(`browser (mesh2): ${tally(failed)}`);
process.exit(failed ? 1 : 0);
