//! Image config comparison: the runtime fields a Dockerfile sets, as `docker inspect` and
//! `rbuild inspect` print them under `Config`.

use serde_json::Value;

/// The compared fields of the image config's `Config` object. `Shell` is not in the list
/// the issue names, but SHELL writes it and docker keeps it, so it is compared too.
pub const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// One config field that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDifference {
    pub field: &'static str,
    pub reference: Value,
    pub tested: Value,
}

impl std::fmt::Display for ConfigDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config {}: reference {} | tested {}",
            self.field, self.reference, self.tested
        )
    }
}

/// Drops object members that `omitempty` would leave out: null, "", 0 and false,
/// recursively, so that an absent member and its zero value compare equal (docker's
/// HEALTHCHECK durations are omitted when 0). Empty objects and arrays stay: they are
/// values (`ExposedPorts: {"80/tcp": {}}`); a whole field that is empty is handled by
/// [`compare`].
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// A field that is absent, null, or an empty value: `docker inspect` prints `"Cmd": null`
/// where an OCI config leaves `Cmd` out.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The `Config` object of the first image of an inspect output (a JSON array).
pub fn config_of(inspect: &Value) -> Option<&Value> {
    inspect.get(0)?.get("Config")
}

/// Differences between two `Config` objects over [`FIELDS`].
pub fn compare(reference: &Value, tested: &Value) -> Vec<ConfigDifference> {
    let pick = |c: &Value, f: &str| normalize(c.get(f).unwrap_or(&Value::Null));
    FIELDS
        .iter()
        .filter_map(|&field| {
            let (r, t) = (pick(reference, field), pick(tested, field));
            let (r, t) = (empty_to_null(r), empty_to_null(t));
            (r != t).then_some(ConfigDifference {
                field,
                reference: r,
                tested: t,
            })
        })
        .collect()
}

fn empty_to_null(v: Value) -> Value {
    if is_empty(&v) { Value::Null } else { v }
}
