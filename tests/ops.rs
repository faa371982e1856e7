//! Operating it: `/metrics` read by Prometheus's own parser, `backup`/`restore` against a
//! server taking writes, the `WORKSHOP_RATE` loop guard, and the version. Real server, real
//! CLI subprocesses, real files.
mod cli_support;
mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cli_support::{Cli, DEADLINE, json};
use common::{BIN, Options, Server, request, sha256_name, wait_for};
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One sample of a scrape, keyed `name{label="value",...}` with labels sorted.
type Samples = HashMap<String, f64>;

/// Parses a scrape with the Prometheus project's own Python client parser
/// (`prometheus_client`, installed by .ci/run), which rejects what is not valid text format.
fn scrape(server: &Server) -> Samples {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_exposition(&r.text())
}

fn parse_exposition(text: &str) -> Samples {
    const PARSE: &str = "
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    assert family.name.startswith('workshop_'), family.name
    assert family.documentation, family.name
    for s in family.samples:
        print(json.dumps({'name': s.name, 'labels': s.labels, 'value': s.value}))
";
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client: .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = Samples::new();
    for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
        let sample = json(line);
        let mut labels: Vec<String> = sample["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let key = format!(
            "{}{{{}}}",
            sample["name"].as_str().unwrap(),
            labels.join(",")
        );
        let value = sample["value"].as_f64().expect("value");
        assert!(samples.insert(key.clone(), value).is_none(), "twice: {key}");
    }
    samples
}

fn sample(samples: &Samples, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have {:?}", samples.keys()))
}

