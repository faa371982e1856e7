//! The server: binds the socket, routes each request to its handler on the connection's own
//! thread, and shuts down cleanly on SIGTERM/SIGINT.
use crate::api::{channels, files, inbox, locks, messages, presence, search, status, tasks};
use crate::blobs::BlobStore;
use crate::broadcast::Broadcaster;
use crate::browser;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Reply, request_header, respond, split_url};
use crate::hub::Hub;
use crate::sse;
use crate::store::{Op, Store};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tiny_http::{Method, Request};

pub(crate) const UI_PAGE: &str = include_str!("../ui.html");
/// An idle keep-alive connection is closed after this; a stalled writer is dropped after it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Most simultaneous SSE streams (each holds a socket; the broadcaster writes them all).
const MAX_STREAMS: usize = 10_000;
/// How long shutdown waits for requests in hand before closing the database regardless.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Everything a handler needs, shared by every thread.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub blobs: BlobStore,
    pub broadcaster: Broadcaster,
    pub started: Instant,
    pub max_streams: usize,
    /// The loop guard (`WORKSHOP_RATE`).
    pub limiter: crate::ratelimit::RateLimiter,
    /// Long-poll reads (`?wait=`) waiting right now, shown in /status.
    pub long_polls: AtomicUsize,
    /// Set at shutdown: requests that arrive after it get a 503.
    stopping: AtomicBool,
    /// Requests being answered right now, which shutdown waits for.
    in_flight: AtomicUsize,
}

/// A started server. `shutdown` (or a signal, via `run`) stops it.
pub struct Running {
    pub addr: SocketAddr,
    app: Arc<App>,
    http: tiny_http::Server,
    retention: JoinHandle<()>,
    /// Held while serving, so `workshop restore` refuses to replace the database under us.
    _in_use: std::fs::File,
}

/// Opens the database and blob folder, binds the socket and starts serving.
pub fn start(config: Config) -> Result<Running, String> {
    let in_use = crate::backup::mark_in_use(&config.db_path)?;
    let fd_limit = crate::sys::raise_fd_limit();
    let hub = Arc::new(Hub::default());
    let blobs = BlobStore::open(&config.blobs_dir)?;
    let store = Store::open(&config.db_path, hub.clone())?;
    store
        .write(Op::Prune {
            retention_days: config.retention_days,
        })
        .map_err(|e| format!("retention cleanup failed: {}", e.message))?;
    let listener = TcpListener::bind(config.addr)
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    crate::sys::configure_listener(&listener, SOCKET_TIMEOUT, SOCKET_TIMEOUT);
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let broadcaster =
        Broadcaster::start(&hub).map_err(|e| format!("cannot start a thread: {e}"))?;
    let limiter = crate::ratelimit::RateLimiter::new(config.rate);
    let app = Arc::new(App {
        limiter,
        config,
        store,
        hub,
        blobs,
        broadcaster,
        started: Instant::now(),
        max_streams: MAX_STREAMS.min((fd_limit as usize).saturating_sub(256).max(16)),
        long_polls: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });
    let for_requests = app.clone();
    let http = tiny_http::Server::from_listener_with_handler(listener, move |request| {
        serve(&for_requests, request)
    })
    .map_err(|e| format!("cannot start HTTP on {addr}: {e}"))?;
    let for_retention = app.clone();
    let retention = thread::Builder::new()
        .name("retention".into())
        .spawn(move || retention(&for_retention))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(Running {
        addr,
        app,
        http,
        retention,
        _in_use: in_use,
    })
}

