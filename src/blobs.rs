//! Content-addressed blob store: `BLOBS_DIR/sha256:<hex>`, written once through a synced
//! temporary file and a rename, so a blob's name always matches its bytes.
use crate::error::ApiError;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

/// A stored blob: its name and size.
pub struct Stored {
    pub hash: String,
    pub size: u64,
    /// False when the same content was already stored.
    pub new: bool,
}

impl BlobStore {
    /// Creates the folders and removes temporary files a crash left behind.
    pub fn open(dir: &Path) -> Result<BlobStore, String> {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        remove_leftovers(&tmp)?;
        crate::metrics::METRICS.set_blob_bytes(stored_bytes(dir));
        Ok(BlobStore {
            dir: dir.to_path_buf(),
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    /// The path of a blob; `hash` must already be validated as `sha256:<64 hex>`.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }

    /// Opens a stored blob for reading; `None` when there is none. Any other failure (the
    /// folder's permissions, a failing disk) is logged with its path and answered 500, or
    /// 503 when out of descriptors: a 507 ("insufficient storage") sent the operator off to
    /// look for free space.
    pub fn read(&self, hash: &str) -> Result<Option<File>, ApiError> {
        let path = self.path(hash);
        match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                Err(e.into())
            }
            Err(e) => {
                storage_failed("read", &path, e);
                Err(ApiError::internal(
                    "cannot read the file (details in the server log)",
                ))
            }
        }
    }

    pub fn contains(&self, hash: &str) -> bool {
        self.path(hash).is_file()
    }

    /// Streams `body` to disk while hashing it; refuses (413) past `limit` bytes and stores
    /// nothing then. Only a complete, synced file is renamed into place.
    pub fn put(&self, body: &mut dyn Read, limit: u64) -> Result<Stored, ApiError> {
        let tmp_path = self.new_tmp_path();
        let (hash, size) = self.write_tmp(body, limit, &tmp_path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp_path);
        })?;
        let new = self.install(&tmp_path, &hash)?;
        Ok(Stored { hash, size, new })
    }

    /// A temporary file name no other upload uses, in this process or another one.
    fn new_tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}-{n}.part", std::process::id()))
    }

    /// Renames the synced temporary file to its blob name, durably; whether it is new.
    fn install(&self, tmp_path: &Path, hash: &str) -> Result<bool, ApiError> {
        let final_path = self.path(hash);
        let new = !final_path.exists();
        if let Err(err) = fs::rename(tmp_path, &final_path) {
            let _ = fs::remove_file(tmp_path);
            return Err(storage_failed("rename a file to", &final_path, err));
        }
        // The rename is durable once the folder itself is synced.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|err| storage_failed("sync", &self.dir, err))?;
        Ok(new)
    }

    /// Creates the temporary file `path`, and the folder for it again if it has gone (an
    /// operator cleaning up by hand).
    fn create_tmp(&self, path: &Path) -> Result<File, ApiError> {
        let created = match File::create(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.tmp).and_then(|()| File::create(path))
            }
            created => created,
        };
        created.map_err(|err| storage_failed("create", path, err))
    }

    /// Writes and syncs the temporary file; its name and size.
    fn write_tmp(
        &self,
        body: &mut dyn Read,
        limit: u64,
        path: &Path,
    ) -> Result<(String, u64), ApiError> {
        let mut file = self.create_tmp(path)?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = read_upload(body, &mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limit {
                return Err(ApiError::too_large(format!(
                    "file is over the {limit} byte limit"
                )));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|err| storage_failed("write", path, err))?;
        }
        file.sync_all()
            .map_err(|err| storage_failed("sync", path, err))?;
        let hash = format!("sha256:{}", hex(&hasher.finalize()));
        Ok((hash, size))
    }
}

/// A failure of the blob folder, said on stderr with its path (which no client is shown),
/// and answered as what it is (`ApiError::from`): nothing else would tell the operator.
fn storage_failed(doing: &str, path: &Path, err: std::io::Error) -> ApiError {
    let line = format!("file storage: cannot {doing} {}: {err}", path.display());
    // One kind per action, folder and error: each upload's temporary file has its own name.
    let key = format!("{doing} {}: {err}", path.parent().unwrap_or(path).display());
    crate::repeats::say_storage_error(&key, &line);
    ApiError::from(err)
}

/// Removes the temporary files a crash left in `tmp`.
fn remove_leftovers(tmp: &Path) -> Result<(), String> {
    let leftovers = fs::read_dir(tmp).map_err(|e| format!("cannot read {}: {e}", tmp.display()))?;
    for entry in leftovers.flatten() {
        let _ = fs::remove_file(entry.path());
    }
    Ok(())
}

/// The next piece of an upload into `buf` (0 at its end), retried when interrupted.
fn read_upload(body: &mut dyn Read, buf: &mut [u8]) -> Result<usize, ApiError> {
    loop {
        match body.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let message = format!("could not read the upload: {e}");
                return Err(ApiError::bad_request(message));
            }
            Ok(n) => return Ok(n),
        }
    }
}

/// The total size of the blobs in `dir` (one listing, at start-up).
fn stored_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sha256:"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Copies the blob file `from` into the new file `to` (readable by its owner alone, like
/// everything a backup writes), synced; returns the content's SHA-256 in hex (a backup's
/// copy, checked against its name on restore).
pub(crate) fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<String> {
    let mut input = File::open(from)?;
    let mut output = private_file(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    Ok(hex(&hasher.finalize()))
}

/// Creates (or truncates) `path` readable and writable by its owner alone, whatever the
/// umask: a backup of the database, run as root from cron, was readable by every user.
pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above applies to a new file only: one left by an older run keeps its own.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Creates `dir` and its missing parents, each new one for its owner alone (0700).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `sha256:<64 lowercase hex>`, the only blob name there is.
pub fn valid_hash(hash: &str) -> bool {
    hash.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}
