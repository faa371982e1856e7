//! `workshop thread ID`: the `reply_to` thread a message belongs to, oldest first.
use clap::Args;

use super::client::{Client, Result, seg};
use super::output::emit_envelopes;

#[derive(Args, Debug)]
pub struct ThreadArgs {
    /// Any message of the thread
    id: String,
    /// One readable line per message instead of JSON
    #[arg(long)]
    pretty: bool,
}

pub fn thread(client: &Client, args: ThreadArgs) -> Result<()> {
    let text = client.get_text(&format!("/messages/{}/thread", seg(&args.id)), &[])?;
    emit_envelopes(&text, args.pretty)
}
