//! Word expansion with BuildKit's shell-lexer semantics.
//!
//! Dockerfile words are not run by a shell, but the builder processes them the way a
//! POSIX shell would process a single word: quotes are removed, the escape character
//! (`\`, or `` ` `` under `# escape=`) makes the next character literal, and `$NAME`,
//! `${NAME}` and the `${NAME<modifier>...}` forms are replaced by values from an
//! [`Environment`]. Command substitution, arithmetic and globbing of file names do not
//! exist here.
//!
//! [`ShellLexer::expand_word`] gives one string (BuildKit's `ProcessWord`);
//! [`ShellLexer::expand_words`] also splits the result into words on unquoted white space
//! (BuildKit's `ProcessWords`). [`ShellLexer::expand`] returns both, with the names the
//! word referenced, split into those the environment had and those it lacked: the build
//! engine uses them to know which build arguments a step depends on.

mod lexer;
mod pattern;

use std::collections::BTreeSet;

use serde::Serialize;

/// The default escape character.
const DEFAULT_ESCAPE: char = '\\';

/// The variables visible to word expansion, in the order they were first set.
///
/// Setting a name that is already present replaces its value in place. Names are
/// compared exactly (case-sensitive), as on Linux.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// An empty environment.
    pub fn new() -> Environment {
        Environment::default()
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// The value of `name`, if set (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.vars.iter().position(|(n, _)| n == name)?;
        Some(self.vars.remove(index).1)
    }

    /// The variables in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many variables are set.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether no variable is set.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

/// Serialized as a map from name to value, in order.
impl Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.vars.len()))?;
        for (name, value) in &self.vars {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Environment {
        let mut env = Environment::new();
        for (k, v) in iter {
            env.set(k, v);
        }
        env
    }
}

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with quotes, escapes and variables processed (`ProcessWord`).
    pub value: String,
    /// The same, split on unquoted white space that did not come from inside quotes
    /// (`ProcessWords`); empty words are dropped.
    pub words: Vec<String>,
    /// Names referenced that the environment had.
    pub matched: BTreeSet<String>,
    /// Names referenced that the environment lacked.
    pub unmatched: BTreeSet<String>,
}

/// Why an expansion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandErrorKind {
    /// `${` without its `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${V/pattern` without the `/` before the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:...}`, `${{...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${V<op>...}` with an operator the lexer does not know (`:=`, `:x`, ...).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// A quote never closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    UnterminatedQuote(&'static str),
    /// `${V?message}` / `${V:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message from the word, or the default one.
        message: String,
    },
    /// A `#`, `%` or `/` pattern that does not compile.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Substitutions nested deeper than the lexer allows.
    #[error("substitutions nested more than {0} levels deep")]
    TooDeep(usize),
}

/// A failed expansion: what went wrong, on which word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {:?}: {kind}", shorten(word))]
pub struct ExpandError {
    word: String,
    kind: ExpandErrorKind,
}

/// The word as error messages show it: whole up to 120 characters, else its start and
/// end around an ellipsis (a hostile word can be megabytes long).
fn shorten(word: &str) -> String {
    const KEEP: usize = 60;
    let count = word.chars().count();
    if count <= 2 * KEEP {
        return word.to_owned();
    }
    let head: String = word.chars().take(KEEP).collect();
    let tail: String = word.chars().skip(count - KEEP).collect();
    format!("{head}...{tail}")
}

impl ExpandError {
    /// The word that failed to expand.
    pub fn word(&self) -> &str {
        &self.word
    }

    /// What went wrong.
    pub fn kind(&self) -> &ExpandErrorKind {
        &self.kind
    }
}

/// Expands words the way BuildKit's Dockerfile frontend does.
///
/// ```
/// use rbuild_dockerfile::{Environment, ShellLexer};
/// let env: Environment = [("NAME", "world"), ("EMPTY", "")].into_iter().collect();
/// let lexer = ShellLexer::new('\\');
/// assert_eq!(lexer.expand_word("'$NAME' is ${NAME}", &env).unwrap(), "$NAME is world");
/// assert_eq!(lexer.expand_word("${EMPTY:-default}", &env).unwrap(), "default");
/// assert_eq!(lexer.expand_words("a \"b c\" $NAME", &env).unwrap(), ["a", "b c", "world"]);
/// assert!(lexer.expand_word("${NAME", &env).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellLexer {
    /// The escape character: `\` or `` ` ``.
    pub escape: char,
}

impl Default for ShellLexer {
    fn default() -> ShellLexer {
        ShellLexer::new(DEFAULT_ESCAPE)
    }
}

impl ShellLexer {
    /// A lexer with the given escape character.
    pub fn new(escape: char) -> ShellLexer {
        ShellLexer { escape }
    }

    /// Expands `word`, returning the single string, the split words and the names used.
    pub fn expand(&self, word: &str, env: &Environment) -> Result<Expansion, ExpandError> {
        lexer::Lexer::new(word, env, self.escape)
            .run()
            .map_err(|kind| ExpandError {
                word: word.to_owned(),
                kind,
            })
    }

    /// Expands `word` into one string (BuildKit's `ProcessWord`).
    pub fn expand_word(&self, word: &str, env: &Environment) -> Result<String, ExpandError> {
        self.expand(word, env).map(|e| e.value)
    }

    /// Expands `word` and splits it into words (BuildKit's `ProcessWords`).
    pub fn expand_words(&self, word: &str, env: &Environment) -> Result<Vec<String>, ExpandError> {
        self.expand(word, env).map(|e| e.words)
    }

    /// Expands the contents of an inline file (a `COPY`/`ADD` heredoc whose delimiter
    /// is not quoted) as BuildKit's `SourcesAndDest.ExpandRaw` does: variables are
    /// expanded and `\` escapes the character after it (`\$` gives `$`, `\\` gives `\`,
    /// `\` before a newline leaves the newline, a `\` at the very end is dropped), while
    /// quotes are plain text. The escape is `\` whatever the `escape` directive says.
    ///
    /// ```
    /// use rbuild_dockerfile::{Environment, ShellLexer};
    /// let env: Environment = [("V", "x")].into_iter().collect();
    /// let text = "'$V' \\$V \\\\ ${NONE:-\"d\"}\\\n";
    /// assert_eq!(ShellLexer::expand_inline_file(text, &env).unwrap(), "'x' $V \\ \"d\"\n");
    /// ```
    pub fn expand_inline_file(text: &str, env: &Environment) -> Result<String, ExpandError> {
        lexer::Lexer::new(text, env, DEFAULT_ESCAPE)
            .with_literal_quotes()
            .run()
            .map(|e| e.value)
            .map_err(|kind| ExpandError {
                word: text.to_owned(),
                kind,
            })
    }
}
