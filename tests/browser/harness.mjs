// What the real-browser tests in this folder share: starting and stopping the workshop server binary,
// keeping its output, talking to its API, and the `step` runner with its summary. Each test is its
// own node process, so the step results live here, once per process.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
// Debian's chromium (env CHROMIUM), headless and quiet, with `extraArgs` added.
export const launchChromium = (extraArgs = []) =>
  chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] });

// The scratch folder: WORKSHOP_TEST_DIR when given (its owner removes it), else a new temp dir that
// the test removes at the end (`own`).
export function testDir(prefix) {
  const given = process.env.WORKSHOP_TEST_DIR;
  return { dir: given || mkdtempSync(path.join(os.tmpdir(), prefix)), own: !given };
}

// ---- the server ---------------------------------------------------------------------------------
// Calls `onLine(line)` for each whole line `stream` prints. A pipe may deliver a line in two chunks:
// the unfinished tail waits for the next one.
export function eachLine(stream, onLine) {
  let partial = "";
  stream.on("data", (chunk) => {
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop();
    for (const line of lines) if (line) onLine(line);
  });
}

// Starts the server binary `bin` in `cwd` with exactly `env`, and resolves to `{ proc, port, base }`
// once it printed `workshop listening on http://127.0.0.1:PORT`. Its output goes, line by line, to
// `onStdout` and `onStderr`. Rejects (and kills it) when it exits or stays silent for 15 s first.
export function startServer(bin, { cwd, env, name = "server", onStdout = () => {}, onStderr = () => {} }) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, [], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${name} printed no 'listening' line within 15 s`)), 15_000);
    function finish(err, port) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { proc.kill("SIGKILL"); reject(err); } else resolve({ proc, port, base: `http://127.0.0.1:${port}` });
    }
    eachLine(proc.stdout, (line) => {
      onStdout(line);
      const m = line.match(/workshop listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) finish(null, Number(m[1]));
    });
    eachLine(proc.stderr, onStderr);
    proc.on("exit", (code, sig) => finish(new Error(`${name} exited during start-up (code ${code}, signal ${sig})`)));
  });
}

// SIGTERM, then SIGKILL after 5 s; resolves to how it ended.
export function stopServer(s) {
  return new Promise((resolve) => {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) { resolve("already exited"); return; }
    const t = setTimeout(() => { s.proc.kill("SIGKILL"); }, 5_000);
    s.proc.once("exit", (code, sig) => { clearTimeout(t); resolve(sig === "SIGKILL" ? "needed SIGKILL after 5 s of SIGTERM" : "exited on SIGTERM"); });
    s.proc.kill("SIGTERM");
  });
}

// ---- the API, as an agent uses it (no browser in between) -----------------------------------------
// `body` is sent as JSON; `raw`, when given, is sent as it is instead.
export async function request(base, method, p, body, raw) {
  const init = { method, headers: {} };
  if (raw !== undefined) init.body = raw;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const res = await fetch(base + p, init);
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch { /* ndjson or empty */ }
  return { status: res.status, data, text };
}
// Publishes `msg` on channel `ch`; resolves to the new message's id.
export async function publish(base, ch, msg) {
  const r = await request(base, "POST", "/ch/" + ch, msg);
  if (r.status !== 201) throw new Error(`publish to ${ch} answered ${r.status}: ${r.text}`);
  return r.data.id;
}

// ---- checks and steps ---------------------------------------------------------------------------
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export function assert(cond, msg) { if (!cond) throw new Error("assertion failed: " + msg); }

export const results = [];
// Runs one named step, prints ok/FAIL with its time, and rethrows a failure (which ends the test).
export async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name}  (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}  (${Date.now() - t0} ms)\n     ${(e && e.stack || String(e)).split("\n").join("\n     ")}`);
    throw e;
  }
}
// `N passed, M failed`, counting a failure outside any step (`failed` with every step ok) as one.
export function tally(failed) {
  const passed = results.filter((r) => r.ok).length;
  return `${passed} passed, ${results.length - passed + (failed && results.every((r) => r.ok) ? 1 : 0)} failed`;
}

// Ends the process with a failure if the test is still running after `ms`, cleaning up first.
function watchdog(ms, cleanup) {
  return setTimeout(() => { console.log(`FAIL the whole test took over ${ms / 1000} s`); cleanup().then(() => process.exit(1)); }, ms);
}

// Runs `main` under a `deadlineMs` watchdog; on a failure calls `onFailure` (to show what the server
// printed, say). Then `cleanup` runs once, whichever way the test ended. Resolves to whether it failed.
export async function run(main, { deadlineMs, cleanup, onFailure }) {
  let cleaned = false;
  const cleanupOnce = async () => { if (!cleaned) { cleaned = true; await cleanup(); } };
  const timer = watchdog(deadlineMs, cleanupOnce);
  let failed = false;
  try {
    await main();
  } catch {
    failed = true;
    await onFailure();
  }
  clearTimeout(timer);
  await cleanupOnce();
  return failed;
}
