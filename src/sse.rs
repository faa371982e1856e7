//! Opening an SSE stream, on the client's connection thread: subscribe to the hub, send the
//! head and replay what the client missed from SQLite, then hand the socket to the
//! broadcaster, which forwards live events skipping ids already sent. Subscribing before the
//! replay is what makes resume gap-free; comparing ids is what makes it duplicate-free.
//!
//! Written straight onto the socket (`Request::into_socket`), the replay a batch of stored
//! messages per write: tiny_http's own chunked encoder buffers 8 KiB before sending anything.
use crate::app::App;
use crate::broadcast::{Broadcaster, Live};
use crate::error::ApiError;
use crate::http::{EVENT_STREAM_HEADERS as HEADERS, Headers, Reply, Req, Takeover, respond};
pub use crate::hub::Filter;
use crate::hub::frame::{encode, encode_frame};
use crate::hub::{Refusal, Subscription, TOO_MANY_STREAMS};
use crate::store::Reader;
use crate::store::batches::Messages;
use crate::store::horizon;
use crate::store::read::MessageQuery;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use tiny_http::{Method, Request};

/// Stored messages read per replay query.
const REPLAY_PAGE: usize = 1000;

/// `GET /`, `GET /ch/{ch}`: the stream, which takes the connection over once answered;
/// `HEAD`: its headers alone.
pub fn stream(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let filter = filter(req)?;
    if *req.http.method() != Method::Get {
        return Ok(head_only());
    }
    let subscription = subscribe(app, &filter)?;
    Ok(Reply::Stream(Box::new(Opening {
        filter,
        subscription,
        reader: app.store.reader(),
        broadcaster: app.broadcaster.clone(),
    })))
}

/// A place among the hub's subscribers, taken now so that a stream over the cap is refused
/// (503) before the connection is taken over.
fn subscribe(app: &App, filter: &Filter) -> Result<Subscription, ApiError> {
    match app.hub.subscribe(filter.ch.clone(), app.max_streams) {
        Ok(subscription) => Ok(subscription),
        Err(Refusal::Full) => Err(ApiError::unavailable(TOO_MANY_STREAMS)),
        Err(Refusal::Closed) => Err(ApiError::shutting_down()),
    }
}

/// A stream's headers without the stream (`HEAD`); nosniff comes with every answer.
fn head_only() -> Reply {
    let headers = HEADERS
        .iter()
        .filter(|(name, _)| *name != "X-Content-Type-Options");
    let headers = headers.map(|(name, value)| (*name, value.to_string()));
    Reply::Headed(headers.collect(), Box::new(Reply::Empty(200)))
}

/// Validates a stream request: channel, type prefix, and where to resume.
fn filter(req: &Req) -> Result<Filter, ApiError> {
    let ch = req.captures.first();
    let ch = ch.map(|ch| crate::api::path_channel(ch)).transpose()?;
    let since = resume_point(req)?;
    Ok(Filter {
        ch,
        type_prefix: req.query.get("type").filter(|t| !t.is_empty()).cloned(),
        since,
    })
}

/// Last-Event-ID, which browsers send on reconnect, over `?since=`.
fn resume_point(req: &Req) -> Result<Option<String>, ApiError> {
    let last_event_id = crate::http::request_header(&req.http, "Last-Event-ID");
    match last_event_id.map(str::trim).filter(|v| !v.is_empty()) {
        Some(raw) => parse_last_event_id(raw).map(Some),
        None => crate::api::id_param(&req.query, "since"),
    }
}

/// A Last-Event-ID value as a message id, refused when it is not one.
fn parse_last_event_id(raw: &str) -> Result<String, ApiError> {
    crate::ids::parse(raw)
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a message id"))
}

/// A stream answered but not yet started: what it needs once it has the connection.
struct Opening {
    filter: Filter,
    subscription: Subscription,
    reader: Reader,
    broadcaster: Arc<Broadcaster>,
}

impl Takeover for Opening {
    fn take_over(self: Box<Self>, request: Request, headers: Headers) {
        open(*self, request, headers);
    }
}

