//! `workshop backup DIR` and `workshop restore DIR`: a consistent copy of a running server's
//! state without stopping it, and putting such a copy back.
//!
//! DIR holds `workshop.db` (taken in one step of SQLite's online backup API, so it is one
//! snapshot even while the server commits), `blobs/` (blobs are immutable, so only missing
//! ones are copied; they are copied after the snapshot, so every blob it names is there) and
//! `manifest.json`, written last: a DIR without it holds no complete backup.
//!
//! A server and a restore each hold `DB_PATH.lock` exclusively (`flock`): neither starts
//! while the other, or another server, uses the database (a second server's messages would
//! never reach the first's streams). A backup, and a restore from DIR, lock DIR itself
//! the same way: two backups into one DIR (a cron job overlapping a slow one) wrote the same
//! `.part` file and could install each other's half-written copy.
//! The kernel drops a lock when its process dies.
mod place;

pub use place::mark_in_use;

use crate::blobs::{copy_hashing, private_dir, private_file, valid_hash};
use crate::store::schema;
use place::{check_apart, lock, lock_folder, sibling};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DB_FILE: &str = "workshop.db";
const BLOBS: &str = "blobs";
const MANIFEST: &str = "manifest.json";
/// The manifest layout this build writes and reads.
const FORMAT: u32 = 1;
/// How many times (50 ms apart) a copy retries a locked database: 30 s in all.
const BUSY_TRIES: usize = 600;

/// What a backup holds, in `manifest.json`; restore checks the copy against it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The workshop version that took it.
    pub version: String,
    /// Unix seconds when the snapshot was taken.
    pub created: f64,
    /// The database's schema version (`PRAGMA user_version`).
    pub schema: i64,
    pub last_message_id: Option<String>,
    pub messages: u64,
    pub tasks: u64,
    pub blobs: u64,
}

impl Manifest {
    /// What a database copy must match: its schema, last message and row counts.
    fn contents(&self) -> (i64, &Option<String>, u64, u64) {
        (
            self.schema,
            &self.last_message_id,
            self.messages,
            self.tasks,
        )
    }
}

/// Copies the database at `db` and the blobs in `blobs` into `dir`, while a server may be
/// writing to them.
pub fn backup(db: &Path, blobs: &Path, dir: &Path) -> Result<Manifest, String> {
    if !db.is_file() {
        return Err(format!("no database at {}", db.display()));
    }
    check_apart(dir, db, blobs)?;
    let dir_blobs = dir.join(BLOBS);
    private_dir(&dir_blobs).map_err(|e| format!("cannot create {}: {e}", dir_blobs.display()))?;
    let _writing = lock_folder(dir)?;
    let source = schema::open_reader(db).map_err(|e| db_error(db, e))?;
    let part = dir.join(format!("{DB_FILE}.part"));
    let _ = fs::remove_file(&part);
    copy_database(&source, &part)?;
    let created = crate::store::now();
    let mut manifest = describe(&part, created)?;
    // Each blob is hashed as it is copied anyway: one whose bytes no longer match its name is
    // found here, when it can still be mended, not at a restore.
    manifest.blobs = copy_missing_blobs(blobs, &dir_blobs, DAMAGED_STORE)?;
    // The old manifest goes first: between the two renames DIR has no complete backup.
    remove_if_present(&dir.join(MANIFEST))?;
    let db_copy = dir.join(DB_FILE);
    fs::rename(&part, &db_copy)
        .map_err(|e| format!("cannot install {}: {e}", db_copy.display()))?;
    write_manifest(dir, &manifest)?;
    Ok(manifest)
}

/// Installs the backup in `dir` as the database `db` and blobs `blobs`, after checking it.
pub fn restore(dir: &Path, db: &Path, blobs: &Path) -> Result<Manifest, String> {
    check_apart(dir, db, blobs)?;
    let _reading = lock_folder(dir)?;
    let (manifest, copy) = checked_backup(dir)?;
    let _lock = lock(db, |db| {
        format!(
            "a server is using {}: stop it before restoring",
            db.display()
        )
    })?;
    // Blobs first: the restored database must never name a blob that is not there yet.
    restore_blobs(&dir.join(BLOBS), blobs)?;
    install_database(&copy, db)?;
    Ok(manifest)
}

