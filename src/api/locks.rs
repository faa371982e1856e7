//! Advisory locks: `POST /locks/acquire`, `POST /locks/release`, `GET /locks?prefix=&n=`.
//! Who wins and who gets 403/409 is decided in the writer (src/store/locks.rs).
use super::{channel, identity};
use crate::error::ApiError;
use crate::http::{Reply, count_param, read_json_object};
use crate::server::App;
use crate::store::Op;
use crate::store::locks::{self, LockOp};
use serde_json::{Map, Value};
use std::collections::HashMap;
use tiny_http::Request;

/// `POST /locks/<action>`
pub const ACTIONS: &[&str] = &["acquire", "release"];
/// Longest lock name (and `?prefix=`), in characters.
const MAX_NAME: usize = 256;
/// Longest note, in characters.
const MAX_NOTE: usize = 1024;
/// Shortest and longest time a lock may be held before it must be renewed.
const TTL_RANGE: std::ops::RangeInclusive<f64> = 1.0..=86_400.0;

pub fn act(app: &App, action: &str, request: &mut Request) -> Result<Reply, ApiError> {
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let name = lock_name(body.get("name"))?;
    let op = match action {
        "acquire" => LockOp::Acquire {
            from,
            name,
            ttl_s: ttl(body.get("ttl_s"))?,
            note: note(&body)?,
            ch: match body.get("ch") {
                None | Some(Value::Null) => None,
                Some(Value::String(ch)) => Some(channel(ch)?),
                Some(_) => return Err(ApiError::bad_request("ch must be a channel name")),
            },
        },
        _ => LockOp::Release { from, name },
    };
    // Acquiring announces on the lock's channel, so it passes the loop guard as a publish
    // does (a renewal without `ch` is throttled, if need be, on the default channel). A
    // release frees what an agent held: refusing it would only keep a lock held longer.
    if let LockOp::Acquire { from, ch, .. } = &op {
        let ch = ch.as_deref().unwrap_or(locks::DEFAULT_CHANNEL);
        if let Err(throttled) = crate::ratelimit::guard(app, from, ch, "publish") {
            return Ok(throttled);
        }
    }
    let done = app.store.write(Op::Lock(op))?;
    Ok(Reply::json(done.status, done.body))
}

/// `GET /locks?prefix=&n=` (the first `n` by name: 100 unless given, at most 1000).
pub fn list(app: &App, params: &HashMap<String, String>) -> Result<Reply, ApiError> {
    let prefix = params.get("prefix").filter(|p| !p.is_empty());
    if prefix.is_some_and(|p| p.chars().count() > MAX_NAME) {
        return Err(ApiError::bad_request(format!(
            "prefix is longer than {MAX_NAME} characters"
        )));
    }
    let limit = count_param(params, 100, 1000)?;
    let held = app
        .store
        .read(|conn| locks::list(conn, prefix.map(String::as_str), limit))?;
    Ok(Reply::json(200, Value::Array(held)))
}

/// 1-256 printable characters: paths with slashes and spaces are fine, control characters
/// (which would hide in a terminal or a log line) are not.
fn lock_name(value: Option<&Value>) -> Result<String, ApiError> {
    let name = match value {
        None | Some(Value::Null) => return Err(ApiError::bad_request("name is required")),
        Some(Value::String(name)) => name,
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    };
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME || name.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{MAX_NAME} characters, not blank"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be printable (no control characters)",
        ));
    }
    Ok(name.clone())
}

fn ttl(value: Option<&Value>) -> Result<f64, ApiError> {
    value
        .and_then(Value::as_f64)
        .filter(|t| TTL_RANGE.contains(t))
        .ok_or_else(|| ApiError::bad_request("ttl_s is required: seconds from 1 to 86400 (24 h)"))
}

fn note(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("note") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(n)) if n.chars().count() <= MAX_NOTE => Ok(Some(n.clone())),
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "note is longer than {MAX_NOTE} characters"
        ))),
        Some(_) => Err(ApiError::bad_request("note must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_ttls() {
        for good in ["src/main.rs", "a", "db: migrations", &"x".repeat(256)] {
            assert_eq!(lock_name(Some(&json!(good))).unwrap(), good);
        }
        for bad in [
            json!(""),
            json!("  "),
            json!("a\nb"),
            json!("\u{7f}"),
            json!(3),
        ] {
            assert_eq!(lock_name(Some(&bad)).unwrap_err().status, 400, "{bad}");
        }
        assert!(lock_name(Some(&json!("x".repeat(257)))).is_err());
        assert!(lock_name(None).is_err());
        assert_eq!(ttl(Some(&json!(600))).unwrap(), 600.0);
        assert_eq!(ttl(Some(&json!(1.5))).unwrap(), 1.5);
        for bad in [
            json!(0),
            json!(0.5),
            json!(86_401),
            json!("60"),
            json!(null),
        ] {
            assert!(ttl(Some(&bad)).is_err(), "{bad}");
        }
    }
}
