//! Path patterns: Go `filepath.Match` syntax, plus `**` for `.dockerignore`.
//!
//! One compiled form serves both users. A COPY source uses plain `filepath.Match`
//! semantics one path component at a time (BuildKit's copy does the same); a
//! `.dockerignore` line is matched against a whole slash-separated path, where `**`
//! also crosses directories, as moby/patternmatcher does.

/// A syntax error in a pattern, as `filepath.Match` reports `ErrBadPattern`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One exact character.
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` at the end of a pattern: anything at all, `/` included.
    AnyPath,
    /// `**` (or `**/`) before more pattern: nothing, or anything that ends with `/`.
    AnyDirs,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    source: String,
    tokens: Vec<Token>,
    /// moby/patternmatcher quirk: a pattern of `**` then plain characters is a suffix test
    /// (`**foo` matches `xfoo`), not the `(.*/)?foo` its other `**` forms would mean.
    suffix: Option<String>,
}

impl Pattern {
    /// Compiles `source`; `double_star` turns on the `.dockerignore` meaning of `**`
    /// (without it, `**` is two `*` and never crosses a `/`, as in `filepath.Match`).
    pub fn new(source: &str, double_star: bool) -> Result<Self, PatternError> {
        let bad = |reason| PatternError {
            pattern: source.to_owned(),
            reason,
        };
        let chars: Vec<char> = source.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if double_star && chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    tokens.push(if i == chars.len() {
                        Token::AnyPath
                    } else {
                        Token::AnyDirs
                    });
                }
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::AnyChar),
                '\\' => match chars.get(i) {
                    Some(&next) => {
                        i += 1;
                        tokens.push(Token::Literal(next));
                    }
                    None => return Err(bad("trailing backslash")),
                },
                '[' => {
                    let (token, next) = parse_class(&chars, i).map_err(bad)?;
                    tokens.push(token);
                    i = next;
                }
                other => tokens.push(Token::Literal(other)),
            }
        }
        let suffix = match source.strip_prefix("**") {
            Some(rest) if double_star && !rest.contains(['*', '?', '[', ']', '\\']) => {
                Some(rest.to_owned())
            }
            _ => None,
        };
        Ok(Self {
            source: source.to_owned(),
            tokens,
            suffix,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has any wildcard (so matches more than one exact name).
    pub fn has_wildcard(&self) -> bool {
        self.tokens.iter().any(|t| !matches!(t, Token::Literal(_)))
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if let Some(suffix) = &self.suffix {
            return text.ends_with(suffix.as_str())
                || suffix.strip_prefix('/').is_some_and(|s| s == text);
        }
        let text: Vec<char> = text.chars().collect();
        match_tokens(&self.tokens, &text)
    }
}

fn parse_class(chars: &[char], mut i: usize) -> Result<(Token, usize), &'static str> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let read_char = |i: &mut usize| -> Result<char, &'static str> {
        match chars.get(*i) {
            None => Err("unterminated character class"),
            Some('\\') => {
                *i += 1;
                let c = chars.get(*i).ok_or("unterminated character class")?;
                *i += 1;
                Ok(*c)
            }
            Some(&c) if c == ']' || c == '-' => Err("bad character class"),
            Some(&c) => {
                *i += 1;
                Ok(c)
            }
        }
    };
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let lo = read_char(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            read_char(&mut i)?
        } else {
            lo
        };
        if hi < lo {
            return Err("bad range in character class");
        }
        ranges.push((lo, hi));
    }
}

/// Whether `tokens` match the whole of `text`. The positions of `text` the tokens read
/// so far can end at are carried from one token to the next (a set, as a regular
/// expression engine would): the time is at most tokens × characters, the memory two
/// rows of characters, and nothing recurses, so a hostile `.dockerignore` line (two
/// million `?`, a run of `*`) against a 4096-byte path can neither overflow the stack nor
/// ask for gigabytes of memory, and the set emptying ends the match early.
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let len = text.len();
    let mut reach = vec![false; len + 1];
    reach[0] = true;
    let mut next = vec![false; len + 1];
    let mut previous: Option<&Token> = None;
    for token in tokens {
        // A run of the same zero-width token means no more than one of it.
        if matches!(token, Token::Star | Token::AnyDirs) && previous == Some(token) {
            continue;
        }
        previous = Some(token);
        next.fill(false);
        match token {
            Token::Literal(c) => one_char(&reach, &mut next, text, |t| t == *c),
            Token::AnyChar => one_char(&reach, &mut next, text, |t| t != '/'),
            Token::Class { negated, ranges } => one_char(&reach, &mut next, text, |t| {
                ranges.iter().any(|&(lo, hi)| lo <= t && t <= hi) != *negated
            }),
            Token::Star => {
                // Any run of characters other than `/` after a reached position.
                let mut on = false;
                for q in 0..=len {
                    on |= reach[q];
                    next[q] = on;
                    if text.get(q) == Some(&'/') {
                        on = false;
                    }
                }
            }
            // Only ever the last token: anything at all follows.
            Token::AnyPath => return reach.contains(&true),
            Token::AnyDirs => {
                // Nothing, or anything ending with `/`, after a reached position.
                let mut seen = false;
                for q in 0..=len {
                    if q > 0 && seen && text[q - 1] == '/' {
                        next[q] = true;
                    }
                    if reach[q] {
                        next[q] = true;
                        seen = true;
                    }
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
        if !reach.contains(&true) {
            return false;
        }
    }
    reach[len]
}

/// One token that reads one character satisfying `accepts`.
fn one_char(reach: &[bool], next: &mut [bool], text: &[char], accepts: impl Fn(char) -> bool) {
    for (p, &t) in text.iter().enumerate() {
        if reach[p] && accepts(t) {
            next[p + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern, true)
            .map(|p| p.matches(text))
            .unwrap_or(false)
    }

    #[test]
    fn huge_patterns_against_long_paths_stay_small() {
        // Before, the matcher's table of failed (token, offset) pairs for two million
        // `?` against a 4000-character path asked for 8 GB and aborted the build.
        let text = "d".repeat(4000);
        assert!(!m(&"?".repeat(2_000_000), &text));
        // Without `**` (a COPY source), a million `*` are one `*`.
        let stars = Pattern::new(&format!("{}d", "*".repeat(1_000_000)), false).unwrap();
        assert!(stars.matches(&text));
        // With it, they are `**` runs: `(.*/)?d`, which 4000 `d` do not match.
        assert!(!m(&format!("{}d", "*".repeat(1_000_000)), &text));
        assert!(m(&format!("{}d", "**/".repeat(100_000)), "a/b/d"));
        assert!(!m(&"*/".repeat(1_000_000), "a/b/c"));
    }

    #[test]
    fn runs_of_stars_do_not_backtrack_exponentially() {
        // Found by the dockerignore fuzz target (a timeout): each extra `*` doubled the
        // time before the matcher remembered failed splits.
        let stars = format!("{}n", "*".repeat(64));
        let text = "a".repeat(200);
        assert!(!m(&stars, &text));
        let single = format!("{}b", "a*".repeat(30));
        assert!(!m(&single, &text));
        assert!(m(&single, &format!("{text}b")));
        let path = format!("{}/x", "a/".repeat(100));
        assert!(!m(&format!("**/{}q", "*".repeat(40)), &path));
    }

    #[test]
    fn single_star_stays_in_one_component() {
        assert!(m("*.go", "a.go"));
        assert!(!m("*.go", "dir/a.go"));
        assert!(m("dir/*", "dir/a"));
    }

    #[test]
    fn double_star_crosses_directories_including_none() {
        assert!(m("**/a", "a"));
        assert!(m("**/a", "x/y/a"));
        assert!(m("x/**/a", "x/a"));
        assert!(m("x/**/a", "x/y/z/a"));
        assert!(m("x/**", "x/y/z"));
        assert!(!m("x/**", "x"));
        assert!(m("**", "anything/at/all"));
        assert!(m("**foo", "xfoo"));
        assert!(m("a**b", "a/x/b"));
        assert!(!m("a**b", "axb"));
    }

    #[test]
    fn classes_ranges_negation_and_escapes() {
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in ["[", "[]", "[z-a]", "a\\", "[a-"] {
            assert!(Pattern::new(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn clean_follows_go_path_clean() {
        assert_eq!(rbuild_dockerfile::clean_path("./a//b/../c/"), "a/c");
        assert_eq!(rbuild_dockerfile::clean_path("/../a"), "/a");
        assert_eq!(rbuild_dockerfile::clean_path("../a"), "../a");
        assert_eq!(rbuild_dockerfile::clean_path(""), ".");
        assert_eq!(rbuild_dockerfile::clean_path("a/.."), ".");
    }
}
