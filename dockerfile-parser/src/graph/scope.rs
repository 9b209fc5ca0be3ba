//! What a stage's instructions see as they are lowered one after another: the build
//! arguments declared so far, the `ENV` variables, working directory, user and shell;
//! and the expansion of each instruction's words in that scope.

use std::collections::BTreeSet;

use crate::error::Span;
use crate::instruction::{Instruction, Mount, MountError, MountSpec, parse_mount};
use crate::path::normalize_workdir;
use crate::shell::{Environment, ShellLexer};

use super::BaseImageConfig;
use crate::error::{Error, ErrorKind};

/// `PATH` for images that set none (and for `scratch`), as BuildKit and moby set it
/// (moby `oci.DefaultPathEnv` for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The variables and settings in effect at one point of a stage.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    /// Build arguments declared in the stage, with their values.
    pub(super) args: Environment,
    /// Variables set by `ENV` here or in the stages this one is based on.
    pub(super) env: Environment,
    /// What BuildKit calls the state's environment: the base image's `Env`, then every
    /// `ENV` and every `ARG` that has a value, in order, the later setting winning. Words
    /// are expanded with it and `RUN` gets it; only [`Scope::env`] goes into the config.
    pub(super) state: Environment,
    /// Names whose value in [`Scope::state`] came from an `ARG` (so the words that use
    /// them depend on a build argument).
    pub(super) from_arg: BTreeSet<String>,
    /// `WORKDIR`, `None` until one is known.
    pub(super) workdir: Option<String>,
    /// `USER`, `None` until one is known.
    pub(super) user: Option<String>,
    /// `SHELL`, `None` until one is known.
    pub(super) shell: Option<Vec<String>>,
    /// Whether the stage's filesystem is still BuildKit's empty `scratch` state: based on
    /// `scratch` and no `RUN`, `COPY`, `ADD` or directory-making `WORKDIR` yet. A user
    /// name cannot be looked up there (BuildKit: "invalid user index: -1").
    pub(super) empty_root: bool,
}

/// Where build-argument values come from when a stage declares an `ARG`.
pub(super) struct ArgSources<'a> {
    /// `--build-arg` values.
    pub(super) build_args: &'a Environment,
    /// The global `ARG` values (and platform arguments).
    pub(super) globals: &'a Environment,
}

/// An instruction with its words expanded, and the build arguments those words used.
pub(super) struct Expanded {
    pub(super) instruction: Instruction,
    pub(super) used_args: BTreeSet<String>,
}

impl Scope {
    /// The scope a stage starts with on an image with this configuration.
    pub(super) fn from_image(config: &BaseImageConfig) -> Scope {
        let mut env = config.env.clone();
        if !env.contains("PATH") {
            env.set("PATH", DEFAULT_PATH);
        }
        Scope {
            args: Environment::new(),
            state: env.clone(),
            from_arg: BTreeSet::new(),
            env,
            // BuildKit replays the image's WorkingDir as a WORKDIR relative to itself.
            workdir: config
                .workdir
                .as_deref()
                .filter(|w| !w.is_empty())
                .map(|w| normalize_workdir(Some(w), w)),
            user: config.user.clone().filter(|u| !u.is_empty()),
            shell: config.shell.clone().filter(|s| !s.is_empty()),
            empty_root: false,
        }
    }

    /// The scope a stage starts with on `scratch`.
    pub(super) fn scratch() -> Scope {
        Scope {
            empty_root: true,
            ..Scope::from_image(&BaseImageConfig::default())
        }
    }

    /// The environment words are expanded with.
    fn expansion_env(&self) -> Environment {
        self.state.clone()
    }

    /// The scope of a stage built on the stage whose scope this is: `ENV`, `WORKDIR`,
    /// `USER`, `SHELL` and the state environment carry over (BuildKit starts the child
    /// from the parent's state, so the parent's `ARG` values stay visible in words and
    /// `RUN`: checked with docker 20.10); the declared `ARG`s end with their stage.
    pub(super) fn for_child_stage(&self) -> Scope {
        Scope {
            args: Environment::new(),
            ..self.clone()
        }
    }

