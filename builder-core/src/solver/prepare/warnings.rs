//! The warnings a build gives about its Dockerfile before any stage runs.

use rbuild_dockerfile::{BuildGraph, Dockerfile, Instruction, Platform};

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

/// The warnings BuildKit gives about build arguments nothing declared, secret-looking
/// names in `ARG` and `ENV`, and `FROM --platform` values its lint rules dislike.
pub(crate) fn warnings(file: &Dockerfile, graph: &BuildGraph) -> Vec<Event> {
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
    warnings.extend(platform_lints(file));
    warnings
}

/// BuildKit's lint rules on `FROM --platform` (`dockerfile2llb/validations.go`), on every
/// stage: `$TARGETPLATFORM` alone is the default (`RedundantTargetPlatform`); a constant
/// platform whose os and architecture the stage name does not mention pins the stage
/// (`FromPlatformFlagConstDisallowed`).
fn platform_lints(file: &Dockerfile) -> Vec<Event> {
    let mut lints = Vec::new();
    for stage in &file.stages {
        let Some(text) = stage.platform.as_deref() else {
            continue;
        };
        let line = u32::try_from(stage.span.start_line).ok();
        if matches!(text, "$TARGETPLATFORM" | "${TARGETPLATFORM}") {
            lints.push(Event::Warning {
                rule: Some("RedundantTargetPlatform".to_owned()),
                message: format!(
                    "Setting platform to predefined {text} in FROM is redundant as this is the default behavior"
                ),
                line,
            });
        } else if !text.contains('$') {
            let Some(platform) = Platform::parse(text) else {
                continue;
            };
            let name = stage.name.as_deref().unwrap_or("");
            if !name.contains(&platform.os) && !name.contains(&platform.architecture) {
                lints.push(Event::Warning {
                    rule: Some("FromPlatformFlagConstDisallowed".to_owned()),
                    message: format!("FROM --platform flag should not use constant value {text:?}"),
                    line,
                });
            }
        }
    }
    lints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lints(text: &str) -> Vec<(Option<String>, String)> {
        let file = rbuild_dockerfile::parse(text).unwrap_or_else(|e| panic!("{e}"));
        platform_lints(&file)
            .into_iter()
            .filter_map(|e| match e {
                Event::Warning { rule, message, .. } => Some((rule, message)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn from_platform_lints_are_buildkits() {
        assert_eq!(
            lints("FROM --platform=$TARGETPLATFORM alpine\n"),
            [(
                Some("RedundantTargetPlatform".to_owned()),
                "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this \
                 is the default behavior"
                    .to_owned()
            )]
        );
        assert_eq!(
            lints("FROM --platform=linux/amd64 alpine AS build\n"),
            [(
                Some("FromPlatformFlagConstDisallowed".to_owned()),
                "FROM --platform flag should not use constant value \"linux/amd64\"".to_owned()
            )]
        );
        // The stage name says the platform, a variable is not a constant.
        assert!(lints("FROM --platform=linux/amd64 alpine AS build-amd64\n").is_empty());
        assert!(lints("FROM --platform=$BUILDPLATFORM alpine\n").is_empty());
        assert!(lints("FROM alpine\n").is_empty());
    }
}
