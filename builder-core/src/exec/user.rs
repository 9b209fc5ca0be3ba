//! Resolving a `USER` value through the image's /etc/passwd and /etc/group.

use super::ExecError;

/// The credentials a step runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids: the groups of /etc/group that list the user by name (the
    /// primary group only when it lists the user too), as runc's user lookup gives
    /// them to BuildKit's steps.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, if the user is listed there.
    pub home: Option<String>,
}

impl Credentials {
    /// Root with no supplementary groups.
    pub fn root() -> Self {
        Credentials {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: Some("/root".to_owned()),
        }
    }
}

/// Resolves `spec` (`user[:group]`, names or numbers) against the contents of the image's
/// passwd and group files (either may be absent).
///
/// As BuildKit does: a numeric user missing from passwd runs with group 0 and no
/// supplementary groups; a named user or group that is missing is an error; supplementary
/// groups are the groups listing the user by name (so `USER nobody` has none: `id`
/// prints no `groups=` in a `docker build` step, checked by the differential suite).
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Credentials, ExecError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd_entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let group_entries: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let found = passwd_entries.iter().find(|f| match user.parse::<u32>() {
        Ok(uid) => f[2].parse::<u32>() == Ok(uid),
        Err(_) => f[0] == user,
    });
    let (uid, mut gid, name, home) = match (found, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| bad(spec, "passwd entry has a bad uid"))?,
            f[3].parse::<u32>()
                .map_err(|_| bad(spec, "passwd entry has a bad gid"))?,
            Some(f[0]),
            f.get(5).map(|h| (*h).to_owned()),
        ),
        (None, Ok(uid)) => (uid, 0, None, None),
        (None, Err(_)) => return Err(bad(spec, "no such user in /etc/passwd")),
    };
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| bad(spec, "no such group in /etc/group"))?,
        };
    }
    let mut groups = Vec::new();
    if let Some(name) = name {
        for f in &group_entries {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

fn bad(spec: &str, reason: &'static str) -> ExecError {
    ExecError::User {
        spec: spec.to_owned(),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nweb:x:1000:\naudio:x:29:web\nvideo:x:44:other,web\n";

    #[test]
    fn named_user_gets_primary_and_supplementary_groups() {
        let c = resolve_user("web", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.groups, vec![29, 44]);
        assert_eq!(c.home.as_deref(), Some("/home/web"));
    }

    #[test]
    fn numbers_and_explicit_groups() {
        let c = resolve_user("4242:audio", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((c.uid, c.gid, c.groups.clone()), (4242, 29, vec![]));
        let c = resolve_user("web:7", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve_user("nobody", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve_user("web:nogroup", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve_user("web", None, None).is_err());
    }
}
