//! `workshop lock`, `unlock` and `locks`: advisory locks. `lock NAME -- CMD` holds the lock
//! while CMD runs: it renews it every third of its TTL, and releases it when CMD exits.
use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Value, json};

use super::client::{CliError, Client, Result};
use super::format::lock_table;
use super::output::emit;
use super::request::set_opt;
use super::signal::signal_process;
use super::supervise;

/// How long CMD gets between SIGTERM and SIGKILL once the lock is lost or we are stopped.
const GRACE: Duration = Duration::from_secs(5);

/// `--ttl`: what the hub takes, checked here so that the error names the flag, not the
/// hub's `ttl_s`.
fn parse_ttl(text: &str) -> std::result::Result<Duration, String> {
    let ttl = super::parse_secs(text)?;
    match ttl.as_secs_f64() {
        1.0..=86400.0 => Ok(ttl),
        _ => Err(format!("from 1 to 86400 seconds (24 h), got {text:?}")),
    }
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// What to lock: any 1-256 printable characters, e.g. a path
    pub name: String,
    /// Seconds until the lock runs out unless renewed (1 to 86400)
    #[arg(long, default_value = "600", value_name = "SECS", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// What you are doing, for whoever finds it taken
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Channel for the lock.* announcements (server default: locks)
    #[arg(long, value_name = "CH")]
    pub ch: Option<String>,
    /// Run this while holding the lock, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl LockArgs {
    fn body(&self, from: &str) -> Value {
        let mut body = json!({"from": from, "name": self.name, "ttl_s": self.ttl.as_secs_f64()});
        set_opt(&mut body, "note", self.note.as_ref());
        set_opt(&mut body, "ch", self.ch.as_ref());
        body
    }
}

/// How the lock was lost while CMD ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Someone else has it (a renewal got 403/409), or no renewal succeeded for a whole TTL
    /// (it may have lapsed and been taken): it is not ours to release.
    Gone,
    /// A renewal found it lapsed or released and took it afresh: it was unprotected for a
    /// while, so CMD is stopped all the same; it is ours again, to release.
    Retaken,
}

/// Why CMD was stopped.
enum Stop {
    Lost(Lost),
    Signal,
}

/// `workshop lock NAME [-- CMD...]`
pub fn lock(client: &Client, args: LockArgs) -> Result<()> {
    let body = args.body(client.agent()?);
    let reply = acquire(client, &body)?;
    if args.command.is_empty() {
        return emit(&reply.to_string());
    }
    let held = hold_while(client, &args, &body);
    let (status, lost) = held.inspect_err(|_| release_or_say(client, &args.name))?;
    if lost != Some(Lost::Gone) {
        release_or_say(client, &args.name);
    }
    if lost.is_some() {
        let name = &args.name;
        let why = format!("lost the lock {name:?}; the command was stopped");
        return Err(CliError::http(409, why));
    }
    // CMD's own status is ours, so `workshop lock x -- make` composes like `make`.
    std::process::exit(exit_code(status))
}

/// Releases the lock after CMD; a failure is only told (the lock runs out with its TTL).
fn release_or_say(client: &Client, name: &str) {
    if let Err(e) = release(client, name) {
        eprintln!("workshop lock: releasing {name:?}: {e}");
    }
}

/// `workshop unlock NAME`
pub fn unlock(client: &Client, name: &str) -> Result<()> {
    let reply = release(client, name)?;
    emit(&reply.to_string())
}

/// `workshop locks [--prefix P]`
pub fn list(client: &Client, prefix: Option<String>, pretty: bool) -> Result<()> {
    let query: Vec<(&str, String)> = prefix.into_iter().map(|p| ("prefix", p)).collect();
    let locks = client.get_json("/locks", &query)?;
    let locks = locks
        .as_array()
        .ok_or_else(|| CliError::failure("server sent a lock list that is not an array"))?;
    match pretty {
        true => lock_table(locks).iter().try_for_each(|l| emit(l)),
        false => locks.iter().try_for_each(|lock| emit(&lock.to_string())),
    }
}

/// Takes (or renews) the lock; someone else holding it is a 409, exit 4.
fn acquire(client: &Client, body: &Value) -> Result<Value> {
    client.post_json("/locks/acquire", body)
}

fn release(client: &Client, name: &str) -> Result<Value> {
    let body = json!({"from": client.agent()?, "name": name});
    client.post_json("/locks/release", &body)
}

