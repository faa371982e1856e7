//! The store's clock: every timestamp in the API is unix seconds with millisecond precision.

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds with millisecond precision, as every timestamp in the API.
pub fn now() -> f64 {
    now_ms() as f64 / 1000.0
}
