//! Image names, normalized the way docker does.
//!
//! `friendlyhello` is `docker.io/library/friendlyhello:latest`; a first component with a
//! `.` or `:` or equal to `localhost` is a registry host (`localhost:5000/a/b:t`); a name
//! may end in `@sha256:<hex>` instead of, or after, a tag.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry a name without a host refers to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The namespace of one-component names on the default registry.
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The tag of a name without tag or digest.
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified image name: registry, repository path, and tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageName {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A string does not parse as an image name.
#[derive(Debug, thiserror::Error)]
#[error("invalid image name {name:?}: {reason}")]
pub struct InvalidImageName {
    /// The string given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn component_ok(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Whether the first component of a name is a registry host rather than a namespace,
/// docker's rule: it has a '.' or a ':' (a port), or is `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn tag_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !t.starts_with(['.', '-'])
}

impl FromStr for ImageName {
    type Err = InvalidImageName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidImageName {
            name: s.to_owned(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| bad("bad digest"))?)),
            None => (s, None),
        };
        // A tag is what follows the last ':' unless that ':' is in the host part.
        let (path, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !tag_ok(t) {
                return Err(bad("bad tag"));
            }
        }
        let (registry, repository) = match path.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), path.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_owned()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{repository}")
        } else {
            repository
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(bad(
                "repository must be lower-case components separated by '/'",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some(DEFAULT_TAG.to_owned())
        } else {
            tag
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl ImageName {
    /// The registry host, e.g. `docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/friendlyhello`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the REPOSITORY column without docker's shortening.
    pub fn full_repository(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as docker shows it: `friendlyhello` for
    /// `docker.io/library/friendlyhello`, `user/app` for `docker.io/user/app`.
    pub fn familiar_repository(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            let lib = format!("{OFFICIAL_NAMESPACE}/");
            // Like docker, `library/` goes only before a single component: the short form
            // of `library/a/b` would parse back as `library/a/b` minus its namespace.
            let short = self
                .repository
                .strip_prefix(&lib)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository);
            // A short form whose first component reads as a registry would name another
            // image (`docker.io/example.com/app` is not `example.com/app`): keep it whole.
            match short.split_once('/') {
                Some((first, _)) if looks_like_registry(first) => self.full_repository(),
                _ => short.to_owned(),
            }
        } else {
            self.full_repository()
        }
    }

    /// The familiar form with its tag, e.g. `friendlyhello:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Found by the `image_json` fuzz target: the familiar form of a docker.io name whose
    /// repository starts with a host-like component parsed back as another registry.
    #[test]
    fn familiar_keeps_registry_when_repository_looks_like_a_host() {
        for text in [
            "docker.io/example.com/app:1",
            "docker.io/library/example.com/app:1",
            "docker.io/localhost/app",
            "docker.io/lcreatdocker.io/library/busybox:1.36",
            "docker.io/library/library/busybox:1.36",
        ] {
            let name: ImageName = text.parse().unwrap();
            let again: ImageName = name.familiar().parse().unwrap();
            assert_eq!(again, name, "{text} through {}", name.familiar());
        }
        let plain: ImageName = "docker.io/user/app:1".parse().unwrap();
        assert_eq!(plain.familiar(), "user/app:1");
    }

    #[test]
    fn names_normalize_like_docker() {
        let cases = [
            ("friendlyhello", "docker.io/library/friendlyhello:latest"),
            ("user/app:1", "docker.io/user/app:1"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("localhost/a", "localhost/a:latest"),
            ("quay.io/x/y", "quay.io/x/y:latest"),
            (
                "busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "docker.io/library/busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (given, want) in cases {
            let name: ImageName = given.parse().unwrap();
            assert_eq!(name.to_string(), want, "{given}");
        }
        let n: ImageName = "friendlyhello".parse().unwrap();
        assert_eq!(n.familiar(), "friendlyhello:latest");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "UPPER", "a//b", "a:", "-a", "a@sha256:12"] {
            assert!(bad.parse::<ImageName>().is_err(), "{bad}");
        }
    }
}
