//! The command line as clap reads it: the global options, every subcommand with its help,
//! and `work`'s options. Each command's own arguments live with the command.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::files::DownloadArgs;
use super::messages::{HistoryArgs, PubArgs};
use super::presence::HeartbeatArgs;
use super::tail::TailArgs;
use super::tasks::TaskCommand;
use super::thread::ThreadArgs;
use super::{backup, locks, parse_secs, search, serve, turns, work};

const MAIN_HELP: &str = "\
Configuration:
  WORKSHOP_URL   hub address: http://HOST:PORT, https://HOST (behind a TLS proxy) or
                 HOST:PORT (default http://localhost:4242); --url overrides
  AGENT_ID       who you are, e.g. harvester.alice; --as overrides
  WORKSHOP_THROTTLE_WAIT   seconds a write may be refused by the loop guard (429)
                           before it is given up (default 300)
  WORKSHOP_TRANSFER_STALL  seconds an upload or download may move no byte before it
                           is cut off (default 60)

Exit status:
  0  success
  1  server error (5xx), unexpected reply, local I/O failure, or still throttled (429)
  2  usage error, or the server rejected the request as malformed (400, 405, 413)
  3  not found (404)
  4  conflict (409: e.g. already claimed) or forbidden (403: not yours)
  5  server unreachable, or a file transfer stalled
Errors are printed to stderr; results to stdout.

Examples:
  workshop                                   # run the server (same as `workshop serve`)
  export WORKSHOP_URL=http://hub:4242 AGENT_ID=me.alice
  workshop pub general hello.world '{\"msg\":\"hi\"}'
  workshop tail --pretty
  workshop task create 'summarize the logs' --context '{\"day\":\"mon\"}'
  workshop work --ch jobs --jobs 2 -- ./handle-task.sh";

#[derive(Parser, Debug)]
#[command(
    name = "workshop",
    version,
    about = "Structured IRC for a mesh of agents: the hub server and its command-line client",
    after_help = MAIN_HELP
)]
pub struct Cli {
    /// Hub URL [env: WORKSHOP_URL] [default: http://localhost:4242]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Agent id to act as [env: AGENT_ID]
    #[arg(long = "as", global = true, value_name = "AGENT")]
    pub agent: Option<String>,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Run the server (the default when no subcommand is given)
    #[command(after_help = serve::HELP)]
    Serve(serve::ServeArgs),
    /// Publish a message on a channel; prints its id
    #[command(
        after_help = "Examples:\n  workshop pub general hello.world '{\"msg\":\"hi\"}'\n  \
        echo '{\"n\":1}' | workshop pub jobs job.result - --file out.csv --reply-to 01J4XYZ..."
    )]
    Pub(PubArgs),
    /// Follow the live stream (every channel, or one); one JSON envelope per line
    #[command(
        after_help = "Reconnects by itself and resumes after the last message printed, so \
        nothing is shown twice or skipped across a server restart (it exits 5 only if the \
        server cannot be reached at the start).\n\nExamples:\n  \
        workshop tail -n 20 --pretty\n  workshop tail jobs --type task. | jq .body"
    )]
    Tail(TailArgs),
    /// Print stored messages, oldest first, one JSON envelope per line
    #[command(
        after_help = "Examples:\n  workshop history general -n 20 --pretty\n  \
        workshop history --type task.done --since 01J4XYZ..."
    )]
    History(HistoryArgs),
    /// Create, list, claim and complete tasks
    #[command(
        subcommand,
        after_help = "A task is open, claimed, done or failed; abandoning returns it to open, or to \
        failed once it has used its max_attempts.\n\n\
        Example:\n  ID=$(workshop task create 'resize images') && workshop task claim \"$ID\" \
        && workshop task done \"$ID\" --result '{\"resized\":12}'"
    )]
    Task(TaskCommand),
    /// Upload files; prints one `sha256:<hex>` per file, in argument order
    #[command(after_help = "Examples:\n  workshop upload report.pdf data.csv\n  \
        H=$(workshop upload report.pdf) && workshop task done \"$ID\" --result \"{\\\"pdf\\\":\\\"$H\\\"}\"")]
    Upload {
        /// The files to upload (each stored once, under the hash of its content)
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Fetch a file by hash, verifying the bytes hash to its name
    #[command(
        after_help = "Writes to stdout unless -o is given; with -o the file appears only \
        once verified.\n\nExample:\n  workshop download sha256:9f86d0... -o report.pdf"
    )]
    Download(DownloadArgs),
    /// Announce presence (agents are listed by `who` for 60 s after)
    #[command(after_help = "Example:\n  workshop heartbeat --channels jobs,general \
        --meta '{\"model\":\"small\"}'")]
    Heartbeat(HeartbeatArgs),
    /// List agents seen in the last 60 s, one JSON object per line
    #[command(after_help = "Example:\n  workshop who --pretty")]
    Who {
        /// Human-readable lines instead of JSON
        #[arg(long)]
        pretty: bool,
    },
    /// Show server counters (uptime, messages, tasks, live agents, subscribers)
    #[command(after_help = "Example:\n  workshop status")]
    Status,
    /// List every channel that has a message
    #[command(after_help = "Example:\n  workshop channels")]
    Channels,
    /// Worker loop: claim tasks and run COMMAND for each
    #[command(after_help = work::HELP)]
    Work(work::WorkArgs),
    /// Copy the server's database and files into DIR, while it runs
    #[command(after_help = backup::BACKUP_HELP)]
    Backup(backup::StoreArgs),
    /// Put a backup from DIR back in place (the server must be stopped)
    #[command(after_help = backup::RESTORE_HELP)]
    Restore(backup::StoreArgs),
    /// Wait for the messages after an id; prints them, one JSON per line (exit 3: none)
    #[command(
        after_help = "For agents that act in turns: one call per turn, no stream to keep \
        open. Without --since, waits for what comes after the newest message now.\n\n\
        Example, one turn (LAST: the last id seen, empty at first; kept when nothing came):\n  \
        NEW=$(workshop wait jobs ${LAST:+--since \"$LAST\"} --timeout 60) &&\n    \
        LAST=$(printf '%s\\n' \"$NEW\" | tail -n 1 | jq -r .id)"
    )]
    Wait(turns::WaitArgs),
    /// Print your unread inbox: messages addressed to you and tasks created for you
    #[command(
        after_help = "Exit 3 when it is empty (after --wait). The read cursor is kept by the \
        server, so a fresh process of the same agent resumes where the last one stopped.\n\n\
        Example:\n  workshop inbox --wait 60 --mark-read | jq -c .body"
    )]
    Inbox {
        /// Wait up to SECS for something to arrive
        #[arg(long, default_value = "0", value_name = "SECS", value_parser = parse_secs)]
        wait: Duration,
        /// Then mark what was printed as read
        #[arg(long)]
        mark_read: bool,
        /// The whole inbox (the newest 1000), read or not
        #[arg(long, conflicts_with = "mark_read")]
        all: bool,
    },
    /// Print the reply thread a message belongs to: its root and every reply, oldest first
    #[command(after_help = "Example:\n  workshop thread 01J4XYZ... --pretty")]
    Thread(ThreadArgs),
    /// Full-text search of stored messages, best match first (one JSON envelope per line)
    #[command(
        after_help = "Every word must appear (in the type, sender, channel or a text \
        value of the body).\n\nExamples:\n  workshop search 'disk full' --ch jobs\n  \
        workshop search timeout --from worker.a -n 5 --pretty"
    )]
    Search(search::SearchArgs),
    /// Take (or renew) an advisory lock; exit 4 when someone else holds it
    #[command(
        after_help = "With `-- CMD`, runs CMD while holding the lock (renewed every \
        third of --ttl), releases it when CMD exits, and exits with CMD's status; exit 4 if \
        the lock is taken or lost. CMD gets WORKSHOP_LOCK=NAME.\n\nExamples:\n  \
        workshop lock src/main.rs --ttl 600 --note 'refactoring the router'\n  \
        workshop lock deploy --ttl 60 -- ./deploy.sh"
    )]
    Lock(locks::LockArgs),
    /// Release a lock you hold (exit 4 if someone else holds it, 3 if nobody does)
    #[command(after_help = "Example:\n  workshop unlock src/main.rs")]
    Unlock {
        /// The lock's name, as given to `workshop lock`
        name: String,
    },
    /// List the locks held now, by name, one JSON object per line
    #[command(after_help = "Example:\n  workshop locks --prefix src/ --pretty")]
    Locks {
        /// Only names starting with this
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Human-readable lines instead of JSON
        #[arg(long)]
        pretty: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell)
    #[command(after_help = "Examples:\n  \
        workshop completions bash > /etc/bash_completion.d/workshop\n  \
        workshop completions zsh > \"${fpath[1]}/_workshop\"\n  \
        workshop completions fish > ~/.config/fish/completions/workshop.fish")]
    Completions {
        /// The shell to write the script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}
