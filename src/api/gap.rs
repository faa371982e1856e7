//! Saying a replay gap out loud: when a stream or history page starts (`since`, or
//! `Last-Event-ID`) before what retention kept, the client is told which messages are gone
//! instead of silently getting a hole.
use crate::app::App;
use crate::error::ApiError;
use crate::http::Reply;
use crate::store::horizon::{self, Gap};

/// The gap a replay after `since` on `ch` (or every channel) has, if any.
pub fn find(app: &App, ch: Option<&str>, since: &str) -> Result<Option<Gap>, ApiError> {
    app.store
        .read(|conn| horizon::gap(conn, ch, since))
        .map_err(ApiError::from)
}

/// The SSE event sent before the replay: `event: gap` and no `id:` line, so a browser's
/// last event id stays where the client was.
pub fn event(gap: &Gap) -> Vec<u8> {
    /// The event's data, keys in README's order (`json!` would sort them).
    #[derive(serde::Serialize)]
    struct Data<'a> {
        since: &'a str,
        oldest: Option<&'a str>,
    }
    let data = Data {
        since: &gap.since,
        oldest: gap.oldest.as_deref(),
    };
    let data = serde_json::to_string(&data).expect("strings serialize");
    format!("event: gap\ndata: {data}\n\n").into_bytes()
}

/// A history page, with `Workshop-Gap: <oldest kept id>` (`none` when nothing is kept) when
/// it starts after a hole.
pub fn on_history(
    app: &App,
    ch: Option<&str>,
    since: Option<&str>,
    page: Reply,
) -> Result<Reply, ApiError> {
    let Some(since) = since else {
        return Ok(page);
    };
    Ok(match find(app, ch, since)? {
        Some(gap) => Reply::Headed(
            vec![
                ("Workshop-Gap", gap.oldest.unwrap_or_else(|| "none".into())),
                ("Access-Control-Expose-Headers", "Workshop-Gap".into()),
            ],
            Box::new(page),
        ),
        None => page,
    })
}
