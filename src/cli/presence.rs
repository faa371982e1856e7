//! `workshop heartbeat`, `who`, `status` and `channels`: who is here, and what the hub holds.
use clap::Args;
use serde_json::json;

use super::client::{Client, Result};
use super::format;
use super::output::emit;
use super::request::json_arg;

#[derive(Args, Debug)]
pub struct HeartbeatArgs {
    /// Channels you listen on, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "CH,...")]
    channels: Vec<String>,
    /// Any JSON describing you
    #[arg(long, value_name = "JSON")]
    meta: Option<String>,
}

pub fn heartbeat(client: &Client, args: HeartbeatArgs) -> Result<()> {
    let mut body = json!({"from": client.agent()?});
    if !args.channels.is_empty() {
        body["channels"] = json!(args.channels);
    }
    if let Some(m) = args.meta {
        body["meta"] = json_arg(&m, "--meta")?;
    }
    let reply = client.post_json("/presence", &body)?;
    emit(&reply.to_string())
}

/// Who was seen lately: aligned columns with `pretty`, else each row as the hub sent it.
pub fn who(client: &Client, pretty: bool) -> Result<()> {
    let rows = client.get_json("/presence", &[])?;
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    match pretty {
        true => format::agent_table(rows).iter().try_for_each(|l| emit(l)),
        false => rows.iter().try_for_each(|row| emit(&row.to_string())),
    }
}

pub fn status(client: &Client) -> Result<()> {
    let status = client.get_json("/status", &[])?;
    emit(&status.to_string())
}

pub fn channels(client: &Client) -> Result<()> {
    let names = client.get_json("/channels", &[])?;
    for name in names.as_array().into_iter().flatten() {
        emit(name.as_str().unwrap_or_default())?;
    }
    Ok(())
}
