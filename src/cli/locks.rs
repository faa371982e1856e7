//! `workshop lock`, `unlock` and `locks`: advisory locks. `lock NAME -- CMD` holds the lock
//! while CMD runs: it renews it every third of its TTL, and releases it when CMD exits.
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use serde_json::{Value, json};

use super::client::{CliError, Client, Result};
use super::format::pretty_lock;
use super::output::emit;
use super::signal::signal_process;
use super::supervise;

/// How long CMD gets between SIGTERM and SIGKILL once the lock is lost or we are stopped.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct LockArgs {
    /// What to lock: any 1-256 printable characters, e.g. a path
    pub name: String,
    /// Seconds until the lock runs out unless renewed (1 to 86400)
    #[arg(long, default_value = "600", value_name = "SECS", value_parser = super::parse_secs)]
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
        if let Some(note) = &self.note {
            body["note"] = json!(note);
        }
        if let Some(ch) = &self.ch {
            body["ch"] = json!(ch);
        }
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
    let (status, lost) = match hold_while(client, &args, &body) {
        Ok(held) => held,
        Err(e) => {
            if let Err(r) = release(client, &args.name) {
                eprintln!("workshop lock: releasing {:?}: {r}", args.name);
            }
            return Err(e);
        }
    };
    if lost != Some(Lost::Gone)
        && let Err(e) = release(client, &args.name)
    {
        eprintln!("workshop lock: releasing {:?}: {e}", args.name);
    }
    if lost.is_some() {
        return Err(CliError::http(
            409,
            format!("lost the lock {:?}; the command was stopped", args.name),
        ));
    }
    // CMD's own status is ours, so `workshop lock x -- make` composes like `make`.
    std::process::exit(exit_code(status))
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
    for lock in locks {
        emit(&if pretty {
            pretty_lock(lock)
        } else {
            lock.to_string()
        })?;
    }
    Ok(())
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
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| CliError::failure(format!("cannot handle signals: {e}")))?;
    }
    let command = &args.command;
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .env("WORKSHOP_LOCK", &args.name)
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot run {:?}: {e}", command[0])))?;
    let (lost_tx, lost_rx) = bounded(1);
    let renewing = renew(client.clone(), body.clone(), args.ttl, lost_tx);
    let pid = child.id();
    let ended = supervise::wait_or_stop(
        "workshop lock",
        || child.try_wait(),
        |sig| signal_process(pid, sig),
        GRACE,
        |tick| match lost_rx.recv_timeout(tick) {
            Ok(lost) => Some(Stop::Lost(lost)),
            Err(_) if stop.load(Ordering::SeqCst) => Some(Stop::Signal),
            Err(_) => None,
        },
    );
    drop(renewing);
    let (status, stopped_by) = ended?;
    let lost = match stopped_by {
        Some(Stop::Lost(lost)) => Some(lost),
        // Stopped by a signal, the lock may have been lost in the meantime all the same.
        _ => lost_rx.try_recv().ok(),
    };
    Ok((status, lost))
}

/// Renews the lock every third of its TTL until the returned sender is dropped, and reports
/// on `lost` (then stops) when it is no longer safely ours: someone else has it (403/409), no
/// renewal succeeded for a whole TTL, or a renewal had to take it afresh.
fn renew(client: Client, body: Value, ttl: Duration, lost: Sender<Lost>) -> Sender<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let every = ttl / 3;
    thread::spawn(move || {
        // The lock runs out `ttl` after the server granted it, which is after we asked.
        let mut safe_until = Instant::now() + ttl;
        loop {
            let wait = every.min(safe_until.saturating_duration_since(Instant::now()));
            if !matches!(done_rx.recv_timeout(wait), Err(RecvTimeoutError::Timeout)) {
                return;
            }
            if Instant::now() >= safe_until {
                eprintln!("workshop lock: lost the lock: no renewal succeeded for --ttl");
                let _ = lost.try_send(Lost::Gone);
                return;
            }
            let asked = Instant::now();
            match client.post_json("/locks/acquire", &body) {
                Ok(reply) if reply.get("renewed") == Some(&Value::Bool(false)) => {
                    eprintln!("workshop lock: lost the lock: it had lapsed or been released");
                    let _ = lost.try_send(Lost::Retaken);
                    return;
                }
                Ok(_) => safe_until = asked + ttl,
                Err(e) if matches!(e.status, 403 | 409) => {
                    eprintln!("workshop lock: lost the lock: {e}");
                    let _ = lost.try_send(Lost::Gone);
                    return;
                }
                Err(e) => eprintln!("workshop lock: renewing: {e}"),
            }
        }
    });
    done_tx
}

/// A shell's view of how CMD ended: its code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
