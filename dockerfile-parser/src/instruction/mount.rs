//! `RUN --mount=type=...,key=value` specifications, read and checked as BuildKit's
//! `runmount.go` reads them (comma-separated fields in CSV quoting, keys
//! case-insensitive), in its two passes: when the Dockerfile is read, only the CSV
//! quoting and `from=` are looked at ([`MountSpec`]); every value, `type=` included, is
//! expanded and checked when the stage is lowered ([`parse_mount`]), so an error in a
//! stage the target does not need is no error.

use serde::Serialize;

use crate::error::Span;

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A read-only (by default) view of the context or another stage.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// How a cache mount is shared between concurrent builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent writers share the directory (the default).
    Shared,
    /// Each concurrent writer gets its own directory.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A `--mount` value as the Dockerfile gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    /// The value as written, unexpanded.
    pub spec: String,
    /// `from=` as written (a variable is refused): the stage or image it mounts, known
    /// before anything is expanded.
    pub from: Option<String>,
    /// The `--mount` flag.
    pub span: Span,
}

/// One `--mount` of a `RUN`, its values expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `type=` (default `bind`).
    pub mount_type: MountType,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `from=`: a stage or image to take the source from.
    pub from: Option<String>,
    /// `id=`: cache id, secret id or ssh id.
    pub id: Option<String>,
    /// `sharing=` (cache only; `shared` when not given for a cache mount).
    pub sharing: Option<CacheSharing>,
    /// Read-only: explicit `ro`/`rw`, else true for bind, secret and ssh mounts.
    pub read_only: bool,
    /// `required=` (secret and ssh only).
    pub required: bool,
    /// `mode=` in octal, as written (secret, ssh, cache).
    pub mode: Option<String>,
    /// `uid=`, as written (secret, ssh, cache).
    pub uid: Option<String>,
    /// `gid=`, as written (secret, ssh, cache).
    pub gid: Option<String>,
    /// `size=` (tmpfs), as written.
    pub size: Option<String>,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
}

