//! Presence: heartbeats, and who was seen in the last minute.
use super::identity;
use crate::error::ApiError;
use crate::http::{Reply, read_json_object};
use crate::server::App;
use crate::store::{Op, read};
use serde_json::{Value, json};
use tiny_http::Request;

/// Agents count as live this long after their last heartbeat.
pub const LIVE_SECONDS: f64 = 60.0;

/// `POST /presence`
pub fn heartbeat(app: &App, request: &mut Request) -> Result<Reply, ApiError> {
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let channels = match body.get("channels") {
        None | Some(Value::Null) => json!([]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => json!(items),
        Some(_) => return Err(ApiError::bad_request("channels must be an array of names")),
    };
    let meta = body.get("meta").cloned().unwrap_or_else(|| json!({}));
    let done = app.store.write(Op::Heartbeat {
        from,
        channels,
        meta,
    })?;
    Ok(Reply::json(done.status, done.body))
}

/// `GET /presence`
pub fn list(app: &App) -> Result<Reply, ApiError> {
    let since = crate::store::now() - LIVE_SECONDS;
    let agents = app.store.read(|conn| read::presence(conn, since))?;
    Ok(Reply::json(200, json!(agents)))
}