/// The manifest of the backup in `dir` and its database copy, checked against each other.
fn checked_backup(dir: &Path) -> Result<(Manifest, PathBuf), String> {
    let manifest = read_manifest(dir)?;
    let copy = dir.join(DB_FILE);
    check_copy(&copy, &manifest)?;
    Ok((manifest, copy))
}

/// Copies the backup's blobs into `blobs`, each verified against its name.
fn restore_blobs(from: &Path, blobs: &Path) -> Result<(), String> {
    private_dir(blobs).map_err(|e| format!("cannot create {}: {e}", blobs.display()))?;
    copy_missing_blobs(from, blobs, DAMAGED_BACKUP)?;
    Ok(())
}

/// Replaces the database `db` with the checked `copy`.
fn install_database(copy: &Path, db: &Path) -> Result<(), String> {
    let source = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_error(copy, e))?;
    // The old database is never opened: it may be what is being replaced because it is
    // damaged ("file is not a database"). The copy goes to a new file beside it, the old
    // WAL and shared-memory files go (a WAL left beside the new file would be replayed
    // into it), then the copy takes the database's name. No server can open it meanwhile:
    // the exclusive lock is held. Interrupted before the rename, the old database lacks its
    // WAL's last commits; run the restore again.
    let part = sibling(db, ".part");
    remove_if_present(&part)?;
    copy_database(&source, &part)?;
    drop(source);
    for suffix in ["-wal", "-shm"] {
        remove_if_present(&sibling(db, suffix))?;
    }
    fs::rename(&part, db).map_err(|e| format!("cannot install {}: {e}", db.display()))?;
    sync_parent(db)
}

/// Makes a rename in `path`'s folder durable.
fn sync_parent(path: &Path) -> Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", parent.display())),
        None => Ok(()),
    }
}

/// Copies the database `source` into `to`, a new file.
fn copy_database(source: &Connection, to: &Path) -> Result<(), String> {
    // Made here, empty, so SQLite writes into a file only its owner can read.
    private_file(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut target = Connection::open(to).map_err(|e| db_error(to, e))?;
    copy_all_pages(source, &mut target).map_err(|e| format!("backup failed: {e}"))?;
    // A copy in WAL mode would grow -wal and -shm files beside it whenever it is read; a
    // backup is one self-contained file.
    target
        .pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| db_error(to, e))?;
    drop(target);
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", to.display()))
}

/// One backup step of every page: a single read transaction, so one consistent snapshot
/// (the server's writer is not held up: WAL lets it commit meanwhile). Steps of a few pages
/// would restart whenever the server commits, and never end under steady writes.
fn copy_all_pages(source: &Connection, target: &mut Connection) -> rusqlite::Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(source, target)?;
    for _ in 0..BUSY_TRIES {
        if backup.step(-1)? == StepResult::Done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the database stayed locked".into()),
    ))
}

/// The manifest of a database copy, read from the copy itself.
fn describe(copy: &Path, created: f64) -> Result<Manifest, String> {
    let conn = schema::open_reader(copy).map_err(|e| db_error(copy, e))?;
    let read = || -> rusqlite::Result<Manifest> {
        let (messages, tasks) = crate::store::read::counts(&conn)?;
        Ok(Manifest {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_string(),
            created,
            schema: conn.pragma_query_value(None, "user_version", |row| row.get(0))?,
            last_message_id: conn
                .query_row("SELECT max(id) FROM messages", [], |row| row.get(0))
                .optional()?
                .flatten(),
            messages,
            tasks,
            blobs: 0,
        })
    };
    read().map_err(|e| db_error(copy, e))
}

fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} has no complete backup ({}: {e})",
            dir.display(),
            path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a workshop manifest: {e}", path.display()))?;
    readable(manifest, &path)
}

/// The manifest, if this build can restore what it describes.
fn readable(manifest: Manifest, path: &Path) -> Result<Manifest, String> {
    if manifest.format != FORMAT {
        return Err(format!(
            "{} is backup format {}; this workshop reads format {FORMAT}",
            path.display(),
            manifest.format
        ));
    }
    if manifest.schema > schema::VERSION as i64 {
        return Err(format!(
            "the backup has schema {} from workshop {}; this build knows up to {}: upgrade first",
            manifest.schema,
            manifest.version,
            schema::VERSION
        ));
    }
    Ok(manifest)
}

/// `PRAGMA integrity_check`, then the copy must be what the manifest says.
fn check_copy(copy: &Path, manifest: &Manifest) -> Result<(), String> {
    check_integrity(copy)?;
    let found = describe(copy, manifest.created)?;
    if found.contents() != manifest.contents() {
        return Err(format!(
            "{} does not match its manifest: {} messages (last {:?}), {} tasks, schema {}",
            copy.display(),
            found.messages,
            found.last_message_id,
            found.tasks,
            found.schema
        ));
    }
    Ok(())
}

fn check_integrity(copy: &Path) -> Result<(), String> {
    let conn = schema::open_reader(copy).map_err(|e| db_error(copy, e))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| db_error(copy, e))?;
    match verdict.as_str() {
        "ok" => Ok(()),
        _ => Err(format!(
            "{} fails its integrity check: {verdict}",
            copy.display()
        )),
    }
}

/// Copies each blob of `from` that `to` lacks (through a temporary name, so a blob under
/// its final name is always whole); with `verify`, each must hash to its name. Returns how
/// many blobs `from` holds.
/// What a blob whose content does not match its name means, copied out of the server's
/// folder (a backup) or out of a backup (a restore).
const DAMAGED_STORE: &str = "the server's blob folder holds a damaged file: put it back from \
     an earlier backup or remove it, then back up again";
const DAMAGED_BACKUP: &str = "the backup is damaged";

fn copy_missing_blobs(from: &Path, to: &Path, damaged: &str) -> Result<u64, String> {
    let entries = match fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", from.display())),
    };
    let mut held = 0;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_hash(&name) {
            continue;
        }
        held += 1;
        copy_if_missing(&entry.path(), to, &name, damaged)?;
    }
    File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", to.display()))?;
    Ok(held)
}

/// Copies the blob `name` at `from` into the folder `to`, unless it is already there.
fn copy_if_missing(from: &Path, to: &Path, name: &str, damaged: &str) -> Result<(), String> {
    let target = to.join(name);
    if target.exists() {
        return Ok(());
    }
    let part = to.join(format!("{name}.part"));
    copy_blob(from, &part, name, damaged)
        .and_then(|()| fs::rename(&part, &target).map_err(|e| e.to_string()))
        .map_err(|e| {
            let _ = fs::remove_file(&part);
            format!("cannot copy blob {name}: {e}")
        })
}

fn copy_blob(from: &Path, to: &Path, name: &str, damaged: &str) -> Result<(), String> {
    let actual = copy_hashing(from, to).map_err(|e| e.to_string())?;
    match name.strip_prefix("sha256:") == Some(actual.as_str()) {
        true => Ok(()),
        false => Err(format!("its content hashes to sha256:{actual}: {damaged}")),
    }
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(manifest).map_err(|e| e.to_string())? + "\n";
    replace_manifest(dir, &path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes `text` as the manifest at `path` in `dir` durably: a reader sees the old file or
/// the whole new one, never a part.
fn replace_manifest(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    let part = dir.join(format!("{MANIFEST}.part"));
    let mut file = private_file(&part)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&part, path)?;
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

fn db_error(path: &Path, e: rusqlite::Error) -> String {
    format!("database {}: {e}", path.display())
}
