//! The loop guard (`WORKSHOP_RATE`): a token bucket per sender (`from`) for publishing and
//! task creation, so two agents answering each other for ever cannot flood a channel. A
//! refusal is a 429 with `Retry-After`, counted in /metrics, and announced as
//! `workshop.throttled` on the channel concerned at most once a minute per sender.
use crate::error::ApiError;
use crate::http::Reply;
use crate::store::idempotency::{self, Key};
use crate::store::{NewMessage, Op, Store};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sender may send this many times its per-second rate at once.
const BURST_SECONDS: f64 = 10.0;
/// Most senders tracked at once; bounds memory whatever `from`s clients invent.
const MAX_SENDERS: usize = 10_000;
const ANNOUNCE_EVERY: Duration = Duration::from_secs(60);
/// While `MAX_SENDERS` are tracked, idle ones are looked for at most this often: each look
/// walks every bucket under the lock.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The `from` of the server's own announcements.
const SERVER_IDENTITY: &str = "workshop";

pub struct RateLimiter {
    /// Tokens per second; 0 turns the guard off.
    rate: f64,
    burst: f64,
    senders: Mutex<Senders>,
}

/// The senders tracked, and when they were last swept for idle ones.
#[derive(Default)]
struct Senders {
    buckets: HashMap<String, Bucket>,
    swept: Option<Instant>,
    #[cfg(test)]
    sweeps: usize,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
    announced: Option<Instant>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// Refused: try again in `retry_after_s`; `announce` once a minute per sender.
    Throttled {
        retry_after_s: u64,
        announce: bool,
    },
}