impl App {
    /// Shutdown has begun: long waits (claim-next) should end now.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

impl Running {
    /// Stops accepting, finishes the requests in hand, ends streams, commits what is queued
    /// and closes the database.
    pub fn shutdown(self) {
        self.app.stopping.store(true, Ordering::SeqCst);
        // Wakes claim-next callers waiting for work, so they answer 503 instead of holding
        // shutdown up for as long as they asked to wait.
        self.app.store.bell.ring();
        drop(self.http);
        let _ = self.retention.join();
        self.app.hub.close();
        let waiting = Instant::now();
        while self.app.in_flight.load(Ordering::SeqCst) > 0 && waiting.elapsed() < DRAIN_LIMIT {
            thread::sleep(Duration::from_millis(5));
        }
        self.app.broadcaster.stop();
        self.app.store.shutdown();
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let running = start(config)?;
    // Errors ignored: a closed stdout (`workshop | head -1`) must not stop the server.
    let _ = write!(
        std::io::stdout(),
        "{}",
        crate::banner::text(&running.app.config, running.addr)
    );
    if let Some(signal) = signals.forever().next() {
        eprintln!("workshop: signal {signal}, shutting down");
    }
    running.shutdown();
    eprintln!("workshop: stopped");
    Ok(())
}

fn retention(app: &App) {
    let mut last = Instant::now();
    while !app.is_stopping() {
        thread::sleep(Duration::from_millis(250));
        if last.elapsed() >= RETENTION_EVERY {
            last = Instant::now();
            let op = Op::Prune {
                retention_days: app.config.retention_days,
            };
            if let Err(e) = app.store.write(op) {
                eprintln!("workshop: retention cleanup failed: {}", e.message);
            }
        }
    }
}

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
/// was handed to the broadcaster, or the server is stopping).
fn serve(app: &App, request: Request) -> bool {
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

fn answer(app: &App, mut request: Request, started: Instant) -> bool {
    let method = request.method().clone();
    let url = request.url().to_string();
    let target = origin_form(&url);
    // A query that does not decode is refused, but the path still gets its browser headers.
    let (path, params, parsed) = match split_url(target) {
        Ok((path, params)) => (path, params, Ok(())),
        Err(err) => (
            target.split('?').next().unwrap_or(target),
            HashMap::new(),
            Err(err),
        ),
    };
    let (admitted, browser_headers) = browser_rules(app, &request, &method, path, &params);
    let mut label = "unrouted";
    let outcome = parsed.and_then(|()| {
        admitted?;
        check_host(&request)?;
        let route = route(&method, path)?;
        label = route.label();
        if let (Route::Stream(ch), Method::Get) = (&route, &method) {
            return Ok(Outcome::Stream(stream_filter(app, *ch, &params, &request)?));
        }
        handle(app, route, &params, &mut request).map(Outcome::Reply)
    });
    let outcome = outcome.unwrap_or_else(|err| Outcome::Reply(err.into()));
    let status = match &outcome {
        Outcome::Reply(reply) => reply.status(),
        Outcome::Stream(_) => 200,
    };
    crate::metrics::METRICS.count_request(label, status);
    if app.config.verbose {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (method, url) = (printable(method.as_str()), printable(&url));
        // One write per line, so a reader of the pipe (journald, a test) never sees half.
        let line = format!("{method} {url} \u{2192} {status} ({ms:.1} ms)\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }
    match outcome {
        Outcome::Reply(reply) => {
            respond(request, Reply::Headed(browser_headers, Box::new(reply)));
            true
        }
        Outcome::Stream(filter) => {
            sse::open(app, request, filter, browser_headers);
            false
        }
    }
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

enum Outcome {
    Reply(Reply),
    Stream(sse::Filter),
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

fn handle(
    app: &App,
    route: Route,
    params: &HashMap<String, String>,
    request: &mut Request,
) -> Result<Reply, ApiError> {
    match route {
        Route::Preflight => Ok(Reply::Preflight),
        // Only HEAD reaches here: GET streams were taken over in `answer`.
        Route::Stream(ch) => {
            stream_filter(app, ch, params, request)?;
            Ok(Reply::StreamHead)
        }
        Route::Publish(ch) => channels::publish(app, ch, request),
        Route::History(ch) => channels::history(app, ch, params),
        Route::Channels => channels::list(app),
        Route::CreateTask => tasks::create(app, request),
        Route::ListTasks => tasks::list(app, params),
        Route::ShowTask(id) => tasks::show(app, id),
        Route::ClaimNext => tasks::claim_next(app, request),
        Route::TaskAction(id, action) => tasks::act(app, id, action, request),
        Route::Upload => files::upload(app, request),
        Route::Fetch(hash) => files::fetch(app, hash, request),
        Route::Heartbeat => presence::heartbeat(app, request),
        Route::Presence => presence::list(app),
        Route::Status => status::status(app),
        Route::Metrics => Ok(status::metrics(app)),
        Route::Ui => Ok(Reply::Html(UI_PAGE)),
        Route::Inbox(agent) => inbox::read(app, agent, params),
        Route::MarkRead(agent) => inbox::mark_read(app, agent, request),
        Route::Message(id) => messages::show(app, id),
        Route::Thread(id) => messages::thread(app, id),
        Route::Search => search::search(app, params),
        Route::Locks => locks::list(app, params),
        Route::LockAction(action) => locks::act(app, action, request),
    }
}

/// Validates a stream request: channel, type prefix, and where to resume (Last-Event-ID,
/// which browsers send on reconnect, over `?since=`).
fn stream_filter(
    app: &App,
    ch: Option<&str>,
    params: &HashMap<String, String>,
    request: &Request,
) -> Result<sse::Filter, ApiError> {
    let ch = ch.map(crate::api::path_channel).transpose()?;
    let since = match request_header(request, "Last-Event-ID").filter(|v| !v.trim().is_empty()) {
        Some(raw) => Some(
            crate::ids::parse(raw.trim())
                .map(|id| id.to_string())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a message id"))?,
        ),
        None => channels::id_param(params, "since")?,
    };
    if app.hub.subscriber_count() >= app.max_streams {
        return Err(ApiError::unavailable(
            "too many open streams; try again later",
        ));
    }
    Ok(sse::Filter {
        ch,
        type_prefix: params.get("type").filter(|t| !t.is_empty()).cloned(),
        since,
    })
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
