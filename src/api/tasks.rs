//! The task queue: create, list, show, and the transitions (claim, update, done, abandon,
//! interrupt). The checks that decide 403/409 run in the writer, so they cannot race.
use super::idempotency;
use super::longpoll::{MAX_WAIT_S, PEER_CHECK};
use super::written;
use super::{channel, file_refs, identity, label, optional_channel, optional_identity};
use crate::app::App;
use crate::error::{ApiError, shown};
use crate::http::{Reply, Req, count_param, read_json_object};
use crate::hub::TOO_MANY_STREAMS;
use crate::ids;
use crate::store::lists::{self, Tasks};
use crate::store::read::{self, TaskQuery};
use crate::store::{NewTask, Op, Written};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STATUSES: &[&str] = &["open", "claimed", "done", "failed"];
/// The transitions `POST /tasks/:id/<action>` knows.
pub const ACTIONS: &[&str] = &[
    "claim",
    "touch",
    "update",
    "done",
    "abandon",
    "interrupt",
    "retry",
];
/// Longest lease and delay accepted: a week.
const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// `POST /tasks`
pub fn create(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let request = &mut req.http;
    let body = read_json_object(request)?;
    let from = if body.contains_key("from") {
        identity(&body, "from")?
    } else {
        identity(&body, "created_by").map_err(|_| ApiError::bad_request("from is required"))?
    };
    let ch = optional_channel(&body, "ch")?.unwrap_or_else(|| "tasks".to_string());
    let task = NewTask {
        from,
        title: label(&body, "title")?,
        context: body.get("context").cloned().unwrap_or_else(|| json!({})),
        assigned_to: optional_identity(&body, "for")?,
        ch,
        priority: match body.get("priority") {
            None | Some(Value::Null) => 0,
            Some(p) => p
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("priority must be an integer"))?,
        },
        delay_s: seconds(&body, "delay_s")?.unwrap_or(0.0),
        max_attempts: match body.get("max_attempts") {
            None | Some(Value::Null) => 5,
            Some(n) => n
                .as_i64()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("max_attempts must be an integer from 1 to 1000")
                })?,
        },
    };
    let key = idempotency::key(request, &task.from, "POST /tasks", &body)?;
    let (from, ch) = (&task.from, &task.ch);
    if let Err(throttled) =
        app.limiter
            .guard_unless_repeat(&app.store, key.as_ref(), (from, 1), ch, "task_create")?
    {
        return Ok(throttled);
    }
    let written = app
        .store
        .write(idempotency::wrap(key, Op::CreateTask(task)))?;
    Ok(written::reply(written))
}

/// `GET /tasks?status=&for=&ch=&n=`
pub fn list(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let params = &req.query;
    let status = params.get("status").filter(|s| !s.is_empty()).cloned();
    if let Some(status) = status.as_ref().filter(|s| !STATUSES.contains(&s.as_str())) {
        return Err(ApiError::bad_request(format!(
            "status must be one of {}, got {}",
            STATUSES.join(", "),
            shown(status)
        )));
    }
    let query = TaskQuery {
        status,
        agent: params.get("for").filter(|s| !s.is_empty()).cloned(),
        ch: params
            .get("ch")
            .filter(|s| !s.is_empty())
            .map(|c| channel(c))
            .transpose()?,
        limit: count_param(params, 100, 1000)?,
    };
    let tasks = lists::select(app.store.reader(), Tasks(query))?;
    Ok(Reply::JsonStream(Box::new(tasks)))
}

/// `GET /tasks/:id`
pub fn show(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let id = task_id(&req.captures[0])?;
    let task = app.store.read(|conn| read::task(conn, &id))?;
    let task = task.ok_or_else(|| ApiError::not_found(format!("no task {id}")))?;
    Ok(Reply::json(200, json!(task)))
}

/// `POST /tasks/:id/<action>`
pub fn act(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let Req {
        http: request,
        captures,
        ..
    } = req;
    let (id, action) = (task_id(&captures[0])?, captures[1].as_str());
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let key = idempotency::key(request, &from, &format!("POST /tasks/{id}/{action}"), &body)?;
    let reason = body.get("reason").cloned().unwrap_or(Value::Null);
    let op = match action {
        "claim" => Op::Claim {
            id,
            from,
            lease_s: lease(&body)?,
        },
        "touch" => Op::Touch {
            id,
            from,
            claim: claim_number(&body)?,
            lease_s: lease(&body)?,
        },
        "update" => Op::Update {
            id,
            from,
            claim: claim_number(&body)?,
            fields: body,
        },
        "done" => Op::Complete {
            id,
            from,
            claim: claim_number(&body)?,
            result: body.get("result").cloned().unwrap_or(Value::Null),
            files: file_refs(&body, &app.blobs)?,
        },
        "abandon" => Op::Abandon {
            id,
            from,
            claim: claim_number(&body)?,
            reason,
            delay_s: seconds(&body, "delay_s")?.unwrap_or(0.0),
            counted: match body.get("count_attempt") {
                None | Some(Value::Null) => true,
                Some(flag) => flag
                    .as_bool()
                    .ok_or_else(|| ApiError::bad_request("count_attempt must be true or false"))?,
            },
        },
        "interrupt" => Op::Interrupt { id, from, reason },
        "retry" => Op::Retry { id, from },
        _ => {
            return Err(ApiError::not_found(format!(
                "no such task action {action:?}"
            )));
        }
    };
    let written = app.store.write(idempotency::wrap(key, op))?;
    Ok(written::reply(written))
}

