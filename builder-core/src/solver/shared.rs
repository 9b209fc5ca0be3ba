//! What the stage runs of one build share: the prepared graph, the runtime, the
//! request, the stages' final states and the steps' reports; and two small questions
//! every stage asks of the graph. Below the scheduler, the stage runs and their
//! sources, so none of them imports the phase that drives them.

use std::collections::HashMap;
use std::sync::Mutex;

use rbuild_dockerfile::{BuildGraph, EdgeKind, GraphStage, Source, StageId, Step};

use super::cache::entry::CacheKey;
use super::prepare::Prepared;
use super::prepare::base::BaseImage;
use super::request::{BuildRequest, StepReport};
use super::runtime::Runtime;
use super::state::StageState;
use crate::limits::Limits;

/// What every stage of one build shares.
pub(crate) struct Shared<'a> {
    pub runtime: &'a Runtime<'a>,
    pub request: &'a BuildRequest,
    pub prepared: &'a Prepared,
    /// The builder's limits (`ADD`'s archives and downloads are within them).
    pub limits: Limits,
    pub states: Mutex<HashMap<StageId, StageState>>,
    pub reports: Mutex<Vec<StepReport>>,
}

impl Shared<'_> {
    /// Whether `--no-cache` or `--no-cache-filter` covers `stage`.
    pub(crate) fn cache_disabled(&self, stage: &GraphStage) -> bool {
        self.request.options.no_cache
            || self.request.options.no_cache_filter.iter().any(|f| {
                stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                    || f.parse::<u32>().ok() == Some(stage.id.0)
            })
    }
}

/// Whether `edge` is the `COPY --from` of `step`.
pub(crate) fn copy_source(graph: &BuildGraph, step: &Step) -> Option<Source> {
    graph
        .edges
        .iter()
        .find(|e| e.step == Some(step.id) && e.kind == EdgeKind::CopyFrom)
        .map(|e| e.source.clone())
}

/// The cache key a stage built on `base` starts from.
pub(crate) fn root_key(base: Option<&BaseImage>) -> CacheKey {
    base.map_or_else(CacheKey::scratch, |b| CacheKey::image(&b.digest))
}
