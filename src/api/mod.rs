//! The handlers, one module per resource, and the validation they share.
pub mod channels;
pub mod files;
pub mod gap;
pub mod idempotency;
pub mod inbox;
pub mod locks;
pub mod longpoll;
pub mod messages;
pub mod presence;
pub mod search;
pub mod status;
pub mod tasks;
pub mod written;

use crate::error::{ApiError, shown};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Longest identity (`from`, `for`) accepted.
const MAX_IDENTITY: usize = 128;
/// Longest message type and task title accepted.
const MAX_LABEL: usize = 256;

/// Channel names: 1-64 chars of `A-Z a-z 0-9 _ . : -`, but not `.` or `..`: clients and
/// proxies resolve `/ch/..` to `/` before it is sent, so such a channel could never be read.
pub fn valid_channel(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

pub fn channel(name: &str) -> Result<String, ApiError> {
    if valid_channel(name) {
        Ok(name.to_string())
    } else {
        Err(invalid_channel(name))
    }
}

fn invalid_channel(name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "invalid channel name {}: use 1-64 of A-Z a-z 0-9 _ . : - (not . or ..)",
        shown(name)
    ))
}

/// A channel name from a URL path segment, where clients may percent-encode it.
pub fn path_channel(segment: &str) -> Result<String, ApiError> {
    match segment.contains('%') {
        true => channel(&crate::http::percent_decode_path(segment)?),
        false => channel(segment),
    }
}

/// An id in the query string, normalised so it compares as stored ids do. Given empty
/// (`since=`, a script's unset variable) it is refused, not taken as absent: `since` left
/// out means "from the start" (or "the newest"), which a script that lost its place would
/// otherwise replay without a word.
pub fn id_param(params: &HashMap<String, String>, key: &str) -> Result<Option<String>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        Some(raw) if raw.is_empty() => Err(ApiError::bad_request(format!(
            "{key} is empty: give a message id, or leave {key} out"
        ))),
        Some(raw) => crate::ids::parse(raw)
            .map(|id| Some(id.to_string()))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{key} must be a message id, got {}", shown(raw)))
            }),
    }
}

pub use crate::blobs::valid_hash;

/// NDJSON of stored messages, one envelope a line, read from the store as it is sent.
impl crate::http::NdjsonSource for crate::store::batches::Messages {
    fn into_body(self) -> (Box<dyn std::io::Read + Send>, u64) {
        // Each envelope and its newline: the length is known before the first byte is read.
        let len = self.bytes() + self.len() as u64;
        let body = crate::store::batches::NdjsonBody::new(self);
        (Box::new(body), len)
    }
}

/// A required non-blank string field of at most `max` characters.
fn text_field(body: &Map<String, Value>, key: &str, max: usize) -> Result<String, ApiError> {
    text_value(body.get(key), key, max)
}

/// `text_field` for a value already taken out of its object (`key` names it in errors).
fn text_value(value: Option<&Value>, key: &str, max: usize) -> Result<String, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::bad_request(format!("{key} is required"))),
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::bad_request(format!(
            "{key} is longer than {max} characters"
        ))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ApiError::bad_request(format!("{key} must not be blank")))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// An agent identity (`from`): a name, 1-128 characters.
pub fn identity(body: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    name_value(body.get(key), key, MAX_IDENTITY)
}

/// `identity` for a value not in an object of its own (an item of a list).
pub fn identity_value(value: &Value, key: &str) -> Result<String, ApiError> {
    name_value(Some(value), key, MAX_IDENTITY)
}

/// A name people read in lists, logs and terminals (identities, lock names): free text, but
/// nothing that would hide or reorder what they see (`text::is_hidden_control`).
pub fn name_field(body: &Map<String, Value>, key: &str, max: usize) -> Result<String, ApiError> {
    name_value(body.get(key), key, max)
}

fn name_value(value: Option<&Value>, key: &str, max: usize) -> Result<String, ApiError> {
    let name = text_value(value, key, max)?;
    match name.chars().find(|c| crate::text::is_hidden_control(*c)) {
        Some(c) => Err(ApiError::bad_request(format!(
            "{key} must be printable: U+{:04X} is a control or bidirectional character",
            c as u32
        ))),
        None => Ok(name),
    }
}

pub fn optional_identity(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => identity(body, key).map(Some),
    }
}

pub fn label(body: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    text_field(body, key, MAX_LABEL)
}

/// `files`: absent, or an array of hashes that each name a stored blob.
pub fn file_refs(
    body: &Map<String, Value>,
    blobs: &crate::blobs::BlobStore,
) -> Result<Vec<String>, ApiError> {
    let items = match body.get("files") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::bad_request("files must be an array of hashes")),
    };
    let mut files = Vec::with_capacity(items.len());
    for item in items {
        let hash = match item.as_str() {
            Some(hash) if valid_hash(hash) => hash,
            Some(other) => {
                let shown = shown(other);
                return Err(ApiError::bad_request(format!(
                    "files: {shown} is not sha256:<64 hex>"
                )));
            }
            None => return Err(ApiError::bad_request("files must be an array of hashes")),
        };
        if !blobs.contains(hash) {
            return Err(ApiError::bad_request(format!(
                "files: {hash} is not stored"
            )));
        }
        files.push(hash.to_string());
    }
    Ok(files)
}

/// An optional string field of at most `max` characters: absent or null is `None`. Unlike
/// `text_field`, a blank string is kept (a blank note is no error).
pub fn optional_text(
    body: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        // Blank is allowed here (it clears a note), but not past the length bound.
        Some(Value::String(s)) if s.trim().is_empty() && s.chars().count() <= max => {
            Ok(Some(s.clone()))
        }
        Some(_) => text_field(body, key, max).map(Some),
    }
}

/// An optional channel name (`ch`): absent or null is `None`.
pub fn optional_channel(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => channel(name).map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be a channel name"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for good in [
            "general",
            "a",
            "A-Z_0.9:x",
            &"x".repeat(64),
            "...",
            ".a",
            "a..",
        ] {
            assert!(valid_channel(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "é",
            "a%20",
            &"x".repeat(65),
            "..\u{0}",
            ".",
            "..",
        ] {
            assert!(!valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn hashes() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(valid_hash(&format!("sha256:{hex}")));
        for bad in [
            hex.clone(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:../{}", &hex[3..]),
            format!("md5:{hex}"),
        ] {
            assert!(!valid_hash(&bad), "{bad}");
        }
    }

    #[test]
    fn text_fields() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"a":"x","blank":"  ","num":3,"long":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
        )
        .unwrap();
        assert_eq!(identity(&body, "a").unwrap(), "x");
        for key in ["missing", "blank", "num", "long"] {
            assert_eq!(identity(&body, key).unwrap_err().status, 400, "{key}");
        }
        assert_eq!(optional_identity(&body, "missing").unwrap(), None);
        assert_eq!(identity_value(&body["a"], "agent").unwrap(), "x");
        for hidden in ["bob\u{1b}[2J", "ali\u{202e}ecilA", "tab\tbed"] {
            let refused = identity_value(&Value::from(hidden), "from").unwrap_err();
            assert!(
                refused.message.starts_with("from must be printable: U+"),
                "{refused:?}"
            );
        }
        assert_eq!(
            identity_value(&Value::from("ağent 名前"), "from").unwrap(),
            "ağent 名前"
        );
        for key in ["blank", "num", "long"] {
            let refused = identity_value(&body[key], "agent").unwrap_err();
            assert_eq!(refused.status, 400, "{key}");
            assert!(
                refused.message.contains("agent"),
                "{key}: {}",
                refused.message
            );
        }
    }
}
