//! `--cache-to`: which of this build's cache entries each export writes, and the
//! export steps. Above the cache (it reads the build's entries and fetches their blobs)
//! and the shared cache's formats and transports (which it calls to write them).

use rbuild_dockerfile::{Base, BuildGraph, StageId};

use crate::digest::Digest;
use crate::error_chain::error_chain;
use crate::layer::{Layer, LayerOptions};
use crate::progress::{Event, Progress};
use crate::registry::RegistryConfig;
use crate::solver::cache::Cache;
use crate::solver::cache::entry::CachedLayer;
use crate::solver::cache::share::{self, CacheExport, CacheLocation, CacheMode, CacheShareError};
use crate::solver::report::Reporter;
use crate::store::ContentStore;

/// The stages `mode` exports: all of them, or the target and the stages it is built on.
fn exported_stages(graph: &BuildGraph, mode: CacheMode) -> Vec<StageId> {
    if mode == CacheMode::Max {
        return graph.stages.iter().map(|s| s.id).collect();
    }
    let mut chain = vec![graph.target];
    let mut current = graph.target;
    while let Some(Base::Stage(parent)) = graph.stage(current).map(|s| &s.base) {
        if chain.contains(parent) {
            break;
        }
        chain.push(*parent);
        current = *parent;
    }
    chain
}

/// Writes the entries of this build that each `--cache-to` asks for. A failed export
/// fails the build, unless it says `ignore-error=true`: then it is a warning.
pub(crate) fn export(
    store: &ContentStore,
    cache: &Cache,
    layer_options: &LayerOptions,
    exports: &[CacheExport],
    graph: &BuildGraph,
    registry: &RegistryConfig,
    reporter: &Reporter<'_>,
) -> Result<(), CacheShareError> {
    let progress = reporter.progress();
    for export in exports {
        let result = match &export.location {
            // As BuildKit shows it: a step of its own, the blobs pushed within it.
            CacheLocation::Registry(_) => reporter.in_step("exporting cache to registry", |sink| {
                export_one(store, cache, layer_options, export, graph, registry, sink)
            }),
            CacheLocation::Local { .. } => export_one(
                store,
                cache,
                layer_options,
                export,
                graph,
                registry,
                progress,
            ),
        };
        match result {
            Err(e) if export.ignore_error => progress.event(&Event::Warning {
                rule: None,
                message: format!(
                    "cache {} not exported: {}",
                    export.location,
                    error_chain(&e)
                ),
                line: None,
            }),
            other => other?,
        }
    }
    Ok(())
}

/// The blob of `layer`, a layer kept as a directory, made from it (`None` when the store
/// no longer holds the directory).
fn blob_of_dir(
    store: &ContentStore,
    layer: &CachedLayer,
    options: &LayerOptions,
) -> Result<Option<Layer>, CacheShareError> {
    let (Some(chain_id), Ok(diff_id)) = (
        layer
            .chain_id
            .as_deref()
            .and_then(|c| c.parse::<Digest>().ok()),
        layer.diff_id.parse::<Digest>(),
    ) else {
        return Ok(None);
    };
    if store.layer_record(&chain_id).is_none() {
        return Ok(None);
    }
    store
        .blob_from_dir(&chain_id, &diff_id, options)
        .map(Some)
        .map_err(|e| CacheShareError::Format {
            reason: error_chain(&e),
        })
}

fn export_one(
    store: &ContentStore,
    cache: &Cache,
    layer_options: &LayerOptions,
    export: &CacheExport,
    graph: &BuildGraph,
    registry: &RegistryConfig,
    progress: &dyn Progress,
) -> Result<(), CacheShareError> {
    let stages = exported_stages(graph, export.mode);
    let mut entries = Vec::new();
    for key in cache.used_keys(&stages) {
        let Some(entry) = cache.get(&key) else {
            continue;
        };
        // A hit from another cache whose blob was never needed is fetched now; an entry
        // whose blob is nowhere any more is left out.
        let mut entry = entry;
        if let Some(layer) = &entry.layer {
            match &layer.digest {
                Some(digest) => {
                    let digest: Digest = digest.parse()?;
                    if !store.contains(&digest) && !cache.fetch_blob(store, &digest)? {
                        continue;
                    }
                }
                // A layer kept as a directory gets its blob now, recorded in the entry.
                None => {
                    let Some(made) = blob_of_dir(store, layer, layer_options)? else {
                        continue;
                    };
                    entry.layer = Some(layer.with_blob(&made));
                    cache
                        .put(&key, &entry)
                        .map_err(|e| CacheShareError::Format {
                            reason: error_chain(&e),
                        })?;
                }
            }
        }
        entries.push(entry);
    }
    share::write(store, entries, &export.location, registry, progress)
}