/// Runs CMD, renewing the lock until it exits. If the lock is lost or we get SIGINT/SIGTERM,
/// CMD is stopped (SIGTERM, then SIGKILL after `GRACE`).
///
/// Like flock(1), CMD runs in our process group, not one of its own: typed at a terminal it
/// is then in the foreground with us, so it may read the terminal (a prompt) and gets the
/// terminal's Ctrl-C itself. In a group of its own it was a background job there, stopped by
/// SIGTTIN at its first read while we held the lock forever. The cost: our SIGTERM reaches
/// CMD, not the processes CMD started (CMD is expected to pass it on, as a shell's `exec` or
/// trap does).
fn hold_while(
    client: &Client,
    args: &LockArgs,
    body: &Value,
) -> Result<(ExitStatus, Option<Lost>)> {
    let stop = stop_on_signals()?;
    let mut child = start(args)?;
    let (lost_tx, lost_rx) = bounded(1);
    let renewing = renew(client.clone(), body.clone(), args.ttl, lost_tx);
    let ended = wait_or_stop(&mut child, &lost_rx, &stop);
    drop(renewing);
    let (status, stopped_by) = ended?;
    let lost = match stopped_by {
        Some(Stop::Lost(lost)) => Some(lost),
        // Stopped by a signal, the lock may have been lost in the meantime all the same.
        _ => lost_rx.try_recv().ok(),
    };
    Ok((status, lost))
}

/// A flag that SIGINT and SIGTERM set, from now on.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| CliError::failure(format!("cannot handle signals: {e}")))?;
    }
    Ok(stop)
}

/// Starts CMD, with the lock's name in `WORKSHOP_LOCK`.
fn start(args: &LockArgs) -> Result<Child> {
    let command = &args.command;
    Command::new(&command[0])
        .args(&command[1..])
        .env("WORKSHOP_LOCK", &args.name)
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot run {:?}: {e}", command[0])))
}

/// Waits for CMD, stopping it when the lock is lost or a signal came.
fn wait_or_stop(
    child: &mut Child,
    lost: &Receiver<Lost>,
    stop: &AtomicBool,
) -> std::io::Result<(ExitStatus, Option<Stop>)> {
    let pid = child.id();
    supervise::wait_or_stop(
        "workshop lock",
        || child.try_wait(),
        |sig| signal_process(pid, sig),
        GRACE,
        |tick| match lost.recv_timeout(tick) {
            Ok(lost) => Some(Stop::Lost(lost)),
            Err(_) if stop.load(Ordering::SeqCst) => Some(Stop::Signal),
            Err(_) => None,
        },
    )
}

/// Renews the lock every third of its TTL until the returned sender is dropped, and reports
/// on `lost` (then stops) when it is no longer safely ours: someone else has it (403/409), no
/// renewal succeeded for a whole TTL, or a renewal had to take it afresh.
fn renew(client: Client, body: Value, ttl: Duration, lost: Sender<Lost>) -> Sender<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let renewer = Renewer {
        client,
        body,
        ttl,
        lost,
    };
    thread::spawn(move || renewer.run(&done_rx));
    done_tx
}

/// The thread that keeps `lock NAME -- CMD`'s lock.
struct Renewer {
    client: Client,
    body: Value,
    ttl: Duration,
    lost: Sender<Lost>,
}

impl Renewer {
    fn run(&self, done: &Receiver<()>) {
        // The lock runs out `ttl` after the server granted it, which is after we asked.
        let mut safe_until = Instant::now() + self.ttl;
        while self.wait_next(done, safe_until) {
            match self.renew_once(safe_until) {
                ControlFlow::Continue(until) => safe_until = until,
                ControlFlow::Break(lost) => return self.report_lost(lost),
            }
        }
    }

    /// Waits until the next renewal is due: false once CMD has ended (the sender dropped).
    fn wait_next(&self, done: &Receiver<()>, safe_until: Instant) -> bool {
        let until_unsafe = safe_until.saturating_duration_since(Instant::now());
        let wait = (self.ttl / 3).min(until_unsafe);
        matches!(done.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
    }

    /// One renewal: `Continue` with how long the lock is now safely ours (unchanged after a
    /// failure that may pass), `Break` with how it was lost and why.
    fn renew_once(&self, safe_until: Instant) -> ControlFlow<(Lost, String), Instant> {
        if Instant::now() >= safe_until {
            let why = "no renewal succeeded for --ttl";
            return ControlFlow::Break((Lost::Gone, why.into()));
        }
        let asked = Instant::now();
        match self.client.post_json("/locks/acquire", &self.body) {
            Ok(reply) if reply.get("renewed") == Some(&Value::Bool(false)) => {
                let why = "it had lapsed or been released";
                ControlFlow::Break((Lost::Retaken, why.into()))
            }
            Ok(_) => ControlFlow::Continue(asked + self.ttl),
            Err(e) if matches!(e.status, 403 | 409) => {
                ControlFlow::Break((Lost::Gone, e.to_string()))
            }
            Err(e) => {
                eprintln!("workshop lock: renewing: {e}");
                ControlFlow::Continue(safe_until)
            }
        }
    }

    fn report_lost(&self, (lost, why): (Lost, String)) {
        eprintln!("workshop lock: lost the lock: {why}");
        let _ = self.lost.try_send(lost);
    }
}

/// A shell's view of how CMD ended: its code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
