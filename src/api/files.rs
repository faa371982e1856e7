//! Files: upload (streamed to disk), fetch and HEAD.
use super::valid_hash;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Req, declared_length, request_header};
use serde_json::json;

/// `POST /files`: the raw body is the file.
pub fn upload(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let request = &mut req.http;
    let limit = app.config.max_file_bytes;
    if declared_length(request).is_some_and(|len| len > limit) {
        return Err(ApiError::too_large(format!(
            "file is over the {limit} byte limit"
        )));
    }
    let stored = app.blobs.put(request.as_reader(), limit)?;
    crate::metrics::METRICS.count_upload(stored.size, stored.new);
    Ok(Reply::json(
        201,
        json!({"hash": stored.hash, "size": stored.size}),
    ))
}

/// `GET /files/:hash` and `HEAD`. `rest` is everything after `/files/`; anything but a bare
/// `sha256:<64 hex>` (so no slashes, no dots) is refused before touching the disk.
pub fn fetch(app: &App, req: &mut Req) -> Result<Reply, ApiError> {
    let (rest, request) = (req.captures[0].as_str(), &req.http);
    if !valid_hash(rest) {
        return Err(ApiError::bad_request(
            "a file is named sha256:<64 lowercase hex>",
        ));
    }
    let etag = format!("\"{rest}\"");
    let file = app.blobs.read(rest)?;
    let file = file.ok_or_else(|| ApiError::not_found(format!("no file {rest}")))?;
    if request_header(request, "If-None-Match").is_some_and(|tags| none_match(tags, &etag)) {
        return Ok(Reply::NotModified { etag });
    }
    let len = file.metadata()?.len();
    Ok(Reply::File { file, len, etag })
}

/// Whether an `If-None-Match` value matches `etag` (RFC 9110 §13.1.2): `*`, or a list of
/// whole entity-tags compared weakly (a `W/` prefix is ignored).
fn none_match(tags: &str, etag: &str) -> bool {
    tags.trim() == "*"
        || tags
            .split(',')
            .map(|tag| tag.trim())
            .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::none_match;

    #[test]
    fn entity_tags_are_compared_whole() {
        let etag = "\"sha256:ab\"";
        for yes in [
            "*",
            " * ",
            "\"sha256:ab\"",
            "W/\"sha256:ab\"",
            "\"x\", \"sha256:ab\"",
        ] {
            assert!(none_match(yes, etag), "{yes}");
        }
        for no in [
            "\"xsha256:ab\"",
            "\"sha256:abc\"",
            "sha256:ab",
            "\"sha256:ab",
            "\"x\"",
        ] {
            assert!(!none_match(no, etag), "{no}");
        }
    }
}
