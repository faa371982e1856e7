//! /ui against what other agents can send it (bursts of channels and tasks, bidirectional
//! overrides, forged failures, crafted links, property-name keys) in a real browser: chromium
//! driven by playwright-core (tests/browser/hardening.test.mjs) against this build's server
//! binary, which the JS test starts itself in a temp dir given here. Skipped without chromium or
//! node, except under CI (see tests/browser_support).
mod browser_support;

#[test]
fn the_ui_holds_up_against_hostile_and_heavy_input_in_a_real_browser() {
    browser_support::run_ui_script("ui_hardening_browser", "hardening.test.mjs");
}
