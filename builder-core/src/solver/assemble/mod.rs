//! The third phase: the image of the target stage. Labels and the creation time are
//! set, the layers' blobs fetched if the cache left them out, `--squash` merges layers
//! (squash.rs), cached layers of another compression are converted (recompress.rs), and
//! the config and manifest are stored: the result is [`Assembled`].

pub(crate) mod recompress;
pub(crate) mod squash;

use std::collections::BTreeMap;

use crate::image::{Image, ImageSpec};
use crate::solver::error::BuildError;
use crate::solver::prepare::Prepared;
use crate::solver::request::BuildSpec;
use crate::solver::runtime::Runtime;
use crate::solver::semantics;
use crate::solver::state::StageState;

/// The built image, stored (its config digest is the image ID), not yet named.
pub(crate) struct Assembled {
    pub image: Image,
}

/// What squashing and recompression read: the spec, the prepared build (base images)
/// and the machinery.
pub(crate) struct Assembly<'a> {
    pub spec: &'a BuildSpec,
    pub prepared: &'a Prepared,
    pub runtime: &'a Runtime<'a>,
}

/// Assembles the image of the target stage's final state `target`.
pub(crate) fn assemble(
    spec: &BuildSpec,
    prepared: &Prepared,
    runtime: &Runtime<'_>,
    target: StageState,
) -> Result<Assembled, BuildError> {
    let assembly = Assembly {
        spec,
        prepared,
        runtime,
    };
    let mut config = target.config.image;
    // The image is for the target, whatever platform its last stage ran as (a stage on a
    // `FROM --platform=$BUILDPLATFORM` stage), as BuildKit overwrites it.
    if let Some(platform) = &prepared.target_platform {
        semantics::set_platform(&mut config, platform);
    }
    if !spec.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &spec.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    // The image is as new as its newest history entry, so that a rebuild with nothing
    // changed gives the same image ID; with SOURCE_DATE_EPOCH it is the epoch, whatever
    // the base image's history says.
    config.created = if prepared.epoch.is_some() {
        Some(prepared.created.clone())
    } else {
        config
            .history
            .iter()
            .filter_map(|h| h.created.clone())
            .max()
            .or_else(|| Some(prepared.created.clone()))
    };
    config.rootfs.diff_ids = target
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    let mut layers = target.layers;
    // The image needs a blob per layer: made now for the layers steps kept only as
    // directories (once; a rebuild finds them), fetched for hits of an imported cache.
    runtime.ensure_blobs(&mut layers)?;
    runtime
        .cache
        .materialize(runtime.store, layers.iter().filter_map(|l| l.blob.as_ref()))?;
    let base = squash::apply(&assembly, &mut config, &mut layers, target.base)?;
    runtime.ensure_blobs(&mut layers)?;
    // The base image's layers are the bottom ones (none are left after --squash-all).
    let base_layers = base
        .as_ref()
        .and_then(|(_, digest)| prepared.bases.values().find(|b| &b.digest == digest))
        .map_or(0, |b| b.image.manifest.layers().len());
    recompress::apply(&assembly, &mut layers, base_layers)?;
    let image_spec = ImageSpec {
        config,
        base_layers: layers
            .iter()
            .map(|l| l.descriptor(spec.format))
            .collect::<Result<_, _>>()?,
        base,
        format: spec.format,
        annotations: Vec::new(),
    };
    let image = crate::image::assemble(runtime.store, &image_spec, &[])?;
    Ok(Assembled { image })
}
