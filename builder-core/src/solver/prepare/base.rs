//! Base images: what a `FROM` (or `COPY --from`) names, found or loaded into the store.
//!
//! A reference is one of: a name or image ID in the local store (docker's name
//! normalization applies: `busybox` is `docker.io/library/busybox:latest`), else pulled
//! from its registry into the store (through the configured mirrors and insecure
//! registries, as `rbuild pull` does; with `--pull` even when the store has it),
//! `oci-layout://DIR[:TAG]` (an OCI image layout directory; the manifest whose
//! `org.opencontainers.image.ref.name` is `TAG`, or the only one), `oci-archive://FILE`
//! or `docker-archive://FILE` (loaded into the store, first image, never named there;
//! remembered under `<root>/archive-loads/` by the file's identity, so an unchanged
//! archive is loaded once, not at every build). `scratch` and stage names never get here.
//!
//! The Dockerfile is untrusted, so the path of an archive or layout is resolved inside
//! the build context: a relative path (or an absolute one under the context's directory)
//! is opened from the context root with `openat2` `RESOLVE_IN_ROOT` (`..` and symlinks
//! cannot leave it); an absolute path elsewhere only beneath a directory the invoker
//! allowed with `--allow fs.read=DIR` (`RESOLVE_BENEATH`), and refused otherwise. Opens
//! never block (a FIFO is refused, not waited on) and must find a regular file (a
//! directory for a layout).

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use rbuild_dockerfile::Platform;

use crate::digest::Digest;
use crate::solver::error::{BuildError, io_err};
// A layout's blob checks and index-nesting limit are the archive loader's.
use crate::export::{
    MAX_INDEX_DEPTH, Saved, check_document_size, load_archive_file, store_verified,
};
use crate::image::{Image, config_platform, load_image, load_image_for, platform_images};
use crate::oci_layout::{Children, LayoutError, OciLayout, blob_rel};
use crate::registry::{PullPlatform, Pulled, RegistryClient, RegistryConfig, pull_with_mirrors};
use crate::store::{ContentStore, ImageName, StoreError};

/// `FROM oci-layout://DIR[:TAG]`: an OCI image layout directory.
pub(crate) const OCI_LAYOUT_SCHEME: &str = "oci-layout://";
/// `FROM oci-archive://FILE`: an OCI image layout as a tar archive.
pub(crate) const OCI_ARCHIVE_SCHEME: &str = "oci-archive://";
/// `FROM docker-archive://FILE`: a `docker save` archive.
pub(crate) const DOCKER_ARCHIVE_SCHEME: &str = "docker-archive://";

/// A base image the build wants: a reference as written, for a platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BaseKey {
    /// The reference, after expansion.
    pub reference: String,
    /// The platform it is wanted for; `None` (no `--platform`, no `FROM --platform`): the
    /// image as the store has it, the host's entry of an index.
    pub platform: Option<Platform>,
}

/// A resolved base image.
#[derive(Debug, Clone)]
pub(crate) struct BaseImage {
    /// The image.
    pub image: Image,
    /// Its manifest digest (the root of its stages' cache keys).
    pub digest: Digest,
    /// What the build should warn about: registry mirrors its pull skipped, and why.
    pub warnings: Vec<String>,
}

/// How base images that name a registry are looked up.
#[derive(Clone, Copy)]
pub(crate) struct Lookup<'a> {
    /// `--pull`: ask the registry even when the store has the name.
    pub pull: bool,
    /// Mirrors and insecure registries.
    pub registry: &'a RegistryConfig,
    /// The build context's root: where archive and layout paths resolve.
    pub context: &'a Path,
    /// `--allow fs.read=DIR`: directories outside the context whose archives and layouts
    /// a Dockerfile may load.
    pub fs_read: &'a [PathBuf],
    /// Where a pull is reported: as a step of its own, its blobs within.
    pub reporter: &'a crate::solver::report::Reporter<'a>,
}

