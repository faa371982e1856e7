//! The guard: the parent of every command `work` runs, there so that the command and its own
//! children stop when the worker dies, even by SIGKILL. Left running, they went on with a task
//! that another worker takes once the lease runs out: two runs of one task at once.
//!
//! The worker starts its own binary again (`/proc/self/exe __work-guard WORKER GRACE_MS --
//! COMMAND...`) as the leader of a new process group, with the command's pipes and
//! environment. The guard starts COMMAND in that group, waits for it, and ends the way it
//! ended: its exit code, or the signal that killed it. What the worker does to the group
//! reaches the command as before: SIGTERM to stop it (the guard holds it back and waits on),
//! SIGKILL after the grace (which ends the guard too).
//!
//! The kernel sends the guard SIGHUP when the worker thread that started it ends
//! (PR_SET_PDEATHSIG), which it does only once the command has been reaped, or when the
//! worker dies, however it dies; the guard also checks that its parent is still the worker.
//! Without its worker, it stops the group the way the worker would have: SIGTERM, then
//! SIGKILL once the grace is over or the command has ended (for what the command left
//! behind), which ends the guard as well.
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt, parent_id};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use super::super::signal::{SIGKILL, SIGTERM, signal_group};
use super::super::supervise::TICK;
use crate::sys;

/// The guard's first argument: no command anyone types (`workshop --help` does not list it).
const ARG: &str = "__work-guard";

/// What the guard holds back to take when it is ready: the worker's death (SIGHUP), the
/// command's end (SIGCHLD), and the signals sent to the whole group, which are for the command.
const HELD: [libc::c_int; 4] = [libc::SIGHUP, libc::SIGCHLD, SIGTERM, libc::SIGINT];

/// How often the guard looks at its command and its parent when no signal comes.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The command line that runs `command` under a guard: this binary (through /proc, so a
/// binary replaced on disk since the worker started still runs as itself), told which process
/// is the worker and how long the worker gives a command between SIGTERM and SIGKILL. The
/// caller puts it in a process group of its own.
pub fn command(grace: Duration, command: &[String]) -> Command {
    let mut guard = Command::new("/proc/self/exe");
    guard
        .arg0("workshop")
        .arg(ARG)
        .arg(std::process::id().to_string())
        .arg(grace.as_millis().to_string())
        .arg("--")
        .args(command);
    guard
}

/// Runs this process as a guard, if it was started as one; `None` if it was not.
pub fn run_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != ARG {
        return None;
    }
    let args: Vec<OsString> = args.collect();
    Some(match parse(&args) {
        Some((worker, grace, command)) => guard(worker, grace, command),
        None => {
            say(format_args!(
                "workshop: {ARG} is for `workshop work` to start"
            ));
            ExitCode::from(2)
        }
    })
}

/// The worker's pid, the grace and COMMAND; `None` unless all are there and this process
/// leads a group of its own (signalling "its group" must not reach anyone else).
fn parse(args: &[OsString]) -> Option<(u32, Duration, &[OsString])> {
    let [worker, grace, dashes, command @ ..] = args else {
        return None;
    };
    let worker = worker.to_str()?.parse().ok()?;
    let grace = Duration::from_millis(grace.to_str()?.parse().ok()?);
    let fine = dashes == "--" && !command.is_empty() && sys::leads_own_group();
    fine.then_some((worker, grace, command))
}

/// Starts COMMAND and waits for it, stopping its group if the worker goes first.
fn guard(worker: u32, grace: Duration, command: &[OsString]) -> ExitCode {
    let set_up = sys::block_signals(&HELD).and_then(|()| sys::signal_on_parent_death(libc::SIGHUP));
    if let Err(e) = set_up {
        say(format_args!("workshop work: cannot guard the command: {e}"));
        return ExitCode::from(126);
    }
    if parent_id() != worker {
        return ExitCode::FAILURE; // the worker died before the guard was set up
    }
    match Command::new(&command[0]).args(&command[1..]).spawn() {
        Ok(mut child) => watch(&mut child, worker, grace),
        Err(e) => cannot_start(&command[0], &e),
    }
}

/// Waits for the command to end, and passes its status on; stops it if the worker dies.
fn watch(child: &mut Child, worker: u32, grace: Duration) -> ExitCode {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return pass_on(status),
            Ok(None) => {}
            Err(e) => {
                say(format_args!("workshop work: waiting for the command: {e}"));
                return orphaned(child, grace);
            }
        }
        // SIGTERM and SIGINT are the worker stopping the command: wait on for its status.
        let taken = sys::wait_signal(&HELD, LOOK_EVERY);
        if taken == Some(libc::SIGHUP) || parent_id() != worker {
            return orphaned(child, grace);
        }
    }
}

/// The worker is gone: SIGTERM to the group, and SIGKILL once the command has ended or the
/// grace is over, which ends whatever is left of it, the guard included. Nothing is written:
/// no one reads the pipes any more.
fn orphaned(child: &mut Child, grace: Duration) -> ExitCode {
    let group = std::process::id();
    let _ = signal_group(group, SIGTERM);
    let kill_at = Instant::now() + grace;
    while Instant::now() < kill_at && matches!(child.try_wait(), Ok(None)) {
        thread::sleep(TICK);
    }
    let _ = signal_group(group, SIGKILL);
    ExitCode::from(137) // not reached: the SIGKILL ends the guard too
}

/// Ends the way the command ended: with its exit code, or killed by its signal.
fn pass_on(status: ExitStatus) -> ExitCode {
    if let Some(signal) = status.signal() {
        sys::die_by(signal);
        return ExitCode::from(128u8.saturating_add(u8::try_from(signal).unwrap_or(0)));
    }
    ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    )
}

/// A command that could not be started ends as a shell's would: 127 when it is not there,
/// else 126, with the reason on stderr (where the worker reads it).
fn cannot_start(program: &OsString, e: &io::Error) -> ExitCode {
    say(format_args!("workshop work: cannot start {program:?}: {e}"));
    ExitCode::from(if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// A line on stderr, if anyone still reads it (`eprintln!` would panic if not).
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(io::stderr(), "{line}");
}
