//! The SSE wire format: a message as an event frame, and a frame as the response body
//! carries it (one HTTP chunk, or as is for HTTP/1.0). Shared by the replay (`sse`) and the
//! live events (`Event`, written by the broadcaster).
use std::io::Write as _;
use std::ops::Range;

/// The keepalive comment, bare (HTTP/1.0) and as one chunk.
pub const KEEPALIVE_NOTE: &[u8] = b": keepalive\n\n";
pub const KEEPALIVE_CHUNK: &[u8] = b"d\r\n: keepalive\n\n\r\n";
/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The keepalive comment as a body of that encoding carries it.
pub fn keepalive(chunked: bool) -> &'static [u8] {
    if chunked {
        KEEPALIVE_CHUNK
    } else {
        KEEPALIVE_NOTE
    }
}

/// Appends `data` to `out` as the body encoding needs it: one chunk, or as is for HTTP/1.0.
pub fn encode(data: &[u8], chunked: bool, out: &mut Vec<u8>) {
    if chunked {
        encode_chunk(data, out);
    } else {
        out.extend_from_slice(data);
    }
}

/// Appends `data` as one HTTP/1.1 chunk: its length in hex, the bytes, CRLF.
fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends one message as an SSE event, encoded as the body carries it (one chunk, or as is
/// for HTTP/1.0), copying the message once; returns where the bare frame lies in `out`.
pub fn encode_frame(id: &str, json: &str, chunked: bool, out: &mut Vec<u8>) -> Range<usize> {
    let pieces = frame_pieces(id, json);
    let frame_len: usize = pieces.iter().map(|piece| piece.len()).sum();
    // Size line (at most 16 hex digits and CRLF), frame, CRLF.
    out.reserve(frame_len + 20);
    if chunked {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{frame_len:x}\r\n");
    }
    let start = out.len();
    for piece in pieces {
        out.extend_from_slice(piece);
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    start..start + frame_len
}

/// One message as an SSE event.
#[cfg(test)]
pub fn frame(id: &str, json: &str) -> Vec<u8> {
    format!("id: {id}\ndata: {json}\n\n").into_bytes()
}

/// The pieces of `frame(id, json)`, for writing it without an intermediate copy.
fn frame_pieces<'a>(id: &'a str, json: &'a str) -> [&'a [u8]; 5] {
    [
        b"id: ",
        id.as_bytes(),
        b"\ndata: ",
        json.as_bytes(),
        b"\n\n",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keepalive_is_the_comment_encoded_for_each_body() {
        for chunked in [true, false] {
            let mut encoded = Vec::new();
            encode(b": keepalive\n\n", chunked, &mut encoded);
            assert_eq!(encoded, keepalive(chunked), "chunked: {chunked}");
        }
        let mut last = Vec::new();
        encode(b"", true, &mut last);
        assert_eq!(last, LAST_CHUNK);
    }

    #[test]
    fn a_frame_is_its_pieces() {
        assert_eq!(frame("01A", "{}"), frame_pieces("01A", "{}").concat());
    }

    /// Encoding a frame in place is encoding the frame: as one chunk, or as is.
    #[test]
    fn an_encoded_frame_is_the_frame_encoded() {
        let json = format!("{{\"text\":\"{}\"}}", "x".repeat(300));
        for chunked in [true, false] {
            let mut want = b"before".to_vec();
            encode(&frame("01A", &json), chunked, &mut want);
            let mut got = b"before".to_vec();
            let bare = encode_frame("01A", &json, chunked, &mut got);
            assert_eq!(got, want, "chunked: {chunked}");
            assert_eq!(got[bare], frame("01A", &json), "chunked: {chunked}");
        }
    }
}
