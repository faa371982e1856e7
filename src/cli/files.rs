//! `workshop upload` and `workshop download`, and the uploads `pub --file` and `task done
//! --file` make: files travel by their `sha256:<hex>` name, and a download is checked
//! against it before it is kept.
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::client::{CONNECT_TIMEOUT, CliError, Client, Result, from_ureq, read_json};
use super::output::emit;

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// `sha256:<64 hex>` (the `sha256:` may be left off)
    hash: String,
    /// Output file (`-` for stdout)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// File transfers' own HTTP agent, and what a stall is. No deadline on a whole transfer (a
/// 100 MiB file on a slow link takes as long as it takes), but each socket read and write
/// fails after `WORKSHOP_TRANSFER_STALL` with no byte moved. No connection is kept for reuse:
/// ureq clears the timeouts of a connection it keeps and, reusing it, sets only the body's
/// read timeout again, so a file went out and its answer was awaited with no timeout at all
/// (`upload a b` hung for good on a hub that stopped reading the second).
struct Transfers<'a> {
    client: &'a Client,
    agent: ureq::Agent,
    stall: Duration,
}

impl Transfers<'_> {
    fn new(client: &Client) -> Transfers<'_> {
        let stall = client.limits().transfer_stall;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(stall)
            .timeout_write(stall)
            .max_idle_connections(0)
            .build();
        Transfers {
            client,
            agent,
            stall,
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent.request(method, &self.client.url(path))
    }

    /// A transfer's failure: one that stalled says so (exit 5), the rest as `from_ureq` has
    /// them.
    fn failed(&self, what: &str, err: ureq::Error) -> CliError {
        match &err {
            ureq::Error::Transport(t) if is_timeout(t) => self.stalled(what),
            _ => from_ureq(err),
        }
    }

    fn stalled(&self, what: &str) -> CliError {
        let secs = self.stall.as_secs_f64();
        CliError::unreachable(format!("{what} stalled: nothing moved for {secs} s"))
    }

    /// A download's body read that failed: it stalled, or was cut off.
    fn read_failed(&self, e: &io::Error) -> CliError {
        match is_timeout_kind(e.kind()) {
            true => self.stalled("download"),
            false => CliError::unreachable(format!("download interrupted: {e}")),
        }
    }
}

/// Whether a transport failure is a socket timeout.
fn is_timeout(t: &ureq::Transport) -> bool {
    let source = std::error::Error::source(t).and_then(|e| e.downcast_ref::<io::Error>());
    source.is_some_and(|e| is_timeout_kind(e.kind()))
}

/// A socket timeout, which Linux reports as `WouldBlock`.
fn is_timeout_kind(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

pub fn upload(client: &Client, paths: &[PathBuf]) -> Result<()> {
    let transfers = Transfers::new(client);
    for path in paths {
        emit(&upload_file(&transfers, path)?)?;
    }
    Ok(())
}

/// Uploads `paths` and attaches them to a message or task result: returns their hashes, and
/// names them in `target` (see `name_files`).
pub fn attach(client: &Client, paths: &[PathBuf], target: &mut Value) -> Result<Vec<String>> {
    let transfers = Transfers::new(client);
    let hashes: Vec<String> = paths
        .iter()
        .map(|p| upload_file(&transfers, p))
        .collect::<Result<_>>()?;
    name_files(target, &hashes, paths);
    Ok(hashes)
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

/// Streams one file to `POST /files`; returns its `sha256:<hex>` name. A file that cannot be
/// read is a local I/O failure (exit 1), as the exit-status table says.
fn upload_file(transfers: &Transfers, path: &Path) -> Result<String> {
    let file = File::open(path)
        .map_err(|e| CliError::failure(format!("cannot read {}: {e}", path.display())))?;
    let len = file.metadata()?.len();
    let resp = transfers
        .request("POST", "/files")
        .set("Content-Type", "application/octet-stream")
        .set("Content-Length", &len.to_string())
        .send(file)
        .map_err(|e| transfers.failed("upload", e))?;
    let reply = read_json(resp)?;
    reply
        .get("hash")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CliError::failure(format!("upload reply has no hash: {reply}")))
}

pub fn download(client: &Client, args: DownloadArgs) -> Result<()> {
    let name = blob_name(&args.hash)?;
    let output = args.output.filter(|p| p.as_os_str() != "-");
    if output.is_none() && io::stdout().is_terminal() {
        return Err(CliError::usage(
            "refusing to write a file to the terminal: give -o PATH, or redirect stdout",
        ));
    }
    let transfers = Transfers::new(client);
    let resp = transfers
        .request("GET", &format!("/files/{name}"))
        .call()
        .map_err(|e| transfers.failed("download", e))?;
    let mut body = resp.into_reader();
    let read_failed = |e: &io::Error| transfers.read_failed(e);
    match output {
        None => {
            let got = copy_hashing(&mut body, &mut io::stdout().lock(), read_failed)?;
            check_hash(&name, &got)
        }
        Some(path) => save_verified(&mut body, &name, &path, read_failed),
    }
}

/// Writes beside `path` and renames only once verified: no half or bad file appears.
fn save_verified(
    body: &mut impl Read,
    name: &str,
    path: &Path,
    read_failed: impl Fn(&io::Error) -> CliError,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = File::create(&tmp)
        .map_err(CliError::from)
        .and_then(|mut f| {
            let got = copy_hashing(body, &mut f, read_failed)?;
            f.sync_all()?;
            check_hash(name, &got)
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(CliError::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Accepts `sha256:<64 hex>` or the bare hex; anything else is a usage error (and never
/// reaches a URL).
fn blob_name(hash: &str) -> Result<String> {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    } else {
        Err(not_a_hash(hash))
    }
}

fn not_a_hash(hash: &str) -> CliError {
    CliError::usage(format!("not a file hash (want sha256:<64 hex>): {hash}"))
}

/// Copies everything, returning the `sha256:<hex>` of what was copied; a read that fails
/// is the error `read_failed` makes of it.
fn copy_hashing(
    from: &mut impl Read,
    to: &mut impl Write,
    read_failed: impl Fn(&io::Error) -> CliError,
) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_some(from, &mut buf).map_err(|e| read_failed(&e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    to.flush()?;
    Ok(format!("sha256:{}", crate::blobs::hex(&hasher.finalize())))
}

/// One read, tried again when interrupted.
fn read_some(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match from.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

fn check_hash(want: &str, got: &str) -> Result<()> {
    if want == got {
        Ok(())
    } else {
        Err(corrupt(want, got))
    }
}

fn corrupt(want: &str, got: &str) -> CliError {
    CliError::failure(format!(
        "downloaded bytes hash to {got}, not {want}: the stored file is corrupt"
    ))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    path.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let got = copy_hashing(&mut &b"test"[..], &mut out, |e| {
            CliError::failure(e.to_string())
        });
        let got = got.unwrap();
        assert_eq!(
            got,
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(out, b"test");
    }

    #[test]
    fn downloads_are_staged_beside_their_target() {
        let tmp = temp_path(Path::new("/data/report.pdf"));
        assert_eq!(tmp.parent(), Some(Path::new("/data")));
        assert!(tmp.to_string_lossy().ends_with(".part"), "{tmp:?}");
        assert!(check_hash("sha256:aa", "sha256:bb").is_err());
    }
}
