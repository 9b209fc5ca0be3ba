//! Edge cases of line cutting that the conformance vectors do not cover.

use super::*;
use crate::dump::dump;

fn lines(source: &str) -> String {
    dump(&parse_syntax(source).unwrap())
}

#[test]
fn crlf_continuations_and_bom() {
    assert_eq!(lines("RUN a \\\r\n  b\r\n"), "(run \"a   b\")\n");
    assert_eq!(
        lines("\u{feff}# escape=`\r\nRUN a `\r\n b\r\n"),
        "(run \"a  b\")\n"
    );
}

#[test]
fn lone_escape_line_starts_a_continuation() {
    assert_eq!(lines("\\\nFROM x\n"), "(from \"x\")\n");
}

#[test]
fn escaped_escape_is_not_a_continuation() {
    assert_eq!(
        lines("RUN a \\\\\nRUN b\n"),
        "(run \"a \\\\\\\\\")\n(run \"b\")\n"
    );
}

#[test]
fn unknown_instruction_dumps_an_empty_argument() {
    assert_eq!(lines("FOO bar baz\n"), "(foo \"\")\n");
}

#[test]
fn indented_directive_counts_and_names_ignore_case() {
    let tree = parse_syntax("  # ESCAPE = `\nRUN a `\n b\n").unwrap();
    assert_eq!(tree.escape, '`');
    assert_eq!(tree.directives[0].name, "escape");
    let err = parse_syntax("# escape=`\n# Escape=\\\nFROM x\n").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::DuplicateDirective("escape".into()));
    assert_eq!(err.span().map(|s| s.start_line), Some(2));
}

#[test]
fn directive_after_blank_line_is_a_comment() {
    let tree = parse_syntax("\n# escape=`\nRUN a \\\n b\n").unwrap();
    assert_eq!(tree.escape, '\\');
    assert!(tree.directives.is_empty());
}

#[test]
fn heredoc_terminator_at_end_of_file_without_newline() {
    let tree = parse_syntax("RUN <<E\nx\nE").unwrap();
    assert_eq!(tree.instructions[0].heredocs[0].content, "x\n");
    assert_eq!(tree.instructions[0].span.end_line, 3);
}

#[test]
fn heredoc_chomp_accepts_tab_indented_terminator() {
    let tree = parse_syntax("RUN <<-E\n\t\tx\n\tE\nRUN y\n").unwrap();
    let doc = &tree.instructions[0].heredocs[0];
    assert_eq!(doc.content, "\t\tx\n");
    assert_eq!(doc.text(), "x\n");
    assert_eq!(tree.instructions.len(), 2);
}

#[test]
fn spans_cover_continuations_and_start_at_the_keyword() {
    let source = "FROM x\n\n  RUN a \\\n  # comment\n    b\nUSER u\n";
    let tree = parse_syntax(source).unwrap();
    let run = &tree.instructions[1];
    assert_eq!((run.span.start_line, run.span.start_column), (3, 3));
    assert_eq!(run.span.end_line, 5);
    assert_eq!(
        &source[run.span.start_offset..run.span.start_offset + 3],
        "RUN"
    );
    assert_eq!(tree.instructions[2].span.start_line, 6);
}

#[test]
fn heredocs_in_json_form_or_other_instructions_are_not_read() {
    let tree = parse_syntax("RUN [\"cat\", \"<<E\"]\nE\n").unwrap();
    assert_eq!(tree.instructions.len(), 2);
    let tree = parse_syntax("ENTRYPOINT cat <<E\nUSER u\n").unwrap();
    assert_eq!(tree.instructions.len(), 2);
}

#[test]
fn comment_only_and_empty_files_have_no_instructions() {
    for source in ["", "\n\n", "# a\n# b\n", "# syntax=x\n"] {
        let err = parse_syntax(source).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NoInstructions, "{source:?}");
    }
}

#[test]
fn empty_continuation_lines_warn() {
    let tree = parse_syntax("RUN a \\\n\n  b\nRUN c \\\n# note\n d\n").unwrap();
    assert_eq!(tree.warnings.len(), 1);
    assert_eq!(
        tree.warnings[0].message,
        "empty continuation line found in: RUN a   b"
    );
    assert_eq!(tree.warnings[0].span.start_line, 2);
}
