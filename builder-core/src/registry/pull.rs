//! Pull: manifest (resolving an index to the platform asked for, the host's by default),
//! then blobs into the store.

use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oci_spec::image::{Descriptor, MediaType};
use rbuild_dockerfile::Platform;
use serde_json::Value;
use ureq::http::{Method, StatusCode};

use super::client::RegistryClient;
use super::response::{Response, expect, header, read_small};
use super::{ACCEPTED_MANIFEST_TYPES, DOCKER_MANIFEST_LIST, OCI_INDEX, RegistryError, io_err};
use crate::digest::Digest;
use crate::image::{config_platform, host_platform, load_image, tag_keeping_platforms};
use crate::layer::Compression;
use crate::progress::{Counted, Progress, Transfer, TransferKind, TransferOutcome};
use crate::store::{ContentStore, ImageName, StoreError};

/// A manifest as fetched (its digest checked): its bytes and media type.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
}

/// Runs `work` on every item with at most `parallel` threads; the first error wins.
pub(crate) fn for_each_parallel<T: Sync, E: Send>(
    parallel: usize,
    items: &[T],
    work: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<E>> = Mutex::new(None);
    let failed = || failure.lock().map(|f| f.is_some()).unwrap_or(true);
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                while !failed() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = work(item) {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    match failure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn media_type_of(resp: &Response, bytes: &[u8]) -> String {
    let from_body = serde_json::from_slice::<Value>(bytes).ok().and_then(|v| {
        v.get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    from_body
        .or_else(|| {
            header(resp, "content-type").map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
        })
        .unwrap_or_default()
}

/// `GET /v2/<repo>/manifests/<reference>`, checked against the digest asked for or the
/// `Docker-Content-Digest` the registry sends.
pub(crate) fn fetch_manifest(
    client: &RegistryClient,
    repository: &str,
    reference: &str,
    scope: &[String],
) -> Result<Fetched, RegistryError> {
    let url = format!(
        "{}/v2/{repository}/manifests/{reference}",
        client.base_url()
    );
    let accept = ACCEPTED_MANIFEST_TYPES.join(", ");
    let resp = client.send(Method::GET, &url, scope, &[("accept", accept)], None)?;
    let mut resp = expect(resp, Method::GET, &url, &[StatusCode::OK])?;
    let bytes = read_small(&mut resp, Method::GET, &url, client.options.deadline)?;
    let digest = Digest::of(&bytes);
    let expected = match reference.parse::<Digest>() {
        Ok(d) => Some(d),
        Err(_) => header(&resp, "docker-content-digest").and_then(|d| d.parse().ok()),
    };
    if let Some(expected) = expected {
        if expected != digest {
            return Err(RegistryError::DigestMismatch {
                expected,
                found: digest,
            });
        }
    }
    let media_type = media_type_of(&resp, &bytes);
    Ok(Fetched { bytes, media_type })
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::Json {
        what: what.to_owned(),
        source,
    })
}

/// A descriptor's digest and size from manifest JSON.
pub(crate) fn digest_and_size(desc: &Value, what: &str) -> Result<(Digest, u64), RegistryError> {
    let bad = |field: &str| RegistryError::Json {
        what: what.to_owned(),
        source: <serde_json::Error as serde::de::Error>::custom(format!(
            "descriptor without a valid {field}"
        )),
    };
    let digest = desc
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("digest"))?
        .parse::<Digest>()?;
    let size = desc
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("size"))?;
    Ok((digest, size))
}

/// The config and layer descriptors of an image manifest.
pub(crate) fn manifest_blobs(
    bytes: &[u8],
    what: &str,
) -> Result<Vec<(Digest, u64)>, RegistryError> {
    let v = parse_json(bytes, what)?;
    let mut out = Vec::new();
    if let Some(config) = v.get("config") {
        out.push(digest_and_size(config, what)?);
    }
    for layer in v
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(digest_and_size(layer, what)?);
    }
    Ok(out)
}

fn stored_size(store: &ContentStore, digest: &Digest) -> Result<u64, RegistryError> {
    let path = store.blob_path(digest);
    Ok(std::fs::metadata(&path)
        .map_err(io_err("inspect", path.clone()))?
        .len())
}

