//! One function per client subcommand (all but `work`): build the request, print the reply.
//! Creating commands print the new id; the others print the server's JSON reply on one line.
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::client::{CliError, Client, Result, seg};
use super::format;
use super::idempotent;
use super::sse::{self, Stream};

pub fn publish(
    client: &Client,
    ch: &str,
    kind: &str,
    body: Option<String>,
    files: &[PathBuf],
    reply_to: Option<String>,
    to: Vec<String>,
) -> Result<()> {
    let from = client.agent()?;
    let body = match body {
        Some(text) => json_arg(&text, "BODY")?,
        None => json!({}),
    };
    let mut body = body;
    let mut msg = json!({"from": from, "type": kind});
    if !files.is_empty() {
        let hashes = upload_all(client, files)?;
        name_files(&mut body, &hashes, files);
        msg["files"] = json!(hashes);
    }
    msg["body"] = body;
    if let Some(r) = reply_to {
        msg["reply_to"] = json!(r);
    }
    // One addressee is sent as a plain identity, several as a list.
    match to.as_slice() {
        [] => {}
        [one] => msg["to"] = json!(one),
        many => msg["to"] = json!(many),
    }
    let reply = idempotent::post(client, &format!("/ch/{}", seg(ch)), &msg)?;
    emit(&id_of(&reply)?)
}

pub struct TailQuery {
    pub ch: Option<String>,
    pub kind: Option<String>,
    pub since: Option<String>,
    /// Print this many stored messages before following.
    pub last: Option<u32>,
}

pub fn tail(client: &Client, q: TailQuery, pretty: bool) -> Result<()> {
    let colour = pretty && colour_wanted();
    let print = |line: &str| -> Result<()> {
        if pretty {
            match serde_json::from_str::<Value>(line) {
                Ok(envelope) => emit(&format::message(&envelope, colour)),
                Err(_) => emit(line),
            }
        } else {
            emit(line)
        }
    };
    // Without --since, start at the newest stored message rather than "live": that way a
    // reconnect that happens before anything was printed still replays what it missed.
    let mut cursor = match q.since {
        Some(id) => id,
        None => sse::newest_id(client, q.ch.as_deref())?,
    };
    if let Some(n) = q.last {
        let text = client.get_text(
            &history_path(q.ch.as_deref()),
            &[("n", n.to_string())]
                .into_iter()
                .chain(q.kind.clone().map(|k| ("type", k)))
                .collect::<Vec<_>>(),
        )?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            print(line)?;
            // Anything newer than the cursor was printed here: the stream starts after it.
            if let Some(id) = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                .filter(|id| *id > cursor)
            {
                cursor = id;
            }
        }
    }
    let path = match &q.ch {
        Some(ch) => format!("/ch/{}", seg(ch)),
        None => "/".to_string(),
    };
    let stream = Stream {
        path,
        type_prefix: q.kind,
        cursor: Some(cursor),
    };
    sse::follow(
        client,
        stream,
        |event| match event.event.as_deref() {
            Some("gap") => {
                eprintln!("workshop: {}", sse::gap_notice(&event.data));
                ControlFlow::Continue(())
            }
            _ => match print(&event.data) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(Err(e)),
            },
        },
        || {},
    )
}

pub struct HistoryQuery {
    pub ch: Option<String>,
    pub n: Option<u32>,
    pub since: Option<String>,
    pub before: Option<String>,
    pub kind: Option<String>,
}

pub fn history(client: &Client, q: HistoryQuery, pretty: bool) -> Result<()> {
    let path = history_path(q.ch.as_deref());
    let mut query = Vec::new();
    if let Some(n) = q.n {
        query.push(("n", n.to_string()));
    }
    push_opt(&mut query, "since", q.since);
    push_opt(&mut query, "before", q.before);
    push_opt(&mut query, "type", q.kind);
    emit_envelopes(&client.get_text(&path, &query)?, pretty)
}

/// Prints an NDJSON answer of envelopes: each line as it came, or with `pretty` one readable
/// line per message (history, search, thread).
pub fn emit_envelopes(ndjson: &str, pretty: bool) -> Result<()> {
    let colour = pretty && colour_wanted();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if pretty => emit(&format::message(&v, colour))?,
            _ => emit(line)?,
        }
    }
    Ok(())
}

