//! Entitlements: what a build must be allowed explicitly (`rbuild build --allow`), as
//! BuildKit's `--allow` grants them.

use std::fmt;
use std::str::FromStr;

use rbuild_dockerfile::{BuildGraph, Instruction, NetworkMode, SecurityMode};

use super::error::{BuildError, Location};
use crate::exec::Network;

/// Something a Dockerfile may ask for only when the build allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entitlement {
    /// `security.insecure`: `RUN --security=insecure` steps run with every capability
    /// and no seccomp filter.
    SecurityInsecure,
    /// `network.host`: steps run on the host's network unconfined (`--network=host`,
    /// `RUN --network=host`), `CAP_NET_RAW` and the host's abstract unix sockets
    /// included; without it they get the confined default network.
    NetworkHost,
}

impl Entitlement {
    /// The name `--allow` takes.
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::SecurityInsecure => "security.insecure",
            Entitlement::NetworkHost => "network.host",
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
#[error("unknown entitlement {0:?} (known: security.insecure, network.host)")]
pub struct UnknownEntitlement(pub String);

impl FromStr for Entitlement {
    type Err = UnknownEntitlement;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            "network.host" => Ok(Entitlement::NetworkHost),
            other => Err(UnknownEntitlement(other.to_owned())),
        }
    }
}

/// Refuses a build network or the first step of `graph` that needs an entitlement
/// `allowed` lacks; a step's error names its line (`Dockerfile:3:1: RUN
/// --security=insecure is not allowed: ...`).
pub(crate) fn check(
    graph: &BuildGraph,
    allowed: &[Entitlement],
    network: Network,
    file_name: &str,
    text: &str,
) -> Result<(), BuildError> {
    if network == Network::Host && !allowed.contains(&Entitlement::NetworkHost) {
        return Err(BuildError::NotEntitled {
            what: "--network=host",
            entitlement: Entitlement::NetworkHost,
            at: None,
        });
    }
    for step in &graph.steps {
        let Instruction::Run(run) = &step.instruction else {
            continue;
        };
        let refused = |what, entitlement| BuildError::NotEntitled {
            what,
            entitlement,
            at: Some(Location::new(file_name, text, Some(step.span))),
        };
        if run.security == Some(SecurityMode::Insecure)
            && !allowed.contains(&Entitlement::SecurityInsecure)
        {
            return Err(refused(
                "RUN --security=insecure",
                Entitlement::SecurityInsecure,
            ));
        }
        if run.network == Some(NetworkMode::Host) && !allowed.contains(&Entitlement::NetworkHost) {
            return Err(refused("RUN --network=host", Entitlement::NetworkHost));
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
        assert_eq!(
            "network.host".parse::<Entitlement>(),
            Ok(Entitlement::NetworkHost)
        );
        assert_eq!(Entitlement::NetworkHost.to_string(), "network.host");
        assert!("network.magic".parse::<Entitlement>().is_err());
    }
}
