//! Word expansion beyond BuildKit's vectors: pattern modifiers, the backtick escape,
//! and which names a word referenced.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what a test is for

use rbuild_dockerfile::{Environment, ExpandErrorKind, ShellLexer};

fn env() -> Environment {
    [
        ("FILE", "archive.tar.gz"),
        ("PATHV", "/usr/local/bin"),
        ("EMPTY", ""),
        ("SPACED", "a b"),
    ]
    .into_iter()
    .collect()
}

fn word(input: &str) -> String {
    ShellLexer::default()
        .expand_word(input, &env())
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

#[test]
fn prefix_and_suffix_removal() {
    assert_eq!(word("${FILE%.*}"), "archive.tar");
    assert_eq!(word("${FILE%%.*}"), "archive");
    assert_eq!(word("${FILE#*.}"), "tar.gz");
    assert_eq!(word("${FILE##*.}"), "gz");
    assert_eq!(word("${PATHV##*/}"), "bin");
    assert_eq!(word("${FILE#nomatch}"), "archive.tar.gz");
    assert_eq!(word("${UNSET%.*}"), "");
}

#[test]
fn escaped_glob_characters_are_literal() {
    let env: Environment = [("V", "a*b*c")].into_iter().collect();
    let lexer = ShellLexer::default();
    assert_eq!(lexer.expand_word(r"${V#*\*}", &env).unwrap(), "b*c");
    assert_eq!(lexer.expand_word(r"${V##*\*}", &env).unwrap(), "c");
    assert!(lexer.expand_word(r"${V#\a}", &env).is_err());
}

#[test]
fn replacement() {
    assert_eq!(word("${PATHV/\\//:}"), ":usr/local/bin");
    assert_eq!(word("${PATHV//\\//:}"), ":usr:local:bin");
    assert_eq!(word("${FILE/.tar/}"), "archive.gz");
    assert_eq!(word("${FILE//?/x}"), "xxxxxxxxxxxxxx");
    let err = ShellLexer::default()
        .expand_word("${FILE/abc", &env())
        .unwrap_err();
    assert_eq!(err.kind(), &ExpandErrorKind::MissingSlash);
}

#[test]
fn required_variables_report_their_message() {
    let lexer = ShellLexer::default();
    let err = lexer.expand_word("${MISSING?set it}", &env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to process \"${MISSING?set it}\": MISSING: set it"
    );
    let err = lexer.expand_word("${EMPTY:?}", &env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to process \"${EMPTY:?}\": EMPTY: is not allowed to be empty"
    );
    assert_eq!(lexer.expand_word("${EMPTY?}", &env()).unwrap(), "");
}

#[test]
fn backtick_escape() {
    let lexer = ShellLexer::new('`');
    assert_eq!(lexer.expand_word("a`$FILE", &env()).unwrap(), "a$FILE");
    assert_eq!(
        lexer.expand_word(r"C:\dir\$FILE", &env()).unwrap(),
        r"C:\dir\archive.tar.gz"
    );
    assert_eq!(lexer.expand_word("\"`\"q\"", &env()).unwrap(), "\"q");
}

#[test]
fn matched_and_unmatched_names() {
    let expansion = ShellLexer::default()
        .expand(
            "$FILE ${NOPE:-$EMPTY} '$QUOTED' \\$ESCAPED ${SPACED:+x}",
            &env(),
        )
        .unwrap();
    let matched: Vec<&str> = expansion.matched.iter().map(String::as_str).collect();
    let unmatched: Vec<&str> = expansion.unmatched.iter().map(String::as_str).collect();
    assert_eq!(matched, ["EMPTY", "FILE", "SPACED"]);
    assert_eq!(unmatched, ["NOPE"]);
}

#[test]
fn splitting_keeps_quoted_and_escaped_spaces() {
    let lexer = ShellLexer::default();
    assert_eq!(lexer.expand_words("$SPACED", &env()).unwrap(), ["a", "b"]);
    assert_eq!(
        lexer.expand_words("\"$SPACED\" c\\ d", &env()).unwrap(),
        ["a b", "c d"]
    );
    assert_eq!(lexer.expand_words("x '' y", &env()).unwrap(), ["x", "y"]);
}

#[test]
fn environment_keeps_first_definition_order() {
    let mut env = Environment::new();
    env.set("B", "1");
    env.set("A", "2");
    env.set("B", "3");
    assert_eq!(env.iter().collect::<Vec<_>>(), [("B", "3"), ("A", "2")]);
    assert_eq!(env.remove("B").as_deref(), Some("3"));
    assert!(!env.contains("B"));
}

#[test]
fn arbitrary_words_never_panic_and_plain_words_are_unchanged() {
    const ALPHABET: &[char] = &[
        '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '\'', '"', '*', ' ', 'a', 'F',
        'I', 'L', 'E', '1', '@', 'é',
    ];
    let env = env();
    // A fixed linear congruential generator: the same words on every run.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    for escape in ['\\', '`'] {
        let lexer = ShellLexer::new(escape);
        for _ in 0..20_000 {
            let len = next() % 16;
            let word: String = (0..len)
                .map(|_| ALPHABET[next() % ALPHABET.len()])
                .collect();
            let result = lexer.expand(&word, &env);
            let special = word
                .chars()
                .any(|c| matches!(c, '$' | '\'' | '"') || c == escape);
            if !special {
                let expansion = result.unwrap_or_else(|e| panic!("{word:?}: {e}"));
                assert_eq!(expansion.value, word);
            }
        }
    }
}
