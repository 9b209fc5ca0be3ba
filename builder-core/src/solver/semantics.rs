//! What each Dockerfile instruction does to the image config and its history, as
//! BuildKit's Dockerfile frontend (`docker build`) writes them.
//!
//! The solver keeps one [`StageConfig`] per stage: [`new_stage_config`] starts it from
//! the base image's config (or `scratch`), [`apply_step`] applies each lowered step in
//! order, and [`push_history`] records the step once the solver knows whether it left a
//! layer. Word expansion and scoping are the front end's work (`rbuild_dockerfile::lower`):
//! a [`Step`] arrives with its words expanded and its environment, working directory,
//! user and shell already computed, so this module only turns them into config fields.
//!
//! BuildKit behaviours kept here (from its `dockerfile2llb` package):
//! - a stage always has `PATH` in its `Env` (the default Linux path is appended when the
//!   base image has none); `scratch` starts with that `PATH` and `WorkingDir` `/`;
//! - `ENTRYPOINT` clears an inherited `Cmd` unless a `CMD` of the same stage set it;
//! - shell-form `CMD`/`ENTRYPOINT` become the stage's `SHELL` (or `/bin/sh -c`) plus the
//!   command text; `CMD` also sets `ArgsEscaped`;
//! - `EXPOSE` normalizes `80` to `80/tcp` and expands ranges (`8000-8002`);
//! - `ONBUILD` triggers are recorded without a history entry, and are cleared from the
//!   config of an image built on them (their steps run at the child's `FROM`);
//! - `ARG` records a history entry but never a config field.
//!
//! Length: this file is over the ~600-line guide on purpose. It is one `match` over the
//! instructions, mirroring BuildKit's dispatch, plus the history entry each leaves;
//! splitting it by instruction would scatter one table of behaviours over several files.

use std::collections::BTreeMap;
use std::time::Duration;

use rbuild_dockerfile::{
    BaseImageConfig, CommandLine, DEFAULT_PATH, Environment, HealthCheck, Instruction, Span, Step,
    normalize_workdir,
};

use crate::exec::DEFAULT_SHELL;
use crate::image::{Empty, Healthcheck, History, ImageConfig};

/// The `comment` BuildKit writes in every history entry of a Dockerfile build.
pub(crate) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An instruction whose arguments cannot go into an image config.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SemanticsError {
    /// The instruction's place in the Dockerfile.
    pub span: Span,
    /// What is wrong, lower case.
    pub message: String,
}

/// The config of a stage being built, with what BuildKit tracks besides it.
#[derive(Debug, Clone)]
pub(crate) struct StageConfig {
    /// The image config so far.
    pub image: ImageConfig,
    /// Whether a `CMD` of this stage (not of its base) set `Cmd`.
    cmd_set: bool,
}

/// What [`apply_step`] found out about a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The history `created_by` text (without BuildKit's ` # buildkit` suffix, which
    /// [`push_history`] adds to steps that have a filesystem part).
    pub created_by: String,
    /// Whether the step also changes files (`RUN`, `COPY`, `ADD`, and `WORKDIR` other
    /// than `/`); the others only change the config.
    pub filesystem: bool,
    /// Whether the step gets a history entry at all (`ONBUILD` does not).
    pub history: bool,
}

/// Makes `image` a config of `platform` (its `os`, `architecture` and `variant`).
pub(crate) fn set_platform(image: &mut ImageConfig, platform: &rbuild_dockerfile::Platform) {
    image.os.clone_from(&platform.os);
    image.architecture.clone_from(&platform.architecture);
    image.variant = Some(platform.variant.clone()).filter(|v| !v.is_empty());
}

/// The config a stage starts from: a copy of its base image's config (`None`: `scratch`),
/// with `PATH` ensured, `OnBuild` cleared and no creation time.
pub(crate) fn new_stage_config(base: Option<&ImageConfig>) -> StageConfig {
    let mut image = match base {
        Some(base) => base.clone(),
        None => {
            let mut image = ImageConfig::for_host();
            image.config.working_dir = Some("/".to_owned());
            image
        }
    };
    image.created = None;
    image.config.on_build = None;
    // BuildKit replays the base's WorkingDir as a WORKDIR relative to itself: a relative
    // one (`a`) becomes absolute (`/a/a`) in the stage's config even without a WORKDIR.
    if let Some(wd) = image.config.working_dir.as_mut().filter(|w| !w.is_empty()) {
        *wd = normalize_workdir(Some(wd), wd);
    }
    let env = image.config.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    StageConfig {
        image,
        cmd_set: false,
    }
}

