//! Exporters: where a built image goes (`-o type=...`).
//!
//! [`ExportTarget`] parses docker build's `-o` syntax; [`export`] writes an image of the
//! store there: an OCI layout (tar or directory), a docker archive, the rootfs (directory
//! or tar), or names in the local store.

mod archive;
mod layout;
mod members;
mod platforms;
mod target;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};

pub(crate) use self::archive::{
    MAX_INDEX_DEPTH, check_document_size, is_document, load_archive_file, store_verified,
};
pub use self::archive::{
    import_rootfs, load_archive, load_archive_from, save_images, save_layout_dir,
};
pub use self::layout::DEST_STDOUT;
use self::layout::{AtomicFile, AtomicWriter, DirSink, LayoutSink, TarSink};
pub use self::platforms::export_index;
pub use self::target::{ExportTarget, InvalidExportTarget};
use crate::digest::Digest;
use crate::image::{Image, ImageError, PlatformIndex, config_platform};
use crate::layer::{ApplyMode, Compression, LayerError, chain_ids, write_merged_tar};
use crate::limits::ArchiveLimits;
use crate::oci_layout::blob_rel;
use crate::progress::{Counted, NullProgress, Progress, Transfer, TransferKind};
use crate::store::{ContentStore, ImageName, REF_NAME_ANNOTATION, StoreError};

/// containerd's annotation carrying an image's full name in an exported index, as BuildKit
/// writes it next to `org.opencontainers.image.ref.name` (which then holds the tag).
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// A failure exporting an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// An output file could not be written.
    #[error("failed to write export {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An archive or a file of it could not be read (`rbuild load`, `FROM
    /// docker-archive://`).
    #[error("failed to read archive {path}")]
    Read {
        /// The archive, or the scratch file holding one of its members.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An OCI layout directory being written could not be.
    #[error(transparent)]
    Layout(#[from] crate::oci_layout::LayoutError),
    /// Unpacking the rootfs failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A JSON document could not be serialized.
    #[error("failed to serialize {what}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A blob of the store does not hash to its name (or has not its recorded size)
    /// while being copied out; the export is abandoned and its output not written.
    #[error(
        "blob {digest} in the store is corrupt: {found}; nothing was exported (rbuild store verify finds such blobs)"
    )]
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What was read instead.
        found: String,
    },
    /// An archive being loaded holds or names something that is refused: a path that
    /// leaves the archive, a link, a blob that is missing or does not match its
    /// descriptor, a document that does not parse.
    #[error("refused to load {archive}: {reason}")]
    Archive {
        /// The archive or layout.
        archive: PathBuf,
        /// What is wrong, quoting the archive's names escaped.
        reason: String,
    },
    /// An output that holds one image was asked of a build of several platforms.
    #[error(
        "{output} holds one image, and the build made one for each of {platforms}: a \
         docker archive cannot hold an image index (BuildKit's docker exporter refused \
         it too); use -o type=oci, or build one platform for it"
    )]
    SeveralPlatforms {
        /// The output, as `-o` names it.
        output: &'static str,
        /// The platforms built, comma-separated.
        platforms: String,
    },
    /// `type=image`, `type=registry` and `--push` need at least one name.
    #[error("the image needs a name to be named or pushed: give one with -t (or name= in -o)")]
    NoName,
}

/// Something that takes a built image somewhere.
pub trait Exporter {
    /// Exports `image` of `store`, known by `names`.
    fn export(
        &self,
        store: &ContentStore,
        image: &Image,
        names: &[ImageName],
    ) -> Result<(), ExportError>;
}

impl Exporter for ExportTarget {
    fn export(
        &self,
        store: &ContentStore,
        image: &Image,
        names: &[ImageName],
    ) -> Result<(), ExportError> {
        export(store, self, image, names, &NullProgress).map(drop)
    }
}

/// Names `image` in the store under every one of `names` (at least one).
fn tag_all(store: &ContentStore, image: &Image, names: &[ImageName]) -> Result<(), ExportError> {
    if names.is_empty() {
        return Err(ExportError::NoName);
    }
    for name in names {
        store.tag(name, &image.descriptor)?;
    }
    Ok(())
}

fn json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, ExportError> {
    // Through Value so that every map is written in sorted key order.
    let value = serde_json::to_value(value).map_err(|source| ExportError::Json { what, source })?;
    serde_json::to_vec(&value).map_err(|source| ExportError::Json { what, source })
}