fn upload(server: &Server, bytes: &[u8]) -> String {
    let r = request(server.port, "POST", "/files", &[], bytes);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["hash"].as_str().expect("hash").to_string()
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_under_load() {
    let server = Server::start();
    let before = scrape(&server);
    let version = format!("workshop_build_info{{version=\"{VERSION}\"}}");
    assert_eq!(sample(&before, &version), 1.0);
    assert!(sample(&before, "workshop_process_resident_memory_bytes{}") > 1e6);
    assert!(sample(&before, "workshop_process_open_fds{}") > 3.0);
    assert!(sample(&before, "workshop_process_threads{}") >= 2.0);
    let open_tasks = "workshop_tasks{status=\"open\"}";
    assert_eq!(sample(&before, open_tasks), 0.0);

    let publishers: Vec<_> = (0..4)
        .map(|t| {
            let port = server.port;
            thread::spawn(move || {
                for i in 0..50 {
                    let body =
                        json!({"from": format!("load.{t}"), "type": "load", "body": {"i": i}});
                    let r = request(port, "POST", "/ch/load", &[], body.to_string().as_bytes());
                    assert_eq!(r.status, 201, "{}", r.text());
                }
            })
        })
        .collect();
    let _watcher = server.sse("/ch/load", &[]);
    for publisher in publishers {
        publisher.join().expect("publisher");
    }
    let kept = server.create_task(json!({"from": "boss", "title": "stays open"}));
    let expiring = server.create_task(json!({"from": "boss", "title": "lease runs out"}));
    let done = server.create_task(json!({"from": "boss", "title": "gets done"}));
    let lease = json!({"from": "w", "lease_s": 1});
    assert_eq!(server.task_action(&expiring, "claim", lease).status, 200);
    assert_eq!(
        server
            .task_action(&done, "claim", json!({"from": "w"}))
            .status,
        200
    );
    let finish = json!({"from": "w", "result": {"ok": true}});
    assert_eq!(server.task_action(&done, "done", finish).status, 200);
    let blob = b"metrics count this upload";
    upload(&server, blob);
    upload(&server, blob);
    assert_eq!(server.get("/nowhere").status, 404);

    // The lease expires in the writer's own time: poll the scrape for it.
    let after = wait_for(DEADLINE, "the lease expiry in /metrics", || {
        let now = scrape(&server);
        let expired = sample(&now, "workshop_lease_expiries_total{}");
        (expired == 1.0)
            .then_some(now)
            .ok_or(format!("{expired} expiries"))
    });
    let moved = |key: &str| sample(&after, key) - sample(&before, key);
    // 200 messages + 3 created, 2 claimed, 1 done, 1 expired announcements.
    assert_eq!(moved("workshop_messages_published_total{}"), 207.0);
    assert_eq!(
        moved("workshop_http_requests_total{code=\"2xx\",route=\"publish\"}"),
        200.0
    );
    assert_eq!(
        moved("workshop_http_requests_total{code=\"4xx\",route=\"unrouted\"}"),
        1.0
    );
    assert!(moved("workshop_commit_batch_size_count{}") >= 1.0);
    assert_eq!(
        sample(&after, "workshop_commit_batch_size_bucket{le=\"+Inf\"}"),
        sample(&after, "workshop_commit_batch_size_count{}")
    );
    // 200 publishes, 3 creations, 2 claims, 1 done: every command is in one batch.
    assert_eq!(moved("workshop_commit_batch_size_sum{}"), 206.0);
    assert!(moved("workshop_commit_duration_seconds_sum{}") > 0.0);
    // `kept` and the expired one are open, `done` is done, nothing is still claimed.
    assert_eq!(sample(&after, open_tasks), 2.0, "{kept} and {expiring}");
    assert_eq!(sample(&after, "workshop_tasks{status=\"claimed\"}"), 0.0);
    assert_eq!(sample(&after, "workshop_tasks{status=\"done\"}"), 1.0);
    assert_eq!(
        moved("workshop_task_transitions_total{kind=\"claimed\"}"),
        2.0
    );
    assert_eq!(moved("workshop_uploads_total{}"), 2.0);
    assert_eq!(
        moved("workshop_upload_bytes_total{}"),
        2.0 * blob.len() as f64
    );
    assert_eq!(
        moved("workshop_blob_bytes{}"),
        blob.len() as f64,
        "stored once"
    );
    assert_eq!(sample(&after, "workshop_subscribers{}"), 1.0);
    assert!(sample(&after, "workshop_open_connections{}") >= 1.0);
    assert!(moved("workshop_uptime_seconds{}") > 0.0);

    // Counts read at start-up from what is stored, not from zero.
    let mut server = server;
    server.restart();
    let restarted = scrape(&server);
    assert_eq!(sample(&restarted, open_tasks), 2.0);
    // Only TCP connections count: with nothing else connected, the scrape's own is the one
    // (the signal handler's socket pair counted as two more once). Connections the server is
    // still closing may linger for a moment.
    wait_for(DEADLINE, "one open connection", || {
        let connections = sample(&scrape(&server), "workshop_open_connections{}");
        (connections == 1.0).then_some(())
    });
    assert_eq!(sample(&restarted, "workshop_tasks{status=\"done\"}"), 1.0);
    assert_eq!(
        sample(&restarted, "workshop_blob_bytes{}"),
        blob.len() as f64
    );
    server.assert_no_panic();
}

/// A message as the publisher saw it acknowledged.
struct Acked {
    id: String,
    at: Instant,
}

fn workshop(args: &[&str], db: &Path, blobs: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("DB_PATH", db)
        .env("BLOBS_DIR", blobs)
        .output()
        .expect("run workshop")
}

/// A backup of a database that is not there says so and leaves nothing behind.
#[test]
fn a_backup_of_no_database_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("backup");
    let target_arg = target.to_str().unwrap();
    let out = workshop(
        &["backup", target_arg],
        &dir.path().join("none.db"),
        &dir.path().join("blobs"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at"));
    assert!(!target.exists(), "the backup folder was created");
    assert!(!dir.path().join("none.db").exists());
}

#[test]
fn backup_under_load_restores_everything_acknowledged_before_it() {
    let server = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let publishers: Vec<_> = (0..8)
        .map(|t| {
            let (port, stop, acked) = (server.port, stop.clone(), acked.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Every fifth message names a fresh file, uploaded just before it.
                    let files = if i % 5 == 0 {
                        let bytes = format!("file {t}-{i}").into_bytes();
                        let r = request(port, "POST", "/files", &[], &bytes);
                        assert_eq!(r.status, 201, "{}", r.text());
                        vec![r.json()["hash"].clone()]
                    } else {
                        vec![]
                    };
                    let body = json!({"from": format!("p{t}"), "type": "load", "files": files});
                    let r = request(port, "POST", "/ch/busy", &[], body.to_string().as_bytes());
                    assert_eq!(r.status, 201, "{}", r.text());
                    let id = r.json()["id"].as_str().expect("id").to_string();
                    acked.lock().unwrap().push(Acked {
                        id,
                        at: Instant::now(),
                    });
                    i += 1;
                }
            })
        })
        .collect();
    wait_for(DEADLINE, "400 messages before the backup", || {
        (acked.lock().unwrap().len() >= 400).then_some(())
    });
    let backup_dir = tempfile::tempdir().expect("temp dir");
    let began = Instant::now();
    let out = workshop(
        &["backup", backup_dir.path().to_str().unwrap()],
        &server.db_path(),
        &server.blobs_dir(),
    );
    assert!(out.status.success(), "{out:?}");
    let manifest = json(&String::from_utf8_lossy(&out.stdout));
    let during = acked.lock().unwrap().len();
    wait_for(DEADLINE, "more messages after the backup", || {
        (acked.lock().unwrap().len() >= during + 100).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        publisher.join().expect("publisher");
    }
    assert_eq!(manifest["version"], VERSION);
    assert_eq!(manifest["format"], 1);
    assert!(manifest["messages"].as_u64().unwrap() >= 400);

    let target = tempfile::tempdir().expect("temp dir");
    let (db, blobs) = (target.path().join("w.db"), target.path().join("blobs"));
    let out = workshop(
        &["restore", backup_dir.path().to_str().unwrap()],
        &db,
        &blobs,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout)), manifest);
    let restored = Server::start_with_options(Options {
        db_path: Some(db),
        blobs_dir: Some(blobs.clone()),
        ..Options::default()
    });
    let messages = restored.all_messages();
    assert_eq!(
        messages.len() as u64,
        manifest["messages"].as_u64().unwrap()
    );
    assert_eq!(messages.last().unwrap()["id"], manifest["last_message_id"]);
    let present: HashSet<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.at < began)
        .map(|a| a.id.clone())
        .collect();
    assert!(before.len() >= 400);
    for id in &before {
        assert!(
            present.contains(id.as_str()),
            "{id} acknowledged before the backup is lost"
        );
    }
    let mut named = 0;
    for message in &messages {
        for hash in message["files"].as_array().unwrap() {
            let hash = hash.as_str().unwrap();
            let bytes = std::fs::read(blobs.join(hash)).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert_eq!(sha256_name(&bytes), hash);
            named += 1;
        }
    }
    assert!(named >= 80, "only {named} files named");
    let newest = messages.last().unwrap()["id"].as_str().unwrap().to_string();
    let next = restored.publish("busy", "after.restore", json!({}));
    assert!(next > newest, "{next} does not follow {newest}");
    restored.assert_no_panic();
    server.assert_no_panic();
}

