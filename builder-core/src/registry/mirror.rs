//! Registry mirrors and the config file that lists them, as docker's `daemon.json`
//! `registry-mirrors` and `insecure-registries`.
//!
//! The config is TOML, read from `/etc/rbuild/config.toml` and then the user's
//! `$XDG_CONFIG_HOME/rbuild/config.toml` (or `~/.config/rbuild/config.toml`), a key in the
//! user's file replacing the system's; `RBUILD_CONFIG` names the one file to read instead.
//!
//! ```toml
//! registry-mirrors = ["http://127.0.0.1:5001", "https://mirror.example"]
//! insecure-registries = ["registry.lan:5000"]
//! ```
//!
//! Like docker, mirrors serve Docker Hub only: a pull of a `docker.io` name asks each mirror
//! in turn for the same repository path (`library/busybox`), and the origin last.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::image::Descriptor;
use serde::Deserialize;

use super::RegistryError;
use super::client::RegistryClient;
use super::options::RegistryOptions;
use super::pull::{PullPlatform, pull};
use crate::error_chain::error_chain;
use crate::limits::DEFAULT_HTTP_DEADLINE;
use crate::store::{ContentStore, ImageName};

/// The environment variable naming the config file to read instead of the usual ones.
pub const CONFIG_ENV: &str = "RBUILD_CONFIG";
/// The system-wide config file.
pub const SYSTEM_CONFIG: &str = "/etc/rbuild/config.toml";
/// The only registry mirrors serve, as in docker (`registry-mirrors` applies to Docker Hub).
const MIRRORED_REGISTRY: &str = "docker.io";

/// A failure reading the config file or a mirror URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("failed to read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a key of the wrong type.
    #[error("failed to parse config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A mirror is not an `http://` or `https://` URL of a host.
    #[error(
        "invalid registry mirror {:?}: {reason}",
        crate::redact::redact_urls(url)
    )]
    Mirror {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One config file's registry keys; absent keys are `None`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigFile {
    registry_mirrors: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
}

/// The registry settings of rbuild's config file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Docker Hub mirrors, tried in order before the origin.
    pub registry_mirrors: Vec<Mirror>,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The deadline of one request: not the file's, the builder's
    /// ([`Builder::with_limits`](crate::Builder::with_limits)).
    deadline: Duration,
}

impl Default for RegistryConfig {
    /// No mirrors, no insecure registries.
    fn default() -> Self {
        RegistryConfig {
            registry_mirrors: Vec::new(),
            insecure_registries: Vec::new(),
            deadline: DEFAULT_HTTP_DEADLINE,
        }
    }
}

impl RegistryConfig {
    /// With `mirrors` as its [`registry_mirrors`](Self::registry_mirrors).
    pub fn with_registry_mirrors(mut self, mirrors: Vec<Mirror>) -> Self {
        self.registry_mirrors = mirrors;
        self
    }

    /// With `registries` as its [`insecure_registries`](Self::insecure_registries).
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    /// The same settings, each request within `deadline` (a build's limits).
    pub(crate) fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Client options for this configuration: its insecure registries, defaults
    /// otherwise (the deadline a builder's, when a build made this configuration's
    /// clients).
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            deadline: self.deadline,
            ..Default::default()
        }
    }

    /// Reads `$RBUILD_CONFIG` if set, else the system file then the user's; missing files
    /// are empty.
    pub fn load() -> Result<Self, ConfigError> {
        if let Some(path) = std::env::var_os(CONFIG_ENV) {
            return Self::from_files(&[PathBuf::from(path)]);
        }
        let mut files = vec![PathBuf::from(SYSTEM_CONFIG)];
        let user_dir = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
        if let Some(dir) = user_dir {
            files.push(dir.join("rbuild/config.toml"));
        }
        Self::from_files(&files)
    }

    /// Reads `files` in order, a key in a later file replacing an earlier one; missing
    /// files are skipped.
    pub fn from_files(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut mirrors = Vec::new();
        let mut insecure = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            };
            let file: ConfigFile = toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
            if let Some(m) = file.registry_mirrors {
                mirrors = m;
            }
            if let Some(i) = file.insecure_registries {
                insecure = i;
            }
        }
        Ok(Self {
            registry_mirrors: mirrors
                .iter()
                .map(|m| m.parse())
                .collect::<Result<_, _>>()?,
            insecure_registries: insecure,
            ..Self::default()
        })
    }
}

/// A registry mirror: `http://host[:port]` or `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    host: String,
    plain_http: bool,
}

