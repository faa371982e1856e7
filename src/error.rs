//! `ApiError`: every failure a request can meet, with its HTTP status, in one place; and
//! `Fault`, what went wrong with storage, in words rather than statuses.
use rusqlite::ErrorCode;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, message)
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(422, message)
    }
    pub fn insufficient_storage(message: impl Into<String>) -> ApiError {
        ApiError::new(507, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, message)
    }
    /// The 503 a request gets once shutdown has begun.
    pub fn shutting_down() -> ApiError {
        ApiError::unavailable("server is shutting down")
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }
}

/// Characters of a client's own input an error quotes back at most.
const SHOWN_CHARS: usize = 64;

/// A client's input as an error quotes it: debug-quoted and cut at `SHOWN_CHARS`, so an
/// answer says what was wrong without echoing back the megabyte a client chose to send.
pub fn shown(raw: &str) -> String {
    match raw.char_indices().nth(SHOWN_CHARS) {
        None => format!("{raw:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &raw[..cut], raw.len()),
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// What went wrong with storage, as the store reports it; `ApiError` gives it a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    DiskFull,
    /// A database this process may not write (its mode, an immutable flag, a read-only mount).
    ReadOnly,
    /// Failing storage (an I/O error).
    Unavailable,
    /// Out of file descriptors, most likely: it passes when connections close.
    Busy,
    Internal,
}

impl Fault {
    /// SQLite's messages may name the database file: they go to the log, never to a client.
    pub fn of_sqlite(err: &rusqlite::Error) -> Fault {
        let line = format!("database error: {err}");
        crate::repeats::say_storage_error(&line, &line);
        Fault::of_sqlite_code(err.sqlite_error_code())
    }

    fn of_sqlite_code(code: Option<ErrorCode>) -> Fault {
        match code {
            Some(ErrorCode::DiskFull) => Fault::DiskFull,
            Some(ErrorCode::ReadOnly) => Fault::ReadOnly,
            Some(ErrorCode::SystemIoFailure) => Fault::Unavailable,
            Some(ErrorCode::CannotOpen) => Fault::Busy,
            _ => Fault::Internal,
        }
    }

    /// What a client is told.
    pub fn message(self) -> &'static str {
        match self {
            Fault::DiskFull => "disk full: nothing was stored",
            Fault::ReadOnly | Fault::Unavailable => "storage unavailable: nothing was stored",
            Fault::Busy => "the server is busy; try again shortly",
            Fault::Internal => "database error (details in the server log)",
        }
    }
}

impl From<Fault> for ApiError {
    fn from(fault: Fault) -> ApiError {
        let message = fault.message();
        match fault {
            Fault::DiskFull | Fault::ReadOnly | Fault::Unavailable => {
                ApiError::insufficient_storage(message)
            }
            Fault::Busy => ApiError::unavailable(message),
            Fault::Internal => ApiError::internal(message),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(err: rusqlite::Error) -> ApiError {
        ApiError::from(Fault::of_sqlite(&err))
    }
}

/// Storage that refuses writes; unlike `Fault::Unavailable` the OS error is shown.
fn storage_unavailable(err: &std::io::Error) -> ApiError {
    ApiError::insufficient_storage(format!("storage unavailable: {err}"))
}

/// Out of descriptors (EMFILE, ENFILE) is the same "busy" as a database that cannot be opened.
impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> ApiError {
        match err.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => ApiError::from(Fault::DiskFull),
            Some(libc::EROFS | libc::EACCES | libc::EPERM) => storage_unavailable(&err),
            Some(libc::EMFILE | libc::ENFILE) => ApiError::from(Fault::Busy),
            _ => ApiError::internal(format!("i/o error: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiError, Fault, shown};
    use rusqlite::ffi;

    #[test]
    fn shown_quotes_short_input_whole_and_cuts_long_input_on_a_character() {
        assert_eq!(shown("a\"b"), r#""a\"b""#);
        assert_eq!(shown(&"x".repeat(64)), format!("{:?}", "x".repeat(64)));
        // 65 two-byte characters: cut after 64 of them, never inside one.
        let long = "é".repeat(65);
        assert_eq!(shown(&long), format!("{:?}… (130 bytes)", "é".repeat(64)));
    }

    fn sqlite(code: i32, message: &str) -> ApiError {
        let err = rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message.into()));
        ApiError::from(err)
    }

    #[test]
    fn a_database_file_that_cannot_be_opened_is_busy_and_names_no_path() {
        let err = sqlite(
            ffi::SQLITE_CANTOPEN,
            "unable to open database file: /x/y.db",
        );
        assert_eq!(err.status, 503);
        assert!(!err.message.contains("/x/"), "{}", err.message);
        assert!(!err.message.contains("y.db"), "{}", err.message);
    }

    #[test]
    fn a_full_or_failing_disk_is_507() {
        for fault in [Fault::DiskFull, Fault::ReadOnly, Fault::Unavailable] {
            assert_eq!(ApiError::from(fault).status, 507, "{fault:?}");
        }
        assert_eq!(sqlite(ffi::SQLITE_FULL, "disk full").status, 507);
        let err = ApiError::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(
            err,
            ApiError::insufficient_storage("disk full: nothing was stored")
        );
    }

    #[test]
    fn out_of_descriptors_is_busy() {
        for code in [libc::EMFILE, libc::ENFILE] {
            let err = ApiError::from(std::io::Error::from_raw_os_error(code));
            assert_eq!(err.status, 503, "{code}");
        }
    }

    #[test]
    fn other_database_errors_are_500_without_details() {
        let err = sqlite(
            ffi::SQLITE_CORRUPT,
            "database disk image is malformed: /x/y.db",
        );
        assert_eq!(err.status, 500);
        assert_eq!(err.message, "database error (details in the server log)");
    }
}
