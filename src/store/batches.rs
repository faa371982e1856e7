//! Stored messages read a batch at a time, so that an answer of a thousand 1 MiB messages (a
//! history page, an SSE replay, an inbox, a thread, search results) holds about one batch in
//! memory, not the whole answer. Each batch is its own short read: no connection or snapshot
//! is held while the client reads.
use super::read::{self, MessageQuery};
use super::{Reader, StoreError};
use std::collections::HashMap;
use std::io::{self, Read};

/// Envelope bytes fetched per batch (at least one message, however large).
const BATCH_BYTES: u64 = 256 * 1024;
/// Most messages fetched per batch: bounds the id list of one `IN (...)` query.
const BATCH_MESSAGES: usize = 1000;

/// The messages a query selected, fetched on demand, in the index's order.
pub struct Messages {
    reader: Reader,
    /// How a batch is fetched.
    source: Source,
    /// `(id, envelope size)` of every selected message, in answer order.
    index: Vec<(String, u64)>,
    /// How many of `index` have been fetched.
    fetched: usize,
}

enum Source {
    /// Oldest first, selected by this query: a batch is one range scan of its ids.
    Range(MessageQuery),
    /// Any order, any messages: a batch is looked up by its ids.
    Ids,
}

impl Source {
    /// How to fetch the batches of `query`'s index: by id when it filters by type, since a
    /// range would be walked row by row (or, in a channel, its types found again) only to
    /// select ids the index already lists.
    fn of(query: &MessageQuery) -> Source {
        match query.type_prefix {
            Some(_) => Source::Ids,
            None => Source::Range(query.clone()),
        }
    }
}

impl Messages {
    /// Runs the query now (ids and sizes only), so that a failure is known before the first
    /// byte of an answer is sent.
    pub fn select(reader: Reader, query: &MessageQuery) -> Result<Messages, StoreError> {
        let index = reader.read(|conn| read::message_index(conn, query))?;
        Ok(Messages::new(reader, Source::of(query), index))
    }

    /// The messages of an index already selected (`(id, octet_length(envelope))`), in its
    /// order.
    pub fn from_index(reader: Reader, index: read::Index) -> Messages {
        Messages::new(reader, Source::Ids, index)
    }

