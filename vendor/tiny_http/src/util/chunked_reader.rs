//! workshop patch: a strict decoder of chunked request bodies (RFC 9112 §7.1) with bounded
//! lines. The `chunked_transfer` decoder kept a chunk-size line and its extensions without
//! limit (one connection sending digits and no CRLF grew memory a byte per byte sent), and
//! accepted sizes such as `+17`, which other parsers read differently.

use std::convert::TryFrom;
use std::io::{Error, ErrorKind, Read, Result};

/// Longest trailer line.
const MAX_LINE: usize = 4096;
/// Most bytes after the hex size on a chunk-size line (whitespace and extensions): with
/// 4 KiB, a 1-byte chunk could cost 4 KiB on the wire, so a 1 MiB body 4 GiB of reading.
const MAX_EXTENSIONS: usize = 256;
/// Longest chunk-size line: 16 hex digits (a u64) and the extensions.
const MAX_SIZE_LINE: usize = 16 + MAX_EXTENSIONS;
/// Most trailer lines after the last chunk.
const MAX_TRAILERS: usize = 64;

pub struct ChunkedReader<R> {
    inner: R,
    state: State,
}

enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes to go, then CRLF.
    Data(u64),
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
    Done,
}

fn invalid(message: &'static str) -> Error {
    Error::new(ErrorKind::InvalidData, message)
}

impl<R: Read> ChunkedReader<R> {
    pub fn new(inner: R) -> ChunkedReader<R> {
        ChunkedReader {
            inner,
            state: State::Size,
        }
    }

    fn byte(&mut self) -> Result<u8> {
        let mut byte = [0u8];
        loop {
            match self.inner.read(&mut byte) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::UnexpectedEof,
                        "the body ended inside a chunk",
                    ))
                }
                Ok(_) => return Ok(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One line ended by CRLF, without it, at most `limit` bytes. A bare CR or LF is an
    /// error.
    fn line(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' if self.byte()? == b'\n' => return Ok(line),
                b'\r' | b'\n' => return Err(invalid("bare CR or LF in a chunked body")),
                _ if line.len() >= limit => return Err(invalid("chunk line too long")),
                byte => line.push(byte),
            }
        }
    }

    fn chunk_size(&mut self) -> Result<u64> {
        let line = self.line(MAX_SIZE_LINE)?;
        // Extensions (after `;`) are allowed and ignored, up to `MAX_EXTENSIONS` bytes.
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if line.len() - digits > MAX_EXTENSIONS {
            return Err(invalid("chunk extensions too long"));
        }
        let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
        let size = match size.iter().rposition(|b| *b != b' ' && *b != b'\t') {
            Some(end) => &size[..=end],
            None => &[][..],
        };
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid("bad chunk size"));
        }
        let size = std::str::from_utf8(size).map_err(|_| invalid("bad chunk size"))?;
        u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))
    }

    fn trailers(&mut self) -> Result<()> {
        for _ in 0..=MAX_TRAILERS {
            if self.line(MAX_LINE)?.is_empty() {
                return Ok(());
            }
        }
        Err(invalid("too many trailer lines"))
    }
}

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Size => {
                    self.state = match self.chunk_size()? {
                        0 => State::Trailers,
                        size => State::Data(size),
                    }
                }
                State::Trailers => {
                    self.trailers()?;
                    self.state = State::Done;
                }
                State::Data(0) => {
                    if !self.line(MAX_LINE)?.is_empty() {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = State::Size;
                }
                State::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(Error::new(
                            ErrorKind::UnexpectedEof,
                            "the body ended inside a chunk",
                        ));
                    }
                    self.state = State::Data(left - n as u64);
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedReader;
    use std::io::Read;

    fn decode(raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ChunkedReader::new(raw).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let raw = b"5;ext=1\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-T: y\r\n\r\n";
        assert_eq!(decode(raw).unwrap(), b"hello world");
    }

    #[test]
    fn refuses_what_other_parsers_read_differently() {
        for raw in [
            &b"+5\r\nhello\r\n0\r\n\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\r\nhel",
            b"5\r\nhello\r\n0\r\n",
        ] {
            assert!(decode(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn chunk_extensions_are_bounded() {
        let chunk = |ext: &str| format!("1;{ext}\r\na\r\n0\r\n\r\n").into_bytes();
        // 256 bytes after the size (`;` included) are fine, one more is not.
        assert_eq!(decode(&chunk(&"x".repeat(255))).unwrap(), b"a");
        let err = decode(&chunk(&"x".repeat(256))).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        // Whitespace before the extensions counts too.
        let padded = format!("1{};x\r\na\r\n0\r\n\r\n", " ".repeat(300));
        assert!(decode(padded.as_bytes()).is_err());
        // 16 hex digits and 256 bytes of extensions make the longest size line.
        let long = format!("{:016x};{}\r\n", 1, "x".repeat(255));
        let mut raw = long.into_bytes();
        raw.extend_from_slice(b"a\r\n0\r\n\r\n");
        assert_eq!(decode(&raw).unwrap(), b"a");
    }

    #[test]
    fn a_size_line_without_end_is_bounded() {
        let raw = vec![b'1'; 1 << 20];
        let err = decode(&raw).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
