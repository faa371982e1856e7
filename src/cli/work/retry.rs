//! The tasks a worker gave up on (failed, timed out or was interrupted on), each left to
//! other workers for a while (sent as claim-next's `exclude`), then the worker's to take again.
//!
//! The wait is `--retry-after` (default 5 s) times the task's attempts, at most 5 minutes: a
//! task failing fast is not taken straight back and run again at once, a failure that clears
//! by itself (a service restarting, a rate limit) gets more time on every attempt, and a
//! worker on its own still retries a task up to its `max_attempts` (5 attempts: 50 s of
//! waiting in all). Other workers hear of the task on the stream and take it at once.
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest a task is left to others (unless `--retry-after` alone is longer).
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Tasks remembered at most: the server takes at most 1000 exclusions.
const MAX_GIVEN_UP: usize = 500;

/// How long a task is left to others after its `attempts`-th attempt failed.
pub fn wait_after(retry_after: Duration, attempts: u32) -> Duration {
    let cap = MAX_WAIT.max(retry_after);
    retry_after
        .checked_mul(attempts)
        .map_or(cap, |w| w.min(cap))
}

/// Tasks given up on, each with the time it is this worker's to take again.
#[derive(Default)]
pub struct GivenUp(HashMap<String, Instant>);

impl GivenUp {
    /// Leaves `id` to others until `until`. When `MAX_GIVEN_UP` are remembered, the one due
    /// back first makes room.
    pub fn insert(&mut self, id: String, until: Instant) {
        if self.0.len() >= MAX_GIVEN_UP {
            let first = self.0.iter().min_by_key(|(_, t)| **t);
            if let Some(first) = first.map(|(id, _)| id.clone()) {
                self.0.remove(&first);
            }
        }
        self.0.insert(id, until);
    }

    /// Forgets the tasks due back by `now`; whether there were any.
    pub fn release(&mut self, now: Instant) -> bool {
        let before = self.0.len();
        self.0.retain(|_, until| *until > now);
        self.0.len() < before
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_with_the_attempts_up_to_a_cap() {
        let five = Duration::from_secs(5);
        assert_eq!(wait_after(five, 1), five);
        assert_eq!(wait_after(five, 4), Duration::from_secs(20));
        assert_eq!(wait_after(five, 1000), MAX_WAIT);
        assert_eq!(wait_after(five, u32::MAX), MAX_WAIT);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            wait_after(hour, 3),
            hour,
            "a longer --retry-after is its own cap"
        );
        assert_eq!(wait_after(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn tasks_come_back_when_due_and_the_memory_is_bounded() {
        let now = Instant::now();
        let mut given_up = GivenUp::default();
        given_up.insert("a".into(), now + Duration::from_secs(1));
        given_up.insert("b".into(), now + Duration::from_secs(9));
        assert!(!given_up.release(now));
        assert!(given_up.release(now + Duration::from_secs(1)));
        assert_eq!(given_up.ids().collect::<Vec<_>>(), ["b"]);
        for i in 0..MAX_GIVEN_UP + 10 {
            given_up.insert(format!("t{i}"), now + Duration::from_secs(10 + i as u64));
        }
        assert_eq!(given_up.0.len(), MAX_GIVEN_UP);
        assert!(
            given_up.ids().all(|id| id != "b"),
            "the one due first made room"
        );
        assert!(given_up.0.contains_key(&format!("t{}", MAX_GIVEN_UP + 9)));
    }
}
