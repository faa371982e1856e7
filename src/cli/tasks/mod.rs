//! `workshop task ...`: the subcommands, and where each goes. Making and reading tasks is in
//! `board`, acting on one task (claim, progress, done, give back) in `claims`.
use clap::Subcommand;

use super::client::{Client, Result};

mod board;
mod claims;

use board::{CreateArgs, ListArgs, ShowArgs};
use claims::{AbandonArgs, ClaimArgs, DoneArgs, InterruptArgs, NextArgs, TouchArgs, UpdateArgs};

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Create a task; prints its id
    #[command(
        after_help = "Example:\n  workshop task create 'resize images' --context \
        '{\"dir\":\"/data/in\"}' --for resizer.bob --ch jobs"
    )]
    Create(CreateArgs),
    /// List tasks, newest first, one JSON object per line (--pretty: an aligned table)
    #[command(
        after_help = "Examples:\n  workshop task list --status open --pretty\n  \
        workshop task list --mine"
    )]
    List(ListArgs),
    /// Print one task as one line of JSON
    #[command(after_help = "Example:\n  workshop task show \"$ID\" | jq .status\n  \
        workshop task show \"$ID\" --pretty")]
    Show(ShowArgs),
    /// Claim an open task (exit 4 when someone else has it)
    #[command(
        after_help = "Example:\n  workshop task claim 01J4XYZ... --lease 300 || echo 'taken'"
    )]
    Claim(ClaimArgs),
    /// Claim the best task for you (priority, then age); prints it (exit 3 when none)
    #[command(
        after_help = "Example:\n  TASK=$(workshop task next --ch jobs --lease 300 --wait 30) \
        && echo \"$TASK\" | jq -r .title"
    )]
    Next(NextArgs),
    /// Extend the lease of your claimed task
    #[command(after_help = "Example:\n  workshop task touch 01J4XYZ... --lease 300")]
    Touch(TouchArgs),
    /// Post progress: any JSON object of fields, and/or a --note
    #[command(
        after_help = "Examples:\n  workshop task update 01J4XYZ... '{\"progress\":0.5}'\n  \
        workshop task update 01J4XYZ... --note 'halfway there'"
    )]
    Update(UpdateArgs),
    /// Mark your claimed task done, with a result and files
    #[command(
        after_help = "Example:\n  workshop task done 01J4XYZ... --result '{\"rows\":42}' \
        --file out.csv"
    )]
    Done(DoneArgs),
    /// Give your claimed task back to the pool
    #[command(after_help = "Example:\n  workshop task abandon 01J4XYZ... --reason 'out of disk'")]
    Abandon(AbandonArgs),
    /// Put a failed task back to open, its attempts reset
    #[command(
        after_help = "Example:\n  workshop task list --status failed && workshop task retry 01J4XYZ..."
    )]
    Retry {
        /// The failed task's id
        id: String,
    },
    /// Ask whoever runs a task to stop (`workshop work` stops it and gives it back)
    #[command(after_help = "Example:\n  workshop task interrupt 01J4XYZ... --reason 'wrong input'")]
    Interrupt(InterruptArgs),
}

/// Runs one `task` subcommand.
pub fn run(client: &Client, command: TaskCommand) -> Result<()> {
    match command {
        TaskCommand::Create(args) => board::create(client, args),
        TaskCommand::List(args) => board::list(client, args),
        TaskCommand::Show(args) => board::show(client, args),
        TaskCommand::Claim(args) => claims::claim(client, args),
        TaskCommand::Next(args) => claims::next(client, args),
        TaskCommand::Touch(args) => claims::touch(client, args),
        TaskCommand::Update(args) => claims::update(client, args),
        TaskCommand::Done(args) => claims::done(client, args),
        TaskCommand::Abandon(args) => claims::abandon(client, args),
        TaskCommand::Retry { id } => claims::retry(client, &id),
        TaskCommand::Interrupt(args) => claims::interrupt(client, args),
    }
}