/// Finds `reference` in the store (or pulls it from its registry), loading it from a
/// layout or archive first if it names one. With a `platform`, the image of that platform:
/// the store's (an index's entry, compared normalized), else pulled for it; an image that
/// cannot be had for it (an image ID, a digest, an archive) is taken as it is, with
/// BuildKit's `InvalidBaseImagePlatform` warning.
pub(crate) fn resolve(
    store: &ContentStore,
    reference: &str,
    platform: Option<&Platform>,
    lookup: Lookup<'_>,
) -> Result<BaseImage, BuildError> {
    let mut warnings = Vec::new();
    let image = if let Some(rest) = reference.strip_prefix(OCI_LAYOUT_SCHEME) {
        load_layout_dir(store, rest, platform, lookup)?
    } else if let Some(file) = reference
        .strip_prefix(OCI_ARCHIVE_SCHEME)
        .or_else(|| reference.strip_prefix(DOCKER_ARCHIVE_SCHEME))
    {
        load_archive_once(store, Path::new(file), reference, platform, lookup)?
    } else {
        load_named(store, reference, platform, lookup, &mut warnings)?
    };
    if let Some(wanted) = platform {
        // BuildKit compares the os and architecture only.
        let found = config_platform(&image.config);
        if (&found.os, &found.architecture) != (&wanted.os, &wanted.architecture) {
            warnings.push(format!(
                "InvalidBaseImagePlatform: Base image {reference} was pulled with platform \
                 \"{found}\", expected \"{wanted}\" for current build"
            ));
        }
    }
    let digest = image.digest().map_err(crate::image::ImageError::from)?;
    Ok(BaseImage {
        image,
        digest,
        warnings,
    })
}

/// The directory remembering which archives were loaded, and as what.
const ARCHIVE_LOADS_DIR: &str = "archive-loads";

/// The first image of the archive `file` (of an index, `platform`'s): the one loaded by an earlier build when the file
/// is the same (device, inode, size, mtime, ctime, path) and its blobs are all still in the
/// store, else loaded now (and remembered). The ctime is in the key because a file
/// rewritten in place can keep its size and have its mtime set back, but no unprivileged
/// write can set the ctime back.
fn load_archive_once(
    store: &ContentStore,
    file: &Path,
    reference: &str,
    platform: Option<&Platform>,
    lookup: Lookup<'_>,
) -> Result<Image, BuildError> {
    let opened = fs::File::from(open_source(file, lookup, false)?);
    let meta = opened.metadata().map_err(io_err("read", file))?;
    let identity = format!(
        "{}:{}:{}:{}.{}:{}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    );
    let dir = store.root().join(ARCHIVE_LOADS_DIR);
    let record = dir.join(Digest::of(identity.as_bytes()).hex());
    // A descriptor is a few hundred bytes; a record that is not a small regular file
    // (a FIFO, a link, junk) is a miss.
    let remembered = crate::solver::cache::read_record(&record, 64 << 10)
        .and_then(|bytes| serde_json::from_slice::<Descriptor>(&bytes).ok())
        .and_then(|desc| Saved::load(store, &desc).ok())
        .filter(|saved| {
            saved.images().iter().all(|image| {
                store.contains(&image.config_digest)
                    && image.manifest.layers().iter().all(|layer| {
                        Digest::try_from(layer.digest()).is_ok_and(|d| store.contains(&d))
                    })
            })
        });
    let saved = match remembered {
        Some(saved) => saved,
        None => {
            // Loaded unnamed: the archive's own names (RepoTags, ref.name) never enter
            // the store.
            let saved = load_archive_file(store, opened, file, false)?
                .into_iter()
                .next()
                .map(|(saved, _)| saved)
                .ok_or_else(|| BuildError::ImageNotFound(reference.to_owned()))?;
            // Only a shortcut: failing to remember costs a reload next time, never the
            // build.
            if let Ok(bytes) = serde_json::to_vec(saved.descriptor()) {
                let _ = fs::create_dir_all(&dir);
                let _ = store.write_atomic(&record, &bytes);
            }
            saved
        }
    };
    // Of an index (a multi-platform archive), the target platform's image, as from a
    // layout; else the one a docker archive lists, with the caller's platform warning.
    let image = platform
        .and_then(|wanted| {
            saved
                .images()
                .iter()
                .find(|image| config_platform(&image.config) == *wanted)
        })
        .or_else(|| saved.docker_image())
        .cloned()
        .ok_or_else(|| BuildError::ImageNotFound(reference.to_owned()))?;
    Ok(image)
}

/// A name or image ID: the store's image, unless the store lacks it or `--pull` asks for
/// a fresh look-up, in which case the registry's (pulled into the store and named there).
/// Names in the store that `name` may be a typo of: the same repository under another
/// tag, or a name a few letters away.
fn similar_names(store: &ContentStore, name: &ImageName) -> Vec<String> {
    let wanted = name.familiar();
    let mut found: Vec<(f64, String)> = store
        .images()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n != name)
        .map(|n| {
            let familiar = n.familiar();
            let same_repo = n.full_repository() == name.full_repository();
            let score = if same_repo {
                1.0
            } else {
                strsim::jaro_winkler(&wanted, &familiar)
            };
            (score, familiar)
        })
        .filter(|(score, _)| *score >= 0.9)
        .collect();
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().take(3).map(|(_, n)| n).collect()
}

