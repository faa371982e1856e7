//! An agent's inbox: the messages addressed to it (`to`) and the tasks created for it, with a
//! read cursor kept on the server, so a fresh process of the same agent resumes where the
//! last one stopped.
use super::id_param;
use super::written;
use super::{identity_value, longpoll};
use crate::app::App;
use crate::error::{ApiError, shown};
use crate::http::{Reply, Req, count_param, percent_decode_path, read_json_object};
use crate::ids;
use crate::store::Op;
use crate::store::batches::Messages;
use crate::store::turns::{self, InboxQuery};
use serde_json::Value;
use std::collections::HashMap;

/// `GET /inbox/:agent?since=&n=&wait=&unread=1`
pub fn read(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let (agent, params) = (path_identity(&req.captures[0])?, &req.query);
    let mut since = id_param(params, "since")?;
    if unread_param(params)? {
        let cursor = app.store.read(|conn| turns::read_cursor(conn, &agent))?;
        // Never marked read: everything is unread, paged from the oldest ("" sorts before
        // every id). Otherwise whichever of `since` and the cursor is further.
        since = since.max(Some(cursor.unwrap_or_default()));
    }
    let query = InboxQuery {
        agent,
        since,
        limit: count_param(params, 100, 1000)?,
    };
    if let Some(timeout) = longpoll::wait_param(params)? {
        let since = query.since.as_deref();
        longpoll::wait_for_inbox(app, &query.agent, since, timeout, &req.http)?;
    }
    let index = app.store.read(|conn| turns::inbox(conn, &query))?;
    Ok(Reply::ndjson(Messages::from_index(
        app.store.reader(),
        index,
    )))
}

/// `POST /inbox/:agent/read {up_to}`: moves the read cursor forward (a lower id is ignored).
pub fn mark_read(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let Req {
        http: request,
        captures,
        ..
    } = req;
    let agent = path_identity(&captures[0])?;
    let body = read_json_object(request)?;
    let up_to = body
        .get("up_to")
        .and_then(Value::as_str)
        .and_then(ids::parse)
        .ok_or_else(|| ApiError::bad_request("up_to must be a message id"))?
        .to_string();
    let written = app.store.write(Op::MarkRead { agent, up_to })?;
    Ok(written::reply(written))
}

/// An identity from a URL path segment (percent-encoded if need be), checked like `from`.
fn path_identity(segment: &str) -> Result<String, ApiError> {
    identity_value(&Value::String(percent_decode_path(segment)?), "agent")
}

/// `?unread=1`: only what is after the agent's read cursor.
fn unread_param(params: &HashMap<String, String>) -> Result<bool, ApiError> {
    match params.get("unread").map(String::as_str) {
        None | Some("" | "0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(raw) => Err(ApiError::bad_request(format!(
            "unread must be 1 or 0, got {}",
            shown(raw)
        ))),
    }
}
