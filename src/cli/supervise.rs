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

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};

    use super::super::signal::signal_process;
    use super::*;

    fn stop_at_once(child: &mut Child, grace: Duration) -> (ExitStatus, Option<&'static str>) {
        let pid = child.id();
        wait_or_stop(
            "test",
            || child.try_wait(),
            |sig| signal_process(pid, sig),
            grace,
            |_| Some("asked"),
        )
        .unwrap()
    }

    #[test]
    fn a_stopped_command_gets_sigterm() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let (status, why) = stop_at_once(&mut child, Duration::from_secs(60));
        assert_eq!((status.signal(), why), (Some(SIGTERM), Some("asked")));
    }

    #[test]
    fn a_command_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        use std::io::{BufRead, BufReader};
        let script = "trap '' TERM; echo ready; while :; do :; done";
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Stopped only once the trap is set.
        let mut ready = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut ready).unwrap();
        let (status, _) = stop_at_once(&mut child, Duration::from_millis(200));
        assert_eq!(status.signal(), Some(SIGKILL));
    }

    #[test]
    fn a_command_that_ends_by_itself_is_not_signalled() {
        let mut child = Command::new("true").spawn().unwrap();
        let (status, why) = wait_or_stop(
            "test",
            || child.try_wait(),
            |_| panic!("signalled"),
            Duration::ZERO,
            |_| None::<()>,
        )
        .unwrap();
        assert!(status.success() && why.is_none());
    }
}
