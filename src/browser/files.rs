//! The headers that keep a downloaded blob (`/files/`) from running in a page.
/// Uploaded files may be HTML or SVG: never let them run, style or load anything.
pub(super) const FILES_CSP: &str = "default-src 'none'; sandbox";

/// `attachment`, with the client's name for the file when given: as `filename*` (RFC 6266,
/// UTF-8 percent-encoded) and an ASCII `filename` for old clients. Folders, control
/// characters and quotes are removed, so the name can neither escape the download folder nor
/// the header, and so are bidirectional controls, so `invoice\u{202e}fdp.exe` is not saved
/// as what shows as `invoiceexe.pdf`.
pub(super) fn content_disposition(name: Option<&str>) -> String {
    const MAX_CHARS: usize = 200;
    let base = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !crate::text::is_hidden_control(*c) && *c != '"')
        .take(MAX_CHARS)
        .collect::<String>();
    let base = base.trim();
    if base.is_empty() || base.chars().all(|c| c == '.') {
        return "attachment".into();
    }
    let ascii: String = base
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '\\' && c != ';' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in base.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_sanitised() {
        let cd = |name: &str| content_disposition(Some(name));
        assert_eq!(
            cd("report.csv"),
            "attachment; filename=\"report.csv\"; filename*=UTF-8''report.csv"
        );
        assert_eq!(
            cd("../../etc/passwd"),
            "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"
        );
        assert_eq!(
            cd("C:\\dir\\été 1.txt"),
            "attachment; filename=\"_t_ 1.txt\"; filename*=UTF-8''%C3%A9t%C3%A9%201.txt"
        );
        assert_eq!(
            cd("a\"b\r\nSet-Cookie: x;y"),
            "attachment; filename=\"abSet-Cookie: x_y\"; filename*=UTF-8''abSet-Cookie%3A%20x%3By"
        );
        assert_eq!(
            cd("invoice\u{202e}fdp.exe"),
            "attachment; filename=\"invoicefdp.exe\"; filename*=UTF-8''invoicefdp.exe",
            "saved as what it is, not as what it shows"
        );
        for nothing in ["", "   ", "..", ".", "dir/", "\u{1b}", "\u{2066}"] {
            assert_eq!(cd(nothing), "attachment", "{nothing:?}");
        }
        assert_eq!(content_disposition(None), "attachment");
        let long = cd(&"é".repeat(1000));
        assert!(long.len() < 2000, "bounded: {}", long.len());
    }
}
