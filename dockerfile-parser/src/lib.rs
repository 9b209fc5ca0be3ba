//! The Dockerfile front end of rbuild: text in, build graph out, no I/O.
//!
//! The stages, each producing a narrower type:
//! syntax tree (logical lines, flags, heredocs, spans) -> typed instructions per stage
//! -> build graph with build arguments resolved.
#![deny(missing_docs)]

// --- word expansion (shell lexer) ---
mod shell;
pub use crate::shell::{ExpandError, ShellLexer};

// --- syntax tree, instructions, errors ---
mod dump;
mod error;
mod syntax;
pub use crate::dump::{dump, dump_instruction, go_quote};
pub use crate::error::{Error, ErrorKind, Span};
pub use crate::syntax::{
    Arguments, DEFAULT_ESCAPE, Directive, Heredoc, KeyValue, RawInstruction, SyntaxTree,
    parse_syntax,
};

// --- build graph ---
