//! Entitlements: what a build must be allowed explicitly (`rbuild build --allow`), as
//! BuildKit's `--allow` grants them.

use std::fmt;
use std::str::FromStr;

use rbuild_dockerfile::{BuildGraph, Instruction, SecurityMode};

use super::error::{BuildError, render_at};

/// Something a Dockerfile may ask for only when the build allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entitlement {
    /// `security.insecure`: `RUN --security=insecure` steps run with every capability
    /// and no seccomp filter.
    SecurityInsecure,
}

impl Entitlement {
    /// The name `--allow` takes.
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::SecurityInsecure => "security.insecure",
        }
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--allow` value that names no entitlement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entitlement {0:?} (known: security.insecure)")]
pub struct UnknownEntitlement(pub String);

impl FromStr for Entitlement {
    type Err = UnknownEntitlement;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            other => Err(UnknownEntitlement(other.to_owned())),
        }
    }
}

/// Refuses the first step of `graph` that needs an entitlement `allowed` lacks; the
/// error names its line (`Dockerfile:3:1: RUN --security=insecure is not allowed: ...`).
pub(crate) fn check(
    graph: &BuildGraph,
    allowed: &[Entitlement],
    file_name: &str,
    text: &str,
) -> Result<(), BuildError> {
    for step in &graph.steps {
        let Instruction::Run(run) = &step.instruction else {
            continue;
        };
        if run.security == Some(SecurityMode::Insecure)
            && !allowed.contains(&Entitlement::SecurityInsecure)
        {
            return Err(BuildError::Dockerfile(render_at(
                file_name,
                text,
                &step.span,
                "RUN --security=insecure is not allowed: pass --allow security.insecure",
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        assert_eq!(
            "security.insecure".parse::<Entitlement>(),
            Ok(Entitlement::SecurityInsecure)
        );
        assert_eq!(
            Entitlement::SecurityInsecure.to_string(),
            "security.insecure"
        );
        assert!("network.host".parse::<Entitlement>().is_err());
    }
}
