//! Word expansion with BuildKit's shell-lexer semantics.
//!
//! Placeholder module in the skeleton commit; the real lexer replaces it.

/// A failed expansion.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    message: String,
}

/// Expands words the way BuildKit's Dockerfile frontend does.
#[derive(Debug, Clone, Copy)]
pub struct ShellLexer {
    /// The escape character: `\` or `` ` ``.
    pub escape: char,
}
