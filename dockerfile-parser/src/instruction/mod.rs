//! Typed instructions: one variant per Dockerfile keyword, flags checked, arguments
//! still unexpanded, grouped into build stages.
//!
//! Word expansion (`$VAR`, quotes) is not done here: every string is kept as written,
//! and [`Instruction::expands_words`] says whether the builder expands it (BuildKit
//! expands the arguments of `ADD`, `ARG`, `COPY`, `ENV`, `EXPOSE`, `FROM`, `LABEL`,
//! `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR` and `RUN --mount` values, but not the
//! command of `RUN`/`CMD`/`ENTRYPOINT`/`HEALTHCHECK`/`SHELL`, which the shell sees).

mod flags;
mod mount;
mod parse;

use std::time::Duration;

use serde::Serialize;

use crate::error::Span;
use crate::syntax::{Directive, Heredoc};

pub use self::flags::parse_go_duration;
pub use self::mount::{CacheSharing, Mount, MountSpec, MountType};
pub(crate) use self::mount::{MountError, parse_mount};
pub use self::parse::{MAX_DOCKERFILE_BYTES, MAX_INSTRUCTIONS, parse, parse_tree};

/// A whole Dockerfile: the global `ARG`s before the first `FROM`, then the stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` or `` ` ``), for word expansion.
    pub escape: char,
    /// `ARG`s before the first `FROM`; they are visible to `FROM` lines only.
    pub global_args: Vec<Arg>,
    /// The build stages, in file order.
    pub stages: Vec<Stage>,
}

/// A build stage: a `FROM` line and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// `AS name`, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// The base image or stage, unexpanded (`FROM ${BASE}` stays `${BASE}`).
    pub base: String,
    /// `--platform=`, unexpanded.
    pub platform: Option<String>,
    /// The instructions after `FROM`, in order.
    pub instructions: Vec<Instruction>,
    /// The `FROM` line.
    pub span: Span,
}

/// One typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    /// `FROM` (only as a stage start; never inside [`Stage::instructions`]).
    From(FromInstruction),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandInstruction),
    /// `LABEL`.
    Label(KeyValues),
    /// `MAINTAINER`.
    Maintainer(Text),
    /// `EXPOSE`.
    Expose(List),
    /// `ENV`.
    Env(KeyValues),
    /// `ADD`.
    Add(AddInstruction),
    /// `COPY`.
    Copy(CopyInstruction),
    /// `ENTRYPOINT`.
    Entrypoint(CommandInstruction),
    /// `VOLUME`.
    Volume(List),
    /// `USER`.
    User(Text),
    /// `WORKDIR`.
    Workdir(Text),
    /// `ARG`.
    Arg(Arg),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL`.
    Stopsignal(Text),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL`.
    Shell(Shell),
}

impl Instruction {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }

    /// Where the instruction is in the source.
    pub fn span(&self) -> Span {
        match self {
            Instruction::From(i) => i.span,
            Instruction::Run(i) => i.span,
            Instruction::Cmd(i) | Instruction::Entrypoint(i) => i.span,
            Instruction::Label(i) | Instruction::Env(i) => i.span,
            Instruction::Maintainer(i)
            | Instruction::User(i)
            | Instruction::Workdir(i)
            | Instruction::Stopsignal(i) => i.span,
            Instruction::Expose(i) | Instruction::Volume(i) => i.span,
            Instruction::Add(i) => i.span,
            Instruction::Copy(i) => i.span,
            Instruction::Arg(i) => i.span,
            Instruction::Onbuild(i) => i.span,
            Instruction::Healthcheck(i) => i.span,
            Instruction::Shell(i) => i.span,
        }
    }

    /// Whether the builder runs word expansion on this instruction's arguments (and,
    /// for `RUN`, on its `--mount` values only). `COPY`/`ADD` flags `--from`,
    /// `--chown`, `--chmod` are expanded too; heredoc bodies are expanded at run time
    /// when [`InlineFile::expand`] says so.
    pub fn expands_words(&self) -> bool {
        !matches!(
            self,
            Instruction::Cmd(_)
                | Instruction::Entrypoint(_)
                | Instruction::Healthcheck(_)
                | Instruction::Shell(_)
                | Instruction::Maintainer(_)
                | Instruction::Onbuild(_)
        )
    }
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromInstruction {
    /// The base image or stage name, unexpanded.
    pub image: String,
    /// The stage name, lower-cased.
    pub name: Option<String>,
    /// `--platform=`, unexpanded.
    pub platform: Option<String>,
    /// The line.
    pub span: Span,
}

/// A command in exec form (JSON array) or shell form (one string for the shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "snake_case")]
pub enum CommandLine {
    /// `["executable", "arg"]`: run as is.
    Exec(Vec<String>),
    /// `command text`: run by the stage's `SHELL`.
    Shell(String),
}

/// `RUN` network mode (`--network=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default network.
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// `RUN` security mode (`--security=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// The normal sandbox.
    Sandbox,
    /// Privileged.
    Insecure,
}

