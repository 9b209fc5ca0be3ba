//! The HTTP client set-up registries and `ADD <url>` share: one agent configuration,
//! one deadline per request (the caller's, [`Limits::http_deadline`](crate::limits::Limits::http_deadline)),
//! and how to tell that a request ran out of it.

use std::time::Duration;

/// The longest deadline given to the HTTP client: ureq adds the deadline to the clock's
/// current instant, which overflows (and panics) for durations near `u64::MAX` seconds.
/// Ten years is "no deadline" for any request.
const MAX_DEADLINE: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// The HTTP agent of registries and `ADD <url>`: at most `deadline` per request (capped
/// at ten years), the `Authorization` header never sent along a redirect, redirects only
/// to http(s).
pub(crate) fn agent_config(
    deadline: Duration,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_global(Some(deadline.min(MAX_DEADLINE)))
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .max_redirects(10)
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
}

/// Whether a body read failed because the request ran out of time (ureq wraps its
/// timeouts in an `io::Error`).
pub(crate) fn is_timeout_io(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A deadline of `u64::MAX` seconds (as `RBUILD_HTTP_TIMEOUT` may give) makes a
    /// request that fails in its own way, not a panic adding it to the clock.
    #[test]
    fn a_huge_deadline_is_capped_not_a_panic() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener); // nothing listens: the connection is refused at once
        let agent = agent_config(Duration::from_secs(u64::MAX))
            .build()
            .new_agent();
        let result = agent.get(format!("http://127.0.0.1:{port}/")).call();
        assert!(result.is_err());
    }
}
