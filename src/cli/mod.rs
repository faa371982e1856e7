//! Command line: `workshop` / `workshop serve` runs the server; every other subcommand is the
//! agent client. Argument definitions live in `args` (each command's own with the command);
//! messages in `messages` and `tail`, tasks in `tasks`, files in `files`, presence and counters
//! in `presence`, the worker loop in `work`, HTTP and exit codes in `client`, how long it
//! waits on a hub that holds it back in `limits`, the live stream in `sse`, stdout in `output`, `--pretty` lines in `format`, and the one signal call std
//! lacks in `signal`.
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

mod args;
mod backup;
mod client;
mod files;
mod format;
mod idempotent;
mod limits;
mod lines;
mod locks;
mod messages;
mod output;
mod presence;
mod request;
mod search;
mod serve;
mod signal;
mod sse;
mod supervise;
mod tail;
mod tasks;
mod thread;
mod turns;
mod work;

use args::{Cli, CliCommand};
use client::{Client, exit};

const DEFAULT_URL: &str = "http://localhost:4242";

pub fn main() -> ExitCode {
    // `work` runs each command under this binary as its guard: not a command, so not clap's.
    if let Some(code) = work::run_guard() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and --version print to stdout and exit 0; usage errors exit 2 (exit::USAGE).
        Err(e) => return usage_exit(&e),
    };
    if let Some((local, hint)) = hub_options_on_a_local_command(&cli) {
        let message = format!(
            "--url and --as are for commands that talk to a hub; {local} does not ({hint})"
        );
        return usage_exit(
            &Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message),
        );
    }
    match cli.command {
        None => serve::run(&serve::ServeArgs::default()),
        Some(CliCommand::Serve(args)) => serve::run(&args),
        Some(CliCommand::Completions { shell }) => completions(shell),
        Some(CliCommand::Backup(a)) => backup::run(backup::Direction::Backup, a),
        Some(CliCommand::Restore(a)) => backup::run(backup::Direction::Restore, a),
        Some(command) => exit_status(connect(cli.url, cli.agent).and_then(|c| run(&c, command))),
    }
}

/// The command's name, and what it takes instead, if it runs on this machine's files
/// (serving, backing up, restoring) and was given `--url` or `--as` anyway, before or after
/// its name.
fn hub_options_on_a_local_command(cli: &Cli) -> Option<(&'static str, &'static str)> {
    const FILES: &str = "it works on --db and --blobs";
    let (name, hint, own) = match &cli.command {
        None => ("serve", "the server listens on --host and --port", None),
        Some(CliCommand::Serve(a)) => (
            "serve",
            "the server listens on --host and --port",
            Some(&a.no_hub),
        ),
        Some(CliCommand::Backup(a)) => ("backup", FILES, Some(&a.no_hub)),
        Some(CliCommand::Restore(a)) => ("restore", FILES, Some(&a.no_hub)),
        Some(_) => return None,
    };
    let global = cli.url.is_some() || cli.agent.is_some();
    (global || own.is_some_and(serve::NoHub::given)).then_some((name, hint))
}

/// Prints clap's message (help, version or a usage error) and exits with clap's status.
fn usage_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE))
}

/// The client for `--url` (or `WORKSHOP_URL`, or the default) acting as `--as` (or
/// `AGENT_ID`).
fn connect(url: Option<String>, agent: Option<String>) -> client::Result<Client> {
    let url = url
        .or_else(|| std::env::var("WORKSHOP_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let agent = agent.or_else(|| std::env::var("AGENT_ID").ok());
    let limits = limits::Limits::from_env().map_err(client::CliError::usage)?;
    Ok(Client::new(&client::hub_url(&url)?, agent, limits))
}

/// Success, or the error on stderr and its exit status.
fn exit_status(result: client::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

/// The error on stderr, and the exit status it maps to.
fn report(e: client::CliError) -> ExitCode {
    eprintln!("workshop: {e}");
    e.exit_code()
}

/// Runs one client command: each gets its clap arguments as they were parsed.
fn run(client: &Client, command: CliCommand) -> client::Result<()> {
    match command {
        CliCommand::Pub(args) => messages::publish(client, args),
        CliCommand::Tail(args) => tail::tail(client, args),
        CliCommand::History(args) => messages::history(client, args),
        CliCommand::Task(command) => tasks::run(client, command),
        CliCommand::Upload { paths } => files::upload(client, &paths),
        CliCommand::Download(args) => files::download(client, args),
        CliCommand::Heartbeat(args) => presence::heartbeat(client, args),
        CliCommand::Who { pretty } => presence::who(client, pretty),
        CliCommand::Status => presence::status(client),
        CliCommand::Channels => presence::channels(client),
        CliCommand::Thread(args) => thread::thread(client, args),
        CliCommand::Search(args) => search::search(client, args),
        CliCommand::Lock(args) => locks::lock(client, args),
        CliCommand::Unlock { name } => locks::unlock(client, &name),
        CliCommand::Locks { prefix, pretty } => locks::list(client, prefix, pretty),
        CliCommand::Work(args) => work::run(client, args),
        CliCommand::Wait(args) => turns::wait(client, args),
        CliCommand::Inbox {
            wait,
            mark_read,
            all,
        } => turns::inbox(client, wait, mark_read, all),
        CliCommand::Serve(_)
        | CliCommand::Completions { .. }
        | CliCommand::Backup(_)
        | CliCommand::Restore(_) => unreachable!("handled before a client is built"),
    }
}

/// Writes the completion script for `shell` to stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    // Generated whole, then written: clap_complete panics on a failed write, such as the
    // closed pipe of `workshop completions bash | head`.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "workshop", &mut script);
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
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
    check_secs(secs, text).map(Duration::from_secs_f64)
}

/// `parse_secs`'s bounds: finite, 0 or more, at most `MAX_SECS`.
fn check_secs(secs: f64, text: &str) -> Result<f64, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "not a number of seconds (finite, 0 or more): {text:?}"
        ));
    }
    if secs > MAX_SECS {
        return Err(format!("{text} seconds is too long (at most {MAX_SECS:e})"));
    }
    Ok(secs)
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

    /// Every argument and option `--help` shows says what it is (`task create`'s TITLE said
    /// nothing).
    #[test]
    fn every_shown_argument_has_help() {
        fn undocumented(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !arg.is_hide_set() && !builtin && arg.get_help().is_none() {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                undocumented(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "workshop", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:?}");
    }
}
