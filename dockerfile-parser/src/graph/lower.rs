//! Lowering: from the parser's stages to a [`BuildGraph`].

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Span;
use crate::instruction::{CommandLine, Dockerfile, Instruction};
use crate::shell::{Environment, ShellLexer};

use super::args::{PROXY_ARGS, global_args, is_proxy_arg, proxy_env};
use super::digest::{DEFINITION_VERSION, Definition};
use super::scope::{ArgSources, Scope};
use super::{
    Base, BuildGraph, Edge, EdgeKind, GraphStage, LowerOptions, Platform, Source, StageId, Step,
    StepId,
};
use crate::error::{Error, ErrorKind};

/// The image name meaning "no base". Docker's documentation, "Create a base image".
const SCRATCH: &str = "scratch";

/// A stage while it is being lowered: steps not yet numbered.
struct Draft {
    name: Option<String>,
    base: Base,
    platform: Option<String>,
    span: Span,
    steps: Vec<Step>,
    /// (source, kind, index of the step in `steps`, span of the instruction).
    deps: Vec<(Source, EdgeKind, Option<usize>, Span)>,
    /// The scope after the last instruction, inherited by stages based on this one.
    scope: Scope,
    /// The first error met while lowering the stage; reported only if the target
    /// needs the stage, as BuildKit skips stages the target does not reach.
    error: Option<Error>,
}

/// Lowers a parsed Dockerfile into a build graph.
///
/// ```
/// use rbuild_dockerfile::{Base, LowerOptions, lower, parse};
/// let file = parse("ARG V=3\nFROM alpine:$V AS base\nFROM base\nRUN true\n").unwrap();
/// let graph = lower(&file, &LowerOptions::default()).unwrap();
/// assert_eq!(graph.stages[0].base, Base::Image("alpine:3".into()));
/// assert_eq!(graph.levels.len(), 2);
/// ```
pub fn lower(file: &Dockerfile, options: &LowerOptions) -> Result<BuildGraph, Error> {
    if file.stages.is_empty() {
        return Err(Error::new(ErrorKind::NoStages, None));
    }
    let lexer = ShellLexer::new(file.escape);
    check_copy_from(file, lexer)?;
    let mut consumed: BTreeSet<String> = PROXY_ARGS.iter().map(|s| s.to_string()).collect();
    let globals = global_args(file, options, lexer, &mut consumed)?;

    // Stage names (lower case, as the parser gives them) to ids. A name given twice
    // means the later stage, as in BuildKit (`--from`, `--target`; `FROM` sees the
    // stages above it only).
    let mut names: BTreeMap<String, StageId> = BTreeMap::new();
    for (index, stage) in file.stages.iter().enumerate() {
        if let Some(name) = &stage.name {
            names.insert(name.clone(), StageId(index as u32));
        }
    }

    let ctx = Context {
        file,
        names: &names,
        lexer,
        sources: ArgSources {
            build_args: &options.build_args,
            globals: &globals,
        },
        default_platform: options.target_platform.to_string(),
        options,
        carried: std::cell::Cell::new(0),
    };
    let mut drafts: Vec<Draft> = Vec::new();
    for (index, stage) in file.stages.iter().enumerate() {
        for instruction in &stage.instructions {
            if let Instruction::Arg(arg) = instruction {
                consumed.extend(arg.args.iter().map(|a| a.name.clone()));
            }
        }
        let draft = lower_stage(&ctx, index, &drafts);
        drafts.push(draft);
    }

    let target = match &options.target {
        None => StageId((drafts.len() - 1) as u32),
        Some(target) => *names
            .get(&target.to_lowercase())
            .ok_or_else(|| Error::new(ErrorKind::UnknownTarget(target.clone()), None))?,
    };
    check_cycles(&drafts)?;
    let reachable = reachable_from(&drafts, target);
    if let Some(error) = drafts
        .iter()
        .enumerate()
        .filter(|(i, _)| reachable.contains(&StageId(*i as u32)))
        .find_map(|(_, d)| d.error.clone())
    {
        return Err(error);
    }
    let levels_by_stage = levels(&drafts, &reachable);

    let mut graph = BuildGraph {
        stages: Vec::new(),
        steps: Vec::new(),
        edges: Vec::new(),
        target,
        levels: Vec::new(),
        global_args: globals.clone(),
        unused_build_args: options
            .build_args
            .iter()
            .map(|(name, _)| name.to_owned())
            .filter(|name| !consumed.contains(name) && !is_proxy_arg(name))
            .collect(),
    };
    for (index, draft) in drafts.into_iter().enumerate() {
        let id = StageId(index as u32);
        if !reachable.contains(&id) {
            continue;
        }
        let first = graph.steps.len();
        let mut step_ids = Vec::new();
        for (offset, mut step) in draft.steps.into_iter().enumerate() {
            step.id = StepId((first + offset) as u32);
            step_ids.push(step.id);
            graph.steps.push(step);
        }
        for (source, kind, step, _) in draft.deps {
            graph.edges.push(Edge {
                stage: id,
                step: step.map(|s| StepId((first + s) as u32)),
                source,
                kind,
            });
        }
        let level = levels_by_stage.get(&id).copied().unwrap_or(0);
        if graph.levels.len() <= level {
            graph.levels.resize(level + 1, Vec::new());
        }
        graph.levels[level].push(id);
        graph.stages.push(GraphStage {
            id,
            name: draft.name,
            base: draft.base,
            platform: draft.platform,
            steps: step_ids,
            level,
            span: draft.span,
        });
    }
    Ok(graph)
}

