//! `workshop thread ID`: the `reply_to` thread a message belongs to, oldest first.
use super::client::{Client, Result, seg};
use super::commands::emit_envelopes;

pub fn thread(client: &Client, id: &str, pretty: bool) -> Result<()> {
    let text = client.get_text(&format!("/messages/{}/thread", seg(id)), &[])?;
    emit_envelopes(&text, pretty)
}
