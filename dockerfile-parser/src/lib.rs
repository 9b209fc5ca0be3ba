//! The Dockerfile front end of rbuild: text in, build graph out, no I/O.
//!
//! The stages, each producing a narrower type:
//! syntax tree (logical lines, flags, heredocs, spans) -> typed instructions per stage
//! -> build graph with build arguments resolved.
//!
//! The principal types are [`SyntaxTree`] (from [`parse_syntax`]: BuildKit's logical
//! lines, dumped by [`dump`] in BuildKit's AST format) and [`Dockerfile`] (from
//! [`parse`]: [`Stage`]s of typed [`Instruction`]s, flags checked, words unexpanded).
//! Every failure is an [`Error`] with an [`ErrorKind`] and a [`Span`], and renders with
//! the offending source line via [`Error::render`].
//!
//! ```
//! let source = "FROM alpine AS build\nCOPY --frm=x a b\n";
//! let tree = rbuild_dockerfile::parse_syntax(source).unwrap();
//! assert_eq!(
//!     rbuild_dockerfile::dump(&tree),
//!     "(from \"alpine\" \"AS\" \"build\")\n(copy [\"--frm=x\"] \"a\" \"b\")\n"
//! );
//! let err = rbuild_dockerfile::parse(source).unwrap_err();
//! assert_eq!(
//!     err.render("Dockerfile", source),
//!     "Dockerfile:2:6: unknown flag --frm for COPY\n    2 | COPY --frm=x a b\n      |      ^\n"
//! );
//! ```
#![deny(missing_docs)]

// --- word expansion (shell lexer) ---
mod shell;
pub use crate::shell::{Environment, ExpandError, ExpandErrorKind, Expansion, ShellLexer};

// --- syntax tree, instructions, errors ---
mod dump;
mod error;
mod instruction;
mod path;
mod syntax;
pub use crate::dump::{dump, dump_instruction, go_quote};
pub use crate::error::{Error, ErrorKind, Span, quote_line};
pub use crate::instruction::{
    AddInstruction, Arg, ArgDefinition, CacheSharing, CommandInstruction, CommandLine,
    CopyInstruction, Dockerfile, FromInstruction, HealthCheck, Healthcheck, InlineFile,
    Instruction, KeyValuePair, KeyValues, List, MAX_DOCKERFILE_BYTES, MAX_INSTRUCTIONS, Mount,
    MountType, NetworkMode, Onbuild, Run, SecurityMode, Shell, SourcesAndDest, Stage, Text, parse,
    parse_go_duration, parse_tree,
};
pub use crate::path::{clean_path, normalize_workdir};
pub use crate::syntax::{
    Arguments, DEFAULT_ESCAPE, Directive, Heredoc, KeyValue, RawInstruction, SyntaxTree, Warning,
    parse_syntax,
};

// --- build graph ---
mod graph;
pub use crate::graph::{
    Base, BaseImageConfig, BuildGraph, DEFAULT_PATH, Edge, EdgeKind, GraphStage, LowerOptions,
    MAX_STEP_VARIABLES, PROXY_ARGS, Platform, Source, StageId, Step, StepDigest, StepId, lower,
};
