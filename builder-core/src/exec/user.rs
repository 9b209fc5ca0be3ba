//! Users and groups from an image's /etc/passwd and /etc/group, resolved the two ways
//! BuildKit resolves them.
//!
//! - [`resolve_user`]: the credentials a process runs with (`RUN`, `rbuild run`), as
//!   BuildKit's executor gets them (`executor/oci/user.go` over moby/sys/user's
//!   `GetExecUser`, then runc's `HOME`).
//! - [`resolve_owner`]: the owner of files a step writes (`COPY --chown`, `ADD --chown`,
//!   the directory `WORKDIR` makes under a `USER`), as BuildKit's file operations get it
//!   (`client/llb` `WithUser`, `solver/llbsolver/ops/user_linux.go`): a name that is not
//!   found means 0, never an error.

use super::ExecError;

/// The credentials a step runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// The process's group list: the primary group first (unless already listed), then
    /// the groups of /etc/group that list the user by name, when the user was given
    /// without a group.
    pub groups: Vec<u32>,
    /// `HOME` for the process: the home directory of the uid's /etc/passwd entry, `/`
    /// when it has none (runc's default).
    pub home: Option<String>,
}

impl Credentials {
    /// Root with group 0 only, home `/root`.
    pub fn root() -> Self {
        Credentials {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: Some("/root".to_owned()),
        }
    }
}

/// The largest user or group id moby/sys/user accepts (`maxID`).
const MAX_ID: i64 = (1 << 31) - 1;

/// Resolves `spec` (`user[:group]`, names or numbers; empty for no `USER`) to the
/// credentials of a process, given the contents of the image's passwd and group files
/// (`None`: the file is missing).
///
/// BuildKit's rules, each checked against docker 28.5:
/// - `uid:gid` with both numeric (or `root`) is taken as is, without reading any file;
/// - otherwise the user is looked up in /etc/passwd (a number as a uid, else a name):
///   a missing name is an error, a missing uid runs with group 0; a missing
///   /etc/passwd is an error;
/// - an explicit group is looked up in /etc/group (a number as a gid, else a name; a
///   missing name is an error) and then the process has that group only; without one,
///   the user's primary group and every group listing the user by name; /etc/group
///   must exist for either;
/// - the primary group is always in the group list;
/// - no `USER` at all is `0` resolved the same way, root with group 0 when that fails.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Credentials, ExecError> {
    let home_of = |uid: u32| {
        passwd
            .and_then(|text| passwd_entries(text).find(|e| e.uid == i64::from(uid)))
            .map_or_else(|| "/".to_owned(), |e| e.home.to_owned())
    };
    if spec.is_empty() {
        return Ok(
            resolve_user("0", passwd, group).unwrap_or_else(|_| Credentials {
                home: Some(home_of(0)),
                ..Credentials::root()
            }),
        );
    }
    let (uid, gid, extra) = match fast_path(spec) {
        // runc's range check holds for numbers given in USER too (`USER 2147483648:0`).
        Some((uid, gid)) => (
            checked_id(spec, uid.into())?,
            checked_id(spec, gid.into())?,
            Vec::new(),
        ),
        None => lookup(spec, passwd, group)?,
    };
    let mut groups = extra;
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    Ok(Credentials {
        uid,
        gid,
        groups,
        home: Some(home_of(uid)),
    })
}

/// `uid:gid` given as numbers (or `root`): BuildKit's `ParseUIDGID`, which reads no file.
fn fast_path(spec: &str) -> Option<(u32, u32)> {
    let (user, group) = spec.split_once(':')?;
    let id = |part: &str| match part {
        "root" => Some(0),
        _ if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => part.parse().ok(),
        _ => None,
    };
    Some((id(user)?, id(group)?))
}

/// moby/sys/user's `GetExecUser` with no defaults: (uid, gid, supplementary gids).
fn lookup(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32, Vec<u32>), ExecError> {
    let mut parts = spec.split(':');
    let user = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let passwd =
        passwd.ok_or_else(|| bad(spec, "the image has no /etc/passwd to look it up in"))?;
    let user_number = user.parse::<i64>().ok();
    let found = passwd_entries(passwd).find(|e| match (user, user_number) {
        ("", _) => e.uid == 0,
        (_, Some(n)) => e.uid == n,
        (name, None) => e.name == name,
    });
    let (uid, mut gid, matched) = match (found, user_number) {
        // Ids read from the image's files are checked as runc checks them: one out of
        // range (`4294967296` would wrap to root) fails the step, as in docker 28.5.
        (Some(e), _) => (
            checked_id(spec, e.uid)?,
            checked_id(spec, e.gid)?,
            Some(e.name),
        ),
        (None, _) if user.is_empty() => (0, 0, None),
        (None, Some(n)) => (checked_id(spec, n)?, 0, None),
        (None, None) => return Err(bad(spec, "no such user in /etc/passwd")),
    };
    let mut extra = Vec::new();
    if group_arg.is_empty() && matched.is_none() {
        return Ok((uid, gid, extra));
    }
    let group = group.ok_or_else(|| {
        bad(
            spec,
            "the image has no /etc/group to look up the user's groups in",
        )
    })?;
    let group_number = group_arg.parse::<i64>().ok();
    let mut entries = group_entries(group);
    if group_arg.is_empty() {
        let name = matched.unwrap_or("");
        extra = entries
            .filter(|g| g.members.clone().any(|m| m == name))
            .map(|g| checked_id(spec, g.gid))
            .collect::<Result<_, _>>()?;
    } else {
        let found = entries.find(|g| match group_number {
            Some(n) => g.gid == n,
            None => g.name == group_arg,
        });
        gid = match (found, group_number) {
            (Some(g), _) => checked_id(spec, g.gid)?,
            (None, Some(n)) => checked_id(spec, n)?,
            (None, None) => return Err(bad(spec, "no such group in /etc/group")),
        };
    }
    Ok((uid, gid, extra))
}