/// What a stage built on an image with this config inherits, for the front end's
/// second lowering ([`rbuild_dockerfile::LowerOptions::base_images`]).
pub(crate) fn base_image_config(config: &ImageConfig) -> BaseImageConfig {
    let mut env = Environment::new();
    for entry in config.config.env.iter().flatten() {
        let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        env.set(key, value);
    }
    BaseImageConfig {
        env,
        workdir: config.config.working_dir.clone().filter(|w| !w.is_empty()),
        user: config.config.user.clone().filter(|u| !u.is_empty()),
        shell: config.config.shell.clone().filter(|s| !s.is_empty()),
    }
}

/// The `ONBUILD` triggers of a base image, in order: the instructions to run at the
/// `FROM` of a stage built on it.
pub(crate) fn onbuild_triggers(base: &ImageConfig) -> Vec<String> {
    base.config.on_build.clone().unwrap_or_default()
}

/// Applies `step` to the stage's config and says how to record it.
pub(crate) fn apply_step(stage: &mut StageConfig, step: &Step) -> Result<Applied, SemanticsError> {
    let config = &mut stage.image.config;
    let meta = |created_by: String| Applied {
        created_by,
        filesystem: false,
        history: true,
    };
    let fail = |message: String| SemanticsError {
        span: step.span,
        message,
    };
    let applied = match &step.instruction {
        Instruction::From(_) => return Err(fail("FROM is not a step of a stage".to_owned())),
        Instruction::Run(run) => {
            let args = command_argv(&run.command, step.shell.as_deref(), config);
            Applied {
                created_by: format!("RUN {}", run_command_string(&args, &step.args)),
                filesystem: true,
                history: true,
            }
        }
        Instruction::Copy(copy) => {
            let from = copy
                .from
                .as_ref()
                .map(|f| format!("--from={f} "))
                .unwrap_or_default();
            Applied {
                created_by: format!("COPY {from}{}", sources_text(&copy.files)),
                filesystem: true,
                history: true,
            }
        }
        Instruction::Add(add) => Applied {
            // A URL's user name and password are never written to the history.
            created_by: format!("ADD {}", sources_text(&add.files)),
            filesystem: true,
            history: true,
        },
        Instruction::Env(kv) => {
            // The front end already computed the whole environment; keep its order
            // (earlier names replaced in place, new ones appended, as BuildKit's addEnv).
            config.env = Some(step.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
            let pairs: Vec<String> = kv
                .pairs
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            meta(format!("ENV {}", pairs.join(" ")))
        }
        Instruction::Label(kv) => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for pair in &kv.pairs {
                labels.insert(pair.key.clone(), pair.value.clone());
            }
            let pairs: Vec<String> = kv
                .pairs
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            meta(format!("LABEL {}", pairs.join(" ")))
        }
        Instruction::Maintainer(text) => {
            stage.image.author = Some(text.value.clone());
            meta(format!("MAINTAINER {}", text.value))
        }
        Instruction::Expose(list) => {
            let mut ports = Vec::new();
            for spec in &list.values {
                ports.extend(parse_port_spec(spec).map_err(fail)?);
            }
            let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for port in &ports {
                exposed.insert(port.clone(), Empty {});
            }
            meta(format!("EXPOSE [{}]", ports.join(" ")))
        }
        Instruction::Cmd(cmd) => {
            let args = command_argv(&cmd.command, step.shell.as_deref(), config);
            config.cmd = Some(args.clone());
            config.args_escaped = Some(true);
            stage.cmd_set = true;
            meta(format!("CMD {}", go_quoted_list(&args)))
        }
        Instruction::Entrypoint(entrypoint) => {
            let args = command_argv(&entrypoint.command, step.shell.as_deref(), config);
            config.entrypoint = Some(args.clone());
            if !stage.cmd_set {
                config.cmd = None;
            }
            meta(format!("ENTRYPOINT {}", go_quoted_list(&args)))
        }
        Instruction::Volume(list) => {
            if list.values.iter().any(String::is_empty) {
                return Err(fail(
                    "VOLUME specified can not be an empty string".to_owned(),
                ));
            }
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for volume in &list.values {
                volumes.insert(volume.clone(), Empty {});
            }
            meta(format!("VOLUME [{}]", list.values.join(" ")))
        }
        Instruction::User(text) => {
            config.user = Some(text.value.clone());
            meta(format!("USER {}", text.value))
        }
        Instruction::Workdir(_) => {
            let workdir = step.workdir.clone().unwrap_or_else(|| "/".to_owned());
            config.working_dir = Some(workdir.clone());
            Applied {
                filesystem: workdir != "/",
                created_by: format!("WORKDIR {workdir}"),
                history: true,
            }
        }
        Instruction::Arg(arg) => {
            let defs: Vec<String> = arg
                .args
                .iter()
                .map(|def| match step.args.get(&def.name) {
                    Some(value) => format!("{}={value}", def.name),
                    None => def.name.clone(),
                })
                .collect();
            meta(format!("ARG {}", defs.join(" ")))
        }
        Instruction::Onbuild(onbuild) => {
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(onbuild.expression.clone());
            Applied {
                created_by: format!("ONBUILD {}", onbuild.expression),
                filesystem: false,
                history: false,
            }
        }
        Instruction::Stopsignal(text) => {
            if !is_signal(&text.value) {
                return Err(fail(format!("invalid signal: {}", text.value)));
            }
            config.stop_signal = Some(text.value.clone());
            meta(format!("STOPSIGNAL {}", text.value))
        }
        Instruction::Healthcheck(check) => {
            let healthcheck = match &check.check {
                HealthCheck::None => Healthcheck {
                    test: vec!["NONE".to_owned()],
                    ..Healthcheck::default()
                },
                HealthCheck::Command {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => Healthcheck {
                    test: match command {
                        CommandLine::Exec(args) => std::iter::once("CMD".to_owned())
                            .chain(args.clone())
                            .collect(),
                        CommandLine::Shell(text) => vec!["CMD-SHELL".to_owned(), text.clone()],
                    },
                    interval: nanos(*interval),
                    timeout: nanos(*timeout),
                    start_period: nanos(*start_period),
                    start_interval: nanos(*start_interval),
                    retries: retries.filter(|r| *r != 0).map(i64::from),
                },
            };
            let text = format!("HEALTHCHECK {}", go_quoted_list(&healthcheck.test));
            config.healthcheck = Some(healthcheck);
            meta(text)
        }
        Instruction::Shell(shell) => {
            config.shell = Some(shell.shell.clone());
            meta(format!("SHELL [{}]", shell.shell.join(" ")))
        }
    };
    // A URL's user name and password (`ADD http://ci:${TOKEN}@host/x`, a RUN's build
    // argument) never reach the history, nor the cache entries that copy it (issue 13).
    let mut applied = applied;
    if let std::borrow::Cow::Owned(redacted) = crate::redact::redact_urls(&applied.created_by) {
        applied.created_by = redacted;
    }
    Ok(applied)
}

/// Appends a history entry; steps with a filesystem part get BuildKit's ` # buildkit`
/// suffix whether or not their change set turned out empty (`empty_layer`).
pub(crate) fn push_history(
    config: &mut ImageConfig,
    applied: &Applied,
    created: Option<String>,
    empty_layer: bool,
) {
    if !applied.history {
        return;
    }
    let created_by = if applied.filesystem {
        format!("{} # buildkit", applied.created_by)
    } else {
        applied.created_by.clone()
    };
    config.history.push(History {
        created,
        created_by: Some(created_by),
        comment: Some(HISTORY_COMMENT.to_owned()),
        empty_layer,
    });
}

/// The argv of a `RUN`, `CMD` or `ENTRYPOINT`: exec form as written; shell form as the
/// stage's shell (the step's, else the config's, else `/bin/sh -c`) plus the text.
pub(crate) fn command_argv(
    command: &CommandLine,
    step_shell: Option<&[String]>,
    config: &crate::image::RunConfig,
) -> Vec<String> {
    match command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(text) => {
            let mut argv: Vec<String> = match step_shell
                .or(config.shell.as_deref())
                .filter(|s| !s.is_empty())
            {
                Some(shell) => shell.to_vec(),
                None => DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
            };
            argv.push(text.clone());
            argv
        }
    }
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `RUN` history text: `|N K=V ... argv`, the build arguments in scope first.
fn run_command_string(args: &[String], build_args: &Environment) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !build_args.is_empty() {
        parts.push(format!("|{}", build_args.len()));
        parts.extend(build_args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

fn sources_text(files: &rbuild_dockerfile::SourcesAndDest) -> String {
    let mut words: Vec<&str> = files.sources.iter().map(String::as_str).collect();
    words.extend(files.inline_sources.iter().map(|f| f.name.as_str()));
    words.push(&files.dest);
    words.join(" ")
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted_list(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| rbuild_dockerfile::go_quote(a))
        .collect();
    format!("[{}]", quoted.join(" "))
}

fn nanos(duration: Option<Duration>) -> Option<i64> {
    duration
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .filter(|n| *n != 0)
}

/// `[ip:][hostport:]port[-port][/proto]` into `port/proto` entries, as BuildKit reads
/// `EXPOSE` arguments.
fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host_port, container) = match parts.as_slice() {
        [c] => ("".to_owned(), "", *c),
        [h, c] => ("".to_owned(), *h, *c),
        [rest @ .., h, c] => (rest.join(":"), *h, *c),
        [] => return Err(format!("invalid port specification: {spec:?}")),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        other => return Err(format!("invalid proto: {other}")),
    };
    if !ip.is_empty() {
        let bare = ip.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
    }
    let (start, end) = port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    if !host_port.is_empty() {
        let (hs, he) =
            port_range(host_port).ok_or_else(|| format!("invalid hostPort: {host_port}"))?;
        if end - start != he - hs && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host_port}"
            ));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn port_range(text: &str) -> Option<(u32, u32)> {
    let one = |t: &str| t.parse::<u16>().ok().map(u32::from);
    match text.split_once('-') {
        None => one(text).map(|p| (p, p)),
        Some((a, b)) => {
            let (start, end) = (one(a)?, one(b)?);
            (end >= start).then_some((start, end))
        }
    }
}

