//! Text from input (archive entry names, file names, image names, manifest fields) can
//! hold terminal control sequences; an error quoting it must not let them reach the
//! terminal. [`printable`] escapes them, keeping newlines and tabs, so multi-line errors
//! (a Dockerfile line with its caret) read as before.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is escaped: control characters other than newline and tab (C0, DEL, C1)
/// and the invisible bidirectional overrides that reorder what a terminal shows.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character but newline and tab written as `\x1b` (or
/// `\u{9b}` past ASCII).
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_bytes_are_escaped_and_lines_kept() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(
            printable("a\x1b[31mred\x07\rb\n\tc\u{9b}d\u{202e}"),
            "a\\x1b[31mred\\x07\\x0db\n\tc\\u{9b}d\\u{202e}"
        );
    }
}
