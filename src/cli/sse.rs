//! Server-Sent Events, client side: a line parser (pure, unit-tested below) and `follow`, which
//! keeps one stream alive across disconnects and server restarts, resuming with `Last-Event-ID`
//! so every event is handed over exactly once, in id order.
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::thread;
use std::time::Duration;

use super::client::{CliError, Client, Result, from_ureq};

/// One dispatched event of the live stream. `id` is the server's message id (a ULID), `data`
/// the envelope JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// The most one event (or one line of it) may hold: a hub's largest is a 1 MiB message in its
/// envelope. A stream sending more is not a hub's; it is dropped, and so is what it sent,
/// instead of growing the CLI's memory without end.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Accumulates `field: value` lines until a blank line dispatches an event (the WHATWG rules,
/// minus `retry:`, which we decide ourselves). Comment lines (`: keepalive`) are ignored.
#[derive(Debug, Default)]
pub struct Parser {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feeds one line (with or without its line ending); returns an event on a blank line.
    pub fn feed(&mut self, line: &str) -> Option<StreamEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return self.dispatch();
        }
        match line.split_once(':') {
            Some(("", _)) => {} // a comment, e.g. `: keepalive`
            Some((field, value)) => self.set(field, value.strip_prefix(' ').unwrap_or(value)),
            None => self.set(line, ""),
        }
        None
    }

    /// One `field: value` line; unknown fields are ignored, and an id with a NUL too.
    fn set(&mut self, field: &str, value: &str) {
        match field {
            "data" => self.push_data(value),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }

    /// Bytes of the event not yet dispatched.
    fn pending_bytes(&self) -> usize {
        self.data.as_ref().map_or(0, String::len)
    }

    /// Several `data:` lines make one value, joined by newlines.
    fn push_data(&mut self, value: &str) {
        match &mut self.data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => self.data = Some(value.to_string()),
        }
    }

    fn dispatch(&mut self) -> Option<StreamEvent> {
        let event = self.event.take();
        let data = self.data.take()?;
        Some(StreamEvent {
            id: self.id.clone(),
            event,
            data,
        })
    }
}

/// What to follow: `/` (every channel) or `/ch/CH`, optionally only types with a prefix.
pub struct Stream {
    pub path: String,
    pub type_prefix: Option<String>,
    /// Resume point: events with ids at or below it are never handed over.
    pub cursor: Option<String>,
}

impl Stream {
    /// The GET that opens this stream, or resumes it after the cursor.
    fn request(&self, client: &Client) -> ureq::Request {
        let mut req = client
            .stream_request(&self.path)
            .set("Accept", "text/event-stream");
        if let Some(prefix) = &self.type_prefix {
            req = req.query("type", prefix);
        }
        if let Some(cursor) = &self.cursor {
            req = req.set("Last-Event-ID", cursor);
        }
        req
    }
}

/// The smallest possible ULID: "everything after the beginning of time".
pub const ZERO_ID: &str = "00000000000000000000000000";

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Follows `stream` forever, calling `on_event` once per event in id order, until it returns
/// `Break`. Reconnects with backoff when the connection drops or the server is unreachable or
/// failing (`on_reconnect` runs after each successful reconnection); gives up only on an error
/// retrying cannot fix (a 4xx: bad channel name, unknown route). An outage is reported on
/// stderr once when it starts and once when the stream is back, not once per attempt.
pub fn follow(
    client: &Client,
    mut stream: Stream,
    mut on_event: impl FnMut(&StreamEvent) -> ControlFlow<Result<()>>,
    mut on_reconnect: impl FnMut(),
) -> Result<()> {
    let mut reconnecting = Reconnecting::default();
    loop {
        let err = match stream.request(client).call().map_err(from_ureq) {
            Ok(resp) => {
                reconnecting.connected(&mut on_reconnect);
                match read_events(resp, &mut stream.cursor, &mut on_event) {
                    ControlFlow::Break(result) => return result,
                    ControlFlow::Continue(err) => err,
                }
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        reconnecting.failed(&err);
    }
}

/// `follow`'s memory across connections: the backoff, whether it was connected before, and
/// whether the outage going on was reported.
struct Reconnecting {
    retry: Duration,
    connected_before: bool,
    outage_reported: bool,
}

impl Default for Reconnecting {
    fn default() -> Reconnecting {
        Reconnecting {
            retry: FIRST_RETRY,
            connected_before: false,
            outage_reported: false,
        }
    }
}

impl Reconnecting {
    /// A connection is up: the backoff starts over, `on_reconnect` runs if it is not the
    /// first, and an outage that was reported is reported over.
    fn connected(&mut self, on_reconnect: &mut impl FnMut()) {
        self.retry = FIRST_RETRY;
        if std::mem::replace(&mut self.connected_before, true) {
            on_reconnect();
        }
        if std::mem::take(&mut self.outage_reported) {
            eprintln!("workshop: stream reconnected");
        }
    }

    /// The connection failed or ended: reports the outage once, waits, and backs off.
    fn failed(&mut self, err: &CliError) {
        if !std::mem::replace(&mut self.outage_reported, true) {
            eprintln!("workshop: stream interrupted ({err}); reconnecting with backoff");
        }
        thread::sleep(self.retry);
        self.retry = (self.retry * 2).min(MAX_RETRY);
    }
}

/// Reads one connection's events until it ends. `Continue(why)` means reconnect.
fn read_events(
    resp: ureq::Response,
    cursor: &mut Option<String>,
    on_event: &mut impl FnMut(&StreamEvent) -> ControlFlow<Result<()>>,
) -> ControlFlow<Result<()>, CliError> {
    let mut reader = BufReader::new(resp.into_reader());
    let mut parser = Parser::new();
    let mut buf = Vec::new();
    loop {
        if let Err(why) = next_line(&mut reader, &mut buf) {
            return ControlFlow::Continue(why);
        }
        let Some(event) = parser.feed(&String::from_utf8_lossy(&buf)) else {
            if parser.pending_bytes() > MAX_EVENT_BYTES {
                return ControlFlow::Continue(too_large());
            }
            continue;
        };
        if already_seen(&event, cursor.as_deref()) {
            continue;
        }
        on_event(&event)?;
        if event.id.is_some() {
            cursor.clone_from(&event.id);
        }
    }
}

/// Reads one line (at most `MAX_EVENT_BYTES`) into `buf`; the end of the stream, a failed
/// read or a line too long says why to reconnect.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    match (&mut *reader)
        .take(MAX_EVENT_BYTES as u64)
        .read_until(b'\n', buf)
    {
        Ok(0) => Err(CliError::unreachable("server closed the stream")),
        Ok(n) if n == MAX_EVENT_BYTES && !buf.ends_with(b"\n") => Err(too_large()),
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::unreachable(e.to_string())),
    }
}

