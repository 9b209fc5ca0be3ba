//! A registry's responses as rbuild reads them: the status checked against what a request
//! expects, small bodies (manifests, tokens) read bounded, headers as text, and failed
//! requests turned into [`RegistryError`]s. Requests themselves are the client's
//! (`client.rs`).

use std::time::Duration;

use ureq::http::{self, Method, StatusCode};

use super::RegistryError;

/// A response: status, the headers rbuild reads, and the body left to read.
pub(crate) type Response = http::Response<ureq::Body>;

/// A failed request as an error: [`RegistryError::Deadline`] when it ran out of time.
pub(crate) fn http_error(
    e: ureq::Error,
    method: &Method,
    url: &str,
    deadline: Duration,
) -> RegistryError {
    if matches!(e, ureq::Error::Timeout(ureq::Timeout::Global)) {
        return RegistryError::Deadline {
            method: method.to_string(),
            url: url.to_owned(),
            deadline,
        };
    }
    RegistryError::Http {
        method: method.to_string(),
        url: url.to_owned(),
        source: Box::new(e),
    }
}

/// The start of a response body, for error messages.
pub(crate) fn body_text(mut resp: Response) -> String {
    let text = resp
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    text.trim().chars().take(400).collect()
}

/// Passes `resp` on if its status is one of `ok`, else turns it into an error.
pub(crate) fn expect(
    resp: Response,
    method: Method,
    url: &str,
    ok: &[StatusCode],
) -> Result<Response, RegistryError> {
    if ok.contains(&resp.status()) {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    Err(RegistryError::Status {
        method: method.to_string(),
        url: url.to_owned(),
        status,
        body: body_text(resp),
    })
}

/// Largest manifest or token document rbuild reads (distribution-spec suggests 4 MiB).
pub(crate) const MAX_DOCUMENT: u64 = 4 << 20;

/// Reads a small body (a manifest, a token) whole.
pub(crate) fn read_small(
    resp: &mut Response,
    method: Method,
    url: &str,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(MAX_DOCUMENT)
        .read_to_vec()
        .map_err(|e| http_error(e, &method, url, deadline))
}

/// The value of header `name`, if it is text.
pub(crate) fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}
