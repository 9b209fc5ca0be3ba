//! The scanner behind [`ShellLexer`](super::ShellLexer): one pass over the characters
//! of a word, building the joined result and the split words side by side.

use std::collections::BTreeSet;

use super::pattern::Pattern;
use super::{Environment, ExpandErrorKind, Expansion};

/// Words being split as characters arrive.
///
/// White space splits words only when it is unquoted text or comes from a variable's
/// value; quoted text and escaped characters are added raw. A quoted empty string starts
/// a word without adding characters, and an empty word is never emitted (as BuildKit).
#[derive(Debug, Default)]
struct WordSplitter {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordSplitter {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        text.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// How deeply `${...}` substitutions may nest inside one word. Real Dockerfiles nest two or
/// three levels; the limit keeps a hostile word from exhausting the stack.
pub(crate) const MAX_NESTING: usize = 64;

/// State of one expansion.
pub(super) struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a Environment,
    escape: char,
    /// Keep escape characters in the output (inside `${V#p}`-style patterns, so that the
    /// pattern compiler sees `\*`).
    raw_escapes: bool,
    /// Take `'` and `"` as plain characters (BuildKit's `SkipProcessQuotes`, used for
    /// the contents of inline files).
    literal_quotes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    /// How many `${...}` words enclose the current position.
    depth: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(word: &str, env: &'a Environment, escape: char) -> Lexer<'a> {
        Lexer {
            chars: word.chars().collect(),
            pos: 0,
            env,
            escape,
            raw_escapes: false,
            literal_quotes: false,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            depth: 0,
        }
    }

    /// Takes quote characters as plain text.
    pub(super) fn with_literal_quotes(mut self) -> Lexer<'a> {
        self.literal_quotes = true;
        self
    }

    pub(super) fn run(mut self) -> Result<Expansion, ExpandErrorKind> {
        let (value, words) = self.until(None, false)?;
        Ok(Expansion {
            value,
            words,
            matched: self.matched,
            unmatched: self.unmatched,
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += 1;
        Some(ch)
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_owned());
                Some(value.to_owned())
            }
            None => {
                self.unmatched.insert(name.to_owned());
                None
            }
        }
    }

    /// Processes characters up to `stop` (consumed) or the end of the word when `stop`
    /// is `None`; returns the joined text and the split words.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        // Each nested `${...}` recurses; a hostile word must not exhaust the stack.
        if self.depth > MAX_NESTING {
            return Err(ExpandErrorKind::TooDeep(MAX_NESTING));
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.until_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        result
    }

    fn until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let mut result = String::new();
        let mut words = WordSplitter::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_str(&value);
                }
                '\'' if !self.literal_quotes => {
                    let value = self.single_quoted()?;
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                '"' if !self.literal_quotes => {
                    let value = self.double_quoted()?;
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end of the word is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            None => Ok((result, words.finish())),
            Some(_) => Err(ExpandErrorKind::MissingBrace),
        }
    }

    /// `'...'`: everything literal up to the next `'`.
    fn single_quoted(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1;
        let mut result = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedQuote("single-quote")),
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"..."`: literal except `$` expansions and the escape before `"`, `$` or itself.
    fn double_quoted(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1;
        let mut result = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedQuote("double-quote")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(ch) => {
                    self.pos += 1;
                    if ch != self.escape {
                        result.push(ch);
                        continue;
                    }
                    if self.raw_escapes {
                        result.push(ch);
                    }
                    match self.peek() {
                        // The loop reports the missing quote.
                        None => {}
                        Some(next) if next == '"' || next == '$' || next == self.escape => {
                            self.pos += 1;
                            result.push(next);
                        }
                        // Other escapes stay as written.
                        Some(_) => result.push(ch),
                    }
                }
            }
        }
    }

    /// A name after `$`: letters, digits and `_`; or a run of digits (positional
    /// parameter); or one special parameter character. Empty when none follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(ch) {
                self.pos += 1;
                name.push(ch);
                return name;
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    /// `$NAME` or `${...}`, the `$` not yet consumed.
    fn dollar(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let mut modifier = match self.next() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('}') => return Ok(self.lookup(&name).unwrap_or_default()),
            Some('/') => return self.replace(&name),
            Some(ch) => ch,
        };
        let mut spelled = modifier.to_string();
        let null_is_unset = modifier == ':';
        if null_is_unset {
            match self.next() {
                None => return Err(ExpandErrorKind::MissingBrace),
                Some(ch) => {
                    modifier = ch;
                    spelled.push(ch);
                }
            }
        }
        if !null_is_unset && !matches!(modifier, '+' | '-' | '?' | '#' | '%') {
            return Err(ExpandErrorKind::UnsupportedModifier(spelled));
        }
        let (word, _) = self.until(Some('}'), matches!(modifier, '#' | '%'))?;
        let value = self.lookup(&name);
        let unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match modifier {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => match value {
                Some(v) if !unset => Ok(v),
                _ => Err(ExpandErrorKind::Required {
                    message: if !word.is_empty() {
                        word
                    } else if value.is_none() {
                        "is not allowed to be unset".to_owned()
                    } else {
                        "is not allowed to be empty".to_owned()
                    },
                    name,
                }),
            },
            '#' | '%' => {
                let (pattern, longest) = match word.strip_prefix(modifier) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let pattern = Pattern::compile(pattern)?;
                let value = value.unwrap_or_default();
                Ok(if modifier == '#' {
                    pattern.trim_prefix(&value, longest)
                } else {
                    pattern.trim_suffix(&value, longest)
                })
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(spelled)),
        }
    }

    /// `${NAME/pattern/replacement}` or `${NAME//pattern/replacement}`, after the first `/`.
    fn replace(&mut self, name: &str) -> Result<String, ExpandErrorKind> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let (pattern, _) = self.until(Some('/'), true).map_err(|e| match e {
            ExpandErrorKind::MissingBrace => ExpandErrorKind::MissingSlash,
            other => other,
        })?;
        let (replacement, _) = self.until(Some('}'), true)?;
        let value = self.lookup(name).unwrap_or_default();
        Ok(Pattern::compile(&pattern)?.replace(&value, &replacement, all))
    }
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`): never set
/// in a Dockerfile, but recognised so that `$@x` expands to `x`.
/// <https://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02>
fn is_special_parameter(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
