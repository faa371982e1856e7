//! Signalling the commands `work` and `lock` start. std can only SIGKILL one child; stopping a
//! command politely needs SIGTERM, and reaching a task command's own children (a shell
//! script's `sleep`) needs the whole group — each `work` command runs in a group of its own.
#![allow(unsafe_code)] // libc::kill calls; see the SAFETY notes

pub use libc::{SIGKILL, SIGTERM};

/// Sends `signal` to every process in the group led by `leader` (a child we spawned with
/// `process_group(0)` and have not yet reaped, so its pid — the group id — is still ours).
pub fn signal_group(leader: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pgid = ours(leader, "group")?;
    // SAFETY: kill() takes plain integers and touches no memory of ours. A negative pid
    // addresses the process group; `ours` keeps it from meaning "every process".
    check(unsafe { libc::kill(-pgid, signal) })
}

/// Sends `signal` to one process: a child we spawned and have not yet reaped (so its pid is
/// still ours).
pub fn signal_process(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = ours(pid, "process")?;
    // SAFETY: kill() takes plain integers and touches no memory of ours; `ours` keeps the
    // pid from meaning a group or "every process".
    check(unsafe { libc::kill(pid, signal) })
}

/// `id` as a pid that names one process or group of ours: not 0 or 1 (ours are never those),
/// so kill() cannot take it for "our own group" or "every process".
fn ours(id: u32, what: &str) -> std::io::Result<libc::pid_t> {
    let pid =
        libc::pid_t::try_from(id).map_err(|_| std::io::Error::other("process id out of range"))?;
    if pid <= 1 {
        return Err(std::io::Error::other(format!(
            "refusing to signal {what} 0 or 1"
        )));
    }
    Ok(pid)
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
