//! What a `COPY` or `ADD` step reads: the copy op (heredocs expanded), where its sources
//! come from (the context, or a stage's or image's tree), the digest of what it selects
//! for the cache key, and the context files it selects for `--explain-cache`.

use std::collections::BTreeMap;

use rbuild_dockerfile::{Instruction, ShellLexer, Source, Step};

use super::error::{BuildError, Location};
use super::semantics;
use super::shared::{Shared, copy_source, root_key};
use super::state::{StageState, image_layers};
use crate::copy::{self, CopyOp, CopySource};
use crate::digest::Digest;

/// What a `COPY`/`ADD` reads: where from, its digest for the key, and the context
/// files it selects (for `--explain-cache`).
pub(crate) fn copy_input(
    shared: &Shared<'_>,
    step: &Step,
    workdir: &str,
) -> Result<CopyInput, BuildError> {
    let mut op = match &step.instruction {
        Instruction::Copy(c) => CopyOp::from_copy(c, workdir),
        Instruction::Add(a) => CopyOp::from_add(a, workdir),
        _ => return Ok(CopyInput::default()),
    };
    op.limits = shared.limits;
    expand_heredocs(&mut op, step).map_err(|error| BuildError::HeredocExpansion {
        at: Location::new(
            &shared.prepared.file_name,
            &shared.prepared.text,
            Some(step.span),
        ),
        error,
    })?;
    match copy_source(&shared.prepared.graph, step) {
        Some(source) => {
            let state = source_state(shared, &source)?;
            let written = match &step.instruction {
                Instruction::Copy(c) => c.from.clone(),
                _ => None,
            };
            let label = written.unwrap_or_else(|| match &source {
                Source::Stage(id) => id.to_string(),
                Source::Image(reference) => reference.clone(),
            });
            Ok(CopyInput {
                op: Some(op),
                from_key: Some((label, state.key.to_string())),
                from: Some(state.clone()),
                // A stage's key covers its content; the step digest covers the
                // selection.
                digest: Some(Digest::of(state.key.to_string().as_bytes())),
                files: BTreeMap::new(),
                list: None,
            })
        }
        None => {
            let Some(context) = shared.prepared.context.as_ref() else {
                return Ok(CopyInput {
                    op: Some(op),
                    ..CopyInput::default()
                });
            };
            let from = CopySource::Context {
                root: &context.root,
                listing: &context.listing,
                hashes: &context.hashes,
            };
            let list_dir = shared.runtime.cache.sources_dir();
            let described = copy::describe_sources_in(&op, &from, Some(&list_dir))?;
            Ok(CopyInput {
                op: Some(op),
                from: None,
                from_key: None,
                list: described
                    .list
                    .as_ref()
                    .map(|_| described.key.hex().to_owned()),
                digest: Some(described.key),
                files: described.files,
            })
        }
    }
}

pub(crate) fn source_state(shared: &Shared<'_>, source: &Source) -> Result<StageState, BuildError> {
    match source {
        Source::Stage(id) => shared
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or(BuildError::Canceled),
        Source::Image(reference) => {
            // An image read by a step is for the target, as BuildKit makes it a stage.
            let base = shared
                .prepared
                .base(reference, shared.prepared.target_platform.clone())
                .ok_or_else(|| BuildError::ImageNotFound(reference.clone()))?;
            Ok(StageState {
                config: semantics::new_stage_config(Some(&base.image.config)),
                layers: image_layers(&base.image)?,
                key: root_key(Some(base)),
                base: None,
            })
        }
    }
}

/// What a `COPY`/`ADD` step reads.
#[derive(Default)]
pub(crate) struct CopyInput {
    pub op: Option<CopyOp>,
    /// The stage or image it copies from (`--from`), or the context when `None`.
    pub from: Option<StageState>,
    /// `--from` as written and the key of the source's content.
    pub from_key: Option<(String, String)>,
    pub digest: Option<Digest>,
    pub files: BTreeMap<String, String>,
    /// Instead of `files` for a large copy: its list's name in the cache's `sources/`.
    pub list: Option<String>,
}

/// Expands the heredoc sources whose delimiter was not quoted, with the step's build
/// arguments and environment, as BuildKit does (`SourcesAndDest.ExpandRaw`): variables
/// are expanded and backslash escapes processed; quotes stay as written.
fn expand_heredocs(op: &mut CopyOp, step: &Step) -> Result<(), rbuild_dockerfile::ExpandError> {
    for heredoc in op.heredocs.iter_mut().filter(|h| h.expand) {
        heredoc.content = ShellLexer::expand_inline_file(&heredoc.content, &step.run_env)?;
    }
    Ok(())
}