/// What an export left out, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exported {
    /// Device nodes of the image not made by a `type=local` export (paths in the image).
    pub skipped_devices: Vec<String>,
}

/// Where an export reports its transfers: the sink, and the destination they are for.
#[derive(Clone, Copy)]
pub(crate) struct Report<'a> {
    pub progress: &'a dyn Progress,
    pub target: &'a str,
}

impl Report<'_> {
    fn start(&self, digest: &Digest, size: u64) -> Transfer<'_> {
        Transfer::start(
            self.progress,
            TransferKind::Export,
            self.target,
            digest.as_str(),
            Some(size),
        )
    }
}

/// Writes the tar `write` makes to `dest` as a whole: at its end it replaces what `dest`
/// held, never half-written.
pub(crate) fn write_tar_file(
    dest: &Path,
    write: impl FnOnce(
        io::BufWriter<AtomicWriter>,
    ) -> Result<io::BufWriter<AtomicWriter>, crate::layer::LayerError>,
) -> Result<(), ExportError> {
    let file = AtomicWriter(AtomicFile::create(dest)?);
    let file = write(io::BufWriter::with_capacity(1 << 20, file))?;
    file.into_inner()
        .map_err(|e| ExportError::Write {
            path: dest.to_path_buf(),
            source: e.into_error(),
        })?
        .0
        .commit()?;
    Ok(())
}

/// How `target` is named in transfer reports: its destination, or nothing for the
/// store and registries.
pub(crate) fn shown_target(target: &ExportTarget) -> String {
    match target {
        ExportTarget::Oci { dest, .. }
        | ExportTarget::Docker { dest }
        | ExportTarget::Tar { dest }
        | ExportTarget::Local { dest } => dest.display().to_string(),
        ExportTarget::Image | ExportTarget::Registry { .. } => String::new(),
    }
}

/// Exports `image` to `target`. Each blob written (for `local` and `tar`, each layer the
/// store had not unpacked yet and unpacks for it) is a transfer reported to `progress`
/// (see [`Progress`]'s module, "Transfers").
pub fn export(
    store: &ContentStore,
    target: &ExportTarget,
    image: &Image,
    names: &[ImageName],
    progress: &dyn Progress,
) -> Result<Exported, ExportError> {
    let shown = shown_target(target);
    let report = Report {
        progress,
        target: &shown,
    };
    if let ExportTarget::Local { dest } = target {
        return export_local(store, image, dest, report);
    }
    let saved = Saved::Image(image.clone());
    match target {
        ExportTarget::Oci { dest, tar: true } => {
            let mut sink = Box::new(TarSink::create(dest)?);
            write_layout(store, sink.as_mut(), &[(&saved, names)], report)?;
            sink.finish()
        }
        ExportTarget::Oci { dest, tar: false } => {
            let mut sink = Box::new(DirSink::create(dest)?);
            write_layout(store, sink.as_mut(), &[(&saved, names)], report)?;
            sink.finish()
        }
        ExportTarget::Docker { dest } => {
            write_docker_archive(store, dest, &[(&saved, names)], report)
        }
        ExportTarget::Local { .. } => Ok(()),
        ExportTarget::Tar { dest } => {
            let dirs = layer_dirs(store, image, report)?;
            write_tar_file(dest, |out| write_merged_tar(out, &dirs))
        }
        ExportTarget::Image => tag_all(store, image, names),
        // The push itself needs registry settings: the builder does it after the export.
        ExportTarget::Registry { names: own } if !own.is_empty() => tag_all(store, image, own),
        ExportTarget::Registry { .. } => tag_all(store, image, names),
    }
    .map(|()| Exported::default())
}

/// The layout entries of `base` for `names`: one per name, with containerd's and
/// image-spec's name annotations as BuildKit writes them; `base` alone when there is no
/// name.
fn named_entries(base: &Descriptor, names: &[ImageName]) -> Vec<Descriptor> {
    if names.is_empty() {
        return vec![base.clone()];
    }
    names
        .iter()
        .map(|name| {
            let mut d = base.clone();
            let mut ann = HashMap::new();
            ann.insert(CONTAINERD_NAME_ANNOTATION.to_owned(), name.to_string());
            if let Some(tag) = name.tag() {
                ann.insert(REF_NAME_ANNOTATION.to_owned(), tag.to_owned());
            }
            d.set_annotations(Some(ann));
            d
        })
        .collect()
}