/// `POST /tasks/claim`: claim the best task for `from` (highest priority, then oldest),
/// waiting up to `wait_s` for one; 200 with the task, or 204.
pub fn claim_next(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let request = &mut req.http;
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let ch = optional_channel(&body, "ch")?;
    let lease_s = lease(&body)?;
    let exclude: Arc<str> = read::id_list(&task_ids(&body, "exclude")?).into();
    // A retry whose first answer was lost gets the task the first claim took, not a second.
    let key = idempotency::key(request, &from, "POST /tasks/claim", &body)?;
    // As long as a long poll may wait, and under the same cap: past it, a claim is tried
    // once and, with nothing to take, answered 503 (try again) instead of held.
    let wait = seconds(&body, "wait_s")?.unwrap_or(0.0).min(MAX_WAIT_S);
    let room = app.store.bell.waiting() < app.max_streams;
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    let mut waited = false;
    loop {
        // Read the bell before looking, so a task created meanwhile wakes us (and so does
        // shutdown, which rings it after setting `stopping`).
        let rings = app.store.bell.rings();
        if app.is_stopping() {
            return Err(ApiError::shutting_down());
        }
        // A client that has gone must not be handed a task it will never hear of.
        if waited && req.http.peer_has_closed() {
            return Ok(Reply::Empty(204));
        }
        let claim = Op::ClaimNext {
            from: from.clone(),
            ch: ch.clone(),
            lease_s,
            exclude: exclude.clone(),
        };
        let next_ready = match app.store.write(idempotency::wrap(key.clone(), claim))? {
            Written::NothingYet { next_ready } => next_ready,
            claimed => return Ok(written::reply(claimed)),
        };
        if Instant::now() >= deadline {
            return Ok(written::nothing_yet(next_ready));
        }
        if !room {
            return Err(ApiError::unavailable(TOO_MANY_STREAMS));
        }
        // A delayed task becomes claimable without a ring: wake up for it too.
        let ready = next_ready.map(|at| {
            Instant::now() + Duration::from_secs_f64((at - crate::store::now()).max(0.0) + 0.001)
        });
        let wake = ready.map_or(deadline, |ready| ready.min(deadline));
        if !nap(app, &req.http, rings, wake) {
            return Ok(Reply::Empty(204));
        }
        waited = true;
    }
}

/// Waits for a ring after `rings`, or until `wake`, looking at the client every
/// `PEER_CHECK` in between (only looking: claiming again at each look would send the writer
/// a claim a second for every waiting caller). False when the client has gone.
fn nap(app: &App, request: &tiny_http::Request, rings: u64, wake: Instant) -> bool {
    let bell = &app.store.bell;
    while let Some(left) = wake.checked_duration_since(Instant::now()) {
        bell.wait(rings, left.min(PEER_CHECK));
        if bell.rings() != rings {
            break;
        }
        if request.peer_has_closed() {
            return false;
        }
    }
    true
}

/// An optional array of task ids (at most 1000).
fn task_ids(body: &Map<String, Value>, key: &str) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::bad_request(format!("{key} must be an array of at most 1000 task ids"));
    let ids = match body.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= 1000 => items,
        Some(_) => return Err(bad()),
    };
    ids.iter()
        .map(|id| id.as_str().and_then(ids::parse).map(|id| id.to_string()))
        .collect::<Option<_>>()
        .ok_or_else(bad)
}

/// `claim`: absent, or the number of the caller's claim (`claim` in its claim's answer,
/// `claims` in the task), which the task must still be under.
fn claim_number(body: &Map<String, Value>) -> Result<Option<i64>, ApiError> {
    match body.get("claim") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_i64().filter(|n| *n >= 1).map(Some).ok_or_else(|| {
            ApiError::bad_request("claim must be the claim's number (an integer from 1)")
        }),
    }
}

/// A lease shorter than this could not be touched in time by anyone.
const MIN_LEASE_S: f64 = 1.0;

/// `lease_s`: absent, or seconds from 1 to a week.
fn lease(body: &Map<String, Value>) -> Result<Option<f64>, ApiError> {
    match seconds(body, "lease_s")? {
        Some(lease) if lease < MIN_LEASE_S => Err(ApiError::bad_request(format!(
            "lease_s must be at least {MIN_LEASE_S} second"
        ))),
        other => Ok(other),
    }
}

/// An optional non-negative number of seconds, at most a week.
fn seconds(body: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|s| (0.0..=MAX_SECONDS).contains(s))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("{key} must be a number of seconds up to a week"))
            }),
    }
}

/// Task ids are ULIDs; anything else cannot name a task.
fn task_id(raw: &str) -> Result<String, ApiError> {
    ids::parse(raw)
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::not_found(format!("no task {}", shown(raw))))
}
