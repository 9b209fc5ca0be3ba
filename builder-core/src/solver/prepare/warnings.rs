//! The warnings a build gives about its Dockerfile before any stage runs.

use rbuild_dockerfile::{BuildGraph, Instruction};

use crate::progress::Event;
use crate::solver::epoch::SOURCE_DATE_EPOCH;

/// Build arguments BuildKit's frontend reads itself, never "not consumed": inline cache,
/// syntax, multi-platform and cache-mount namespaces, git context, sandbox hostname.
/// rbuild has no use for them (its cache export is `--cache-to`), so they do nothing.
const BUILDKIT_ARGS: &[&str] = &[
    "BUILDKIT_INLINE_CACHE",
    "BUILDKIT_SYNTAX",
    "BUILDKIT_MULTI_PLATFORM",
    "BUILDKIT_CACHE_MOUNT_NS",
    "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
    "BUILDKIT_SANDBOX_HOSTNAME",
];

/// The warnings BuildKit gives about build arguments nothing declared and secret-looking
/// names in `ARG` and `ENV`.
pub(crate) fn warnings(graph: &BuildGraph) -> Vec<Event> {
    let mut warnings = Vec::new();
    // SOURCE_DATE_EPOCH is the engine's, as in BuildKit: never unused.
    let unused: Vec<&str> = graph
        .unused_build_args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != SOURCE_DATE_EPOCH && !BUILDKIT_ARGS.contains(a))
        .collect();
    if !unused.is_empty() {
        warnings.push(Event::Warning {
            rule: None,
            message: format!(
                "one or more build-args [{}] were not consumed",
                unused.join(" ")
            ),
            line: None,
        });
    }
    // Build arguments and ENV values are written to the image's config and history:
    // a secret-looking name is pointed at --secret (BuildKit's SecretsUsedInArgOrEnv).
    for stage in &graph.stages {
        for step in stage.steps.iter().filter_map(|id| graph.step(*id)) {
            let (keyword, names): (&str, Vec<&str>) = match &step.instruction {
                Instruction::Arg(arg) => {
                    ("ARG", arg.args.iter().map(|a| a.name.as_str()).collect())
                }
                Instruction::Env(kv) => ("ENV", kv.pairs.iter().map(|p| p.key.as_str()).collect()),
                _ => continue,
            };
            for name in names
                .into_iter()
                .filter(|n| crate::redact::is_secret_name(n))
            {
                warnings.push(Event::Warning {
                    rule: Some("SecretsUsedInArgOrEnv".to_owned()),
                    message: format!(
                        "do not use {keyword} for sensitive data ({keyword} {name:?}): its value is stored in the image's history and config; pass secrets with --secret and RUN --mount=type=secret"
                    ),
                    line: u32::try_from(step.span.start_line).ok(),
                });
            }
        }
    }
    warnings
}
