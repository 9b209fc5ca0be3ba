//! `--cache-to`: which of this build's cache entries each export writes, and the
//! export steps. Above the cache (it reads the build's entries and fetches their blobs)
//! and the shared cache's formats and transports (which it calls to write them).

use rbuild_dockerfile::{Base, BuildGraph, StageId};

use crate::digest::Digest;
use crate::error_chain::error_chain;
use crate::layer::{Layer, LayerOptions};
use crate::progress::Event;
use crate::registry::RegistryConfig;
use crate::solver::cache::Cache;
use crate::solver::cache::entry::{CacheEntry, CachedLayer};
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
    let gathered = gather_all(store, cache, layer_options, exports, graph);
    write(store, exports, gathered, registry, reporter)
}

/// The entries one `--cache-to` writes, or why they could not be gathered.
pub(crate) type Gathered = Result<Vec<CacheEntry>, CacheShareError>;

/// Adds `more`, the entries of another platform's build for the same exports, to
/// `gathered` (an entry of a key already there once); the first failure of each export
/// stays.
pub(crate) fn merge(gathered: &mut Vec<Gathered>, more: Vec<Gathered>) {
    if gathered.is_empty() {
        *gathered = more;
        return;
    }
    for (have, more) in gathered.iter_mut().zip(more) {
        match (have, more) {
            (Ok(have), Ok(more)) => {
                for entry in more {
                    if !have.iter().any(|e| e.key == entry.key) {
                        have.push(entry);
                    }
                }
            }
            (have @ Ok(_), Err(e)) => *have = Err(e),
            (Err(_), _) => {}
        }
    }
}

/// The entries of this build (its `graph`, what `cache` recorded) for each of `exports`.
pub(crate) fn gather_all(
    store: &ContentStore,
    cache: &Cache,
    layer_options: &LayerOptions,
    exports: &[CacheExport],
    graph: &BuildGraph,
) -> Vec<Gathered> {
    exports
        .iter()
        .map(|export| gather(store, cache, layer_options, export, graph))
        .collect()
}

/// Writes each of `exports` with its `gathered` entries, as BuildKit shows it (a
/// registry export is a step of its own, its blobs pushed within it). A failed export
/// fails the build, unless it says `ignore-error=true`: then it is a warning.
pub(crate) fn write(
    store: &ContentStore,
    exports: &[CacheExport],
    gathered: Vec<Gathered>,
    registry: &RegistryConfig,
    reporter: &Reporter<'_>,
) -> Result<(), CacheShareError> {
    let progress = reporter.progress();
    for (export, entries) in exports.iter().zip(gathered) {
        let result = match &export.location {
            CacheLocation::Registry(_) => reporter.in_step("exporting cache to registry", |sink| {
                share::write(store, entries?, &export.location, registry, sink)
            }),
            CacheLocation::Local { .. } => entries.and_then(|entries| {
                share::write(store, entries, &export.location, registry, progress)
            }),
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

/// The entries of this build `export` asks for (all stages' or the target's chain), each
/// with its layer's blob at hand: fetched from the cache it came from, or made from the
/// directory the layer is kept as; an entry whose blob is nowhere any more is left out.
fn gather(
    store: &ContentStore,
    cache: &Cache,
    layer_options: &LayerOptions,
    export: &CacheExport,
    graph: &BuildGraph,
) -> Gathered {
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
    Ok(entries)
}
