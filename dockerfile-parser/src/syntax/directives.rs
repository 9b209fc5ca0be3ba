//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the top of the file.
//!
//! BuildKit looks for them on every line until the first line that is not one (an
//! instruction, a blank line, a plain comment or an unknown directive name); from then
//! on `# escape=x` is an ordinary comment. Names are case-insensitive; a repeated name
//! is an error.

use crate::error::{ErrorKind, Span};

use super::{DEFAULT_ESCAPE, Directive};

/// The directive names BuildKit recognises.
const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Go's regexp `\s`: ASCII white space without `\v`.
fn is_regex_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on a line already stripped of
/// leading white space, returning name and value.
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphanumeric() && (i > 0 || c.is_ascii_alphabetic())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_regex_space).strip_prefix('=')?;
    let value = rest.trim_start_matches(is_regex_space);
    let value = value.trim_end_matches(is_regex_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // `(.+?)` needs one character: when only white space follows `=`, the regular
    // expression gives the last white-space character back to the value.
    let last = rest.chars().next_back()?;
    Some((name, &rest[rest.len() - last.len_utf8()..]))
}

/// The state of directive scanning while lines are read.
pub(super) struct DirectiveParser {
    done: bool,
    escape: char,
    found: Vec<Directive>,
}

impl DirectiveParser {
    pub(super) fn new() -> DirectiveParser {
        DirectiveParser {
            done: false,
            escape: DEFAULT_ESCAPE,
            found: Vec::new(),
        }
    }

    /// The escape character in effect.
    pub(super) fn escape(&self) -> char {
        self.escape
    }

    /// The directives seen, in order.
    pub(super) fn into_directives(self) -> Vec<Directive> {
        self.found
    }

    /// Looks at one line (newline and leading white space removed); `span` locates it
    /// (computed only when a directive is found).
    pub(super) fn check(
        &mut self,
        line: &str,
        span: impl FnOnce() -> Span,
    ) -> Result<(), ErrorKind> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN_DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(ErrorKind::DuplicateDirective(name));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => return Err(ErrorKind::InvalidEscape(other.to_owned())),
            };
        }
        self.found.push(Directive {
            name,
            value: value.to_owned(),
            span: span(),
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::match_directive;

    #[test]
    fn directive_regex_cases() {
        assert_eq!(match_directive("# escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("#syntax=a/b:1  "),
            Some(("syntax", "a/b:1"))
        );
        assert_eq!(
            match_directive("#  Check = skip=all"),
            Some(("Check", "skip=all"))
        );
        assert_eq!(match_directive("# escape=  "), Some(("escape", " ")));
        assert_eq!(match_directive("# escape="), None);
        assert_eq!(match_directive("# 1x=y"), None);
        assert_eq!(match_directive("# hello world"), None);
        assert_eq!(match_directive("FROM x"), None);
    }
}
