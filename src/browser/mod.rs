//! Browser rules. The mesh is the auth layer, but the humans on it browse the internet, and a
//! web page they open must not use their browser to read or write the hub. So:
//!
//! - a request is a browser's when it carries a header only browsers add (`Origin`,
//!   `Sec-Fetch-Site`, `Sec-Fetch-Mode`, `Upgrade-Insecure-Requests`, or a `Mozilla/` user
//!   agent); curl, the CLI and agents send none of them and nothing here touches them;
//! - a browser request is served only under a Host that cannot be DNS-rebound: an IP literal,
//!   `localhost`, or a name in `WORKSHOP_HOSTNAMES`;
//! - a browser write from another origin is refused unless `WORKSHOP_CORS_ORIGINS` allows it;
//! - cross-origin reads are opt-in: no `Access-Control-Allow-Origin` unless that list allows
//!   the origin;
//! - answers carry the headers that keep hub content from running in (or framing) a page:
//!   nosniff everywhere, a CSP header on `/ui`, and attachment plus sandbox on `/files/`.
mod files;
mod seen;
pub mod ui;

pub use seen::Seen;

use crate::app::App;
use crate::config::browser::{CorsOrigins, Policy};
use crate::error::{ApiError, shown};
use crate::http::{Reply, Req};
use tiny_http::Method;

impl Policy {
    /// Refuses (403) a browser request under a foreign Host, or a browser write from a
    /// foreign origin. `OPTIONS` is always let through: a preflight changes nothing.
    pub fn admit(&self, seen: &Seen, method: &Method) -> Result<(), ApiError> {
        if *method == Method::Options || !seen.is_browser() {
            return Ok(());
        }
        let host = seen.host.unwrap_or("");
        if !self.host_allowed(host) {
            return Err(ApiError::forbidden(format!(
                "browser requests for host {} are refused (DNS rebinding guard): add its \
                 name to WORKSHOP_HOSTNAMES to use the hub under it",
                shown(host)
            )));
        }
        match method {
            Method::Get | Method::Head => Ok(()),
            _ => self.admit_write(seen, host),
        }
    }

    /// A browser write: from the hub's own origin or an allowed one.
    fn admit_write(&self, seen: &Seen, host: &str) -> Result<(), ApiError> {
        match seen.origin {
            Some(origin) if same_origin(origin, host) || self.cors_allows(origin) => Ok(()),
            Some(origin) => Err(ApiError::forbidden(format!(
                "cross-origin write from {} refused: list that origin in \
                 WORKSHOP_CORS_ORIGINS to allow it",
                shown(origin)
            ))),
            None if matches!(seen.fetch_site, Some("cross-site" | "same-site")) => {
                Err(ApiError::forbidden(
                    "cross-site write refused: list the page's origin in WORKSHOP_CORS_ORIGINS \
                     to allow it",
                ))
            }
            None => Ok(()),
        }
    }

    /// The headers this answer adds for browsers: CORS (only for allowed origins), and the
    /// CSP and download headers of `/ui` and `/files/`. `name` is `/files/`'s `?name=`.
    pub fn headers(
        &self,
        seen: &Seen,
        method: &Method,
        path: &str,
        name: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut out = self.cors_headers(seen, method);
        if path == "/ui" {
            out.push(("Content-Security-Policy", ui::CSP.clone()));
        } else if path.starts_with("/files/") {
            out.push(("Content-Disposition", files::content_disposition(name)));
            out.push(("Content-Security-Policy", files::FILES_CSP.into()));
        }
        out
    }

    /// `Access-Control-*` for an allowed origin (a preflight's included), and `Vary`.
    fn cors_headers(&self, seen: &Seen, method: &Method) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(allowed) = self.allowed_origin(seen.origin) {
            out.push(("Access-Control-Allow-Origin", allowed));
            if *method == Method::Options {
                out.push(("Access-Control-Allow-Methods", ALLOW_METHODS.into()));
                out.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.into()));
                out.push(("Access-Control-Max-Age", "86400".into()));
            }
        }
        if let CorsOrigins::Listed(_) = self.cors {
            // The answer depends on the Origin: caches must keep one per origin.
            out.push(("Vary", "Origin".into()));
        }
        out
    }

    fn cors_allows(&self, origin: &str) -> bool {
        match &self.cors {
            CorsOrigins::SameOriginOnly => false,
            CorsOrigins::Listed(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            CorsOrigins::Any => true,
        }
    }

    /// The `Access-Control-Allow-Origin` value for this request, if any. `*` answers every
    /// request as the first release did, with or without an `Origin`.
    fn allowed_origin(&self, origin: Option<&str>) -> Option<String> {
        match (&self.cors, origin) {
            (CorsOrigins::Any, _) => Some("*".into()),
            (CorsOrigins::Listed(_), Some(origin)) if self.cors_allows(origin) => {
                Some(origin.to_string())
            }
            _ => None,
        }
    }
}