fn too_large() -> CliError {
    CliError::unreachable("the stream sent an event over 4 MiB, which no hub sends")
}

/// An event at or below the cursor was handed over before a reconnect.
fn already_seen(event: &StreamEvent, cursor: Option<&str>) -> bool {
    matches!((event.id.as_deref(), cursor), (Some(id), Some(seen)) if id <= seen)
}

/// The stderr line for an `event: gap`: messages after where we resumed were deleted by
/// retention before we could see them.
pub fn gap_notice(data: &str) -> String {
    let gap: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    let oldest = gap.get("oldest").and_then(|o| o.as_str()).unwrap_or("none");
    format!(
        "messages before {oldest} were removed by retention; some after the resume point are missing"
    )
}

/// The id of the newest stored message (on one channel, or anywhere): the resume point for a
/// stream that should show only what comes next, even across a reconnect.
pub fn newest_id(client: &Client, ch: Option<&str>) -> Result<String> {
    let path = super::request::history_path(ch);
    let text = client.get_text(&path, &[("n", "1".to_string())])?;
    let newest = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
        .max();
    Ok(newest.unwrap_or_else(|| ZERO_ID.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(text: &str) -> Vec<StreamEvent> {
        let mut p = Parser::new();
        text.split_inclusive('\n')
            .filter_map(|l| p.feed(l))
            .collect()
    }

    #[test]
    fn a_line_or_an_event_over_4_mib_is_refused_not_held() {
        let mut buf = Vec::new();
        let long = vec![b'a'; MAX_EVENT_BYTES + 10];
        assert!(next_line(&mut &long[..], &mut buf).is_err());
        assert_eq!(buf.len(), MAX_EVENT_BYTES, "read no further than the limit");
        assert!(next_line(&mut &b"data: x\n"[..], &mut buf).is_ok());
        // Many short data lines add up in the parser: what `read_events` checks.
        let mut parser = Parser::new();
        let line = format!("data: {}\n", "x".repeat(1024));
        for _ in 0..(MAX_EVENT_BYTES / 1024 + 1) {
            assert_eq!(parser.feed(&line), None);
        }
        assert!(parser.pending_bytes() > MAX_EVENT_BYTES);
    }

    #[test]
    fn parses_events_and_skips_comments() {
        let events =
            feed_all(": open\n\nid: A1\ndata: {\"x\":1}\n\n: keepalive\n\nid: A2\ndata: {}\n\n");
        assert_eq!(
            events,
            vec![
                StreamEvent {
                    id: Some("A1".into()),
                    event: None,
                    data: "{\"x\":1}".into()
                },
                StreamEvent {
                    id: Some("A2".into()),
                    event: None,
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn handles_crlf_multiline_data_and_no_space() {
        let events = feed_all("event: m\r\ndata:a\r\ndata: b\r\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(events[0].event.as_deref(), Some("m"));
        assert_eq!(events[0].id, None);
    }

    #[test]
    fn id_persists_and_blank_lines_without_data_dispatch_nothing() {
        let events = feed_all("id: 5\n\n\ndata: x\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id.as_deref(), Some("5"));
    }

    #[test]
    fn events_at_or_below_the_cursor_were_seen() {
        let event = |id: Option<&str>| StreamEvent {
            id: id.map(str::to_string),
            event: None,
            data: "{}".into(),
        };
        assert!(already_seen(&event(Some("A1")), Some("A1")));
        assert!(already_seen(&event(Some("A0")), Some("A1")));
        assert!(!already_seen(&event(Some("A2")), Some("A1")));
        assert!(!already_seen(&event(None), Some("A1")));
        assert!(!already_seen(&event(Some("A1")), None));
    }

    #[test]
    fn a_stream_ends_at_eof_and_lines_keep_their_ending() {
        let mut reader = &b"data: x\n"[..];
        let mut buf = Vec::new();
        assert!(next_line(&mut reader, &mut buf).is_ok());
        assert_eq!(buf, b"data: x\n");
        let ended = next_line(&mut reader, &mut buf).unwrap_err();
        assert!(ended.is_transient(), "{ended:?}");
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        assert!(feed_all("id: 1\ndata: partial\n").is_empty());
    }
}
