//! The build arguments a build has without an `ARG`: the proxy variables, which reach
//! every `RUN`, and the automatic ones (platforms, `TARGETSTAGE`) that start the global
//! scope, with the `ARG`s before the first `FROM`.

use std::collections::BTreeSet;

use super::LowerOptions;
use crate::error::Error;
use crate::instruction::Dockerfile;
use crate::shell::{Environment, ShellLexer};

/// Build arguments every build has without an `ARG`: given with `--build-arg` (the
/// name in any case), they reach every `RUN` in both cases, after its other variables,
/// and never the image config or history. Docker's documentation, "Predefined ARGs";
/// BuildKit's `proxyEnvFromBuildArgs` and exec op `proxyEnvList`.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The proxy variables of a `RUN` step: for each of `HTTP_PROXY`, `HTTPS_PROXY`,
/// `FTP_PROXY`, `NO_PROXY` and `ALL_PROXY`, the `--build-arg` of that name in any case
/// (the last one given) with a non-empty value, set upper and lower case.
pub(super) fn proxy_env(build_args: &Environment) -> Environment {
    let mut env = Environment::new();
    for pair in PROXY_ARGS.chunks(2) {
        let [upper, lower] = pair else { continue };
        let value = build_args
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(upper))
            .map(|(_, value)| value)
            .last()
            .filter(|value| !value.is_empty());
        if let Some(value) = value {
            env.set(*upper, value);
            env.set(*lower, value);
        }
    }
    env
}

/// Whether a build argument is one of the proxy variables, in any case.
pub(super) fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Whether a global argument is one every build defines (BuildKit's `defaultArgs`:
/// the build and target platform's parts, and `TARGETSTAGE`).
pub(super) fn is_automatic_arg(name: &str) -> bool {
    let rest = name
        .strip_prefix("TARGET")
        .or_else(|| name.strip_prefix("BUILD"));
    name == "TARGETSTAGE"
        || matches!(
            rest,
            Some("PLATFORM" | "OS" | "OSVERSION" | "ARCH" | "VARIANT")
        )
}

/// The global scope: the automatic arguments, then the `ARG`s before the first `FROM`,
/// each default expanded with the values before it; `--build-arg` overrides both.
pub(super) fn global_args(
    file: &Dockerfile,
    options: &LowerOptions,
    lexer: ShellLexer,
    consumed: &mut BTreeSet<String>,
) -> Result<Environment, Error> {
    let mut globals = Environment::new();
    let mut automatic = |name: String, value: String| {
        let value = options.build_args.get(&name).map_or(value, str::to_owned);
        consumed.insert(name.clone());
        globals.set(name, value);
    };
    // BuildKit's `defaultArgs`, in its order. The OS versions are empty on Linux.
    for (prefix, platform) in [
        ("BUILD", &options.build_platform),
        ("TARGET", &options.target_platform),
    ] {
        for (suffix, value) in [
            ("PLATFORM", platform.to_string()),
            ("OS", platform.os.clone()),
            ("OSVERSION", String::new()),
            ("ARCH", platform.architecture.clone()),
            ("VARIANT", platform.variant.clone()),
        ] {
            automatic(format!("{prefix}{suffix}"), value);
        }
    }
    // The stage being built: `--target` as given, else the last stage's name, else
    // `default`.
    let target_stage = options
        .target
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| file.stages.last().and_then(|s| s.name.clone()))
        .unwrap_or_else(|| "default".to_owned());
    automatic("TARGETSTAGE".to_owned(), target_stage);
    for arg in &file.global_args {
        for def in &arg.args {
            consumed.insert(def.name.clone());
            let value = match (options.build_args.get(&def.name), &def.default) {
                (Some(value), _) => Some(value.to_owned()),
                (None, Some(default)) => Some(
                    lexer
                        .expand_word(default, &globals)
                        .map_err(|e| Error::from((e, arg.span)))?,
                ),
                // A bare `ARG NAME` keeps the value NAME has (an automatic argument's,
                // an earlier `ARG NAME=x`'s), as BuildKit's `buildMetaArgs` does.
                (None, None) => None,
            };
            if let Some(value) = value {
                globals.set(def.name.clone(), value);
            }
        }
    }
    Ok(globals)
}
