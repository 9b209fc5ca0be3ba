//! Human-readable views of a [`BuildGraph`]: plain text and Graphviz DOT.

use std::fmt::Write as _;

use super::{Base, BuildGraph, EdgeKind, GraphStage, Source};
use crate::instruction::{CommandLine, HealthCheck, Instruction};

impl BuildGraph {
    /// A plain-text listing: levels, then each stage with its base and steps.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let target = self
            .stage(self.target)
            .map(GraphStage::display_name)
            .unwrap_or_default();
        let _ = writeln!(out, "target: {target}");
        for (level, stages) in self.levels.iter().enumerate() {
            let names: Vec<String> = stages
                .iter()
                .filter_map(|id| self.stage(*id).map(GraphStage::display_name))
                .collect();
            let _ = writeln!(out, "level {level}: {}", names.join(", "));
        }
        let globals: Vec<String> = self
            .global_args
            .iter()
            .filter(|(name, _)| !super::args::is_automatic_arg(name))
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        if !globals.is_empty() {
            let _ = writeln!(out, "global args: {}", globals.join(" "));
        }
        if !self.unused_build_args.is_empty() {
            let _ = writeln!(
                out,
                "unused build args: {}",
                self.unused_build_args.join(", ")
            );
        }
        for stage in &self.stages {
            let _ = write!(
                out,
                "\nstage {} {}: from {}",
                stage.id,
                stage.display_name(),
                self.base_text(&stage.base)
            );
            if let Some(platform) = &stage.platform {
                let _ = write!(out, " (platform {platform})");
            }
            out.push('\n');
            for id in &stage.steps {
                let Some(step) = self.step(*id) else { continue };
                let _ = writeln!(out, "  step {}: {}", step.id, summary(&step.instruction));
                let short = step
                    .digest
                    .as_str()
                    .get(..19)
                    .unwrap_or(step.digest.as_str());
                let _ = write!(out, "    digest {short}");
                if let Some(workdir) = &step.workdir {
                    let _ = write!(out, " workdir {workdir}");
                }
                if let Some(user) = &step.user {
                    let _ = write!(out, " user {user}");
                }
                out.push('\n');
                for (label, env) in [
                    ("args", &step.args),
                    ("env", &step.env),
                    ("proxy", &step.proxy_env),
                ] {
                    if !env.is_empty() {
                        let pairs: Vec<String> =
                            env.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                        let _ = writeln!(out, "    {label}: {}", pairs.join(" "));
                    }
                }
                if !step.used_args.is_empty() {
                    let _ = writeln!(out, "    uses args: {}", step.used_args.join(", "));
                }
                for edge in self.edges.iter().filter(|e| e.step == Some(step.id)) {
                    let _ = writeln!(out, "    needs {}", self.source_text(&edge.source));
                }
            }
        }
        out
    }

    /// Graphviz DOT: one cluster per stage holding its steps in order, external images
    /// as boxes, dependencies as dashed edges into the step that uses them.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph build {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for stage in &self.stages {
            let _ = writeln!(out, "  subgraph cluster_stage{} {{", stage.id);
            let _ = writeln!(
                out,
                "    label={};",
                dot_string(&format!("{} (level {})", stage.display_name(), stage.level))
            );
            let _ = writeln!(
                out,
                "    stage{}_from [label={}, shape=oval];",
                stage.id,
                dot_string(&format!("FROM {}", self.base_text(&stage.base)))
            );
            let mut previous = format!("stage{}_from", stage.id);
            for id in &stage.steps {
                let Some(step) = self.step(*id) else { continue };
                let _ = writeln!(
                    out,
                    "    step{} [label={}];",
                    step.id,
                    dot_string(&summary(&step.instruction))
                );
                let _ = writeln!(out, "    {previous} -> step{};", step.id);
                previous = format!("step{}", step.id);
            }
            out.push_str("  }\n");
        }
        let mut images: Vec<&str> = self
            .edges
            .iter()
            .filter_map(|e| match &e.source {
                Source::Image(image) => Some(image.as_str()),
                Source::Stage(_) => None,
            })
            .collect();
        images.sort_unstable();
        images.dedup();
        for (index, image) in images.iter().enumerate() {
            let _ = writeln!(
                out,
                "  image{index} [label={}, shape=cylinder];",
                dot_string(image)
            );
        }
        for edge in &self.edges {
            let from = match &edge.source {
                Source::Image(image) => {
                    let index = images.iter().position(|i| i == image).unwrap_or(0);
                    format!("image{index}")
                }
                Source::Stage(id) => match self.stage(*id).and_then(|s| s.steps.last()) {
                    Some(last) => format!("step{last}"),
                    None => format!("stage{id}_from"),
                },
            };
            let to = match edge.step {
                Some(step) => format!("step{step}"),
                None => format!("stage{}_from", edge.stage),
            };
            let style = match edge.kind {
                EdgeKind::Base => "solid",
                EdgeKind::CopyFrom | EdgeKind::MountFrom => "dashed",
            };
            let _ = writeln!(out, "  {from} -> {to} [style={style}];");
        }
        out.push_str("}\n");
        out
    }

    fn base_text(&self, base: &Base) -> String {
        match base {
            Base::Scratch => "scratch".to_owned(),
            Base::Image(image) => image.clone(),
            Base::Stage(id) => self.stage_name(*id),
        }
    }

    fn source_text(&self, source: &Source) -> String {
        match source {
            Source::Image(image) => format!("image {image}"),
            Source::Stage(id) => format!("stage {}", self.stage_name(*id)),
        }
    }

    fn stage_name(&self, id: super::StageId) -> String {
        self.stage(id)
            .map_or_else(|| format!("stage-{id}"), GraphStage::display_name)
    }
}

