//! `--chown`: a user and group, by name or number, for what a copy writes.

use std::path::Path;

use super::CopyError;
use super::dest::DestRoot;
use crate::privilege::{Privilege, gid_mapped, uid_mapped};

/// `--chown=user[:group]` as BuildKit's file operations read it
/// ([`crate::exec::resolve_owner`]): numbers as ids (a user id alone is the group id
/// too), names looked up in the destination's /etc/passwd and /etc/group, an unknown
/// name 0 (the user's group for an unknown group).
pub(crate) fn resolve(root: &DestRoot, spec: &str) -> Result<(u32, u32), CopyError> {
    let read = |name: &str| {
        root.read_text(Path::new(name)).map_err(CopyError::dest(
            "read",
            Path::new(name.trim_start_matches('/')),
        ))
    };
    let passwd = read("etc/passwd")?;
    let groups = read("etc/group")?;
    let refuse = |source| CopyError::Chown {
        spec: spec.to_owned(),
        source,
    };
    let (uid, gid) =
        crate::exec::resolve_owner(spec, passwd.as_deref(), groups.as_deref()).map_err(refuse)?;
    // The kernel's EINVAL for an id the user namespace does not map says nothing of why.
    // With one id mapped, the owner goes in the owner table instead (crate::fakeroot).
    if Privilege::current() == Privilege::NamespaceRoot
        && !crate::fakeroot::active()
        && !(uid_mapped(uid) && gid_mapped(gid))
    {
        return Err(refuse(crate::exec::ExecError::Unmapped { uid, gid }));
    }
    Ok((uid, gid))
}
