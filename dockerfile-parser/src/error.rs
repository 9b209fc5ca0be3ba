//! The crate's error type: what went wrong ([`ErrorKind`]) and where ([`Span`]).
//!
//! Messages follow BuildKit's wording where BuildKit has one (so users recognise them),
//! written in lower case without a final period.

use std::fmt;

/// A region of the Dockerfile source.
///
/// Lines and columns are 1-based; columns count characters (not bytes). Offsets are byte
/// offsets into the source text as given to the parser (including a UTF-8 byte-order mark
/// if there was one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    /// The line where the region starts.
    pub start_line: usize,
    /// The column (in characters) where the region starts.
    pub start_column: usize,
    /// The line where the region ends (inclusive).
    pub end_line: usize,
    /// Byte offset of the first byte of the region.
    pub start_offset: usize,
    /// Byte offset one past the last byte of the region.
    pub end_offset: usize,
}

impl Span {
    /// A span covering `start..end` bytes of `source`, with lines and columns computed.
    pub fn from_offsets(source: &str, start: usize, end: usize) -> Span {
        LineIndex::new(source).span(start, end)
    }
}

/// Where each line of a source starts, to turn byte offsets into lines and columns
/// without rescanning the text each time.
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { source, starts }
    }

    /// The span of bytes `start..end` (clamped to the source).
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let start = start.min(self.source.len());
        let end = end.clamp(start, self.source.len());
        let (start_line, start_column) = self.line_column(start);
        // The end line is the line holding the last byte of the region.
        let last = if end > start { end - 1 } else { start };
        let (end_line, _) = self.line_column(last);
        Span {
            start_line,
            start_column,
            end_line,
            start_offset: start,
            end_offset: end,
        }
    }

    /// The 1-based line and character column of byte `offset`.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let line_start = self.starts[line - 1];
        let mut column = self.source[line_start..offset].chars().count() + 1;
        // A byte-order mark is not something a reader sees as a column.
        if line_start == 0 && offset > 0 && self.source.starts_with('\u{feff}') {
            column -= 1;
        }
        (line, column)
    }
}

/// What went wrong while parsing a Dockerfile or lowering it into a build graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file holds no instruction at all (only comments, directives or blank lines).
    #[error("file with no instructions")]
    NoInstructions,
    /// A parser directive appears twice.
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// `# escape=` names something other than `\` or `` ` ``.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    /// A heredoc's terminator line never came.
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    /// A JSON array holds something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// Legacy `ENV key value` / `LABEL key value` form without a value.
    #[error("{0} must have two arguments")]
    MissingValue(String),
    /// `key=value` form with a word lacking `=`.
    #[error("syntax error - can't find = in {0:?}. must be of the form: name=value")]
    MissingEquals(String),
    /// The keyword is not a Dockerfile instruction.
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    /// A flag the instruction does not accept.
    #[error("unknown flag --{flag} for {instruction}")]
    UnknownFlag {
        /// The instruction keyword, upper case.
        instruction: String,
        /// The flag name without its dashes.
        flag: String,
    },
    /// A flag that needs a value was given none.
    #[error("missing a value on flag --{flag} for {instruction}")]
    MissingFlagValue {
        /// The instruction keyword, upper case.
        instruction: String,
        /// The flag name without its dashes.
        flag: String,
    },
    /// A flag that may appear once appeared twice.
    #[error("duplicate flag specified: --{flag} for {instruction}")]
    DuplicateFlag {
        /// The instruction keyword, upper case.
        instruction: String,
        /// The flag name without its dashes.
        flag: String,
    },
    /// A flag's value does not parse.
    #[error("invalid value {value:?} for flag --{flag} of {instruction}: {reason}")]
    InvalidFlagValue {
        /// The instruction keyword, upper case.
        instruction: String,
        /// The flag name without its dashes.
        flag: String,
        /// The value as written.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A `--mount` specification is malformed (when parsed, or once its values are
    /// expanded while lowering).
    #[error("invalid mount {spec:?}: {reason}")]
    InvalidMount {
        /// The mount specification as written.
        spec: String,
        /// Why it was refused.
        reason: String,
    },
    /// The instruction got the wrong number of arguments.
    #[error("{instruction} requires {expected}")]
    ArgumentCount {
        /// The instruction keyword, upper case.
        instruction: String,
        /// What it needs, e.g. "at least one argument".
        expected: &'static str,
    },
    /// `ENV`, `LABEL` or `ARG` with an empty name.
    #[error("{0} names can not be blank")]
    BlankName(String),
    /// `FROM x AS name` with an invalid stage name.
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName(String),
    /// `FROM` with a malformed argument list.
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    /// `ONBUILD ONBUILD ...`.
    #[error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    /// `ONBUILD FROM` or `ONBUILD MAINTAINER`.
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    /// `HEALTHCHECK` with a type other than `CMD` or `NONE`.
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    /// `HEALTHCHECK NONE` followed by something.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// `HEALTHCHECK CMD` with nothing after it.
    #[error("missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    /// `SHELL` not in JSON form.
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// `COPY <<EOF` used as the destination.
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(String),
    /// `VOLUME` with an empty path.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// An instruction other than `ARG` before the first `FROM`.
    #[error("no build stage in current context: {0} must come after FROM")]
    NoStage(String),
    /// The Dockerfile is larger than [`crate::MAX_DOCKERFILE_BYTES`].
    #[error("the Dockerfile is {size} bytes, more than the {limit} bytes rbuild reads")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The Dockerfile has more than [`crate::MAX_INSTRUCTIONS`] instructions.
    #[error("the Dockerfile has more than {0} instructions")]
    TooManyInstructions(usize),

    // --- lowering into a build graph (`lower`) ---
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
    Expand(#[from] crate::shell::ExpandError),
    /// The steps would carry more variables, in all, than [`crate::MAX_STEP_VARIABLES`].
    #[error(
        "the Dockerfile is too large to build: its steps would carry more than {0} build \
         arguments and environment variables in all"
    )]
    TooManyVariables(usize),
}

