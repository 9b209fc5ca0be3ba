//! Hostile Dockerfiles (issue 9, item 4): each is refused with a clear error, or handled,
//! in bounded time and memory, and never crashes the process (no stack overflow, no
//! quadratic blow-up).

use rbuild_dockerfile::{
    ErrorKind, ExpandErrorKind, LowerOptions, MAX_DOCKERFILE_BYTES, MAX_INSTRUCTIONS,
    MAX_STEP_VARIABLES, lower, parse,
};

#[test]
fn a_ten_megabyte_dockerfile_is_refused_before_parsing() {
    let mut text = String::from("FROM scratch\n");
    let line = format!("LABEL k=\"{}\"\n", "x".repeat(90));
    while text.len() <= 10 << 20 {
        text.push_str(&line);
    }
    let err = parse(&text).expect_err("10 MB must be refused");
    assert!(
        matches!(err.kind(), ErrorKind::TooLarge { limit, .. } if *limit == MAX_DOCKERFILE_BYTES),
        "{err}"
    );
    assert!(
        err.render("Dockerfile", &text)
            .starts_with("Dockerfile: the Dockerfile is "),
        "{}",
        err.render("Dockerfile", &text)
    );
}

#[test]
fn a_hundred_thousand_instructions_are_refused_at_the_first_one_over() {
    let mut text = String::from("FROM scratch\n");
    for i in 0..100_000 {
        text.push_str(&format!("ENV V{i}={i}\n"));
    }
    let err = parse(&text).expect_err("100k instructions must be refused");
    assert_eq!(
        err.kind(),
        &ErrorKind::TooManyInstructions(MAX_INSTRUCTIONS)
    );
    let rendered = err.render("Dockerfile", &text);
    assert!(
        rendered.starts_with(&format!(
            "Dockerfile:{}:1: the Dockerfile has more than {MAX_INSTRUCTIONS} instructions",
            MAX_INSTRUCTIONS + 1
        )),
        "{rendered}"
    );
}

#[test]
fn a_long_run_of_env_lines_is_refused_by_the_variable_budget() {
    // 20,000 ENV lines parse, but every step would carry all the variables before it:
    // 200 million copies. Lowering stops once the budget is spent.
    let mut text = String::from("FROM scratch\n");
    for i in 0..20_000 {
        text.push_str(&format!("ENV V{i}={i}\n"));
    }
    let file = parse(&text).expect("20k instructions parse");
    let err = lower(&file, &LowerOptions::default()).expect_err("budget exceeded");
    assert_eq!(err.kind(), &ErrorKind::TooManyVariables(MAX_STEP_VARIABLES));
    let line = err.span().expect("the error has a place").start_line;
    assert!((1000..2000).contains(&line), "stopped at line {line}");
}

#[test]
fn ten_thousand_stages_are_lowered() {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("FROM scratch AS s{i}\n"));
        if i > 0 {
            text.push_str(&format!("COPY --from=s{} / /\n", i - 1));
        }
    }
    let file = parse(&text).expect("10k stages parse");
    let graph = lower(&file, &LowerOptions::default()).expect("10k stages lower");
    assert_eq!(graph.stages.len(), 10_000);
    assert_eq!(graph.levels.len(), 10_000);
}

#[test]
fn deeply_nested_substitutions_are_an_error_not_a_stack_overflow() {
    for (depth, modifier) in [(10_000, ":-"), (100_000, ":+"), (65, "-")] {
        let word = format!(
            "{}x{}",
            format!("${{A{modifier}").repeat(depth),
            "}".repeat(depth)
        );
        let text = format!("FROM scratch\nENV A={word}\n");
        let file = parse(&text).expect("parses: expansion happens when lowering");
        let err = lower(&file, &LowerOptions::default()).expect_err("too deep");
        let ErrorKind::Expand(expand) = err.kind() else {
            panic!("expected an expansion error, got {err}");
        };
        assert_eq!(expand.kind(), &ExpandErrorKind::TooDeep(64));
        // The message quotes the word and the line only in part.
        let rendered = err.render("Dockerfile", &text);
        assert!(rendered.len() < 1000, "{} bytes", rendered.len());
        assert!(rendered.contains("..."), "{rendered}");
    }
    // 64 levels are still fine.
    let word = format!("{}x{}", "${A:-".repeat(64), "}".repeat(64));
    let file = parse(&format!("FROM scratch\nENV A={word}\n")).expect("parses");
    lower(&file, &LowerOptions::default()).expect("64 levels expand");
}
