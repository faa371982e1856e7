//! Browser rules. The mesh is the auth layer, but the humans on it browse the internet, and a
//! web page they open must not use their browser to read or write the hub. So:
//!
//! - a request is a browser's when it carries a header only browsers add (`Origin`,
//!   `Sec-Fetch-Site`, `Sec-Fetch-Mode`, `Upgrade-Insecure-Requests`, or a `Mozilla/` user
//!   agent); curl, the CLI and agents send none of them and nothing here touches them;
//! - a browser request is served only under a Host that cannot be DNS-rebound: an IP literal,
//!   `localhost`, or a name in `WORKSHOP_HOSTNAMES`;
//! - a browser write from another origin is refused unless `WORKSHOP_CORS_ORIGINS` allows it;
//! - so is a browser read from another site, unless it is a link followed to a page: a page
//!   cannot see such an answer, but it can time it (a long poll tells whether a channel, a
//!   type or an inbox holds something, and when messages come) or show a hub file;
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
    /// Refuses (403) a browser request under a foreign Host, or a browser write or read from
    /// a foreign origin. `OPTIONS` is always let through: a preflight changes nothing.
    /// `waits`: the request asks to wait (`?wait=`), so its answer's timing says something.
    pub fn admit(&self, seen: &Seen, method: &Method, waits: bool) -> Result<(), ApiError> {
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
            Method::Get | Method::Head => self.admit_read(seen, host, waits),
            _ => self.admit_write(seen, host),
        }
    }

    /// A browser read: from the hub's own pages or an allowed origin, typed or bookmarked by
    /// the person, or a link from another site followed to a page that does not wait. What
    /// else another site's page asks for (a fetch, an image, a script, a frame) is refused:
    /// it could not read the answer, but it could time it or show it. A browser that says
    /// nothing of where a request comes from (no Fetch Metadata: plain http under a host
    /// name) is served, but not a wait, which is the one answer whose timing tells much.
    fn admit_read(&self, seen: &Seen, host: &str, waits: bool) -> Result<(), ApiError> {
        let ours = seen
            .origin
            .is_some_and(|o| same_origin(o, host) || self.cors_allows(o));
        let admitted = match seen.fetch_site {
            Some("same-origin" | "none") => true,
            Some(_) => ours || (is_followed_link(seen) && !waits),
            None => ours || !waits,
        };
        match admitted {
            true => Ok(()),
            false => Err(ApiError::forbidden(format!(
                "{} refused: another site's page may only link to the hub; list its origin \
                 in WORKSHOP_CORS_ORIGINS to let it read",
                match waits {
                    true => "a browser wait (?wait=) not from the hub's own pages",
                    false => "a cross-site read",
                }
            ))),
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
            // A page that opened the UI (a link, window.open) keeps no handle on it, so it
            // cannot later send the tab somewhere else.
            out.push(("Cross-Origin-Opener-Policy", "same-origin".into()));
        } else if path.starts_with("/files/") {
            out.push(("Content-Disposition", files::content_disposition(name)));
            out.push(("Content-Security-Policy", files::FILES_CSP.into()));
            // No other site's page may embed a hub file (an image, say) as its own.
            out.push(("Cross-Origin-Resource-Policy", "same-origin".into()));
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

/// A top-level navigation: a link followed or an address opened, not a page's fetch, image,
/// script or frame.
fn is_followed_link(seen: &Seen) -> bool {
    seen.fetch_mode == Some("navigate") && matches!(seen.fetch_dest, Some("document") | None)
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
mod tests;