/// Splits a CSV record: fields separated by `,`, `"` quotes with `""` for a quote.
fn csv_fields(spec: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = spec.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => loop {
                match chars.next() {
                    None => return Err("unterminated quote".to_owned()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => {
                        at_start = false;
                        break;
                    }
                    Some(other) => field.push(other),
                }
            },
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    fields.push(field);
    Ok(fields)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A `size=` value: a number with an optional binary unit (`k`, `m`, `g`, `t`, `p`,
/// optionally followed by `b`/`ib`), as docker's `RAMInBytes` accepts.
fn valid_size(value: &str) -> bool {
    let number_len = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(number_len);
    number.parse::<f64>().is_ok()
        && matches!(
            unit.to_ascii_lowercase().as_str(),
            "" | "b"
                | "k"
                | "kb"
                | "kib"
                | "m"
                | "mb"
                | "mib"
                | "g"
                | "gb"
                | "gib"
                | "t"
                | "tb"
                | "tib"
                | "p"
                | "pb"
                | "pib"
        )
}

/// Why a `--mount` value was refused when it was lowered.
#[derive(Debug)]
pub(crate) enum MountError<E> {
    /// A value failed to expand.
    Expand(E),
    /// The mount is invalid; the reason.
    Invalid(String),
}

impl<E> From<String> for MountError<E> {
    fn from(reason: String) -> MountError<E> {
        MountError::Invalid(reason)
    }
}

/// Reads a `--mount` value as BuildKit does when it reads the Dockerfile: the CSV
/// quoting, and `from=`, which may not hold a variable (BuildKit names the stage a step
/// mounts before it expands anything; a `$` at the very end is no variable). Returns
/// the `from=` value (the last one given).
pub(super) fn read_mount_spec(spec: &str) -> Result<Option<String>, String> {
    let mut from = None;
    for field in csv_fields(spec)? {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        if key.eq_ignore_ascii_case("from") {
            if value.find('$').is_some_and(|i| i + 1 < value.len()) {
                return Err(
                    "'from' doesn't support variable expansion, define alias stage instead"
                        .to_owned(),
                );
            }
            from = Some(value.to_owned());
        }
    }
    Ok(from)
}

/// Go's `strconv.ParseUint(value, radix, 32)`: digits only, no sign.
fn parse_u32(value: &str, radix: u32) -> Option<u32> {
    if value.starts_with('+') {
        return None;
    }
    u32::from_str_radix(value, radix).ok()
}

/// Types one `--mount` value, each `key=value` value expanded by `expand` first (the
/// keys and bare flags such as `ro` are taken as written), field after field as
/// BuildKit's `parseMount` with an expander does; `from=` is given as written.
pub(crate) fn parse_mount<E>(
    spec: &MountSpec,
    mut expand: impl FnMut(&str) -> Result<String, E>,
) -> Result<Mount, MountError<E>> {
    let mut mount = Mount {
        mount_type: MountType::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        sharing: None,
        read_only: false,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut read_only: Option<bool> = None;
    let is_secret_like = |m: &Mount| matches!(m.mount_type, MountType::Secret | MountType::Ssh);
    for field in csv_fields(&spec.spec)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => read_only = Some(true),
                "readwrite" | "rw" => read_only = Some(false),
                "required" if is_secret_like(&mount) => mount.required = true,
                "required" => {
                    return Err(MountError::Invalid(format!(
                        "unexpected key 'required' for mount type '{}'",
                        type_name(mount.mount_type)
                    )));
                }
                _ => {
                    return Err(MountError::Invalid(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
            continue;
        };
        let value = if key == "from" {
            value.to_owned()
        } else {
            expand(value).map_err(MountError::Expand)?
        };
        let flag = |v: &str| parse_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
        match key.as_str() {
            "type" => {
                mount.mount_type = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(format!("unsupported mount type {value:?}").into()),
                }
            }
            "from" => mount.from = Some(value),
            "source" | "src" => mount.source = Some(value),
            "target" | "dst" | "destination" => mount.target = Some(value),
            "readonly" | "ro" => read_only = Some(flag(&value)?),
            "readwrite" | "rw" => read_only = Some(!flag(&value)?),
            "required" if is_secret_like(&mount) => mount.required = flag(&value)?,
            "size" if mount.mount_type == MountType::Tmpfs => {
                if !valid_size(&value) {
                    return Err(format!("invalid value for size: {value}").into());
                }
                mount.size = Some(value);
            }
            "required" | "size" => {
                return Err(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    type_name(mount.mount_type)
                )
                .into());
            }
            "id" => mount.id = Some(value),
            "sharing" => {
                mount.sharing = match value.to_ascii_lowercase().as_str() {
                    "shared" => Some(CacheSharing::Shared),
                    "private" => Some(CacheSharing::Private),
                    "locked" => Some(CacheSharing::Locked),
                    _ => return Err(format!("unsupported sharing value {value:?}").into()),
                }
            }
            "mode" => {
                if parse_u32(&value, 8).is_none() {
                    return Err(format!("invalid value {value} for mode").into());
                }
                mount.mode = Some(value);
            }
            "uid" | "gid" => {
                if parse_u32(&value, 10).is_none() {
                    return Err(format!("invalid value {value} for {key}").into());
                }
                if key == "uid" {
                    mount.uid = Some(value);
                } else {
                    mount.gid = Some(value);
                }
            }
            // Taken for every type, used by secrets only.
            "env" => mount.env = Some(value),
            _ => return Err(format!("unexpected key '{key}' in '{field}'").into()),
        }
    }
    check_mount(&mut mount, read_only)?;
    Ok(mount)
}

fn type_name(mount_type: MountType) -> &'static str {
    match mount_type {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// The rules that look at the whole mount, after every field is read.
fn check_mount(mount: &mut Mount, read_only: Option<bool>) -> Result<(), String> {
    let kind = type_name(mount.mount_type);
    let file_info_allowed = matches!(
        mount.mount_type,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (name, value) in [
            ("mode", &mount.mode),
            ("uid", &mount.uid),
            ("gid", &mount.gid),
        ] {
            if value.is_some() {
                return Err(format!("{name} not allowed for {kind:?} type mounts"));
            }
        }
    }
    mount.read_only = read_only.unwrap_or(!matches!(
        mount.mount_type,
        MountType::Cache | MountType::Tmpfs
    ));
    match mount.mount_type {
        MountType::Cache => {
            mount.sharing.get_or_insert(CacheSharing::Shared);
        }
        _ if mount.sharing.is_some() => {
            return Err(format!("invalid cache sharing set for {kind} mount"));
        }
        _ => {}
    }
    match mount.mount_type {
        MountType::Secret => {
            if mount.from.is_some() {
                return Err("secret mount should not have a from".to_owned());
            }
            if mount.source.is_some() && mount.id.is_some() {
                return Err("both source and id can't be set".to_owned());
            }
            if mount.source.is_none()
                && mount.target.is_none()
                && mount.id.is_none()
                && mount.env.is_none()
            {
                return Err(
                    "invalid secret mount. one of source, target, id or env required".to_owned(),
                );
            }
        }
        MountType::Ssh => {
            if mount.from.is_some() {
                return Err("ssh mount should not have a from".to_owned());
            }
        }
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            if mount.target.is_none() {
                return Err(format!("{kind} mount requires a target"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Types `spec` with its values as they are (no variables).
    fn parse(spec: &str) -> Result<Mount, String> {
        let spec = MountSpec {
            spec: spec.to_owned(),
            from: None,
            span: Span::default(),
        };
        parse_mount(&spec, |v| Ok::<_, String>(v.to_owned())).map_err(|e| match e {
            MountError::Expand(e) | MountError::Invalid(e) => e,
        })
    }

    #[test]
    fn mount_defaults_and_keys() {
        let m = parse("type=cache,target=/root/.cache,id=pip").unwrap();
        assert_eq!(m.mount_type, MountType::Cache);
        assert_eq!(m.sharing, Some(CacheSharing::Shared));
        assert!(!m.read_only);
        let m = parse("target=/src,from=build,rw").unwrap();
        assert_eq!(m.mount_type, MountType::Bind);
        assert!(!m.read_only);
        let m = parse("type=secret,id=tok,required").unwrap();
        assert!(m.required && m.read_only);
        let m = parse("\"type=tmpfs\",dst=/t,size=64m").unwrap();
        assert_eq!(m.size.as_deref(), Some("64m"));
        assert!(parse("type=ssh").is_ok());
        let m = parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        // BuildKit takes `env=` for every type.
        assert!(parse("type=cache,target=/c,env=X").is_ok());
    }

    #[test]
    fn values_are_expanded_keys_and_from_are_not() {
        let spec = MountSpec {
            spec: "type=$T,target=$D,sharing=$S,ro=$B,from=x$".to_owned(),
            from: Some("x$".to_owned()),
            span: Span::default(),
        };
        let m = parse_mount(&spec, |v| {
            Ok::<_, ()>(match v {
                "$T" => "cache".to_owned(),
                "$D" => "/d".to_owned(),
                "$S" => "locked".to_owned(),
                "$B" => "true".to_owned(),
                other => format!("<{other}>"),
            })
        })
        .unwrap();
        assert_eq!(m.mount_type, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/d"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert!(m.read_only);
        assert_eq!(m.from.as_deref(), Some("x$"));
        let failed = parse_mount(&spec, |_| Err::<String, _>("no"));
        assert!(matches!(failed, Err(MountError::Expand("no"))));
    }

    #[test]
    fn reading_the_dockerfile_checks_only_quotes_and_from() {
        assert_eq!(
            read_mount_spec("type=nfs,bogus,from=base"),
            Ok(Some("base".to_owned()))
        );
        assert_eq!(
            read_mount_spec("type=$T,from=a$"),
            Ok(Some("a$".to_owned()))
        );
        assert_eq!(read_mount_spec("target=/x"), Ok(None));
        assert_eq!(
            read_mount_spec("from=$V,target=/m"),
            Err("'from' doesn't support variable expansion, define alias stage instead".to_owned())
        );
        assert_eq!(
            read_mount_spec("\"type=cache"),
            Err("unterminated quote".to_owned())
        );
    }

    #[test]
    fn mount_errors() {
        for (spec, message) in [
            ("type=nfs,target=/x", "unsupported mount type \"nfs\""),
            (
                "type=cache,target=/x,colour=red",
                "unexpected key 'colour' in 'colour=red'",
            ),
            (
                "type=cache,target=/x,sharing=all",
                "unsupported sharing value \"all\"",
            ),
            ("type=cache,target=/x,mode=9", "invalid value 9 for mode"),
            ("type=cache,target=/x,uid=+1", "invalid value +1 for uid"),
            (
                "type=cache,target=/x,size=1m",
                "unexpected key 'size' for mount type 'cache'",
            ),
            (
                "type=bind,target=/x,uid=1",
                "uid not allowed for \"bind\" type mounts",
            ),
            ("type=bind", "bind mount requires a target"),
            (
                "type=bind,target=/x,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "target=/x,bogus",
                "invalid field 'bogus' must be a key=value pair",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target, id or env required",
            ),
            (
                "type=tmpfs,target=/x,size=lots",
                "invalid value for size: lots",
            ),
            (
                "type=bind,target=/x,ro=maybe",
                "invalid value for ro: maybe",
            ),
        ] {
            assert_eq!(parse(spec).unwrap_err(), message, "{spec}");
        }
    }
}