/// Where a channel's stored messages are read (or every channel's, without one).
pub fn history_path(ch: Option<&str>) -> String {
    match ch {
        Some(ch) => format!("/ch/{}/history", seg(ch)),
        None => "/history".to_string(),
    }
}

pub struct NewTask {
    pub title: String,
    pub context: Option<String>,
    pub for_agent: Option<String>,
    pub ch: Option<String>,
    pub priority: Option<i64>,
    pub delay: Option<f64>,
    pub max_attempts: Option<u32>,
}

pub fn task_create(client: &Client, t: NewTask) -> Result<()> {
    let mut req = json!({"from": client.agent()?, "title": t.title});
    if let Some(c) = t.context {
        req["context"] = json_arg(&c, "--context")?;
    }
    set_opt(&mut req, "for", t.for_agent);
    set_opt(&mut req, "ch", t.ch);
    set_opt(&mut req, "priority", t.priority);
    set_opt(&mut req, "delay_s", t.delay);
    set_opt(&mut req, "max_attempts", t.max_attempts);
    let reply = idempotent::post(client, "/tasks", &req)?;
    emit(&id_of(&reply)?)
}

pub fn task_list(
    client: &Client,
    status: Option<String>,
    for_agent: Option<String>,
    ch: Option<String>,
    n: Option<u32>,
    pretty: bool,
) -> Result<()> {
    let mut query = Vec::new();
    push_opt(&mut query, "status", status);
    push_opt(&mut query, "for", for_agent);
    push_opt(&mut query, "ch", ch);
    if let Some(n) = n {
        query.push(("n", n.to_string()));
    }
    let tasks = client.get_json("/tasks", &query)?;
    let tasks = tasks
        .as_array()
        .ok_or_else(|| CliError::failure("server sent a task list that is not an array"))?;
    if pretty {
        if tasks.is_empty() {
            return Ok(());
        }
        for line in format::task_table(tasks, format::now()) {
            emit(&line)?;
        }
    } else {
        for t in tasks {
            emit(&t.to_string())?;
        }
    }
    Ok(())
}

/// One JSON line, like every other command; `--pretty` indents it for reading.
pub fn task_show(client: &Client, id: &str, pretty: bool) -> Result<()> {
    let task = client.get_json(&format!("/tasks/{}", seg(id)), &[])?;
    if pretty {
        emit(&serde_json::to_string_pretty(&task).unwrap_or_else(|_| task.to_string()))
    } else {
        emit(&task.to_string())
    }
}

pub fn task_claim(client: &Client, id: &str, lease: Option<f64>) -> Result<()> {
    let mut body = json!({});
    set_opt(&mut body, "lease_s", lease);
    task_action(client, id, "claim", body)
}

/// `POST /tasks/claim`: prints the claimed task, or exits 3 when there is none.
pub fn task_next(
    client: &Client,
    ch: Option<String>,
    lease: Option<f64>,
    wait: Option<f64>,
) -> Result<()> {
    let mut body = json!({"from": client.agent()?});
    set_opt(&mut body, "ch", ch);
    set_opt(&mut body, "lease_s", lease);
    set_opt(&mut body, "wait_s", wait);
    // The server may hold the request for up to a minute.
    let patience = Duration::from_secs_f64(wait.unwrap_or(0.0).clamp(0.0, 60.0) + 30.0);
    let resp = client
        .request("POST", "/tasks/claim")
        .timeout(patience)
        .send_json(&body)
        .map_err(super::client::from_ureq)?;
    if resp.status() == 204 {
        return Err(CliError::http(404, "no task to claim"));
    }
    let task = resp.into_string()?;
    emit(task.trim())
}

pub fn task_touch(client: &Client, id: &str, lease: Option<f64>) -> Result<()> {
    let mut body = json!({});
    set_opt(&mut body, "lease_s", lease);
    task_action(client, id, "touch", body)
}

pub fn task_retry(client: &Client, id: &str) -> Result<()> {
    task_action(client, id, "retry", json!({}))
}

pub fn task_update(
    client: &Client,
    id: &str,
    fields: Option<String>,
    note: Option<String>,
) -> Result<()> {
    let mut body = match fields {
        Some(text) => match json_arg(&text, "JSON")? {
            Value::Object(map) => map,
            _ => return Err(CliError::usage("JSON: must be an object of fields")),
        },
        None => Map::new(),
    };
    if let Some(note) = note {
        body.insert("note".into(), json!(note));
    }
    if body.is_empty() {
        return Err(CliError::usage(
            "nothing to update: give a JSON object or --note",
        ));
    }
    task_action(client, id, "update", Value::Object(body))
}