/// A heredoc body used by an instruction (a `RUN` script or a `COPY`/`ADD` source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// The heredoc name (the terminator word), used as the file name for sources.
    pub name: String,
    /// The body, leading tabs already removed for `<<-`.
    pub content: String,
    /// Whether the body of a `COPY`/`ADD` source is expanded (the name was not quoted):
    /// variables, and backslash escapes, as [`crate::ShellLexer::expand_inline_file`]
    /// does. A `RUN` body goes to the shell as written.
    pub expand: bool,
}

impl InlineFile {
    fn from_heredoc(heredoc: &Heredoc) -> InlineFile {
        InlineFile {
            name: heredoc.name.clone(),
            content: heredoc.text(),
            expand: heredoc.expand,
        }
    }
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command (not expanded by the builder).
    pub command: CommandLine,
    /// Heredocs on the line, in order; a shell-form command `<<EOF` runs the first.
    pub heredocs: Vec<InlineFile>,
    /// `--mount=` values as written. Only their quoting and `from=` are checked when
    /// the Dockerfile is read; lowering expands and types them into [`Run::mounts`].
    pub mount_specs: Vec<MountSpec>,
    /// The mounts, typed and their values expanded: filled when the graph is lowered
    /// (so empty in a [`Dockerfile`]), one for each of [`Run::mount_specs`].
    pub mounts: Vec<Mount>,
    /// `--network=`.
    pub network: Option<NetworkMode>,
    /// `--security=`.
    pub security: Option<SecurityMode>,
    /// The instruction.
    pub span: Span,
}

/// `CMD` or `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandInstruction {
    /// The command; `CMD []` is an empty exec form.
    pub command: CommandLine,
    /// The instruction.
    pub span: Span,
}

/// A raw `key`/`value` pair of `ENV` or `LABEL` (quotes and escapes unprocessed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValuePair {
    /// The key as written.
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// `ENV` or `LABEL` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValues {
    /// The pairs in order.
    pub pairs: Vec<KeyValuePair>,
    /// The instruction.
    pub span: Span,
}

/// An instruction with one string argument (`USER`, `WORKDIR`, `STOPSIGNAL`,
/// `MAINTAINER`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    /// The argument as written.
    pub value: String,
    /// The instruction.
    pub span: Span,
}

/// An instruction with a list of words (`EXPOSE`, `VOLUME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct List {
    /// The words as written.
    pub values: Vec<String>,
    /// The instruction.
    pub span: Span,
}

/// Sources and destination of `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcesAndDest {
    /// Source paths or URLs, unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`).
    pub inline_sources: Vec<InlineFile>,
    /// The destination, unexpanded.
    pub dest: String,
    /// Whether the JSON form was used (no word splitting of paths with spaces).
    pub json: bool,
}

/// `COPY [--from] [--chown] [--chmod] [--link] [--parents] [--exclude]... src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyInstruction {
    /// What to copy where.
    pub files: SourcesAndDest,
    /// `--from=`: a stage name, index or image.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=` patterns.
    pub excludes: Vec<String>,
    /// The instruction.
    pub span: Span,
}

/// `ADD [--chown] [--chmod] [--link] [--exclude]... [--checksum] [--keep-git-dir] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddInstruction {
    /// What to add where.
    pub files: SourcesAndDest,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=` patterns.
    pub excludes: Vec<String>,
    /// `--checksum=` of a remote source.
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// The instruction.
    pub span: Span,
}

/// One name of an `ARG`, with its default as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDefinition {
    /// The argument name.
    pub name: String,
    /// The default value, unexpanded (quotes kept), if `name=value` was written.
    pub default: Option<String>,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// The names declared, in order.
    pub args: Vec<ArgDefinition>,
    /// The instruction.
    pub span: Span,
}

/// `ONBUILD instruction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger, checked like any instruction.
    pub trigger: Box<Instruction>,
    /// The trigger as text (what goes into the image config's `OnBuild` list).
    pub expression: String,
    /// The instruction.
    pub span: Span,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// What to do.
    pub check: HealthCheck,
    /// The instruction.
    pub span: Span,
}

/// The body of a `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HealthCheck {
    /// `NONE`: disable any inherited health check.
    None,
    /// `CMD ...` with its options (`None` when not given).
    Command {
        /// The probe command (`CMD-SHELL` for the shell form).
        command: CommandLine,
        /// `--interval=`.
        interval: Option<Duration>,
        /// `--timeout=`.
        timeout: Option<Duration>,
        /// `--start-period=`.
        start_period: Option<Duration>,
        /// `--start-interval=`.
        start_interval: Option<Duration>,
        /// `--retries=`.
        retries: Option<u32>,
    },
}

/// `SHELL ["executable", "args"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shell {
    /// The shell command line.
    pub shell: Vec<String>,
    /// The instruction.
    pub span: Span,
}
