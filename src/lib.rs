//! workshop: structured IRC for a small trusted mesh of agents and the humans watching them.
//! Channels of typed JSON messages, a task queue, content-addressed files, presence, SSE.
// Unsafe is denied everywhere but the two modules that allow it, each block with its SAFETY
// note: `sys` (the libc calls std has no safe form of) and `cli::signal` (`kill`).
#![deny(unsafe_code)]

/// One line of the server's own on stderr, `workshop: ...`. Unlike `eprintln!` it never
/// panics: stderr may be a file on a disk that just filled up or a pipe whose reader died, and
/// a panic in the writer thread over a log line would stop every write for good.
macro_rules! say {
    ($($arg:tt)*) => {{
        let line = format!("workshop: {}\n", format_args!($($arg)*));
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }};
}

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
mod repeats;
pub mod server;
pub mod sse;
pub mod store;
mod sys;
pub mod text;

use std::process::ExitCode;

/// Runs the server configured from the environment, with `overrides` (`serve` flags, as
/// `(VARIABLE, value)`) winning over it; a bad setting is one line on stderr.
pub fn serve(overrides: &[(&str, String)]) -> ExitCode {
    let config = match config::Config::from_env(overrides) {
        Ok(config) => config,
        Err(message) => {
            say!("{message}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match app::run(config, server::serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            say!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a configuration that cannot work (sysexits.h's `EX_CONFIG`): restarting
/// will not mend it, so the unit does not (`RestartPreventExitStatus=`), while a failure that
/// may pass (a mesh interface not up yet, so the bind fails) exits 1 and is retried.
const EX_CONFIG: u8 = 78;
