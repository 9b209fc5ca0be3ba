//! Instruction flags (`--from=build`, `--link`), checked the way BuildKit's `BFlags`
//! checks them, and Go-style durations for `HEALTHCHECK`.

use std::time::Duration;

use crate::error::ErrorKind;

/// What a flag takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagType {
    /// `--x`, `--x=true`, `--x=false`.
    Bool,
    /// `--x=value`, at most once.
    String,
    /// `--x=value`, repeatable.
    Strings,
}

/// The flags one instruction accepts, and what was given.
pub(super) struct Flags {
    instruction: &'static str,
    values: Vec<(&'static str, String)>,
}

impl Flags {
    /// Checks `given` (as the syntax tree holds them: `--name[=value]`) against `known`.
    pub(super) fn parse(
        instruction: &'static str,
        known: &'static [(&'static str, FlagType)],
        given: &[String],
    ) -> Result<Flags, (ErrorKind, String)> {
        let mut flags = Flags {
            instruction,
            values: Vec::new(),
        };
        for arg in given {
            let body = arg.strip_prefix("--").unwrap_or(arg);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let located = |kind: ErrorKind| (kind, format!("--{name}"));
            let Some(&(known_name, kind)) = known.iter().find(|(n, _)| *n == name) else {
                return Err(located(ErrorKind::UnknownFlag {
                    instruction: instruction.to_owned(),
                    flag: name.to_owned(),
                }));
            };
            if kind != FlagType::Strings && flags.values.iter().any(|(n, _)| *n == known_name) {
                return Err(located(ErrorKind::DuplicateFlag {
                    instruction: instruction.to_owned(),
                    flag: name.to_owned(),
                }));
            }
            let missing = || {
                located(ErrorKind::MissingFlagValue {
                    instruction: instruction.to_owned(),
                    flag: name.to_owned(),
                })
            };
            let value = match (kind, value) {
                (FlagType::Bool, None) => "true".to_owned(),
                (FlagType::Bool, Some("")) => return Err(missing()),
                (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".to_owned(),
                    "false" => "false".to_owned(),
                    _ => {
                        return Err(located(ErrorKind::InvalidFlagValue {
                            instruction: instruction.to_owned(),
                            flag: name.to_owned(),
                            value: v.to_owned(),
                            reason: "expecting a boolean value".to_owned(),
                        }));
                    }
                },
                (_, None) => return Err(missing()),
                (_, Some(v)) => v.to_owned(),
            };
            flags.values.push((known_name, value));
        }
        Ok(flags)
    }

    /// The value of a single-valued flag, if given.
    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub(super) fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: true when given without value or as `=true`.
    pub(super) fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }

    /// A flag value refused by the instruction, as an error at the flag.
    pub(super) fn invalid(&self, name: &str, value: &str, reason: &str) -> (ErrorKind, String) {
        (
            ErrorKind::InvalidFlagValue {
                instruction: self.instruction.to_owned(),
                flag: name.to_owned(),
                value: value.to_owned(),
                reason: reason.to_owned(),
            },
            format!("--{name}"),
        )
    }
}

/// Parses a duration the way Go's `time.ParseDuration` does: an optional sign, then
/// one or more `<number><unit>` with units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`;
/// a bare `0` is zero. Negative durations are refused (no caller wants them).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if let Some(magnitude) = unsigned.strip_prefix('-') {
        return if !magnitude.is_empty() && magnitude.chars().all(|c| c == '0') {
            Ok(Duration::ZERO)
        } else {
            Err("negative duration".to_owned())
        };
    }
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if unsigned.is_empty() {
        return Err("invalid duration".to_owned());
    }
    let mut rest = unsigned;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err("invalid duration".to_owned());
        }
        let value: f64 = number.parse().map_err(|_| "invalid duration".to_owned())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit in duration".to_owned()),
            other => return Err(format!("unknown unit {other:?} in duration")),
        };
        rest = &rest[unit_len..];
        total += value * nanos_per_unit;
    }
    // Go durations are int64 nanoseconds.
    if total > i64::MAX as f64 {
        return Err("invalid duration".to_owned());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KNOWN: &[(&str, FlagType)] = &[
        ("from", FlagType::String),
        ("link", FlagType::Bool),
        ("exclude", FlagType::Strings),
    ];

    fn flags(given: &[&str]) -> Result<Flags, ErrorKind> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        Flags::parse("COPY", KNOWN, &given).map_err(|(k, _)| k)
    }

    #[test]
    fn flag_rules() {
        let f = flags(&["--from=a", "--link", "--exclude=x", "--exclude=y"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.strings("exclude"), ["x", "y"]);
        assert!(!flags(&["--link=FALSE"]).unwrap().bool("link"));
        assert_eq!(
            flags(&["--from=", "--link=True"])
                .unwrap()
                .string("from")
                .as_deref(),
            Some("")
        );
        assert!(matches!(
            flags(&["--frm=a"]),
            Err(ErrorKind::UnknownFlag { .. })
        ));
        assert!(matches!(
            flags(&["--from"]),
            Err(ErrorKind::MissingFlagValue { .. })
        ));
        assert!(matches!(
            flags(&["--link="]),
            Err(ErrorKind::MissingFlagValue { .. })
        ));
        assert!(matches!(
            flags(&["--link=yes"]),
            Err(ErrorKind::InvalidFlagValue { .. })
        ));
        assert!(matches!(
            flags(&["--from=a", "--from=b"]),
            Err(ErrorKind::DuplicateFlag { .. })
        ));
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
        assert_eq!(d("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("3µs"), Ok(Duration::from_micros(3)));
        assert!(d("5").is_err());
        assert!(d("").is_err());
        assert!(d("5x").is_err());
        assert!(d("-5s").is_err());
        assert!(d("s").is_err());
        assert!(d("1..2s").is_err());
    }
}
