//! Test harness shared by every integration test: the real `workshop` binary on port 0 in a
//! temp dir (`server`), a raw HTTP client (`http`), an SSE reader (`sse`) and deadline
//! polling. Nothing is mocked.
#![allow(dead_code)] // each test binary uses a different part of the harness

mod http;
mod server;
mod sse;

#[allow(unused_imports)] // likewise
pub use {http::*, server::*, sse::*};

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// How often `wait_for` checks. Leak checks poll less often (see `wait_every`).
const POLL: Duration = Duration::from_millis(50);

/// What a `wait_for` check returns: `Some`/`Ok` once the wait is over; `None`, or `Err` with
/// the last observation (shown if the wait times out), to go on waiting.
pub trait Check<T> {
    fn into_result(self) -> Result<T, String>;
}

impl<T> Check<T> for Option<T> {
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T> Check<T> for Result<T, String> {
    fn into_result(self) -> Result<T, String> {
        self
    }
}

/// Polls `check` until it is done, or panics naming `what` after `timeout`.
pub fn wait_for<T, C: Check<T>>(timeout: Duration, what: &str, check: impl FnMut() -> C) -> T {
    wait_every(timeout, POLL, what, check)
}

/// `wait_for`, polling every `interval`. Leak checks poll slowly: each poll is a connection,
/// and tiny_http keeps a pooled thread alive for every connection in the last five seconds.
pub fn wait_every<T, C: Check<T>>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut check: impl FnMut() -> C,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().into_result() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                let last = if last.is_empty() {
                    last
                } else {
                    format!("; last: {last}")
                };
                panic!("timed out after {timeout:?} waiting for {what}{last}")
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// Now as the server's clock gives it: seconds since the Unix epoch, with a fraction (what
/// `ts`, `expires_at` and the like are compared against).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The name workshop stores `bytes` under: `sha256:<hex>`.
pub fn sha256_name(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut name = String::from("sha256:");
    for b in digest.iter() {
        name.push_str(&format!("{b:02x}"));
    }
    name
}
