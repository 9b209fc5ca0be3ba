//! Heredocs: `<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`, several per line.
//!
//! BuildKit finds them by splitting the logical line into shell words (quotes and
//! escapes kept) and matching each word against `^(\d*)<<(-?)([^<]*)$`. The name is
//! the word after `<<` with quotes removed; any quoting turns expansion of the body
//! off. Heredoc escapes are always `\`, whatever the escape directive says.

use serde::Serialize;

use crate::error::Span;

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor written before `<<` (`2<<EOF`), 0 when none.
    pub file_descriptor: u32,
    /// False when the name was quoted: the body must not be expanded.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from the body lines (and the
    /// terminator may be indented with tabs).
    pub chomp: bool,
    /// The body exactly as written, every line with its newline; tabs not stripped
    /// (see [`Heredoc::text`]).
    pub content: String,
    /// The lines of the body (terminator line included).
    pub span: Span,
}

impl Heredoc {
    /// The body as the build uses it: with leading tabs removed from every line when
    /// [`chomp`](Heredoc::chomp) is set.
    pub fn text(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// The heredocs opened on a logical line, bodies still empty.
pub(super) fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    let Some(words) = raw_words(line) else {
        return Vec::new();
    };
    words.iter().filter_map(|w| heredoc_from_word(w)).collect()
}

/// Matches `^(\d*)<<(-?)([^<]*)$` and reads the name.
pub(crate) fn heredoc_from_word(word: &str) -> Option<Heredoc> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote_single_word(rest)?;
    Some(Heredoc {
        name,
        file_descriptor: word[..digits].parse().unwrap_or(0),
        expand: !quoted,
        chomp,
        content: String::new(),
        span: Span::default(),
    })
}

/// Removes quotes and escapes from `text`; `None` unless it is exactly one word.
/// Also says whether any quote took part.
fn unquote_single_word(text: &str) -> Option<(String, bool)> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                quoted = true;
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                quoted = true;
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '$' | '\\') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.push(c);
                    in_word = true;
                }
            }
            c if c.is_whitespace() => {
                if in_word && !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    match <[String; 1]>::try_from(words) {
        Ok([only]) => Some((only, quoted)),
        Err(_) => None,
    }
}

/// Splits a line into shell words keeping quotes and escapes; `None` on an
/// unterminated quote (BuildKit then finds no heredoc at all).
fn raw_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' | '"' => {
                word.push(ch);
                loop {
                    let c = chars.next()?;
                    word.push(c);
                    if c == ch {
                        break;
                    }
                    if c == '\\' && ch == '"' {
                        word.push(chars.next()?);
                    }
                }
            }
            '\\' => {
                let Some(next) = chars.next() else { break };
                word.push(ch);
                word.push(next);
            }
            '$' => {
                word.push(ch);
                let mut rest = chars.clone();
                if rest.next() == Some('{') {
                    // `${...}` is one unit: its inside never splits the word.
                    for c in chars.by_ref() {
                        word.push(c);
                        if c == '}' {
                            break;
                        }
                    }
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::heredocs_from_line;

    fn names(line: &str) -> Vec<(String, u32, bool, bool)> {
        heredocs_from_line(line)
            .into_iter()
            .map(|h| (h.name, h.file_descriptor, h.expand, h.chomp))
            .collect()
    }

    #[test]
    fn finds_heredoc_words() {
        assert_eq!(names("RUN cat <<EOF"), [("EOF".into(), 0, true, false)]);
        assert_eq!(
            names("RUN <<-\"A\" 2<<'B' x"),
            [("A".into(), 0, false, true), ("B".into(), 2, false, false)]
        );
        assert_eq!(names("RUN echo '<<EOF'"), []);
        assert_eq!(names("RUN echo \"<<EOF"), []);
        assert_eq!(
            names("COPY <<E\\\"OF /x"),
            [("E\"OF".into(), 0, true, false)]
        );
        assert_eq!(names("RUN a <<"), []);
    }
}
