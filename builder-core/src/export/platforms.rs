//! The outputs of a build of several platforms: its image index in an OCI layout, each
//! platform's root file system in a directory of its own (`local`, `tar`), the index
//! named (`image`, `registry`); BuildKit's exporters of a multi-platform result.

use std::fs;
use std::path::{Path, PathBuf};

use super::layout::{DirSink, LayoutSink, TarSink};
use super::{
    ExportError, ExportTarget, Exported, Report, Saved, export_local, layer_dirs, write_layout,
};
use crate::image::{Image, PlatformIndex, config_platform};
use crate::layer::write_merged_tars;
use crate::progress::Progress;
use crate::store::{ContentStore, ImageName};

/// Exports `index`, the images of a build of several platforms, to `target`, as BuildKit
/// exports a multi-platform result: `oci` writes a layout whose `index.json` points to the
/// image index (every platform's blobs in it); `local` and `tar` write each platform's
/// root file system under a directory named after it (`linux_amd64`, `linux_arm/v7` as
/// `linux_arm_v7`); `image` and `registry` name the index. A docker archive holds one
/// image: `docker` is refused ([`ExportError::SeveralPlatforms`]).
pub fn export_index(
    store: &ContentStore,
    target: &ExportTarget,
    index: &PlatformIndex,
    names: &[ImageName],
    progress: &dyn Progress,
) -> Result<Exported, ExportError> {
    let shown = super::shown_target(target);
    let report = Report {
        progress,
        target: &shown,
    };
    let tag = |names: &[ImageName]| -> Result<Exported, ExportError> {
        if names.is_empty() {
            return Err(ExportError::NoName);
        }
        for name in names {
            store.tag(name, &index.descriptor)?;
        }
        Ok(Exported::default())
    };
    let saved = Saved::Index(index.clone());
    match target {
        ExportTarget::Oci { dest, tar: true } => {
            let mut sink = Box::new(TarSink::create(dest)?);
            write_layout(store, sink.as_mut(), &[(&saved, names)], report)?;
            sink.finish()?;
            Ok(Exported::default())
        }
        ExportTarget::Oci { dest, tar: false } => {
            let mut sink = Box::new(DirSink::create(dest)?);
            write_layout(store, sink.as_mut(), &[(&saved, names)], report)?;
            sink.finish()?;
            Ok(Exported::default())
        }
        ExportTarget::Docker { .. } => Err(ExportError::SeveralPlatforms {
            output: "a docker archive (-o type=docker)",
            platforms: index
                .images
                .iter()
                .map(|i| config_platform(&i.config).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        ExportTarget::Local { dest } => export_local_platforms(store, index, dest, report),
        ExportTarget::Tar { dest } => {
            let mut trees = Vec::new();
            for image in &index.images {
                trees.push((
                    PathBuf::from(platform_dir(image)),
                    layer_dirs(store, image, report)?,
                ));
            }
            super::write_tar_file(dest, |out| write_merged_tars(out, &trees))?;
            Ok(Exported::default())
        }
        ExportTarget::Image => tag(names),
        ExportTarget::Registry { names: own } if !own.is_empty() => tag(own),
        ExportTarget::Registry { .. } => tag(names),
    }
}

/// The directory a platform's files go to in a `local` or `tar` export of several
/// platforms: its `os/arch[/variant]` with `_` for `/` (BuildKit's local exporter).
fn platform_dir(image: &Image) -> String {
    config_platform(&image.config).to_string().replace('/', "_")
}

/// `type=local` of several platforms: each platform's root file system in its own
/// directory of `dest` (see [`platform_dir`]); `dest` is made if missing (mode 0755).
/// The device nodes not made are reported with their platform's directory.
fn export_local_platforms(
    store: &ContentStore,
    index: &PlatformIndex,
    dest: &Path,
    report: Report<'_>,
) -> Result<Exported, ExportError> {
    if fs::symlink_metadata(dest).is_err() {
        fs::create_dir_all(dest).map_err(|source| ExportError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
        fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(
            |source| ExportError::Write {
                path: dest.to_path_buf(),
                source,
            },
        )?;
    }
    let mut skipped_devices = Vec::new();
    for image in &index.images {
        let dir = platform_dir(image);
        let exported = export_local(store, image, &dest.join(&dir), report)?;
        skipped_devices.extend(
            exported
                .skipped_devices
                .into_iter()
                .map(|path| format!("{dir}/{}", path.trim_start_matches('/'))),
        );
    }
    Ok(Exported { skipped_devices })
}
