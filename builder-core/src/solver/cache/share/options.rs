//! The `--cache-to` / `--cache-from` syntax of `docker buildx build`:
//! `type=registry,ref=R,mode=max`, `type=local,dest=DIR`, or a bare reference.

use std::path::PathBuf;
use std::str::FromStr;

use crate::store::ImageName;

/// The tag a local cache directory's entry gets when none is given (BuildKit's default).
pub const DEFAULT_LOCAL_TAG: &str = "latest";

/// Which steps a cache export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the exported image: the target stage and the stages it is built on
    /// (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran or found in a cache.
    Max,
}

/// Where a shared cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A manifest in a registry, `type=registry,ref=REG/REPO:TAG`.
    Registry(ImageName),
    /// An OCI image layout directory (`type=local,dest=DIR` / `src=DIR`), the cache
    /// manifest named `tag` in its `index.json`.
    Local {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the cache manifest.
        tag: String,
    },
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(name) => write!(f, "{name}"),
            CacheLocation::Local { dir, tag } => write!(f, "{}:{tag}", dir.display()),
        }
    }
}

/// `--cache-to`: where the build's cache entries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// The registry reference or directory.
    pub location: CacheLocation,
    /// Which steps go.
    pub mode: CacheMode,
    /// `ignore-error=true`: a failed export is a warning instead of a failed build.
    pub ignore_error: bool,
}

/// `--cache-from`: a cache whose entries the build may use as its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    /// The registry reference or directory.
    pub location: CacheLocation,
}

/// A `--cache-to` or `--cache-from` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{reason} in {spec:?}")]
pub struct InvalidCacheOption {
    /// The value given.
    pub spec: String,
    /// What is wrong, lower case: `unknown type "s3"`.
    pub reason: String,
}

