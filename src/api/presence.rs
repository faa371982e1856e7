//! Presence: heartbeats, and who was seen in the last minute.
use super::written;
use super::{channel, identity};
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req, read_json_object};
use crate::store::Op;
use crate::store::lists::{self, Presence};
use serde_json::{Value, json};

/// Agents count as live this long after their last heartbeat.
pub const LIVE_SECONDS: f64 = 60.0;
/// Most channels one heartbeat may list.
const MAX_CHANNELS: usize = 100;

/// `POST /presence`
pub fn heartbeat(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let request = &mut req.http;
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let channels = channels(body.get("channels"))?;
    let meta = body.get("meta").cloned().unwrap_or_else(|| json!({}));
    let written = app.store.write(Op::Heartbeat {
        from,
        channels,
        meta,
    })?;
    Ok(written::reply(written))
}

/// `channels`: absent, or at most `MAX_CHANNELS` valid channel names.
fn channels(value: Option<&Value>) -> Result<Value, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "channels must be an array of at most {MAX_CHANNELS} channel names"
        ))
    };
    let items = match value {
        None | Some(Value::Null) => return Ok(json!([])),
        Some(Value::Array(items)) if items.len() <= MAX_CHANNELS => items,
        Some(_) => return Err(bad()),
    };
    let names = items
        .iter()
        .map(|item| item.as_str().ok_or_else(bad).and_then(channel))
        .collect::<Result<Vec<String>, ApiError>>()?;
    Ok(json!(names))
}

/// `GET /presence`
pub fn list(app: &App, _: &mut Req) -> Result<Reply, ApiError> {
    let since = crate::store::now() - LIVE_SECONDS;
    let agents = lists::select(app.store.reader(), Presence { seen_after: since })?;
    Ok(Reply::JsonStream(Box::new(agents)))
}
