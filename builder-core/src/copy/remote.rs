//! `ADD` of a URL: http(s) downloads, with `--checksum`; git is refused for now.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use super::CopyError;
use crate::digest::Digest;
use crate::digest::Hasher;

/// The mode of a downloaded file, as docker and BuildKit write it.
pub(crate) const DOWNLOAD_MODE: u32 = 0o600;

/// Whether an `ADD` source is a URL rather than a path (as BuildKit's frontend decides:
/// a scheme it knows, or a git remote form).
pub(crate) fn is_url(source: &str) -> bool {
    is_http(source) || is_git(source)
}

fn is_http(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn is_git(source: &str) -> bool {
    source.starts_with("git://")
        || source.starts_with("git@")
        || source.starts_with("ssh://")
        || (is_http(source)
            && source
                .split(['?', '#'])
                .next()
                .is_some_and(|p| p.ends_with(".git")))
}

/// Refuses the URL forms rbuild cannot fetch yet.
pub(crate) fn check_supported(source: &str) -> Result<(), CopyError> {
    if is_git(source) {
        return Err(CopyError::Unsupported {
            what: "ADD of a git repository",
            source_path: source.to_owned(),
        });
    }
    Ok(())
}

/// A downloaded file. Its body is streamed to an unnamed temporary file while its digest
/// is computed, so a download of any size costs a buffer of memory, not its size.
pub(crate) struct Download {
    /// The name from the URL's path (its last component), `__unnamed__` when empty.
    pub name: String,
    /// The body, in an unnamed temporary file (gone when this is dropped).
    body: File,
    /// The body's digest.
    digest: Digest,
    /// `Last-Modified`, nanoseconds since the epoch.
    pub mtime_ns: Option<i64>,
}

impl Download {
    /// The body, read from its start.
    pub(crate) fn body(&mut self) -> io::Result<&mut File> {
        self.body.rewind()?;
        Ok(&mut self.body)
    }
}

/// The name a download is saved under inside a destination directory.
fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_owned(),
        // BuildKit's frontend: the base of the URL's path, else this placeholder.
        _ => "__unnamed__".to_owned(),
    }
}

fn agent(deadline: Duration) -> ureq::Agent {
    // The registries' agent: an overall deadline per download (the op's limits), no
    // Authorization along redirects, redirects to http(s) only.
    crate::http::agent_config(deadline).build().new_agent()
}

/// The last download made for a cache key, handed to the copy that follows it, so a
/// step fetches its URL once and copies exactly what its key was computed from.
static LAST_FETCHED: Mutex<Option<(String, Download)>> = Mutex::new(None);

/// Downloads `url` within `deadline`, checking it against `checksum` (`sha256:<hex>`)
/// when given.
pub(crate) fn download(
    url: &str,
    checksum: Option<&str>,
    deadline: Duration,
) -> Result<Download, CopyError> {
    let expected = checksum.map(parse_checksum).transpose()?;
    let cached = LAST_FETCHED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take_if(|(u, _)| u == url);
    let download = match cached {
        Some((_, d)) => d,
        None => fetch(url, deadline)?,
    };
    if let Some(expected) = expected {
        let found = download.digest.clone();
        if found != expected {
            return Err(CopyError::ChecksumMismatch {
                url: crate::redact::redact_urls(url).into_owned(),
                expected: expected.to_string(),
                found,
            });
        }
    }
    Ok(download)
}

/// Fetches `url` within `deadline`.
fn fetch(url: &str, deadline: Duration) -> Result<Download, CopyError> {
    let shown = crate::redact::redact_urls(url).into_owned();
    let failed = |e: ureq::Error| {
        let timed_out = match &e {
            ureq::Error::Timeout(ureq::Timeout::Global) => true,
            ureq::Error::Io(io) => crate::http::is_timeout_io(io),
            _ => false,
        };
        let source = if timed_out {
            // Name the deadline and its knob, not just "timeout".
            Box::new(ureq::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the download did not finish within {} s, the deadline of one request (set {} to change it)",
                    deadline.as_secs(),
                    crate::limits::HTTP_TIMEOUT_ENV
                ),
            )))
        } else {
            Box::new(e)
        };
        CopyError::Download {
            url: shown.clone(),
            source,
        }
    };
    let mut resp = agent(deadline).get(url).call().map_err(failed)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(CopyError::HttpStatus { url: shown, status });
    }
    let mtime_ns = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64);
    let io_failed = |e: io::Error| failed(ureq::Error::Io(e));
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut body = tempfile::tempfile().map_err(io_failed)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failed(e)),
        };
        hasher.update(&buf[..n]);
        body.write_all(&buf[..n]).map_err(io_failed)?;
    }
    Ok(Download {
        name: file_name(url),
        body,
        digest: hasher.finish(),
        mtime_ns,
    })
}

/// The digest of what `url` serves, for the cache key: `--checksum` is not known here,
/// so the content is fetched (as BuildKit does without a checksum).
pub(crate) fn content_digest(url: &str, deadline: Duration) -> Result<Digest, CopyError> {
    let download = fetch(url, deadline)?;
    let digest = download.digest.clone();
    *LAST_FETCHED.lock().unwrap_or_else(PoisonError::into_inner) = Some((url.to_owned(), download));
    Ok(digest)
}

/// `--checksum=sha256:<hex>` as a digest.
pub(crate) fn parse_checksum(spec: &str) -> Result<Digest, CopyError> {
    let invalid = || CopyError::InvalidChecksum {
        spec: spec.to_owned(),
    };
    let digest: Digest = spec.parse().map_err(|_| invalid())?;
    if digest.algorithm() != crate::digest::SHA256 {
        return Err(invalid());
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url_path() {
        assert_eq!(file_name("http://h:1/a/b/file.tar.gz?x=1#f"), "file.tar.gz");
        assert_eq!(file_name("https://h/"), "__unnamed__");
        assert_eq!(file_name("https://h"), "__unnamed__");
    }

    #[test]
    fn git_urls_are_recognised() {
        assert!(is_git("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert!(check_supported("git://host/repo").is_err());
    }
}