/// What every stage's lowering reads.
struct Context<'a> {
    file: &'a Dockerfile,
    /// Stage names (lower case) to ids.
    names: &'a BTreeMap<String, StageId>,
    lexer: ShellLexer,
    sources: ArgSources<'a>,
    /// `TARGETPLATFORM`, for stages without `--platform`.
    default_platform: String,
    options: &'a LowerOptions,
    /// Variables the steps lowered so far carry (each step holds its whole scope).
    carried: std::cell::Cell<usize>,
}

/// Lowers one stage; errors are kept in the draft.
fn lower_stage(ctx: &Context<'_>, index: usize, earlier: &[Draft]) -> Draft {
    let stage = &ctx.file.stages[index];
    let mut draft = Draft {
        name: stage.name.clone(),
        base: Base::Scratch,
        platform: None,
        span: stage.span,
        steps: Vec::new(),
        deps: Vec::new(),
        scope: Scope::default(),
        error: None,
    };
    if let Err(error) = lower_stage_into(ctx, &mut draft, index, earlier) {
        // An earlier one (a source defined further down) stays the one reported.
        draft.error.get_or_insert(error);
    }
    draft
}

fn lower_stage_into(
    ctx: &Context<'_>,
    draft: &mut Draft,
    index: usize,
    earlier: &[Draft],
) -> Result<(), Error> {
    let (file, names, lexer, sources) = (ctx.file, ctx.names, ctx.lexer, &ctx.sources);
    let stage = &file.stages[index];
    let expand_global = |word: &str| {
        lexer
            .expand_word(word, sources.globals)
            .map_err(|e| Error::from((e, stage.span)))
    };
    let base = expand_global(&stage.base)?;
    if base.is_empty() {
        return Err(Error::new(
            ErrorKind::BlankBase(stage.base.clone()),
            Some(stage.span),
        ));
    }
    // `--platform` is expanded with the global arguments (BuildKit's `convert.go`), and
    // kept normalized (`linux/arm64/v8` is `linux/arm64`).
    if let Some(written) = stage.platform.as_deref().map(expand_global).transpose()? {
        let platform = Platform::parse(&written)
            .ok_or_else(|| Error::new(ErrorKind::InvalidPlatform(written), Some(stage.span)))?;
        draft.platform = Some(platform.to_string());
    }
    // Exact: stage names are lower case, and `FROM Name` is an image name to BuildKit
    // (an invalid one, as repository names are lower case too).
    if let Some(named) = names
        .get_key_value(&base.to_lowercase())
        .map(|(name, _)| name)
        .filter(|name| **name != base)
    {
        return Err(Error::new(
            ErrorKind::StageNameCase {
                written: base,
                stage: named.clone(),
            },
            Some(stage.span),
        ));
    }
    // `FROM name` is a stage only if one above is named so (the nearest); otherwise,
    // even when a stage further down (or this one) has the name, it is an image, as in
    // BuildKit (`FROM node AS node` builds on the image).
    let earlier_stage = file.stages[..index]
        .iter()
        .rposition(|s| s.name.as_deref() == Some(base.as_str()));
    draft.base = match earlier_stage {
        _ if base == SCRATCH => Base::Scratch,
        Some(id) => Base::Stage(StageId(id as u32)),
        None => Base::Image(base),
    };
    match &draft.base {
        Base::Stage(id) => {
            let parent = &earlier[id.0 as usize];
            draft.scope = parent.scope.for_child_stage();
            // A stage on a stage runs as its parent does (BuildKit's
            // `ds.platform = ds.base.platform`), unless it says otherwise.
            if draft.platform.is_none() {
                draft.platform.clone_from(&parent.platform);
            }
            draft
                .deps
                .push((Source::Stage(*id), EdgeKind::Base, None, stage.span));
        }
        Base::Image(image) => {
            if let Some(config) = ctx.options.base_images.get(image) {
                draft.scope = Scope::from_image(config);
            }
            draft.deps.push((
                Source::Image(image.clone()),
                EdgeKind::Base,
                None,
                stage.span,
            ));
        }
        Base::Scratch => draft.scope = Scope::scratch(),
    }
    let platform = draft
        .platform
        .clone()
        .unwrap_or_else(|| ctx.default_platform.clone());
    for instruction in &stage.instructions {
        let expanded = draft.scope.apply(lexer, instruction, sources)?;
        let span = instruction.span();
        // Every step keeps a copy of its scope: bound the total, or a long run of ENV
        // lines makes lowering quadratic in time and memory.
        let carried = ctx.carried.get()
            + draft.scope.args.len()
            + draft.scope.env.len()
            + draft.scope.state.len()
            + 1;
        if carried > MAX_STEP_VARIABLES {
            return Err(Error::new(
                ErrorKind::TooManyVariables(MAX_STEP_VARIABLES),
                Some(span),
            ));
        }
        ctx.carried.set(carried);
        let step_index = draft.steps.len();
        match &expanded.instruction {
            Instruction::Copy(copy) => {
                if let Some(from) = &copy.from {
                    let source = copy_source(from, names, file.stages.len(), span)?;
                    if is_later_stage(&source, index) {
                        let kind = ErrorKind::CopyFromLaterStage {
                            from: from.clone(),
                            stage: display_name(draft, index),
                        };
                        draft.error.get_or_insert(Error::new(kind, Some(span)));
                    }
                    draft
                        .deps
                        .push((source, EdgeKind::CopyFrom, Some(step_index), span));
                }
            }
            Instruction::Run(run) => {
                if matches!(&run.command, CommandLine::Exec(args) if args.is_empty()) {
                    return Err(Error::new(ErrorKind::EmptyRunCommand, Some(span)));
                }
                for mount in &run.mounts {
                    if let Some(from) = mount.from.as_ref().filter(|f| !f.is_empty()) {
                        let source = match names.get(&from.to_lowercase()) {
                            Some(id) => Source::Stage(*id),
                            None => Source::Image(from.clone()),
                        };
                        if is_later_stage(&source, index) {
                            let kind = ErrorKind::MountFromLaterStage {
                                from: from.clone(),
                                target: mount.target.clone().unwrap_or_default(),
                            };
                            draft.error.get_or_insert(Error::new(kind, Some(span)));
                        }
                        draft
                            .deps
                            .push((source, EdgeKind::MountFrom, Some(step_index), span));
                    }
                }
            }
            _ => {}
        }
        let scope = &draft.scope;
        let proxy_env = match &expanded.instruction {
            Instruction::Run(_) => proxy_env(sources.build_args),
            _ => Environment::new(),
        };
        let digest = Definition {
            version: DEFINITION_VERSION,
            platform: &platform,
            instruction: &expanded.instruction,
            args: &scope.args,
            env: &scope.env,
            run_env: &scope.state,
            workdir: scope.workdir.as_deref(),
            user: scope.user.as_deref(),
            shell: scope.shell.as_deref(),
        }
        .digest();
        draft.steps.push(Step {
            id: StepId(0),
            stage: StageId(index as u32),
            instruction: expanded.instruction,
            args: scope.args.clone(),
            env: scope.env.clone(),
            run_env: scope.state.clone(),
            proxy_env,
            used_args: expanded.used_args.into_iter().collect(),
            workdir: scope.workdir.clone(),
            user: scope.user.clone(),
            shell: scope.shell.clone(),
            digest,
            span,
        });
    }
    Ok(())
}

