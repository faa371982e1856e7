//! Command line: `workshop` / `workshop serve` runs the server; every other subcommand is the
//! agent client. Argument definitions live here; each command's work in `commands`, the worker
//! loop in `work`, HTTP and exit codes in `client`, the live stream in `sse`, `--pretty` lines
//! in `format`, and the one signal call std lacks in `signal`.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod backup;
mod client;
mod commands;
mod format;
mod idempotent;
mod locks;
mod search;
mod serve;
mod signal;
mod sse;
mod supervise;
mod thread;
mod turns;
mod work;

use client::{Client, exit};

const DEFAULT_URL: &str = "http://localhost:4242";

const MAIN_HELP: &str = "\
Configuration:
  WORKSHOP_URL   hub address: http://HOST:PORT, https://HOST (behind a TLS proxy) or
                 HOST:PORT (default http://localhost:4242); --url overrides
  AGENT_ID       who you are, e.g. harvester.alice; --as overrides

Exit status:
  0  success
  1  server error (5xx), unexpected reply, or local I/O failure
  2  usage error, or the server rejected the request as malformed (400, 405, 413)
  3  not found (404)
  4  conflict (409: e.g. already claimed) or forbidden (403: not yours)
  5  server unreachable
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
struct Cli {
    /// Hub URL [env: WORKSHOP_URL] [default: http://localhost:4242]
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Agent id to act as [env: AGENT_ID]
    #[arg(long = "as", global = true, value_name = "AGENT")]
    agent: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        after_help = "A task is open, claimed or done; abandoning returns it to open.\n\n\
        Example:\n  ID=$(workshop task create 'resize images') && workshop task claim \"$ID\" \
        && workshop task done \"$ID\" --result '{\"resized\":12}'"
    )]
    Task(TaskCommand),
    /// Upload files; prints one `sha256:<hex>` per file, in argument order
    #[command(after_help = "Examples:\n  workshop upload report.pdf data.csv\n  \
        H=$(workshop upload report.pdf) && workshop task done \"$ID\" --result \"{\\\"pdf\\\":\\\"$H\\\"}\"")]
    Upload {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Fetch a file by hash, verifying the bytes hash to its name
    #[command(
        after_help = "Writes to stdout unless -o is given; with -o the file appears only \
        once verified.\n\nExample:\n  workshop download sha256:9f86d0... -o report.pdf"
    )]
    Download {
        /// `sha256:<64 hex>` (the `sha256:` may be left off)
        hash: String,
        /// Output file (`-` for stdout)
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Announce presence (agents are listed by `who` for 60 s after)
    #[command(after_help = "Example:\n  workshop heartbeat --channels jobs,general \
        --meta '{\"model\":\"small\"}'")]
    Heartbeat {
        /// Channels you listen on, comma-separated
        #[arg(long, value_delimiter = ',', value_name = "CH,...")]
        channels: Vec<String>,
        /// Any JSON describing you
        #[arg(long, value_name = "JSON")]
        meta: Option<String>,
    },
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
        Example:\n  LAST=$(workshop wait jobs --since \"$LAST\" --timeout 60 | tail -1 | jq -r .id)"
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
    Thread {
        /// Any message of the thread
        id: String,
        /// One readable line per message instead of JSON
        #[arg(long)]
        pretty: bool,
    },
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
    Unlock { name: String },
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
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct PubArgs {
    /// Channel name
    ch: String,
    /// Message type, dot-namespaced (e.g. msg.text)
    #[arg(value_name = "TYPE")]
    kind: String,
    /// JSON body, or `-` to read it from stdin (default {})
    body: Option<String>,
    /// Upload a file and attach its hash (repeatable); its name goes into the body's
    /// `file_names` (when the body is an object)
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Id of the message this replies to
    #[arg(long, value_name = "ID")]
    reply_to: Option<String>,
    /// Address it to AGENT (repeatable); it lands in their inbox
    #[arg(long = "to", value_name = "AGENT")]
    to: Vec<String>,
}

#[derive(Args, Debug)]
struct TailArgs {
    /// Channel (all channels when omitted)
    ch: Option<String>,
    /// Only message types starting with this prefix
    #[arg(long = "type", value_name = "PREFIX")]
    kind: Option<String>,
    /// Replay everything after this message id first
    #[arg(long, value_name = "ID")]
    since: Option<String>,
    /// Print the last N stored messages first (like `tail -n N -f`)
    #[arg(short, value_name = "N", conflicts_with = "since")]
    n: Option<u32>,
    /// Compact human format: time from · ch · type · body
    #[arg(long)]
    pretty: bool,
}

#[derive(Args, Debug)]
struct HistoryArgs {
    /// Channel (all channels when omitted)
    ch: Option<String>,
    /// How many messages (server default 200 for a channel, 100 for all; at most 1000)
    #[arg(short, value_name = "N")]
    n: Option<u32>,
    /// The oldest N messages after this id (page forward)
    #[arg(long, value_name = "ID")]
    since: Option<String>,
    /// The newest N messages before this id (page backward)
    #[arg(long, value_name = "ID")]
    before: Option<String>,
    /// Only message types starting with this prefix
    #[arg(long = "type", value_name = "PREFIX")]
    kind: Option<String>,
    /// Compact human format
    #[arg(long)]
    pretty: bool,
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    /// Create a task; prints its id
    #[command(
        after_help = "Example:\n  workshop task create 'resize images' --context \
        '{\"dir\":\"/data/in\"}' --for resizer.bob --ch jobs"
    )]
    Create {
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
    },
    /// List tasks, newest first, one JSON object per line (--pretty: an aligned table)
    #[command(
        after_help = "Examples:\n  workshop task list --status open --pretty\n  \
        workshop task list --mine"
    )]
    List {
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
    },
    /// Print one task as one line of JSON
    #[command(after_help = "Example:\n  workshop task show \"$ID\" | jq .status\n  \
        workshop task show \"$ID\" --pretty")]
    Show {
        id: String,
        /// Indented JSON, for reading
        #[arg(long)]
        pretty: bool,
    },
    /// Claim an open task (exit 4 when someone else has it)
    #[command(
        after_help = "Example:\n  workshop task claim 01J4XYZ... --lease 300 || echo 'taken'"
    )]
    Claim {
        id: String,
        /// Expire the claim after SECS unless touched (default: never)
        #[arg(long, value_name = "SECS")]
        lease: Option<f64>,
    },
    /// Claim the best task for you (priority, then age); prints it (exit 3 when none)
    #[command(
        after_help = "Example:\n  TASK=$(workshop task next --ch jobs --lease 300 --wait 30) \
        && echo \"$TASK\" | jq -r .title"
    )]
    Next {
        /// Only from this channel
        #[arg(long, value_name = "CH")]
        ch: Option<String>,
        /// Expire the claim after SECS unless touched (default: never)
        #[arg(long, value_name = "SECS")]
        lease: Option<f64>,
        /// Wait up to SECS (at most 60) for one to appear
        #[arg(long, value_name = "SECS")]
        wait: Option<f64>,
    },
    /// Extend the lease of your claimed task
    #[command(after_help = "Example:\n  workshop task touch 01J4XYZ... --lease 300")]
    Touch {
        id: String,
        /// New lease from now (default: the claim's)
        #[arg(long, value_name = "SECS")]
        lease: Option<f64>,
    },
    /// Post progress: any JSON object of fields, and/or a --note
    #[command(
        after_help = "Examples:\n  workshop task update 01J4XYZ... '{\"progress\":0.5}'\n  \
        workshop task update 01J4XYZ... --note 'halfway there'"
    )]
    Update {
        id: String,
        /// JSON object of fields (`-` reads stdin)
        #[arg(value_name = "JSON")]
        fields: Option<String>,
        /// A free-text note (sent as the `note` field)
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Mark your claimed task done, with a result and files
    #[command(
        after_help = "Example:\n  workshop task done 01J4XYZ... --result '{\"rows\":42}' \
        --file out.csv"
    )]
    Done {
        id: String,
        /// JSON result (`-` reads stdin)
        #[arg(long, value_name = "JSON")]
        result: Option<String>,
        /// Upload a file and attach its hash (repeatable); its name goes into the result's
        /// `file_names` (when the result is an object)
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
    },
    /// Give your claimed task back to the pool
    #[command(after_help = "Example:\n  workshop task abandon 01J4XYZ... --reason 'out of disk'")]
    Abandon {
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Not claimable again for this many seconds
        #[arg(long, value_name = "SECS")]
        delay: Option<f64>,
    },
    /// Put a failed task back to open, its attempts reset
    #[command(
        after_help = "Example:\n  workshop task list --status failed && workshop task retry 01J4XYZ..."
    )]
    Retry { id: String },
    /// Ask whoever runs a task to stop (`workshop work` stops it and abandons it)
    #[command(after_help = "Example:\n  workshop task interrupt 01J4XYZ... --reason 'wrong input'")]
    Interrupt {
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version print to stdout and exit 0; usage errors exit 2 (exit::USAGE).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    let command = match cli.command {
        None => return serve::run(&serve::ServeArgs::default()),
        Some(Command::Serve(args)) => return serve::run(&args),
        Some(Command::Completions { shell }) => return completions(shell),
        Some(Command::Backup(a)) => return backup::run(backup::Direction::Backup, a),
        Some(Command::Restore(a)) => return backup::run(backup::Direction::Restore, a),
        Some(command) => command,
    };
    let url = cli
        .url
        .or_else(|| std::env::var("WORKSHOP_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let agent = cli.agent.or_else(|| std::env::var("AGENT_ID").ok());
    let result = client::hub_url(&url).and_then(|url| run(&Client::new(&url, agent), command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workshop: {e}");
            e.exit_code()
        }
    }
}

fn run(client: &Client, command: Command) -> client::Result<()> {
    use commands as c;
    match command {
        Command::Serve(_)
        | Command::Completions { .. }
        | Command::Backup(_)
        | Command::Restore(_) => {
            unreachable!("handled before a client is built")
        }
        Command::Pub(a) => c::publish(client, &a.ch, &a.kind, a.body, &a.files, a.reply_to, a.to),
        Command::Tail(a) => c::tail(
            client,
            c::TailQuery {
                ch: a.ch,
                kind: a.kind,
                since: a.since,
                last: a.n,
            },
            a.pretty,
        ),
        Command::History(a) => c::history(
            client,
            c::HistoryQuery {
                ch: a.ch,
                n: a.n,
                since: a.since,
                before: a.before,
                kind: a.kind,
            },
            a.pretty,
        ),
        Command::Task(t) => match t {
            TaskCommand::Create {
                title,
                context,
                for_agent,
                ch,
                priority,
                delay,
                max_attempts,
            } => c::task_create(
                client,
                c::NewTask {
                    title,
                    context,
                    for_agent,
                    ch,
                    priority,
                    delay,
                    max_attempts,
                },
            ),
            TaskCommand::List {
                status,
                for_agent,
                mine,
                ch,
                n,
                pretty,
            } => {
                let for_agent = if mine {
                    Some(client.agent()?.to_string())
                } else {
                    for_agent
                };
                c::task_list(client, status, for_agent, ch, n, pretty)
            }
            TaskCommand::Show { id, pretty } => c::task_show(client, &id, pretty),
            TaskCommand::Claim { id, lease } => c::task_claim(client, &id, lease),
            TaskCommand::Next { ch, lease, wait } => c::task_next(client, ch, lease, wait),
            TaskCommand::Touch { id, lease } => c::task_touch(client, &id, lease),
            TaskCommand::Retry { id } => c::task_retry(client, &id),
            TaskCommand::Update { id, fields, note } => c::task_update(client, &id, fields, note),
            TaskCommand::Done { id, result, files } => c::task_done(client, &id, result, &files),
            TaskCommand::Abandon { id, reason, delay } => {
                c::task_abandon(client, &id, reason, delay)
            }
            TaskCommand::Interrupt { id, reason } => c::task_interrupt(client, &id, reason),
        },
        Command::Upload { paths } => c::upload(client, &paths),
        Command::Download { hash, output } => c::download(client, &hash, output),
        Command::Heartbeat { channels, meta } => c::heartbeat(client, channels, meta),
        Command::Who { pretty } => c::who(client, pretty),
        Command::Status => c::status(client),
        Command::Channels => c::channels(client),
        Command::Thread { id, pretty } => thread::thread(client, &id, pretty),
        Command::Search(a) => search::search(client, a),
        Command::Lock(a) => locks::lock(client, a),
        Command::Unlock { name } => locks::unlock(client, &name),
        Command::Locks { prefix, pretty } => locks::list(client, prefix, pretty),
        Command::Work(a) => work::run(client, a),
        Command::Wait(a) => turns::wait(client, a),
        Command::Inbox {
            wait,
            mark_read,
            all,
        } => turns::inbox(client, wait, mark_read, all),
    }
}

/// Writes the completion script for `shell` to stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "workshop",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}

/// Longest duration any SECS option takes (about 31 years): `Instant::now() + d` must not
/// overflow, and nothing here waits longer than that on purpose.
const MAX_SECS: f64 = 1e9;

/// The clap parser of every SECS option: a finite, non-negative number of seconds, at most
/// `MAX_SECS`.
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a number of seconds: {text:?}"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "not a number of seconds (finite, 0 or more): {text:?}"
        ));
    }
    if secs > MAX_SECS {
        return Err(format!("{text} seconds is too long (at most {MAX_SECS:e})"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Shortest `work --poll`: each poll is a claim request, and `--poll 0` flooded the hub.
const MIN_POLL_SECS: f64 = 0.5;

/// `work --poll`: `parse_secs`, and at least `MIN_POLL_SECS`.
fn parse_poll(text: &str) -> Result<Duration, String> {
    let poll = parse_secs(text)?;
    if poll.as_secs_f64() < MIN_POLL_SECS {
        return Err(format!(
            "at least {MIN_POLL_SECS} s between polls (the live stream is the fast path)"
        ));
    }
    Ok(poll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_finite_non_negative_and_bounded() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        for bad in ["-1", "NaN", "inf", "1e19", "", "ten"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        assert!(parse_poll("0").is_err());
        assert!(parse_poll("0.4").is_err());
        assert_eq!(parse_poll("0.5"), Ok(Duration::from_millis(500)));
    }
}