impl RateLimiter {
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: (rate * BURST_SECONDS).max(1.0),
            senders: Mutex::new(Senders::default()),
        }
    }

    /// Takes `count` tokens from `from`'s bucket (one per message or task), or says how long
    /// until there are that many.
    pub fn check(&self, from: &str, count: usize, now: Instant) -> Verdict {
        if self.rate <= 0.0 {
            return Verdict::Pass;
        }
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let senders = &mut *senders;
        if let Some(bucket) = senders.buckets.get_mut(from) {
            return self.take(bucket, count as f64, now);
        }
        if senders.buckets.len() >= MAX_SENDERS && !self.make_room(senders, now) {
            // Every tracked sender is being held back right now (as of the last sweep); a
            // new one has its full burst anyway, so letting it pass untracked is what
            // tracking it would do.
            return Verdict::Pass;
        }
        let bucket = senders.buckets.entry(from.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
            announced: None,
        });
        self.take(bucket, count as f64, now)
    }

    /// Forgets idle senders (at most once per `SWEEP_EVERY`: each look walks every bucket);
    /// whether one more can be tracked now.
    fn make_room(&self, senders: &mut Senders, now: Instant) -> bool {
        let due = senders
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
        if due {
            senders.swept = Some(now);
            #[cfg(test)]
            {
                senders.sweeps += 1;
            }
            senders
                .buckets
                .retain(|_, bucket| !self.is_idle(bucket, now));
        }
        senders.buckets.len() < MAX_SENDERS
    }

    /// Refills `bucket` and takes `cost` tokens from it, or says how long until there are.
    fn take(&self, bucket: &mut Bucket, cost: f64, now: Instant) -> Verdict {
        self.refill(bucket, now);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Verdict::Pass;
        }
        let retry_after_s = ((cost - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        Verdict::Throttled {
            retry_after_s,
            announce: announcement_due(bucket, now),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
    }

    /// A full bucket whose sender needs no announcement pause is the same as no bucket.
    fn is_idle(&self, bucket: &Bucket, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        let full = bucket.tokens + elapsed * self.rate >= self.burst;
        full && bucket
            .announced
            .is_none_or(|at| now.duration_since(at) >= ANNOUNCE_EVERY)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.senders.lock().map(|s| s.buckets.len()).unwrap_or(0)
    }

    #[cfg(test)]
    fn sweeps(&self) -> usize {
        self.senders.lock().map(|s| s.sweeps).unwrap_or(0)
    }
}

/// Whether a refusal of this sender is announced now (at most once per `ANNOUNCE_EVERY`);
/// if so, the announcement is counted as made.
fn announcement_due(bucket: &mut Bucket, now: Instant) -> bool {
    let due = bucket
        .announced
        .is_none_or(|at| now.duration_since(at) >= ANNOUNCE_EVERY);
    if due {
        bucket.announced = Some(now);
    }
    due
}

/// The guard as the handlers use it: a refusal is the 429 to send, announced on the channel.
impl RateLimiter {
    /// `guard`, except for a retry of a keyed request already committed: the writer answers
    /// that with the first reply without running it again, so it neither spends a token nor
    /// is refused (README: "a repeat within 24 h answers the first reply"). `count`: the
    /// messages (or tasks) the request makes; more than a burst could ever pass is a 413.
    pub fn guard_unless_repeat(
        &self,
        store: &Store,
        key: Option<&Key>,
        (from, count): (&str, usize),
        ch: &str,
        what: &str,
    ) -> Result<Result<(), Reply>, ApiError> {
        if self.rate <= 0.0 {
            return Ok(Ok(()));
        }
        if count as f64 > self.burst {
            return Err(ApiError::too_large(format!(
                "{count} messages at once is over the loop guard's burst of {} per sender",
                self.burst
            )));
        }
        if let Some(key) = key
            && store.read(|conn| idempotency::is_remembered(conn, key))?
        {
            return Ok(Ok(()));
        }
        Ok(self.guard(store, (from, count), ch, what))
    }

    /// Lets `from` publish `count` messages (or create tasks) on `ch`, or answers the 429 to
    /// send instead. `what` names the request in /metrics (`metrics::THROTTLED`).
    pub fn guard(
        &self,
        store: &Store,
        (from, count): (&str, usize),
        ch: &str,
        what: &str,
    ) -> Result<(), Reply> {
        let Verdict::Throttled {
            retry_after_s,
            announce,
        } = self.check(from, count, Instant::now())
        else {
            return Ok(());
        };
        crate::metrics::METRICS.count_throttled(what);
        if announce {
            self.announce(store, from, ch, retry_after_s);
        }
        Err(self.refusal(from, retry_after_s))
    }

    /// The 429 for `from`, with `Retry-After`.
    fn refusal(&self, from: &str, retry_after_s: u64) -> Reply {
        Reply::Throttled {
            message: self.over_rate(from, retry_after_s),
            retry_after_s,
        }
    }

    /// The refusal's message: who, which limit, and when to come back.
    fn over_rate(&self, from: &str, retry_after_s: u64) -> String {
        let (rate, burst) = (self.rate, self.burst);
        format!(
            "{from} is over WORKSHOP_RATE ({rate} per second, bursts of {burst}): retry in {retry_after_s} s"
        )
    }

    /// Publishes `workshop.throttled` on `ch`, addressed to the offender.
    fn announce(&self, store: &Store, from: &str, ch: &str, retry_after_s: u64) {
        let message = NewMessage {
            ch: ch.to_string(),
            from: SERVER_IDENTITY.to_string(),
            kind: "workshop.throttled".to_string(),
            v: 1,
            body: json!({"agent": from, "rate": self.rate, "burst": self.burst,
                         "retry_after_s": retry_after_s}),
            files: Vec::new(),
            reply_to: None,
            // Addressed to the offender, so an agent working in turns finds it in its inbox.
            to: Some(json!(from)),
            recipients: vec![from.to_string()],
        };
        if let Err(e) = store.write(Op::Publish(message)) {
            say!("cannot announce throttling of {from}: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default() {
        let limiter = RateLimiter::new(0.0);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.check("a", 1, now), Verdict::Pass);
        }
        assert_eq!(limiter.tracked(), 0);
    }

    /// A batch takes a token per message, all or none: refused, it leaves the tokens there
    /// for a smaller one, and its wait is for as many tokens as it needs.
    #[test]
    fn a_batch_takes_a_token_per_message_or_none() {
        let limiter = RateLimiter::new(2.0);
        let start = Instant::now();
        assert_eq!(limiter.check("a", 15, start), Verdict::Pass);
        let refused = limiter.check("a", 10, start);
        assert_eq!(
            refused,
            Verdict::Throttled {
                retry_after_s: 3,
                announce: true
            }
        );
        assert_eq!(limiter.check("a", 5, start), Verdict::Pass);
        assert_ne!(limiter.check("a", 1, start), Verdict::Pass);
    }

    #[test]
    fn burst_then_refill_then_announce_once_a_minute() {
        let limiter = RateLimiter::new(2.0);
        let start = Instant::now();
        for _ in 0..20 {
            assert_eq!(limiter.check("a", 1, start), Verdict::Pass);
        }
        let first = limiter.check("a", 1, start);
        assert_eq!(
            first,
            Verdict::Throttled {
                retry_after_s: 1,
                announce: true
            }
        );
        assert_eq!(
            limiter.check("b", 1, start),
            Verdict::Pass,
            "others unaffected"
        );
        let later = start + Duration::from_secs(30);
        let mut passed = 0;
        while limiter.check("a", 1, later) == Verdict::Pass {
            passed += 1;
        }
        assert_eq!(passed, 20, "refilled to the burst, not beyond");
        assert!(matches!(
            limiter.check("a", 1, later),
            Verdict::Throttled {
                announce: false,
                ..
            }
        ));
        let minute = start + Duration::from_secs(61);
        let mut verdict = limiter.check("a", 1, minute);
        while verdict == Verdict::Pass {
            verdict = limiter.check("a", 1, minute);
        }
        assert!(matches!(verdict, Verdict::Throttled { announce: true, .. }));
    }

    #[test]
    fn memory_stays_bounded_with_invented_senders() {
        let limiter = RateLimiter::new(1.0);
        let start = Instant::now();
        for i in 0..MAX_SENDERS {
            limiter.check(&format!("agent-{i}"), 1, start);
        }
        assert_eq!(limiter.tracked(), MAX_SENDERS);
        // Buckets refill in 10 s; then they are forgotten to make room.
        let later = start + Duration::from_secs(11);
        for i in 0..2 * MAX_SENDERS {
            limiter.check(&format!("other-{i}"), 1, later);
            assert!(limiter.tracked() <= MAX_SENDERS);
        }
    }

    #[test]
    fn a_full_table_of_busy_senders_is_swept_at_most_once_a_second() {
        let limiter = RateLimiter::new(1.0);
        let start = Instant::now();
        // Every tracked sender has just spent a token, so none is idle.
        for i in 0..MAX_SENDERS {
            assert_eq!(limiter.check(&format!("busy-{i}"), 1, start), Verdict::Pass);
        }
        assert_eq!(limiter.sweeps(), 0);
        let soon = start + Duration::from_millis(500);
        for i in 0..MAX_SENDERS {
            let verdict = limiter.check(&format!("new-{i}"), 1, soon);
            assert_eq!(verdict, Verdict::Pass, "a new sender has its burst");
        }
        assert_eq!(
            limiter.sweeps(),
            1,
            "one walk over the table, not one per request"
        );
        assert_eq!(limiter.tracked(), MAX_SENDERS);
        // Known senders are still held to their rate meanwhile.
        let mut passed = 0;
        while limiter.check("busy-0", 1, soon) == Verdict::Pass {
            passed += 1;
        }
        assert_eq!(passed, 9, "the burst of 10, one spent");
        let later = start + Duration::from_millis(1600);
        limiter.check("newer", 1, later);
        assert_eq!(limiter.sweeps(), 2, "a second later, a sweep again");
        assert!(limiter.tracked() <= MAX_SENDERS);
    }
}
