//! The HTTP client set-up registries and `ADD <url>` share: one agent configuration,
//! one deadline per request (the caller's, [`Limits::http_deadline`](crate::limits::Limits::http_deadline)),
//! and how to tell that a request ran out of it.

use std::time::Duration;

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

/// Whether a body read failed because the request ran out of time (ureq wraps its
/// timeouts in an `io::Error`).
pub(crate) fn is_timeout_io(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}
