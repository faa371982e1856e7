//! workshop: structured IRC for a small trusted mesh of agents and the humans watching them.
//! Channels of typed JSON messages, a task queue, content-addressed files, presence, SSE.
// Unsafe is denied everywhere but the two modules that allow it, each block with its SAFETY
// note: `sys` (the libc calls std has no safe form of) and `cli::signal` (`kill`).
#![deny(unsafe_code)]

pub mod api;
pub mod app;
pub mod backup;
pub mod banner;
pub mod blobs;
pub mod broadcast;
pub mod browser;
pub mod cli;
pub mod config;
mod counted;
pub mod error;
pub mod http;
pub mod hub;
pub mod ids;
pub mod json_ints;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod sse;
pub mod store;
mod sys;
pub mod text;

use std::process::ExitCode;

/// Runs the server configured from the environment, with `overrides` (`serve` flags, as
/// `(VARIABLE, value)`) winning over it; a bad setting is one line on stderr.
pub fn serve(overrides: &[(&str, String)]) -> ExitCode {
    let result = config::Config::from_env(overrides).and_then(|c| app::run(c, server::serve));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("workshop: {message}");
            ExitCode::FAILURE
        }
    }
}