pub fn task_done(
    client: &Client,
    id: &str,
    result: Option<String>,
    files: &[PathBuf],
) -> Result<()> {
    let mut body = json!({});
    let mut result = result.map(|r| json_arg(&r, "--result")).transpose()?;
    if !files.is_empty() {
        let hashes = upload_all(client, files)?;
        name_files(result.get_or_insert_with(|| json!({})), &hashes, files);
        body["files"] = json!(hashes);
    }
    if let Some(result) = result {
        body["result"] = result;
    }
    task_action(client, id, "done", body)
}

pub fn task_abandon(
    client: &Client,
    id: &str,
    reason: Option<String>,
    delay: Option<f64>,
) -> Result<()> {
    let mut body = reason_body(reason);
    set_opt(&mut body, "delay_s", delay);
    task_action(client, id, "abandon", body)
}

pub fn task_interrupt(client: &Client, id: &str, reason: Option<String>) -> Result<()> {
    task_action(client, id, "interrupt", reason_body(reason))
}

fn reason_body(reason: Option<String>) -> Value {
    match reason {
        Some(r) => json!({"reason": r}),
        None => json!({}),
    }
}

/// `POST /tasks/:id/<action>` with `from` added to `body`; prints the reply.
fn task_action(client: &Client, id: &str, action: &str, mut body: Value) -> Result<()> {
    body["from"] = json!(client.agent()?);
    let reply = client.post_json(&format!("/tasks/{}/{action}", seg(id)), &body)?;
    emit(&reply.to_string())
}

pub fn upload(client: &Client, paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        emit(&upload_file(client, path)?)?;
    }
    Ok(())
}

/// Records each uploaded file's original name as `file_names: {"sha256:…": "report.csv"}` in
/// a body or result that is a JSON object (and does not use that key itself), so the UI and
/// other agents can offer the file under its name rather than its hash.
fn name_files(target: &mut Value, hashes: &[String], paths: &[PathBuf]) {
    let Value::Object(map) = target else { return };
    if map.contains_key("file_names") {
        return;
    }
    let names: Map<String, Value> = hashes
        .iter()
        .zip(paths)
        .filter_map(|(hash, path)| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((hash.clone(), Value::String(name)))
        })
        .collect();
    map.insert("file_names".into(), Value::Object(names));
}

fn upload_all(client: &Client, paths: &[PathBuf]) -> Result<Vec<String>> {
    paths.iter().map(|p| upload_file(client, p)).collect()
}

/// Streams one file to `POST /files`; returns its `sha256:<hex>` name. A file that cannot be
/// read is a local I/O failure (exit 1), as the exit-status table says.
pub fn upload_file(client: &Client, path: &Path) -> Result<String> {
    let file = File::open(path)
        .map_err(|e| CliError::failure(format!("cannot read {}: {e}", path.display())))?;
    let len = file.metadata()?.len();
    let reply = client.post_reader("/files", file, len)?;
    reply
        .get("hash")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CliError::failure(format!("upload reply has no hash: {reply}")))
}

pub fn download(client: &Client, hash: &str, output: Option<PathBuf>) -> Result<()> {
    let name = blob_name(hash)?;
    let to_stdout = output.as_ref().is_none_or(|p| p.as_os_str() == "-");
    if to_stdout && io::stdout().is_terminal() {
        return Err(CliError::usage(
            "refusing to write a file to the terminal: give -o PATH, or redirect stdout",
        ));
    }
    let resp = client
        .request("GET", &format!("/files/{name}"))
        .call()
        .map_err(super::client::from_ureq)?;
    let mut body = resp.into_reader();
    match output.filter(|p| p.as_os_str() != "-") {
        None => {
            let stdout = io::stdout();
            let got = copy_hashing(&mut body, &mut stdout.lock())?;
            check_hash(&name, &got)
        }
        Some(path) => {
            // Write beside the target, rename only once verified: no half or bad file appears.
            let tmp = temp_path(&path);
            let result = File::create(&tmp)
                .map_err(CliError::from)
                .and_then(|mut f| {
                    let got = copy_hashing(&mut body, &mut f)?;
                    f.sync_all()?;
                    check_hash(&name, &got)
                })
                .and_then(|()| std::fs::rename(&tmp, &path).map_err(CliError::from));
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

/// Accepts `sha256:<64 hex>` or the bare hex; anything else is a usage error (and never
/// reaches a URL).
fn blob_name(hash: &str) -> Result<String> {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    } else {
        Err(CliError::usage(format!(
            "not a file hash (want sha256:<64 hex>): {hash}"
        )))
    }
}

fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::unreachable(format!("download interrupted: {e}"))),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    to.flush()?;
    Ok(format!("sha256:{}", crate::blobs::hex(&hasher.finalize())))
}

