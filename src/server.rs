//! Routing and the connection loop: each request is answered on its connection's own
//! thread by the handler its route names (`app` starts and stops the server around it).
use crate::api::{channels, files, inbox, locks, messages, presence, search, status, tasks};
use crate::app::App;
use crate::browser;
use crate::error::ApiError;
use crate::http::{Reply, Req, respond, split_url};
use crate::sse;
use std::collections::HashMap;
use std::time::Instant;
use tiny_http::{Method, Request};

/// What every handler is: the request in, the reply (a stream included) or the error out.
type Handler = fn(&App, &mut Req) -> Result<Reply, ApiError>;

/// Every known route. Paths are matched before methods, so a known path with the wrong
/// method is a 405, an unknown path a 404.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    Preflight,
    Stream(Option<&'a str>),
    Publish(&'a str),
    History(Option<&'a str>),
    Channels,
    CreateTask,
    ListTasks,
    ShowTask(&'a str),
    ClaimNext,
    TaskAction(&'a str, &'a str),
    Upload,
    Fetch(&'a str),
    Heartbeat,
    Presence,
    Status,
    Metrics,
    Ui,
    Inbox(&'a str),
    MarkRead(&'a str),
    Message(&'a str),
    Thread(&'a str),
    Search,
    Locks,
    LockAction(&'a str),
}

impl Route<'_> {
    /// The route's name in /metrics (one of `metrics::ROUTES`).
    fn label(&self) -> &'static str {
        match self {
            Route::Preflight => "preflight",
            Route::Stream(_) => "stream",
            Route::Publish(_) => "publish",
            Route::History(_) => "history",
            Route::Channels => "channels",
            Route::CreateTask => "task_create",
            Route::ListTasks => "task_list",
            Route::ShowTask(_) => "task_show",
            Route::ClaimNext => "task_claim_next",
            Route::TaskAction(..) => "task_action",
            Route::Upload => "upload",
            Route::Fetch(_) => "fetch",
            Route::Heartbeat => "heartbeat",
            Route::Presence => "presence",
            Route::Status => "status",
            Route::Metrics => "metrics",
            Route::Ui => "ui",
            Route::Inbox(_) => "inbox",
            Route::MarkRead(_) => "inbox_read",
            Route::Message(_) => "message",
            Route::Thread(_) => "thread",
            Route::Search => "search",
            Route::Locks => "locks",
            Route::LockAction(_) => "lock_action",
        }
    }

    /// The handler that answers this route.
    fn handler(&self) -> Handler {
        match self {
            Route::Preflight => browser::preflight,
            // `GET` streams, `HEAD` gets the stream's headers alone.
            Route::Stream(_) => sse::stream,
            Route::Publish(_) => channels::publish,
            Route::History(_) => channels::history,
            Route::Channels => channels::list,
            Route::CreateTask => tasks::create,
            Route::ListTasks => tasks::list,
            Route::ShowTask(_) => tasks::show,
            Route::ClaimNext => tasks::claim_next,
            Route::TaskAction(..) => tasks::act,
            Route::Upload => files::upload,
            Route::Fetch(_) => files::fetch,
            Route::Heartbeat => presence::heartbeat,
            Route::Presence => presence::list,
            Route::Status => status::status,
            Route::Metrics => status::metrics,
            Route::Ui => browser::ui::page,
            Route::Inbox(_) => inbox::read,
            Route::MarkRead(_) => inbox::mark_read,
            Route::Message(_) => messages::show,
            Route::Thread(_) => messages::thread,
            Route::Search => search::search,
            Route::Locks => locks::list,
            Route::LockAction(_) => locks::act,
        }
    }

    /// What the route took from the path, in order, for `Req::captures`.
    fn captures(&self) -> Vec<String> {
        let taken = match *self {
            Route::TaskAction(id, action) => vec![id, action],
            Route::Stream(Some(one)) | Route::Publish(one) | Route::History(Some(one)) => vec![one],
            Route::ShowTask(one) | Route::Fetch(one) | Route::Inbox(one) => vec![one],
            Route::MarkRead(one) | Route::Message(one) | Route::Thread(one) => vec![one],
            Route::LockAction(one) => vec![one],
            _ => vec![],
        };
        taken.into_iter().map(str::to_string).collect()
    }
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, ApiError> {
    if *method == Method::Options {
        return Ok(Route::Preflight);
    }
    let read = matches!(method, Method::Get | Method::Head);
    let write = *method == Method::Post;
    let pick = |read_route: Option<Route<'a>>, write_route: Option<Route<'a>>| {
        match (read, write) {
            (true, _) => read_route,
            (_, true) => write_route,
            _ => None,
        }
        .ok_or_else(|| ApiError::new(405, format!("{method} is not allowed on {path}")))
    };
    if let Some(rest) = path.strip_prefix("/files/") {
        return pick(Some(Route::Fetch(rest)), None);
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        [""] => pick(Some(Route::Stream(None)), None),
        ["ch", ch] => pick(Some(Route::Stream(Some(ch))), Some(Route::Publish(ch))),
        ["ch", ch, "history"] => pick(Some(Route::History(Some(ch))), None),
        ["history"] => pick(Some(Route::History(None)), None),
        ["channels"] => pick(Some(Route::Channels), None),
        ["tasks"] => pick(Some(Route::ListTasks), Some(Route::CreateTask)),
        ["tasks", "claim"] => pick(None, Some(Route::ClaimNext)),
        ["tasks", id] => pick(Some(Route::ShowTask(id)), None),
        ["tasks", id, action] if tasks::ACTIONS.contains(action) => {
            pick(None, Some(Route::TaskAction(id, action)))
        }
        ["files"] => pick(None, Some(Route::Upload)),
        ["presence"] => pick(Some(Route::Presence), Some(Route::Heartbeat)),
        ["status"] => pick(Some(Route::Status), None),
        ["metrics"] => pick(Some(Route::Metrics), None),
        ["ui"] => pick(Some(Route::Ui), None),
        ["inbox", agent] => pick(Some(Route::Inbox(agent)), None),
        ["inbox", agent, "read"] => pick(None, Some(Route::MarkRead(agent))),
        ["messages", id] => pick(Some(Route::Message(id)), None),
        ["messages", id, "thread"] => pick(Some(Route::Thread(id)), None),
        ["search"] => pick(Some(Route::Search), None),
        ["locks"] => pick(Some(Route::Locks), None),
        ["locks", action] if locks::ACTIONS.contains(action) => {
            pick(None, Some(Route::LockAction(action)))
        }
        _ => Err(ApiError::not_found(format!("no route {path}"))),
    }
}

/// Answers one request on its connection's thread; `false` ends the connection (a stream
/// took it over, or the server is stopping).
pub fn serve(app: &App, request: Request) -> bool {
    if app.is_stopping() {
        respond(
            request,
            ApiError::unavailable("server is shutting down").into(),
        );
        return false;
    }
    // Counted as in hand until answered, even if the handler panics.
    let _counted = crate::counted::Counted::enter(&app.in_flight);
    answer(app, request, Instant::now())
}

fn answer(app: &App, request: Request, started: Instant) -> bool {
    let method = request.method().clone();
    let url = request.url().to_string();
    let target = origin_form(&url);
    // A query that does not decode is refused, but the path still gets its browser headers.
    let (path, query, parsed) = match split_url(target) {
        Ok((path, query)) => (path, query, Ok(())),
        Err(err) => (
            target.split('?').next().unwrap_or(target),
            HashMap::new(),
            Err(err),
        ),
    };
    let (admitted, browser_headers) = browser_rules(app, &request, &method, path, &query);
    let mut req = Req {
        http: request,
        query,
        captures: Vec::new(),
    };
    let mut label = "unrouted";
    let reply = parsed
        .and_then(|()| {
            admitted?;
            check_host(&req.http)?;
            let route = route(&method, path)?;
            label = route.label();
            req.captures = route.captures();
            route.handler()(app, &mut req)
        })
        .unwrap_or_else(Reply::from);
    crate::metrics::METRICS.count_request(label, reply.status());
    if app.config.verbose {
        log(&method, &url, reply.status(), started);
    }
    respond(req.http, Reply::Headed(browser_headers, Box::new(reply)))
}

/// One line on stderr per request (`WORKSHOP_VERBOSE`).
fn log(method: &Method, url: &str, status: u16, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (method, url) = (printable(method.as_str()), printable(url));
    // One write per line, so a reader of the pipe (journald, a test) never sees half.
    let line = format!("{method} {url} \u{2192} {status} ({ms:.1} ms)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// Client text for the log, with control characters escaped: no terminal escape sequence
/// from a request line reaches whoever reads the log.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
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
    (policy.admit(&seen, method), headers)
}

/// The path and query of a request target. An absolute-form target
/// (`http://host/path`, which RFC 9112 §3.2.2 says a server must accept) is routed like
/// its path.
fn origin_form(target: &str) -> &str {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|scheme| {
            target
                .get(..scheme.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(scheme))
        })
        .map(|scheme| scheme.len());
    let Some(scheme_len) = scheme_len else {
        return target;
    };
    let rest = &target[scheme_len..];
    // The authority ends at the first `/` or `?`; a query without a path is dropped.
    match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => &rest[at..],
        _ => "/",
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host header, and no request has two.
fn check_host(request: &Request) -> Result<(), ApiError> {
    let hosts = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Host"))
        .count();
    let needed = *request.http_version() >= (1, 1);
    match hosts {
        1 => Ok(()),
        0 if !needed => Ok(()),
        0 => Err(ApiError::bad_request(
            "an HTTP/1.1 request needs a Host header",
        )),
        _ => Err(ApiError::bad_request(
            "a request has one Host header, not several",
        )),
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
    fn routes() {
        let get = Method::Get;
        let post = Method::Post;
        assert_eq!(route(&get, "/"), Ok(Route::Stream(None)));
        assert_eq!(route(&get, "/ch/a"), Ok(Route::Stream(Some("a"))));
        assert_eq!(route(&post, "/ch/a"), Ok(Route::Publish("a")));
        assert_eq!(route(&Method::Head, "/files/x/y"), Ok(Route::Fetch("x/y")));
        assert_eq!(
            route(&post, "/tasks/ID/claim"),
            Ok(Route::TaskAction("ID", "claim"))
        );
        assert_eq!(route(&Method::Options, "/anything"), Ok(Route::Preflight));
        assert_eq!(route(&get, "/tasks/ID/claim").unwrap_err().status, 405);
        assert_eq!(route(&Method::Put, "/ch/a").unwrap_err().status, 405);
        assert_eq!(route(&Method::Delete, "/status").unwrap_err().status, 405);
        assert_eq!(route(&post, "/tasks/ID/explode").unwrap_err().status, 404);
        assert_eq!(route(&get, "/nope").unwrap_err().status, 404);
        assert_eq!(route(&get, "/ch/a/").unwrap_err().status, 404);
        assert_eq!(route(&get, "/inbox/bob"), Ok(Route::Inbox("bob")));
        assert_eq!(route(&post, "/inbox/bob/read"), Ok(Route::MarkRead("bob")));
        assert_eq!(route(&get, "/inbox/bob/read").unwrap_err().status, 405);
        assert_eq!(route(&get, "").unwrap_err().status, 404);
        assert_eq!(route(&get, "/metrics"), Ok(Route::Metrics));
        assert_eq!(route(&get, "/tasks/claim").unwrap_err().status, 405);
    }

    #[test]
    fn every_route_has_a_metrics_label() {
        let get = Method::Get;
        let post = Method::Post;
        let paths = [
            (&Method::Options, "/x"),
            (&get, "/"),
            (&post, "/ch/a"),
            (&get, "/history"),
            (&get, "/channels"),
            (&post, "/tasks"),
            (&get, "/tasks"),
            (&get, "/tasks/ID"),
            (&post, "/tasks/claim"),
            (&post, "/tasks/ID/done"),
            (&post, "/files"),
            (&get, "/files/h"),
            (&post, "/presence"),
            (&get, "/presence"),
            (&get, "/status"),
            (&get, "/metrics"),
            (&get, "/ui"),
            (&get, "/inbox/a"),
            (&post, "/inbox/a/read"),
            (&get, "/messages/ID"),
            (&get, "/messages/ID/thread"),
            (&get, "/search"),
            (&get, "/locks"),
            (&post, "/locks/acquire"),
        ];
        let labels: std::collections::HashSet<&str> = paths
            .iter()
            .map(|(method, path)| route(method, path).unwrap().label())
            .collect();
        assert_eq!(labels.len(), paths.len(), "one label per route");
        for label in labels {
            assert!(crate::metrics::ROUTES.contains(&label), "{label}");
        }
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
