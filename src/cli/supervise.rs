//! Waiting for a command `work` or `lock` started, and stopping it when told to: SIGTERM,
//! then one SIGKILL once the grace period is over.
use std::io;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use super::signal::{SIGKILL, SIGTERM};

/// How often the wait looks at the command once it is being stopped.
pub const TICK: Duration = Duration::from_millis(50);

/// Waits for the command until `try_wait` sees it end. Until a stop is decided, `why_stop`
/// is asked every round (it may block up to `TICK`): its first `Some` sends SIGTERM through
/// `signal`, and SIGKILL follows once, `grace` later. Returns how the command ended and why it
/// was stopped, if it was. `who` names the caller in messages (`workshop work`).
pub fn wait_or_stop<R>(
    who: &str,
    mut try_wait: impl FnMut() -> io::Result<Option<ExitStatus>>,
    signal: impl Fn(libc::c_int) -> io::Result<()>,
    grace: Duration,
    mut why_stop: impl FnMut(Duration) -> Option<R>,
) -> io::Result<(ExitStatus, Option<R>)> {
    loop {
        if let Some(status) = try_wait()? {
            return Ok((status, None));
        }
        if let Some(why) = why_stop(TICK) {
            send(who, &signal, SIGTERM);
            let status = wait_then_kill(who, try_wait, &signal, grace)?;
            return Ok((status, Some(why)));
        }
    }
}

/// Waits for a command that was sent SIGTERM, and SIGKILLs it once if it still runs `grace`
/// later.
fn wait_then_kill(
    who: &str,
    mut try_wait: impl FnMut() -> io::Result<Option<ExitStatus>>,
    signal: impl Fn(libc::c_int) -> io::Result<()>,
    grace: Duration,
) -> io::Result<ExitStatus> {
    let mut kill_at = Some(Instant::now() + grace);
    loop {
        if let Some(status) = try_wait()? {
            return Ok(status);
        }
        thread::sleep(TICK);
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            kill_at = None;
            send(who, &signal, SIGKILL);
        }
    }
}

/// Sends `sig` through `signal`; a failure is only told (the command may have just ended).
fn send(who: &str, signal: impl Fn(libc::c_int) -> io::Result<()>, sig: libc::c_int) {
    if let Err(e) = signal(sig) {
        let name = if sig == SIGKILL { "SIGKILL" } else { "SIGTERM" };
        eprintln!("{who}: {name}: {e}");
    }
}