fn load_named(
    store: &ContentStore,
    reference: &str,
    platform: Option<&Platform>,
    lookup: Lookup<'_>,
    warnings: &mut Vec<String>,
) -> Result<Image, BuildError> {
    let name = reference.parse::<ImageName>().ok();
    let local = match store.resolve(reference) {
        Ok(named) => Some(named),
        Err(StoreError::ImageNotFound(_) | StoreError::Name(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(named) = &local {
        // An image ID names nothing in a registry, and a digest names content that cannot
        // change: neither needs a fresh look-up.
        let by_id = name.as_ref() != Some(&named.name);
        let by_digest = name.as_ref().is_some_and(|n| n.digest().is_some());
        if !lookup.pull || by_id || by_digest {
            match platform {
                None => return Ok(load_image(store, &named.descriptor)?),
                Some(platform) => {
                    if let Some(image) = load_image_for(store, &named.descriptor, platform)? {
                        return Ok(image);
                    }
                    // Not of this platform, and nothing to ask a registry for.
                    if by_id || by_digest {
                        return Ok(load_image(store, &named.descriptor)?);
                    }
                }
            }
        }
    }
    let Some(name) = name else {
        return Err(BuildError::ImageNotFound(reference.to_owned()));
    };
    // The store has the name, but not for the platform wanted (and not --pull).
    let store_platforms = match (&local, platform) {
        (Some(named), Some(_)) if !lookup.pull => platform_images(store, &named.descriptor)?
            .iter()
            .map(|image| config_platform(&image.config).to_string())
            .collect(),
        _ => Vec::new(),
    };
    let pulled = pull_base(store, &name, platform, lookup).map_err(|source| BuildError::Pull {
        reference: reference.to_owned(),
        in_store: local.is_some(),
        store_platforms,
        similar: similar_names(store, &name),
        source: Box::new(source),
    })?;
    for (mirror, why) in &pulled.skipped {
        warnings.push(format!(
            "registry mirror {mirror} skipped for {name}: {}",
            crate::error_chain::error_chain(why)
        ));
    }
    Ok(load_image(store, &pulled.descriptor)?)
}

/// Pulls `name` into the store as `rbuild pull` does: a `docker.io` name through the
/// mirrors first, plain HTTP for the insecure registries (and loopback). The pull is a
/// step of the build, named as BuildKit names its look-up of a base image.
fn pull_base(
    store: &ContentStore,
    name: &ImageName,
    platform: Option<&Platform>,
    lookup: Lookup<'_>,
) -> Result<Pulled, crate::registry::RegistryError> {
    let registry = lookup.registry;
    let options = registry.options();
    let origin = RegistryClient::new(name.registry(), options.clone())?;
    let step = lookup
        .reporter
        .internal_name(platform, &format!("load metadata for {name}"));
    lookup.reporter.in_step(&step, |sink| {
        pull_with_mirrors(
            &registry.registry_mirrors,
            &options,
            &origin,
            store,
            name,
            platform.map_or(PullPlatform::Host, PullPlatform::BaseFor),
            sink,
        )
    })
}

/// `DIR[:TAG]`: the tag is what follows the last `:` when it holds no `/`.
fn split_layout_ref(text: &str) -> (PathBuf, Option<&str>) {
    match text.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir.into(), Some(tag)),
        _ => (text.into(), None),
    }
}

fn load_layout_dir(
    store: &ContentStore,
    text: &str,
    platform: Option<&Platform>,
    lookup: Lookup<'_>,
) -> Result<Image, BuildError> {
    let (dir, tag) = split_layout_ref(text);
    let layout = Layout {
        layout: OciLayout::from_fd(dir.clone(), open_source(&dir, lookup, true)?)
            .map_err(|e| refused_by(&dir, e))?,
    };
    let index = layout.layout.index().map_err(|e| layout.refusal(e))?;
    let ref_name = |d: &Descriptor| crate::oci_layout::ref_name(d).map(str::to_owned);
    let chosen = match tag {
        Some(tag) => index
            .manifests()
            .iter()
            .find(|d| ref_name(d).as_deref() == Some(tag)),
        None if index.manifests().len() == 1 => index.manifests().first(),
        None => index
            .manifests()
            .iter()
            .find(|d| ref_name(d).as_deref() == Some("latest"))
            .or_else(|| index.manifests().first()),
    };
    let Some(desc) = chosen.cloned() else {
        return Err(BuildError::ImageNotFound(format!(
            "{OCI_LAYOUT_SCHEME}{text}"
        )));
    };
    layout.import_blob(store, &desc, 0, &mut std::collections::HashSet::new())?;
    if let Some(image) = platform
        .map(|p| load_image_for(store, &desc, p))
        .transpose()?
        .flatten()
    {
        return Ok(image);
    }
    Ok(load_image(store, &desc)?)
}

/// `path` made of its normal components only, `..` taking one away; `None` when it
/// is not absolute or climbs above `/`.
fn normalized(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    path.is_absolute().then_some(out)
}

/// `path` relative to `dir` when it lies beneath `dir` (as given or canonical).
fn beneath(path: &Path, dir: &Path) -> Option<PathBuf> {
    let given = normalized(&std::path::absolute(dir).ok()?)?;
    let canonical = fs::canonicalize(dir).ok();
    [Some(given), canonical]
        .into_iter()
        .flatten()
        .find_map(|d| path.strip_prefix(&d).ok().map(Path::to_path_buf))
}

/// Opens the archive file (or, with `dir`, the layout directory) a Dockerfile names at
/// `path`: inside the build context, or beneath a directory `--allow fs.read` allows;
/// never blocking, and only a regular file (a directory).
fn open_source(
    path: &Path,
    lookup: Lookup<'_>,
    dir: bool,
) -> Result<std::os::fd::OwnedFd, BuildError> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let (root, rel, how) = if path.is_absolute() {
        let Some(abs) = normalized(path) else {
            return Err(BuildError::OutsideContext {
                path: path.to_path_buf(),
            });
        };
        if let Some(rel) = beneath(&abs, lookup.context) {
            (lookup.context.to_path_buf(), rel, ResolveFlags::IN_ROOT)
        } else if let Some((root, rel)) = lookup
            .fs_read
            .iter()
            .find_map(|d| beneath(&abs, d).map(|rel| (d.clone(), rel)))
        {
            // Symlinks beneath the allowed directory are followed, but not out of it.
            (root, rel, ResolveFlags::BENEATH)
        } else {
            return Err(BuildError::OutsideContext {
                path: path.to_path_buf(),
            });
        }
    } else {
        (
            lookup.context.to_path_buf(),
            path.to_path_buf(),
            ResolveFlags::IN_ROOT,
        )
    };
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    let root_fd = crate::context::open_root(&root).map_err(io_err("read", &root))?;
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    let fd = rustix::fs::openat2(
        &root_fd,
        &rel,
        flags,
        Mode::empty(),
        how | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::XDEV => BuildError::OutsideContext {
            path: path.to_path_buf(),
        },
        other => io_err("read", path)(other.into()),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| io_err("read", path)(e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let want = if dir {
        FileType::Directory
    } else {
        FileType::RegularFile
    };
    if kind != want {
        return Err(io_err("read", path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            if dir {
                "not a directory"
            } else {
                "not a regular file"
            },
        )));
    }
    if !dir {
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| io_err("read", path)(e.into()))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
            .map_err(|e| io_err("read", path)(e.into()))?;
    }
    Ok(fd)
}

