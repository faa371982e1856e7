//! Publishing, history, and the channel list.
use super::idempotency;
use super::written;
use super::{file_refs, id_param, identity, identity_value, label, longpoll, path_channel};
use crate::app::App;
use crate::error::{ApiError, shown};
use crate::http::{Reply, Req, count_param, read_json};
use crate::ids;
use crate::store::batches::Messages;
use crate::store::read::{self, MessageQuery};
use crate::store::{NewMessage, Op};
use serde_json::{Map, Value, json};

/// Most messages one `POST /ch/:ch` may carry.
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// `POST /ch/:ch`: one message (a JSON object), or a batch (an array of 1 to
/// `MAX_BATCH_MESSAGES` of them, all from one sender) committed together, in order, in one
/// transaction.
pub fn publish(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let Req {
        http: request,
        captures,
        ..
    } = req;
    let ch = path_channel(&captures[0])?;
    let route = format!("POST /ch/{ch}");
    let (op, key, from, count) = match read_json(request)? {
        Value::Object(mut body) => {
            let mut message = new_message(app, &ch, &body)?;
            let key = idempotency::key(request, &message.from, &route, &body)?;
            message.body = take_body(&mut body);
            let from = message.from.clone();
            (Op::Publish(message), key, from, 1)
        }
        Value::Array(bodies) => {
            let mut batch = new_batch(app, &ch, &bodies)?;
            let from = batch[0].from.clone();
            let key = idempotency::key(request, &from, &route, &bodies)?;
            let count = bodies.len();
            for (message, body) in batch.iter_mut().zip(bodies) {
                if let Value::Object(mut body) = body {
                    message.body = take_body(&mut body);
                }
            }
            (Op::PublishBatch(batch), key, from, count)
        }
        _ => return Err(ApiError::bad_request(NOT_A_MESSAGE)),
    };
    let sender = (from.as_str(), count);
    if let Err(throttled) =
        app.limiter
            .guard_unless_repeat(&app.store, key.as_ref(), sender, &ch, "publish")?
    {
        return Ok(throttled);
    }
    let written = app.store.write(idempotency::wrap(key, op))?;
    Ok(written::reply(written))
}

const NOT_A_MESSAGE: &str =
    "request body must be a JSON object (a message) or an array of them (a batch)";

/// The messages of a batch, each checked as a message alone is; an error names the first
/// one at fault.
fn new_batch(app: &App, ch: &str, bodies: &[Value]) -> Result<Vec<NewMessage>, ApiError> {
    let count = bodies.len();
    if !(1..=MAX_BATCH_MESSAGES).contains(&count) {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH_MESSAGES} messages, not {count}"
        )));
    }
    let mut batch: Vec<NewMessage> = Vec::with_capacity(count);
    for (i, body) in bodies.iter().enumerate() {
        // Counted from 1, as people count: the first message is "message 1 of N".
        let at = |e: ApiError| {
            let message = format!("message {} of {count}: {}", i + 1, e.message);
            ApiError::new(e.status, message)
        };
        let Value::Object(body) = body else {
            return Err(at(ApiError::bad_request("must be a JSON object")));
        };
        let message = new_message(app, ch, body).map_err(at)?;
        if batch
            .first()
            .is_some_and(|first| first.from != message.from)
        {
            return Err(at(ApiError::bad_request(
                "every message of a batch must have the same from",
            )));
        }
        batch.push(message);
    }
    Ok(batch)
}

/// The message `body` asks to publish on `ch`, checked; its own `body` is left out (null), to
/// be moved in by `take_body` once the request's idempotency key has read the whole request:
/// a copy would double what a large batch holds.
fn new_message(app: &App, ch: &str, body: &Map<String, Value>) -> Result<NewMessage, ApiError> {
    let (to, recipients) = addressees(body.get("to"))?;
    Ok(NewMessage {
        ch: ch.to_string(),
        from: identity(body, "from")?,
        kind: label(body, "type")?,
        v: match body.get("v") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("v must be an integer"))?,
        },
        body: Value::Null,
        files: file_refs(body, &app.blobs)?,
        reply_to: reply_to(body.get("reply_to").or_else(|| body.get("reply-to")))?,
        to,
        recipients,
    })
}

/// The message's `body` field, moved out of the request (`{}` when absent).
fn take_body(message: &mut Map<String, Value>) -> Value {
    message.remove("body").unwrap_or_else(|| json!({}))
}

fn reply_to(value: Option<&Value>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => ids::parse(id)
            .map(|id| Some(id.to_string()))
            .ok_or_else(|| {
                ApiError::bad_request(format!("reply_to {} is not a message id", shown(id)))
            }),
        Some(_) => Err(ApiError::bad_request("reply_to must be a message id")),
    }
}

/// Most identities one message may be addressed to.
const MAX_ADDRESSEES: usize = 32;

/// `to`: absent or null (everyone), one identity, or a list of 1-32, each checked like
/// `from`. Returns the field as given (it is stored so) and the distinct identities.
fn addressees(value: Option<&Value>) -> Result<(Option<Value>, Vec<String>), ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok((None, Vec::new())),
        Some(one @ Value::String(_)) => std::slice::from_ref(one),
        Some(Value::Array(list)) if (1..=MAX_ADDRESSEES).contains(&list.len()) => list,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "to must be an identity or a list of 1 to {MAX_ADDRESSEES} identities"
            )));
        }
    };
    let mut recipients: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let agent = identity_value(item, "to")?;
        if !recipients.contains(&agent) {
            recipients.push(agent);
        }
    }
    Ok((value.cloned(), recipients))
}

/// `GET /ch/:ch/history` (with `ch`) and `GET /history` (without).
pub fn history(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let (ch, params) = (req.captures.first().map(String::as_str), &req.query);
    let default_n = if ch.is_some() { 200 } else { 100 };
    let query = MessageQuery {
        ch: ch.map(path_channel).transpose()?,
        since: id_param(params, "since")?,
        before: id_param(params, "before")?,
        type_prefix: params.get("type").filter(|t| !t.is_empty()).cloned(),
        limit: count_param(params, default_n, 1000)?,
    };
    if let Some(timeout) = longpoll::wait_param(params)? {
        longpoll::wait_for_history(app, &query, timeout, &req.http)?;
    }
    let reply = Reply::ndjson(Messages::select(app.store.reader(), &query)?);
    let (ch, since) = (query.ch.as_deref(), query.since.as_deref());
    super::gap::on_history(app, ch, since, reply)
}

/// `GET /channels`
pub fn list(app: &App, _: &mut Req) -> Result<Reply, ApiError> {
    let names = app.store.read(read::channels)?;
    Ok(Reply::json(200, json!(names)))
}
