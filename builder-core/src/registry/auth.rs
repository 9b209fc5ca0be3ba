//! RegistryCredentials: docker's `config.json`, credential helpers, and `WWW-Authenticate`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::{RegistryError, io_err};

/// The environment variable naming the directory of `config.json`, as docker reads it.
pub const DOCKER_CONFIG_ENV: &str = "DOCKER_CONFIG";
/// The key docker uses in `auths` for Docker Hub.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// The registry host image names use for Docker Hub.
const DOCKER_HUB_HOST: &str = "docker.io";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password or personal access token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RegistryCredentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// docker's client configuration file, `$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`; fields rbuild does not know are kept as they are.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

fn config_key(registry: &str) -> String {
    if registry == DOCKER_HUB_HOST {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// The registry host an `auths` key names (`https://host/v1/` -> `host`).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    if k == "index.docker.io" || k == "registry-1.docker.io" {
        DOCKER_HUB_HOST
    } else {
        k
    }
}

impl DockerConfig {
    /// The path docker would use: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os(DOCKER_CONFIG_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("config.json");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".docker/config.json")
    }

    /// Reads the file at the default path; a missing file is an empty configuration.
    pub fn load() -> Result<Self, RegistryError> {
        Self::load_from(Self::default_path())
    }

    /// Reads `path`; a missing file is an empty configuration.
    pub fn load_from(path: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        let path = path.into();
        let doc = match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json {
                what: path.display().to_string(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(Self { path, doc })
    }

    /// The file this configuration lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn helper_for(&self, registry: &str) -> Option<String> {
        let helpers = self.doc.get("credHelpers").and_then(Value::as_object);
        if let Some(h) = helpers.and_then(|h| h.get(registry).or(h.get(&config_key(registry)))) {
            return h.as_str().map(str::to_owned);
        }
        self.doc
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.doc.get("auths").and_then(Value::as_object)
    }

    /// The credentials for `registry` (a host such as `docker.io` or `127.0.0.1:5000`),
    /// from a credential helper if one is configured, else from `auths`.
    pub fn credentials(
        &self,
        registry: &str,
    ) -> Result<Option<RegistryCredentials>, RegistryError> {
        if let Some(helper) = self.helper_for(registry) {
            return helper_get(&helper, &config_key(registry));
        }
        let Some(auths) = self.auths() else {
            return Ok(None);
        };
        let Some(entry) = auths
            .iter()
            .find(|(k, _)| key_host(k) == registry)
            .map(|(_, v)| v)
        else {
            return Ok(None);
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let bad = |reason: &str| RegistryError::Unauthorized {
                registry: registry.to_owned(),
                reason: format!("bad auth field in {}: {reason}", self.path.display()),
            };
            let raw = BASE64.decode(auth.trim()).map_err(|_| bad("not base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
            let (user, pass) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
            return Ok(Some(RegistryCredentials {
                username: user.to_owned(),
                password: pass.to_owned(),
            }));
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Ok(Some(RegistryCredentials {
                username: u.to_owned(),
                password: p.to_owned(),
            })),
            _ => Ok(None),
        }
    }

    /// Saves `credentials` for `registry`: through the credential helper if one is
    /// configured, else base64 in `auths`; then writes the file (mode 0600).
    pub fn store_credentials(
        &mut self,
        registry: &str,
        credentials: &RegistryCredentials,
    ) -> Result<(), RegistryError> {
        let key = config_key(registry);
        if let Some(helper) = self.helper_for(registry) {
            let input = serde_json::json!({
                "ServerURL": key,
                "Username": credentials.username,
                "Secret": credentials.password,
            });
            run_helper(&helper, "store", &input.to_string())?;
            return Ok(());
        }
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Some(auths) = auths.as_object_mut() {
            auths.retain(|k, _| k == &key || key_host(k) != registry);
            let encoded =
                BASE64.encode(format!("{}:{}", credentials.username, credentials.password));
            auths.insert(key, serde_json::json!({ "auth": encoded }));
        }
        self.save()
    }

    /// Forgets the credentials for `registry`; returns whether there were any.
    pub fn remove_credentials(&mut self, registry: &str) -> Result<bool, RegistryError> {
        let key = config_key(registry);
        if let Some(helper) = self.helper_for(registry) {
            run_helper(&helper, "erase", &key)?;
            return Ok(true);
        }
        let mut removed = false;
        if let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) {
            let before = auths.len();
            auths.retain(|k, _| key_host(k) != registry);
            removed = auths.len() != before;
        }
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    /// Writes the configuration back atomically, readable by its owner only.
    pub fn save(&self) -> Result<(), RegistryError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        // As docker: a directory it creates is its owner's only.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        let body = serde_json::to_vec_pretty(&self.doc).map_err(|source| RegistryError::Json {
            what: self.path.display().to_string(),
            source,
        })?;
        // Created 0600 (never readable by others, not even before the rename).
        crate::atomic::AtomicWrite::new(&self.path)
            .mode(0o600)
            .write(&body)
            .map_err(|e| io_err(e.action, &e.path)(e.source))
    }
}