/// Layer media types rbuild unpacks (image-spec media-types.md, docker's schema 2).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    crate::image::DOCKER_LAYER,
    crate::image::DOCKER_LAYER_GZIP,
    crate::image::DOCKER_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Image config media types.
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    crate::image::DOCKER_CONFIG,
];

/// Checks every descriptor of a manifest against the blob now in the store, whether it
/// was downloaded or present before: the same size, a config or layer media type, and
/// content that is what the media type says (JSON for a config, the compression a layer
/// type names).
fn check_descriptors(
    store: &ContentStore,
    manifest: &[u8],
    what: &str,
) -> Result<(), RegistryError> {
    let v = parse_json(manifest, what)?;
    let config = v.get("config").map(|c| (c, true));
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| (l, false));
    for (desc, is_config) in config.into_iter().chain(layers) {
        let (digest, size) = digest_and_size(desc, what)?;
        let refuse = |why: String| RegistryError::Descriptor {
            what: what.to_owned(),
            digest: digest.clone(),
            why,
        };
        let found = stored_size(store, &digest)?;
        if found != size {
            return Err(refuse(format!(
                "has {found} bytes in the store, the descriptor says {size}"
            )));
        }
        let media_type = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
        let (known, role) = if is_config {
            (CONFIG_TYPES, "an image config")
        } else {
            (LAYER_TYPES, "a layer")
        };
        if !known.contains(&media_type) {
            return Err(refuse(format!(
                "has media type {media_type:?}, which is not {role} media type"
            )));
        }
        if is_config {
            let bytes = store.read(&digest)?;
            if serde_json::from_slice::<Value>(&bytes).is_err() {
                return Err(refuse(format!(
                    "is not JSON, but its descriptor says {media_type}"
                )));
            }
            continue;
        }
        let mut head = Vec::with_capacity(4);
        store
            .open_blob(&digest)?
            .take(4)
            .read_to_end(&mut head)
            .map_err(io_err("read", store.blob_path(&digest)))?;
        let content = match head.as_slice() {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            _ => Compression::None,
        };
        if content != Compression::from_media_type(media_type) {
            return Err(refuse(format!(
                "is {} content, but its descriptor says {media_type}",
                content.name()
            )));
        }
    }
    Ok(())
}

/// Whether a media type names an index or a manifest list.
pub(crate) fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    media_type == OCI_INDEX
        || media_type == DOCKER_MANIFEST_LIST
        || (media_type.is_empty()
            && serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v.get("manifests").is_some()))
}

/// Where a blob fetch reports: the sink, and the image reference its transfer is for.
#[derive(Clone, Copy)]
pub(crate) struct Report<'a> {
    pub progress: &'a dyn Progress,
    pub target: &'a str,
}

