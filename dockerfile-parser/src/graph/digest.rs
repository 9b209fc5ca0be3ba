//! A step's definition digest: sha256 over a canonical JSON serialization of what the
//! step does and the configuration it sees, one input of the build cache key.
//!
//! Canonical means: struct fields in declaration order, environments in their own
//! (first-set) order, source positions removed (moving an instruction to another line
//! must not change its digest), proxy variables left out (as BuildKit leaves them out of
//! cache keys).

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::instruction::Instruction;
use crate::shell::Environment;

/// `sha256:<64 hex digits>` of a step's definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StepDigest(String);

impl StepDigest {
    /// The digest as `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StepDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that defines a step, in the order it is serialized.
#[derive(Serialize)]
pub(super) struct Definition<'a> {
    /// Bumped when the serialization changes, so old cache entries stop matching.
    pub(super) version: u32,
    pub(super) platform: &'a str,
    pub(super) instruction: &'a Instruction,
    pub(super) args: &'a Environment,
    pub(super) env: &'a Environment,
    /// The state environment (`RUN` gets it; see `Step::run_env`).
    pub(super) run_env: &'a Environment,
    pub(super) workdir: Option<&'a str>,
    pub(super) user: Option<&'a str>,
    pub(super) shell: Option<&'a [String]>,
}

/// The serialization format version of [`Definition`].
pub(super) const DEFINITION_VERSION: u32 = 2;

impl Definition<'_> {
    pub(super) fn digest(&self) -> StepDigest {
        // Serializing plain data to a `Value` cannot fail (no maps with non-string keys,
        // no failing `Serialize` impls); a failure would still give a distinct digest.
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        strip_spans(&mut value);
        let mut text = String::new();
        write_canonical(&value, &mut text);
        let hash = Sha256::digest(text.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        StepDigest(format!("sha256:{hex}"))
    }
}

/// Writes `value` as JSON with object members sorted by name, whatever map type
/// serde_json was built with (its `preserve_order` feature, which another crate of a
/// build may switch on, would otherwise change the text and so the digest).
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut members: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Removes every `"span"` member, at any depth.
fn strip_spans(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("span");
            map.values_mut().for_each(strip_spans);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_spans),
        _ => {}
    }
}
