//! The few operating-system calls std does not offer (`setrlimit`, `setsockopt`, `listen`,
//! `getifaddrs`, and the signal calls of `workshop work`'s guard: `prctl`, `sigprocmask`,
//! `sigtimedwait`, `raise`);
//! with `cli::signal`, one of the two modules allowed `unsafe`.
#![allow(unsafe_code)] // each call below is a plain libc call on values we own; see SAFETY notes

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Descriptors the server lets itself hold at most. Every connection holds one, and every
/// connection that is not a live stream also holds a thread: past about 16,000 threads the
/// kernel's limit on memory maps (`vm.max_map_count`, 65,530 by default) stops a thread from
/// starting and the process aborts, which clients that open requests and hang up reached in
/// 7 s. At this many descriptors the accept loop waits (tiny_http patch 3) long before that.
const FD_CEILING: u64 = 12_288;

/// Sets the soft open-files limit to the hard limit, but at most `FD_CEILING` (lowering it
/// if it was higher): every SSE client holds a socket, and the usual soft limit of 1024 would
/// cap the server near 1000 watchers.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which lives on our stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let wanted = limit.rlim_max.min(FD_CEILING);
        if limit.rlim_cur != wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// Pending connections the kernel holds for the accept loop (capped by net.core.somaxconn).
/// std listens with 128: when thousands of watchers reconnect at once (after a restart), a
/// full queue drops their SYNs and each retries a whole second later.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Sets receive/send timeouts and TCP_NODELAY on the listening socket (Linux copies them to
/// every accepted socket, which is the only way to give tiny_http's connections timeouts),
/// and deepens its accept queue.
pub fn configure_listener(listener: &TcpListener, read: Duration, write: Duration) {
    let fd = listener.as_raw_fd();
    deepen_backlog(fd);
    set_timeout(fd, libc::SO_RCVTIMEO, read);
    set_timeout(fd, libc::SO_SNDTIMEO, write);
    let on: libc::c_int = 1;
    set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &on);
}

/// Resizes the accept queue of the listening socket `fd` to `LISTEN_BACKLOG`.
fn deepen_backlog(fd: libc::c_int) {
    // SAFETY: fd is a bound, listening socket we own; listening again only resizes its queue.
    unsafe {
        libc::listen(fd, LISTEN_BACKLOG);
    }
}

fn set_timeout(fd: libc::c_int, option: libc::c_int, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as _,
        tv_usec: timeout.subsec_micros() as _,
    };
    set_option(fd, libc::SOL_SOCKET, option, &tv);
}

/// Sets a socket option whose value is a `T` (a `c_int`, a `timeval`), ignoring failure.
fn set_option<T>(fd: libc::c_int, level: libc::c_int, option: libc::c_int, value: &T) {
    // SAFETY: fd is a valid socket we own; the option value is a live `T` we borrow, and
    // the length passed is its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        );
    }
}

/// Open file descriptors, sockets among them, and threads of this process (leak checks).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCounts {
    pub fds: usize,
    /// Counted only when asked (one `readlink` per descriptor); the listener included.
    pub sockets: usize,
    pub threads: usize,
}

/// Walks `/proc/self/fd` once; with `sockets`, reads each link to count the sockets (for
/// /metrics; /status needs only the total).
pub fn process_counts(sockets: bool) -> ProcessCounts {
    let mut counts = ProcessCounts {
        threads: std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count()),
        ..ProcessCounts::default()
    };
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return counts;
    };
    for fd in fds.flatten() {
        counts.fds += 1;
        if sockets
            && std::fs::read_link(fd.path()).is_ok_and(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            })
        {
            counts.sockets += 1;
        }
    }
    counts
}

/// The IPv4 and IPv6 addresses of this machine's interfaces that are up (loopback included),
/// for the start banner of a server listening on every interface. Empty if the call fails.
pub fn interface_addrs() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read, then free once
    // with freeifaddrs. Each `ifa_addr` is checked for null and read as the sockaddr type its
    // `sa_family` names.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return Vec::new();
        }
        let mut addrs = Vec::new();
        let mut cur = list;
        while let Some(ifa) = cur.as_ref() {
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as libc::c_uint == 0 {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    addrs.push(IpAddr::V4(ip));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    addrs.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(list);
        addrs
    }
}

/// A set of the signals named.
fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set we own, on our stack, before sigaddset adds to
    // it; a number that is not a signal is refused without touching it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Holds `signals` back (pending, until `wait_signal` takes them) in a single-threaded
/// process. Processes it starts do not inherit this: std empties their signal mask.
pub fn block_signals(signals: &[libc::c_int]) -> std::io::Result<()> {
    let set = signal_set(signals);
    // SAFETY: sigprocmask reads the set we own and writes nothing (no old set asked for).
    let rc = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks the kernel for `signal` when the thread that started this process ends, which is
/// when the process it belongs to ends, however it ends (PR_SET_PDEATHSIG).
pub fn signal_on_parent_death(signal: libc::c_int) -> std::io::Result<()> {
    let signal = libc::c_ulong::try_from(signal).map_err(std::io::Error::other)?;
    // SAFETY: PR_SET_PDEATHSIG takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits up to `timeout` for one of `signals` (held back by `block_signals`) and takes it;
/// `None` when none came (or the wait was interrupted).
pub fn wait_signal(signals: &[libc::c_int], timeout: Duration) -> Option<libc::c_int> {
    let set = signal_set(signals);
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: sigtimedwait reads the set and the timeout we own; the signal's details, which
    // we do not want, may be left out (null).
    let taken = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
    (taken > 0).then_some(taken)
}

/// Whether this process leads a process group of its own (its group id is its pid).
pub fn leads_own_group() -> bool {
    // SAFETY: getpgrp and getpid take nothing, touch no memory and cannot fail.
    unsafe { libc::getpgrp() == libc::getpid() }
}

/// Ends this process by `signal`, as a process killed by it ends, but without a core dump
/// (the one that died of it was another process). Returns only if the signal did not end it.
pub fn die_by(signal: libc::c_int) {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let set = signal_set(&[signal]);
    // SAFETY: plain calls on this process with values we own: no core file, the signal's
    // default action, the signal let through, then sent to ourselves.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_walk_counts_descriptors_sockets_and_threads() {
        let before = process_counts(true);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let with = process_counts(true);
        // Other tests in this binary open and close descriptors meanwhile: compare loosely.
        assert!(with.sockets >= 1, "{with:?}");
        assert!(with.fds >= with.sockets && with.threads >= 1, "{with:?}");
        assert!(before.fds >= before.sockets, "{before:?}");
        assert_eq!(process_counts(false).sockets, 0, "not counted unless asked");
        drop(listener);
    }
}
