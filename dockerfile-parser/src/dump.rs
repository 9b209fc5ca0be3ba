//! The AST dump: BuildKit's `Node.Dump()` s-expressions, one line per instruction.
//!
//! `(keyword ["--flag" ...] "arg" ...)`: keyword lower case, the flag list only when
//! there are flags, every string quoted like Go's `%q`. `ENV`/`LABEL` dump triples
//! `"key" "value" "sep"`; `ONBUILD` nests its trigger. This is the format the
//! conformance vectors (`buildkit/parser/*/result`) are written in.

use std::fmt::Write as _;

use crate::syntax::{Arguments, RawInstruction, SyntaxTree};

/// Dumps a whole tree: one line per instruction, each ending in `\n`.
pub fn dump(tree: &SyntaxTree) -> String {
    let mut out = String::new();
    for instruction in &tree.instructions {
        out.push('(');
        out.push_str(&dump_instruction(instruction));
        out.push_str(")\n");
    }
    out
}

/// Dumps one instruction without the surrounding parentheses.
pub fn dump_instruction(instruction: &RawInstruction) -> String {
    let mut out = instruction.keyword_lower();
    if !instruction.flags.is_empty() {
        let quoted: Vec<String> = instruction.flags.iter().map(|f| go_quote(f)).collect();
        let _ = write!(out, " [{}]", quoted.join(" "));
    }
    dump_arguments(&instruction.args, &mut out);
    out.trim().to_owned()
}

fn dump_arguments(args: &Arguments, out: &mut String) {
    let mut push = |s: &str| {
        out.push(' ');
        out.push_str(&go_quote(s));
    };
    match args {
        Arguments::Empty => {}
        Arguments::Exec(items) | Arguments::Words(items) => items.iter().for_each(|s| push(s)),
        Arguments::Shell(text) => push(text),
        Arguments::Pairs(pairs) => {
            for pair in pairs {
                push(&pair.key);
                push(&pair.value);
                push(if pair.legacy { "" } else { "=" });
            }
        }
        Arguments::Health { kind, command } => {
            push(kind);
            dump_arguments(command, out);
        }
        Arguments::Trigger(inner) => {
            out.push_str(" (");
            out.push_str(&dump_instruction(inner));
            out.push(')');
        }
        // BuildKit keeps an empty node for instructions it does not know.
        Arguments::Unknown(_) => push(""),
    }
}

/// Quotes a string as Go's `strconv.Quote` (`%q`) does.
///
/// Printable characters stay as they are; `\a \b \f \n \r \t \v \\ \"` use their short
/// escapes; other characters below U+0080 become `\xNN`, others `\uNNNN` or
/// `\UNNNNNNNN`. "Printable" follows Go's `unicode.IsPrint` for the categories that
/// matter in practice (controls, separators other than the ASCII space, format
/// characters, private use and non-characters are escaped); unassigned code points
/// are treated as printable.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` without a full Unicode table.
fn is_go_printable(c: char) -> bool {
    let n = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(n,
        0x00ad | 0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private = matches!(n, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let nonchar = (n & 0xfffe) == 0xfffe || (0xfdd0..=0xfdef).contains(&n);
    !(format || private || nonchar)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t\n"), r#""\x00\t\n""#);
        assert_eq!(go_quote("♥ ☃"), "\"♥ ☃\"");
        assert_eq!(go_quote("\u{a0}\u{feff}\u{7f}"), r#""\u00a0\ufeff\x7f""#);
        assert_eq!(go_quote("\u{10ffff}"), r#""\U0010ffff""#);
    }
}