/// README: running a backup again into the same folder (the nightly cron) refreshes the
/// database and copies only the blobs it lacks; what it holds then restores whole.
#[test]
fn a_second_backup_into_the_same_folder_refreshes_it_and_copies_only_new_files() {
    use std::os::unix::fs::MetadataExt;
    let server = Server::start();
    let first_file = upload(&server, b"first file");
    let with_file = |hash: &str| json!({"from": "x", "type": "file.shared", "files": [hash]});
    assert_eq!(
        server.post_json("/ch/c", with_file(&first_file)).status,
        201
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().unwrap();
    let (db, blobs) = (server.db_path(), server.blobs_dir());
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    let copied = dir.path().join("blobs").join(&first_file);
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).unwrap();
        (meta.ino(), meta.mtime_nsec(), meta.mtime())
    };
    let first_copy = stamp(&copied);

    let second_file = upload(&server, b"second file");
    assert_eq!(
        server.post_json("/ch/c", with_file(&second_file)).status,
        201
    );
    let newest = server.publish("c", "msg.newest", json!({}));
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    let manifest = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(manifest["last_message_id"], newest.as_str());
    assert_eq!(
        stamp(&copied),
        first_copy,
        "the blob it had was not copied again"
    );
    assert!(dir.path().join("blobs").join(&second_file).is_file());

    let target = tempfile::tempdir().expect("temp dir");
    let (db2, blobs2) = (target.path().join("w.db"), target.path().join("blobs"));
    let out = workshop(&["restore", dir_arg], &db2, &blobs2);
    assert!(out.status.success(), "{out:?}");
    let restored = Server::start_with_options(Options {
        db_path: Some(db2),
        blobs_dir: Some(blobs2),
        ..Options::default()
    });
    let messages = restored.all_messages();
    assert_eq!(messages.last().unwrap()["id"], newest.as_str());
    assert_eq!(
        restored.get(&format!("/files/{second_file}")).body,
        b"second file"
    );
    restored.assert_no_panic();
    server.assert_no_panic();
}

