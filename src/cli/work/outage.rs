//! Hub outages, as every thread of the worker meets them: reported once when they start and
//! once when they end, however long they last, and claim attempts spaced out meanwhile.
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Whether the hub answers, shared by every thread that talks to it: the first failure of an
/// outage is printed, the rest are not, and the first success after it says so.
#[derive(Default)]
pub struct HubState {
    down_since: Mutex<Option<Instant>>,
}

impl HubState {
    /// When the outage began, if the hub is down. A thread that panicked holding it left
    /// nothing half-written (one `Option`), so the poison is ignored.
    fn down_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.down_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn failed(&self, doing: &str, error: &dyn std::fmt::Display) {
        let mut down = self.down_since();
        if down.is_none() {
            *down = Some(Instant::now());
            eprintln!("workshop work: hub unreachable ({doing}: {error}); retrying with backoff");
        }
    }

    /// A request sent at `sent` was answered. It ends an outage only if it was sent after
    /// the outage began: a hub that is shutting down still answers what it took in before
    /// (a heartbeat, a long claim), and that says nothing of whether it is back. Returns
    /// whether it ended one.
    pub fn answered(&self, sent: Instant) -> bool {
        let mut down = self.down_since();
        match *down {
            Some(since) if sent > since => {
                *down = None;
                eprintln!(
                    "workshop work: hub reconnected after {:.0} s",
                    since.elapsed().as_secs_f64()
                );
                true
            }
            _ => false,
        }
    }
}

/// Exponential backoff from a quarter second to five seconds, reset by a success.
pub struct Backoff {
    next: Duration,
    not_before: Instant,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
            not_before: Instant::now(),
        }
    }
}

impl Backoff {
    pub fn ready(&self) -> bool {
        Instant::now() >= self.not_before
    }
    pub fn failed(&mut self) {
        self.not_before = Instant::now() + self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }
    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to a request sent before the outage began (the hub answering what it took
    /// in while shutting down) does not end it; one sent after does, once.
    #[test]
    fn only_an_answer_to_a_request_sent_during_the_outage_ends_it() {
        let hub = HubState::default();
        let before = Instant::now();
        assert!(!hub.answered(before), "no outage to end");
        hub.failed("claiming", &"503 shutting down");
        assert!(!hub.answered(before), "sent before the outage began");
        // Instants a clock tick apart, however coarse the clock.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = Instant::now();
        assert!(hub.answered(after));
        assert!(!hub.answered(after), "ended already");
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::default();
        assert!(b.ready());
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.next, MAX_BACKOFF);
        assert!(!b.ready());
        b.succeeded();
        assert!(b.ready());
    }
}
