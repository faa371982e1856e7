//! Every route: which handler answers it, what it captures from the path, and its name in
//! /metrics.
use crate::api::{channels, files, inbox, locks, messages, presence, search, status, tasks};
use crate::app::App;
use crate::browser;
use crate::error::{ApiError, shown};
use crate::http::{Reply, Req};
use crate::sse;
use tiny_http::Method;

/// What every handler is: the request in, the reply (a stream included) or the error out.
type Handler = fn(&App, &mut Req) -> Result<Reply, ApiError>;

/// Every known route. Paths are matched before methods, so a known path with the wrong
/// method is a 405, an unknown path a 404.
#[derive(Debug, PartialEq)]
pub(super) enum Route<'a> {
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
    pub(super) fn label(&self) -> &'static str {
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
    pub(super) fn handler(&self) -> Handler {
        match self {
            Route::Preflight => browser::preflight,
            // `GET` streams, `HEAD` gets the stream's headers alone.
            Route::Stream(None) => super::root::stream_or_ui,
            Route::Stream(Some(_)) => sse::stream,
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
    pub(super) fn captures(&self) -> Vec<String> {
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

/// Why a request has no route: an unknown path (404), or a known path that takes other
/// methods (405, with the `Allow` header RFC 9110 §15.5.6 requires).
#[derive(Debug, PartialEq)]
pub(super) struct Unrouted {
    pub(super) error: ApiError,
    pub(super) allow: Option<&'static str>,
}

impl From<Unrouted> for Reply {
    fn from(unrouted: Unrouted) -> Reply {
        let reply = Reply::from(unrouted.error);
        match unrouted.allow {
            Some(allow) => Reply::Headed(vec![("Allow", allow.into())], Box::new(reply)),
            None => reply,
        }
    }
}

/// What `Allow` lists for a path with a read route (`GET`, `HEAD`) and/or a write route
/// (`POST`); `OPTIONS` (a preflight) is answered on every path.
fn allowed_methods(reads: bool, writes: bool) -> &'static str {
    match (reads, writes) {
        (true, true) => "GET, HEAD, POST, OPTIONS",
        (true, false) => "GET, HEAD, OPTIONS",
        (false, true) => "POST, OPTIONS",
        (false, false) => "OPTIONS",
    }
}

pub(super) fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, Unrouted> {
    if *method == Method::Options {
        return Ok(Route::Preflight);
    }
    let read = matches!(method, Method::Get | Method::Head);
    let write = *method == Method::Post;
    let pick = |read_route: Option<Route<'a>>, write_route: Option<Route<'a>>| {
        let allow = allowed_methods(read_route.is_some(), write_route.is_some());
        match (read, write) {
            (true, _) => read_route,
            (_, true) => write_route,
            _ => None,
        }
        .ok_or_else(|| {
            let (method, path) = (shown(method.as_str()), shown(path));
            let message = format!("{method} is not allowed on {path}: it takes {allow}");
            Unrouted {
                error: ApiError::method_not_allowed(message),
                allow: Some(allow),
            }
        })
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
        _ => Err(Unrouted {
            error: ApiError::not_found(format!("no route {}", shown(path))),
            allow: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let refused = |method: &Method, path: &str| route(method, path).unwrap_err().error.status;
        assert_eq!(refused(&get, "/tasks/ID/claim"), 405);
        assert_eq!(refused(&Method::Put, "/ch/a"), 405);
        assert_eq!(refused(&Method::Delete, "/status"), 405);
        assert_eq!(refused(&post, "/tasks/ID/explode"), 404);
        assert_eq!(refused(&get, "/nope"), 404);
        assert_eq!(refused(&get, "/ch/a/"), 404);
        assert_eq!(route(&get, "/inbox/bob"), Ok(Route::Inbox("bob")));
        assert_eq!(route(&post, "/inbox/bob/read"), Ok(Route::MarkRead("bob")));
        assert_eq!(refused(&get, "/inbox/bob/read"), 405);
        assert_eq!(refused(&get, ""), 404);
        assert_eq!(route(&get, "/metrics"), Ok(Route::Metrics));
        assert_eq!(refused(&get, "/tasks/claim"), 405);
    }

    #[test]
    fn a_405_allows_what_the_path_routes() {
        let allow = |method: &Method, path: &str| route(method, path).unwrap_err().allow;
        assert_eq!(
            allow(&Method::Put, "/ch/a"),
            Some("GET, HEAD, POST, OPTIONS")
        );
        assert_eq!(allow(&Method::Post, "/status"), Some("GET, HEAD, OPTIONS"));
        assert_eq!(allow(&Method::Get, "/tasks/ID/done"), Some("POST, OPTIONS"));
        assert_eq!(allow(&Method::Get, "/nope"), None);
    }

    #[test]
    fn routes_capture_their_path_segments_in_order() {
        let captured = |method: &Method, path: &str| route(method, path).unwrap().captures();
        assert_eq!(captured(&Method::Post, "/tasks/ID/done"), ["ID", "done"]);
        assert_eq!(captured(&Method::Get, "/ch/a%2Fb/history"), ["a%2Fb"]);
        assert_eq!(captured(&Method::Get, "/files/sha256:x"), ["sha256:x"]);
        assert_eq!(captured(&Method::Post, "/locks/acquire"), ["acquire"]);
        assert!(captured(&Method::Get, "/").is_empty());
        assert!(captured(&Method::Get, "/history").is_empty());
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
}
