//! Cutting one logical line into keyword, flags and arguments, with the argument shape
//! chosen per keyword as BuildKit's dispatch table chooses it.

use crate::error::{ErrorKind, Span};

use super::{Arguments, KeyValue, RawInstruction};

/// BuildKit's `[\t\v\f\r ]+`: the white space that separates words and the keyword.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// How a keyword's arguments are read.
#[derive(Clone, Copy)]
enum Shape {
    /// JSON array if it is one, else the whole rest as one string.
    MaybeJson,
    /// JSON array if it is one, else words split on white space.
    MaybeJsonList,
    /// Words split on white space.
    Whitespace,
    /// The whole rest as one string.
    Text,
    /// `ENV`/`LABEL` pairs.
    NameValue(&'static str),
    /// `ARG` words, quotes kept.
    NameOrNameValue,
    /// `HEALTHCHECK TYPE rest`.
    Health,
    /// `ONBUILD INSTRUCTION`.
    SubCommand,
}

/// BuildKit's dispatch table, keyed by lower-case keyword.
fn shape_of(keyword: &str) -> Option<Shape> {
    Some(match keyword {
        "add" | "copy" | "volume" => Shape::MaybeJsonList,
        "arg" => Shape::NameOrNameValue,
        "cmd" | "entrypoint" | "run" | "shell" => Shape::MaybeJson,
        "env" => Shape::NameValue("ENV"),
        "label" => Shape::NameValue("LABEL"),
        "expose" | "from" => Shape::Whitespace,
        "healthcheck" => Shape::Health,
        "maintainer" | "stopsignal" | "user" | "workdir" => Shape::Text,
        "onbuild" => Shape::SubCommand,
        _ => return None,
    })
}

/// Builds a raw instruction from a logical line (spans filled in by the caller).
pub(super) fn instruction_from_line(line: &str, escape: char) -> Result<RawInstruction, ErrorKind> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_token_space) {
        Some(i) => {
            let rest = trimmed[i..].trim_start_matches(is_token_space);
            (&trimmed[..i], Some(rest))
        }
        None => (trimmed, None),
    };
    let (flags, args) = match rest {
        Some(rest) => extract_flags(rest),
        None => (Vec::new(), ""),
    };
    let args = args.trim();
    let parsed = match shape_of(&keyword.to_ascii_lowercase()) {
        None => Arguments::Unknown(args.to_owned()),
        Some(shape) => parse_arguments(shape, args, escape)?,
    };
    Ok(RawInstruction {
        keyword: keyword.to_owned(),
        flags,
        args: parsed,
        heredocs: Vec::new(),
        line: line.to_owned(),
        span: Span::default(),
    })
}

fn parse_arguments(shape: Shape, rest: &str, escape: char) -> Result<Arguments, ErrorKind> {
    Ok(match shape {
        Shape::MaybeJson => {
            if rest.is_empty() {
                return Ok(Arguments::Empty);
            }
            match parse_json(rest)? {
                Some(items) => Arguments::Exec(items),
                None => Arguments::Shell(rest.to_owned()),
            }
        }
        Shape::MaybeJsonList => match parse_json(rest)? {
            Some(items) => Arguments::Exec(items),
            None => split_whitespace(rest),
        },
        Shape::Whitespace => split_whitespace(rest),
        Shape::Text if rest.is_empty() => Arguments::Empty,
        Shape::Text => Arguments::Shell(rest.to_owned()),
        Shape::NameValue(keyword) => parse_name_value(rest, keyword, escape)?,
        Shape::NameOrNameValue => {
            let words = parse_words(rest, escape);
            if words.is_empty() {
                Arguments::Empty
            } else {
                Arguments::Words(words)
            }
        }
        Shape::Health => parse_health(rest)?,
        Shape::SubCommand if rest.is_empty() => Arguments::Empty,
        Shape::SubCommand => Arguments::Trigger(Box::new(instruction_from_line(rest, escape)?)),
    })
}

/// Words split on `[\t\v\f\r ]+`; empty input gives no arguments.
fn split_whitespace(rest: &str) -> Arguments {
    if rest.is_empty() {
        return Arguments::Empty;
    }
    Arguments::Words(
        rest.split(is_token_space)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// A JSON array of strings, `None` when `rest` is not a JSON array at all (so the
/// caller falls back to shell form), an error when it is an array of other things.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ErrorKind::JsonNotStrings),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `HEALTHCHECK`: a type word, then the command read like `CMD`'s.
fn parse_health(rest: &str) -> Result<Arguments, ErrorKind> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Arguments::Empty);
    }
    let kind = rest[..sep].to_owned();
    let command = parse_arguments(Shape::MaybeJson, rest[sep..].trim_start(), '\\')?;
    Ok(Arguments::Health {
        kind,
        command: Box::new(command),
    })
}

/// `ENV`/`LABEL`: `key value` (legacy, when the first word has no `=`) or
/// `key=value ...`.
fn parse_name_value(rest: &str, keyword: &str, escape: char) -> Result<Arguments, ErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Arguments::Empty);
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_token_space) else {
            return Err(ErrorKind::MissingValue(keyword.to_owned()));
        };
        let value = rest[i..].trim_start_matches(is_token_space);
        return Ok(Arguments::Pairs(vec![KeyValue {
            key: rest[..i].to_owned(),
            value: value.to_owned(),
            legacy: true,
        }]));
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => Ok(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
                legacy: false,
            }),
            None => Err(ErrorKind::MissingEquals(word)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Arguments::Pairs)
}

/// States of the small word scanners below.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Splits on white space outside quotes, keeping quotes and escapes in the words
/// (BuildKit's `parseWords`; they are processed later, by word expansion).
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    let Some(next) = chars.next() else {
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    let Some(next) = chars.next() else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Reads leading `--flag[=value]` words, returning them and the rest of the line.
///
/// Quotes and backslashes inside flags are processed (always `\`, whatever the escape
/// directive says, as in BuildKit); a bare `--` ends the flags and is dropped.
pub(super) fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut iter = line.char_indices().peekable();
    while let Some((pos, ch)) = iter.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            if !line[pos..].starts_with("--") {
                return (flags, &line[pos..]);
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (flags, &line[pos..]);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    continue;
                }
                if ch == '\\' {
                    match iter.next() {
                        Some((_, next)) => word.push(next),
                        None => continue,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                    continue;
                }
                if ch == '\\' {
                    match iter.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(word);
    }
    (flags, "")
}