/// Linux signal names as docker's `signal.ParseSignal` accepts them (with or without
/// `SIG`, any case), numbers above zero, and the real-time `RTMIN+n`/`RTMAX-n` forms.
fn is_signal(text: &str) -> bool {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    if let Ok(n) = text.parse::<u32>() {
        return n > 0;
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if NAMES.contains(&name) {
        return true;
    }
    let offset = |rest: &str| rest.parse::<u32>().is_ok_and(|n| (1..=15).contains(&n));
    match (name.strip_prefix("RTMIN+"), name.strip_prefix("RTMAX-")) {
        (Some(rest), _) | (_, Some(rest)) => offset(rest),
        _ => false,
    }
}

/// Whether `instruction` changes the filesystem (and so is a step with a cache key).
pub(crate) fn touches_files(instruction: &Instruction) -> bool {
    matches!(
        instruction,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rbuild_dockerfile::{LowerOptions, lower, parse};

    /// Lowers `dockerfile` and applies every step of its last stage to `base`.
    fn build(dockerfile: &str, base: Option<&ImageConfig>) -> StageConfig {
        let parsed = parse(dockerfile).expect("parses");
        let mut options = LowerOptions::default();
        if let Some(base) = base {
            options
                .base_images
                .insert("base".to_owned(), base_image_config(base));
        }
        let graph = lower(&parsed, &options).expect("lowers");
        let mut stage = new_stage_config(base);
        let target = graph.stage(graph.target).expect("target stage");
        for id in &target.steps {
            let step = graph.step(*id).expect("step");
            let applied = apply_step(&mut stage, step).expect("applies");
            push_history(&mut stage.image, &applied, None, !applied.filesystem);
        }
        stage
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn base_config() -> ImageConfig {
        let mut base = ImageConfig::for_host();
        base.config.env = Some(strings(&["PATH=/opt/bin:/bin", "LANG=C.UTF-8"]));
        base.config.cmd = Some(strings(&["python3"]));
        base.config.on_build = Some(strings(&["RUN echo from base"]));
        base.config.working_dir = Some("/srv".to_owned());
        base.history.push(History {
            created_by: Some("base layer".to_owned()),
            ..History::default()
        });
        base
    }

    /// Issue 14, bug 3: checked against docker 28.5, `FROM` an image whose WorkingDir
    /// is `a/b` gives the stage `/a/b/a/b`.
    #[test]
    fn a_relative_base_workdir_is_replayed_relative_to_itself() {
        let mut base = base_config();
        base.config.working_dir = Some("a/b".to_owned());
        let stage = new_stage_config(Some(&base));
        assert_eq!(stage.image.config.working_dir.as_deref(), Some("/a/b/a/b"));
        base.config.working_dir = Some("/srv/./x/".to_owned());
        let stage = new_stage_config(Some(&base));
        assert_eq!(stage.image.config.working_dir.as_deref(), Some("/srv/./x/"));
    }

    #[test]
    fn scratch_starts_with_path_and_root_workdir() {
        let stage = new_stage_config(None);
        assert_eq!(
            stage.image.config.env,
            Some(vec![format!("PATH={DEFAULT_PATH}")])
        );
        assert_eq!(stage.image.config.working_dir.as_deref(), Some("/"));
    }

    #[test]
    fn base_config_is_inherited_without_onbuild() {
        let stage = new_stage_config(Some(&base_config()));
        assert_eq!(stage.image.config.on_build, None);
        assert_eq!(stage.image.config.cmd, Some(strings(&["python3"])));
        assert_eq!(stage.image.history.len(), 1);
        assert_eq!(
            onbuild_triggers(&base_config()),
            strings(&["RUN echo from base"])
        );
    }

    #[test]
    fn path_is_added_when_the_base_has_none() {
        let mut base = ImageConfig::for_host();
        base.config.env = Some(strings(&["A=1"]));
        let stage = new_stage_config(Some(&base));
        assert_eq!(
            stage.image.config.env,
            Some(vec!["A=1".to_owned(), format!("PATH={DEFAULT_PATH}")])
        );
    }

    #[test]
    fn env_replaces_in_place_and_appends() {
        let stage = build(
            "FROM base\nENV LANG=en_US.UTF-8 NAME=World\nENV PATH=$PATH:/x\n",
            Some(&base_config()),
        );
        assert_eq!(
            stage.image.config.env,
            Some(strings(&[
                "PATH=/opt/bin:/bin:/x",
                "LANG=en_US.UTF-8",
                "NAME=World"
            ]))
        );
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_but_not_its_own_stages() {
        let stage = build("FROM base\nENTRYPOINT [\"/app\"]\n", Some(&base_config()));
        assert_eq!(stage.image.config.entrypoint, Some(strings(&["/app"])));
        assert_eq!(stage.image.config.cmd, None);

        let stage = build(
            "FROM base\nCMD [\"--help\"]\nENTRYPOINT [\"/app\"]\n",
            Some(&base_config()),
        );
        assert_eq!(stage.image.config.cmd, Some(strings(&["--help"])));
    }

    #[test]
    fn shell_form_uses_the_stage_shell() {
        let stage = build(
            "FROM scratch\nCMD echo hi\nSHELL [\"/bin/bash\", \"-ec\"]\nENTRYPOINT exec app\n",
            None,
        );
        assert_eq!(
            stage.image.config.cmd,
            Some(strings(&["/bin/sh", "-c", "echo hi"]))
        );
        assert_eq!(
            stage.image.config.entrypoint,
            Some(strings(&["/bin/bash", "-ec", "exec app"]))
        );
        assert_eq!(
            stage.image.config.shell,
            Some(strings(&["/bin/bash", "-ec"]))
        );
    }

    #[test]
    fn metadata_instructions_fill_their_fields() {
        let stage = build(
            concat!(
                "FROM scratch\n",
                "ARG V=1.0\n",
                "LABEL version=$V \"a b\"=c\n",
                "MAINTAINER someone <s@example.com>\n",
                "EXPOSE 80 53/UDP 8000-8002 127.0.0.1:9000:9000/tcp\n",
                "VOLUME /data [\"/logs\"]\n",
                "VOLUME [\"/cache\", \"/tmp/x\"]\n",
                "WORKDIR /app\n",
                "WORKDIR sub\n",
                // After WORKDIR: a name cannot be looked up on an empty scratch.
                "USER app:app\n",
                "STOPSIGNAL SIGQUIT\n",
                "HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/\n",
                "ONBUILD RUN echo child\n",
            ),
            None,
        );
        let c = &stage.image.config;
        let labels = c.labels.as_ref().expect("labels");
        assert_eq!(labels.get("version").map(String::as_str), Some("1.0"));
        assert_eq!(labels.get("a b").map(String::as_str), Some("c"));
        assert_eq!(
            stage.image.author.as_deref(),
            Some("someone <s@example.com>")
        );
        let ports: Vec<&str> = c
            .exposed_ports
            .as_ref()
            .expect("ports")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            ports,
            [
                "53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/tcp"
            ]
        );
        let volumes: Vec<&str> = c
            .volumes
            .as_ref()
            .expect("volumes")
            .keys()
            .map(String::as_str)
            .collect();
        // Not JSON, so the words are expanded like any other (quotes removed).
        assert_eq!(volumes, ["/cache", "/data", "/tmp/x", "[/logs]"]);
        assert_eq!(c.user.as_deref(), Some("app:app"));
        assert_eq!(c.working_dir.as_deref(), Some("/app/sub"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        let health = c.healthcheck.as_ref().expect("healthcheck");
        assert_eq!(
            health.test,
            strings(&["CMD-SHELL", "curl -f http://localhost/"])
        );
        assert_eq!(health.interval, Some(30_000_000_000));
        assert_eq!(health.timeout, None);
        assert_eq!(health.retries, Some(3));
        assert_eq!(c.on_build, Some(strings(&["RUN echo child"])));
        // ARG values never reach the config.
        assert!(c.env.iter().flatten().all(|e| !e.starts_with("V=")));
        // Every step but ONBUILD has a history entry.
        assert_eq!(stage.image.history.len(), 11);
        assert_eq!(
            stage.image.history[0].created_by.as_deref(),
            Some("ARG V=1.0")
        );
        let workdir = &stage.image.history[6];
        assert_eq!(
            workdir.created_by.as_deref(),
            Some("WORKDIR /app # buildkit")
        );
        assert!(!workdir.empty_layer);
    }

    #[test]
    fn healthcheck_none_and_exec_form() {
        let stage = build("FROM scratch\nHEALTHCHECK NONE\n", None);
        let health = stage.image.config.healthcheck.expect("healthcheck");
        assert_eq!(health.test, strings(&["NONE"]));
        let stage = build(
            "FROM scratch\nHEALTHCHECK --timeout=5s CMD [\"/bin/check\", \"-q\"]\n",
            None,
        );
        let health = stage.image.config.healthcheck.expect("healthcheck");
        assert_eq!(health.test, strings(&["CMD", "/bin/check", "-q"]));
        assert_eq!(health.timeout, Some(5_000_000_000));
    }

    #[test]
    fn run_history_lists_build_args() {
        let stage = build("FROM scratch\nARG A=1\nRUN echo $A\n", None);
        assert_eq!(
            stage.image.history[1].created_by.as_deref(),
            Some("RUN |1 A=1 /bin/sh -c echo $A # buildkit")
        );
    }

    #[test]
    fn bad_arguments_are_errors_naming_the_line() {
        for (text, message) in [
            ("FROM scratch\nEXPOSE 80/icmp\n", "invalid proto: icmp"),
            (
                "FROM scratch\nEXPOSE 70000\n",
                "invalid containerPort: 70000",
            ),
            (
                "FROM scratch\nSTOPSIGNAL SIGNOPE\n",
                "invalid signal: SIGNOPE",
            ),
        ] {
            let parsed = parse(text).expect("parses");
            let graph = lower(&parsed, &LowerOptions::default()).expect("lowers");
            let mut stage = new_stage_config(None);
            let step = graph.step(rbuild_dockerfile::StepId(0)).expect("step");
            let err = apply_step(&mut stage, step).expect_err(text);
            assert_eq!(err.message, message);
            assert_eq!(err.span.start_line, 2, "{text}");
        }
    }

    #[test]
    fn signals_as_docker_accepts_them() {
        for ok in ["SIGTERM", "term", "9", "RTMIN+3", "SIGRTMAX-1", "sigusr1"] {
            assert!(is_signal(ok), "{ok}");
        }
        for bad in ["0", "SIGFOO", "RTMIN+16", "", "-1"] {
            assert!(!is_signal(bad), "{bad}");
        }
    }
}
