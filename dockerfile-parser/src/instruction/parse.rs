//! From raw syntax-tree instructions to typed ones, with BuildKit's checks.

use crate::error::{Error, ErrorKind, Span};
use crate::syntax::{Arguments, RawInstruction, SyntaxTree, heredoc_from_word, parse_syntax};

use super::flags::{FlagType, Flags, parse_go_duration};
use super::mount::read_mount_spec;
use super::{
    AddInstruction, Arg, ArgDefinition, CommandInstruction, CommandLine, CopyInstruction,
    Dockerfile, FromInstruction, HealthCheck, Healthcheck, InlineFile, Instruction, KeyValuePair,
    KeyValues, List, MountSpec, NetworkMode, Onbuild, Run, SecurityMode, Shell, SourcesAndDest,
    Stage, Text,
};

/// Parses Dockerfile text into stages of typed instructions.
///
/// ```
/// let file = rbuild_dockerfile::parse("FROM alpine AS base\nRUN echo hi\n").unwrap();
/// assert_eq!(file.stages[0].name.as_deref(), Some("base"));
/// assert_eq!(file.stages[0].instructions[0].keyword(), "RUN");
/// ```
pub fn parse(source: &str) -> Result<Dockerfile, Error> {
    if source.len() > MAX_DOCKERFILE_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge {
                size: source.len(),
                limit: MAX_DOCKERFILE_BYTES,
            },
            None,
        ));
    }
    let tree = parse_syntax(source)?;
    parse_tree(&tree, source)
}

/// The largest Dockerfile [`parse`] reads: 4 MiB, a thousand times a large real one.
pub const MAX_DOCKERFILE_BYTES: usize = 4 << 20;

/// The most instructions [`parse_tree`] accepts (`ONBUILD` triggers not counted twice):
/// enough for 10k stages of two steps, few enough that lowering stays in memory.
pub const MAX_INSTRUCTIONS: usize = 25_000;

/// Types the instructions of an already parsed tree; `source` is the text the tree
/// came from (used to place errors on the offending flag).
pub fn parse_tree(tree: &SyntaxTree, source: &str) -> Result<Dockerfile, Error> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    if let Some(raw) = tree.instructions.get(MAX_INSTRUCTIONS) {
        return Err(Error::new(
            ErrorKind::TooManyInstructions(MAX_INSTRUCTIONS),
            Some(raw.span),
        ));
    }
    for raw in &tree.instructions {
        let instruction = Context { source, raw }.instruction(&raw.heredocs)?;
        match (instruction, stages.last_mut()) {
            (Instruction::From(from), _) => stages.push(Stage {
                name: from.name,
                base: from.image,
                platform: from.platform,
                instructions: Vec::new(),
                span: from.span,
            }),
            (Instruction::Arg(arg), None) => global_args.push(arg),
            (other, None) => {
                return Err(Error::new(
                    ErrorKind::NoStage(other.keyword().to_owned()),
                    Some(raw.span),
                ));
            }
            (other, Some(stage)) => stage.instructions.push(other),
        }
    }
    Ok(Dockerfile {
        directives: tree.directives.clone(),
        escape: tree.escape,
        global_args,
        stages,
    })
}

/// Flags of each instruction that has any.
const FROM_FLAGS: &[(&str, FlagType)] = &[("platform", FlagType::String)];
const RUN_FLAGS: &[(&str, FlagType)] = &[
    ("mount", FlagType::Strings),
    ("network", FlagType::String),
    ("security", FlagType::String),
];
const COPY_FLAGS: &[(&str, FlagType)] = &[
    ("from", FlagType::String),
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("parents", FlagType::Bool),
    ("exclude", FlagType::Strings),
];
const ADD_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("exclude", FlagType::Strings),
    ("checksum", FlagType::String),
    ("keep-git-dir", FlagType::Bool),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagType)] = &[
    ("interval", FlagType::String),
    ("timeout", FlagType::String),
    ("start-period", FlagType::String),
    ("start-interval", FlagType::String),
    ("retries", FlagType::String),
];
const NO_FLAGS: &[(&str, FlagType)] = &[];

