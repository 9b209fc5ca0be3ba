//! The syntax tree: a Dockerfile cut into logical lines, exactly as BuildKit's parser
//! (moby/buildkit `frontend/dockerfile/parser`) cuts it.
//!
//! Nothing here knows what an instruction means: `COPY --doit=true a b` is a fine
//! [`RawInstruction`] with an unknown flag; the typed layer ([`crate::instruction`])
//! rejects it. The tree is what `rbuild debug ast` dumps.

mod directives;
mod heredoc;
mod line_parsers;

use serde::Serialize;

use crate::error::{Error, ErrorKind, LineIndex, Span};

pub use self::heredoc::Heredoc;
pub(crate) use self::heredoc::heredoc_from_word;

use self::directives::DirectiveParser;

/// The escape character used when no `# escape=` directive says otherwise.
pub const DEFAULT_ESCAPE: char = '\\';

/// A UTF-8 byte-order mark, ignored at the very start of a Dockerfile.
const UTF8_BOM: char = '\u{feff}';

/// A parsed Dockerfile before any instruction is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxTree {
    /// Parser directives from the top of the file, in order.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// The instructions, one per logical line.
    pub instructions: Vec<RawInstruction>,
    /// Things BuildKit accepts but warns about (empty lines inside a continuation).
    pub warnings: Vec<Warning>,
}

/// A construct the parser accepts but that is probably a mistake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What is wrong, lower case.
    pub message: String,
    /// Where (for an empty continuation line: the last such line).
    pub span: Span,
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The directive name, lower case: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// Where the directive line is.
    pub span: Span,
}

/// One instruction as written: keyword, flags and arguments, nothing checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawInstruction {
    /// The keyword as written (any case), e.g. `copy`.
    pub keyword: String,
    /// The flags before the arguments, each as `--name=value` or `--name` with quotes
    /// and backslashes processed; `--` ends them and is not kept.
    pub flags: Vec<String>,
    /// The arguments, shaped by the keyword.
    pub args: Arguments,
    /// Heredocs opened on this line (`RUN`, `COPY`, `ADD`, and `ONBUILD` of those).
    pub heredocs: Vec<Heredoc>,
    /// The logical line: continuation lines joined, escaped newlines removed.
    pub line: String,
    /// From the keyword to the end of the last line (heredoc bodies included).
    pub span: Span,
}

/// BuildKit reads heredocs only for these instructions.
const HEREDOC_KEYWORDS: [&str; 3] = ["run", "copy", "add"];

impl RawInstruction {
    /// The keyword in lower case, as the AST dump and dispatch use it.
    pub fn keyword_lower(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// Whether heredocs on this line are read: shell-form `RUN`, `COPY` or `ADD`,
    /// directly or as an `ONBUILD` trigger.
    fn can_contain_heredoc(&self) -> bool {
        let target = match &self.args {
            Arguments::Trigger(inner) if self.keyword_lower() == "onbuild" => inner,
            _ => self,
        };
        HEREDOC_KEYWORDS.contains(&target.keyword_lower().as_str())
            && !matches!(target.args, Arguments::Exec(_))
    }
}

/// The arguments of an instruction, in the shape BuildKit's line parser gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "snake_case")]
pub enum Arguments {
    /// Nothing after the keyword (and flags).
    Empty,
    /// Exec form: a JSON array of strings (`CMD ["a", "b"]`); may be empty.
    Exec(Vec<String>),
    /// Shell form: the rest of the line as one string (`RUN`, `CMD`, `ENTRYPOINT`,
    /// `SHELL`, and the one-string instructions `USER`, `WORKDIR`, `MAINTAINER`,
    /// `STOPSIGNAL`).
    Shell(String),
    /// Words split on white space (`FROM`, `EXPOSE`, `ADD`, `COPY`, `VOLUME`), or on
    /// white space outside quotes for `ARG` (quotes kept).
    Words(Vec<String>),
    /// `ENV` and `LABEL` pairs.
    Pairs(Vec<KeyValue>),
    /// `HEALTHCHECK TYPE ...`: the type word, then the command (empty, exec or shell).
    Health {
        /// `CMD`, `NONE` or anything written there.
        kind: String,
        /// What follows the type.
        command: Box<Arguments>,
    },
    /// `ONBUILD` and its trigger instruction.
    Trigger(Box<RawInstruction>),
    /// The rest of the line of an instruction BuildKit does not know; dumped as `""`.
    Unknown(String),
}

/// One `key value` or `key=value` pair of `ENV` or `LABEL`, unprocessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, quotes and escapes kept.
    pub key: String,
    /// The value, quotes and escapes kept.
    pub value: String,
    /// True for the legacy `ENV key value` form (separator `""` in the dump), false
    /// for `key=value` (separator `"="`).
    pub legacy: bool,
}

