//! What the mesh tests (idempotency, replay gaps, threads) share on top of `common`: a server
//! whose retention really deleted messages.
#![allow(dead_code)] // each test binary uses a different part

use crate::common::Server;
use serde_json::json;
use ulid::Ulid;

/// A server whose retention (the default 30 days, run at start-up) deleted `old` messages on
/// channel `ch`: they were written 40 days back into the database while it was stopped.
/// Returns the server and the deleted ids, oldest first.
pub fn server_with_pruned(ch: &str, old: usize) -> (Server, Vec<String>) {
    let mut s = Server::start();
    s.stop();
    let forty_days_ago = Ulid::generate().timestamp_ms() - 40 * 86_400_000;
    let ids: Vec<String> = (0..old)
        .map(|i| Ulid::from_parts(forty_days_ago + i as u64, 7).to_string())
        .collect();
    {
        let conn = rusqlite::Connection::open(s.db_path()).unwrap();
        for id in &ids {
            let envelope = json!({"id": id, "ts": 0, "from": "old", "ch": ch, "type": "msg.old",
                "v": 1, "body": {}, "files": [], "reply_to": null});
            conn.execute(
                "INSERT INTO messages (id, ch, type, envelope) VALUES (?1, ?2, 'msg.old', ?3)",
                (id, ch, envelope.to_string()),
            )
            .unwrap();
        }
        conn.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", [ch])
            .unwrap();
    }
    s.restart_stopped();
    assert_eq!(
        s.status()["messages"],
        0,
        "retention deleted the old messages"
    );
    (s, ids)
}