/// The smallest non-zero health-check interval docker accepts (`container.MinimumDuration`).
const MINIMUM_HEALTH_DURATION: std::time::Duration = std::time::Duration::from_millis(1);

/// One raw instruction being typed, with the source to place errors.
struct Context<'a> {
    source: &'a str,
    raw: &'a RawInstruction,
}

impl Context<'_> {
    /// An error at the instruction.
    fn error(&self, kind: ErrorKind) -> Error {
        Error::new(kind, Some(self.raw.span))
    }

    /// An error at the first occurrence of `needle` inside the instruction.
    fn error_at(&self, (kind, needle): (ErrorKind, String)) -> Error {
        let span = self.raw.span;
        let text = self
            .source
            .get(span.start_offset..span.end_offset)
            .unwrap_or_default();
        let located = text
            .find(&needle)
            .map(|i| Span::from_offsets(self.source, span.start_offset + i, span.end_offset));
        Error::new(kind, Some(located.unwrap_or(span)))
    }

    /// The `n`th (from 0) occurrence of `flag` in the instruction, else the
    /// instruction.
    fn nth_flag_span(&self, flag: &str, n: usize) -> Span {
        let span = self.raw.span;
        let text = self
            .source
            .get(span.start_offset..span.end_offset)
            .unwrap_or_default();
        text.match_indices(flag).nth(n).map_or(span, |(i, _)| {
            let start = span.start_offset + i;
            Span::from_offsets(self.source, start, start + flag.len())
        })
    }

    /// An error at `word`, searched after the keyword (the instruction when absent).
    fn error_word(&self, kind: ErrorKind, word: &str) -> Error {
        let span = self.raw.span;
        let text = self
            .source
            .get(span.start_offset..span.end_offset)
            .unwrap_or_default();
        let after_keyword = text
            .char_indices()
            .find(|(_, c)| c.is_whitespace())
            .map_or(text.len(), |(i, _)| i);
        let located = text[after_keyword..].find(word).map(|i| {
            Span::from_offsets(
                self.source,
                span.start_offset + after_keyword + i,
                span.end_offset,
            )
        });
        Error::new(kind, Some(located.unwrap_or(span)))
    }

    fn count(&self, expected: &'static str) -> Error {
        self.error(ErrorKind::ArgumentCount {
            instruction: self.raw.keyword.to_ascii_uppercase(),
            expected,
        })
    }

    fn flags(
        &self,
        name: &'static str,
        known: &'static [(&str, FlagType)],
    ) -> Result<Flags, Error> {
        Flags::parse(name, known, &self.raw.flags).map_err(|e| self.error_at(e))
    }

    /// The one string of a single-argument instruction.
    fn single(&self) -> Result<Text, Error> {
        match &self.raw.args {
            Arguments::Shell(value) => Ok(Text {
                value: value.clone(),
                span: self.raw.span,
            }),
            _ => Err(self.count("exactly one argument")),
        }
    }

    /// Words (exec or whitespace form), at least one.
    fn words(&self) -> Result<(Vec<String>, bool), Error> {
        match &self.raw.args {
            Arguments::Exec(items) if !items.is_empty() => Ok((items.clone(), true)),
            Arguments::Words(items) if !items.is_empty() => Ok((items.clone(), false)),
            _ => Err(self.count("at least one argument")),
        }
    }

    fn command_line(&self) -> CommandLine {
        match &self.raw.args {
            Arguments::Exec(items) => CommandLine::Exec(items.clone()),
            Arguments::Shell(text) => CommandLine::Shell(text.clone()),
            _ => CommandLine::Shell(String::new()),
        }
    }

    fn instruction(&self, heredocs: &[crate::syntax::Heredoc]) -> Result<Instruction, Error> {
        let raw = self.raw;
        let span = raw.span;
        let keyword = raw.keyword_lower();
        Ok(match keyword.as_str() {
            "from" => Instruction::From(self.from()?),
            "run" => Instruction::Run(self.run(heredocs)?),
            "cmd" | "entrypoint" => {
                let name = if keyword == "cmd" {
                    "CMD"
                } else {
                    "ENTRYPOINT"
                };
                self.flags(name, NO_FLAGS)?;
                let i = CommandInstruction {
                    command: self.command_line(),
                    span,
                };
                if keyword == "cmd" {
                    Instruction::Cmd(i)
                } else {
                    Instruction::Entrypoint(i)
                }
            }
            "env" | "label" => {
                let name = if keyword == "env" { "ENV" } else { "LABEL" };
                self.flags(name, NO_FLAGS)?;
                let Arguments::Pairs(pairs) = &raw.args else {
                    return Err(self.count("at least one argument"));
                };
                if pairs.iter().any(|p| p.key.is_empty()) {
                    return Err(self.error(ErrorKind::BlankName(name.to_owned())));
                }
                let pairs = pairs
                    .iter()
                    .map(|p| KeyValuePair {
                        key: p.key.clone(),
                        value: p.value.clone(),
                    })
                    .collect();
                let i = KeyValues { pairs, span };
                if keyword == "env" {
                    Instruction::Env(i)
                } else {
                    Instruction::Label(i)
                }
            }
            "maintainer" => {
                self.flags("MAINTAINER", NO_FLAGS)?;
                Instruction::Maintainer(self.single()?)
            }
            "user" => {
                self.flags("USER", NO_FLAGS)?;
                Instruction::User(self.single()?)
            }
            "workdir" => {
                self.flags("WORKDIR", NO_FLAGS)?;
                Instruction::Workdir(self.single()?)
            }
            "stopsignal" => {
                self.flags("STOPSIGNAL", NO_FLAGS)?;
                Instruction::Stopsignal(self.single()?)
            }
            "expose" => {
                self.flags("EXPOSE", NO_FLAGS)?;
                let (values, _) = self.words()?;
                Instruction::Expose(List { values, span })
            }
            "volume" => {
                self.flags("VOLUME", NO_FLAGS)?;
                let (values, _) = self.words()?;
                if values.iter().any(|v| v.is_empty()) {
                    return Err(self.error(ErrorKind::EmptyVolume));
                }
                Instruction::Volume(List { values, span })
            }
            "copy" => Instruction::Copy(self.copy(heredocs)?),
            "add" => Instruction::Add(self.add(heredocs)?),
            "arg" => Instruction::Arg(self.arg()?),
            "onbuild" => Instruction::Onbuild(self.onbuild(heredocs)?),
            "healthcheck" => Instruction::Healthcheck(self.healthcheck()?),
            "shell" => {
                self.flags("SHELL", NO_FLAGS)?;
                match &raw.args {
                    Arguments::Exec(items) if !items.is_empty() => Instruction::Shell(Shell {
                        shell: items.clone(),
                        span,
                    }),
                    Arguments::Shell(_) => return Err(self.error(ErrorKind::ShellNotJson)),
                    _ => return Err(self.count("at least one argument")),
                }
            }
            _ => return Err(self.error(ErrorKind::UnknownInstruction(raw.keyword.clone()))),
        })
    }

    fn from(&self) -> Result<FromInstruction, Error> {
        let args = match &self.raw.args {
            Arguments::Words(words) => words.as_slice(),
            _ => &[],
        };
        let name = match args {
            [_] => None,
            [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                let lower = name.to_ascii_lowercase();
                let mut chars = lower.chars();
                let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                if !valid {
                    return Err(self.error_word(ErrorKind::InvalidStageName(name.clone()), name));
                }
                Some(lower)
            }
            _ => return Err(self.error(ErrorKind::FromArguments)),
        };
        let flags = self.flags("FROM", FROM_FLAGS)?;
        Ok(FromInstruction {
            image: args[0].clone(),
            name,
            platform: flags.string("platform"),
            span: self.raw.span,
        })
    }

    fn run(&self, heredocs: &[crate::syntax::Heredoc]) -> Result<Run, Error> {
        let flags = self.flags("RUN", RUN_FLAGS)?;
        let mut mount_specs = Vec::new();
        for spec in flags.strings("mount") {
            let span = self.nth_flag_span("--mount", mount_specs.len());
            let from = read_mount_spec(&spec).map_err(|reason| {
                Error::new(
                    ErrorKind::InvalidMount {
                        spec: spec.clone(),
                        reason,
                    },
                    Some(span),
                )
            })?;
            mount_specs.push(MountSpec { spec, from, span });
        }
        let network = match flags.string("network").as_deref() {
            None => None,
            Some("default") => Some(NetworkMode::Default),
            Some("none") => Some(NetworkMode::None),
            Some("host") => Some(NetworkMode::Host),
            Some(other) => {
                return Err(self.error_at(flags.invalid(
                    "network",
                    other,
                    "unsupported network mode",
                )));
            }
        };
        let security = match flags.string("security").as_deref() {
            None => None,
            Some("sandbox") => Some(SecurityMode::Sandbox),
            Some("insecure") => Some(SecurityMode::Insecure),
            Some(other) => {
                return Err(self.error_at(flags.invalid(
                    "security",
                    other,
                    "unsupported security mode",
                )));
            }
        };
        // An empty `RUN` (or one with only flags) is accepted, as BuildKit does: it runs
        // the shell with an empty command.
        Ok(Run {
            command: self.command_line(),
            heredocs: heredocs.iter().map(InlineFile::from_heredoc).collect(),
            mount_specs,
            mounts: Vec::new(),
            network,
            security,
            span: self.raw.span,
        })
    }

    fn sources_and_dest(
        &self,
        name: &str,
        heredocs: &[crate::syntax::Heredoc],
    ) -> Result<SourcesAndDest, Error> {
        let (args, json) = match &self.raw.args {
            Arguments::Exec(items) => (items.as_slice(), true),
            Arguments::Words(items) => (items.as_slice(), false),
            _ => (&[][..], false),
        };
        let [sources @ .., dest] = args else {
            return Err(self.count("at least two arguments"));
        };
        if sources.is_empty() {
            return Err(self.count("at least two arguments"));
        }
        if heredoc_from_word(dest).is_some() {
            return Err(self.error_word(ErrorKind::HeredocDestination(name.to_owned()), dest));
        }
        let mut files = SourcesAndDest {
            sources: Vec::new(),
            inline_sources: Vec::new(),
            dest: dest.clone(),
            json,
        };
        for source in sources {
            let inline = heredoc_from_word(source)
                .filter(|_| !json)
                .and_then(|h| heredocs.iter().find(|d| d.name == h.name));
            match inline {
                Some(doc) => files.inline_sources.push(InlineFile::from_heredoc(doc)),
                None => files.sources.push(source.clone()),
            }
        }
        Ok(files)
    }

    fn copy(&self, heredocs: &[crate::syntax::Heredoc]) -> Result<CopyInstruction, Error> {
        let flags = self.flags("COPY", COPY_FLAGS)?;
        Ok(CopyInstruction {
            files: self.sources_and_dest("COPY", heredocs)?,
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link"),
            parents: flags.bool("parents"),
            excludes: flags.strings("exclude"),
            span: self.raw.span,
        })
    }

    fn add(&self, heredocs: &[crate::syntax::Heredoc]) -> Result<AddInstruction, Error> {
        let flags = self.flags("ADD", ADD_FLAGS)?;
        Ok(AddInstruction {
            files: self.sources_and_dest("ADD", heredocs)?,
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link"),
            excludes: flags.strings("exclude"),
            checksum: flags.string("checksum"),
            keep_git_dir: flags.bool("keep-git-dir"),
            span: self.raw.span,
        })
    }

    fn arg(&self) -> Result<Arg, Error> {
        self.flags("ARG", NO_FLAGS)?;
        let Arguments::Words(words) = &self.raw.args else {
            return Err(self.count("at least one argument"));
        };
        let mut args = Vec::new();
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (word.as_str(), None),
            };
            if name.is_empty() {
                return Err(self.error_word(ErrorKind::BlankName("ARG".to_owned()), word));
            }
            args.push(ArgDefinition {
                name: name.to_owned(),
                default,
            });
        }
        Ok(Arg {
            args,
            span: self.raw.span,
        })
    }

    fn onbuild(&self, heredocs: &[crate::syntax::Heredoc]) -> Result<Onbuild, Error> {
        self.flags("ONBUILD", NO_FLAGS)?;
        let Arguments::Trigger(inner) = &self.raw.args else {
            return Err(self.count("at least one argument"));
        };
        match inner.keyword.to_ascii_uppercase().as_str() {
            "ONBUILD" => return Err(self.error(ErrorKind::OnbuildChain)),
            k @ ("FROM" | "MAINTAINER") => {
                return Err(self.error(ErrorKind::OnbuildTrigger(k.to_owned())));
            }
            _ => {}
        }
        let trigger = Context {
            source: self.source,
            raw: inner,
        }
        .instruction(heredocs)?;
        // The trigger text as BuildKit records it: the line without `ONBUILD`, then
        // each heredoc body and terminator.
        let line = self.raw.line.trim_start();
        let mut expression = line
            .get(self.raw.keyword.len()..)
            .unwrap_or_default()
            .trim_start()
            .to_owned();
        for doc in heredocs {
            expression.push('\n');
            expression.push_str(&doc.content);
            expression.push_str(&doc.name);
        }
        Ok(Onbuild {
            trigger: Box::new(trigger),
            expression,
            span: self.raw.span,
        })
    }

    fn healthcheck(&self) -> Result<Healthcheck, Error> {
        let flags = self.flags("HEALTHCHECK", HEALTHCHECK_FLAGS)?;
        let Arguments::Health { kind, command } = &self.raw.args else {
            return Err(self.count("at least one argument"));
        };
        let check = match kind.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !matches!(**command, Arguments::Empty) {
                    return Err(self.error(ErrorKind::HealthcheckNoneArguments));
                }
                HealthCheck::None
            }
            "CMD" => {
                let command = match &**command {
                    Arguments::Exec(items) if !items.is_empty() => CommandLine::Exec(items.clone()),
                    Arguments::Shell(text) => CommandLine::Shell(text.clone()),
                    _ => return Err(self.error(ErrorKind::HealthcheckMissingCommand)),
                };
                let duration = |name: &str| -> Result<Option<std::time::Duration>, Error> {
                    let Some(value) = flags.string(name) else {
                        return Ok(None);
                    };
                    let d = parse_go_duration(&value)
                        .map_err(|reason| self.error_at(flags.invalid(name, &value, &reason)))?;
                    if !d.is_zero() && d < MINIMUM_HEALTH_DURATION {
                        let reason = "cannot be less than 1ms";
                        return Err(self.error_at(flags.invalid(name, &value, reason)));
                    }
                    Ok(Some(d))
                };
                let retries = match flags.string("retries") {
                    None => None,
                    Some(value) => Some(value.parse::<u32>().map_err(|_| {
                        let reason = "must be a non-negative integer";
                        self.error_at(flags.invalid("retries", &value, reason))
                    })?),
                };
                HealthCheck::Command {
                    command,
                    interval: duration("interval")?,
                    timeout: duration("timeout")?,
                    start_period: duration("start-period")?,
                    start_interval: duration("start-interval")?,
                    retries,
                }
            }
            _ => return Err(self.error_word(ErrorKind::HealthcheckType(kind.clone()), kind)),
        };
        Ok(Healthcheck {
            check,
            span: self.raw.span,
        })
    }
}
