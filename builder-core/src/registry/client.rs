//! One registry: its base URL, the HTTP agent, authentication, retries.

use std::collections::HashMap;
use std::sync::Mutex;

use ureq::http::{self, Method, StatusCode};

use super::RegistryError;
use super::auth::{Challenge, DockerConfig, RegistryCredentials};
use super::options::{RegistryOptions, is_plain_http};
use super::response::{Response, body_text, expect, http_error, read_small};
use crate::http::{agent_config, is_timeout_io};

/// The host Docker Hub's API really lives on.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// What the registry asked for the last time it said 401.
#[derive(Debug, Clone)]
enum AuthMode {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A client for one registry, shared by the threads that move blobs.
///
/// ```no_run
/// use rbuild_core::{ContentStore, Event, ImageName, progress::ProgressFn, registry::{PullPlatform, RegistryClient, RegistryOptions, pull}};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = ContentStore::open("/tmp/rbuild-store")?;
/// let name: ImageName = "localhost:5000/app:1".parse()?;
/// // RegistryCredentials come from docker's config.json; localhost is spoken to over plain HTTP.
/// let client = RegistryClient::new(name.registry(), RegistryOptions::default())?;
/// // Each blob's download is reported, throttled, as transfer events.
/// let progress = ProgressFn(|event: &Event| {
///     if let Event::TransferFinished { digest, size, .. } = event {
///         eprintln!("{digest}: {size} bytes");
///     }
/// });
/// let manifest = pull(&client, &store, &name, PullPlatform::Host, &progress)?;
/// println!("pulled {name} as {}", manifest.digest());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RegistryClient {
    agent: ureq::Agent,
    registry: String,
    base: String,
    credentials: Option<RegistryCredentials>,
    mode: Mutex<AuthMode>,
    /// Bearer tokens by scope (`repository:a/b:pull,push`, space-separated if several).
    tokens: Mutex<HashMap<String, String>>,
    pub(crate) options: RegistryOptions,
}

impl RegistryClient {
    /// A client for `registry` (e.g. `docker.io`, `127.0.0.1:5000`) with credentials from
    /// docker's `config.json`.
    pub fn new(registry: &str, options: RegistryOptions) -> Result<Self, RegistryError> {
        let credentials = DockerConfig::load()?.credentials(registry)?;
        Ok(Self::with_credentials(registry, credentials, options))
    }

    /// A client for `registry` with the given credentials (or none: anonymous).
    pub fn with_credentials(
        registry: &str,
        credentials: Option<RegistryCredentials>,
        options: RegistryOptions,
    ) -> Self {
        let plain = is_plain_http(registry, &options.insecure_registries);
        let host = if registry == "docker.io" {
            DOCKER_HUB_API
        } else {
            registry
        };
        let base = format!("{}://{host}", if plain { "http" } else { "https" });
        let mut config = agent_config(options.deadline);
        if plain {
            // A loopback or explicitly insecure registry is never reached through a proxy.
            config = config.proxy(None);
        }
        Self {
            agent: config.build().new_agent(),
            registry: registry.to_owned(),
            base,
            credentials,
            mode: Mutex::new(AuthMode::Anonymous),
            tokens: Mutex::new(HashMap::new()),
            options,
        }
    }

