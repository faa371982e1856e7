//! `workshop thread ID`: the `reply_to` thread a message belongs to, oldest first.
use serde_json::Value;

use super::client::{Client, Result, seg};
use super::commands::emit;
use super::format;

pub fn thread(client: &Client, id: &str, pretty: bool) -> Result<()> {
    let text = client.get_text(&format!("/messages/{}/thread", seg(id)), &[])?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(envelope) if pretty => emit(&format::message(
                &envelope,
                super::commands::colour_wanted(),
            ))?,
            _ => emit(line)?,
        }
    }
    Ok(())
}
