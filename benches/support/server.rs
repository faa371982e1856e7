//! The server under test, run as a separate process from the release binary, and what
//! /proc says about it.
use super::client::Conn;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Workshop {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Spawn until the "listening" line.
    pub to_listening: Duration,
}

/// How to start a server: which binary and any extra environment (a variant under test).
#[derive(Clone)]
pub struct Flavor {
    pub label: String,
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Workshop {
    /// Starts `flavor` on `dir/w.db` and `dir/blobs` and waits for its "listening" line.
    pub fn start(flavor: &Flavor, dir: &Path) -> Workshop {
        let spawned = Instant::now();
        let mut cmd = Command::new(&flavor.bin);
        cmd.env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", dir.join("w.db"))
            .env("BLOBS_DIR", dir.join("blobs"))
            .env_remove("WORKSHOP_VERBOSE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &flavor.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", flavor.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first).expect("server stdout");
        let to_listening = spawned.elapsed();
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("workshop listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from server: {first:?}"))
            .parse()
            .expect("listening address");
        // Keep draining stdout so the server can never block on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let pid = child.id();
        eprintln!("bench: started {} (pid {pid}) on {addr}", flavor.label);
        Workshop {
            child,
            addr,
            pid,
            to_listening,
        }
    }

    pub fn proc(&self) -> ProcStatus {
        ProcStatus::read(self.pid)
    }

    /// SIGTERM (clean shutdown: commit, checkpoint, close), then wait.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "bench: server {} did not stop on SIGTERM; killing it",
            self.pid
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workshop {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls until `GET /status` answers 200; returns when it did.
pub fn wait_for_status(addr: SocketAddr, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut conn) = Conn::connect(addr)
            && let Ok(resp) = conn.get("/status")
            && resp.status == 200
        {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ProcStatus {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

impl ProcStatus {
    pub fn read(pid: u32) -> ProcStatus {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        ProcStatus {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        }
    }
}

/// Raises this process's soft open-files limit to the hard limit (5,000 SSE sockets).
pub use workshop::sys::raise_fd_limit;
