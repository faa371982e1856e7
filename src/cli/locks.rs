//! `workshop lock`, `unlock` and `locks`: advisory locks. `lock NAME -- CMD` holds the lock
//! while CMD runs: it renews it every third of its TTL, and releases it when CMD exits.
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Value, json};

use super::client::{CliError, Client, Result};
use super::commands::emit;
use super::signal::{SIGKILL, SIGTERM, signal_group};

/// How often the wait for CMD looks at it and at the stop signals.
const TICK: Duration = Duration::from_millis(50);
/// How long CMD gets between SIGTERM and SIGKILL once the lock is lost or we are stopped.
const GRACE: Duration = Duration::from_secs(5);

pub struct LockRequest {
    pub name: String,
    pub ttl: f64,
    pub note: Option<String>,
    pub ch: Option<String>,
}

impl LockRequest {
    fn body(&self, from: &str) -> Value {
        let mut body = json!({"from": from, "name": self.name, "ttl_s": self.ttl});
        if let Some(note) = &self.note {
            body["note"] = json!(note);
        }
        if let Some(ch) = &self.ch {
            body["ch"] = json!(ch);
        }
        body
    }
}

/// `workshop lock NAME [-- CMD...]`
pub fn lock(client: &Client, req: LockRequest, command: Vec<String>) -> Result<()> {
    let body = req.body(client.agent()?);
    let reply = acquire(client, &body)?;
    if command.is_empty() {
        return emit(&reply.to_string());
    }
    let status = hold_while(client, &req, &body, &command);
    let released = release(client, &req.name);
    let status = status?;
    if let Err(e) = released {
        eprintln!("workshop lock: releasing {:?}: {e}", req.name);
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

/// `src/main.rs  held by coder.a  570s left  [locks]  refactoring`
fn pretty_lock(lock: &Value) -> String {
    let s = |key: &str| lock.get(key).and_then(Value::as_str).unwrap_or("");
    let left = lock
        .get("expires_at")
        .and_then(Value::as_f64)
        .map(|t| t - now())
        .unwrap_or(0.0)
        .max(0.0);
    format!(
        "{}  held by {}  {left:.0}s left  [{}]  {}",
        s("name"),
        s("holder"),
        s("ch"),
        s("note")
    )
}

/// Takes (or renews) the lock; someone else holding it is a 409, exit 4.
fn acquire(client: &Client, body: &Value) -> Result<Value> {
    client.post_json("/locks/acquire", body)
}

fn release(client: &Client, name: &str) -> Result<Value> {
    let body = json!({"from": client.agent()?, "name": name});
    client.post_json("/locks/release", &body)
}

/// Runs CMD, renewing the lock until it exits. If the lock is lost (someone else took it
/// after a renewal failed for too long) or we get SIGINT/SIGTERM, CMD's process group is
/// stopped (SIGTERM, then SIGKILL after `GRACE`).
fn hold_while(
    client: &Client,
    req: &LockRequest,
    body: &Value,
    command: &[String],
) -> Result<ExitStatus> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| CliError::failure(format!("cannot handle signals: {e}")))?;
    }
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .env("WORKSHOP_LOCK", &req.name)
        .process_group(0)
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot run {:?}: {e}", command[0])))?;
    let (lost_tx, lost_rx) = bounded(1);
    let renewing = renew(client.clone(), body.clone(), req.ttl, lost_tx);
    let status = wait(&mut child, &stop, &lost_rx);
    drop(renewing);
    let (status, lost) = status?;
    if lost {
        return Err(CliError::http(
            409,
            format!("lost the lock {:?}; the command was stopped", req.name),
        ));
    }
    Ok(status)
}

/// Renews the lock every third of its TTL until the returned sender is dropped. A 409 or 403
/// means it went to someone else: report it on `lost`.
fn renew(client: Client, body: Value, ttl: f64, lost: Sender<()>) -> Sender<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let every = Duration::from_secs_f64(ttl / 3.0);
    thread::spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(every) {
            match client.post_json("/locks/acquire", &body) {
                Ok(_) => {}
                Err(e) if matches!(e.status, 403 | 409) => {
                    eprintln!("workshop lock: lost the lock: {e}");
                    let _ = lost.try_send(());
                    return;
                }
                Err(e) => eprintln!("workshop lock: renewing: {e}"),
            }
        }
    });
    done_tx
}

/// Waits for CMD; the flag says whether it was stopped because the lock was lost.
fn wait(child: &mut Child, stop: &AtomicBool, lost: &Receiver<()>) -> Result<(ExitStatus, bool)> {
    let pid = child.id();
    let mut was_lost = false;
    let mut kill_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, was_lost));
        }
        thread::sleep(TICK);
        let lost_now = lost.try_recv().is_ok();
        was_lost |= lost_now;
        match kill_at {
            None if lost_now || stop.load(Ordering::SeqCst) => {
                let _ = signal_group(pid, SIGTERM);
                kill_at = Some(Instant::now() + GRACE);
            }
            Some(at) if Instant::now() >= at => {
                let _ = signal_group(pid, SIGKILL);
                kill_at = Some(Instant::now() + GRACE);
            }
            _ => {}
        }
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A shell's view of how CMD ended: its code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
