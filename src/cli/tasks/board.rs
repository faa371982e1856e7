//! `task create`, `task list` and `task show`: putting tasks on the board and reading it.
use clap::Args;
use serde_json::{Value, json};

use crate::cli::client::{CliError, Client, Result, seg};
use crate::cli::format;
use crate::cli::idempotent;
use crate::cli::output::emit;
use crate::cli::request::{id_of, json_arg, push_opt, set_opt};

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// What is to be done, in a line (shown on the board and in `task list`)
    title: String,
    /// JSON context for whoever does it (`-` reads stdin)
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
    /// Assign to one agent (only it may claim)
    #[arg(long = "for", value_name = "AGENT")]
    for_agent: Option<String>,
    /// Channel announcing it (server default: tasks)
    #[arg(long, value_name = "CH")]
    ch: Option<String>,
    /// Higher is claimed first by `task next` (server default 0)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i64>,
    /// Not claimable for this many seconds
    #[arg(long, value_name = "SECS")]
    delay: Option<f64>,
    /// Abandons and lease expiries before it goes to `failed` (server default 5)
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
}

/// Creates the task (under an idempotency key); prints its id.
pub fn create(client: &Client, args: CreateArgs) -> Result<()> {
    let mut req = json!({"from": client.agent()?, "title": args.title});
    if let Some(c) = args.context {
        req["context"] = json_arg(&c, "--context")?;
    }
    set_opt(&mut req, "for", args.for_agent);
    set_opt(&mut req, "ch", args.ch);
    set_opt(&mut req, "priority", args.priority);
    set_opt(&mut req, "delay_s", args.delay);
    set_opt(&mut req, "max_attempts", args.max_attempts);
    let reply = idempotent::post(client, "/tasks", &req)?;
    emit(&id_of(&reply)?)
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// open, claimed, done or failed
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// Assigned to or claimed by AGENT
    #[arg(long = "for", value_name = "AGENT", conflicts_with = "mine")]
    for_agent: Option<String>,
    /// Shorthand for --for <your agent id>
    #[arg(long)]
    mine: bool,
    /// Only tasks announced on this channel
    #[arg(long, value_name = "CH")]
    ch: Option<String>,
    /// At most N (server default 100)
    #[arg(short, value_name = "N")]
    n: Option<u32>,
    /// Human-readable lines instead of JSON
    #[arg(long)]
    pretty: bool,
}

pub fn list(client: &Client, args: ListArgs) -> Result<()> {
    let pretty = args.pretty;
    let tasks = client.get_json("/tasks", &list_query(client, args)?)?;
    let tasks = tasks
        .as_array()
        .ok_or_else(|| CliError::failure("server sent a task list that is not an array"))?;
    print_tasks(tasks, pretty)
}

/// The `GET /tasks` query; `--mine` is `--for` our own agent id.
fn list_query(client: &Client, args: ListArgs) -> Result<Vec<(&'static str, String)>> {
    let for_agent = if args.mine {
        Some(client.agent()?.to_string())
    } else {
        args.for_agent
    };
    let mut query = Vec::new();
    push_opt(&mut query, "status", args.status);
    push_opt(&mut query, "for", for_agent);
    push_opt(&mut query, "ch", args.ch);
    push_opt(&mut query, "n", args.n);
    Ok(query)
}

/// One JSON line per task, or (`pretty`) an aligned table, with nothing at all for none.
fn print_tasks(tasks: &[Value], pretty: bool) -> Result<()> {
    let lines = match pretty {
        true if tasks.is_empty() => Vec::new(),
        true => format::task_table(tasks, format::now()),
        false => tasks.iter().map(Value::to_string).collect(),
    };
    lines.iter().try_for_each(|line| emit(line))
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The task's id
    id: String,
    /// Indented JSON, for reading
    #[arg(long)]
    pretty: bool,
}

/// One JSON line, like every other command; `--pretty` indents it for reading.
pub fn show(client: &Client, args: ShowArgs) -> Result<()> {
    let task = client.get_json(&format!("/tasks/{}", seg(&args.id)), &[])?;
    if args.pretty {
        emit(&serde_json::to_string_pretty(&task).unwrap_or_else(|_| task.to_string()))
    } else {
        emit(&task.to_string())
    }
}
