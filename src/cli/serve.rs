//! `workshop serve` (or no subcommand): its flags, which win over the environment, and the
//! help that lists every environment variable with its default.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

pub const HELP: &str = "\
Environment (a flag wins over its variable; unset or empty means the default):
  PORT                     listen port                                    [default: 4242]
  HOST                     listen address; the mesh interface's address
                           keeps the hub off the public net               [default: 0.0.0.0]
  DB_PATH                  SQLite file (parent folders created)           [default: workshop.db]
  BLOBS_DIR                folder for uploaded files                      [default: blobs]
  WORKSHOP_RETENTION_DAYS  delete messages older than this (0: keep all)  [default: 30]
  WORKSHOP_MAX_FILE_BYTES  largest upload, in bytes                       [default: 104857600]
  WORKSHOP_VERBOSE         true: one stderr line per request              [default: false]
  WORKSHOP_HOSTNAMES       names browsers may use for the hub, comma-separated
                           (IP literals and localhost always work)        [default: none]
  WORKSHOP_CORS_ORIGINS    origins whose pages may use the hub cross-origin,
                           comma-separated; * allows every origin         [default: none]
  WORKSHOP_RATE            loop guard: messages, tasks and locks taken per
                           second per sender, in bursts of 10x (0: off)   [default: 0]

On start it prints `workshop listening on http://ADDR` (the first line, for scripts), then the
version, database, blob folder, retention, upload limit, and the URLs it can be reached at.

Examples:
  workshop serve --port 4242 --db /var/lib/workshop/w.db --blobs /var/lib/workshop/blobs
  PORT=4242 DB_PATH=/var/lib/workshop/w.db workshop serve";

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Listen port [env: PORT]
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Listen address [env: HOST]
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,
    /// SQLite database file [env: DB_PATH]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Folder for uploaded files [env: BLOBS_DIR]
    #[arg(long, value_name = "DIR")]
    blobs: Option<PathBuf>,
    #[command(flatten)]
    pub no_hub: NoHub,
}

impl ServeArgs {
    /// The flags given, as the environment variables they stand for.
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        [
            ("PORT", self.port.map(|p| p.to_string())),
            ("HOST", self.host.clone()),
            ("DB_PATH", self.db.as_ref().map(path)),
            ("BLOBS_DIR", self.blobs.as_ref().map(path)),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .collect()
    }
}

pub fn run(args: &ServeArgs) -> ExitCode {
    crate::serve(&args.overrides())
}

/// `--url` and `--as` on a command that runs on this machine's files (serve, backup, restore),
/// with no hub to reach and no agent to be. Declared on those commands, hidden, so that the
/// global options stay out of their help and giving one is a usage error instead of being
/// ignored: `serve --url http://0.0.0.0:80` would listen on 4242 without a word.
#[derive(Args, Debug, Default)]
pub struct NoHub {
    #[arg(long, hide = true)]
    url: Option<String>,
    #[arg(long = "as", hide = true)]
    agent: Option<String>,
}

impl NoHub {
    /// Whether either option was given to the command.
    pub fn given(&self) -> bool {
        self.url.is_some() || self.agent.is_some()
    }
}
