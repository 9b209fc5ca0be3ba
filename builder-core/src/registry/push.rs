//! Push: blobs (skipping present ones, mounting, monolithic or chunked), then manifests.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;
use ureq::http::{Method, StatusCode};

use super::client::RegistryClient;
use super::options::UploadMode;
use super::pull::{digest_and_size, for_each_parallel, is_index, manifest_blobs};
use super::response::{expect, header};
use super::{RegistryError, io_err};
use crate::digest::{Digest, Hasher};
use crate::progress::{
    Counted, Progress, TRANSFER_INTERVAL, Transfer, TransferKind, TransferOutcome,
};
use crate::store::{ContentStore, ImageName};

/// The media type of blob upload bodies.
const OCTET_STREAM: &str = "application/octet-stream";

/// How [`push`] moves blobs.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PushOptions {
    /// A repository on the same registry that likely has the blobs (the image was pulled
    /// from it): blobs are mounted from there instead of uploaded.
    pub mount_from: Option<String>,
}

impl PushOptions {
    /// With [`mount_from`](Self::mount_from) set.
    pub fn with_mount_from(mut self, repository: Option<String>) -> Self {
        self.mount_from = repository;
        self
    }
}

struct Pusher<'a> {
    client: &'a RegistryClient,
    store: &'a ContentStore,
    repository: &'a str,
    scope: Vec<String>,
    mount_from: Option<&'a str>,
    progress: &'a dyn Progress,
    /// The destination as shown in transfer events.
    target: String,
}

/// Pushes the image `source` names in the store (a manifest, or an index and its
/// manifests) to `dest` on the client's registry; returns the top manifest's digest.
/// Each blob's upload (or its presence in the registry, or its mount) is a transfer
/// reported to `progress` (see [`Progress`]'s module, "Transfers").
pub fn push(
    client: &RegistryClient,
    store: &ContentStore,
    source: &str,
    dest: &ImageName,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<Digest, RegistryError> {
    let found = store.resolve(source)?;
    let digest = Digest::try_from(found.descriptor.digest())?;
    let media_type = found.descriptor.media_type().to_string();
    push_manifest(client, store, &digest, &media_type, dest, options, progress)?;
    Ok(digest)
}

/// Pushes the manifest (or index) `digest` of `media_type` in the store, with every
/// blob it names, to `dest` (its tag, else by digest).
pub(crate) fn push_manifest(
    client: &RegistryClient,
    store: &ContentStore,
    digest: &Digest,
    media_type: &str,
    dest: &ImageName,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<(), RegistryError> {
    let repository = dest.repository();
    let mut scope = vec![format!("repository:{repository}:pull,push")];
    let mount_from = options.mount_from.as_deref().filter(|m| *m != repository);
    if let Some(from) = mount_from {
        scope.push(format!("repository:{from}:pull"));
    }
    let pusher = Pusher {
        client,
        store,
        repository,
        scope,
        mount_from,
        progress,
        target: dest.to_string(),
    };
    let reference = match (dest.tag(), dest.digest()) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => d.to_string(),
        (None, None) => digest.to_string(),
    };
    pusher.manifest(digest, media_type, &reference)
}

/// A body reader that counts the bytes the HTTP client took from it.
struct SentCounter<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: Read> Read for SentCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// `location` with `key=value` added to its query (the registry's `Location` may already
/// carry one).
fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={value}")
}

