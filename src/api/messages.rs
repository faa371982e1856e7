//! `GET /messages/:id` (one envelope) and `GET /messages/:id/thread` (its `reply_to` thread).
use crate::app::App;
use crate::error::{ApiError, shown};
use crate::http::{Reply, Req};
use crate::ids;
use crate::store::batches::Messages;
use crate::store::threads;

/// `GET /messages/:id`
pub fn show(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let id = message_id(&req.captures[0])?;
    let envelope = app.store.read(|conn| threads::message(conn, &id))?;
    Ok(Reply::Envelope(envelope.ok_or_else(|| no_message(&id))?))
}

/// `GET /messages/:id/thread`: NDJSON, oldest first, at most `threads::MAX_THREAD` lines.
pub fn thread(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let id = message_id(&req.captures[0])?;
    let index = app.store.read(|conn| threads::thread(conn, &id))?;
    let index = index.ok_or_else(|| no_message(&id))?;
    let messages = Messages::from_index(app.store.reader(), index);
    Ok(Reply::ndjson(messages))
}

/// Message ids are ULIDs; anything else cannot name a message.
fn message_id(raw: &str) -> Result<String, ApiError> {
    ids::parse(raw)
        .map(|id| id.to_string())
        .ok_or_else(|| no_message(raw))
}

fn no_message(id: &str) -> ApiError {
    ApiError::not_found(format!("no message {}", shown(id)))
}
