//! Routing and the connection loop: each request is answered on its connection's own
//! thread by the handler its route names (`app` starts and stops the server around it).
mod root;
mod route;

use crate::app::App;
use crate::browser;
use crate::error::ApiError;
use crate::http::{Reply, Req, respond, split_url};
use route::route;
use std::collections::HashMap;
use std::time::Instant;
use tiny_http::{Method, Request};

/// Answers one request on its connection's thread; `false` ends the connection (a stream
/// took it over, or the server is stopping).
pub fn serve(app: &App, request: Request) -> bool {
    if app.is_stopping() {
        return refuse_while_stopping(request);
    }
    let _in_hand = app.answering();
    answer(app, request, Instant::now())
}

/// The 503 a request gets once the server is stopping; its connection ends with it.
fn refuse_while_stopping(request: Request) -> bool {
    let refusal = ApiError::shutting_down();
    respond(request, refusal.into());
    false
}

fn answer(app: &App, request: Request, started: Instant) -> bool {
    let method = request.method().clone();
    let url = request.url().to_string();
    let (path, query, parsed) = parse_target(&url);
    let (admitted, browser_headers) = browser_rules(app, &request, &method, path, &query);
    let mut req = Req {
        http: request,
        query,
        captures: Vec::new(),
    };
    let checked = parsed.and(admitted).and_then(|()| check_host(&req.http));
    let (label, reply) = match checked {
        Ok(()) => dispatch(app, &method, path, &mut req),
        Err(err) => ("unrouted", err.into()),
    };
    crate::metrics::METRICS.count_request(label, reply.status());
    if app.config.verbose {
        log(&method, &url, reply.status(), started);
    }
    respond(req.http, Reply::Headed(browser_headers, Box::new(reply)))
}

/// The routed path and decoded query of a request target. A query that does not decode is
/// refused (the error), but the path still gets its browser headers.
fn parse_target(url: &str) -> (&str, HashMap<String, String>, Result<(), ApiError>) {
    let target = origin_form(url);
    match split_url(target) {
        Ok((path, query)) => (path, query, Ok(())),
        Err(err) => (path_only(target), HashMap::new(), Err(err)),
    }
}

/// The path of a target whose query is left unread.
fn path_only(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// Routes the request and runs its handler: the route's name in /metrics, and the reply.
fn dispatch(app: &App, method: &Method, path: &str, req: &mut Req) -> (&'static str, Reply) {
    match route(method, path) {
        Ok(route) => (route.label(), run(app, &route, req)),
        Err(err) => ("unrouted", err.into()),
    }
}

/// Runs the route's handler on the request with the route's captures; a handler's error
/// is answered as its reply.
fn run(app: &App, route: &route::Route<'_>, req: &mut Req) -> Reply {
    req.captures = route.captures();
    route.handler()(app, req).unwrap_or_else(Reply::from)
}

/// One line on stderr per request (`WORKSHOP_VERBOSE`).
fn log(method: &Method, url: &str, status: u16, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (method, url) = (printable(method.as_str()), printable(url));
    // One write per line, so a reader of the pipe (journald, a test) never sees half.
    let line = format!("{method} {url} \u{2192} {status} ({ms:.1} ms)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// Client text for the log, with control and bidirectional characters escaped: no terminal
/// escape sequence from a request line reaches whoever reads the log, nor reorders the line.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match crate::text::is_hidden_control(c) {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

/// Whether the browser rules let this request through, and the headers they add to its
/// answer (refusals included: an allowed origin must be able to read its errors). `path`
/// is the routed path (an absolute-form target's too), `params` its decoded query.
fn browser_rules(
    app: &App,
    request: &Request,
    method: &Method,
    path: &str,
    params: &HashMap<String, String>,
) -> (Result<(), ApiError>, Vec<(&'static str, String)>) {
    let policy = &app.config.browser;
    let seen = browser::Seen::of(request);
    let name = params.get("name").map(String::as_str);
    let headers = policy.headers(&seen, method, path, name);
    let waits = params.contains_key("wait");
    (policy.admit(&seen, method, waits), headers)
}

/// The path and query of a request target. An absolute-form target
/// (`http://host/path`, which RFC 9112 §3.2.2 says a server must accept) is routed like
/// its path.
fn origin_form(target: &str) -> &str {
    let Some(rest) = after_scheme(target) else {
        return target;
    };
    // The authority ends at the first `/` or `?`; a query without a path is dropped.
    match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => &rest[at..],
        _ => "/",
    }
}

/// What follows `http://` or `https://` (in any case), when the target starts with one.
fn after_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host header, and no request has two.
fn check_host(request: &Request) -> Result<(), ApiError> {
    let headers = request.headers().iter();
    let hosts = headers.filter(|h| h.field.equiv("Host")).count();
    match host_refusal(hosts, *request.http_version() >= (1, 1)) {
        Some(refusal) => Err(ApiError::bad_request(refusal)),
        None => Ok(()),
    }
}

/// Why a request with `hosts` Host headers is refused, if it is: HTTP/1.0 may leave it out.
fn host_refusal(hosts: usize, http11: bool) -> Option<&'static str> {
    match (hosts, http11) {
        (1, _) | (0, false) => None,
        (0, true) => Some("an HTTP/1.1 request needs a Host header"),
        _ => Some("a request has one Host header, not several"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_the_log() {
        assert_eq!(printable("/ch/a\u{1b}[31m\r\n"), "/ch/a\\u{1b}[31m\\r\\n");
        assert_eq!(printable("plain é"), "plain é");
    }

    #[test]
    fn absolute_form_targets_are_routed_by_their_path() {
        assert_eq!(origin_form("/status?a=1"), "/status?a=1");
        assert_eq!(origin_form("http://h:80/status?a=1"), "/status?a=1");
        assert_eq!(origin_form("HTTPS://h/ch/x"), "/ch/x");
        assert_eq!(origin_form("http://h"), "/");
        assert_eq!(origin_form("http://h?a=1"), "/");
        assert_eq!(origin_form("ftp://h/status"), "ftp://h/status");
    }
}
