//! `ApiError`: every failure a request can meet, with its HTTP status, in one place.
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
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// SQLite's messages may name the database file: they go to the log, never to a client.
impl From<rusqlite::Error> for ApiError {
    fn from(err: rusqlite::Error) -> ApiError {
        use rusqlite::ErrorCode::{CannotOpen, DiskFull, ReadOnly, SystemIoFailure};
        eprintln!("workshop: database error: {err}");
        match err.sqlite_error_code() {
            Some(DiskFull) => ApiError::new(507, "disk full: nothing was stored"),
            Some(ReadOnly) | Some(SystemIoFailure) => {
                ApiError::new(507, "storage unavailable: nothing was stored")
            }
            // Out of file descriptors, most likely: it passes when connections close.
            Some(CannotOpen) => ApiError::unavailable("the server is busy; try again shortly"),
            _ => ApiError::internal("database error (details in the server log)"),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> ApiError {
        match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                ApiError::new(507, "disk full: nothing was stored")
            }
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => {
                ApiError::new(507, format!("storage unavailable: {err}"))
            }
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                ApiError::unavailable("the server is busy; try again shortly")
            }
            _ => ApiError::internal(format!("i/o error: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use rusqlite::ffi;

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