/// The owner of files a step writes for `spec` (`user[:group]`): a number (or `root`)
/// is an id, and a user id alone is also the group id; a name is looked up in the
/// image's files, and one that is not there (or a missing file) leaves 0 for a user
/// and the user's group for a group; an empty part means 0. As BuildKit's file
/// operations (`llb.WithUser`, `readUser`).
///
/// A negative number is refused, where BuildKit would pass it on as a huge id.
pub fn resolve_owner(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32), ExecError> {
    let (user, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match owner_id(spec, user)? {
        Some(id) => (id, id),
        None => passwd
            .and_then(|text| passwd_entries(text).find(|e| e.name == user))
            .map_or((0, 0), |e| (file_owner_id(e.uid), file_owner_id(e.gid))),
    };
    if let Some(part) = group_part {
        match owner_id(spec, part)? {
            Some(id) => gid = id,
            None => {
                if let Some(g) = group.and_then(|text| group_entries(text).find(|g| g.name == part))
                {
                    gid = file_owner_id(g.gid);
                }
            }
        }
    }
    Ok((uid, gid))
}

/// A part of an owner spec as an id: `root`, a number that fits Go's `int32` (larger
/// ones are names to BuildKit), or empty (id 0); `None` for a name.
fn owner_id(spec: &str, part: &str) -> Result<Option<u32>, ExecError> {
    match part {
        "" | "root" => Ok(Some(0)),
        _ => match part.parse::<i32>() {
            Ok(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| bad(spec, "user and group ids cannot be negative")),
            Err(_) => Ok(None),
        },
    }
}

/// An id from the image's files for a file owner: one outside `0..=2147483647` is 0, as
/// BuildKit's file operations give it (docker 28.5: `--chown=NAME` of a user with uid
/// `4294967296` or gid `4294967297` owns the file 0:0), never the id wrapped to 32 bits.
fn file_owner_id(n: i64) -> u32 {
    if (0..=MAX_ID).contains(&n) {
        n as u32
    } else {
        0
    }
}

fn checked_id(spec: &str, n: i64) -> Result<u32, ExecError> {
    if (0..=MAX_ID).contains(&n) {
        Ok(n as u32)
    } else {
        Err(bad(
            spec,
            "user and group ids must be between 0 and 2147483647",
        ))
    }
}

/// One /etc/passwd line.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: i64,
    gid: i64,
    home: &'a str,
}

/// One /etc/group line.
struct GroupEntry<'a> {
    name: &'a str,
    gid: i64,
    members: std::str::Split<'a, char>,
}

/// The entries of a passwd file as moby/sys/user reads them: blank lines skipped,
/// missing fields empty, a number that does not parse 0.
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut f = line.split(':');
            let name = f.next().unwrap_or("");
            let _password = f.next();
            let uid = number(f.next());
            let gid = number(f.next());
            let _gecos = f.next();
            let home = f.next().unwrap_or("");
            PasswdEntry {
                name,
                uid,
                gid,
                home,
            }
        })
}

/// The entries of a group file, read as [`passwd_entries`] reads passwd.
fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut f = line.split(':');
            let name = f.next().unwrap_or("");
            let _password = f.next();
            let gid = number(f.next());
            let members = f.next().unwrap_or("").split(',');
            GroupEntry { name, gid, members }
        })
}