#[test]
fn restore_refuses_a_running_server_and_a_damaged_backup() {
    let mut server = Server::start();
    server.publish("general", "before", json!({}));
    let hash = upload(&server, b"precious");
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().unwrap();
    let (db, blobs) = (server.db_path(), server.blobs_dir());
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    server.publish("general", "after", json!({}));

    let out = workshop(&["restore", dir_arg], &db, &blobs);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a server is using"), "{stderr}");
    assert_eq!(server.history("/ch/general/history").len(), 2, "unchanged");
    server.stop();

    // A manifest that does not describe the copy is refused, and so is a damaged blob.
    let manifest_path = dir.path().join("manifest.json");
    let good = std::fs::read_to_string(&manifest_path).unwrap();
    let mut lying: Value = serde_json::from_str(&good).unwrap();
    lying["messages"] = json!(lying["messages"].as_u64().unwrap() + 1);
    std::fs::write(&manifest_path, lying.to_string()).unwrap();
    let out = workshop(&["restore", dir_arg], &db, &blobs);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match its manifest"));
    std::fs::write(&manifest_path, &good).unwrap();
    let blob_copy = dir.path().join("blobs").join(&hash);
    std::fs::write(&blob_copy, b"tampered").unwrap();
    std::fs::remove_file(blobs.join(&hash)).unwrap();
    let out = workshop(&["restore", dir_arg], &db, &blobs);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("damaged"),
        "{out:?}"
    );
    assert!(
        !blobs.join(&hash).exists(),
        "a damaged blob is not installed"
    );
    std::fs::write(&blob_copy, b"precious").unwrap();
    std::fs::remove_file(&manifest_path).unwrap();
    let out = workshop(&["restore", dir_arg], &db, &blobs);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no complete backup"));
    std::fs::write(&manifest_path, &good).unwrap();

    // Stopped: the restore goes through and the server comes back with the backed-up state.
    let out = workshop(&["restore", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    server.restart_stopped();
    let kinds: Vec<Value> = server
        .history("/ch/general/history")
        .iter()
        .map(|m| m["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("before")]);
    assert_eq!(server.get(&format!("/files/{hash}")).body, b"precious");
    server.assert_no_panic();
}

/// A restore replaces a database that is no longer one at all (and a stale WAL beside it):
/// it used to open the target first, and failed with "file is not a database".
#[test]
fn restore_replaces_a_damaged_database() {
    let mut server = Server::start();
    let id = server.publish("general", "kept", json!({"n": 1}));
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().unwrap();
    let (db, blobs) = (server.db_path(), server.blobs_dir());
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    server.stop();
    std::fs::write(&db, vec![0xA5u8; 64 * 1024]).unwrap();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::write(&wal, b"not a write-ahead log").unwrap();
    let out = workshop(&["restore", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    server.restart_stopped();
    let history = server.history("/ch/general/history");
    let ids: Vec<&str> = history.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str()]);
    // And it takes writes again.
    server.publish("general", "after", json!({}));
    assert_eq!(server.history("/ch/general/history").len(), 2);
    server.assert_no_panic();
}

/// Starts a server on `db` that is expected to refuse it: its exit code and stderr.
fn start_refused(db: &Path, blobs: &Path) -> (Option<i32>, String) {
    let mut server = Command::new(BIN)
        .env_clear()
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("DB_PATH", db)
        .env("BLOBS_DIR", blobs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn workshop");
    let status = wait_for(DEADLINE, "the server to give up", || {
        server.try_wait().expect("try_wait")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

/// A backup holds every message and file: it is readable by its owner alone, whatever the
/// umask of the cron job that took it (it was 0644, in a folder of 0755).
#[test]
fn a_backup_and_a_restore_are_readable_by_their_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let hash = upload(&server, b"private file");
    let with_file = json!({"from": "x", "type": "file.shared", "files": [hash]});
    assert_eq!(server.post_json("/ch/c", with_file).status, 201);
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("nightly").join("backup");
    let dir_arg = dir.to_str().unwrap();
    let (db, blobs) = (server.db_path(), server.blobs_dir());
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    let target = tempfile::tempdir().expect("temp dir");
    let (db2, blobs2) = (target.path().join("w.db"), target.path().join("blobs"));
    let out = workshop(&["restore", dir_arg], &db2, &blobs2);
    assert!(out.status.success(), "{out:?}");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for folder in [
        root.path().join("nightly"),
        dir.clone(),
        dir.join("blobs"),
        blobs2.clone(),
    ] {
        assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    }
    let files = [
        dir.join("workshop.db"),
        dir.join("manifest.json"),
        dir.join("blobs").join(&hash),
        db2,
        blobs2.join(&hash),
    ];
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    // A file an older run left where the manifest is written keeps no mode of its own.
    let leftover = dir.join("manifest.json.part");
    std::fs::write(&leftover, b"{}").unwrap();
    std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&dir.join("manifest.json")), 0o600);
    server.assert_no_panic();
}

/// Two backups into one folder (a nightly cron job overlapping a slow run) wrote the same
/// `.part` file, so one could install the other's half-written copy. The second is refused,
/// changes nothing, and says why; so is a restore from a folder a backup is writing.
#[test]
fn a_backup_or_restore_is_refused_while_a_backup_writes_the_folder() {
    let server = Server::start();
    server.publish("c", "msg.first", json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().unwrap();
    let (db, blobs) = (server.db_path(), server.blobs_dir());
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    let manifest = std::fs::read(dir.path().join("manifest.json")).unwrap();
    server.publish("c", "msg.second", json!({}));

    // What a running `workshop backup DIR` holds (README: Backup): a lock on DIR itself.
    let lock = std::fs::File::open(dir.path()).expect("the folder");
    lock.lock().expect("exclusive lock");
    let busy = |out: std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let says = "another backup is being written into";
        assert!(stderr.contains(says), "{stderr}");
    };
    busy(workshop(&["backup", dir_arg], &db, &blobs));
    assert_eq!(
        std::fs::read(dir.path().join("manifest.json")).unwrap(),
        manifest
    );
    assert!(!dir.path().join("workshop.db.part").exists());
    let target = tempfile::tempdir().expect("temp dir");
    let (db2, blobs2) = (target.path().join("w.db"), target.path().join("blobs"));
    busy(workshop(&["restore", dir_arg], &db2, &blobs2));
    assert!(!db2.exists(), "restored while a backup was being written");

    drop(lock);
    let out = workshop(&["backup", dir_arg], &db, &blobs);
    assert!(out.status.success(), "once it has ended: {out:?}");
    // A backup folder that cannot be written (a snapshot, a read-only mount) restores: the
    // lock needs no file in it.
    let frozen = ReadOnly::make(dir.path()).expect("a read-only folder");
    let out = workshop(&["restore", dir_arg], &db2, &blobs2);
    drop(frozen);
    assert!(out.status.success(), "{out:?}");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["blobs", "manifest.json", "workshop.db"],
        "no lock file left"
    );
    server.assert_no_panic();
}

/// The folder, database and blob folder of a server that stored one message and stopped.
fn files_of_a_stopped_server() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, blobs) = (dir.path().join("w.db"), dir.path().join("blobs"));
    let mut server = Server::start_with_options(Options {
        db_path: Some(db.clone()),
        blobs_dir: Some(blobs.clone()),
        ..Options::default()
    });
    server.publish("c", "msg.text", json!({"text": "indexed"}));
    assert!(server.stop().success());
    (dir, db, blobs)
}

/// A database this user cannot write (its mode, an immutable flag, a read-only mount) is
/// opened read-only by SQLite without a word. Start-up said "attempt to write a readonly
/// database" and "retention cleanup failed", naming neither file nor variable; it now says
/// both, in one line after SQLite's own.
#[test]
fn a_database_that_cannot_be_written_stops_start_up_saying_so() {
    let (_dir, db, blobs) = files_of_a_stopped_server();
    let Some(_frozen) = ReadOnly::make(&db) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot make a file read-only under CI"
        );
        eprintln!("SKIPPED: no way to make a file read-only here");
        return;
    };
    let (code, stderr) = start_refused(&db, &blobs);
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("cannot write the database"), "{stderr}");
    assert!(
        last.contains("w.db") && last.contains("DB_PATH"),
        "{stderr}"
    );
}