fn run_helper(helper: &str, action: &str, input: &str) -> Result<String, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| RegistryError::CredentialHelper {
        helper: helper.to_owned(),
        message,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(format!("cannot write to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for {program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let msg = if stdout.trim().is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        } else {
            stdout.trim().to_owned()
        };
        return Err(fail(format!("{action}: {msg}")));
    }
    Ok(stdout)
}

fn helper_get(helper: &str, server: &str) -> Result<Option<RegistryCredentials>, RegistryError> {
    let out = match run_helper(helper, "get", server) {
        Ok(out) => out,
        // The helpers' protocol: this message means "no credentials", not a failure.
        Err(RegistryError::CredentialHelper { message, .. })
            if message.contains("credentials not found") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(&out).map_err(|source| RegistryError::Json {
        what: format!("output of docker-credential-{helper} get"),
        source,
    })?;
    match (
        v.get("Username").and_then(Value::as_str),
        v.get("Secret").and_then(Value::as_str),
    ) {
        (Some(u), Some(s)) => Ok(Some(RegistryCredentials {
            username: u.to_owned(),
            password: s.to_owned(),
        })),
        _ => Ok(None),
    }
}

/// One parsed `WWW-Authenticate` challenge (RFC 7235): a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer`, lower-cased.
    pub scheme: String,
    /// Parameters such as `realm`, `service`, `scope`, keys lower-cased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses the first challenge of a header value; `None` if it has no scheme.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, mut rest) = match header.find(char::is_whitespace) {
            Some(i) => (&header[..i], header[i..].trim_start()),
            None => (header, ""),
        };
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        while !rest.is_empty() {
            let Some(eq) = rest.find('=') else { break };
            let key = rest[..eq].trim().to_ascii_lowercase();
            rest = rest[eq + 1..].trim_start();
            let value;
            if let Some(quoted) = rest.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                value = v;
                rest = &quoted[end.min(quoted.len())..];
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                value = rest[..end].trim().to_owned();
                rest = &rest[end..];
            }
            params.insert(key, value);
            rest = rest.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas_in_quotes() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
    }

    #[test]
    fn parses_basic_challenge() {
        let c = Challenge::parse(r#"Basic realm="rbuild-test""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "rbuild-test");
    }

    #[test]
    fn config_round_trip_and_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{},"psFormat":"x"}"#).unwrap();
        let mut cfg = DockerConfig::load_from(&path).unwrap();
        let creds = RegistryCredentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        cfg.store_credentials("docker.io", &creds).unwrap();
        cfg.store_credentials("127.0.0.1:5000", &creds).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(DOCKER_HUB_KEY), "{text}");
        assert!(text.contains("psFormat"), "{text}");
        let cfg = DockerConfig::load_from(&path).unwrap();
        assert_eq!(cfg.credentials("docker.io").unwrap(), Some(creds.clone()));
        assert_eq!(cfg.credentials("127.0.0.1:5000").unwrap(), Some(creds));
        let mut cfg = cfg;
        assert!(cfg.remove_credentials("127.0.0.1:5000").unwrap());
        let cfg = DockerConfig::load_from(&path).unwrap();
        assert_eq!(cfg.credentials("127.0.0.1:5000").unwrap(), None);
    }
}
