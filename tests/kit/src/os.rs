//! What the operating system says about a process (`/proc`), the signals sent to one, and the
//! few system calls std lacks, through rustix's safe wrappers.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// `kill -NAME pid`, which must succeed.
pub fn signal(pid: u32, name: &str) {
    assert!(try_signal(pid, name), "kill -{name} {pid}");
}

/// `kill -NAME pid`; false if it failed.
pub fn try_signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// `kill -NAME -- -pgid`: the signal to a whole process group; false if it failed (quietly:
/// the group may be gone already).
pub fn try_signal_group(pgid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Raises this process's soft open-files limit to the hard limit (tests and the benchmark
/// open thousands of sockets) and returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    let current = limit.current.unwrap_or(u64::MAX);
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if current < maximum && setrlimit(Resource::Nofile, raised).is_ok() {
        return maximum;
    }
    current
}

/// Whether this process runs as root (which ignores read-only modes).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Sets TCP_NODELAY on a listening socket; Linux copies it to the sockets it accepts.
pub fn nodelay_listener(listener: &TcpListener) {
    rustix::net::sockopt::set_tcp_nodelay(listener, true).expect("TCP_NODELAY on a listener");
}

/// A few lines of `/proc/<pid>/status` (0 for what could not be read).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcStatus {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

impl ProcStatus {
    pub fn read(pid: u32) -> ProcStatus {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| status_field(&text, name).unwrap_or(0);
        ProcStatus {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        }
    }
}

/// The number after `name` (such as `VmRSS:`) in the text of `/proc/<pid>/status`.
pub fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A field of `/proc/<pid>/status` in KiB (such as `VmRSS:`), which must be there.
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status_field(&status, field).unwrap_or_else(|| panic!("{field} in {status}"))
}

/// Whether process `pid` is still running: it exists and is not a zombie (a zombie has
/// ended; only its parent's reaping is missing).
pub fn pid_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = rustix::param::clock_ticks_per_second() as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// Open file descriptors of a process (0 if it cannot be read).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sockets a process holds (listeners and connections), but no file.
pub fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// Runs `work`, returning its result, process `pid`'s resident memory just before (KiB) and
/// its peak while `work` ran (KiB).
pub fn peak_rss_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, u64, u64) {
    // "5" resets the peak (VmHWM) to the current size; if not allowed, sampling alone counts.
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let before = proc_kib(pid, "VmRSS:");
    let done = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, sampled) = (done.clone(), sampled.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                sampled.fetch_max(proc_kib(pid, "VmRSS:"), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let result = work();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let mut peak = sampled.load(Ordering::Relaxed);
    if hwm_reset {
        peak = peak.max(proc_kib(pid, "VmHWM:"));
    }
    (result, before, peak)
}
