//! The last phase: where the assembled image goes. It is named (`-t`), exported
//! (`-o`, each as BuildKit shows it, a step of its own for those that write files), the
//! build's cache exported (`--cache-to`, cache_export.rs) and the image pushed
//! (`--push`, `-o type=registry`, push.rs), in that order. The image index of a build
//! of several platforms goes the same ways ([`output_index`]).

pub(crate) mod cache_export;
pub(crate) mod push;

use crate::digest::Digest;
use crate::export::{ExportTarget, Exported, export, export_index};
use crate::image::{PlatformIndex, tag_image};
use crate::progress::Event;
use crate::solver::assemble::Assembled;
use crate::solver::error::BuildError;
use crate::solver::prepare::Prepared;
use crate::solver::report::Reporter;
use crate::solver::request::BuildOptions;
use crate::solver::runtime::Runtime;
use crate::store::{ContentStore, ImageName};

/// Where the image went.
pub(crate) struct Output {
    /// The names it was given in the store.
    pub names: Vec<ImageName>,
    /// The names pushed, each with the manifest digest its registry stored.
    pub pushed: Vec<(ImageName, Digest)>,
}

/// Names, exports, exports the cache of and pushes `assembled` as `options` ask.
pub(crate) fn output(
    prepared: &Prepared,
    runtime: &Runtime<'_>,
    options: &BuildOptions,
    assembled: &Assembled,
) -> Result<Output, BuildError> {
    let image = &assembled.image;
    for name in &options.tags {
        tag_image(runtime.store, name, image)?;
    }
    for output in &options.outputs {
        if let (ExportTarget::Docker { .. }, Some(message)) =
            (output, crate::export::zstd_docker_archive_warning([image]))
        {
            runtime.reporter.event(&Event::Warning {
                rule: None,
                message,
                line: None,
            });
        }
        let exported = match export_step_name(output) {
            Some(name) => runtime.reporter.in_step(name, |sink| {
                export(runtime.store, output, image, &options.tags, sink)
            })?,
            None => export(
                runtime.store,
                output,
                image,
                &options.tags,
                runtime.reporter.progress(),
            )?,
        };
        warn_skipped_devices(runtime.reporter, &exported);
    }
    cache_export::export(
        runtime.store,
        &runtime.cache,
        &runtime.layer_options,
        &options.cache_to,
        &prepared.graph,
        &options.registry,
        runtime.reporter,
    )?;
    let names = push::names_to_push(options);
    let pushed = if names.is_empty() {
        Vec::new()
    } else {
        // BuildKit pushes within its "exporting to image" step.
        runtime.reporter.in_step("exporting to image", |sink| {
            push::push_image(runtime.store, image, &names, &options.registry, sink)
        })?
    };
    Ok(Output {
        names: options.tags.clone(),
        pushed,
    })
}

/// Names, exports and pushes `index`, the images of a build of several platforms, as
/// `options` ask: the names point to the index, each output holds every platform
/// ([`export_index`]), each `--cache-to` writes the `cache` entries gathered from every
/// platform's build (see [`cache_export::merge`]), each push sends the platforms'
/// manifests and then the index.
pub(crate) fn output_index(
    store: &ContentStore,
    reporter: &Reporter<'_>,
    options: &BuildOptions,
    index: &PlatformIndex,
    cache: Vec<cache_export::Gathered>,
) -> Result<Output, BuildError> {
    for name in &options.tags {
        store.tag(name, &index.descriptor)?;
    }
    for output in &options.outputs {
        let exported = match export_step_name(output) {
            Some(name) => reporter.in_step(name, |sink| {
                export_index(store, output, index, &options.tags, sink)
            })?,
            None => export_index(store, output, index, &options.tags, reporter.progress())?,
        };
        warn_skipped_devices(reporter, &exported);
    }
    cache_export::write(store, &options.cache_to, cache, &options.registry, reporter)?;
    let names = push::names_to_push(options);
    let pushed = if names.is_empty() {
        Vec::new()
    } else {
        let digest = index.digest().map_err(crate::image::ImageError::from)?;
        let first = index.images.first();
        reporter.in_step("exporting to image", |sink| {
            push::push_manifest_of(store, &digest, first, &names, &options.registry, sink)
        })?
    };
    Ok(Output {
        names: options.tags.clone(),
        pushed,
    })
}

/// The warning for the device nodes a `local` export did not make.
fn warn_skipped_devices(reporter: &Reporter<'_>, exported: &Exported) {
    if !exported.skipped_devices.is_empty() {
        reporter.event(&Event::Warning {
            rule: None,
            message: format!(
                "the local export did not make the image's device nodes on the host ({}): \
                 use -o type=tar or type=oci to keep them",
                exported.skipped_devices.join(", ")
            ),
            line: None,
        });
    }
}

/// The step BuildKit shows for an output that writes files, by its exporter's name.
fn export_step_name(output: &ExportTarget) -> Option<&'static str> {
    match output {
        ExportTarget::Oci { .. } => Some("exporting to oci image format"),
        ExportTarget::Docker { .. } => Some("exporting to docker image format"),
        ExportTarget::Local { .. } => Some("exporting to client directory"),
        ExportTarget::Tar { .. } => Some("exporting to client tarball"),
        ExportTarget::Image | ExportTarget::Registry { .. } => None,
    }
}
