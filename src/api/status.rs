//! `GET /status`: a cheap health and size summary (no table scans), and `GET /metrics`.
use super::presence::LIVE_SECONDS;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req};
use crate::store::read;
use serde_json::json;
use std::sync::atomic::Ordering;

pub fn status(app: &App, _: &mut Req) -> Result<Reply, ApiError> {
    let since = crate::store::now() - LIVE_SECONDS;
    let agents_live = app.store.read(|conn| read::agents_live(conn, since))?;
    let process = crate::sys::process_counts(false);
    Ok(Reply::json(
        200,
        json!({
            "uptime-s": app.started.elapsed().as_secs(),
            "messages": app.store.stats.messages.load(Ordering::Relaxed),
            "tasks": app.store.stats.tasks.load(Ordering::Relaxed),
            "agents-live": agents_live,
            "subscribers": app.hub.subscriber_count(),
            "claims-waiting": app.store.bell.waiting(),
            "waiting": app.long_polls.load(Ordering::Relaxed),
            "open-fds": process.fds,
            "threads": process.threads,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    ))
}

/// `GET /metrics`: Prometheus text format; counters in memory, nothing read from the database.
pub fn metrics(app: &App, _: &mut Req) -> Result<Reply, ApiError> {
    let live = crate::metrics::Live {
        uptime: app.started.elapsed(),
        subscribers: app.hub.subscriber_count(),
    };
    Ok(Reply::Metrics(crate::metrics::METRICS.render(&live)))
}
