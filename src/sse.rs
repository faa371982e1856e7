//! One SSE client's stream: subscribe to the hub, replay what the client missed from SQLite,
//! then forward live events, skipping ids already sent. Subscribing before the replay is what
//! makes resume gap-free; comparing ids is what makes it duplicate-free.
//!
//! Written straight onto the socket (`Request::into_writer`) with one chunk and one flush per
//! event: tiny_http's own chunked encoder buffers 8 KiB before sending anything.
use crate::error::ApiError;
use crate::hub::Event;
use crate::server::App;
use crate::store::read::{self, MessageQuery};
use crossbeam_channel::RecvTimeoutError;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::Request;

/// Silence longer than this gets a `: keepalive` comment, so proxies keep the stream open.
pub const KEEPALIVE: Duration = Duration::from_secs(20);
/// Stored messages read per replay query.
const REPLAY_PAGE: usize = 1000;

pub const HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
    ("Access-Control-Allow-Origin", "*"),
];

/// What a client asked to watch.
#[derive(Debug, Clone)]
pub struct Filter {
    /// One channel, or all of them.
    pub ch: Option<String>,
    pub type_prefix: Option<String>,
    /// Replay everything after this id first.
    pub since: Option<String>,
}

impl Filter {
    fn wants(&self, event: &Event) -> bool {
        self.type_prefix
            .as_deref()
            .is_none_or(|prefix| event.kind.starts_with(prefix))
    }
}

/// Runs the stream until the client goes away, falls behind, or the server shuts down.
/// Called on the stream's own thread.
pub fn run(app: Arc<App>, request: Request, filter: Filter) {
    let Some(subscription) = app.hub.subscribe(filter.ch.clone()) else {
        let reply = ApiError::unavailable("server is shutting down").into();
        let _ = request.respond(crate::http::into_response(reply));
        return;
    };
    let chunked = *request.http_version() >= (1, 1);
    let version = if chunked { "1.1" } else { "1.0" };
    let mut out = EventWriter {
        socket: request.into_writer(),
        chunked,
    };
    let _ = out
        .head(version)
        .and_then(|()| forward(&app, &filter, &subscription.events, &mut out))
        .and_then(|()| out.finish());
}

fn forward(
    app: &App,
    filter: &Filter,
    live: &crossbeam_channel::Receiver<Arc<Event>>,
    out: &mut EventWriter,
) -> io::Result<()> {
    out.send(b": open\n\n")?;
    let mut last_sent = filter.since.clone();
    if filter.since.is_some() {
        replay(app, filter, &mut last_sent, out)?;
    }
    loop {
        match live.recv_timeout(KEEPALIVE) {
            Ok(event) => {
                let already_sent = last_sent.as_deref().is_some_and(|last| *event.id <= *last);
                if !already_sent && filter.wants(&event) {
                    out.send(&frame(&event.id, &event.json))?;
                    last_sent = Some(event.id.clone());
                }
            }
            Err(RecvTimeoutError::Timeout) => out.send(b": keepalive\n\n")?,
            // Dropped by the hub (too slow) or shutdown: end the stream; the client resumes.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Sends every stored message after `last_sent`, page by page.
fn replay(
    app: &App,
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
        let page = app
            .store
            .read(|conn| read::messages_with_ids(conn, &query))
            .map_err(|e| io::Error::other(e.message))?;
        for (id, json) in &page {
            out.send(&frame(id, json))?;
        }
        match page.last() {
            Some((id, _)) if page.len() == REPLAY_PAGE => *last_sent = Some(id.clone()),
            Some((id, _)) => {
                *last_sent = Some(id.clone());
                return Ok(());
            }
            None => return Ok(()),
        }
    }
}

fn frame(id: &str, json: &str) -> Vec<u8> {
    format!("id: {id}\ndata: {json}\n\n").into_bytes()
}

/// The raw response: status line and headers by hand, then one flushed chunk per event.
struct EventWriter {
    socket: Box<dyn Write + Send>,
    chunked: bool,
}

impl EventWriter {
    fn head(&mut self, version: &str) -> io::Result<()> {
        let mut head = format!("HTTP/{version} 200 OK\r\n");
        for (name, value) in HEADERS {
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

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if self.chunked {
            let mut chunk = Vec::with_capacity(data.len() + 12);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(data);
            chunk.extend_from_slice(b"\r\n");
            self.socket.write_all(&chunk)?;
        } else {
            self.socket.write_all(data)?;
        }
        self.socket.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.chunked {
            self.socket.write_all(b"0\r\n\r\n")?;
        }
        self.socket.flush()
    }
}