/// Starts the stream and hands it to the broadcaster. Returns once the replay is sent.
/// `extra`: headers the browser rules add (CORS for an allowed origin), on a refusal too.
fn open(opening: Opening, request: Request, extra: Vec<(&'static str, String)>) {
    let Opening {
        filter,
        subscription,
        reader,
        broadcaster,
    } = opening;
    let chunked = *request.http_version() >= (1, 1);
    let version = if chunked { "1.1" } else { "1.0" };
    // Fails only when no descriptor is left (workshop serves plain TCP, no TLS).
    let socket = match request.into_socket() {
        Ok(socket) => socket,
        Err((_, request)) => {
            let refusal = ApiError::unavailable("this connection cannot carry a stream");
            let refusal = Reply::Headed(extra, Box::new(Reply::from(refusal)));
            respond(request, refusal);
            return;
        }
    };
    let mut out = EventWriter { socket, chunked };
    let mut last_sent = filter.since.clone();
    let started = out
        .head(version, &extra)
        .and_then(|()| out.send(b": open\n\n"))
        .and_then(|()| match &filter.since {
            Some(since) => announce_gap(&reader, &filter, since, &mut out)
                .and_then(|()| replay(&reader, &filter, &mut last_sent, &mut out)),
            None => Ok(()),
        });
    if let Ok(live) =
        started.and_then(|()| Live::new(out.socket, chunked, subscription, filter, last_sent))
    {
        broadcaster.adopt(live);
    }
}

/// Sends `event: gap` first when retention deleted messages after `since`.
fn announce_gap(
    reader: &Reader,
    filter: &Filter,
    since: &str,
    out: &mut EventWriter,
) -> io::Result<()> {
    let gap = reader
        .read(|conn| horizon::gap(conn, filter.ch.as_deref(), since))
        .map_err(|e| io::Error::other(e.message))?;
    match gap {
        Some(gap) => out.send(&crate::api::gap::event(&gap)),
        None => Ok(()),
    }
}

/// Sends every stored message after `last_sent`, page by page, each page a batch at a
/// time (`batches::Messages`): a replay holds about one batch in memory (twice: as read, and
/// encoded for its one write), whatever the sizes.
fn replay(
    reader: &Reader,
    filter: &Filter,
    last_sent: &mut Option<String>,
    out: &mut EventWriter,
) -> io::Result<()> {
    loop {
        let query = MessageQuery {
            ch: filter.ch.clone(),
            since: last_sent.clone(),
            before: None,
            type_prefix: filter.type_prefix.clone(),
            limit: REPLAY_PAGE,
        };
        let mut page =
            Messages::select(reader.clone(), &query).map_err(|e| io::Error::other(e.message))?;
        let full = page.len() == REPLAY_PAGE;
        while let Some(batch) = page.next_batch().map_err(|e| io::Error::other(e.message))? {
            out.send_messages(&batch)?;
            if let Some((id, _)) = batch.last() {
                *last_sent = Some(id.clone());
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// The response until the hand-over: status line and headers by hand, then blocking writes
/// (bounded by the socket's send timeout): a note, a gap event, or a batch of the replay.
struct EventWriter {
    socket: TcpStream,
    chunked: bool,
}

impl EventWriter {
    fn head(&mut self, version: &str, extra: &[(&str, String)]) -> io::Result<()> {
        let mut head = format!("HTTP/{version} 200 OK\r\n");
        let extra = extra.iter().map(|(name, value)| (*name, value.as_str()));
        for (name, value) in HEADERS.iter().copied().chain(extra) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(if self.chunked {
            "Transfer-Encoding: chunked\r\n\r\n"
        } else {
            // HTTP/1.0 has no chunks: the stream ends when the connection closes.
            "Connection: close\r\n\r\n"
        });
        self.socket.write_all(head.as_bytes())
    }

    /// A batch of stored messages as events, in one write.
    fn send_messages(&mut self, batch: &[(String, String)]) -> io::Result<()> {
        let size: usize = batch
            .iter()
            .map(|(id, json)| id.len() + json.len() + 32)
            .sum();
        let mut encoded = Vec::with_capacity(size);
        for (id, json) in batch {
            encode_frame(id, json, self.chunked, &mut encoded);
        }
        self.socket.write_all(&encoded)
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut encoded = Vec::with_capacity(data.len() + 12);
        encode(data, self.chunked, &mut encoded);
        self.socket.write_all(&encoded)
    }
}