/// Writes the root file system of `image` (all its layers merged) into directory
/// `dest`.
pub fn unpack_rootfs(
    store: &ContentStore,
    image: &Image,
    dest: &std::path::Path,
) -> Result<(), ExportError> {
    let report = Report {
        progress: &NullProgress,
        target: "",
    };
    unpack(store, image, dest, ApplyMode::Merged, report).map(drop)
}

/// Writes the root file system of `image` into `dest` in `mode` (`Merged` or
/// `HostExport`); returns the device nodes not made.
///
/// The tree is read from the layers' directories in the store (see [`layer_dirs`]) as
/// one merged tar, which a second thread applies as it comes: each file is read once and
/// written once, and what a later layer replaces or deletes is never written at all.
fn unpack(
    store: &ContentStore,
    image: &Image,
    dest: &Path,
    mode: ApplyMode,
    report: Report<'_>,
) -> Result<Vec<String>, ExportError> {
    let dirs = layer_dirs(store, image, report)?;
    // The store's own trees, each already unpacked within the store's limits.
    let limits = ArchiveLimits::default()
        .with_max_entries(u64::MAX)
        .with_max_ratio(u64::MAX)
        .with_ratio_applies_above(u64::MAX);
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(CHANNEL_CHUNKS);
    let (written, applied) = std::thread::scope(|scope| {
        let dirs = &dirs;
        let writer = scope.spawn(move || {
            let out = io::BufWriter::with_capacity(CHANNEL_CHUNK, ChannelWriter(tx));
            write_merged_tar(out, dirs).and_then(|out| {
                out.into_inner().map(drop).map_err(|e| LayerError::Write {
                    path: PathBuf::from("/"),
                    source: e.into_error(),
                })
            })
        });
        let reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        let applied = crate::layer::apply_layer_limited(
            reader,
            dest,
            mode,
            &limits,
            "the image's root file system",
        );
        // The reader is gone: a writer still sending gets a broken pipe and stops.
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(LayerError::Read(io::Error::other("tar writer panicked"))));
        (written, applied)
    });
    match (written, applied) {
        (Ok(()), Ok(applied)) => Ok(applied.skipped_devices),
        // The applier's own failure stopped the writer: report the applier's.
        (Err(e), Err(applied)) if is_broken_pipe(&e) => Err(applied.into()),
        // A writer that failed ended the stream early, which can read as a complete
        // tar: its error is the cause whatever the applier saw.
        (Err(e), _) => Err(e.into()),
        (Ok(()), Err(e)) => Err(e.into()),
    }
}

/// Chunks of the tar between the two threads of [`unpack`]: at most this many in
/// flight, of this size.
const CHANNEL_CHUNKS: usize = 8;
const CHANNEL_CHUNK: usize = 256 << 10;

/// The writing end of [`unpack`]'s stream: each write is one chunk.
struct ChannelWriter(mpsc::SyncSender<Vec<u8>>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end of [`unpack`]'s stream; it ends when the writer is dropped.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn is_broken_pipe(e: &LayerError) -> bool {
    matches!(e, LayerError::Write { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}

/// The directories of `image`'s layers in the store (`<root>/layers/<chain_id>/`), lowest
/// first. A layer that only a blob holds is unpacked into the store first, and kept for
/// later builds; each such unpacking is a transfer reported.
fn layer_dirs(
    store: &ContentStore,
    image: &Image,
    report: Report<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    let layers = image.layers()?;
    let pairs = || layers.iter().map(|(blob, diff_id)| (blob, diff_id));
    let chain = chain_ids(layers.iter().map(|(_, diff_id)| diff_id));
    for (i, ((blob, _), chain_id)) in layers.iter().zip(&chain).enumerate() {
        if store.layer_dir(chain_id).is_dir() {
            continue;
        }
        let size = fs::metadata(store.blob_path(blob)).map_or(0, |m| m.len());
        let transfer = report.start(blob, size);
        store.unpack_layers(pairs().take(i + 1))?;
        transfer.finish(size);
    }
    Ok(store.unpack_layers(pairs())?)
}

/// Reads a blob while hashing and counting it; at the end of the blob it fails if the
/// content does not hash to `expected`, so a sink that copies to the end (a layout
/// directory) never commits a corrupt file. A sink that stops at the size it was told
/// (a tar) is checked by [`add_blob`] after the copy.
struct Checked<R> {
    inner: R,
    hasher: crate::digest::Hasher,
    expected: Digest,
}

impl<R: io::Read> io::Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            let found = self.hasher.clone().finish();
            if found != self.expected {
                return Err(io::Error::other(format!(
                    "blob {} in the store is corrupt: its content hashes to {found}",
                    self.expected
                )));
            }
        }
        Ok(n)
    }
}

