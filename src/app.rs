//! The running server: `App`, everything a handler needs, and start-up and shutdown around it.
use crate::blobs::BlobStore;
use crate::broadcast::Broadcaster;
use crate::config::Config;
use crate::counted::Counted;
use crate::error::Fault;
use crate::hub::Hub;
use crate::ratelimit::RateLimiter;
use crate::store::{Failure, Op, Store};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// An idle keep-alive connection is closed after this; a stalled writer is dropped after it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Most simultaneous SSE streams (each holds a socket; the broadcaster writes them all).
const MAX_STREAMS: usize = 10_000;
/// How long shutdown waits for requests in hand before closing the database regardless.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Everything a handler needs, shared by every thread.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub blobs: BlobStore,
    /// Shared with the streams it is about to adopt (`sse`), which outlive a handler.
    pub broadcaster: Arc<Broadcaster>,
    pub started: Instant,
    pub max_streams: usize,
    /// The loop guard (`WORKSHOP_RATE`).
    pub limiter: RateLimiter,
    /// Long-poll reads (`?wait=`) waiting right now, shown in /status.
    pub long_polls: AtomicUsize,
    /// Set at shutdown: requests that arrive after it get a 503.
    stopping: AtomicBool,
    /// Requests being answered right now, which shutdown waits for.
    in_flight: AtomicUsize,
}

/// A started server. `shutdown` (or a signal, via `run`) stops it.
pub struct Running {
    pub addr: SocketAddr,
    app: Arc<App>,
    http: tiny_http::Server,
    retention: JoinHandle<()>,
    /// Held while serving, so `workshop restore` refuses to replace the database under us.
    _in_use: std::fs::File,
}

/// What answers each request on its connection's thread; `false` ends the connection.
pub type Serve = fn(&App, tiny_http::Request) -> bool;

/// Opens the database and blob folder, binds the socket and starts serving with `serve`.
pub fn start(config: Config, serve: Serve) -> Result<Running, String> {
    // Bound first: a port in use (the commonest mistake) then stops start-up before any file
    // is made. Connections wait in the listen queue until the server is open.
    let (listener, addr) = listen(&config)?;
    let in_use = crate::backup::mark_in_use(&config.db_path)?;
    let app = Arc::new(App::open(config)?);
    // Before the first connection can be accepted (the server accepts once it exists).
    let _ = crate::metrics::IDLE_SOCKETS.set(crate::sys::process_counts(true).sockets);
    let for_requests = app.clone();
    let http = tiny_http::Server::from_listener_with_handler(listener, move |request| {
        serve(&for_requests, request)
    })
    .map_err(|e| format!("cannot start HTTP on {addr}: {e}"))?;
    let retention = spawn_retention(app.clone())?;
    Ok(Running {
        addr,
        app,
        http,
        retention,
        _in_use: in_use,
    })
}

fn listen(config: &Config) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(config.addr)
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    crate::sys::configure_listener(&listener, SOCKET_TIMEOUT, SOCKET_TIMEOUT);
    let addr = bound_address(&listener)?;
    Ok((listener, addr))
}

/// The address the listener got (the port, when the configured one was 0).
fn bound_address(listener: &TcpListener) -> Result<SocketAddr, String> {
    listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))
}

fn spawn_retention(app: Arc<App>) -> Result<JoinHandle<()>, String> {
    thread::Builder::new()
        .name("retention".into())
        .spawn(move || retention(&app))
        .map_err(|e| format!("cannot start a thread: {e}"))
}

impl App {
    /// Opens the store (cleaning up past retention first), the blob folder and the
    /// broadcaster.
    fn open(config: Config) -> Result<App, String> {
        let fd_limit = crate::sys::raise_fd_limit();
        let hub = Arc::new(Hub::default());
        let blobs = BlobStore::open(&config.blobs_dir)?;
        let store = Store::open(&config.db_path, hub.clone())?;
        // The first write: it finds a database this user cannot write, which SQLite opens
        // read-only without a word. A full disk is no reason to stay down (reads work, and
        // the retention thread tries again); any other failure is, as it always was.
        match store.write(prune(&config)).map_err(|e| e.kind) {
            Ok(_) => {}
            Err(Failure::Storage(Fault::DiskFull)) => say!("retention cleanup failed: disk full"),
            Err(Failure::Storage(Fault::ReadOnly)) => return Err(read_only(&config.db_path)),
            Err(_) => return Err("retention cleanup failed (details above)".into()),
        }
        let broadcaster =
            Broadcaster::start(&hub).map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(App {
            limiter: RateLimiter::new(config.rate),
            config,
            store,
            hub,
            blobs,
            broadcaster: Arc::new(broadcaster),
            started: Instant::now(),
            max_streams: MAX_STREAMS.min((fd_limit as usize).saturating_sub(256).max(16)),
            long_polls: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Shutdown has begun: long waits (claim-next) should end now.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Counts a request as in hand, which shutdown waits for, until the guard is dropped
    /// (even if its handler panics).
    pub(crate) fn answering(&self) -> Counted<'_> {
        Counted::enter(&self.in_flight)
    }

    /// Waits (at most `DRAIN_LIMIT`) for the requests in hand to be answered.
    fn drain(&self) {
        let waiting = Instant::now();
        while self.in_flight.load(Ordering::SeqCst) > 0 && waiting.elapsed() < DRAIN_LIMIT {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Running {
    /// Stops accepting, finishes the requests in hand, ends streams, commits what is queued
    /// and closes the database.
    pub fn shutdown(self) {
        self.app.stopping.store(true, Ordering::SeqCst);
        // Wakes claim-next callers waiting for work, so they answer 503 instead of holding
        // shutdown up for as long as they asked to wait.
        self.app.store.bell.ring();
        drop(self.http);
        let _ = self.retention.join();
        self.app.hub.close();
        self.app.drain();
        self.app.broadcaster.stop();
        self.app.store.shutdown();
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: Config, serve: Serve) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let running = start(config, serve)?;
    running.print_banner();
    if let Some(signal) = signals.forever().next() {
        say!("signal {signal}, shutting down");
    }
    running.shutdown();
    say!("stopped");
    Ok(())
}

impl Running {
    /// The start-up banner on stdout (`banner`). Errors ignored: a closed stdout
    /// (`workshop | head -1`) must not stop the server.
    fn print_banner(&self) {
        let text = crate::banner::text(&self.app.config, self.addr);
        let _ = write!(std::io::stdout(), "{text}");
    }
}

/// What start-up says of a database it cannot write.
fn read_only(db: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let user = std::fs::metadata("/proc/self")
        .map_or("this user".into(), |me| format!("uid {}", me.uid()));
    format!(
        "cannot write the database {}: it, its folder, or its -wal or -shm file is read-only \
         for {user}; DB_PATH (--db) must be writable",
        db.display()
    )
}

fn prune(config: &Config) -> Op {
    Op::Prune {
        retention_days: config.retention_days,
    }
}

fn retention(app: &App) {
    let mut last = Instant::now();
    while !app.is_stopping() {
        thread::sleep(Duration::from_millis(250));
        if last.elapsed() >= RETENTION_EVERY {
            last = Instant::now();
            if let Err(e) = app.store.write(prune(&app.config)) {
                say!("retention cleanup failed: {}", e.message);
            }
        }
    }
}