/// A full disk is the one failure start-up rides over (search catches up later). Any other
/// failure to complete the search index still stops it, with one line naming the database,
/// rather than leaving the server up with searches that fail for good.
#[test]
fn a_search_index_that_cannot_be_completed_stops_start_up() {
    let (_dir, db, blobs) = files_of_a_stopped_server();
    let conn = rusqlite::Connection::open(&db).unwrap();
    // What a crash leaves (the newest message not indexed), and an index that refuses it.
    conn.execute_batch(
        "DELETE FROM message_search WHERE rowid = (SELECT max(row) FROM message_search_ids);
         DELETE FROM message_search_ids WHERE row = (SELECT max(row) FROM message_search_ids);
         CREATE TRIGGER refuse_index BEFORE INSERT ON message_search_ids
         BEGIN SELECT RAISE(FAIL, 'index refused'); END;",
    )
    .unwrap();
    drop(conn);
    let (code, stderr) = start_refused(&db, &blobs);
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot index for search database"),
        "{stderr}"
    );
}

/// A file made read-only for this process until dropped: immutable (`chattr +i`) as root,
/// whom modes do not stop; mode 0444 otherwise.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn make(path: &Path) -> Option<ReadOnly> {
        use std::os::unix::fs::PermissionsExt;
        let chattr = |flag: &str| {
            Command::new("chattr")
                .args([flag, path.to_str().unwrap()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mode = if path.is_dir() { 0o555 } else { 0o444 };
        let frozen = if common::is_root() {
            chattr("+i")
        } else {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok()
        };
        frozen.then(|| ReadOnly(path.to_path_buf()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = Command::new("chattr")
            .args(["-i", self.0.to_str().unwrap()])
            .status();
        let mode = if self.0.is_dir() { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(mode));
    }
}

#[test]
fn no_server_starts_while_a_restore_holds_the_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("w.db");
    // What `workshop restore` holds while it works (README: Backup).
    let lock = std::fs::File::create(dir.path().join("w.db.lock")).expect("lock file");
    lock.lock().expect("exclusive lock");
    let (code, stderr) = start_refused(&db, &dir.path().join("blobs"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("or a restore, is using"), "{stderr}");
    assert!(!db.exists(), "nothing was created");
}

/// A storage error while the server's stderr cannot be written (the log's disk is full, the
/// log pipe's reader died) is answered, and the writer goes on: writes resume once the cause
/// has gone. Logging it with `eprintln!` panicked in the writer thread, which left the server
/// answering reads and /status but refusing every write for good.
#[test]
fn a_storage_error_with_stderr_unwritable_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("w.db");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut server = KilledOnDrop(
        Command::new(BIN)
            .env_clear()
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", &db)
            .env("BLOBS_DIR", dir.path().join("blobs"))
            .stdout(Stdio::piped())
            .stderr(full)
            .spawn()
            .expect("spawn workshop"),
    );
    let server = &mut server.0;
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let port: u16 = first
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect(&first);
    let publish = || {
        request(
            port,
            "POST",
            "/ch/general",
            &[],
            br#"{"from":"a","type":"t"}"#,
        )
    };
    assert_eq!(publish().status, 201);
    // Another process holds SQLite's write lock past the writer's 5 s busy timeout.
    let holder = rusqlite::Connection::open(&db).expect("open");
    holder.execute_batch("BEGIN IMMEDIATE").expect("write lock");
    let refused = publish();
    assert!(
        refused.status >= 500,
        "{}: {}",
        refused.status,
        refused.text()
    );
    assert!(!refused.error().is_empty());
    holder.execute_batch("ROLLBACK").expect("let go");
    drop(holder);
    let after = publish();
    assert_eq!(after.status, 201, "writes resume: {}", after.text());
    common::signal(server.id(), "TERM");
    let status = wait_for(DEADLINE, "the server to stop", || {
        server.try_wait().expect("try_wait")
    });
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop, though stderr is full"
    );
}

/// A server started by hand, killed if a test fails before it stops it.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A backup into the folder the server keeps its files in would replace the live database
/// (`DIR/workshop.db` is `DB_PATH` under the default name) while the server goes on writing
/// to the unlinked old one: refused, as is a restore from there, and nothing changes.
#[test]
fn a_backup_into_the_servers_own_files_is_refused_and_changes_nothing() {
    let state = tempfile::tempdir().expect("state dir");
    let (db, blobs) = (state.path().join("workshop.db"), state.path().join("blobs"));
    let server = Server::start_with_options(Options {
        db_path: Some(db.clone()),
        blobs_dir: Some(blobs.clone()),
        ..Options::default()
    });
    server.publish("general", "before", json!({}));
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let live = inode(&db);
    let state_arg = state.path().to_str().unwrap().to_string();
    let via_dot = format!("{state_arg}/./");
    // Not there yet, inside the blob folder: it was accepted, and its backup ended up among
    // the live blobs.
    let new_in_blobs = blobs.join("nightly").join("backup");
    // Back up out of folders not there yet: the blob folder, and the state folder itself.
    let up_to_blobs = blobs.join("new").join("..");
    let up_to_state = state.path().join("nope").join("..");
    for (command, dir) in [
        ("backup", state_arg.as_str()),
        ("backup", via_dot.as_str()),
        ("backup", blobs.to_str().unwrap()),
        ("backup", new_in_blobs.to_str().unwrap()),
        ("backup", up_to_blobs.to_str().unwrap()),
        ("backup", up_to_state.to_str().unwrap()),
        ("restore", state_arg.as_str()),
    ] {
        let out = workshop(&[command, dir], &db, &blobs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command} {dir}: {stderr}");
        assert!(stderr.contains("holds the server's own files"), "{stderr}");
    }
    assert_eq!(inode(&db), live, "the live database is the same file");
    assert!(!state.path().join("manifest.json").exists());
    assert!(
        !blobs.join("nightly").exists(),
        "nothing made in the blob folder"
    );
    server.publish("general", "after", json!({}));
    assert_eq!(server.history("/ch/general/history").len(), 2);
    // A folder of its own inside the state folder is fine.
    let own = state.path().join("backups");
    let out = workshop(&["backup", own.to_str().unwrap()], &db, &blobs);
    assert!(out.status.success(), "{out:?}");
    server.assert_no_panic();
}

/// A database a newer build wrote (a downgrade) is refused at start-up with one line, as
/// restore refuses its backup: this build would write to tables whose shape it does not know.
#[test]
fn a_database_from_a_newer_build_is_refused() {
    let mut server = Server::start();
    server.publish("general", "kept", json!({}));
    server.stop();
    let db = server.db_path();
    rusqlite::Connection::open(&db)
        .and_then(|c| c.pragma_update(None, "user_version", 99))
        .expect("set a future schema");
    let (code, stderr) = start_refused(&db, &server.blobs_dir());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("schema 99, from a newer workshop"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let version: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .unwrap();
    assert_eq!(version, 99, "left as it was");
}

/// A blob whose bytes no longer match its name (a bad disk, a hand edit) is found by the
/// backup, which hashes what it copies: it fails naming it, instead of carrying the damage
/// into a backup that a restore would then refuse whole.
#[test]
fn a_backup_finds_a_damaged_blob_in_the_servers_folder() {
    let server = Server::start();
    let hash = upload(&server, b"the real content");
    let stored = server.blobs_dir().join(&hash);
    std::fs::write(&stored, b"EVIL content").expect("tamper");
    let dir = server.dir.path().join("backup");
    let out = workshop(
        &["backup", dir.to_str().unwrap()],
        &server.db_path(),
        &server.blobs_dir(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&hash), "names the blob: {stderr}");
    assert!(
        stderr.contains("the server's blob folder holds a damaged file"),
        "{stderr}"
    );
    assert!(
        !dir.join("blobs").join(&hash).exists(),
        "the damage was not copied"
    );
    assert!(
        !dir.join("manifest.json").exists(),
        "no complete backup was claimed"
    );
}

/// Two paths to one database (here a symbolic link) share its lock: a second server through
/// the link refuses to start.
#[test]
fn a_second_server_through_a_link_to_the_database_is_refused() {
    let server = Server::start();
    let link = server.dir.path().join("link.db");
    std::os::unix::fs::symlink(server.db_path(), &link).expect("symlink");
    let (code, stderr) = start_refused(&link, &server.blobs_dir());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("another workshop server"), "{stderr}");
}

/// A second server on a database one is using would store messages the first one's streams
/// never see: it refuses to start, and the first goes on as before.
#[test]
fn a_second_server_refuses_a_database_in_use() {
    let server = Server::start();
    server.publish("general", "first", json!({}));
    let (code, stderr) = start_refused(&server.db_path(), &server.blobs_dir());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("another workshop server"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    server.publish("general", "second", json!({}));
    assert_eq!(server.history("/ch/general/history").len(), 2);
    server.assert_no_panic();
}

#[test]
fn loop_guard_answers_429_with_retry_after_and_announces_once() {
    // 0.1 per second: one at once, then one more every 10 s.
    let server = Server::start_with(&[("WORKSHOP_RATE", "0.1")]);
    let started = Instant::now();
    let publish = |from: &str| {
        server.post_json(
            "/ch/loop",
            json!({"from": from, "type": "chatter", "body": {}}),
        )
    };
    let mut passed = 0;
    let refused = loop {
        let r = publish("agent.a");
        if r.status != 201 {
            break r;
        }
        passed += 1;
        assert!(passed < 50, "never throttled");
    };
    let refill = (started.elapsed().as_secs_f64() * 0.1).ceil() as usize;
    assert!((1..=1 + refill).contains(&passed), "{passed} passed");
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert!(refused.error().contains("WORKSHOP_RATE"));
    for _ in 0..3 {
        assert_eq!(publish("agent.a").status, 429);
    }
    assert_eq!(publish("agent.b").status, 201, "others are not held back");
    let task = json!({"from": "agent.a", "title": "more", "ch": "loop"});
    assert_eq!(server.post_json("/tasks", task).status, 429);

    let history = server.history("/ch/loop/history");
    let throttled: Vec<&Value> = history
        .iter()
        .filter(|m| m["type"] == "workshop.throttled")
        .collect();
    assert_eq!(throttled.len(), 1, "announced once a minute: {throttled:?}");
    assert_eq!(throttled[0]["from"], "workshop");
    assert_eq!(throttled[0]["body"]["agent"], "agent.a");
    let chatter = history.iter().filter(|m| m["type"] == "chatter").count();
    assert_eq!(chatter, passed + 1, "refused messages are not stored");
    let metrics = scrape(&server);
    let throttled_publish = "workshop_throttled_total{request=\"publish\"}";
    assert_eq!(sample(&metrics, throttled_publish), 4.0);
    let throttled_tasks = "workshop_throttled_total{request=\"task_create\"}";
    assert_eq!(sample(&metrics, throttled_tasks), 1.0);
    assert_eq!(
        sample(
            &metrics,
            "workshop_http_requests_total{code=\"4xx\",route=\"publish\"}"
        ),
        4.0
    );
    server.assert_no_panic();
}

#[test]
fn cli_waits_out_a_429_and_publishes() {
    // 0.2 per second: bursts of 2, then one more every 5 s.
    let server = Server::start_with(&[("WORKSHOP_RATE", "0.2")]);
    let throttled = || {
        let body = json!({"from": "cli.bot", "type": "spam", "body": {}});
        server.post_json("/ch/loop", body).status == 429
    };
    let mut tries = 0;
    while !throttled() {
        tries += 1;
        assert!(tries < 50, "never throttled");
    }
    let started = Instant::now();
    let out = server.run("cli.bot", &["pub", "loop", "made.it", "{\"n\":1}"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not wait"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("throttled"), "{stderr}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let history = server.history("/ch/loop/history?type=made.it");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["id"], id.as_str());
}

#[test]
fn version_is_in_the_flag_and_in_status_and_backup_has_help() {
    let server = Server::start();
    let out = server.ok("anyone", &["--version"]);
    assert_eq!(out, format!("workshop {VERSION}"));
    assert_eq!(server.status()["version"], VERSION);
    for sub in ["backup", "restore"] {
        let help = server.ok("anyone", &[sub, "--help"]);
        assert!(help.contains("Example"), "{help}");
        assert!(help.contains("--db") && help.contains("--blobs"), "{help}");
    }
}