/// How many variables (build arguments and environment variables) all the steps of a
/// graph may carry together: some 50 MB of strings. A real Dockerfile of 200 steps
/// with 50 variables each uses 10,000.
pub const MAX_STEP_VARIABLES: usize = 1_000_000;

/// Refuses a `COPY --from` value that word expansion would change (a variable, an
/// escape), in every stage, needed by the target or not: BuildKit names the stage a
/// `COPY` reads before it expands anything, and says so.
fn check_copy_from(file: &Dockerfile, lexer: ShellLexer) -> Result<(), Error> {
    let nothing = Environment::new();
    for instruction in file.stages.iter().flat_map(|s| &s.instructions) {
        let Instruction::Copy(copy) = instruction else {
            continue;
        };
        let Some(from) = &copy.from else { continue };
        let span = instruction.span();
        let expanded = lexer
            .expand_word(from, &nothing)
            .map_err(|e| Error::from((e, span)))?;
        if expanded != *from {
            return Err(Error::new(ErrorKind::VariableInCopyFrom, Some(span)));
        }
    }
    Ok(())
}

/// Whether `source` is a stage defined after the stage at `index`. BuildKit makes the
/// stages in file order and refuses to take files from one not made yet (the stage
/// itself is a circular dependency, reported first).
fn is_later_stage(source: &Source, index: usize) -> bool {
    matches!(source, Source::Stage(id) if id.0 as usize > index)
}

