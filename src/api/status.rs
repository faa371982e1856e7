//! `GET /status`: a cheap health and size summary (no table scans).
use super::presence::LIVE_SECONDS;
use crate::error::ApiError;
use crate::http::Reply;
use crate::server::App;
use crate::store::read;
use serde_json::json;
use std::sync::atomic::Ordering;

pub fn status(app: &App) -> Result<Reply, ApiError> {
    let since = crate::store::now() - LIVE_SECONDS;
    let agents_live = app.store.read(|conn| read::agents_live(conn, since))?;
    let (open_fds, threads) = crate::sys::process_counts();
    Ok(Reply::json(
        200,
        json!({
            "uptime-s": app.started.elapsed().as_secs(),
            "messages": app.store.stats.messages.load(Ordering::Relaxed),
            "tasks": app.store.stats.tasks.load(Ordering::Relaxed),
            "agents-live": agents_live,
            "subscribers": app.hub.subscriber_count(),
            "waiting": app.long_polls.load(Ordering::Relaxed),
            "open-fds": open_fds,
            "threads": threads,
        }),
    ))
}