/// `TARGETPLATFORM`, `BUILDARCH`, ...: present in every build, so left out of listings.
/// One line describing an expanded instruction.
fn summary(instruction: &Instruction) -> String {
    let keyword = instruction.keyword();
    let rest = match instruction {
        Instruction::Run(run) => command_text(&run.command),
        Instruction::Cmd(c) | Instruction::Entrypoint(c) => command_text(&c.command),
        Instruction::Env(kv) | Instruction::Label(kv) => kv
            .pairs
            .iter()
            .map(|p| format!("{}={:?}", p.key, p.value))
            .collect::<Vec<_>>()
            .join(" "),
        Instruction::Arg(arg) => arg
            .args
            .iter()
            .map(|a| match &a.default {
                Some(d) => format!("{}={d:?}", a.name),
                None => a.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Instruction::Copy(copy) => {
            let from = copy
                .from
                .as_ref()
                .map(|f| format!("--from={f} "))
                .unwrap_or_default();
            format!("{from}{} {}", copy.files.sources.join(" "), copy.files.dest)
        }
        Instruction::Add(add) => format!("{} {}", add.files.sources.join(" "), add.files.dest),
        Instruction::Expose(list) | Instruction::Volume(list) => list.values.join(" "),
        Instruction::User(t)
        | Instruction::Workdir(t)
        | Instruction::Stopsignal(t)
        | Instruction::Maintainer(t) => t.value.clone(),
        Instruction::Shell(shell) => format!("{:?}", shell.shell),
        Instruction::Onbuild(onbuild) => onbuild.expression.clone(),
        Instruction::Healthcheck(check) => match &check.check {
            HealthCheck::None => "NONE".to_owned(),
            HealthCheck::Command { command, .. } => format!("CMD {}", command_text(command)),
        },
        Instruction::From(from) => from.image.clone(),
    };
    format!("{keyword} {rest}")
}

fn command_text(command: &CommandLine) -> String {
    match command {
        CommandLine::Exec(args) => format!("{args:?}"),
        CommandLine::Shell(text) => text.clone(),
    }
}

/// A DOT double-quoted string.
fn dot_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            other => out.push(other),
        }
    }
    out.push('"');
    out
}
