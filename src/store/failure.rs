//! Why the store refused or could not make a change, in the store's own words: `api/` alone
//! turns a `StoreError` into an HTTP status.
use crate::error::Fault;
use std::fmt;

/// What kind of refusal or failure a `StoreError` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No such task or lock.
    NotFound,
    /// The thing belongs to someone else (a task for another agent, another's lock).
    Forbidden,
    /// Not in a state that allows the change (a task already claimed, not failed...).
    Conflict,
    /// The change is incomplete as asked (touching a task that has no lease, without one).
    Invalid,
    /// An idempotency key reused for a different request.
    KeyReused,
    /// The writer has stopped: the server is shutting down.
    ShuttingDown,
    /// Storage failed; nothing was stored.
    Storage(Fault),
}

/// A refusal or failure with the sentence a client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub kind: Failure,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: Failure, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> StoreError {
        StoreError::new(Failure::NotFound, message)
    }
    pub fn forbidden(message: impl Into<String>) -> StoreError {
        StoreError::new(Failure::Forbidden, message)
    }
    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError::new(Failure::Conflict, message)
    }
    pub fn invalid(message: impl Into<String>) -> StoreError {
        StoreError::new(Failure::Invalid, message)
    }
    pub fn shutting_down() -> StoreError {
        StoreError::new(Failure::ShuttingDown, "server is shutting down")
    }
    /// A failure that is a bug or a broken database, not the request's doing.
    pub fn internal(message: impl Into<String>) -> StoreError {
        StoreError::new(Failure::Storage(Fault::Internal), message)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        let fault = Fault::of_sqlite(&err);
        StoreError::new(Failure::Storage(fault), fault.message())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}