/// `OPTIONS`: a CORS preflight, answered for every path; its allow headers depend on its
/// origin (`Policy::headers`).
pub fn preflight(_: &App, _: &mut Req) -> Result<Reply, ApiError> {
    Ok(Reply::Preflight)
}

pub const ALLOW_METHODS: &str = "GET,HEAD,POST,OPTIONS";
pub const ALLOW_HEADERS: &str = "Content-Type,Last-Event-ID,Idempotency-Key";

/// Whether `origin` is the hub's own origin as the browser addressed it (`Host`), over
/// http, or https behind a TLS proxy. Default ports are implied on either side.
fn same_origin(origin: &str, host: &str) -> bool {
    let (authority, default_port) = match origin.split_once("://") {
        Some(("http", authority)) => (authority, ":80"),
        Some(("https", authority)) => (authority, ":443"),
        _ => return false,
    };
    let strip = |a: &str| -> String {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    !authority.is_empty() && strip(authority) == strip(host.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::browser::{parse_cors_origins, parse_hostnames};

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36";

    fn policy(hostnames: &str, cors: &str) -> Policy {
        Policy {
            hostnames: parse_hostnames(hostnames).unwrap(),
            cors: parse_cors_origins(cors).unwrap(),
        }
    }

    fn seen<'a>(host: &'a str, origin: Option<&'a str>) -> Seen<'a> {
        Seen {
            host: Some(host),
            origin,
            user_agent: Some(CHROME),
            ..Seen::default()
        }
    }

    fn status(result: Result<(), ApiError>) -> u16 {
        result.err().map_or(200, |e| e.status)
    }

    #[test]
    fn browsers_are_told_apart_from_other_clients() {
        assert!(!Seen::default().is_browser());
        let curl = Seen {
            host: Some("evil.test"),
            user_agent: Some("curl/8.5.0"),
            ..Seen::default()
        };
        assert!(!curl.is_browser());
        assert!(seen("x", None).is_browser());
        for marked in [
            Seen {
                origin: Some("null"),
                ..Seen::default()
            },
            Seen {
                fetch_site: Some("none"),
                ..Seen::default()
            },
            Seen {
                fetch_mode: Some("cors"),
                ..Seen::default()
            },
            Seen {
                upgrade_insecure: Some("1"),
                ..Seen::default()
            },
        ] {
            assert!(marked.is_browser(), "{marked:?}");
        }
    }

    #[test]
    fn non_browser_clients_pass_whatever_their_host() {
        let p = policy("", "");
        let curl = Seen {
            host: Some("evil.test:4242"),
            user_agent: Some("curl/8"),
            ..Seen::default()
        };
        for method in [Method::Get, Method::Post] {
            assert_eq!(status(p.admit(&curl, &method)), 200);
        }
    }

    #[test]
    fn browser_hosts_must_not_be_rebindable() {
        let p = policy("hub, Hub.Tail1234.ts.net.", "");
        for good in [
            "127.0.0.1:4242",
            "100.64.1.2",
            "[::1]:4242",
            "[fd7a:115c::1]",
            "localhost:4242",
            "LOCALHOST",
            "hub:4242",
            "hub.tail1234.ts.net",
            "HUB.tail1234.ts.net.:80",
        ] {
            assert_eq!(
                status(p.admit(&seen(good, None), &Method::Get)),
                200,
                "{good}"
            );
        }
        for bad in [
            "evil.test:4242",
            "hub.evil.test",
            "127.0.0.1.evil.test",
            "localhost.evil.test",
            "",
            "[::1",
            "hub:port",
            "127.1",
        ] {
            let err = p.admit(&seen(bad, None), &Method::Get).unwrap_err();
            assert_eq!(err.status, 403, "{bad}");
            assert!(
                err.message.contains("WORKSHOP_HOSTNAMES"),
                "{}",
                err.message
            );
        }
        let no_host = Seen {
            fetch_mode: Some("navigate"),
            ..Seen::default()
        };
        assert_eq!(status(p.admit(&no_host, &Method::Get)), 403);
        // A preflight is always answered: it changes nothing.
        assert_eq!(
            status(p.admit(&seen("evil.test", None), &Method::Options)),
            200
        );
    }

    #[test]
    fn cross_origin_writes_are_refused_unless_listed() {
        let p = policy("", "");
        let host = "127.0.0.1:4242";
        let write = |origin: Option<&str>, site: Option<&str>| {
            let mut s = seen(host, origin);
            s.fetch_site = site;
            status(p.admit(&s, &Method::Post))
        };
        assert_eq!(write(Some("http://127.0.0.1:4242"), None), 200);
        assert_eq!(write(Some("https://127.0.0.1:4242"), None), 200);
        assert_eq!(write(None, Some("same-origin")), 200);
        assert_eq!(write(None, Some("none")), 200);
        assert_eq!(write(None, None), 200);
        for origin in [
            "http://127.0.0.1:4243",
            "http://localhost:4242",
            "https://evil.example",
            "null",
            "http://127.0.0.1:4242.evil.example",
        ] {
            assert_eq!(write(Some(origin), Some("same-origin")), 403, "{origin}");
        }
        assert_eq!(write(None, Some("cross-site")), 403);
        assert_eq!(write(None, Some("same-site")), 403);
        // Reads are not refused: without Access-Control-Allow-Origin the page cannot see them.
        assert_eq!(
            status(p.admit(&seen(host, Some("https://evil.example")), &Method::Get)),
            200
        );

        let listed = policy("", "https://ui.example, http://127.0.0.1:9000/");
        let from = |origin| status(listed.admit(&seen(host, Some(origin)), &Method::Post));
        assert_eq!(from("https://ui.example"), 200);
        assert_eq!(from("http://127.0.0.1:9000"), 200);
        assert_eq!(from("https://evil.example"), 403);
        let any = policy("", "*");
        let s = seen(host, Some("https://evil.example"));
        assert_eq!(status(any.admit(&s, &Method::Post)), 200);
    }

    #[test]
    fn default_ports_are_implied_in_same_origin() {
        assert!(same_origin("http://hub", "hub:80"));
        assert!(same_origin("http://hub:80", "hub"));
        assert!(same_origin("https://hub", "hub:443"));
        assert!(!same_origin("http://hub", "hub:4242"));
        assert!(!same_origin("ftp://hub", "hub"));
        assert!(!same_origin("http://", ""));
    }

    fn header<'a>(headers: &'a [(&str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn cors_headers_are_opt_in() {
        let o = Some("https://ui.example");
        let s = seen("127.0.0.1", o);
        let none = policy("", "").headers(&s, &Method::Options, "/ch/a", None);
        assert!(none.is_empty(), "{none:?}");

        let listed = policy("", "https://ui.example");
        let h = listed.headers(&s, &Method::Options, "/ch/a", None);
        assert_eq!(
            header(&h, "Access-Control-Allow-Origin"),
            Some("https://ui.example")
        );
        assert_eq!(
            header(&h, "Access-Control-Allow-Methods"),
            Some(ALLOW_METHODS)
        );
        assert_eq!(
            header(&h, "Access-Control-Allow-Headers"),
            Some(ALLOW_HEADERS)
        );
        assert_eq!(header(&h, "Vary"), Some("Origin"));
        let h = listed.headers(&s, &Method::Get, "/ch/a", None);
        assert_eq!(header(&h, "Access-Control-Allow-Methods"), None);
        let other = seen("127.0.0.1", Some("https://evil.example"));
        let h = listed.headers(&other, &Method::Options, "/ch/a", None);
        assert_eq!(header(&h, "Access-Control-Allow-Origin"), None);
        assert_eq!(header(&h, "Access-Control-Allow-Methods"), None);

        let any = policy("", "*");
        let h = any.headers(&Seen::default(), &Method::Get, "/status", None);
        assert_eq!(header(&h, "Access-Control-Allow-Origin"), Some("*"));
    }

    #[test]
    fn ui_and_files_get_their_policies() {
        let p = policy("", "");
        let h = p.headers(&Seen::default(), &Method::Get, "/ui", None);
        let csp = header(&h, "Content-Security-Policy").unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.ends_with("; frame-ancestors 'none'"), "{csp}");
        let h = p.headers(&Seen::default(), &Method::Get, "/files/sha256:x", None);
        assert_eq!(header(&h, "Content-Disposition"), Some("attachment"));
        assert_eq!(
            header(&h, "Content-Security-Policy"),
            Some(files::FILES_CSP)
        );
        let h = p.headers(&Seen::default(), &Method::Get, "/status", None);
        assert!(h.is_empty());
    }
}
