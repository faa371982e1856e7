//! What in a string would hide or reorder what a person reads: control characters (which clear
//! a terminal, retitle a window or end a log line) and Unicode's bidirectional controls (which
//! show text in another order than it is stored). The server refuses them in names; the CLI
//! escapes them in what it prints.

/// A character that changes how the text around it looks instead of showing itself.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// The explicit embeddings, overrides and isolates of the bidirectional algorithm, and its
/// three invisible marks (left-to-right, right-to-left, Arabic letter).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_hidden_letters_are_not() {
        for hidden in [
            '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{202e}', '\u{2067}', '\u{200f}',
        ] {
            assert!(is_hidden_control(hidden), "{:x}", hidden as u32);
        }
        // Zero-width joiners are part of how Persian, Indic scripts and emoji are written.
        for shown in ['a', 'é', 'ش', ' ', '\u{200d}', '\u{200c}', '🙂'] {
            assert!(!is_hidden_control(shown), "{:x}", shown as u32);
        }
    }
}