/// Copies blob `digest` into the layout, hashing what is copied: a blob that does not
/// hash to its name fails the export (the sink's output is then never committed).
fn add_blob(
    store: &ContentStore,
    sink: &mut dyn LayoutSink,
    digest: &Digest,
    report: Report<'_>,
) -> Result<u64, ExportError> {
    let size = fs::metadata(store.blob_path(digest))
        .map_err(|_| StoreError::BlobNotFound(digest.clone()))?
        .len();
    let transfer = report.start(digest, size);
    let mut reader = Checked {
        inner: Counted {
            inner: store.open_blob(digest)?,
            transfer: &transfer,
        },
        hasher: crate::digest::Hasher::new(),
        expected: digest.clone(),
    };
    if let Err(e) = sink.add_blob(digest, size, &mut reader) {
        // The reader's own refusal names the corrupt blob; report it as such.
        let found = reader.hasher.clone().finish();
        if &found != digest && reader.hasher.len() >= size {
            return Err(ExportError::CorruptBlob {
                digest: digest.clone(),
                found: format!("its content hashes to {found}"),
            });
        }
        return Err(e);
    }
    let copied = reader.hasher.len();
    let found = reader.hasher.finish();
    if copied != size {
        return Err(ExportError::CorruptBlob {
            digest: digest.clone(),
            found: format!("{copied} bytes were read of its {size}"),
        });
    }
    if &found != digest {
        return Err(ExportError::CorruptBlob {
            digest: digest.clone(),
            found: format!("its content hashes to {found}"),
        });
    }
    transfer.finish(size);
    Ok(size)
}

/// `type=local`: the rootfs unpacked into `dest`. A new directory is unpacked beside it
/// and renamed into place when complete, so a failed export leaves no half tree under
/// its name; an existing directory is written into, as docker does.
fn export_local(
    store: &ContentStore,
    image: &Image,
    dest: &std::path::Path,
    report: Report<'_>,
) -> Result<Exported, ExportError> {
    let write_err = |source| ExportError::Write {
        path: dest.to_path_buf(),
        source,
    };
    if fs::symlink_metadata(dest).is_ok() {
        let skipped_devices = unpack(store, image, dest, ApplyMode::HostExport, report)?;
        return Ok(Exported { skipped_devices });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(write_err)?;
    let tmp = tempfile::Builder::new()
        .prefix(".rbuild-local-")
        .tempdir_in(&parent)
        .map_err(write_err)?;
    let skipped_devices = unpack(store, image, tmp.path(), ApplyMode::HostExport, report)?;
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(write_err)?;
    let kept = tmp.keep();
    fs::rename(&kept, dest).map_err(|e| {
        let _ = fs::remove_dir_all(&kept);
        write_err(e)
    })?;
    Ok(Exported { skipped_devices })
}

/// What one entry of a saved layout points to: an image, or an index of one image per
/// platform (saved whole, every platform's blobs with it, as docker's containerd image
/// store saves an index whose content it all has).
#[derive(Debug, Clone)]
// One per image a command saves, never many at once: the size of the larger variant
// costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Saved {
    /// One image's manifest.
    Image(Image),
    /// An image index and the image of each of its platforms.
    Index(PlatformIndex),
}

impl Saved {
    /// What `desc` (a name's descriptor in `store`) points to: an index (with each
    /// platform's image) or an image.
    pub fn load(store: &ContentStore, desc: &Descriptor) -> Result<Saved, ImageError> {
        if crate::image::index_documents(store, desc)?.is_empty() {
            return Ok(Saved::Image(crate::image::load_image(store, desc)?));
        }
        Ok(Saved::Index(PlatformIndex {
            descriptor: desc.clone(),
            images: crate::image::platform_images(store, desc)?,
        }))
    }

    /// Its images: the one, or each platform's.
    pub fn images(&self) -> &[Image] {
        match self {
            Saved::Image(image) => std::slice::from_ref(image),
            Saved::Index(index) => &index.images,
        }
    }