/// A failed parse or lowering: what went wrong and, when known, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    // Boxed so that `Result<_, Error>` stays small on the happy path.
    kind: Box<ErrorKind>,
    span: Option<Span>,
}

impl Error {
    /// An error of `kind` at `span`.
    pub fn new(kind: ErrorKind, span: Option<Span>) -> Error {
        Error {
            kind: Box::new(kind),
            span,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Where it went wrong, when known.
    pub fn span(&self) -> Option<Span> {
        self.span
    }

    /// Renders the error for a human, quoting the offending source line.
    ///
    /// The format is stable (golden-tested):
    ///
    /// ```text
    /// Dockerfile:12:6: unknown flag --frm for COPY
    ///    12 | COPY --frm=build /a /b
    ///       |      ^
    /// ```
    ///
    /// The first line is `FILE:LINE:COLUMN: MESSAGE` (1-based, column in characters);
    /// then the source line behind a gutter holding the line number right-aligned in
    /// five columns, then a caret under the column. Tabs before the column are repeated
    /// in the caret line so the caret lines up in a terminal. Without a location the
    /// output is the single line `FILE: MESSAGE`. Every line ends with `\n`.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let Some(span) = self.span else {
            return format!("{file_name}: {}\n", self.kind);
        };
        let mut out = format!(
            "{file_name}:{}:{}: {}\n",
            span.start_line, span.start_column, self.kind
        );
        let Some(text) = source.split('\n').nth(span.start_line.saturating_sub(1)) else {
            return out;
        };
        let text = text.trim_end_matches('\r');
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        out.push_str(&quote_line(span.start_line, span.start_column, text));
        out
    }
}

/// The source line and caret lines of a rendered error, each ending in a newline:
/// `"   12 | COPY --frm=a /b /c\n      |      ^\n"`. A line longer than 160
/// characters is cut to that many around the column, with `...` where text was left
/// out (a hostile Dockerfile line can be megabytes long). For callers that render
/// their own errors at a [`Span`] the way [`Error::render`] does.
pub fn quote_line(line: usize, column: usize, text: &str) -> String {
    let column = column.saturating_sub(1);
    let count = text.chars().count();
    let (skip, take) = if count <= QUOTE_CHARS {
        (0, count)
    } else {
        (
            column
                .saturating_sub(QUOTE_CHARS / 2)
                .min(count - QUOTE_CHARS),
            QUOTE_CHARS,
        )
    };
    let shown: String = text.chars().skip(skip).take(take).collect();
    let (before, after) = (
        if skip > 0 { "..." } else { "" },
        if skip + take < count { "..." } else { "" },
    );
    let pad: String = before
        .chars()
        .chain(text.chars().skip(skip).take(column.saturating_sub(skip)))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{line:>5} | {before}{shown}{after}\n{:>5} | {pad}^\n", "")
}

/// How many characters of a source line an error quotes at most.
const QUOTE_CHARS: usize = 160;

/// The message alone: where it happened is [`Error::span`], and [`Error::render`] gives
/// both with the source line quoted.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {}

impl From<(crate::shell::ExpandError, Span)> for Error {
    fn from((error, span): (crate::shell::ExpandError, Span)) -> Error {
        Error::new(ErrorKind::Expand(error), Some(span))
    }
}
