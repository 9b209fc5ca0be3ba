//! `--cache-to`: which of this build's cache entries each export writes, and the
//! export steps. Above the cache (it reads the build's entries and fetches their blobs)
//! and the shared cache's formats and transports (which it calls to write them).

use rbuild_dockerfile::{Base, BuildGraph, StageId};

use crate::digest::Digest;
use crate::error_chain::error_chain;
use crate::progress::{Event, Progress};
use crate::registry::RegistryConfig;
use crate::solver::cache::Cache;
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
                export_one(store, cache, export, graph, registry, sink)
            }),
            CacheLocation::Local { .. } => {
                export_one(store, cache, export, graph, registry, progress)
            }
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

fn export_one(
    store: &ContentStore,
    cache: &Cache,
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
        if let Some(layer) = &entry.layer {
            let digest: Digest = layer.digest.parse()?;
            if !store.contains(&digest) && !cache.fetch_blob(store, &digest)? {
                continue;
            }
        }
        entries.push(entry);
    }
    share::write(store, entries, &export.location, registry, progress)
}
