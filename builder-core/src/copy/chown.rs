//! `--chown`: a user and group, by name or number, for what a copy writes.

use std::path::Path;

use super::CopyError;
use super::dest::DestRoot;

/// `--chown=user[:group]` as BuildKit reads it: a numeric user alone gets the same
/// number as its group; a name is looked up in the destination's /etc/passwd (its
/// primary group) and a group name in /etc/group.
pub(crate) fn resolve(root: &DestRoot, spec: &str) -> Result<(u32, u32), CopyError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |name: &str| {
        root.read_text(Path::new(name)).map_err(CopyError::dest(
            "read",
            Path::new(name.trim_start_matches('/')),
        ))
    };
    let passwd = read("etc/passwd")?;
    let groups = read("etc/group")?;
    let lookup = |query: &str| {
        crate::resolve_user(query, passwd.as_deref(), groups.as_deref()).map_err(|source| {
            CopyError::Chown {
                spec: spec.to_owned(),
                source,
            }
        })
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => {
            let c = lookup(user)?;
            (c.uid, c.gid)
        }
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&format!("0:{g}"))?.gid,
        };
    }
    Ok((uid, gid))
}