    /// The descriptor an entry of the layout's `index.json` points to.
    pub fn descriptor(&self) -> &Descriptor {
        match self {
            Saved::Image(image) => &image.descriptor,
            Saved::Index(index) => &index.descriptor,
        }
    }

    /// The image a docker archive's `manifest.json` lists for it (it lists one image per
    /// entry): of an index, the host's platform, else its first (containerd's exporter
    /// since 2.1 lists a platform the archive holds); `None` for an index of no image.
    pub(crate) fn docker_image(&self) -> Option<&Image> {
        let images = self.images();
        let host = crate::image::host_platform().to_string();
        images
            .iter()
            .find(|image| config_platform(&image.config).to_string() == host)
            .or_else(|| images.first())
    }
}

/// Writes an OCI image layout holding `entries`, each named as BuildKit names them.
pub(crate) fn write_layout(
    store: &ContentStore,
    sink: &mut dyn LayoutSink,
    entries: &[(&Saved, &[ImageName])],
    report: Report<'_>,
) -> Result<(), ExportError> {
    sink.add_marker()?;
    let mut written = std::collections::BTreeSet::new();
    let mut manifests: Vec<Descriptor> = Vec::new();
    for (saved, names) in entries {
        for image in saved.images() {
            let manifest_digest = image.digest().map_err(ImageError::from)?;
            let mut blobs = vec![manifest_digest, image.config_digest.clone()];
            blobs.extend(image.layers()?.into_iter().map(|(b, _)| b));
            for blob in blobs {
                if written.insert(blob.clone()) {
                    add_blob(store, sink, &blob, report)?;
                }
            }
        }
        if let Saved::Index(index) = saved {
            for digest in crate::image::index_documents(store, &index.descriptor)? {
                if written.insert(digest.clone()) {
                    add_blob(store, sink, &digest, report)?;
                }
            }
        }
        let mut base = saved.descriptor().clone();
        base.set_annotations(None);
        manifests.extend(named_entries(&base, names));
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| ExportError::Image(ImageError::Manifest(e)))?;
    sink.add_index(&index)
}

/// Docker's `manifest.json` entry (moby image/tarexport).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The warning for a docker archive of `images` when some of their layers are zstd:
/// docker 20.10 refuses such an archive ("Error processing tar file(exit status 1):
/// unexpected EOF"); docker 28.5 loads it.
pub fn zstd_docker_archive_warning<'a>(
    images: impl IntoIterator<Item = &'a Image>,
) -> Option<String> {
    let zstd = images.into_iter().any(|image| {
        image
            .manifest
            .layers()
            .iter()
            .any(|l| Compression::from_media_type(l.media_type().as_ref()) == Compression::Zstd)
    });
    zstd.then(|| {
        "the docker archive has zstd layers: docker 20.10 cannot load it (\"Error processing \
         tar file ... unexpected EOF\"), docker 23 and later can; build with --compression \
         gzip for older engines"
            .to_owned()
    })
}

/// Writes a `docker load`able archive: the OCI layout plus `manifest.json` and
/// `repositories`, as Docker 25 and later write them.
pub(crate) fn write_docker_archive(
    store: &ContentStore,
    dest: &std::path::Path,
    entries: &[(&Saved, &[ImageName])],
    report: Report<'_>,
) -> Result<(), ExportError> {
    let mut sink = Box::new(TarSink::create(dest)?);
    write_layout(store, sink.as_mut(), entries, report)?;
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (saved, names) in entries {
        let Some(image) = saved.docker_image() else {
            continue;
        };
        let tagged: Vec<&ImageName> = names.iter().filter(|n| n.tag().is_some()).collect();
        manifest.push(DockerManifestEntry {
            config: blob_rel(&image.config_digest),
            repo_tags: tagged.iter().map(|n| n.familiar()).collect(),
            layers: image.layers()?.iter().map(|(b, _)| blob_rel(b)).collect(),
        });
        for name in tagged {
            let top = image
                .layers()?
                .last()
                .map(|(b, _)| b.hex().to_owned())
                .unwrap_or_default();
            repositories
                .entry(name.familiar_repository())
                .or_default()
                .insert(name.tag().unwrap_or("latest").to_owned(), top);
        }
    }
    let bytes = json("manifest.json", &manifest)?;
    sink.add_file("manifest.json", &bytes)?;
    if !repositories.is_empty() {
        let bytes = json("repositories", &repositories)?;
        sink.add_file("repositories", &bytes)?;
    }
    sink.finish()
}