/// The attributes of one value, split and checked for the common mistakes.
struct Attributes<'a> {
    spec: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Attributes<'a> {
    fn parse(spec: &'a str) -> Result<Self, InvalidCacheOption> {
        let mut pairs = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad(spec, format!("attribute {part:?} has no value")));
            };
            pairs.push((k.trim(), v.trim()));
        }
        Ok(Attributes { spec, pairs })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|p| p.1)
    }

    /// The first attribute not in `known`.
    fn check_known(&self, known: &[&str]) -> Result<(), InvalidCacheOption> {
        match self.pairs.iter().find(|(k, _)| !known.contains(k)) {
            Some((k, _)) => Err(bad(self.spec, format!("unknown attribute {k:?}"))),
            None => Ok(()),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, InvalidCacheOption> {
        self.get(key)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(bad(
                    self.spec,
                    format!("{key} must be true or false, not {other:?}"),
                )),
            })
            .transpose()
    }

    /// `type=`, `registry` when absent and a `ref=` is given (as buildx does).
    fn kind(&self) -> Result<&'a str, InvalidCacheOption> {
        match self.get("type") {
            Some(t) => Ok(t),
            None if self.get("ref").is_some() => Ok("registry"),
            None => Err(bad(self.spec, "missing type".to_owned())),
        }
    }

    fn location(&self, dir_key: &str) -> Result<CacheLocation, InvalidCacheOption> {
        match self.kind()? {
            "registry" => {
                let reference = self
                    .get("ref")
                    .ok_or_else(|| bad(self.spec, "type=registry needs ref=".to_owned()))?;
                Ok(CacheLocation::Registry(registry_ref(self.spec, reference)?))
            }
            "local" => {
                let dir = self
                    .get(dir_key)
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| bad(self.spec, format!("type=local needs {dir_key}=")))?;
                Ok(CacheLocation::Local {
                    dir: PathBuf::from(dir),
                    tag: self.get("tag").unwrap_or(DEFAULT_LOCAL_TAG).to_owned(),
                })
            }
            other => Err(bad(self.spec, format!("unknown type {other:?}"))),
        }
    }

    /// buildx's `oci-mediatypes` and `image-manifest` describe what rbuild always
    /// writes (an OCI image manifest); asking for the opposite is refused.
    fn check_always_true(&self) -> Result<(), InvalidCacheOption> {
        for key in ["oci-mediatypes", "image-manifest"] {
            if self.flag(key)? == Some(false) {
                return Err(bad(
                    self.spec,
                    format!(
                        "{key}=false is not supported: the cache is always an OCI image manifest"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn bad(spec: &str, reason: String) -> InvalidCacheOption {
    InvalidCacheOption {
        spec: spec.to_owned(),
        reason,
    }
}

fn registry_ref(spec: &str, reference: &str) -> Result<ImageName, InvalidCacheOption> {
    reference
        .parse::<ImageName>()
        .map_err(|e| bad(spec, format!("invalid ref {reference:?}: {e}")))
}

impl FromStr for CacheExport {
    type Err = InvalidCacheOption;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if !spec.contains('=') {
            // buildx: a bare value is a registry reference.
            return Ok(CacheExport {
                location: CacheLocation::Registry(registry_ref(spec, spec.trim())?),
                mode: CacheMode::Min,
                ignore_error: false,
            });
        }
        let attrs = Attributes::parse(spec)?;
        let location = attrs.location("dest")?;
        let mut known = vec![
            "type",
            "mode",
            "ignore-error",
            "oci-mediatypes",
            "image-manifest",
        ];
        known.push(match location {
            CacheLocation::Registry(_) => "ref",
            CacheLocation::Local { .. } => "dest",
        });
        if matches!(location, CacheLocation::Local { .. }) {
            known.push("tag");
        }
        attrs.check_known(&known)?;
        attrs.check_always_true()?;
        let mode = match attrs.get("mode") {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(other) => {
                return Err(bad(spec, format!("mode must be min or max, not {other:?}")));
            }
        };
        Ok(CacheExport {
            location,
            mode,
            ignore_error: attrs.flag("ignore-error")?.unwrap_or(false),
        })
    }
}

impl FromStr for CacheImport {
    type Err = InvalidCacheOption;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if !spec.contains('=') {
            return Ok(CacheImport {
                location: CacheLocation::Registry(registry_ref(spec, spec.trim())?),
            });
        }
        let attrs = Attributes::parse(spec)?;
        let location = attrs.location("src")?;
        match location {
            CacheLocation::Registry(_) => attrs.check_known(&["type", "ref"])?,
            CacheLocation::Local { .. } => attrs.check_known(&["type", "src", "tag"])?,
        }
        Ok(CacheImport { location })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reason<T: FromStr<Err = InvalidCacheOption> + std::fmt::Debug>(spec: &str) -> String {
        spec.parse::<T>().unwrap_err().reason
    }

    #[test]
    fn exports_parse_as_buildx_writes_them() {
        let e: CacheExport = "type=registry,ref=localhost:5000/app:cache,mode=max"
            .parse()
            .unwrap();
        assert_eq!(
            e.location,
            CacheLocation::Registry("localhost:5000/app:cache".parse().unwrap())
        );
        assert_eq!(e.mode, CacheMode::Max);
        assert!(!e.ignore_error);
        let e: CacheExport = "localhost:5000/app:cache".parse().unwrap();
        assert_eq!(e.mode, CacheMode::Min);
        let e: CacheExport = "type=local,dest=/tmp/c,ignore-error=true".parse().unwrap();
        assert_eq!(
            e.location,
            CacheLocation::Local {
                dir: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        assert!(e.ignore_error);
        let e: CacheExport = "ref=r:5000/a:c,oci-mediatypes=true".parse().unwrap();
        assert!(matches!(e.location, CacheLocation::Registry(_)));
    }

    #[test]
    fn imports_parse_as_buildx_writes_them() {
        let i: CacheImport = "type=local,src=dir,tag=v1".parse().unwrap();
        assert_eq!(
            i.location,
            CacheLocation::Local {
                dir: "dir".into(),
                tag: "v1".into()
            }
        );
        let i: CacheImport = "r:5000/a:cache".parse().unwrap();
        assert!(matches!(i.location, CacheLocation::Registry(_)));
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            reason::<CacheExport>("type=s3,ref=x"),
            "unknown type \"s3\""
        );
        assert_eq!(
            reason::<CacheExport>("type=registry"),
            "type=registry needs ref="
        );
        assert_eq!(
            reason::<CacheExport>("type=local"),
            "type=local needs dest="
        );
        assert_eq!(
            reason::<CacheImport>("type=local,dest=x"),
            "type=local needs src="
        );
        assert_eq!(
            reason::<CacheExport>("type=registry,ref=r/a,mode=all"),
            "mode must be min or max, not \"all\""
        );
        assert_eq!(
            reason::<CacheImport>("type=registry,ref=r/a,mode=max"),
            "unknown attribute \"mode\""
        );
        assert_eq!(reason::<CacheExport>("mode=max"), "missing type");
        assert!(
            reason::<CacheExport>("type=registry,ref=r/a,image-manifest=false")
                .contains("not supported")
        );
        let err = "type=s3".parse::<CacheExport>().unwrap_err();
        assert_eq!(err.to_string(), "unknown type \"s3\" in \"type=s3\"");
    }
}