fn check_hash(want: &str, got: &str) -> Result<()> {
    if want == got {
        Ok(())
    } else {
        Err(CliError::failure(format!(
            "downloaded bytes hash to {got}, not {want}: the stored file is corrupt"
        )))
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    path.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

pub fn heartbeat(client: &Client, channels: Vec<String>, meta: Option<String>) -> Result<()> {
    let mut body = json!({"from": client.agent()?});
    if !channels.is_empty() {
        body["channels"] = json!(channels);
    }
    if let Some(m) = meta {
        body["meta"] = json_arg(&m, "--meta")?;
    }
    let reply = client.post_json("/presence", &body)?;
    emit(&reply.to_string())
}

pub fn who(client: &Client, pretty: bool) -> Result<()> {
    let rows = client.get_json("/presence", &[])?;
    for row in rows.as_array().into_iter().flatten() {
        emit(&if pretty {
            format::agent(row)
        } else {
            row.to_string()
        })?;
    }
    Ok(())
}

pub fn status(client: &Client) -> Result<()> {
    let status = client.get_json("/status", &[])?;
    emit(&status.to_string())
}

pub fn channels(client: &Client) -> Result<()> {
    let names = client.get_json("/channels", &[])?;
    for name in names.as_array().into_iter().flatten() {
        emit(name.as_str().unwrap_or_default())?;
    }
    Ok(())
}

/// Colour for `--pretty` lines: only on a terminal, and never when `NO_COLOR` is set
/// (no-color.org).
fn colour_wanted() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Parses a JSON argument; `-` reads it from stdin.
pub fn json_arg(text: &str, what: &str) -> Result<Value> {
    let text = if text == "-" {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("{what}: reading stdin: {e}")))?;
        s
    } else {
        text.to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{what}: not JSON ({e}); a string needs JSON quotes: '\"text\"'"
        ))
    })
}

fn id_of(reply: &Value) -> Result<String> {
    reply
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CliError::failure(format!("reply has no id: {reply}")))
}

fn set_opt(body: &mut Value, key: &str, value: Option<impl serde::Serialize>) {
    if let Some(v) = value {
        body[key] = json!(v);
    }
}

fn push_opt(query: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(v) = value {
        query.push((key, v));
    }
}

/// Prints one line to stdout. A closed pipe (`workshop tail | head`) ends the program
/// quietly with status 0, as SIGPIPE would for a C tool.
pub fn emit(line: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    let result = writeln!(out, "{line}").and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_are_normalised_and_checked() {
        let hex64 = "AB".repeat(32);
        assert_eq!(
            blob_name(&hex64).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert!(blob_name("sha256:../../etc/passwd").is_err());
        assert!(blob_name("sha256:abc").is_err());
    }

    #[test]
    fn file_names_go_into_object_bodies_only() {
        let hashes = ["sha256:aa".to_string()];
        let paths = [PathBuf::from("/tmp/out/report.csv")];
        let mut body = json!({"rows": 1});
        name_files(&mut body, &hashes, &paths);
        assert_eq!(body["file_names"], json!({"sha256:aa": "report.csv"}));
        let mut text = json!("just text");
        name_files(&mut text, &hashes, &paths);
        assert_eq!(text, json!("just text"));
        let mut theirs = json!({"file_names": 7});
        name_files(&mut theirs, &hashes, &paths);
        assert_eq!(theirs["file_names"], 7);
    }

    #[test]
    fn hashing_copy_matches_known_digest() {
        let mut out = Vec::new();
        let got = copy_hashing(&mut &b"test"[..], &mut out).unwrap();
        assert_eq!(
            got,
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(out, b"test");
    }
}
