//! The entitlement check: a build may use what it must be allowed explicitly
//! ([`Entitlement`]s, `rbuild build --allow`) only when allowed, as BuildKit's `--allow`
//! grants them.

use rbuild_dockerfile::{BuildGraph, Instruction, NetworkMode, SecurityMode};

use crate::exec::Network;
use crate::solver::error::{BuildError, Location};
use crate::solver::request::Entitlement;

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
