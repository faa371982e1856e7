//! The browser settings (`WORKSHOP_HOSTNAMES`, `WORKSHOP_CORS_ORIGINS`), parsed once at
//! start-up; `crate::browser` applies them to each request.
use super::must_be;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Who may use the hub cross-origin, from `WORKSHOP_CORS_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// The default: same-origin pages only (the served UI needs nothing more).
    #[default]
    SameOriginOnly,
    /// These origins (lowercase `scheme://host[:port]`) may read and write.
    Listed(Vec<String>),
    /// `*`: any page may read and write, the behaviour of the first release.
    Any,
}

/// The browser settings, parsed once at start-up (see `config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `WORKSHOP_HOSTNAMES`, lowercase, without a trailing dot.
    pub hostnames: Vec<String>,
    pub cors: CorsOrigins,
}

impl Policy {
    /// `WORKSHOP_HOSTNAMES` and `WORKSHOP_CORS_ORIGINS` from a key lookup (`Config`'s).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Policy, String> {
        Ok(Policy {
            hostnames: parse_hostnames(&get("WORKSHOP_HOSTNAMES").unwrap_or_default())?,
            cors: parse_cors_origins(&get("WORKSHOP_CORS_ORIGINS").unwrap_or_default())?,
        })
    }

    /// Whether a browser may address the hub under `host`: an IP literal, `localhost`, or a
    /// listed name; anything else could be a DNS-rebound name.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        name == "localhost" || is_ip_literal(&name) || self.hostnames.contains(&name)
    }
}

/// An IPv4 address, or an IPv6 one in brackets, as a `Host` header names them.
fn is_ip_literal(name: &str) -> bool {
    name.parse::<Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<Ipv6Addr>().is_ok())
}

/// The host part of a `Host` header (port removed; IPv6 keeps its brackets), if well formed.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let port = &host[name.len()..];
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!name.is_empty() && port_ok).then_some(name)
}

/// `WORKSHOP_HOSTNAMES`: comma-separated host names (no scheme, no port).
pub fn parse_hostnames(raw: &str) -> Result<Vec<String>, String> {
    let items = raw.split(',').map(str::trim).filter(|s| !s.is_empty());
    items.map(parse_hostname).collect()
}

/// One host name, lowercase and without a trailing dot.
fn parse_hostname(item: &str) -> Result<String, String> {
    let name = item.strip_suffix('.').unwrap_or(item).to_ascii_lowercase();
    match is_hostname(&name) {
        true => Ok(name),
        false => Err(must_be("WORKSHOP_HOSTNAMES", HOSTNAMES_FORM, item)),
    }
}

const HOSTNAMES_FORM: &str =
    "comma-separated host names like hub,hub.tail1234.ts.net (no scheme, no port)";

/// Letters, digits, dots and hyphens: no scheme, port or path.
fn is_hostname(name: &str) -> bool {
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    valid && !name.is_empty()
}

/// `WORKSHOP_CORS_ORIGINS`: `*`, or comma-separated origins `http[s]://host[:port]`.
pub fn parse_cors_origins(raw: &str) -> Result<CorsOrigins, String> {
    let items: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items == ["*"] {
        return Ok(CorsOrigins::Any);
    }
    let origins = items
        .into_iter()
        .map(parse_origin)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match origins.is_empty() {
        true => CorsOrigins::SameOriginOnly,
        false => CorsOrigins::Listed(origins),
    })
}

/// One origin, `http[s]://host[:port]`, lowercase and without a trailing slash.
fn parse_origin(item: &str) -> Result<String, String> {
    let origin = item.strip_suffix('/').unwrap_or(item).to_ascii_lowercase();
    match is_origin(&origin) {
        true => Ok(origin),
        false => Err(must_be("WORKSHOP_CORS_ORIGINS", ORIGINS_FORM, item)),
    }
}

const ORIGINS_FORM: &str = "* or comma-separated origins like http://host:port";

/// `http[s]://` and a host with an optional port, nothing after it.
fn is_origin(origin: &str) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| host_name(a).is_some() && !a.contains(['/', '?', '#', '@']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated() {
        assert_eq!(parse_hostnames(" a.b ,HUB,").unwrap(), ["a.b", "hub"]);
        for bad in ["http://hub", "hub:4242", "a b", "hub/x"] {
            let err = parse_hostnames(bad).unwrap_err();
            assert!(err.starts_with("WORKSHOP_HOSTNAMES"), "{err}");
        }
        assert_eq!(parse_cors_origins("").unwrap(), CorsOrigins::SameOriginOnly);
        assert_eq!(parse_cors_origins(" * ").unwrap(), CorsOrigins::Any);
        assert_eq!(
            parse_cors_origins("HTTPS://UI.example/,http://[::1]:9").unwrap(),
            CorsOrigins::Listed(vec!["https://ui.example".into(), "http://[::1]:9".into()])
        );
        for bad in [
            "ui.example",
            "https://ui.example/path",
            "*,https://a",
            "ftp://a",
            "https://",
        ] {
            let err = parse_cors_origins(bad).unwrap_err();
            assert!(err.starts_with("WORKSHOP_CORS_ORIGINS"), "{err}");
        }
    }
}