/// One physical line of the source: its byte offset and its text with the newline.
#[derive(Clone, Copy)]
struct PhysicalLine<'a> {
    offset: usize,
    text: &'a str,
}

/// Cuts the source into lines that keep their `\n`, like BuildKit's line scanner.
fn physical_lines(source: &str) -> Vec<PhysicalLine<'_>> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for text in source.split_inclusive('\n') {
        lines.push(PhysicalLine { offset, text });
        offset += text.len();
    }
    lines
}

/// `bytes.TrimRight(line, "\r\n")`.
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// A line whose first non-space character is `#`.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing line-continuation escape, as BuildKit's
/// `([^E])E[ \t]*$|^E[ \t]*$` regular expression does; returns the line and whether
/// the logical line ends here.
///
/// An escape preceded by another escape (`foo \\`) is not a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (line, true);
    };
    match before.chars().next_back() {
        None => ("", false),
        Some(c) if c != escape => (before, false),
        Some(_) => (line, true),
    }
}

/// Parses Dockerfile text into a syntax tree.
///
/// Fails on a repeated or invalid directive, a JSON array of non-strings, a legacy
/// `ENV key` without value, an unterminated heredoc, or a file without instructions.
pub fn parse_syntax(source: &str) -> Result<SyntaxTree, Error> {
    let lines = physical_lines(source);
    let line_index = LineIndex::new(source);
    let mut directives = DirectiveParser::new();
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let first = lines[index];
        index += 1;
        let line_number = index;
        let mut text = first.text;
        let mut offset = first.offset;
        if line_number == 1
            && let Some(rest) = text.strip_prefix(UTF8_BOM)
        {
            text = rest;
            offset += UTF8_BOM.len_utf8();
        }
        let stripped = trim_newline(text).trim_start();
        let leading = trim_newline(text).len() - stripped.len();
        let line_span = || line_index.span(offset + leading, offset + text.len());
        directives
            .check(stripped, line_span)
            .map_err(|kind| Error::new(kind, Some(line_span())))?;
        let processed = if is_comment(stripped) { "" } else { stripped };
        let start = offset + leading;
        let (head, mut end_of_line) = trim_continuation(processed, directives.escape());
        if end_of_line && head.is_empty() {
            continue;
        }
        let mut logical = head.to_owned();
        let mut empty_continuation: Option<usize> = None;
        while !end_of_line && index < lines.len() {
            let next = lines[index];
            index += 1;
            let body = trim_newline(next.text);
            if is_comment(next.text) {
                continue;
            }
            if body.trim_start().is_empty() {
                empty_continuation = Some(next.offset);
                continue;
            }
            let (part, eol) = trim_continuation(body, directives.escape());
            logical.push_str(part);
            end_of_line = eol;
        }
        let end_of_text = |index: usize| {
            lines
                .get(index.wrapping_sub(1))
                .map_or(source.len(), |l| l.offset + l.text.len())
        };
        let here = |index: usize| line_index.span(start, end_of_text(index));
        let mut instruction = line_parsers::instruction_from_line(&logical, directives.escape())
            .map_err(|kind| {
                let whole = here(index);
                // Point at the offending word when the error names one.
                let word_at = match &kind {
                    ErrorKind::MissingEquals(word) => source
                        .get(whole.start_offset..whole.end_offset)
                        .and_then(|text| text.find(word.as_str()))
                        .map(|i| line_index.span(whole.start_offset + i, whole.end_offset)),
                    _ => None,
                };
                Error::new(kind, Some(word_at.unwrap_or(whole)))
            })?;
        if instruction.can_contain_heredoc() && logical.contains("<<") {
            for mut doc in heredoc::heredocs_from_line(&logical) {
                let body_start = lines.get(index).map_or(source.len(), |l| l.offset);
                let mut terminated = false;
                while index < lines.len() {
                    let body = lines[index];
                    index += 1;
                    let mut candidate = trim_newline(body.text);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body.text);
                }
                if !terminated {
                    return Err(Error::new(
                        ErrorKind::UnterminatedHeredoc(doc.name),
                        Some(here(index)),
                    ));
                }
                doc.span = line_index.span(body_start, end_of_text(index));
                instruction.heredocs.push(doc);
            }
        }
        if let Some(offset) = empty_continuation {
            warnings.push(Warning {
                message: format!("empty continuation line found in: {logical}"),
                span: line_index.span(offset, offset),
            });
        }
        instruction.span = here(index);
        if let Arguments::Trigger(inner) = &mut instruction.args {
            inner.span = instruction.span;
        }
        instructions.push(instruction);
    }
    if instructions.is_empty() {
        return Err(Error::new(ErrorKind::NoInstructions, None));
    }
    Ok(SyntaxTree {
        escape: directives.escape(),
        directives: directives.into_directives(),
        instructions,
        warnings,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
