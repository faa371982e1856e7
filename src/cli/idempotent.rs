//! Keyed writes: `pub`, `task create` and the worker's reports send an `Idempotency-Key`, fresh
//! for each write and the same on every retry of it, so a retry whose first answer was lost
//! is answered with the first reply instead of storing the write twice.
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use ulid::Ulid;

use super::client::{Client, Result};

/// Attempts `post` makes when the server is unreachable or failing.
const ATTEMPTS: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_millis(200);

/// A new key: random, so two writes never share one.
pub fn fresh_key() -> String {
    Ulid::generate().to_string()
}

/// POSTs `body` under a fresh key, retrying a few times (with that key) while the failure is
/// transient.
pub fn post(client: &Client, path: &str, body: &(impl Serialize + ?Sized)) -> Result<Value> {
    let key = fresh_key();
    let mut wait = FIRST_WAIT;
    let mut attempt = 1;
    loop {
        match post_with_key(client, path, body, &key) {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                eprintln!("workshop: {e}; retrying");
                thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One POST of `body` under `key`.
pub fn post_with_key(
    client: &Client,
    path: &str,
    body: &(impl Serialize + ?Sized),
    key: &str,
) -> Result<Value> {
    client.post_json_keyed(path, body, Some(key))
}
