//! Signalling the process group of a command `work` started. std can only SIGKILL one child;
//! stopping a task politely needs SIGTERM, and reaching the command's own children (a shell
//! script's `sleep`) needs the whole group — each command runs in a group of its own.
#![allow(unsafe_code)] // one libc::kill call; see the SAFETY note

pub use libc::{SIGKILL, SIGTERM};

/// Sends `signal` to every process in the group led by `leader` (a child we spawned with
/// `process_group(0)` and have not yet reaped, so its pid — the group id — is still ours).
pub fn signal_group(leader: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pgid = libc::pid_t::try_from(leader)
        .map_err(|_| std::io::Error::other("process id out of range"))?;
    if pgid <= 1 {
        return Err(std::io::Error::other("refusing to signal group 0 or 1"));
    }
    // SAFETY: kill() takes plain integers and touches no memory of ours. A negative pid
    // addresses the process group; the guard above keeps it from meaning "every process".
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
