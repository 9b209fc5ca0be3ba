//! The HTTP client set-up registries and `ADD <url>` share: one agent configuration,
//! one deadline per request, and how to tell that a request ran out of it.

use std::time::Duration;

/// The environment variable setting the overall deadline of one HTTP request (registry
/// requests and `ADD <url>` downloads), in seconds.
pub const HTTP_TIMEOUT_ENV: &str = "RBUILD_HTTP_TIMEOUT";

/// The overall deadline of one HTTP request when [`HTTP_TIMEOUT_ENV`] does not set one.
pub const DEFAULT_HTTP_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The overall deadline of one HTTP request: [`HTTP_TIMEOUT_ENV`] (whole seconds, at
/// least 1) if it is set, else [`DEFAULT_HTTP_DEADLINE`].
pub fn http_deadline() -> Result<Duration, String> {
    match std::env::var(HTTP_TIMEOUT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_HTTP_DEADLINE),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(format!(
                "invalid {HTTP_TIMEOUT_ENV} {v:?}: expected a whole number of seconds, at least 1"
            )),
        },
        Err(e) => Err(format!("invalid {HTTP_TIMEOUT_ENV}: {e}")),
    }
}

/// The HTTP agent of registries and `ADD <url>`: at most `deadline` per request, the
/// `Authorization` header never sent along a redirect, redirects only to http(s).
pub(crate) fn agent_config(
    deadline: Duration,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_global(Some(deadline))
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .max_redirects(10)
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
}

/// The deadline of one request: [`http_deadline`], or the default when the variable is
/// invalid (the CLI reports an invalid value before anything gets here).
pub(crate) fn request_deadline() -> Duration {
    http_deadline().unwrap_or(DEFAULT_HTTP_DEADLINE)
}

/// Whether a body read failed because the request ran out of time (ureq wraps its
/// timeouts in an `io::Error`).
pub(crate) fn is_timeout_io(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}
