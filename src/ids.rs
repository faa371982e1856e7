//! Message and task ids: ULIDs from one monotonic generator owned by the writer thread,
//! so id order is commit order, even within a millisecond or when the clock steps back.
use ulid::Ulid;

pub struct IdGen {
    last: Ulid,
}

impl IdGen {
    /// `floor` is the greatest id already stored: every new id sorts after it, even if the
    /// clock went backwards across a restart.
    pub fn new(floor: Option<Ulid>) -> IdGen {
        IdGen {
            last: floor.unwrap_or(Ulid::nil()),
        }
    }

    pub fn next_id(&mut self) -> Ulid {
        let candidate = Ulid::generate();
        self.last = match candidate > self.last {
            true => candidate,
            false => successor(self.last),
        };
        self.last
    }
}

/// The id right after `last`, for a new id in the same millisecond (or after the clock
/// stepped back): counts up from it.
fn successor(last: Ulid) -> Ulid {
    last.increment()
        .unwrap_or_else(|_| Ulid::from_parts(last.timestamp_ms() + 1, 0))
}

/// Parses a client-supplied id (`since`, `before`, `Last-Event-ID`, a task id).
pub fn parse(raw: &str) -> Option<Ulid> {
    if raw.len() != ulid::ULID_LEN {
        return None;
    }
    // Round-trip check: the decoder accepts a first character above 7 (past 128 bits).
    Ulid::from_string(raw)
        .ok()
        .filter(|id| id.to_string().eq_ignore_ascii_case(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_strictly_increase() {
        let mut ids = IdGen::new(None);
        let mut prev = ids.next_id();
        for _ in 0..100_000 {
            let id = ids.next_id();
            assert!(id > prev);
            assert!(
                id.to_string() > prev.to_string(),
                "string order is id order"
            );
            prev = id;
        }
    }

    #[test]
    fn ids_sort_after_a_floor_in_the_future() {
        let future = Ulid::from_parts(Ulid::generate().timestamp_ms() + 3_600_000, 5);
        let mut ids = IdGen::new(Some(future));
        assert!(ids.next_id() > future);
    }

    #[test]
    fn overflowing_random_part_moves_to_next_millisecond() {
        let top = Ulid::from_parts(1000, (1u128 << 80) - 1);
        let mut ids = IdGen::new(Some(Ulid::from_parts(1000, (1u128 << 80) - 1)));
        let id = ids.next_id();
        assert!(id > top);
    }

    #[test]
    fn parse_rejects_bad_ids() {
        assert!(parse("01J4XYZABCDEFGHJKMNPQRSTVW").is_some());
        for bad in [
            "",
            "abc",
            "01J4XYZABCDEFGHJKMNPQRSTV",
            "01J4XYZABCDEFGHJKMNPQRSTVWX",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01J4XYZABCDEFGHJKMNPQRST!W",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