/// Downloads blob `digest` into the store unless it is there: streamed to a temp file,
/// hashed on the way, and renamed to its name only if digest and size match, so a
/// corrupt blob never enters the store. The transfer is reported to `report`.
pub(crate) fn fetch_blob(
    client: &RegistryClient,
    store: &ContentStore,
    repository: &str,
    scope: &[String],
    (digest, size): (&Digest, u64),
    report: Report<'_>,
) -> Result<(), RegistryError> {
    if store.contains(digest) {
        // The stored blob hashes to its name, so its size is the truth: a descriptor
        // that says otherwise is refused here as it would be for a download.
        let found = stored_size(store, digest)?;
        if found != size {
            return Err(RegistryError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                found,
            });
        }
        Transfer::skip(
            report.progress,
            TransferKind::Pull,
            report.target,
            digest.as_str(),
            size,
            TransferOutcome::Cached,
        );
        return Ok(());
    }
    let url = format!("{}/v2/{repository}/blobs/{digest}", client.base_url());
    let transfer = Transfer::start(
        report.progress,
        TransferKind::Pull,
        report.target,
        digest.as_str(),
        Some(size),
    );
    let mut attempt = 0;
    loop {
        transfer.restart();
        match fetch_blob_once(client, store, &url, scope, (digest, size), &transfer) {
            Ok(()) => {
                transfer.finish(size);
                return Ok(());
            }
            // A body that timed out (the request's deadline) is not asked for again.
            Err(RegistryError::Io {
                action: "download",
                source,
                ..
            }) if attempt < client.options.retries && !super::is_timeout_io(&source) => {
                std::thread::sleep(client.options.backoff * 2u32.saturating_pow(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn fetch_blob_once(
    client: &RegistryClient,
    store: &ContentStore,
    url: &str,
    scope: &[String],
    (digest, size): (&Digest, u64),
    transfer: &Transfer<'_>,
) -> Result<(), RegistryError> {
    let resp = client.send(Method::GET, url, scope, &[], None)?;
    let mut resp = expect(resp, Method::GET, url, &[StatusCode::OK])?;
    let mut writer = store.writer()?;
    let mut reader = Counted {
        inner: resp.body_mut().with_config().limit(u64::MAX).reader(),
        transfer,
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            if super::is_timeout_io(&e) {
                RegistryError::Deadline {
                    method: "GET".to_owned(),
                    url: url.to_owned(),
                    deadline: client.options.deadline,
                }
            } else {
                io_err("download", url.to_owned())(e)
            }
        })?;
        if n == 0 {
            break;
        }
        // A body longer than the descriptor says is cut here: it is refused below
        // whatever follows.
        writer
            .write_all(&buf[..n])
            .map_err(io_err("write", store.tmp_dir()))?;
        if writer.written() > size {
            break;
        }
    }
    // Committed only when digest and size match; otherwise the temp file goes.
    match writer.finish_matching(digest, size) {
        Ok(_) => Ok(()),
        Err(StoreError::DigestMismatch { expected, found }) => {
            Err(RegistryError::DigestMismatch { expected, found })
        }
        Err(StoreError::SizeMismatch {
            digest,
            expected,
            found,
        }) => Err(RegistryError::SizeMismatch {
            digest,
            expected,
            found,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Which image [`pull`] takes of a name, and what it does with an image that is one
/// manifest (no index) of another platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPlatform<'p> {
    /// The build machine's: an index's entry of its platform (of any variant when none
    /// matches exactly); one manifest whatever its platform, as `docker pull` takes it.
    Host,
    /// A build's base image for this platform: an index's entry of it; one manifest
    /// whatever its platform (the build warns, as BuildKit's `InvalidBaseImagePlatform`).
    BaseFor(&'p Platform),
    /// `rbuild pull --platform`: an index's entry of it; one manifest of another platform
    /// is refused ([`RegistryError::OtherPlatform`]), as `docker pull --platform` refuses
    /// it, and the store's names are left as they were.
    Exactly(&'p Platform),
}

impl<'p> PullPlatform<'p> {
    /// The platform asked for, `None` for the host's.
    fn platform(self) -> Option<&'p Platform> {
        match self {
            PullPlatform::Host => None,
            PullPlatform::BaseFor(p) | PullPlatform::Exactly(p) => Some(p),
        }
    }
}

/// Pulls `name` into `store` and names it there; an index or manifest list is resolved to
/// the manifest of the platform `wanted` says (see [`index_entry`]). Pulled for a
/// platform, the name keeps the images of other platforms it had (see
/// [`tag_keeping_platforms`]); for the host, it points to the pulled image alone.
/// Returns the stored manifest's descriptor.
/// Each blob's download (or its presence in the store) is a transfer reported to
/// `progress` (see [`Progress`]'s module, "Transfers").
pub fn pull(
    client: &RegistryClient,
    store: &ContentStore,
    name: &ImageName,
    wanted: PullPlatform<'_>,
    progress: &dyn Progress,
) -> Result<Descriptor, RegistryError> {
    let platform = wanted.platform();
    let repository = name.repository();
    let scope = vec![format!("repository:{repository}:pull")];
    let reference = match (name.digest(), name.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        // A parsed name always has a tag or a digest; docker's default tag otherwise.
        (None, None) => "latest".to_owned(),
    };
    let mut fetched = fetch_manifest(client, repository, &reference, &scope)?;
    let from_index = is_index(&fetched.media_type, &fetched.bytes);
    if from_index {
        let index = parse_json(&fetched.bytes, &format!("index of {name}"))?;
        let wanted = platform.cloned().unwrap_or_else(host_platform);
        let chosen = index_entry(&index, &wanted, platform.is_none()).ok_or_else(|| {
            RegistryError::NoPlatform {
                name: name.to_string(),
                platform: wanted.to_string(),
            }
        })?;
        let (digest, _) = digest_and_size(chosen, &format!("index of {name}"))?;
        fetched = fetch_manifest(client, repository, digest.as_str(), &scope)?;
        if is_index(&fetched.media_type, &fetched.bytes) {
            return Err(RegistryError::MediaType(fetched.media_type));
        }
    }
    let known = [super::OCI_MANIFEST, super::DOCKER_MANIFEST, ""];
    if !known.contains(&fetched.media_type.as_str()) {
        // Docker schema 1 and artifacts other than images are not images rbuild can run.
        return Err(RegistryError::MediaType(fetched.media_type));
    }
    let blobs = manifest_blobs(&fetched.bytes, &format!("manifest of {name}"))?;
    let target = name.to_string();
    let report = Report {
        progress,
        target: &target,
    };
    for_each_parallel(client.options.parallel, &blobs, |(digest, size)| {
        fetch_blob(client, store, repository, &scope, (digest, *size), report)
    })?;
    check_descriptors(store, &fetched.bytes, &format!("manifest of {name}"))?;
    let blob = store.put(&fetched.bytes)?;
    let media = if fetched.media_type.is_empty() {
        MediaType::ImageManifest
    } else {
        MediaType::from(fetched.media_type.as_str())
    };
    let descriptor = Descriptor::new(media, blob.size, &blob.digest);
    if platform.is_some() {
        let image = load_image(store, &descriptor)?;
        let found = config_platform(&image.config);
        // An index's entry was chosen by the platform the index gives it (a config may
        // leave out a variant the index says); one manifest is checked by its config.
        if let (PullPlatform::Exactly(wanted), false) = (wanted, from_index) {
            // containerd's platform matcher: a variant counts only when one is asked for.
            let same = found.os == wanted.os
                && found.architecture == wanted.architecture
                && (wanted.variant.is_empty() || found.variant == wanted.variant);
            if !same {
                return Err(RegistryError::OtherPlatform {
                    name: name.to_string(),
                    wanted: wanted.to_string(),
                    found: found.to_string(),
                });
            }
        }
        tag_keeping_platforms(store, name, &image)?;
    } else {
        store.tag(name, &descriptor)?;
    }
    Ok(descriptor)
}

/// The entry of `index` (a manifest list or image index) for `wanted`: the first whose
/// `platform`, normalized as containerd does, is `wanted` (so `linux/arm64/v8` is
/// `linux/arm64`); with `any_variant` (the host's own platform), else the first of its
/// os and architecture whatever the variant.
fn index_entry<'i>(index: &'i Value, wanted: &Platform, any_variant: bool) -> Option<&'i Value> {
    let entries = || {
        index
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let field = |m: &Value, key: &str| {
        m.get("platform")
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let platform = |m: &Value| {
        Platform::new(
            &field(m, "os"),
            &field(m, "architecture"),
            &field(m, "variant"),
        )
    };
    entries().find(|m| platform(m) == *wanted).or_else(|| {
        entries().filter(|_| any_variant).find(|m| {
            let p = platform(m);
            p.os == wanted.os && p.architecture == wanted.architecture
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker Hub's way of listing platforms: arm64 with variant `v8`, arm with `v7`.
    fn index() -> Value {
        serde_json::json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"digest": "sha256:c", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:d", "platform": {"os": "unknown", "architecture": "unknown"}},
        ]})
    }

    fn chosen(wanted: &str, any_variant: bool) -> Option<String> {
        let index = index();
        let wanted = Platform::parse(wanted).unwrap_or_else(|| panic!("{wanted}"));
        index_entry(&index, &wanted, any_variant)
            .and_then(|m| m.get("digest"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    #[test]
    fn an_index_entry_is_chosen_by_its_platform_normalized() {
        assert_eq!(chosen("linux/arm64", false).as_deref(), Some("sha256:c"));
        assert_eq!(chosen("linux/aarch64", false).as_deref(), Some("sha256:c"));
        assert_eq!(chosen("linux/arm", false).as_deref(), Some("sha256:b"));
        assert_eq!(chosen("linux/amd64", false).as_deref(), Some("sha256:a"));
        assert_eq!(chosen("linux/arm/v6", false), None);
        assert_eq!(chosen("linux/s390x", true), None);
        // The host's own platform takes another variant of its architecture.
        assert_eq!(chosen("linux/amd64/v3", false), None);
        assert_eq!(chosen("linux/amd64/v3", true).as_deref(), Some("sha256:a"));
    }
}
