//! The limits `rbuild` reads from its environment and hands to the library, which reads
//! none: `RBUILD_ARCHIVE_MAX_RATIO`, `RBUILD_ARCHIVE_RATIO_ABOVE`,
//! `RBUILD_ARCHIVE_MAX_ENTRIES` (tar bombs) and `RBUILD_HTTP_TIMEOUT` (seconds per HTTP
//! request).

use std::time::Duration;

use rbuild_core::limits::{
    ArchiveLimits, HTTP_TIMEOUT_ENV, Limits, MAX_ENTRIES_ENV, MAX_RATIO_ENV, RATIO_ABOVE_ENV,
};

/// The archive limits: the library's defaults, changed by whichever of the variables
/// are set.
pub fn archive() -> anyhow::Result<ArchiveLimits> {
    let read = |var: &str| -> anyhow::Result<Option<u64>> {
        match std::env::var(var) {
            Ok(value) => match value.trim().parse() {
                Ok(n) => Ok(Some(n)),
                Err(_) => anyhow::bail!("invalid {var}={value:?}: expected a whole number"),
            },
            Err(_) => Ok(None),
        }
    };
    let mut limits = ArchiveLimits::default();
    if let Some(ratio) = read(MAX_RATIO_ENV)? {
        limits = limits.with_max_ratio(ratio);
    }
    if let Some(above) = read(RATIO_ABOVE_ENV)? {
        limits = limits.with_ratio_applies_above(above);
    }
    if let Some(entries) = read(MAX_ENTRIES_ENV)? {
        limits = limits.with_max_entries(entries);
    }
    Ok(limits)
}

/// The deadline of one HTTP request: `RBUILD_HTTP_TIMEOUT` (whole seconds, at least 1)
/// if it is set, else the library's default.
pub fn http_deadline() -> Result<Duration, String> {
    match std::env::var(HTTP_TIMEOUT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Limits::default().http_deadline),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(format!(
                "invalid {HTTP_TIMEOUT_ENV} {v:?}: expected a whole number of seconds, at least 1"
            )),
        },
        Err(e) => Err(format!("invalid {HTTP_TIMEOUT_ENV}: {e}")),
    }
}

/// Every limit a build gets.
pub fn from_env() -> anyhow::Result<Limits> {
    Ok(Limits::default()
        .with_archive(archive()?)
        .with_http_deadline(http_deadline().map_err(anyhow::Error::msg)?))
}
