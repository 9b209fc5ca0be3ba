//! `SOURCE_DATE_EPOCH` (reproducible-builds.org): the build's epoch, and how it enters
//! step cache keys and `RUN` environments.

use super::cache::entry::CacheKey;
use super::error::BuildError;
use super::request::BuildSpec;
use crate::digest::Digest;
use crate::exec::RunSpec;

/// The build argument (and `RUN` variable) of reproducible-builds.org's
/// `SOURCE_DATE_EPOCH` specification.
pub(crate) const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The build's `SOURCE_DATE_EPOCH`: the request's, else the build argument's (an empty
/// argument means none, as the specification reads an empty variable).
pub(crate) fn source_date_epoch(spec: &BuildSpec) -> Result<Option<u64>, BuildError> {
    if let Some(epoch) = spec.source_date_epoch {
        return Ok(Some(epoch));
    }
    let Some((_, value)) = spec
        .build_args
        .iter()
        .rev()
        .find(|(k, _)| k == SOURCE_DATE_EPOCH)
    else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Ok(None);
    }
    value
        .trim()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| BuildError::SourceDateEpoch {
            value: value.clone(),
        })
}

/// `key` for a step of a build with `epoch`: a layer written under SOURCE_DATE_EPOCH has
/// its mtimes clamped (and its `RUN` saw the variable), so it is not the layer of a build
/// without one, or with another. The epoch goes into the key rather than timestamps
/// being rewritten on reuse, so a cached layer is always exactly what its step wrote.
pub(crate) fn step_key(key: CacheKey, epoch: Option<u64>) -> CacheKey {
    match epoch {
        Some(epoch) => CacheKey::step(
            &key,
            "source-date-epoch",
            Some(&Digest::of(epoch.to_string().as_bytes())),
        ),
        None => key,
    }
}

/// Gives a `RUN` the variable, as BuildKit does: tools in the step (pip, compilers) read
/// it to write reproducible output. A value the Dockerfile set wins.
pub(crate) fn add_run_env(spec: &mut RunSpec, epoch: Option<u64>) {
    if let Some(epoch) = epoch {
        if !spec.env.iter().any(|(k, _)| k == SOURCE_DATE_EPOCH) {
            spec.env
                .push((SOURCE_DATE_EPOCH.to_owned(), epoch.to_string()));
        }
    }
}