impl Mirror {
    /// The mirror's `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A client for the mirror, with docker's credentials for its host if any.
    pub fn client(&self, options: &RegistryOptions) -> Result<RegistryClient, RegistryError> {
        let mut options = options.clone();
        if self.plain_http && !options.insecure_registries.contains(&self.host) {
            options.insecure_registries.push(self.host.clone());
        }
        RegistryClient::new(&self.host, options)
    }
}

impl std::str::FromStr for Mirror {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::Mirror {
            url: url.to_owned(),
            reason,
        };
        let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (false, rest)
        } else {
            return Err(bad("it must start with http:// or https://"));
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        if host.contains(['/', '?', '#', '@']) {
            return Err(bad("a mirror is a host: no path, query or user part"));
        }
        Ok(Self {
            host: host.to_owned(),
            plain_http,
        })
    }
}

impl std::fmt::Display for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.plain_http { "http" } else { "https" };
        write!(f, "{scheme}://{}", self.host)
    }
}

/// What [`pull_with_mirrors`] pulled and from where.
#[derive(Debug)]
pub struct Pulled {
    /// The stored manifest.
    pub descriptor: Descriptor,
    /// The registry that served it: a mirror's `host[:port]` or the origin's name.
    pub source: String,
    /// The mirrors that failed before it, with why.
    pub skipped: Vec<(Mirror, RegistryError)>,
}

/// Pulls `name` as [`pull`] does, but a `docker.io` name is first asked of each mirror in
/// order; a mirror that is down, lacks the image or fails is skipped, and `origin` (the
/// client for `name`'s registry) is used only when every mirror failed. If the origin
/// fails too, the error names every mirror's failure. Transfers are reported to
/// `progress`, those of a mirror that failed half-way included (they finish as failed).
pub fn pull_with_mirrors(
    mirrors: &[Mirror],
    options: &RegistryOptions,
    origin: &RegistryClient,
    store: &ContentStore,
    name: &ImageName,
    platform: PullPlatform<'_>,
    progress: &dyn crate::progress::Progress,
) -> Result<Pulled, RegistryError> {
    let mut skipped = Vec::new();
    if name.registry() == MIRRORED_REGISTRY {
        for mirror in mirrors {
            match mirror
                .client(options)
                .and_then(|c| pull(&c, store, name, platform, progress))
            {
                Ok(descriptor) => {
                    return Ok(Pulled {
                        descriptor,
                        source: mirror.host().to_owned(),
                        skipped,
                    });
                }
                Err(e) => skipped.push((mirror.clone(), e)),
            }
        }
    }
    let descriptor = match pull(origin, store, name, platform, progress) {
        Ok(d) => d,
        Err(e) if skipped.is_empty() => return Err(e),
        Err(e) => {
            let mirrors = skipped
                .iter()
                .map(|(m, why)| format!("{m}: {}", error_chain(why)))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RegistryError::Mirrors {
                mirrors,
                source: Box::new(e),
            });
        }
    };
    Ok(Pulled {
        descriptor,
        source: origin.registry().to_owned(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_urls_parse_like_docker() {
        let m: Mirror = "http://127.0.0.1:5001/"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.host(), "127.0.0.1:5001");
        assert_eq!(m.to_string(), "http://127.0.0.1:5001");
        let m: Mirror = "https://mirror.gcr.io"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.to_string(), "https://mirror.gcr.io");
        for bad in [
            "mirror.gcr.io",
            "http://",
            "https://m.example/v2/",
            "ftp://m",
        ] {
            assert!(bad.parse::<Mirror>().is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn later_files_replace_earlier_keys() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let system = dir.path().join("system.toml");
        let user = dir.path().join("user.toml");
        let write = |p: &Path, s: &str| std::fs::write(p, s).unwrap_or_else(|e| panic!("{e}"));
        write(
            &system,
            "registry-mirrors = [\"http://a:1\"]\ninsecure-registries = [\"r:5\"]\n",
        );
        write(
            &user,
            "registry-mirrors = [\"https://b\", \"http://c:2\"]\n",
        );
        let missing = dir.path().join("missing.toml");
        let config = RegistryConfig::from_files(&[system.clone(), user, missing])
            .unwrap_or_else(|e| panic!("{e}"));
        let hosts: Vec<_> = config.registry_mirrors.iter().map(Mirror::host).collect();
        assert_eq!(hosts, ["b", "c:2"]);
        assert_eq!(config.insecure_registries, ["r:5"]);

        write(&system, "registry-mirrors = \"http://a:1\"\n");
        let err = RegistryConfig::from_files(&[system]).map(drop);
        assert!(matches!(err, Err(ConfigError::Parse { .. })), "{err:?}");
    }
}
