//! The `Idempotency-Key` request header on `POST /ch/:ch`, `POST /tasks`,
//! `POST /tasks/:id/<action>` and `POST /tasks/claim`: the writer runs a keyed request once
//! per (`from`, key) for 24 hours and answers repeats with the first reply (see
//! `store::idempotency`); a claim-next that found nothing is not remembered.
use crate::error::ApiError;
use crate::http::request_header;
use crate::store::Op;
use crate::store::idempotency::Key;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tiny_http::Request;

/// Longest key accepted.
const MAX_KEY: usize = 128;

/// The request's `Idempotency-Key`, if it has one. `route` and `body` (a JSON object, or a
/// batch's array of them) are what a repeat must match (else 422).
pub fn key<'b>(
    request: &Request,
    from: &str,
    route: &str,
    body: impl Into<Sorted<'b>>,
) -> Result<Option<Key>, ApiError> {
    let Some(key) = request_header(request, "Idempotency-Key") else {
        return Ok(None);
    };
    let key = valid_key(key)?;
    let mut digest = Sha256::new();
    digest.update(route.as_bytes());
    digest.update(b"\n");
    // Written straight into the digest, not into a copy first.
    serde_json::to_writer(Digesting(&mut digest), &body.into())
        .map_err(|e| ApiError::internal(format!("cannot encode the body: {e}")))?;
    let fingerprint = crate::blobs::hex(&digest.finalize());
    Ok(Some(Key {
        from: from.to_string(),
        key: key.to_string(),
        fingerprint,
    }))
}

/// A request body as it is fingerprinted: serialised with every object's keys sorted, so the
/// same JSON digests the same however its sender ordered them (serde_json keeps the order it
/// was given, `preserve_order`). The bytes are what a sorted map wrote before, so keys stored
/// by an older build still match.
#[derive(Clone, Copy)]
pub enum Sorted<'a> {
    Value(&'a Value),
    Object(&'a Map<String, Value>),
    Batch(&'a Vec<Value>),
}

impl<'a> From<&'a Map<String, Value>> for Sorted<'a> {
    fn from(object: &'a Map<String, Value>) -> Sorted<'a> {
        Sorted::Object(object)
    }
}

impl<'a> From<&'a Vec<Value>> for Sorted<'a> {
    fn from(batch: &'a Vec<Value>) -> Sorted<'a> {
        Sorted::Batch(batch)
    }
}

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Sorted::Value(Value::Object(object)) | Sorted::Object(object) => {
                let mut fields: Vec<(&String, &Value)> = object.iter().collect();
                fields.sort_unstable_by_key(|(name, _)| *name);
                let fields = fields
                    .into_iter()
                    .map(|(name, value)| (name, Sorted::Value(value)));
                serializer.collect_map(fields)
            }
            Sorted::Value(Value::Array(items)) | Sorted::Batch(items) => {
                serializer.collect_seq(items.iter().map(Sorted::Value))
            }
            Sorted::Value(other) => other.serialize(serializer),
        }
    }
}

/// Hashes what is written to it.
struct Digesting<'a>(&'a mut Sha256);

impl std::io::Write for Digesting<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `op`, to be run once per key when there is one.
pub fn wrap(key: Option<Key>, op: Op) -> Op {
    match key {
        Some(key) => Op::Idempotent {
            key,
            op: Box::new(op),
            keep: super::written::keep,
        },
        None => op,
    }
}

/// 1-128 printable ASCII characters.
fn valid_key(key: &str) -> Result<&str, ApiError> {
    let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
    if (1..=MAX_KEY).contains(&key.len()) && printable {
        Ok(key)
    } else {
        Err(invalid_key())
    }
}

fn invalid_key() -> ApiError {
    ApiError::bad_request(format!(
        "Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_printable_text() {
        for good in ["a", "01J4XYZ", "retry 1/3", &"k".repeat(128)] {
            assert_eq!(valid_key(good), Ok(good));
        }
        for bad in ["", &"k".repeat(129), "tab\there", "é", "nul\0"] {
            assert_eq!(valid_key(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }
}