/// A layout failure of the `oci-layout://` directory `dir`, as a refusal to load it:
/// what is refused, missing or unparsable, named by its path in the layout.
fn refused_by(dir: &Path, e: LayoutError) -> BuildError {
    let rel = |path: &Path| path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let reason = match e {
        LayoutError::Refused { path, reason } => format!("{}: {reason}", rel(&path)),
        LayoutError::Io { path, source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            format!("{} is missing", rel(&path))
        }
        LayoutError::BlobNotFound { digest, .. } => format!("{} is missing", blob_rel(&digest)),
        LayoutError::Json { path, source } => {
            format!("{} is not an OCI index: {source}", rel(&path))
        }
        LayoutError::Io {
            action,
            path,
            source,
        } => return io_err(action, &path)(source),
        other => other.to_string(),
    };
    crate::export::ExportError::Archive {
        archive: dir.to_path_buf(),
        reason,
    }
    .into()
}

/// The sha256 and size of what `reader` yields.
fn hash_reader(reader: &mut dyn std::io::Read) -> std::io::Result<(Digest, u64)> {
    let mut hasher = crate::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let size = hasher.len();
    Ok((hasher.finish(), size))
}

/// An `oci-layout://` directory: an [`OciLayout`], read as data (beneath its root, no
/// symbolic link followed, documents bounded), whose blobs are imported into the store
/// only as their descriptors describe them.
struct Layout {
    layout: OciLayout,
}

