// The CSP in ui.html pins its one inline <script> by sha256, so a script injected into the page
// could never run. This computes that hash; `node tests/browser/csp.mjs --write` updates ui.html
// after the script has been edited. ui.test.mjs checks the two agree.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const UI_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../ui.html");

export function cspState(html = readFileSync(UI_PATH, "utf8")) {
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)];
  if (scripts.length !== 1) throw new Error(`ui.html must have exactly one inline <script>, found ${scripts.length}`);
  const want = createHash("sha256").update(scripts[0][1], "utf8").digest("base64");
  const m = html.match(/script-src 'sha256-([^']*)'/);
  return { want, have: m ? m[1] : null };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const html = readFileSync(UI_PATH, "utf8");
  const { want, have } = cspState(html);
  if (process.argv.includes("--write")) {
    if (have === null) throw new Error("no script-src 'sha256-…' in ui.html's CSP");
    writeFileSync(UI_PATH, html.replace(`script-src 'sha256-${have}'`, `script-src 'sha256-${want}'`));
    console.log(have === want ? "CSP hash already current" : `CSP hash updated: sha256-${want}`);
  } else {
    console.log(have === want ? `ok: sha256-${want}` : `stale: ui.html has sha256-${have}, the script hashes to sha256-${want}`);
    process.exit(have === want ? 0 : 1);
  }
}