    /// Messages of `index`, none fetched yet.
    fn new(reader: Reader, source: Source, index: read::Index) -> Messages {
        Messages {
            reader,
            source,
            index,
            fetched: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The envelopes' total size in bytes.
    pub fn bytes(&self) -> u64 {
        self.index.iter().map(|(_, size)| size).sum()
    }

    /// The next `(id, envelope)` pairs, in order; `None` when all have been fetched. A
    /// message pruned since it was indexed, or changed size, is an error: an answer's length
    /// may already have been promised.
    pub fn next_batch(&mut self) -> Result<Option<Vec<(String, String)>>, StoreError> {
        let rest = &self.index[self.fetched..];
        if rest.is_empty() {
            return Ok(None);
        }
        let count = batch_len(rest, BATCH_MESSAGES, BATCH_BYTES);
        let wanted = &rest[..count];
        let batch = match &self.source {
            Source::Range(query) => {
                let (first, last) = (&wanted[0].0, &wanted[count - 1].0);
                // Ids only ever grow, so no message appears inside an indexed range: the
                // range holds exactly `wanted`, unless retention has pruned some of it since.
                self.reader
                    .read(|conn| read::messages_between(conn, query, first, last))?
            }
            Source::Ids => {
                let ids: Vec<&str> = wanted.iter().map(|(id, _)| id.as_str()).collect();
                let found = self.reader.read(|conn| read::messages_by_ids(conn, &ids))?;
                in_order(found, wanted)
            }
        };
        let intact = batch.len() == count
            && batch
                .iter()
                .zip(wanted)
                .all(|((id, json), (want, size))| id == want && json.len() as u64 == *size);
        if !intact {
            return Err(StoreError::internal(format!(
                "messages from {} were pruned while being sent",
                wanted[0].0
            )));
        }
        self.fetched += count;
        Ok(Some(batch))
    }
}

/// How many of the first `(key, size)` entries of `rest` one batch takes: at most `rows`,
/// and at most `bytes` of their sizes, but always one (however large it is).
pub(super) fn batch_len(rest: &[(String, u64)], rows: usize, bytes: u64) -> usize {
    let mut total = 0;
    rest.iter()
        .take(rows)
        .enumerate()
        .take_while(|(n, (_, size))| {
            total += size;
            *n == 0 || total <= bytes
        })
        .count()
}

/// `found` in the order of `wanted`, stopping at the first one missing (which `next_batch`
/// then reports).
fn in_order(found: Vec<(String, String)>, wanted: &[(String, u64)]) -> Vec<(String, String)> {
    let mut found: HashMap<String, String> = found.into_iter().collect();
    wanted
        .iter()
        .map_while(|(id, _)| found.remove_entry(id))
        .collect()
}

/// Stored messages as an NDJSON answer (one envelope and a newline each), read from the
/// store a batch at a time as the client takes it.
pub struct NdjsonBody {
    messages: Messages,
    batch: std::vec::IntoIter<(String, String)>,
    /// The envelope being sent; its newline is at `line.len()`.
    line: Vec<u8>,
    /// The next byte of `line` (or its newline) to send.
    at: usize,
}

impl NdjsonBody {
    pub fn new(messages: Messages) -> NdjsonBody {
        NdjsonBody {
            messages,
            batch: Vec::new().into_iter(),
            line: Vec::new(),
            at: 1,
        }
    }

    /// Moves on to the next envelope, fetching a batch when needed; `false` at the end.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            if let Some((_, json)) = self.batch.next() {
                self.line = json.into_bytes();
                self.at = 0;
                return Ok(true);
            }
            match self.messages.next_batch() {
                Ok(Some(batch)) => self.batch = batch.into_iter(),
                Ok(None) => return Ok(false),
                Err(e) => {
                    // The status line is long gone: all the client can see is the cut.
                    say!("NDJSON answer cut short: {}", e.message);
                    return Err(io::Error::other(e.message));
                }
            }
        }
    }
}

impl Read for NdjsonBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || (self.at > self.line.len() && !self.advance()?) {
            return Ok(0);
        }
        if self.at == self.line.len() {
            out[0] = b'\n';
            self.at += 1;
            return Ok(1);
        }
        let n = out.len().min(self.line.len() - self.at);
        out[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter()
            .map(|id| (id.to_string(), format!("{{{id}}}")))
            .collect()
    }

    #[test]
    fn a_batch_takes_rows_up_to_its_byte_budget_but_always_one() {
        let sized = |sizes: &[u64]| -> Vec<(String, u64)> {
            sizes.iter().map(|&size| ("k".to_string(), size)).collect()
        };
        assert_eq!(batch_len(&sized(&[10, 10, 10]), 64, 25), 2);
        assert_eq!(
            batch_len(&sized(&[100, 1]), 64, 25),
            1,
            "one, however large"
        );
        assert_eq!(
            batch_len(&sized(&[1; 10]), 4, 1000),
            4,
            "at most the row count"
        );
        assert_eq!(batch_len(&[], 4, 1000), 0);
    }

    #[test]
    fn a_batch_looked_up_by_ids_takes_the_index_order_up_to_the_first_missing() {
        let wanted: Vec<(String, u64)> = ["c", "a", "b"]
            .iter()
            .map(|id| (id.to_string(), 3))
            .collect();
        assert_eq!(
            in_order(pairs(&["a", "b", "c"]), &wanted),
            pairs(&["c", "a", "b"])
        );
        assert_eq!(in_order(pairs(&["c", "b"]), &wanted), pairs(&["c"]));
    }
}
