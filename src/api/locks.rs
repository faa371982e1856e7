//! Advisory locks: `POST /locks/acquire`, `POST /locks/release`, `GET /locks?prefix=&n=`.
//! Who wins and who gets 403/409 is decided in the writer (src/store/locks.rs).
use super::written;
use super::{identity, name_field, optional_channel, optional_text};
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req, count_param, read_json_object};
use crate::store::Op;
use crate::store::locks::{self, LockOp};
use serde_json::{Map, Value};

/// `POST /locks/<action>`
pub const ACTIONS: &[&str] = &["acquire", "release"];
/// Longest lock name (and `?prefix=`), in characters.
const MAX_NAME: usize = 256;
/// Longest note, in characters.
const MAX_NOTE: usize = 1024;
/// Shortest and longest time a lock may be held before it must be renewed.
const TTL_RANGE: std::ops::RangeInclusive<f64> = 1.0..=86_400.0;

pub fn act(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let Req {
        http: request,
        captures,
        ..
    } = req;
    let action = captures[0].as_str();
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let name = lock_name(&body)?;
    let op = match action {
        "acquire" => LockOp::Acquire {
            from,
            name,
            ttl_s: ttl(body.get("ttl_s"))?,
            note: optional_text(&body, "note", MAX_NOTE)?,
            ch: optional_channel(&body, "ch")?,
        },
        _ => LockOp::Release { from, name },
    };
    // Acquiring announces on the lock's channel, so it passes the loop guard as a publish
    // does (a renewal without `ch` is throttled, if need be, on the default channel). A
    // release frees what an agent held: refusing it would only keep a lock held longer.
    if let LockOp::Acquire { from, ch, .. } = &op {
        let ch = ch.as_deref().unwrap_or(locks::DEFAULT_CHANNEL);
        if let Err(throttled) = app.limiter.guard(&app.store, (from, 1), ch, "lock_acquire") {
            return Ok(throttled);
        }
    }
    let written = app.store.write(Op::Lock(op))?;
    Ok(written::reply(written))
}

/// `GET /locks?prefix=&n=` (the first `n` by name: 100 unless given, at most 1000).
pub fn list(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let params = &req.query;
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

/// `name`: 1-256 printable characters, not blank: paths with slashes and spaces are fine.
fn lock_name(body: &Map<String, Value>) -> Result<String, ApiError> {
    name_field(body, "name", MAX_NAME)
}

fn ttl(value: Option<&Value>) -> Result<f64, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::bad_request(
            "ttl_s is required: seconds from 1 to 86400 (24 h)",
        )),
        Some(value) => value
            .as_f64()
            .filter(|t| TTL_RANGE.contains(t))
            .ok_or_else(|| {
                ApiError::bad_request("ttl_s must be a number of seconds from 1 to 86400 (24 h)")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `lock_name` of a body whose `name` is `value` (`None`: no `name` at all).
    fn lock_name_of(value: Option<&Value>) -> Result<String, ApiError> {
        let body = value.map(|v| ("name".to_string(), v.clone()));
        lock_name(&Map::from_iter(body))
    }

    #[test]
    fn names_and_ttls() {
        for good in ["src/main.rs", "a", "db: migrations", &"x".repeat(256)] {
            assert_eq!(lock_name_of(Some(&json!(good))).unwrap(), good);
        }
        for bad in [
            json!(""),
            json!("  "),
            json!("a\nb"),
            json!("\u{7f}"),
            json!("src/\u{202e}sr.niam"),
            json!(3),
        ] {
            assert_eq!(lock_name_of(Some(&bad)).unwrap_err().status, 400, "{bad}");
        }
        assert!(lock_name_of(Some(&json!("x".repeat(257)))).is_err());
        assert!(lock_name_of(None).is_err());
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
        // Given but out of range is not "required".
        assert!(ttl(None).unwrap_err().message.contains("is required"));
        let zero = ttl(Some(&json!(0))).unwrap_err().message;
        assert!(
            zero.starts_with("ttl_s must be a number of seconds"),
            "{zero}"
        );
    }

    #[test]
    fn notes_are_optional_bounded_strings_blank_allowed() {
        let body = |v: Value| Map::from_iter([("note".to_string(), v)]);
        assert_eq!(optional_text(&Map::new(), "note", MAX_NOTE).unwrap(), None);
        assert_eq!(
            optional_text(&body(json!(null)), "note", MAX_NOTE).unwrap(),
            None
        );
        for kept in ["", "  ", "refactor", &"n".repeat(MAX_NOTE)] {
            let got = optional_text(&body(json!(kept)), "note", MAX_NOTE).unwrap();
            assert_eq!(got.as_deref(), Some(kept));
        }
        for bad in [json!("n".repeat(MAX_NOTE + 1)), json!(3), json!(["x"])] {
            let err = optional_text(&body(bad.clone()), "note", MAX_NOTE).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
        }
        let ch = |v: Value| optional_channel(&Map::from_iter([("ch".to_string(), v)]), "ch");
        assert_eq!(ch(json!("work")).unwrap().as_deref(), Some("work"));
        assert_eq!(ch(json!(null)).unwrap(), None);
        assert_eq!(optional_channel(&Map::new(), "ch").unwrap(), None);
        for bad in [json!("a b"), json!(""), json!(7)] {
            assert_eq!(ch(bad.clone()).unwrap_err().status, 400, "{bad}");
        }
    }
}