/// `COPY --from=`: a stage index, a stage name, or else an image.
fn copy_source(
    from: &str,
    names: &BTreeMap<String, StageId>,
    stage_count: usize,
    span: Span,
) -> Result<Source, Error> {
    // BuildKit reads the value as a number first (Go's strconv.Atoi: optional sign).
    if let Ok(index) = from.parse::<i64>() {
        return match usize::try_from(index) {
            Ok(i) if i < stage_count => Ok(Source::Stage(StageId(i as u32))),
            _ => Err(Error::new(
                ErrorKind::InvalidStageIndex(from.to_owned()),
                Some(span),
            )),
        };
    }
    Ok(match names.get(&from.to_lowercase()) {
        Some(id) => Source::Stage(*id),
        None => Source::Image(from.to_owned()),
    })
}

/// The stages each stage depends on, with the span of the instruction that says so.
fn stage_deps(draft: &Draft) -> impl Iterator<Item = (StageId, Span)> + '_ {
    draft
        .deps
        .iter()
        .filter_map(|(source, _, _, span)| match source {
            Source::Stage(id) => Some((*id, *span)),
            Source::Image(_) => None,
        })
}

/// Fails on a loop of stages depending on each other (a stage copying from itself
/// included), naming the stage whose instruction closes the loop.
fn check_cycles(drafts: &[Draft]) -> Result<(), Error> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(drafts: &[Draft], marks: &mut [Mark], at: usize) -> Result<(), Error> {
        marks[at] = Mark::Open;
        for (dep, span) in stage_deps(&drafts[at]) {
            let dep = dep.0 as usize;
            match marks[dep] {
                Mark::Open => {
                    let name = display_name(&drafts[at], at);
                    return Err(Error::new(ErrorKind::CircularDependency(name), Some(span)));
                }
                Mark::New => visit(drafts, marks, dep)?,
                Mark::Done => {}
            }
        }
        marks[at] = Mark::Done;
        Ok(())
    }
    let mut marks = vec![Mark::New; drafts.len()];
    for start in 0..drafts.len() {
        if marks[start] == Mark::New {
            visit(drafts, &mut marks, start)?;
        }
    }
    Ok(())
}

fn display_name(draft: &Draft, index: usize) -> String {
    draft
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{index}"))
}

/// The stages `target` needs, itself included.
fn reachable_from(drafts: &[Draft], target: StageId) -> BTreeSet<StageId> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(id) = todo.pop() {
        if seen.insert(id) {
            todo.extend(stage_deps(&drafts[id.0 as usize]).map(|(dep, _)| dep));
        }
    }
    seen
}

/// Each kept stage's level: 0 without stage dependencies, else one more than the
/// highest level among them. The graph has no cycles when this runs.
fn levels(drafts: &[Draft], keep: &BTreeSet<StageId>) -> BTreeMap<StageId, usize> {
    fn level_of(drafts: &[Draft], id: StageId, memo: &mut BTreeMap<StageId, usize>) -> usize {
        if let Some(level) = memo.get(&id) {
            return *level;
        }
        let level = stage_deps(&drafts[id.0 as usize])
            .map(|(dep, _)| level_of(drafts, dep, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(id, level);
        level
    }
    let mut memo = BTreeMap::new();
    for id in keep {
        level_of(drafts, *id, &mut memo);
    }
    memo.retain(|id, _| keep.contains(id));
    memo
}
