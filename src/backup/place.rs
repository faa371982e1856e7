//! Where the server's files are: the one-server lock beside the database, and whether a
//! backup folder is apart from the files it copies.
use super::DB_FILE;
use std::fs::{self, File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Marks `db` as in use by this server for as long as the returned file stays open.
pub fn mark_in_use(db: &Path) -> Result<File, String> {
    lock(db, |db| {
        format!(
            "another workshop server, or a restore, is using {}: stop it first, or give \
             this server a DB_PATH of its own",
            db.display()
        )
    })
}

/// Takes `db`'s lock (exclusively: a server and a restore both do), held until the returned
/// file is dropped; `busy` says what to do when another process holds it.
pub(super) fn lock(db: &Path, busy: fn(&Path) -> String) -> Result<File, String> {
    let lock = open_lock(db)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(busy(db)),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", lock_path(db).display())),
    }
}

/// Takes the backup folder `dir`'s lock, held until the returned handle is dropped: the
/// folder itself is locked, so a read-only copy of a backup (a snapshot, a read-only mount)
/// can be restored from, and nothing is left in it.
pub(super) fn lock_folder(dir: &Path) -> Result<File, String> {
    let folder = File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    match folder.try_lock() {
        Ok(()) => Ok(folder),
        Err(TryLockError::WouldBlock) => Err(format!(
            "another backup is being written into {}: wait for it to end",
            dir.display()
        )),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", dir.display())),
    }
}

fn open_lock(db: &Path) -> Result<File, String> {
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let path = lock_path(db);
    // Read-only is enough to lock: a lock file root left (a restore run as root) still works
    // for a server running as another user.
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .or_else(|_| File::open(&path))
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// `DB_PATH.lock`, beside the file the path resolves to: two paths to one database (a
/// symbolic link, `./w.db` and `w.db`) must share one lock.
fn lock_path(db: &Path) -> PathBuf {
    sibling(&resolved(db), ".lock")
}

/// `db` with its folder (and the file itself, once it exists) resolved through links.
fn resolved(db: &Path) -> PathBuf {
    if let Ok(real) = fs::canonicalize(db) {
        return real;
    }
    match (fs::canonicalize(folder_of(db)), db.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => db.to_path_buf(),
    }
}

/// `db` with `suffix` appended to its file name (`w.db-wal`, `w.db.lock`).
pub(super) fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// Refuses a backup folder that is where the server keeps its files: backing up into the
/// database's own folder replaced the live database with the copy (`DIR/workshop.db` is
/// `DB_PATH` under the default name) while the server went on writing to the old, unlinked
/// file; restoring from it would copy the database onto itself.
pub(super) fn check_apart(dir: &Path, db: &Path, blobs: &Path) -> Result<(), String> {
    let overlaps = match resolved_folder(dir) {
        None => false,
        Some(dir) => {
            let db_folder = fs::canonicalize(folder_of(db)).ok();
            let blobs = fs::canonicalize(blobs).ok();
            db_folder.as_ref() == Some(&dir)
                || blobs.is_some_and(|b| dir.starts_with(&b) || b.starts_with(&dir))
                || is_same_file(&dir.join(DB_FILE), db)
        }
    };
    match overlaps {
        true => Err(format!(
            "{} holds the server's own files ({} or {}): give the backup a folder of its own",
            dir.display(),
            db.display(),
            blobs.display()
        )),
        false => Ok(()),
    }
}

/// `dir` through links, also when it does not exist yet: its nearest existing ancestor
/// resolved, and the rest of the path after it (`blobs/new` is inside the blob folder).
fn resolved_folder(dir: &Path) -> Option<PathBuf> {
    let mut absolute = PathBuf::new();
    for part in std::path::absolute(dir).ok()?.components() {
        match part {
            // `..` goes up from where the path so far really is (through its links), so that
            // `blobs/new/..` is the blob folder, not a folder that is not there.
            Component::ParentDir => {
                absolute = fs::canonicalize(&absolute).unwrap_or(absolute);
                absolute.pop();
            }
            Component::CurDir => {}
            part => absolute.push(part),
        }
    }
    let mut rest = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = fs::canonicalize(at) {
            return Some(rest.iter().rev().fold(real, |path, name| path.join(name)));
        }
        rest.push(at.file_name()?);
        at = at.parent()?;
    }
}

/// The folder a file is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn is_same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}
