//! The server under test: the kit's `Server` started from a given build (a flavour), on a
//! folder the benchmark chooses, its stderr shown, and a readiness probe.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workshop_testkit::{Conn, Options, ProcStatus, Server};

pub struct Workshop {
    server: Server,
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
        let env: Vec<(&str, &str)> = flavor
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = Server::start_with_options(Options {
            env: &env,
            db_path: Some(dir.join("w.db")),
            blobs_dir: Some(dir.join("blobs")),
            bin: Some(flavor.bin.clone()),
            echo_stderr: true,
            ..Options::default()
        });
        let (addr, pid) = (server.addr(), server.pid());
        eprintln!("bench: started {} (pid {pid}) on {addr}", flavor.label);
        Workshop {
            addr,
            pid,
            to_listening: server.started_in,
            server,
        }
    }

    pub fn proc(&self) -> ProcStatus {
        self.server.proc_status()
    }

    /// SIGTERM (clean shutdown: commit, checkpoint, close), then wait; killed after 20 s.
    pub fn stop(mut self) {
        if self.server.stop_within(Duration::from_secs(20)).is_none() {
            eprintln!(
                "bench: server {} did not stop on SIGTERM; killed it",
                self.pid
            );
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
