//! Messages committed but not yet in the search index. Indexing each message in its own
//! insert's transaction made FTS5 flush a new segment at every commit (a handful of messages
//! each) and merge them all again later: 40% of publish throughput. So the writer keeps what
//! a batch stored here and indexes it a few hundred messages at a time, inside a later
//! batch's transaction, never more than `LAG` later; and at once when a search asks (see
//! `Op::IndexSearch`), so a search still finds every message published before it. A crash
//! loses only this list, never a message: start-up indexes what the index lacks
//! (`search::index_unindexed`), and if it cannot (a full disk), the writer does it later
//! (`behind`).
use super::search::{self, SearchDoc};
use rusqlite::Transaction;
use std::time::{Duration, Instant};

/// Longest a message waits to be indexed when nobody searches.
pub(super) const LAG: Duration = Duration::from_millis(50);
/// Most messages, and most text, held before they are indexed regardless of `LAG`: past
/// either, the next transaction indexes them (so the list holds at most these plus one
/// batch's worth, whatever the messages' size).
const MOST_DOCS: usize = 1024;
const MOST_BYTES: usize = 4 << 20;

#[derive(Default)]
pub(super) struct Unindexed {
    /// In id order, as the index needs them.
    docs: Vec<SearchDoc>,
    bytes: usize,
    /// When the oldest of `docs` was committed.
    since: Option<Instant>,
    /// Whether stored messages older than `docs` are missing from the index too: start-up
    /// could not index what a crash left out. Then `index` indexes everything the index
    /// lacks, `docs` included.
    behind: bool,
}

impl Unindexed {
    /// The list of a writer whose index may lack stored messages (`behind`).
    pub(super) fn new(behind: bool) -> Unindexed {
        Unindexed {
            behind,
            ..Unindexed::default()
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.docs.is_empty() && !self.behind
    }

    /// Adds what a commit stored (in id order, after everything already here).
    pub(super) fn extend(&mut self, docs: Vec<SearchDoc>) {
        if docs.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.bytes += docs.iter().map(SearchDoc::size).sum::<usize>();
        self.docs.extend(docs);
    }

    /// Whether the list should be indexed in the next transaction without being asked.
    pub(super) fn due(&self) -> bool {
        self.behind || self.full() || self.since.is_some_and(|since| since.elapsed() >= LAG)
    }

    fn full(&self) -> bool {
        self.docs.len() >= MOST_DOCS || self.bytes >= MOST_BYTES
    }

    /// When the list falls due, if it holds anything: now if it is full, else by age.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.behind {
            return Some(Instant::now());
        }
        let by_age = self.since.map(|since| since + LAG);
        by_age.map(|at| if self.full() { Instant::now() } else { at })
    }

    /// Writes every listed message into the index, in `tx` (every stored message the index
    /// lacks, when `behind`). The list is kept until the transaction commits (`clear`), so a
    /// failed commit loses nothing.
    pub(super) fn index(&self, tx: &Transaction) -> rusqlite::Result<()> {
        if self.behind {
            return search::index_unindexed(tx).map(|_| ());
        }
        self.docs.iter().try_for_each(|doc| search::index(tx, doc))
    }

    /// Gives up the list after a failed try at indexing it: its messages are stored, so
    /// the next try indexes every stored message the index lacks (`behind`), and the list
    /// holds nothing meanwhile, however long the index cannot be written.
    pub(super) fn fall_behind(&mut self) {
        *self = Unindexed::new(true);
    }

    /// Forgets the listed messages, once the transaction that indexed them has committed.
    pub(super) fn clear(&mut self) {
        if self.behind {
            say!("the search index holds every stored message again");
        }
        *self = Unindexed::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(id: &str, text: &str) -> SearchDoc {
        SearchDoc::new(id, "msg.text", "ann", "general", &json!({ "text": text }))
    }

    #[test]
    fn a_list_falls_due_by_count_by_size_or_by_age() {
        let mut list = Unindexed::default();
        assert!(!list.due() && list.deadline().is_none(), "empty: never due");
        list.extend(vec![doc("01A", "hello")]);
        assert!(!list.due(), "one small, fresh message waits for company");
        list.since = Some(Instant::now() - LAG);
        assert!(list.due(), "but not longer than LAG");

        let mut many = Unindexed::default();
        many.extend((0..MOST_DOCS).map(|n| doc(&n.to_string(), "x")).collect());
        assert!(many.due(), "{MOST_DOCS} messages are indexed at once");
        assert!(
            many.deadline().unwrap() <= Instant::now(),
            "the idle writer wakes now"
        );

        let mut large = Unindexed::default();
        large.extend(vec![doc("01B", &"y".repeat(MOST_BYTES))]);
        assert!(large.due(), "so is {MOST_BYTES} bytes of text");
        large.clear();
        assert_eq!(
            (large.docs.len(), large.bytes, large.deadline()),
            (0, 0, None)
        );

        let mut behind = Unindexed::new(true);
        assert!(
            !behind.is_empty() && behind.due(),
            "a start-up that could not index"
        );
        assert!(behind.deadline().unwrap() <= Instant::now());
        behind.clear();
        assert!(behind.is_empty() && !behind.due());

        let mut failed = Unindexed::default();
        failed.extend(vec![doc("01C", "kept in the table")]);
        failed.fall_behind();
        assert_eq!((failed.docs.len(), failed.bytes), (0, 0), "nothing held");
        assert!(
            !failed.is_empty() && failed.due(),
            "indexed from the table next"
        );
    }
}