impl Layout {
    fn refused(&self, reason: String) -> BuildError {
        crate::export::ExportError::Archive {
            archive: self.layout.dir().to_path_buf(),
            reason,
        }
        .into()
    }

    fn refusal(&self, e: LayoutError) -> BuildError {
        refused_by(self.layout.dir(), e)
    }

    /// Copies the blob `desc` names, and every blob it references, from the layout into
    /// the store; each is hashed and sized against its descriptor as it goes in, and
    /// committed only when it matches.
    fn import_blob(
        &self,
        store: &ContentStore,
        desc: &Descriptor,
        depth: usize,
        done: &mut std::collections::HashSet<Digest>,
    ) -> Result<(), BuildError> {
        let digest = Digest::try_from(desc.digest()).map_err(crate::image::ImageError::from)?;
        if depth > MAX_INDEX_DEPTH {
            return Err(self.refused(format!(
                "indexes nest more than {MAX_INDEX_DEPTH} deep at {digest} (an index naming itself?)"
            )));
        }
        if !done.insert(digest.clone()) {
            return Ok(());
        }
        check_document_size(desc).map_err(|reason| self.refused(reason))?;
        let rel = blob_rel(&digest);
        let path = self.layout.blob_path(&digest);
        let mut file = self
            .layout
            .open_blob(&digest)
            .map_err(|e| self.refusal(e))?;
        if store.contains(&digest) {
            // Only checked against its descriptor: the store has these bytes already.
            // Read no further than one byte past the size it promises.
            let mut bounded = std::io::Read::take(&mut file, desc.size().saturating_add(1));
            let (found, size) = hash_reader(&mut bounded).map_err(io_err("read", &path))?;
            if size > desc.size() {
                return Err(self.refused(
                    LayoutError::Overlong {
                        digest,
                        expected: desc.size(),
                    }
                    .to_string(),
                ));
            }
            if found != digest {
                return Err(self.refused(format!(
                    "blob {rel:?} does not hash to its name: its content is {found}"
                )));
            }
            if size != desc.size() {
                return Err(self.refused(format!(
                    "blob {digest} has {size} bytes, its descriptor says {}",
                    desc.size()
                )));
            }
        } else {
            store_verified(store, &mut file, &path, desc, &rel)?
                .map_err(|reason| self.refused(reason))?;
        }
        if crate::export::is_document(desc.media_type().as_ref()) {
            let bytes = store.read(&digest)?;
            let children = Children::parse(&bytes).map_err(|(field, e)| {
                self.refused(match field {
                    None => format!("{digest} is not JSON: {e}"),
                    Some("config") => format!("{digest} has a bad config descriptor: {e}"),
                    Some(field) => format!("{digest} has bad {field}: {e}"),
                })
            })?;
            let next = if children.manifests.is_some() {
                depth + 1
            } else {
                depth
            };
            for child in children.all() {
                self.import_blob(store, child, next, done)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_normalize_without_climbing_above_the_root() {
        assert_eq!(
            normalized(Path::new("/a/./b/../c.tar")),
            Some(PathBuf::from("/a/c.tar"))
        );
        assert_eq!(normalized(Path::new("/a/../../etc/shadow")), None);
        assert_eq!(normalized(Path::new("a/b.tar")), None);
        let dir = Path::new("/srv/allowed");
        assert_eq!(
            beneath(Path::new("/srv/allowed/x/y.tar"), dir),
            Some(PathBuf::from("x/y.tar"))
        );
        assert_eq!(beneath(Path::new("/srv/allowed-not/y.tar"), dir), None);
        assert_eq!(beneath(Path::new("/srv/y.tar"), dir), None);
    }

    #[test]
    fn layout_references_split_at_a_final_tag() {
        assert_eq!(
            split_layout_ref("/srv/img:v1"),
            (PathBuf::from("/srv/img"), Some("v1"))
        );
        assert_eq!(
            split_layout_ref("/srv/img"),
            (PathBuf::from("/srv/img"), None)
        );
        assert_eq!(
            split_layout_ref("./a:b/img"),
            (PathBuf::from("./a:b/img"), None)
        );
    }
}
