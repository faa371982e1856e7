//! `workshop backup DIR` and `workshop restore DIR`: run locally, on the server's files (see
//! `crate::backup`), so they work without the HTTP API and without `sqlite3`.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::client::exit;
use crate::config::{DEFAULT_BLOBS_DIR, DEFAULT_DB_PATH};

pub const BACKUP_HELP: &str = "\
Safe while the server runs and takes writes, and from cron: the database is copied as one \
consistent snapshot (SQLite's online backup), then only the blobs DIR lacks. DIR/manifest.json, \
written last, is printed on success.

Example:
  DB_PATH=/var/lib/workshop/w.db BLOBS_DIR=/var/lib/workshop/blobs workshop backup /backups/workshop";

pub const RESTORE_HELP: &str = "\
Stop the server first: restore refuses while a server uses the target. Checks the manifest and \
PRAGMA integrity_check, copies the missing blobs (each checked against its name), then copies \
the database beside the old one and renames it into place, removing the old -wal and -shm files.

Example:
  systemctl stop workshop && workshop restore /backups/workshop && systemctl start workshop";

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The backup folder
    dir: PathBuf,
    /// The server's database [env: DB_PATH] [default: workshop.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// The server's blob folder [env: BLOBS_DIR] [default: blobs]
    #[arg(long, value_name = "PATH")]
    blobs: Option<PathBuf>,
    #[command(flatten)]
    pub no_hub: super::serve::NoHub,
}

pub enum Direction {
    Backup,
    Restore,
}

pub fn run(direction: Direction, args: StoreArgs) -> ExitCode {
    let db = args
        .db
        .unwrap_or_else(|| from_env("DB_PATH", DEFAULT_DB_PATH));
    let blobs = args
        .blobs
        .unwrap_or_else(|| from_env("BLOBS_DIR", DEFAULT_BLOBS_DIR));
    let result = match direction {
        Direction::Backup => crate::backup::backup(&db, &blobs, &args.dir),
        Direction::Restore => crate::backup::restore(&args.dir, &db, &blobs),
    };
    print_manifest(result)
}

/// A path from the environment, or its default when unset or empty.
fn from_env(key: &str, default: &str) -> PathBuf {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
        .into()
}

/// The manifest as one JSON line on stdout, or the failure on stderr (exit 1).
fn print_manifest(result: Result<impl serde::Serialize, String>) -> ExitCode {
    let printed = result.and_then(|manifest| {
        serde_json::to_string(&manifest).map_err(|e| format!("cannot print the manifest: {e}"))
    });
    match printed {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("workshop: {message}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
