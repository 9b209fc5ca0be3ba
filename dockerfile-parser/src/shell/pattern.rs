//! Shell glob patterns for `${V#p}`, `${V%p}` and `${V/p/r}`.
//!
//! As in BuildKit: `*` matches any string, `?` any one character, and `\` makes the
//! next `*`, `?` or `\` literal; `\}` and `\/` stand for `}` and `/` (they had to be
//! escaped inside `${...}`). Bracket expressions (`[a-z]`) are not supported: `[` is a
//! literal character.

use super::ExpandErrorKind;

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`.
    AnyString,
    /// `?`.
    AnyChar,
    /// Anything else, or an escaped `*`, `?`, `\`.
    Literal(char),
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `pattern`; a `\` before anything but `*`, `?`, `\`, `}`, `/` is an error.
    pub(super) fn compile(pattern: &str) -> Result<Pattern, ExpandErrorKind> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            let token = match ch {
                '*' => Token::AnyString,
                '?' => Token::AnyChar,
                '\\' => match chars.next() {
                    Some(next @ ('*' | '?' | '\\' | '}' | '/')) => Token::Literal(next),
                    other => {
                        return Err(ExpandErrorKind::InvalidPattern {
                            pattern: pattern.to_owned(),
                            reason: match other {
                                Some(c) => format!("invalid escape '\\{c}'"),
                                None => "trailing escape".to_owned(),
                            },
                        });
                    }
                },
                other => Token::Literal(other),
            };
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    /// `${V#p}` / `${V##p}`: `value` without its shortest (longest) matching prefix.
    pub(super) fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = match_ends(&self.tokens, &chars);
        match if longest { ends.last() } else { ends.first() } {
            Some(&end) => chars[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// `${V%p}` / `${V%%p}`: `value` without its shortest (longest) matching suffix.
    pub(super) fn trim_suffix(&self, value: &str, longest: bool) -> String {
        // A suffix match is a prefix match of the reversed pattern on the reversed text.
        let reversed: Vec<char> = value.chars().rev().collect();
        let tokens: Vec<Token> = self.tokens.iter().rev().copied().collect();
        let ends = match_ends(&tokens, &reversed);
        match if longest { ends.last() } else { ends.first() } {
            Some(&len) => reversed[len..].iter().rev().collect(),
            None => value.to_owned(),
        }
    }

    /// `${V/p/r}` / `${V//p/r}`: replace the leftmost-longest match (or every one).
    pub(super) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        // Where the previous match ended: an empty match right there is not another
        // match (so `a*` replaces `aa` once, not once plus an empty match after it).
        let mut previous_end: Option<usize> = None;
        while pos <= chars.len() {
            let found = (pos..=chars.len()).find_map(|start| {
                let end = start + *match_ends(&self.tokens, &chars[start..]).last()?;
                if end == start && previous_end == Some(start) {
                    None
                } else {
                    Some((start, end))
                }
            });
            let Some((start, end)) = found else { break };
            out.extend(&chars[pos..start]);
            out.push_str(replacement);
            previous_end = Some(end);
            if end == start {
                // An empty match: keep the next character and move past it.
                if let Some(&c) = chars.get(start) {
                    out.push(c);
                }
                pos = start + 1;
            } else {
                pos = end;
            }
            if !all {
                break;
            }
        }
        if pos < chars.len() {
            out.extend(&chars[pos..]);
        }
        out
    }
}

/// Every `n` such that `tokens` match all of `text[..n]`, ascending.
///
/// A simulation of the pattern as a nondeterministic automaton (state `i`: the first
/// `i` tokens matched), so the cost is `O(text × pattern)` whatever the pattern; a
/// backtracking matcher is exponential on patterns like `*a*a*a*b`.
fn match_ends(tokens: &[Token], text: &[char]) -> Vec<usize> {
    let accept = tokens.len();
    let mut states = vec![false; accept + 1];
    states[0] = true;
    close(tokens, &mut states);
    let mut ends = Vec::new();
    if states[accept] {
        ends.push(0);
    }
    for (i, &ch) in text.iter().enumerate() {
        let mut next = vec![false; accept + 1];
        for (state, token) in tokens.iter().enumerate() {
            if !states[state] {
                continue;
            }
            match token {
                Token::AnyString => next[state] = true,
                Token::AnyChar => next[state + 1] = true,
                Token::Literal(c) if *c == ch => next[state + 1] = true,
                Token::Literal(_) => {}
            }
        }
        close(tokens, &mut next);
        if !next.iter().any(|&s| s) {
            break;
        }
        if next[accept] {
            ends.push(i + 1);
        }
        states = next;
    }
    ends
}

/// Adds the states reachable without input: `*` may match the empty string.
fn close(tokens: &[Token], states: &mut [bool]) {
    for (state, token) in tokens.iter().enumerate() {
        if states[state] && *token == Token::AnyString {
            states[state + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::compile(p).expect("pattern compiles")
    }

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(pattern("*/").trim_prefix("a/b/c", false), "b/c");
        assert_eq!(pattern("*/").trim_prefix("a/b/c", true), "c");
        assert_eq!(pattern("x*").trim_prefix("abc", true), "abc");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        assert_eq!(pattern(".*").trim_suffix("a.tar.gz", false), "a.tar");
        assert_eq!(pattern(".*").trim_suffix("a.tar.gz", true), "a");
        assert_eq!(pattern("?").trim_suffix("abc", false), "ab");
    }

    #[test]
    fn replace_first_and_all() {
        assert_eq!(pattern("o").replace("foo boo", "0", false), "f0o boo");
        assert_eq!(pattern("o").replace("foo boo", "0", true), "f00 b00");
        assert_eq!(pattern("b*").replace("abcb", "X", false), "aX");
        assert_eq!(pattern("\\*").replace("a*b", "-", true), "a-b");
        assert_eq!(pattern("").replace("ab", "-", true), "-a-b-");
    }

    #[test]
    fn bad_escape_is_an_error() {
        assert!(Pattern::compile("\\a").is_err());
        assert!(Pattern::compile("a\\").is_err());
        assert_eq!(pattern("\\}").trim_prefix("}x", false), "x");
    }

    #[test]
    fn many_stars_stay_fast() {
        // Exponential for a backtracking matcher; linear per start here.
        let value = "a".repeat(2000);
        let p = pattern("*a*a*a*a*a*a*a*a*a*a*b");
        assert_eq!(p.trim_prefix(&value, true), value);
        assert_eq!(p.trim_suffix(&value, false), value);
    }
}
