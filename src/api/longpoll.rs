//! Long-poll reads for agents that act in turns: `?wait=S` on history and on the inbox holds
//! the request until something it would answer exists, or S seconds pass. Only the waiting
//! lives here; the read itself then runs exactly as it does without `wait`.
//!
//! A waiting request is a hub subscriber like an SSE stream (same cap, same wake-ups, ended
//! by shutdown's `Hub::close`), so it is woken by the commit that satisfies it, never by
//! polling. It holds its connection's thread while it waits, as claim-next does, and lets it
//! go within `PEER_CHECK` of the client closing its end: a client that asks and hangs up at
//! once must not hold a thread and a stream's place for a minute (10,000 such requests sent
//! in 1.4 s locked every stream and long poll out for that minute).
use crate::app::App;
use crate::counted::Counted;
use crate::error::{ApiError, shown};
use crate::hub::{Event, Refusal, TOO_MANY_STREAMS};
use crate::store::read::MessageQuery;
use crate::store::turns;
use crossbeam_channel::RecvTimeoutError;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tiny_http::Request;

/// Longest wait accepted; a longer ask waits this long.
pub const MAX_WAIT_S: f64 = 60.0;
/// How often a waiting request looks whether its client has closed its end.
pub const PEER_CHECK: Duration = Duration::from_secs(1);

/// `?wait=S`: seconds (fractions allowed, at most 60), or `None` when absent.
pub fn wait_param(params: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = params.get("wait").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Some(Duration::from_secs_f64(s.min(MAX_WAIT_S))))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "wait must be a number of seconds, 0 or more (at most 60 are waited), got {}",
                shown(raw)
            ))
        })
}

/// Waits until a message matching the history query `q` exists after `q.since`.
pub fn wait_for_history(
    app: &App,
    q: &MessageQuery,
    timeout: Duration,
    client: &Request,
) -> Result<(), ApiError> {
    if q.before.is_some() {
        return Err(ApiError::bad_request("wait cannot be combined with before"));
    }
    let awaited = Awaited {
        ch: q.ch.as_deref(),
        since: q.since.as_deref(),
        type_prefix: q.type_prefix.as_deref(),
        recipient: None,
    };
    wait_until(app, &awaited, timeout, client, || {
        app.store
            .read(|conn| turns::any_message(conn, q))
            .map_err(ApiError::from)
    })
}

/// Waits until the agent's inbox holds a message after `since`.
pub fn wait_for_inbox(
    app: &App,
    agent: &str,
    since: Option<&str>,
    timeout: Duration,
    client: &Request,
) -> Result<(), ApiError> {
    let awaited = Awaited {
        ch: None,
        since,
        type_prefix: None,
        recipient: Some(agent),
    };
    wait_until(app, &awaited, timeout, client, || {
        app.store
            .read(|conn| turns::any_in_inbox(conn, agent, since))
            .map_err(ApiError::from)
    })
}

/// Which committed messages end a wait.
struct Awaited<'a> {
    ch: Option<&'a str>,
    since: Option<&'a str>,
    type_prefix: Option<&'a str>,
    recipient: Option<&'a str>,
}

impl Awaited<'_> {
    /// The channel is already chosen by the subscription. An event at or before `since`
    /// counts for nothing: the hub hears of a commit just after readers can see it, so a
    /// client that already read a message may re-poll in time to be told of it again.
    fn wants(&self, event: &Event) -> bool {
        self.since.is_none_or(|since| event.id.as_str() > since)
            && self
                .type_prefix
                .is_none_or(|prefix| event.kind.starts_with(prefix))
            && self
                .recipient
                .is_none_or(|agent| event.recipients.iter().any(|r| r == agent))
    }
}

/// Returns once `ready` holds (checked once, then kept track of through the hub), `timeout`
/// passes, the client has gone, or the server shuts down.
fn wait_until(
    app: &App,
    awaited: &Awaited,
    timeout: Duration,
    client: &Request,
    ready: impl FnOnce() -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    if timeout.is_zero() {
        return Ok(());
    }
    // Subscribe before looking, so a commit between the look and the wait still wakes us.
    let subscription = match app
        .hub
        .subscribe(awaited.ch.map(str::to_string), app.max_streams)
    {
        Ok(subscription) => subscription,
        // Shutting down: answer at once.
        Err(Refusal::Closed) => return Ok(()),
        // No room to wait, but a request that need not wait is still answered.
        Err(Refusal::Full) => {
            return match ready()? {
                true => Ok(()),
                false => Err(ApiError::unavailable(TOO_MANY_STREAMS)),
            };
        }
    };
    if ready()? {
        return Ok(());
    }
    // Counted as `waiting` in /status until it returns.
    let _counted = Counted::enter(&app.long_polls);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match subscription.events.recv_timeout(left.min(PEER_CHECK)) {
            Ok(delivery) => {
                // Done with at once: a long poll sends nothing from the hub (it reads the
                // database), so none of it may count against its share of the hub's memory.
                delivery.iter().for_each(|event| subscription.done(event));
                if delivery.iter().any(|event| awaited.wants(event)) {
                    return Ok(());
                }
            }
            // A look at the client, unless time is up.
            Err(RecvTimeoutError::Timeout) if !left.is_zero() => {
                if client.peer_has_closed() {
                    return Ok(());
                }
            }
            // Time is up; or the hub let go of us: shutdown, or a flood of messages this
            // request does not want filled its queue. Either way the read runs now and
            // answers what there is; the client asks again.
            Err(_) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_seconds_capped_at_a_minute() {
        let q = |v: &str| HashMap::from([("wait".to_string(), v.to_string())]);
        assert_eq!(wait_param(&HashMap::new()).unwrap(), None);
        assert_eq!(wait_param(&q("")).unwrap(), None);
        assert_eq!(wait_param(&q("0")).unwrap(), Some(Duration::ZERO));
        assert_eq!(
            wait_param(&q("1.5")).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait_param(&q("3600")).unwrap(),
            Some(Duration::from_secs(60))
        );
        for bad in ["-1", "x", "NaN", "inf", "1e400"] {
            assert_eq!(wait_param(&q(bad)).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn a_wait_wants_only_newer_matching_messages() {
        let mut event = Event::new("B".into(), "c".into(), "task.done".into(), "{}");
        let awaited = Awaited {
            ch: Some("c"),
            since: Some("A"),
            type_prefix: Some("task."),
            recipient: None,
        };
        assert!(awaited.wants(&event));
        assert!(
            !Awaited {
                since: Some("B"),
                ..awaited
            }
            .wants(&event),
            "already read"
        );
        assert!(
            !Awaited {
                type_prefix: Some("msg."),
                ..awaited
            }
            .wants(&event)
        );
        let inbox = Awaited {
            ch: None,
            since: None,
            type_prefix: None,
            recipient: Some("bob"),
        };
        assert!(
            !inbox.wants(&event),
            "addressed to everyone is not in an inbox"
        );
        event.recipients = vec!["carol".into(), "bob".into()];
        assert!(inbox.wants(&event));
    }
}
