//! Stored messages read a batch at a time, so that an answer of a thousand 1 MiB messages (a
//! history page, an SSE replay) holds about one batch in memory, not the whole answer. Each
//! batch is its own short read: no connection or snapshot is held while the client reads.
use super::Reader;
use super::read::{self, MessageQuery};
use crate::error::ApiError;

/// Envelope bytes fetched per batch (at least one message, however large).
const BATCH_BYTES: u64 = 256 * 1024;

/// The messages a query selected, fetched on demand, oldest first.
pub struct Messages {
    reader: Reader,
    query: MessageQuery,
    /// `(id, envelope size)` of every selected message.
    index: Vec<(String, u64)>,
    /// How many of `index` have been fetched.
    fetched: usize,
}

impl Messages {
    /// Runs the query now (ids and sizes only), so that a failure is known before the first
    /// byte of an answer is sent.
    pub fn select(reader: Reader, query: &MessageQuery) -> Result<Messages, ApiError> {
        let index = reader.read(|conn| read::message_index(conn, query))?;
        Ok(Messages {
            reader,
            query: query.clone(),
            index,
            fetched: 0,
        })
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
    /// message pruned since `select`, or changed size, is an error: an answer's length may
    /// already have been promised.
    pub fn next_batch(&mut self) -> Result<Option<Vec<(String, String)>>, ApiError> {
        let rest = &self.index[self.fetched..];
        if rest.is_empty() {
            return Ok(None);
        }
        let mut bytes = 0;
        let count = rest
            .iter()
            .enumerate()
            .take_while(|(n, (_, size))| {
                bytes += size;
                *n == 0 || bytes <= BATCH_BYTES
            })
            .count();
        let wanted = &rest[..count];
        let (first, last) = (&wanted[0].0, &wanted[count - 1].0);
        // Ids only ever grow, so no message appears inside an indexed range: the range
        // holds exactly `wanted`, unless retention has pruned some of it since.
        let batch = self
            .reader
            .read(|conn| read::messages_between(conn, &self.query, first, last))?;
        let intact = batch.len() == count
            && batch
                .iter()
                .zip(wanted)
                .all(|((id, json), (want, size))| id == want && json.len() as u64 == *size);
        if !intact {
            return Err(ApiError::internal(format!(
                "messages from {first} were pruned while being sent"
            )));
        }
        self.fetched += count;
        Ok(Some(batch))
    }
}
