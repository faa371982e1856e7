//! The task queue: create, list, show, and the transitions (claim, update, done, abandon,
//! interrupt). The checks that decide 403/409 run in the writer, so they cannot race.
use super::{channel, file_refs, identity, label, optional_identity};
use crate::error::ApiError;
use crate::http::{Reply, count_param, read_json_object};
use crate::ids;
use crate::server::App;
use crate::store::read::{self, TaskQuery};
use crate::store::{NewTask, Op};
use serde_json::{Value, json};
use std::collections::HashMap;
use tiny_http::Request;

const STATUSES: &[&str] = &["open", "claimed", "done"];

/// `POST /tasks`
pub fn create(app: &App, request: &mut Request) -> Result<Reply, ApiError> {
    let body = read_json_object(request)?;
    let from = if body.contains_key("from") {
        identity(&body, "from")?
    } else {
        identity(&body, "created_by").map_err(|_| ApiError::bad_request("from is required"))?
    };
    let ch = match body.get("ch") {
        None | Some(Value::Null) => "tasks".to_string(),
        Some(Value::String(name)) => channel(name)?,
        Some(_) => return Err(ApiError::bad_request("ch must be a channel name")),
    };
    let task = NewTask {
        from,
        title: label(&body, "title")?,
        context: body.get("context").cloned().unwrap_or_else(|| json!({})),
        assigned_to: optional_identity(&body, "for")?,
        ch,
    };
    let done = app.store.write(Op::CreateTask(task))?;
    Ok(Reply::json(done.status, done.body))
}

/// `GET /tasks?status=&for=&ch=&n=`
pub fn list(app: &App, params: &HashMap<String, String>) -> Result<Reply, ApiError> {
    let status = params.get("status").filter(|s| !s.is_empty()).cloned();
    if let Some(status) = status.as_ref().filter(|s| !STATUSES.contains(&s.as_str())) {
        return Err(ApiError::bad_request(format!(
            "status must be one of {}, got {status:?}",
            STATUSES.join(", ")
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
    let tasks = app.store.read(|conn| read::tasks(conn, &query))?;
    Ok(Reply::json(200, json!(tasks)))
}

/// `GET /tasks/:id`
pub fn show(app: &App, id: &str) -> Result<Reply, ApiError> {
    let id = task_id(id)?;
    let task = app.store.read(|conn| read::task(conn, &id))?;
    let task = task.ok_or_else(|| ApiError::not_found(format!("no task {id}")))?;
    Ok(Reply::json(200, json!(task)))
}

/// `POST /tasks/:id/<action>`
pub fn act(app: &App, id: &str, action: &str, request: &mut Request) -> Result<Reply, ApiError> {
    let id = task_id(id)?;
    let body = read_json_object(request)?;
    let from = identity(&body, "from")?;
    let reason = body.get("reason").cloned().unwrap_or(Value::Null);
    let op = match action {
        "claim" => Op::Claim { id, from },
        "update" => Op::Update {
            id,
            from,
            fields: body,
        },
        "done" => Op::Complete {
            id,
            from,
            result: body.get("result").cloned().unwrap_or(Value::Null),
            files: file_refs(&body, &app.blobs)?,
        },
        "abandon" => Op::Abandon { id, from, reason },
        "interrupt" => Op::Interrupt { id, from, reason },
        _ => {
            return Err(ApiError::not_found(format!(
                "no such task action {action:?}"
            )));
        }
    };
    let done = app.store.write(op)?;
    Ok(Reply::json(done.status, done.body))
}

/// Task ids are ULIDs; anything else cannot name a task.
fn task_id(raw: &str) -> Result<String, ApiError> {
    ids::parse(raw)
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::not_found(format!("no task {raw}")))
}
