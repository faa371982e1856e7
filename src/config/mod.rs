//! Configuration: the environment, parsed and validated once at start-up.
pub mod browser;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where the database and the blobs live unless `DB_PATH` and `BLOBS_DIR` say otherwise.
pub const DEFAULT_DB_PATH: &str = "workshop.db";
pub const DEFAULT_BLOBS_DIR: &str = "blobs";

/// Everything the server needs to start, read from the environment (see API.md).
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    pub blobs_dir: PathBuf,
    pub verbose: bool,
    /// Messages older than this many days are deleted; 0 keeps them forever.
    pub retention_days: u64,
    pub max_file_bytes: u64,
    /// `WORKSHOP_HOSTNAMES` and `WORKSHOP_CORS_ORIGINS`: what browsers may do (see `browser`).
    pub browser: browser::Policy,
    /// Loop guard: messages and tasks per second per sender (bursts of 10x); 0 is off.
    pub rate: f64,
}

impl Config {
    /// From the environment, except the variables in `overrides` (command-line flags).
    pub fn from_env(overrides: &[(&str, String)]) -> Result<Config, String> {
        let config = Config::from_lookup(|key| {
            overrides
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(key).ok())
        })?;
        config.check_paths()?;
        Ok(config)
    }

    /// Refuses paths that cannot be what they name: SQLite's and the system's own words for
    /// these ("unable to open database file", "Not a directory") named neither the variable
    /// nor the cause.
    fn check_paths(&self) -> Result<(), String> {
        let (db, blobs) = (&self.db_path, &self.blobs_dir);
        if db.is_dir() {
            let example = db.join(DEFAULT_DB_PATH);
            return Err(format!(
                "DB_PATH (--db) {} is a folder: name the database file in it, such as {}",
                db.display(),
                example.display()
            ));
        }
        if blobs.exists() && !blobs.is_dir() {
            return Err(format!(
                "BLOBS_DIR (--blobs) {} is a file: name a folder",
                blobs.display()
            ));
        }
        Ok(())
    }

    /// Builds a config from any key lookup, so the parsing is testable without touching
    /// the process environment. Unset and empty values take the default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |key: &str| get(key).filter(|v| !v.is_empty());
        let addr = parse_addr(&get)?;
        let verbose = parse_verbose(get("WORKSHOP_VERBOSE"))?;
        let max_file_bytes = parse_max_file_bytes(&get)?;
        let rate: f64 = parse_rate(get("WORKSHOP_RATE"))?;
        Ok(Config {
            addr,
            db_path: get("DB_PATH")
                .unwrap_or_else(|| DEFAULT_DB_PATH.into())
                .into(),
            blobs_dir: get("BLOBS_DIR")
                .unwrap_or_else(|| DEFAULT_BLOBS_DIR.into())
                .into(),
            verbose,
            retention_days: parse_number(&get, "WORKSHOP_RETENTION_DAYS", 30)?,
            max_file_bytes,
            browser: browser::Policy::from_lookup(&get)?,
            rate,
        })
    }
}

/// `HOST` and `PORT`: where to listen.
fn parse_addr(get: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, String> {
    let port = parse_port(get)?;
    let host = get("HOST").unwrap_or_else(|| "0.0.0.0".into());
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| must_be("HOST", "an address to listen on", &host))
}

/// `PORT`: a whole number from 0 (any free port) to 65535.
fn parse_port(get: &impl Fn(&str) -> Option<String>) -> Result<u16, String> {
    match get("PORT") {
        None => Ok(4242),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| must_be("PORT", "a port from 0 to 65535 (default 4242)", &raw)),
    }
}

fn parse_verbose(raw: Option<String>) -> Result<bool, String> {
    match raw.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(must_be(
            "WORKSHOP_VERBOSE",
            "true or false (or 1 or 0)",
            other,
        )),
    }
}

fn parse_max_file_bytes(get: &impl Fn(&str) -> Option<String>) -> Result<u64, String> {
    match parse_number(get, "WORKSHOP_MAX_FILE_BYTES", 100 * 1024 * 1024)? {
        0 => Err("WORKSHOP_MAX_FILE_BYTES must be at least 1".into()),
        bytes => Ok(bytes),
    }
}

fn parse_rate(raw: Option<String>) -> Result<f64, String> {
    let Some(raw) = raw else { return Ok(0.0) };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate >= 0.0)
        .ok_or_else(|| must_be("WORKSHOP_RATE", RATE_FORM, &raw))
}

const RATE_FORM: &str = "messages per second, 0 or more (0: off)";

/// A configuration error: the variable, the form it takes, and the value it got instead.
fn must_be(key: &str, form: &str, got: &str) -> String {
    let flag = match key {
        "PORT" => " (--port)",
        "HOST" => " (--host)",
        _ => "",
    };
    format!("{key}{flag} must be {form}, got {got:?}")
}

fn parse_number<T: std::str::FromStr + std::fmt::Display>(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: T,
) -> Result<T, String> {
    match get(key) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| format!("{key} must be a whole number (default {default}), got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:4242");
        assert_eq!(c.db_path, PathBuf::from("workshop.db"));
        assert_eq!(c.blobs_dir, PathBuf::from("blobs"));
        assert!(!c.verbose);
        assert_eq!(c.retention_days, 30);
        assert_eq!(c.max_file_bytes, 104_857_600);
        assert_eq!(c.browser, browser::Policy::default());
        assert_eq!(c.rate, 0.0);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (key, value) in [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("HOST", "not an address"),
            ("WORKSHOP_VERBOSE", "yes please"),
            ("WORKSHOP_RETENTION_DAYS", "-1"),
            ("WORKSHOP_MAX_FILE_BYTES", "1e9"),
            ("WORKSHOP_MAX_FILE_BYTES", "0"),
            ("WORKSHOP_HOSTNAMES", "http://hub"),
            ("WORKSHOP_CORS_ORIGINS", "hub.example"),
            ("WORKSHOP_RATE", "-1"),
            ("WORKSHOP_RATE", "fast"),
            ("WORKSHOP_RATE", "inf"),
        ] {
            let err = config(&[(key, value)]).unwrap_err();
            assert!(err.starts_with(key), "{err}");
            assert!(!err.contains('\n'));
        }
        let port = config(&[("PORT", "99999")]).unwrap_err();
        assert!(port.contains("a port from 0 to 65535"), "{port}");
        // `serve --port`/`--host` stand for these: the error names both.
        assert!(port.starts_with("PORT (--port) "), "{port}");
        let host = config(&[("HOST", "nope")]).unwrap_err();
        assert!(host.starts_with("HOST (--host) "), "{host}");
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("WORKSHOP_VERBOSE", "true"),
            ("WORKSHOP_RETENTION_DAYS", "0"),
            ("WORKSHOP_RATE", "0.5"),
        ])
        .unwrap();
        assert_eq!(c.rate, 0.5);
        assert_eq!(c.addr.to_string(), "127.0.0.1:0");
        assert!(c.verbose);
        assert_eq!(c.retention_days, 0);
    }
}