    /// Expands `instruction`'s words in this scope, then applies its effect on the
    /// scope (`ARG`, `ENV`, `WORKDIR`, `USER`, `SHELL`).
    pub(super) fn apply(
        &mut self,
        lexer: ShellLexer,
        instruction: &Instruction,
        sources: &ArgSources<'_>,
    ) -> Result<Expanded, Error> {
        let mut words = Words {
            lexer,
            env: self.expansion_env(),
            span: instruction.span(),
            matched: BTreeSet::new(),
        };
        let mut out = instruction.clone();
        match &mut out {
            Instruction::Env(kv) | Instruction::Label(kv) => {
                for pair in &mut kv.pairs {
                    pair.key = words.word(&pair.key)?;
                    pair.value = words.word(&pair.value)?;
                }
            }
            Instruction::Arg(arg) => {
                // One name after the other: `ARG A=1 B=$A` gives B the new A. A value
                // from --build-arg wins and leaves the default unexpanded; a bare
                // `ARG NAME` takes the global value.
                for def in &mut arg.args {
                    let value = match (sources.build_args.get(&def.name), &def.default) {
                        (Some(value), _) => Some(value.to_owned()),
                        (None, Some(default)) => {
                            words.env = self.expansion_env();
                            let value = words.word(default)?;
                            def.default = Some(value.clone());
                            Some(value)
                        }
                        (None, None) => sources.globals.get(&def.name).map(str::to_owned),
                    };
                    match value {
                        Some(value) => {
                            self.state.set(def.name.clone(), value.clone());
                            self.from_arg.insert(def.name.clone());
                            self.args.set(def.name.clone(), value);
                        }
                        None => {
                            self.args.remove(&def.name);
                        }
                    }
                }
            }
            Instruction::Expose(list) => {
                let mut ports = Vec::new();
                for value in &list.values {
                    ports.extend(words.words(value)?);
                }
                list.values = ports;
            }
            Instruction::Volume(list) => {
                for value in &mut list.values {
                    *value = words.word(value)?;
                }
            }
            Instruction::User(text)
            | Instruction::Workdir(text)
            | Instruction::Stopsignal(text) => {
                text.value = words.word(&text.value)?;
            }
            // As BuildKit: `--from` and `--exclude` are taken as written (`lower` refuses
            // a variable in `--from`); `--chown`, `--chmod`, `--checksum` are expanded.
            Instruction::Copy(copy) => {
                words.option(&mut copy.chown)?;
                words.option(&mut copy.chmod)?;
                words.list(&mut copy.files.sources)?;
                copy.files.dest = words.word(&copy.files.dest)?;
            }
            Instruction::Add(add) => {
                words.option(&mut add.chown)?;
                words.option(&mut add.chmod)?;
                words.option(&mut add.checksum)?;
                words.list(&mut add.files.sources)?;
                add.files.dest = words.word(&add.files.dest)?;
            }
            Instruction::Run(run) => {
                run.mounts = run
                    .mount_specs
                    .iter()
                    .map(|spec| words.mount(spec))
                    .collect::<Result<_, _>>()?;
            }
            // The shell (or nobody) expands these.
            Instruction::From(_)
            | Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Healthcheck(_)
            | Instruction::Maintainer(_)
            | Instruction::Onbuild(_)
            | Instruction::Shell(_) => {}
        }
        let used_args = words
            .matched
            .into_iter()
            .filter(|name| self.from_arg.contains(name))
            .collect();
        self.check_owner_lookup(&out)?;
        self.effect(&out);
        Ok(Expanded {
            instruction: out,
            used_args,
        })
    }

    /// Refuses a file owner given by name (`--chown`, or `USER` for the directory a
    /// `WORKDIR` makes) while the filesystem is still the empty `scratch`: BuildKit has
    /// no filesystem to read /etc/passwd from then and fails ("invalid user index: -1");
    /// numeric ids need no look-up and work.
    fn check_owner_lookup(&self, instruction: &Instruction) -> Result<(), Error> {
        if !self.empty_root {
            return Ok(());
        }
        let (owner, what) = match instruction {
            Instruction::Copy(copy) => (copy.chown.as_deref(), "--chown"),
            Instruction::Add(add) => (add.chown.as_deref(), "--chown"),
            Instruction::Workdir(text)
                if normalize_workdir(self.workdir.as_deref(), &text.value) != "/" =>
            {
                (self.user.as_deref(), "USER")
            }
            _ => (None, ""),
        };
        match owner.filter(|owner| names_an_owner(owner)) {
            Some(owner) => Err(Error::new(
                ErrorKind::OwnerOnEmptyRoot {
                    owner: owner.to_owned(),
                    what,
                },
                Some(instruction.span()),
            )),
            None => Ok(()),
        }
    }