    /// The registry host this client speaks to.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `scheme://host`, the prefix of every API URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Checks that the registry accepts this client's credentials (`GET /v2/`).
    pub fn ping(&self, scope: &[String]) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let resp = self.send(Method::GET, &url, scope, &[], None)?;
        expect(resp, Method::GET, &url, &[StatusCode::OK]).map(drop)
    }

    /// Absolute URL for a `Location` header, which may be relative.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    /// Whether `url` is on this registry's origin (scheme, host and port): only there are
    /// its credentials sent (issue: an upload `Location` on another origin got them).
    pub(crate) fn is_own_origin(&self, url: &str) -> bool {
        match (url_origin(&self.base), url_origin(url)) {
            (Some(own), Some(other)) => own == other,
            _ => false,
        }
    }

    fn auth_header(&self, scope: &[String]) -> Result<Option<String>, RegistryError> {
        let mode = self.lock_mode().clone();
        self.auth_header_for(&mode, scope)
    }

    /// The `Authorization` value a request sent in `mode` carries.
    fn auth_header_for(
        &self,
        mode: &AuthMode,
        scope: &[String],
    ) -> Result<Option<String>, RegistryError> {
        match mode {
            AuthMode::Anonymous => Ok(None),
            AuthMode::Basic => Ok(self
                .credentials
                .as_ref()
                .map(RegistryCredentials::basic_header)),
            AuthMode::Bearer { realm, service } => {
                let key = scope.join(" ");
                if let Some(t) = self.lock_tokens().get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self.fetch_token(realm, service.as_deref(), scope)?;
                self.lock_tokens().insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn lock_mode(&self) -> std::sync::MutexGuard<'_, AuthMode> {
        self.mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// distribution-spec token flow: `GET realm?service=..&scope=..` answers `token`.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &[String],
    ) -> Result<String, RegistryError> {
        let mut url = realm.to_owned();
        let mut sep = if realm.contains('?') { '&' } else { '?' };
        if let Some(s) = service {
            url.push_str(&format!("{sep}service={}", encode(s)));
            sep = '&';
        }
        for s in scope {
            url.push_str(&format!("{sep}scope={}", encode(s)));
            sep = '&';
        }
        let realm_url = realm_origin(realm).ok_or_else(|| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            reason: format!(
                "the token service {:?} is not an http(s) URL",
                crate::redact::redact_urls(realm)
            ),
        })?;
        let mut headers = Vec::new();
        if let Some(c) = &self.credentials {
            // The registry's password goes to its token service only over https or on
            // the registry's own origin: a plain-http realm elsewhere (another host or
            // port) would receive it in clear, so it is asked anonymously (issue 13).
            if realm_url.0 == "https" || self.base == format!("{}://{}", realm_url.0, realm_url.1) {
                headers.push(("authorization", c.basic_header()));
            }
        }
        let resp = self.retrying(Method::GET, &url, &headers, None, None)?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: format!(
                    "token service {} refused: {}",
                    crate::redact::redact_urls(realm),
                    body_text(resp)
                ),
            });
        }
        let mut resp = expect(resp, Method::GET, &url, &[StatusCode::OK])?;
        let v: serde_json::Value = serde_json::from_slice(&read_small(
            &mut resp,
            Method::GET,
            &url,
            self.options.deadline,
        )?)
        .map_err(|source| RegistryError::Json {
            what: format!("token from {}", crate::redact::redact_urls(realm)),
            source,
        })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: format!(
                    "token service {} answered no token",
                    crate::redact::redact_urls(realm)
                ),
            })
    }

    /// Sends a request with authentication: on 401 it follows the challenge once and
    /// tries again. `scope` is what a bearer token must allow.
    pub(crate) fn send(
        &self,
        method: Method,
        url: &str,
        scope: &[String],
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, RegistryError> {
        if !self.is_own_origin(url) {
            // Another origin (an upload `Location`, a redirect elsewhere) never receives
            // the registry's password or token, and its challenge is not followed.
            return self.retrying(method, url, headers, None, body);
        }
        // The mode this request is sent in: another thread may change the shared mode
        // meanwhile (parallel blob checks all start anonymous), and only a refusal of
        // credentials this request carried means they are wrong.
        let sent_in = self.lock_mode().clone();
        let auth = self.auth_header_for(&sent_in, scope)?;
        let resp = self.retrying(method.clone(), url, headers, auth.as_deref(), body)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            reason,
        };
        let Some(challenge) = challenge else {
            return Err(unauthorized(format!(
                "{method} {url} answered 401 without a challenge"
            )));
        };
        let new_mode = match challenge.scheme.as_str() {
            "basic" => {
                if self.credentials.is_none() {
                    return Err(unauthorized(
                        "the registry wants a user name and password and none are configured (run rbuild login)".to_owned(),
                    ));
                }
                AuthMode::Basic
            }
            "bearer" => {
                AuthMode::Bearer {
                    realm: challenge.params.get("realm").cloned().ok_or_else(|| {
                        unauthorized("bearer challenge without a realm".to_owned())
                    })?,
                    service: challenge.params.get("service").cloned(),
                }
            }
            other => return Err(unauthorized(format!("unsupported auth scheme {other}"))),
        };
        let retried_same = matches!((&sent_in, &new_mode), (AuthMode::Basic, AuthMode::Basic));
        if retried_same {
            return Err(unauthorized(format!(
                "credentials refused for {method} {url}: {}",
                body_text(resp)
            )));
        }
        *self.lock_mode() = new_mode;
        self.lock_tokens().remove(&scope.join(" "));
        let auth = self.auth_header(scope)?;
        let resp = self.retrying(method.clone(), url, headers, auth.as_deref(), body)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(unauthorized(format!(
                "credentials refused for {method} {url}: {}",
                body_text(resp)
            )));
        }
        Ok(resp)
    }

    /// Sends a request whose body is the `size` bytes `open` reads (opened again for each
    /// attempt), retried as [`send`](Self::send) retries; the scope must have been
    /// authenticated by an earlier request (a refused token is fetched again once).
    pub(crate) fn send_stream(
        &self,
        method: Method,
        url: &str,
        scope: &[String],
        headers: &[(&str, String)],
        size: u64,
        open: &dyn Fn() -> Result<Box<dyn std::io::Read + Send>, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let own = self.is_own_origin(url);
        let mut refreshed = !own;
        let mut attempt = 0;
        loop {
            // Credentials go only to the registry's own origin.
            let auth = if own { self.auth_header(scope)? } else { None };
            let req = request(&method, url, headers, auth.as_deref())
                .header("content-length", size.to_string());
            let body = ureq::SendBody::from_owned_reader(open()?);
            let req = req.body(body).map_err(|e| RegistryError::Http {
                method: method.to_string(),
                url: url.to_owned(),
                source: Box::new(ureq::Error::Http(e)),
            })?;
            let outcome = self.agent.run(req);
            if let Ok(resp) = &outcome {
                if resp.status() == StatusCode::UNAUTHORIZED && !refreshed {
                    // A bearer token that expired during a long upload: a new one.
                    refreshed = true;
                    self.lock_tokens().remove(&scope.join(" "));
                    continue;
                }
            }
            if let Some(settled) = self.settle(outcome, &mut attempt, &method, url) {
                return settled;
            }
        }
    }

    /// One request, retried with backoff on 5xx answers and broken connections.
    fn retrying(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        auth: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        loop {
            let req = request(&method, url, headers, auth)
                .body(body.unwrap_or_default())
                .map_err(|e| RegistryError::Http {
                    method: method.to_string(),
                    url: url.to_owned(),
                    source: Box::new(ureq::Error::Http(e)),
                })?;
            let outcome = if body.is_some() {
                self.agent.run(req)
            } else {
                self.agent.run(req.map(|_| ()))
            };
            if let Some(settled) = self.settle(outcome, &mut attempt, &method, url) {
                return settled;
            }
        }
    }

    /// What to do with one attempt's outcome: `Some` to return it (success, an error not
    /// worth retrying, or retries used up), `None` after sleeping the backoff, to retry.
    fn settle(
        &self,
        outcome: Result<Response, ureq::Error>,
        attempt: &mut u32,
        method: &Method,
        url: &str,
    ) -> Option<Result<Response, RegistryError>> {
        let retry = match &outcome {
            Ok(r) => r.status().is_server_error(),
            Err(e) => is_transient(e),
        };
        if !retry || *attempt >= self.options.retries {
            return Some(outcome.map_err(|e| http_error(e, method, url, self.options.deadline)));
        }
        std::thread::sleep(self.options.backoff * 2u32.saturating_pow(*attempt));
        *attempt += 1;
        None
    }
}

