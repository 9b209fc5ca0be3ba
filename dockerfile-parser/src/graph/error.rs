//! Errors of lowering a Dockerfile into a build graph.

use crate::error::Span;
use crate::shell::ExpandError;

/// What went wrong while lowering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphErrorKind {
    /// The Dockerfile has no `FROM`.
    #[error("dockerfile has no build stage")]
    NoStages,
    /// `FROM ${EMPTY}`.
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
    /// `COPY --from=later` where `later` is a stage defined further down.
    #[error(
        "cannot copy from stage {from:?}, it needs to be defined before current stage {stage:?}"
    )]
    CopyFromLaterStage {
        /// `--from` as written.
        from: String,
        /// The stage of the `COPY` (its name, or `stage-N`).
        stage: String,
    },
    /// `RUN --mount=from=later` where `later` is a stage defined further down.
    #[error(
        "cannot mount from stage {from:?} to {target:?}, stage needs to be defined before \
         current command"
    )]
    MountFromLaterStage {
        /// `from=` as written.
        from: String,
        /// `target=` as given (expanded).
        target: String,
    },
    /// Stages that take files from each other in a loop.
    #[error("circular dependency detected on stage: {0}")]
    CircularDependency(String),
    /// `COPY --from=<n>` with no stage `n`.
    #[error("invalid stage index {0}")]
    InvalidStageIndex(String),
    /// `FROM --platform=` with something other than `os/arch[/variant]`.
    #[error("failed to parse platform {0}")]
    InvalidPlatform(String),
    /// `--target` names no stage.
    #[error("target stage {0} could not be found")]
    UnknownTarget(String),
    /// `FROM Name` where a stage is named `name`: BuildKit matches `FROM` against stage
    /// names exactly (they are lower case), so this is an image name, and an invalid one.
    #[error(
        "base name {written:?} is not a valid image name (repository names must be lower \
         case); FROM matches stage names exactly, and the stage is named {stage:?}"
    )]
    StageNameCase {
        /// The base name as written (after expansion).
        written: String,
        /// The stage name it matches but for case.
        stage: String,
    },
    /// `COPY --from=$VAR` (or any word that expansion would change).
    #[error(
        "variable expansion is not supported for --from, define a new stage with FROM using \
         ARG from global scope as a workaround"
    )]
    VariableInCopyFrom,
    /// A `RUN --mount` value that is invalid once its values are expanded.
    #[error("invalid mount {spec:?}: {reason}")]
    InvalidMount {
        /// The value as written.
        spec: String,
        /// Why it was refused.
        reason: String,
    },
    /// `RUN []`: the exec form with no program.
    #[error("RUN needs a command: its JSON form is an empty list")]
    EmptyRunCommand,
    /// A user or group name to look up while the stage's filesystem is still empty.
    #[error(
        "cannot look up the owner {owner:?} (from {what}): the stage has no files yet \
         (FROM scratch), so no /etc/passwd or /etc/group; use numeric ids"
    )]
    OwnerOnEmptyRoot {
        /// The `user[:group]` value.
        owner: String,
        /// Where it comes from: `--chown` or `USER`.
        what: &'static str,
    },
    /// Word expansion failed.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// The steps would carry more variables, in all, than [`crate::MAX_STEP_VARIABLES`].
    #[error(
        "the Dockerfile is too large to build: its steps would carry more than {0} build \
         arguments and environment variables in all"
    )]
    TooLarge(usize),
}

/// A failed lowering: what went wrong and, when known, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct GraphError {
    // Boxed so that `Result<_, GraphError>` stays small on the happy path.
    kind: Box<GraphErrorKind>,
    span: Option<Span>,
}

impl GraphError {
    /// An error of `kind` at `span`.
    pub fn new(kind: GraphErrorKind, span: Option<Span>) -> GraphError {
        GraphError {
            kind: Box::new(kind),
            span,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &GraphErrorKind {
        &self.kind
    }

    /// Where, when known.
    pub fn span(&self) -> Option<Span> {
        self.span
    }

    /// Renders the error in the same layout as [`crate::Error::render`]:
    /// `FILE:LINE:COLUMN: MESSAGE`, then the source line and a caret.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let Some(span) = self.span else {
            return format!("{file_name}: {}\n", self.kind);
        };
        let mut out = format!(
            "{file_name}:{}:{}: {}\n",
            span.start_line, span.start_column, self.kind
        );
        if let Some(text) = source.split('\n').nth(span.start_line.saturating_sub(1)) {
            let text = text.trim_end_matches('\r');
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            out.push_str(&crate::error::quote_line(
                span.start_line,
                span.start_column,
                text,
            ));
        }
        out
    }
}

impl From<(ExpandError, Span)> for GraphError {
    fn from((error, span): (ExpandError, Span)) -> GraphError {
        GraphError::new(GraphErrorKind::Expand(error), Some(span))
    }
}
