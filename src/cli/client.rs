//! The HTTP side of the client: one `Client` per invocation, JSON in and out, and the mapping
//! from every way a request can fail to the exit status a script sees (`CliError`).
use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::limits::Limits;

/// Exit statuses, documented in `workshop --help`. Scripts test these, so they never change.
pub mod exit {
    /// The server failed (5xx), answered something unexpected, or a local I/O error.
    pub const FAILURE: u8 = 1;
    /// Bad arguments, or the server rejected the request as malformed (400, 405, 413).
    pub const USAGE: u8 = 2;
    /// 404: no such task, file or route.
    pub const NOT_FOUND: u8 = 3;
    /// 409 or 403: the task is not in a state (or not yours) for that change.
    pub const CONFLICT: u8 = 4;
    /// The server could not be reached (connection refused, DNS, timeout).
    pub const UNREACHABLE: u8 = 5;
}

/// A failure with the message for stderr and the exit status for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: u8,
    /// HTTP status when the server answered; 0 otherwise.
    pub status: u16,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::USAGE,
            status: 0,
            message: message.into(),
        }
    }
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::FAILURE,
            status: 0,
            message: message.into(),
        }
    }
    pub fn unreachable(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::UNREACHABLE,
            status: 0,
            message: message.into(),
        }
    }
    /// An error the server answered with `status` and `message` (its `error` text).
    pub fn http(status: u16, message: impl Into<String>) -> CliError {
        let code = match status {
            400 | 405 | 413 => exit::USAGE,
            404 => exit::NOT_FOUND,
            403 | 409 => exit::CONFLICT,
            _ => exit::FAILURE,
        };
        CliError {
            code,
            status,
            message: message.into(),
        }
    }
    /// True when retrying later may succeed: the server is down or failing, not refusing.
    pub fn is_transient(&self) -> bool {
        self.code == exit::UNREACHABLE || self.status >= 500
    }
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::failure(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Where the hub is and who we are. Cheap to clone (ureq's agent shares its pool).
#[derive(Clone)]
pub struct Client {
    base: String,
    agent_id: Option<String>,
    http: ureq::Agent,
    /// For live streams: a connection of their own each. ureq drops a pooled connection's
    /// timeouts when it reuses it, so a stream opened on one waited for the hub's headers
    /// with no timeout at all.
    streams: ureq::Agent,
    limits: Limits,
}

/// The hub address as given (`--url`, `WORKSHOP_URL`), made a base URL: `host:port` means
/// `http://host:port`; only http and https are spoken.
pub fn hub_url(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").unwrap_or(("http", raw));
    let rest = rest.trim_end_matches('/');
    if scheme != "http" && scheme != "https" {
        return Err(CliError::usage(format!(
            "bad hub URL {raw:?}: the scheme must be http:// or https://"
        )));
    }
    if rest.is_empty() {
        return Err(CliError::usage(format!(
            "bad hub URL {raw:?}: want http://HOST:PORT, https://HOST or HOST:PORT"
        )));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// How long a live stream may stay silent before we call it dead: the server sends a
/// keepalive every 20 s.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// The longest an ordinary call (not a stream, not a file) may take in all: a server that
/// sends a byte every 44 s would otherwise hold it for ever, each byte resetting the read
/// timeout. Longer than any wait the hub grants (60 s) plus its answer.
const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// How long a connection to the hub may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub fn new(url: &str, agent_id: Option<String>, limits: Limits) -> Client {
        let agent = || {
            ureq::AgentBuilder::new()
                .timeout_connect(CONNECT_TIMEOUT)
                .timeout_read(STREAM_SILENCE)
                .timeout_write(Duration::from_secs(60))
        };
        Client {
            base: url.trim_end_matches('/').to_string(),
            agent_id: agent_id.filter(|a| !a.is_empty()),
            http: agent().build(),
            streams: agent().max_idle_connections(0).build(),
            limits,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Our identity, required by every call that writes.
    pub fn agent(&self) -> Result<&str> {
        self.agent_id
            .as_deref()
            .ok_or_else(|| CliError::usage("no agent id: set AGENT_ID or pass --as NAME"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.http.request(method, &self.url(path))
    }

    /// The GET that opens a live stream, on a connection of its own (`streams`).
    pub fn stream_request(&self, path: &str) -> ureq::Request {
        self.streams.get(&self.url(path))
    }

    /// GET returning the body as text (ndjson and JSON alike).
    pub fn get_text(&self, path: &str, query: &[(&str, String)]) -> Result<String> {
        let req = with_query(self.request("GET", path), query).timeout(CALL_DEADLINE);
        let resp = req.call().map_err(from_ureq)?;
        resp.into_string()
            .map_err(|e| CliError::unreachable(format!("reading response: {e}")))
    }

    pub fn get_json(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let text = self.get_text(path, query)?;
        parse_reply(&text)
    }

    /// POST a JSON body. A 429 (the server's loop guard, `WORKSHOP_RATE`) stored nothing, so
    /// it is sent again after the `Retry-After` the server gave, until it is accepted or
    /// has been refused for `WORKSHOP_THROTTLE_WAIT` (`Limits`).
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_json_keyed(path, body, None)
    }

    /// `post_json`, with an `Idempotency-Key` when given (the same on every resend).
    pub fn post_json_keyed(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
        key: Option<&str>,
    ) -> Result<Value> {
        read_json(self.post_accepted(path, body, key)?)
    }

    /// `post_json`, and the value of the answer's header `name`, if it has one.
    pub fn post_json_header(
        &self,
        path: &str,
        body: &Value,
        name: &str,
    ) -> Result<(Value, Option<String>)> {
        let resp = self.post_accepted(path, body, None)?;
        let header = resp.header(name).map(str::to_string);
        Ok((read_json(resp)?, header))
    }

    /// The answer to a JSON POST, once the loop guard has let it through (`post_json`).
    fn post_accepted(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
        key: Option<&str>,
    ) -> Result<ureq::Response> {
        let give_up_at = Instant::now() + self.limits.throttle_wait;
        loop {
            let mut request = self.request("POST", path).timeout(CALL_DEADLINE);
            if let Some(key) = key {
                request = request.set("Idempotency-Key", key);
            }
            match request.send_json(body) {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(429, resp)) => self.wait_throttled(resp, give_up_at)?,
                Err(e) => return Err(from_ureq(e)),
            }
        }
    }

    /// Waits out a 429 for the `Retry-After` the server gave, but not past `give_up_at`,
    /// saying so on stderr; from `give_up_at` on, the 429 is the answer (exit 1).
    fn wait_throttled(&self, resp: ureq::Response, give_up_at: Instant) -> Result<()> {
        let left = give_up_at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let refused = from_status(429, resp);
            let budget = tenths(self.limits.throttle_wait);
            let message = format!(
                "{}; still refused after {budget} s, so giving up (WORKSHOP_THROTTLE_WAIT sets \
                 how long to keep trying)",
                refused.message
            );
            return Err(CliError { message, ..refused });
        }
        let wait = retry_after(&resp).min(left);
        eprintln!(
            "workshop: throttled by the server; retrying in {} s",
            tenths(wait)
        );
        std::thread::sleep(wait);
        Ok(())
    }

    /// How long the client waits before it gives up (`WORKSHOP_THROTTLE_WAIT`, ...).
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

fn with_query(req: ureq::Request, query: &[(&str, String)]) -> ureq::Request {
    query.iter().fold(req, |req, (k, v)| req.query(k, v))
}

/// Seconds to a tenth, for people: `2`, `1.5`.
fn tenths(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// Longest wait one 429 may ask for: a wrong header must not stall an agent for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A 429's `Retry-After` in seconds (1 s if missing or not a number; at most a minute).
fn retry_after(resp: &ureq::Response) -> Duration {
    let secs = resp
        .header("Retry-After")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    Duration::from_secs(secs).min(MAX_RETRY_AFTER)
}

pub fn read_json(resp: ureq::Response) -> Result<Value> {
    let text = resp
        .into_string()
        .map_err(|e| CliError::unreachable(format!("reading response: {e}")))?;
    parse_reply(&text)
}

fn parse_reply(text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text)
        .map_err(|e| CliError::failure(format!("server sent invalid JSON ({e}): {text:.200}")))
}

/// Turns a ureq failure into a `CliError`, taking the server's `error` text when it sent one.
pub fn from_ureq(err: ureq::Error) -> CliError {
    match err {
        ureq::Error::Status(status, resp) => from_status(status, resp),
        ureq::Error::Transport(t) => from_transport(&t),
    }
}

/// The server answered `status`: its `error` text, or the start of what it sent.
fn from_status(status: u16, resp: ureq::Response) -> CliError {
    let text = resp.into_string().unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| match text.trim() {
            "" => format!("server answered {status}"),
            text => format!("server answered {status}: {text:.200}"),
        });
    CliError::http(status, message)
}

/// No answer: a bad URL is a usage error, no connection means unreachable.
fn from_transport(t: &ureq::Transport) -> CliError {
    use ureq::ErrorKind::*;
    match t.kind() {
        InvalidUrl | UnknownScheme | InsecureRequestHttpsOnly => {
            CliError::usage(format!("bad url: {t}"))
        }
        Dns | ConnectionFailed | Io | ProxyConnect => {
            CliError::unreachable(format!("cannot reach server: {t}"))
        }
        _ => CliError::failure(t.to_string()),
    }
}

/// Percent-encodes one path segment, so an odd id or channel cannot change the route.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        assert_eq!(CliError::http(400, "x").code, exit::USAGE);
        assert_eq!(CliError::http(404, "x").code, exit::NOT_FOUND);
        assert_eq!(CliError::http(409, "x").code, exit::CONFLICT);
        assert_eq!(CliError::http(403, "x").code, exit::CONFLICT);
        assert_eq!(CliError::http(500, "x").code, exit::FAILURE);
        assert!(CliError::http(503, "x").is_transient());
        assert!(!CliError::http(409, "x").is_transient());
    }

    #[test]
    fn missing_agent_is_a_usage_error() {
        let c = Client::new(
            "http://localhost:1/",
            Some(String::new()),
            Limits::default(),
        );
        assert_eq!(c.agent().unwrap_err().code, exit::USAGE);
        assert_eq!(c.url("/x"), "http://localhost:1/x");
    }

    #[test]
    fn hub_urls_accept_host_port_and_https() {
        assert_eq!(hub_url("localhost:4242").unwrap(), "http://localhost:4242");
        assert_eq!(hub_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(
            hub_url("https://hub.example").unwrap(),
            "https://hub.example"
        );
        assert_eq!(hub_url("ftp://h").unwrap_err().code, exit::USAGE);
        assert_eq!(hub_url("").unwrap_err().code, exit::USAGE);
        assert_eq!(hub_url("http://").unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(seg("general"), "general");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