/// Whether an attempt is worth retrying: a broken connection, yes; a request that ran
/// out of time (its deadline, or a read that waited too long) no: a silent or dripping
/// server would hold the build for every retry.
fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        ureq::Error::Io(io) => !is_timeout_io(io),
        ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

/// The scheme and authority of a token realm; `None` unless it is an http(s) URL.
fn realm_origin(realm: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = if let Some(rest) = realm.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = realm.strip_prefix("http://") {
        ("http", rest)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.chars().any(char::is_control) {
        return None;
    }
    Some((scheme, authority))
}

/// The origin of an http(s) URL: scheme, lower-cased host and port (the scheme's default
/// when absent); `None` for anything else, userinfo included.
fn url_origin(url: &str) -> Option<(&'static str, String, u16)> {
    let (scheme, authority) = realm_origin(url)?;
    let default = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (format!("[{}]", host.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), p.parse().ok()?),
            None => (authority.to_ascii_lowercase(), default),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    Some((scheme, host, port))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request with `headers` and, when given, the authorization header.
fn request(
    method: &Method,
    url: &str,
    headers: &[(&str, String)],
    auth: Option<&str>,
) -> http::request::Builder {
    let mut req = http::Request::builder().method(method.clone()).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_plain_http() {
        assert!(is_plain_http("localhost:5000", &[]));
        assert!(is_plain_http("127.0.0.1:5000", &[]));
        assert!(is_plain_http("127.0.0.1", &[]));
        assert!(!is_plain_http("docker.io", &[]));
        assert!(!is_plain_http("reg.example:5000", &[]));
        assert!(is_plain_http(
            "reg.example:5000",
            &["reg.example:5000".to_owned()]
        ));
    }

    #[test]
    fn credentials_go_only_to_the_registry_origin() {
        let c =
            RegistryClient::with_credentials("127.0.0.1:5000", None, RegistryOptions::default());
        assert!(c.is_own_origin("http://127.0.0.1:5000/v2/a/blobs/uploads/1"));
        assert!(!c.is_own_origin("HTTP://127.0.0.1:5000/x"));
        assert!(!c.is_own_origin("http://127.0.0.1:5001/upload"));
        assert!(!c.is_own_origin("https://127.0.0.1:5000/upload"));
        assert!(!c.is_own_origin("http://evil@127.0.0.1:5000/upload"));
        assert!(!c.is_own_origin("http://127.0.0.1:5000.evil/upload"));
        assert!(!c.is_own_origin("http://127.0.0.1/upload"));
        let hub = RegistryClient::with_credentials("example.com", None, RegistryOptions::default());
        assert!(hub.is_own_origin("https://EXAMPLE.com:443/v2/"));
        assert!(!hub.is_own_origin("https://example.com.evil/v2/"));
    }

    #[test]
    fn encodes_scope() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
