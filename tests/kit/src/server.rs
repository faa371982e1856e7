//! The real `workshop` binary as a child process on port 0, with its files in a temp dir that
//! outlives restarts: stopped (SIGTERM), killed (SIGKILL, like a crash), started again on the
//! same port and files, or started under a low fd limit.

use crate::os::{ProcStatus, open_fds, open_sockets, proc_kib, signal};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `workshop` binary cargo built next to the running test or benchmark: `WORKSHOP_BIN` if
/// set, else `workshop` in the folder above the executable's `deps/` (where cargo puts both).
pub fn workshop_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WORKSHOP_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the running executable");
    let mut dir = exe.parent().expect("its folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("workshop{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "no workshop binary at {}", bin.display());
    bin
}

/// How long a restart keeps trying while the port is still held by the last run.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);

pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// From spawning the process to its "listening" line, on the last start.
    pub started_in: Duration,
    bin: PathBuf,
    echo_stderr: bool,
    db_path: PathBuf,
    blobs_dir: PathBuf,
    env: Vec<(String, String)>,
    /// Run under `ulimit -n` of this many descriptors (soft and hard).
    fd_limit: Option<u32>,
    child: Option<Child>,
}

#[derive(Default)]
pub struct Options<'a> {
    /// Extra environment; it wins over the PORT, HOST, DB_PATH and BLOBS_DIR set here.
    pub env: &'a [(&'a str, &'a str)],
    pub fd_limit: Option<u32>,
    /// Instead of `w.db` in the temp dir.
    pub db_path: Option<PathBuf>,
    /// Instead of `blobs` in the temp dir.
    pub blobs_dir: Option<PathBuf>,
    /// Instead of `workshop_bin()` (the benchmark compares builds).
    pub bin: Option<PathBuf>,
    /// The server's stderr goes to ours instead of `stderr.log` (the benchmark shows it).
    pub echo_stderr: bool,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the binary with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_with_options(Options {
            env,
            ..Options::default()
        })
    }

    pub fn start_with_options(options: Options) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            port: 0,
            started_in: Duration::ZERO,
            bin: options.bin.unwrap_or_else(workshop_bin),
            echo_stderr: options.echo_stderr,
            db_path: options.db_path.unwrap_or_else(|| dir.path().join("w.db")),
            blobs_dir: options
                .blobs_dir
                .unwrap_or_else(|| dir.path().join("blobs")),
            dir,
            env: options
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fd_limit: options.fd_limit,
            child: None,
        };
        if let Err(e) = server.launch(0, &[]) {
            panic!("{e}");
        }
        server
    }

    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone()
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.blobs_dir.clone()
    }

    /// A file in the temp dir (the server's working directory).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `workshop [args]` on `port`, its stderr appended to `stderr.log` in the temp dir.
    fn launch(&mut self, port: u16, args: &[&str]) -> Result<(), String> {
        let spawned = Instant::now();
        let mut child = self
            .command(port, args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        self.started_in = spawned.elapsed();
        let Some(bound) = listening_port(&first) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "workshop did not start on port {port} (first line {first:?}); stderr:\n{}",
                self.stderr()
            ));
        };
        if port != 0 {
            assert_eq!(bound, port, "started again on another port");
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.port = bound;
        self.child = Some(child);
        Ok(())
    }

    /// The command line and a clean environment: PATH, then PORT, HOST, DB_PATH and
    /// BLOBS_DIR, then the extra environment, which wins.
    fn command(&self, port: u16, args: &[&str]) -> Command {
        let mut cmd = self.under_fd_limit();
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", &self.db_path)
            .env("BLOBS_DIR", &self.blobs_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.stderr_target());
        cmd
    }

    /// The binary, run through `sh` to lower its fd limit first if there is one.
    fn under_fd_limit(&self) -> Command {
        let Some(n) = self.fd_limit else {
            return Command::new(&self.bin);
        };
        // The server raises its soft limit to the hard one, so lower both (soft first: the
        // hard limit may not drop below the soft one).
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "ulimit -S -n {n} && ulimit -H -n {n} && exec \"$0\" \"$@\""
            ))
            .arg(&self.bin);
        c
    }

    /// `stderr.log` in the temp dir (appended to over restarts), or our own stderr.
    fn stderr_target(&self) -> Stdio {
        if self.echo_stderr {
            return Stdio::inherit();
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("stderr log");
        Stdio::from(log)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        child.wait().expect("wait")
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash or the OOM killer.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status if it exits within `timeout`; else SIGKILL and None.
    pub fn stop_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts it again (after `stop` or `kill`) on the same port and files.
    pub fn restart_stopped(&mut self) {
        self.restart_stopped_with(&[]);
    }

    /// `restart_stopped` as `workshop [args]`. The port may be briefly unavailable, so this
    /// retries for a while.
    pub fn restart_stopped_with(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "stop or kill it first");
        let deadline = Instant::now() + RESTART_DEADLINE;
        loop {
            match self.launch(self.port, args) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops it cleanly and starts it again on the same port and files.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "clean shutdown, got {status}");
        self.restart_stopped();
    }

    fn stderr_path(&self) -> PathBuf {
        self.path("stderr.log")
    }

    /// Everything the server has written to stderr, over all its runs.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn assert_no_panic(&self) {
        let log = self.stderr();
        assert!(!log.contains("panicked"), "server panicked; stderr:\n{log}");
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_kib(self.pid(), "VmRSS:")
    }

    /// Memory and threads of the server process (zeros if it has gone).
    pub fn proc_status(&self) -> ProcStatus {
        ProcStatus::read(self.pid())
    }

    pub fn open_fds(&self) -> usize {
        open_fds(self.pid())
    }

    /// Sockets the server holds: its listener and every connection it has accepted (and not
    /// yet closed), but no file.
    pub fn open_sockets(&self) -> usize {
        open_sockets(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.echo_stderr {
            let log = self.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("workshop stderr (last lines):\n{}", tail.join("\n"));
        }
    }
}

/// The port in the server's first line, `workshop listening on http://127.0.0.1:PORT`.
fn listening_port(first_line: &str) -> Option<u16> {
    first_line
        .strip_prefix("workshop listening on http://127.0.0.1:")
        .and_then(|p| p.trim().parse().ok())
}
