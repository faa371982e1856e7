//! Server-Sent Events, client side: a line parser (pure, unit-tested below) and `follow`, which
//! keeps one stream alive across disconnects and server restarts, resuming with `Last-Event-ID`
//! so every event is handed over exactly once, in id order.
use std::io::{BufRead, BufReader};
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
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        None
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
    let mut retry = FIRST_RETRY;
    let mut connected_before = false;
    let mut outage_reported = false;
    loop {
        let mut req = client
            .request("GET", &stream.path)
            .set("Accept", "text/event-stream");
        if let Some(prefix) = &stream.type_prefix {
            req = req.query("type", prefix);
        }
        if let Some(cursor) = &stream.cursor {
            req = req.set("Last-Event-ID", cursor);
        }
        let err = match req.call().map_err(from_ureq) {
            Ok(resp) => {
                retry = FIRST_RETRY;
                if connected_before {
                    on_reconnect();
                }
                if std::mem::take(&mut outage_reported) {
                    eprintln!("workshop: stream reconnected");
                }
                connected_before = true;
                match read_events(resp, &mut stream.cursor, &mut on_event) {
                    ControlFlow::Break(result) => return result,
                    ControlFlow::Continue(err) => err,
                }
            }
            Err(e) if e.is_transient() => e,
            Err(e) => return Err(e),
        };
        if !outage_reported {
            outage_reported = true;
            eprintln!("workshop: stream interrupted ({err}); reconnecting with backoff");
        }
        thread::sleep(retry);
        retry = (retry * 2).min(MAX_RETRY);
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
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => {
                return ControlFlow::Continue(CliError::unreachable("server closed the stream"));
            }
            Ok(_) => {}
            Err(e) => return ControlFlow::Continue(CliError::unreachable(e.to_string())),
        }
        let Some(event) = parser.feed(&String::from_utf8_lossy(&buf)) else {
            continue;
        };
        if let (Some(id), Some(seen)) = (&event.id, cursor.as_deref())
            && id.as_str() <= seen
        {
            continue; // already handed over before a reconnect
        }
        on_event(&event)?;
        if event.id.is_some() {
            cursor.clone_from(&event.id);
        }
    }
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
    fn an_unterminated_event_is_not_dispatched() {
        assert!(feed_all("id: 1\ndata: partial\n").is_empty());
    }
}
