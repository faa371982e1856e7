//! Acting on one task: `task claim`, `next`, `touch`, `update`, `done`, `abandon`, `retry`
//! and `interrupt`. Each is a `POST /tasks/...` with `from` added; the reply is printed.
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value, json};

use crate::cli::client::{CliError, Client, Result, from_ureq, seg};
use crate::cli::files;
use crate::cli::output::emit;
use crate::cli::request::{json_arg, set_opt};

#[derive(Args, Debug)]
pub struct ClaimArgs {
    /// The task's id (as `task list` or `task create` print it)
    id: String,
    /// Expire the claim after SECS unless touched (default: never)
    #[arg(long, value_name = "SECS")]
    lease: Option<f64>,
}

pub fn claim(client: &Client, args: ClaimArgs) -> Result<()> {
    action_with(client, &args.id, "claim", "lease_s", args.lease)
}

#[derive(Args, Debug)]
pub struct NextArgs {
    /// Only from this channel
    #[arg(long, value_name = "CH")]
    ch: Option<String>,
    /// Expire the claim after SECS unless touched (default: never)
    #[arg(long, value_name = "SECS")]
    lease: Option<f64>,
    /// Wait up to SECS (at most 60) for one to appear
    #[arg(long, value_name = "SECS")]
    wait: Option<f64>,
}

/// `POST /tasks/claim`: prints the claimed task, or exits 3 when there is none.
pub fn next(client: &Client, args: NextArgs) -> Result<()> {
    let mut body = json!({"from": client.agent()?});
    set_opt(&mut body, "ch", args.ch);
    set_opt(&mut body, "lease_s", args.lease);
    set_opt(&mut body, "wait_s", args.wait);
    match claim_best(client, &body, args.wait)? {
        Some(task) => emit(task.trim()),
        None => Err(CliError::http(404, "no task to claim")),
    }
}

/// `POST /tasks/claim`, waiting as long as the server may hold it (up to `wait`, at most a
/// minute): the claimed task, or None when there is none (204).
fn claim_best(client: &Client, body: &Value, wait: Option<f64>) -> Result<Option<String>> {
    let patience = Duration::from_secs_f64(wait.unwrap_or(0.0).clamp(0.0, 60.0) + 30.0);
    let resp = client
        .request("POST", "/tasks/claim")
        .timeout(patience)
        .send_json(body)
        .map_err(from_ureq)?;
    if resp.status() == 204 {
        return Ok(None);
    }
    Ok(Some(resp.into_string()?))
}

#[derive(Args, Debug)]
pub struct TouchArgs {
    /// The task's id
    id: String,
    /// New lease from now (default: the claim's)
    #[arg(long, value_name = "SECS")]
    lease: Option<f64>,
}

pub fn touch(client: &Client, args: TouchArgs) -> Result<()> {
    action_with(client, &args.id, "touch", "lease_s", args.lease)
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The task's id
    id: String,
    /// JSON object of fields (`-` reads stdin)
    #[arg(value_name = "JSON")]
    fields: Option<String>,
    /// A free-text note (sent as the `note` field)
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

pub fn update(client: &Client, args: UpdateArgs) -> Result<()> {
    let mut body = match args.fields {
        Some(text) => fields_object(&text)?,
        None => Map::new(),
    };
    if let Some(note) = args.note {
        body.insert("note".into(), json!(note));
    }
    if body.is_empty() {
        return Err(CliError::usage(
            "nothing to update: give a JSON object or --note",
        ));
    }
    task_action(client, &args.id, "update", Value::Object(body))
}

/// `task update`'s JSON argument, which must be an object of fields.
fn fields_object(text: &str) -> Result<Map<String, Value>> {
    match json_arg(text, "JSON")? {
        Value::Object(map) => Ok(map),
        _ => Err(CliError::usage("JSON: must be an object of fields")),
    }
}

#[derive(Args, Debug)]
pub struct DoneArgs {
    /// The task's id
    id: String,
    /// JSON result (`-` reads stdin)
    #[arg(long, value_name = "JSON")]
    result: Option<String>,
    /// Upload a file and attach its hash (repeatable); its name goes into the result's
    /// `file_names` (when the result is an object)
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
}

pub fn done(client: &Client, args: DoneArgs) -> Result<()> {
    let mut body = json!({});
    let mut result = args.result.map(|r| json_arg(&r, "--result")).transpose()?;
    if !args.files.is_empty() {
        let named = result.get_or_insert_with(|| json!({}));
        body["files"] = json!(files::attach(client, &args.files, named)?);
    }
    if let Some(result) = result {
        body["result"] = result;
    }
    task_action(client, &args.id, "done", body)
}

#[derive(Args, Debug)]
pub struct AbandonArgs {
    /// The task's id
    id: String,
    /// Why, in the task.abandoned announcement
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Not claimable again for this many seconds
    #[arg(long, value_name = "SECS")]
    delay: Option<f64>,
}

pub fn abandon(client: &Client, args: AbandonArgs) -> Result<()> {
    let mut body = json!({});
    set_opt(&mut body, "reason", args.reason);
    set_opt(&mut body, "delay_s", args.delay);
    task_action(client, &args.id, "abandon", body)
}

pub fn retry(client: &Client, id: &str) -> Result<()> {
    task_action(client, id, "retry", json!({}))
}

#[derive(Args, Debug)]
pub struct InterruptArgs {
    /// The task's id
    id: String,
    /// Why, in the task.interrupt announcement the worker reads
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub fn interrupt(client: &Client, args: InterruptArgs) -> Result<()> {
    action_with(client, &args.id, "interrupt", "reason", args.reason)
}

/// `task_action` with a body of at most one field, `key`, set when `value` is given.
fn action_with(
    client: &Client,
    id: &str,
    action: &str,
    key: &str,
    value: Option<impl serde::Serialize>,
) -> Result<()> {
    let mut body = json!({});
    set_opt(&mut body, key, value);
    task_action(client, id, action, body)
}

/// `POST /tasks/:id/<action>` with `from` added to `body`; prints the reply.
fn task_action(client: &Client, id: &str, action: &str, mut body: Value) -> Result<()> {
    body["from"] = json!(client.agent()?);
    let reply = client.post_json(&format!("/tasks/{}/{action}", seg(id)), &body)?;
    emit(&reply.to_string())
}