    /// How an (expanded) instruction changes the scope (`ARG` is applied as it is
    /// expanded). As in BuildKit the later of `ENV` and `ARG` wins in the state: an `ARG`
    /// with a value after an `ENV` of the same name overrides it for the words and `RUN`
    /// steps that follow (never in the image config).
    fn effect(&mut self, instruction: &Instruction) {
        match instruction {
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
                self.empty_root = false;
            }
            _ => {}
        }
        match instruction {
            Instruction::Env(kv) => {
                for pair in &kv.pairs {
                    self.env.set(pair.key.clone(), pair.value.clone());
                    self.state.set(pair.key.clone(), pair.value.clone());
                    self.from_arg.remove(&pair.key);
                }
            }
            Instruction::Workdir(text) => {
                let workdir = normalize_workdir(self.workdir.as_deref(), &text.value);
                // Only a directory other than `/` is made (a file operation).
                self.empty_root &= workdir == "/";
                self.workdir = Some(workdir);
            }
            Instruction::User(text) => self.user = Some(text.value.clone()),
            Instruction::Shell(shell) => self.shell = Some(shell.shell.clone()),
            _ => {}
        }
    }
}

/// Expands words for one instruction, remembering the names they matched.
struct Words {
    lexer: ShellLexer,
    env: Environment,
    span: Span,
    matched: BTreeSet<String>,
}

impl Words {
    fn word(&mut self, word: &str) -> Result<String, Error> {
        let expansion = self
            .lexer
            .expand(word, &self.env)
            .map_err(|e| Error::from((e, self.span)))?;
        self.matched.extend(expansion.matched);
        Ok(expansion.value)
    }

    fn words(&mut self, word: &str) -> Result<Vec<String>, Error> {
        let expansion = self
            .lexer
            .expand(word, &self.env)
            .map_err(|e| Error::from((e, self.span)))?;
        self.matched.extend(expansion.matched);
        Ok(expansion.words)
    }

    fn option(&mut self, value: &mut Option<String>) -> Result<(), Error> {
        if let Some(v) = value {
            *v = self.word(v)?;
        }
        Ok(())
    }

    fn list(&mut self, values: &mut [String]) -> Result<(), Error> {
        for v in values {
            *v = self.word(v)?;
        }
        Ok(())
    }

    /// Expands a `--mount` value's values and types it; errors point at the flag.
    fn mount(&mut self, spec: &MountSpec) -> Result<Mount, Error> {
        parse_mount(spec, |value| self.word(value)).map_err(|error| match error {
            MountError::Expand(error) => error,
            MountError::Invalid(reason) => Error::new(
                ErrorKind::InvalidMount {
                    spec: spec.spec.clone(),
                    reason,
                },
                Some(spec.span),
            ),
        })
    }
}

/// Whether an owner (`user[:group]`) names a user or group that has to be looked up,
/// as BuildKit's `llb.WithUser` reads it: a part that is empty, `root` or a number (Go's
/// `ParseInt(_, 10, 32)`) is an id.
fn names_an_owner(owner: &str) -> bool {
    let (user, group) = match owner.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (owner, None),
    };
    std::iter::once(user)
        .chain(group)
        .any(|part| !part.is_empty() && part != "root" && part.parse::<i32>().is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_that_need_a_look_up() {
        for owner in ["app", "1000:app", "app:1000", "root:wheel", "99999999999"] {
            assert!(names_an_owner(owner), "{owner}");
        }
        for owner in ["root", "0", "1000:1000", ":5", "5:", "root:root", "-1"] {
            assert!(!names_an_owner(owner), "{owner}");
        }
    }
}
