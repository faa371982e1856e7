//! What tells a browser's request apart: the headers only browsers add.
use crate::http::request_header;
use tiny_http::Request;

/// The request headers the rules read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub fetch_site: Option<&'a str>,
    pub fetch_mode: Option<&'a str>,
    pub fetch_dest: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub upgrade_insecure: Option<&'a str>,
}

impl<'a> Seen<'a> {
    pub fn of(request: &'a Request) -> Seen<'a> {
        Seen {
            host: request_header(request, "Host"),
            origin: request_header(request, "Origin"),
            fetch_site: request_header(request, "Sec-Fetch-Site"),
            fetch_mode: request_header(request, "Sec-Fetch-Mode"),
            fetch_dest: request_header(request, "Sec-Fetch-Dest"),
            user_agent: request_header(request, "User-Agent"),
            upgrade_insecure: request_header(request, "Upgrade-Insecure-Requests"),
        }
    }

    /// Browsers send `Sec-Fetch-*` only to secure contexts (https, localhost, IP literals)
    /// and `Origin` only on writes and cross-origin reads: a page on plain
    /// `http://rebound.example` navigates and reads with neither. Its user agent (which
    /// Chromium and Safari never let a page change) and the navigation header give it away.
    pub fn is_browser(&self) -> bool {
        self.origin.is_some()
            || self.fetch_site.is_some()
            || self.fetch_mode.is_some()
            || self.upgrade_insecure.is_some()
            || self.user_agent.is_some_and(|ua| ua.starts_with("Mozilla/"))
    }
}
