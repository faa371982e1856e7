//! Integers that serde_json cannot hold exactly. Without its `arbitrary_precision` feature it
//! keeps integers as i64 or u64 and silently turns bigger ones into rounded floats, so a
//! client's `18446744073709551616` would be stored as `1.8446744073709552e19`. Such bodies
//! are refused (400) instead: storing them exactly would need `arbitrary_precision`, a
//! crate-wide switch that changes every JSON number in the binary (and the CLI's), for values
//! that JavaScript clients cannot even produce; clients that need them send strings.
use crate::error::ApiError;

/// Longest part of an offending integer quoted back in the error.
const QUOTED_DIGITS: usize = 40;

/// Refuses a JSON text (already known to be valid) holding an integer literal beyond the
/// 64-bit range (below i64::MIN or above u64::MAX). Floats (`1e30`, `2.5`) are the
/// client's own choice and pass.
pub fn refuse_inexact(json: &[u8]) -> Result<(), ApiError> {
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let byte = json[i];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if byte != b'-' && !byte.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < json.len() && matches!(json[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
            i += 1;
        }
        let token = std::str::from_utf8(&json[start..i]).unwrap_or_default();
        let integer = !token.contains(['.', 'e', 'E']);
        if integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
            let shown: String = token.chars().take(QUOTED_DIGITS).collect();
            let more = if token.len() > QUOTED_DIGITS {
                "..."
            } else {
                ""
            };
            return Err(ApiError::bad_request(format!(
                "the integer {shown}{more} does not fit in 64 bits and would be rounded: \
                 send it as a string"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> bool {
        refuse_inexact(json.as_bytes()).is_err()
    }

    #[test]
    fn integers_beyond_64_bits_are_refused() {
        for bad in [
            r#"{"n":18446744073709551616}"#,
            r#"{"n":-9223372036854775809}"#,
            r#"{"a":[1,2,{"b":123456789012345678901234567890}]}"#,
        ] {
            assert!(refused(bad), "{bad}");
        }
        let err = refuse_inexact(format!(r#"{{"n":{}}}"#, "9".repeat(5000)).as_bytes());
        assert!(err.unwrap_err().message.len() < 200, "bounded message");
    }

    #[test]
    fn exact_numbers_and_strings_pass() {
        for good in [
            r#"{"n":18446744073709551615}"#,
            r#"{"n":-9223372036854775808}"#,
            r#"{"n":0,"m":-0,"f":1e30,"g":2.5,"h":-1.5E-300}"#,
            r#"{"s":"18446744073709551616","t":"\"99999999999999999999999\\"}"#,
            r#"{"k\"123456789012345678901234567890":1}"#,
        ] {
            assert!(!refused(good), "{good}");
        }
    }
}
