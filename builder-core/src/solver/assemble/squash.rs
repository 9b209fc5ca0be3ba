//! `--squash` and `--squash-all`: layers of the built image merged into one.
//!
//! The merge reuses the step machinery: a snapshot is prepared over the layers that stay
//! (the base image's with `--squash`, none with `--squash-all`), the layers to merge are
//! applied onto it in order, as an image unpack does, and the snapshot's change set is
//! written as one layer. So a whiteout that hides a file of a kept layer survives (the
//! file is still deleted when the merged tree is compared with those layers), while a
//! file this build added and removed again leaves no trace, whiteout included.
//!
//! History as docker's `--squash` leaves it: the entries of the merged layers stay but
//! become `empty_layer`, and one entry is added for the merged layer, its comment naming
//! the image before the merge and the one it was merged onto.

use super::Assembly;
use crate::digest::Digest;
use crate::image::{History, ImageConfig, ImageError};
use crate::layer::{ApplyMode, apply_layer_limited};
use crate::solver::error::{BuildError, io_err};
use crate::solver::mounted_roots::with_roots;
use crate::solver::request::Squash;
use crate::solver::state::LayerRef;

/// What of the image stays below the merged layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    /// How many layers, bottom first.
    pub layers: usize,
    /// How many history entries, first first.
    pub history: usize,
}

/// Squashes the target's `layers` (and `config`) as the request asks; returns the base
/// image to record, none once `--squash-all` has merged its layers away.
pub(crate) fn apply(
    assembly: &Assembly<'_>,
    config: &mut ImageConfig,
    layers: &mut Vec<LayerRef>,
    base: Option<(String, Digest)>,
) -> Result<Option<(String, Digest)>, BuildError> {
    let how = assembly.spec.squash;
    if how == Squash::None {
        return Ok(base);
    }
    let base_digest = base.as_ref().map(|(_, digest)| digest);
    let kept = kept(assembly, how, base_digest);
    let base_id = (how == Squash::New)
        .then(|| {
            base_digest.and_then(|d| assembly.prepared.bases.values().find(|b| &b.digest == d))
        })
        .flatten()
        .map(|b| b.image.config_digest.clone());
    squash(assembly, config, layers, kept, base_id.as_ref())?;
    // After --squash-all no layer of the base image is left as it was.
    Ok(if how == Squash::All { None } else { base })
}

/// What stays under `how`: nothing for [`Squash::All`], the base image's layers and
/// history for [`Squash::New`] (`base` is the stage's base image manifest digest).
fn kept(assembly: &Assembly<'_>, how: Squash, base: Option<&Digest>) -> Kept {
    let none = Kept {
        layers: 0,
        history: 0,
    };
    match how {
        Squash::None | Squash::All => none,
        Squash::New => base
            .and_then(|digest| {
                assembly
                    .prepared
                    .bases
                    .values()
                    .find(|b| &b.digest == digest)
            })
            .map_or(none, |b| Kept {
                layers: b.image.manifest.layers().len(),
                history: b.image.config.history.len(),
            }),
    }
}

/// Merges `layers[kept.layers..]` into one layer and rewrites `config`'s history and
/// diff_ids to match; does nothing when there is no layer to merge. `base_id` names
/// what the layers were merged onto (the base image's ID), for the history comment.
fn squash(
    assembly: &Assembly<'_>,
    config: &mut ImageConfig,
    layers: &mut Vec<LayerRef>,
    kept: Kept,
    base_id: Option<&Digest>,
) -> Result<(), BuildError> {
    if layers.len() <= kept.layers {
        return Ok(());
    }
    let before = image_id(config)?;
    let merged = merge(assembly, &layers[..kept.layers], &layers[kept.layers..])?;
    layers.truncate(kept.layers);
    if let Some(layer) = &merged {
        layers.push(layer.clone());
    }
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    for entry in config.history.iter_mut().skip(kept.history) {
        entry.empty_layer = true;
    }
    let comment = match base_id {
        Some(base) => format!("merge {before} to {base}"),
        None => format!("merge {before}"),
    };
    // As new as the image (the newest entry, or SOURCE_DATE_EPOCH), so that a rebuild
    // from the cache gives the same image.
    config.history.push(History {
        created: config.created.clone(),
        created_by: None,
        comment: Some(comment),
        empty_layer: merged.is_none(),
    });
    Ok(())
}

/// The ID an image with `config` would have: the digest of its JSON.
fn image_id(config: &ImageConfig) -> Result<Digest, BuildError> {
    let bytes = serde_json::to_vec(config).map_err(|source| ImageError::Serialize {
        what: "config",
        source,
    })?;
    Ok(Digest::of(&bytes))
}

/// The layer `merged` makes on top of `below`: `None` when they change nothing.
fn merge(
    assembly: &Assembly<'_>,
    below: &[LayerRef],
    merged: &[LayerRef],
) -> Result<Option<LayerRef>, BuildError> {
    let store = assembly.runtime.store;
    let scratch = assembly.runtime.work().join("squash");
    std::fs::create_dir_all(&scratch).map_err(io_err("create directory", &scratch))?;
    let snapshot = assembly.runtime.snapshot(below, &scratch.join("root"))?;
    with_roots(&snapshot, &[], &scratch, |target, _| {
        for layer in merged {
            let blob = store.open_blob(layer.blob()?)?;
            let name = format!("the layer unpacked into {}", target.display());
            apply_layer_limited(
                blob,
                target,
                ApplyMode::Merged,
                &store.archive_limits(),
                &name,
            )?;
        }
        Ok(())
    })?;
    let layer = assembly.runtime.commit(&snapshot, below)?;
    drop(snapshot);
    let _ = assembly.runtime.store.remove_tree(&scratch);
    Ok(layer)
}
