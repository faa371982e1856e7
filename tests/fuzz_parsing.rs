//! Property tests of the pure parsing and validation functions every request goes through:
//! arbitrary input never panics, and each function agrees with a plain reference model of
//! its documented contract (API.md).
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use workshop::api::{valid_channel, valid_hash};
use workshop::config::Config;
use workshop::http::{count_param, percent_decode, split_url};

/// Percent-encodes every byte outside the unreserved set (so `+`, `%`, `&`, `=`, space and
/// all non-ASCII bytes are escaped).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Strings rich in the characters the parsers treat specially.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[%+&=?a-fA-F0-9/#;. ]{0,40}",
        "(%[0-9a-fA-F]{0,2}|[a-z+=&])*",
    ]
}

proptest! {
    // No regression files: a failure prints its minimal input, and the cases worth keeping
    // are written down as plain tests below.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn split_url_never_panics_and_keeps_the_path(url in tricky()) {
        match split_url(&url) {
            Ok((path, _)) => {
                prop_assert_eq!(path, url.split('?').next().unwrap());
            }
            Err(e) => prop_assert_eq!(e.status, 400),
        }
    }

    #[test]
    fn split_url_round_trips_encoded_parameters(
        path in "/[a-z/]{0,20}",
        params in proptest::collection::btree_map(".{1,12}", ".{0,20}", 0..6),
    ) {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let (got_path, got) = split_url(&url).unwrap();
        prop_assert_eq!(got_path, path.as_str());
        let got: BTreeMap<String, String> = got.into_iter().collect();
        prop_assert_eq!(got, params);
    }

    #[test]
    fn percent_decode_round_trips_any_string(s in any::<String>()) {
        prop_assert_eq!(percent_decode(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn percent_decode_matches_a_reference_decoder(raw in tricky()) {
        // Reference: %XX (two hex digits) is that byte, + is a space, anything else is
        // itself; a bad escape or a result that is not UTF-8 is an error (400).
        let bytes = raw.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let mut bad = false;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                    match hex {
                        Some(h) => {
                            out.push(u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap());
                            i += 3;
                        }
                        None => {
                            bad = true;
                            break;
                        }
                    }
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        let expected = if bad { None } else { String::from_utf8(out).ok() };
        match percent_decode(&raw) {
            Ok(decoded) => prop_assert_eq!(Some(decoded), expected),
            Err(e) => {
                prop_assert_eq!(e.status, 400);
                prop_assert_eq!(expected, None);
            }
        }
    }

    #[test]
    fn count_param_accepts_exactly_positive_whole_numbers(
        raw in prop_oneof![any::<String>(), "[-+0-9 .e]{0,25}"],
        default in 1usize..2000,
        max in 1usize..5000,
    ) {
        let params = HashMap::from([("n".to_string(), raw.clone())]);
        let expected = raw.parse::<usize>().ok().filter(|n| *n >= 1).map(|n| n.min(max));
        match count_param(&params, default, max) {
            Ok(n) => prop_assert_eq!(Some(n), expected),
            Err(e) => {
                prop_assert_eq!(e.status, 400);
                prop_assert_eq!(expected, None);
            }
        }
        prop_assert_eq!(count_param(&HashMap::new(), default, max).unwrap(), default);
    }

    #[test]
    fn valid_channel_matches_the_documented_alphabet(name in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.:-]{0,70}",
        "[A-Za-z0-9_.:/ %é-]{1,10}",
        "[.]{1,3}",
    ]) {
        let expected = (1..=64).contains(&name.chars().count())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
            && name != "." && name != "..";
        prop_assert_eq!(valid_channel(&name), expected);
    }

    #[test]
    fn valid_hash_accepts_only_sha256_and_64_lowercase_hex(
        hex in "[0-9a-f]{64}",
        junk in any::<String>(),
        cut in 0usize..64,
        pos in 0usize..64,
        replacement in "[^0-9a-f]",
    ) {
        let name = |h: &str| format!("sha256:{h}");
        prop_assert!(valid_hash(&name(&hex)));
        prop_assert!(!valid_hash(&name(&hex[..cut])));
        let longer = name(&(hex.clone() + &junk));
        prop_assert_eq!(valid_hash(&longer), junk.is_empty());
        let mut mutated = hex.clone();
        mutated.replace_range(pos..pos + 1, &replacement);
        prop_assert!(!valid_hash(&name(&mutated)));
        prop_assert!(!valid_hash(&hex));
        // Arbitrary text is valid exactly when it has the shape.
        let shaped = junk.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        prop_assert_eq!(valid_hash(&junk), shaped);
    }

    #[test]
    fn ids_parse_exactly_the_ulids_they_print(
        n in any::<u128>(),
        lower in any::<bool>(),
        junk in prop_oneof![any::<String>(), "[0-9A-Za-z]{24,28}"],
    ) {
        let id = ulid::Ulid(n);
        let text = if lower { id.to_string().to_lowercase() } else { id.to_string() };
        prop_assert_eq!(workshop::ids::parse(&text), Some(id));
        if let Some(parsed) = workshop::ids::parse(&junk) {
            prop_assert_eq!(junk.len(), 26);
            prop_assert!(parsed.to_string().eq_ignore_ascii_case(&junk));
        }
    }

    #[test]
    fn config_accepts_valid_settings_and_names_the_variable_otherwise(
        port in prop_oneof![any::<String>(), "[0-9]{1,6}", "-?[0-9]{1,3}"],
        retention in prop_oneof![any::<String>(), "[0-9]{1,21}"],
        max_file in prop_oneof![any::<String>(), "[0-9]{1,21}"],
        verbose in prop_oneof![any::<String>(), Just("true".to_string()), Just("0".to_string())],
        host in prop_oneof![Just("127.0.0.1"), Just("::1"), Just("0.0.0.0"), Just("")],
    ) {
        let env: HashMap<&str, String> = HashMap::from([
            ("PORT", port.clone()),
            ("HOST", host.to_string()),
            ("WORKSHOP_RETENTION_DAYS", retention.clone()),
            ("WORKSHOP_MAX_FILE_BYTES", max_file.clone()),
            ("WORKSHOP_VERBOSE", verbose.clone()),
        ]);
        let lookup = |key: &str| env.get(key).cloned();
        // Reference model: empty means default; otherwise a (trimmed) whole number in range.
        let number_ok = |raw: &str, fits: fn(&str) -> bool| raw.is_empty() || fits(raw.trim());
        let port_ok = number_ok(&port, |s| s.parse::<u16>().is_ok());
        let retention_ok = number_ok(&retention, |s| s.parse::<u64>().is_ok());
        let max_ok = number_ok(&max_file, |s| s.parse::<u64>().is_ok_and(|n| n >= 1));
        let verbose_ok = ["", "true", "false", "1", "0"].contains(&verbose.as_str());
        match Config::from_lookup(lookup) {
            Ok(config) => {
                prop_assert!(port_ok && retention_ok && max_ok && verbose_ok);
                if !port.is_empty() {
                    prop_assert_eq!(config.addr.port(), port.trim().parse::<u16>().unwrap());
                }
                prop_assert!(config.max_file_bytes >= 1);
            }
            Err(message) => {
                prop_assert!(!(port_ok && retention_ok && max_ok && verbose_ok), "{}", message);
                prop_assert!(!message.contains('\n'), "one line: {:?}", message);
                let named = ["PORT", "WORKSHOP_RETENTION_DAYS", "WORKSHOP_MAX_FILE_BYTES", "WORKSHOP_VERBOSE"]
                    .iter()
                    .any(|key| message.starts_with(key));
                prop_assert!(named, "the error names the variable: {:?}", message);
            }
        }
    }
}

/// Found by `percent_decode_matches_a_reference_decoder`: `u8::from_str_radix` accepts a
/// leading `+`, so `%+0` decoded to a NUL byte instead of being refused as a bad escape.
#[test]
fn a_sign_is_not_a_hex_digit() {
    for bad in ["%+0", "%+F", "%-1", "a=%+f"] {
        assert!(percent_decode(bad).is_err(), "{bad} decoded");
    }
    assert!(split_url("/ch/x/history?type=%+0").is_err());
}