/// Go's `strconv.Atoi` with the error ignored.
fn number(field: Option<&str>) -> i64 {
    field.and_then(|f| f.parse().ok()).unwrap_or(0)
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

    fn groups(spec: &str) -> (u32, u32, Vec<u32>) {
        let c = resolve_user(spec, Some(PASSWD), Some(GROUP)).unwrap();
        (c.uid, c.gid, c.groups)
    }

    /// An id of the image's files beyond 2^31-1 must not wrap: `4294967296` is root's 0
    /// in 32 bits. A step's user fails as runc fails it; a file owner is 0 as BuildKit's.
    #[test]
    fn out_of_range_ids_in_the_files_never_wrap() {
        let passwd = "big:x:4294967296:1::/big:/bin/sh\nneg:x:-5:1::/:/bin/sh\n\
                      ok:x:7:4294967297::/:/bin/sh\nweb:x:1000:1000::/:/bin/sh\n";
        let group = "huge:x:4294967296:web\nbigg:x:4294967297:\nweb:x:1000:\n";
        for spec in [
            "big",
            "neg",
            "ok",
            "web",
            "web:bigg",
            "4294967296",
            "2147483648:0",
            "0:4294967295",
        ] {
            assert!(
                resolve_user(spec, Some(passwd), Some(group)).is_err(),
                "{spec} resolved"
            );
        }
        assert_eq!(
            resolve_owner("big:bigg", Some(passwd), Some(group)).unwrap(),
            (0, 0)
        );
        assert_eq!(
            resolve_owner("ok", Some(passwd), Some(group)).unwrap(),
            (7, 0)
        );
        let home = resolve_user("0:0", Some(passwd), Some(group)).unwrap().home;
        assert_eq!(home.as_deref(), Some("/"), "uid 0 took big's entry");
    }

    #[test]
    fn named_user_gets_primary_and_supplementary_groups() {
        let c = resolve_user("web", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.groups, vec![1000, 29, 44]);
        assert_eq!(c.home.as_deref(), Some("/home/web"));
        // A uid that has an entry is that user, supplementary groups included.
        assert_eq!(groups("1000"), (1000, 1000, vec![1000, 29, 44]));
    }

    /// issue 14 bug 6: an explicit group, by name or number, means no supplementary
    /// groups (BuildKit's `id -G` prints only it).
    #[test]
    fn explicit_group_means_no_supplementary_groups() {
        assert_eq!(groups("web:web"), (1000, 1000, vec![1000]));
        assert_eq!(groups("1000:1000"), (1000, 1000, vec![1000]));
        assert_eq!(groups("web:29"), (1000, 29, vec![29]));
        assert_eq!(groups("1000:video"), (1000, 44, vec![44]));
        assert_eq!(groups("root:audio"), (0, 29, vec![29]));
        assert_eq!(groups("4242:audio"), (4242, 29, vec![29]));
        assert_eq!(groups("web:7"), (1000, 7, vec![7]));
    }

    #[test]
    fn unknown_uid_runs_with_group_zero_and_home_slash() {
        let c = resolve_user("2000", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((c.uid, c.gid, c.groups), (2000, 0, vec![0]));
        assert_eq!(c.home.as_deref(), Some("/"));
        let c = resolve_user("1000:1000", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c.home.as_deref(), Some("/home/web"));
    }

    #[test]
    fn numeric_pair_reads_no_file() {
        let c = resolve_user("2000:2001", None, None).unwrap();
        assert_eq!((c.uid, c.gid, c.groups), (2000, 2001, vec![2001]));
        assert_eq!(c.home.as_deref(), Some("/"));
    }

    #[test]
    fn unknown_names_and_missing_files_are_errors() {
        assert!(resolve_user("nobody", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve_user("web:nogroup", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve_user("web", None, None).is_err());
        // Even a number needs /etc/passwd unless a numeric group comes with it.
        assert!(resolve_user("1000", None, Some(GROUP)).is_err());
        // A matched user needs /etc/group for its groups.
        assert!(resolve_user("web", Some(PASSWD), None).is_err());
        assert!(resolve_user("2000", Some(PASSWD), None).is_ok());
        assert!(resolve_user("-1", Some(PASSWD), Some(GROUP)).is_err());
    }

    #[test]
    fn no_user_is_root_and_falls_back_when_files_are_missing() {
        assert_eq!(groups(""), (0, 0, vec![0]));
        let c = resolve_user("", None, None).unwrap();
        assert_eq!((c.uid, c.gid, c.groups), (0, 0, vec![0]));
        assert_eq!(c.home.as_deref(), Some("/"));
    }

    /// issue 14 bug 9: file owners never fail on an unknown name.
    #[test]
    fn owner_names_not_found_are_zero() {
        let owner = |spec| resolve_owner(spec, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(owner("nosuchuser"), (0, 0));
        assert_eq!(owner("web"), (1000, 1000));
        assert_eq!(owner("web:nosuchgroup"), (1000, 1000));
        assert_eq!(owner("web:audio"), (1000, 29));
        assert_eq!(owner("1234"), (1234, 1234));
        assert_eq!(owner("root"), (0, 0));
        assert_eq!(owner(":55"), (0, 55));
        assert_eq!(owner("web:"), (1000, 0));
        assert_eq!(owner("nosuch:audio"), (0, 29));
        assert_eq!(resolve_owner("web", None, None).unwrap(), (0, 0));
        assert!(resolve_owner("-5", None, None).is_err());
    }
}
