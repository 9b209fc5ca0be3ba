//! The image config JSON, with docker's field names and docker's extensions.
//!
//! image-spec config.md defines the OCI fields; docker adds `Healthcheck`, `Shell`,
//! `OnBuild` and others that oci-spec's struct does not carry, so rbuild keeps its own
//! serde types that read and write both. Maps are ordered so that the same config always
//! serializes to the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The empty JSON object docker uses as the value of `ExposedPorts` and `Volumes` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// docker's `HEALTHCHECK` settings (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time a check may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Grace period after start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Time between checks during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The `config` object: how to run a container of the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: `"80/tcp": {}`.
    #[serde(default, skip_serializing_if = "no_entries")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `ENV`, as `KEY=value`.
    #[serde(default, skip_serializing_if = "no_items")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "no_items")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "no_items")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(default, skip_serializing_if = "no_entries")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "no_entries")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// docker: `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// docker: `SHELL`.
    #[serde(default, skip_serializing_if = "no_items")]
    pub shell: Option<Vec<String>>,
    /// docker: `ONBUILD` triggers.
    #[serde(default, skip_serializing_if = "no_items")]
    pub on_build: Option<Vec<String>>,
    /// docker: whether Cmd/Entrypoint are already escaped (Windows only; kept verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
}

/// Whether a list field is left out of the JSON: when absent or empty, as Go's
/// `omitempty` leaves out an empty slice (so `CMD []` writes no `Cmd`, as BuildKit).
fn no_items<T>(value: &Option<Vec<T>>) -> bool {
    value.as_ref().is_none_or(Vec::is_empty)
}

/// [`no_items`] for map fields.
fn no_entries<K, V>(value: &Option<BTreeMap<K, V>>) -> bool {
    value.as_ref().is_none_or(BTreeMap::is_empty)
}

/// `rootfs`: the layers' diff_ids, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:...` of each uncompressed layer.
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry: a build step, with or without a layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// A free comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step produced no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The whole image config document (image-spec config.md plus docker's extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `MAINTAINER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture, GOARCH spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system, GOOS spelling (`linux`).
    pub os: String,
    /// CPU variant (`v8` for arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How to run it.
    #[serde(default)]
    pub config: RunConfig,
    /// The layers.
    #[serde(default)]
    pub rootfs: RootFs,
    /// The build steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

impl ImageConfig {
    /// An empty config for the machine rbuild runs on.
    pub fn for_host() -> Self {
        Self {
            architecture: host_architecture().to_owned(),
            os: "linux".to_owned(),
            ..Default::default()
        }
    }
}

/// The platform this machine builds for and runs: `linux/<host architecture>`.
pub fn host_platform() -> rbuild_dockerfile::Platform {
    rbuild_dockerfile::Platform {
        os: "linux".to_owned(),
        architecture: host_architecture().to_owned(),
        variant: String::new(),
    }
}

/// The running machine's architecture in GOARCH spelling, as images name it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// RFC 3339 (UTC, seconds) of `secs` since the epoch, as image configs write times.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn docker_extensions_round_trip_with_docker_names() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"],"Retries":3},"Shell":["/bin/bash","-c"],"OnBuild":["RUN x"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cfg: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            cfg.config.shell.as_deref(),
            Some(&["/bin/bash".to_owned(), "-c".to_owned()][..])
        );
        let back = serde_json::to_string(&cfg).unwrap();
        assert_eq!(back, json);
    }

    /// issue 14 bug 8: `CMD []` and `ENTRYPOINT []` leave no `Cmd`/`Entrypoint` in the
    /// JSON, as BuildKit (Go's `omitempty`) writes them.
    #[test]
    fn empty_lists_and_maps_are_left_out() {
        let config = RunConfig {
            cmd: Some(Vec::new()),
            entrypoint: Some(Vec::new()),
            labels: Some(BTreeMap::new()),
            env: Some(vec!["A=1".to_owned()]),
            ..RunConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"Env":["A=1"]}"#);
    }
}