impl Pusher<'_> {
    fn manifest(
        &self,
        digest: &Digest,
        media_type: &str,
        reference: &str,
    ) -> Result<(), RegistryError> {
        let bytes = self.store.read(digest)?;
        let what = format!("manifest {digest}");
        if is_index(media_type, &bytes) {
            let index: Value =
                serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json {
                    what: what.clone(),
                    source,
                })?;
            for child in index
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (child_digest, _) = digest_and_size(child, &what)?;
                let child_type = child
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.manifest(&child_digest, child_type, child_digest.as_str())?;
            }
        } else {
            let blobs = manifest_blobs(&bytes, &what)?;
            for_each_parallel(self.client.options.parallel, &blobs, |(d, size)| {
                self.blob(d, *size)
            })?;
        }
        let media_type = if media_type.is_empty() {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| super::OCI_MANIFEST.to_owned())
        } else {
            media_type.to_owned()
        };
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.client.base_url(),
            self.repository
        );
        let resp = self.client.send(
            Method::PUT,
            &url,
            &self.scope,
            &[("content-type", media_type)],
            Some(&bytes),
        )?;
        let resp = expect(
            resp,
            Method::PUT,
            &url,
            &[StatusCode::CREATED, StatusCode::OK],
        )?;
        // The registry names what it stored; a different name means it changed the bytes.
        if let Some(stored) = header(&resp, "docker-content-digest") {
            let stored: Digest = stored.parse()?;
            if &stored != digest {
                return Err(RegistryError::DigestMismatch {
                    expected: digest.clone(),
                    found: stored,
                });
            }
        }
        Ok(())
    }

    fn blob(&self, digest: &Digest, size: u64) -> Result<(), RegistryError> {
        let base = self.client.base_url();
        let repo = self.repository;
        let head = format!("{base}/v2/{repo}/blobs/{digest}");
        let resp = self
            .client
            .send(Method::HEAD, &head, &self.scope, &[], None)?;
        if resp.status() == StatusCode::OK {
            self.skip(digest, size, TransferOutcome::AlreadyExists);
            return Ok(());
        }
        let mut start = format!("{base}/v2/{repo}/blobs/uploads/");
        if let Some(from) = self.mount_from {
            start = with_query(&with_query(&start, "mount", digest.as_str()), "from", from);
        }
        let resp = self
            .client
            .send(Method::POST, &start, &self.scope, &[], Some(&[]))?;
        let resp = expect(
            resp,
            Method::POST,
            &start,
            &[StatusCode::CREATED, StatusCode::ACCEPTED],
        )?;
        if resp.status() == StatusCode::CREATED {
            self.skip(digest, size, TransferOutcome::Mounted);
            return Ok(());
        }
        let location = self.location(&resp, &start)?;
        let transfer = Transfer::start(
            self.progress,
            TransferKind::Push,
            &self.target,
            digest.as_str(),
            Some(size),
        );
        if size <= self.client.options.chunk_size {
            // store.read re-hashes the blob, so a corrupt local blob is never sent.
            let bytes = self.store.read(digest)?;
            let url = with_query(&location, "digest", digest.as_str());
            let resp = self.client.send(
                Method::PUT,
                &url,
                &self.scope,
                &[("content-type", OCTET_STREAM.to_owned())],
                Some(&bytes),
            )?;
            expect(resp, Method::PUT, &url, &[StatusCode::CREATED])?;
            transfer.finish(size);
            return Ok(());
        }
        match self.client.options.upload {
            UploadMode::Monolithic => self.monolithic(digest, size, &location, &transfer)?,
            UploadMode::Chunked => self.chunked(digest, location, &transfer)?,
        }
        transfer.finish(size);
        Ok(())
    }

    fn skip(&self, digest: &Digest, size: u64, outcome: TransferOutcome) {
        Transfer::skip(
            self.progress,
            TransferKind::Push,
            &self.target,
            digest.as_str(),
            size,
            outcome,
        );
    }

    /// The whole blob in one `PUT`, streamed from its file; the registry checks the
    /// digest in the query against what it received.
    fn monolithic(
        &self,
        digest: &Digest,
        size: u64,
        location: &str,
        transfer: &Transfer<'_>,
    ) -> Result<(), RegistryError> {
        let path = self.store.blob_path(digest);
        let on_disk = std::fs::metadata(&path)
            .map_err(io_err("read blob", &path))?
            .len();
        if on_disk != size {
            return Err(RegistryError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                found: on_disk,
            });
        }
        let url = with_query(location, "digest", digest.as_str());
        // The HTTP client owns the body reader, so the reader only counts; a watcher
        // reports the count while the request runs.
        let sent = Arc::new(AtomicU64::new(0));
        let open = || -> Result<Box<dyn Read + Send>, RegistryError> {
            let file = self.store.open_blob(digest)?;
            // Each attempt sends the blob from its start.
            sent.store(0, Ordering::Relaxed);
            Ok(Box::new(SentCounter {
                inner: std::io::BufReader::with_capacity(1 << 20, file),
                sent: Arc::clone(&sent),
            }))
        };
        let running = AtomicBool::new(true);
        let resp = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                while running.load(Ordering::Acquire) {
                    std::thread::park_timeout(TRANSFER_INTERVAL);
                    transfer.set_current(sent.load(Ordering::Relaxed));
                }
            });
            let resp = self.client.send_stream(
                Method::PUT,
                &url,
                &self.scope,
                &[("content-type", OCTET_STREAM.to_owned())],
                size,
                &open,
            );
            running.store(false, Ordering::Release);
            watcher.thread().unpark();
            resp
        })?;
        expect(resp, Method::PUT, &url, &[StatusCode::CREATED])?;
        Ok(())
    }

    /// `PATCH` chunks of `chunk_size` bytes, then the closing `PUT`.
    fn chunked(
        &self,
        digest: &Digest,
        mut location: String,
        transfer: &Transfer<'_>,
    ) -> Result<(), RegistryError> {
        let path = self.store.blob_path(digest);
        let mut file = Counted {
            inner: self.store.open_blob(digest)?,
            transfer,
        };
        let mut hasher = Hasher::new();
        let chunk = usize::try_from(self.client.options.chunk_size).unwrap_or(usize::MAX);
        let mut buf = Vec::with_capacity(chunk);
        loop {
            buf.clear();
            (&mut file)
                .take(chunk as u64)
                .read_to_end(&mut buf)
                .map_err(io_err("read blob", &path))?;
            if buf.is_empty() {
                break;
            }
            let first = hasher.len();
            hasher.update(&buf);
            let range = format!("{first}-{}", hasher.len() - 1);
            let resp = self.client.send(
                Method::PATCH,
                &location,
                &self.scope,
                &[
                    ("content-type", OCTET_STREAM.to_owned()),
                    ("content-range", range),
                ],
                Some(&buf),
            )?;
            let resp = expect(resp, Method::PATCH, &location, &[StatusCode::ACCEPTED])?;
            location = self.location(&resp, &location)?;
        }
        let found = hasher.finish();
        if &found != digest {
            return Err(crate::store::StoreError::DigestMismatch {
                expected: digest.clone(),
                found,
            }
            .into());
        }
        let url = with_query(&location, "digest", digest.as_str());
        let resp = self
            .client
            .send(Method::PUT, &url, &self.scope, &[], Some(&[]))?;
        expect(resp, Method::PUT, &url, &[StatusCode::CREATED])?;
        Ok(())
    }

    fn location(
        &self,
        resp: &super::response::Response,
        url: &str,
    ) -> Result<String, RegistryError> {
        header(resp, "location")
            .map(|l| self.client.absolute(l))
            .ok_or_else(|| RegistryError::Status {
                method: "POST".to_owned(),
                url: url.to_owned(),
                status: resp.status().as_u16(),
                body: "no Location header in the upload answer".to_owned(),
            })
    }
}
