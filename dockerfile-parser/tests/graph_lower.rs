//! Properties of lowering that golden listings do not show well: digest stability,
//! level ordering, JSON output, and DOT output accepted by Graphviz.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what a test is for

use std::io::Write as _;
use std::process::{Command, Stdio};

use rbuild_dockerfile::{
    BaseImageConfig, BuildGraph, Environment, GraphErrorKind, LowerOptions, Source, StepDigest,
    lower, parse,
};

fn graph(source: &str, build_args: &[(&str, &str)]) -> BuildGraph {
    let options = LowerOptions {
        build_args: build_args.iter().copied().collect::<Environment>(),
        ..LowerOptions::default()
    };
    lower(&parse(source).unwrap(), &options).unwrap()
}

fn digests(graph: &BuildGraph) -> Vec<StepDigest> {
    graph.steps.iter().map(|s| s.digest.clone()).collect()
}

const MULTI: &str = "FROM alpine AS base\nARG V=1\nRUN echo $V\nFROM base AS a\nRUN a\n\
FROM base AS b\nRUN b\nFROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n";

#[test]
fn digest_ignores_line_positions() {
    let moved = format!("# a comment\n\n{MULTI}");
    assert_eq!(digests(&graph(MULTI, &[])), digests(&graph(&moved, &[])));
}

#[test]
fn digest_follows_build_arg_values_but_not_proxies() {
    let plain = digests(&graph(MULTI, &[]));
    let changed = digests(&graph(MULTI, &[("V", "2")]));
    assert_ne!(
        plain[1], changed[1],
        "RUN sees V, so its digest must change"
    );
    let proxied = digests(&graph(MULTI, &[("HTTP_PROXY", "http://p:1")]));
    assert_eq!(plain, proxied);
    let g = graph(MULTI, &[("HTTP_PROXY", "http://p:1")]);
    assert_eq!(g.steps[1].proxy_env.get("HTTP_PROXY"), Some("http://p:1"));
    assert!(g.unused_build_args.is_empty());
}

#[test]
fn digests_are_sha256() {
    for digest in digests(&graph(MULTI, &[])) {
        let hex = digest.as_str().strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

#[test]
fn every_dependency_is_on_an_earlier_level() {
    let g = graph(MULTI, &[]);
    assert_eq!(g.levels.len(), 3);
    for edge in &g.edges {
        if let Source::Stage(dep) = edge.source {
            let level = |id| g.stage(id).unwrap().level;
            assert!(level(dep) < level(edge.stage), "{edge:?}");
        }
    }
    assert_eq!(g.levels[1].len(), 2, "a and b can run in parallel");
}

#[test]
fn copy_from_later_stage_without_cycle_is_allowed() {
    // BuildKit resolves --from names over the whole file.
    let g = graph(
        "FROM alpine AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nRUN true\n",
        &[],
    );
    let a = g.stages.iter().find(|s| s.name.as_deref() == Some("a"));
    let b = g.stage(rbuild_dockerfile::StageId(1)).unwrap();
    assert!(
        a.is_none(),
        "target is the last stage, b, which does not need a"
    );
    assert_eq!(b.level, 0);
    let options = LowerOptions {
        target: Some("a".into()),
        ..LowerOptions::default()
    };
    let file = parse("FROM alpine AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n").unwrap();
    let g = lower(&file, &options).unwrap();
    assert_eq!(g.levels.len(), 2);
}

#[test]
fn errors_carry_spans() {
    let file = parse("FROM alpine AS a\nRUN true\nCOPY --from=a /x /y\n").unwrap();
    let err = lower(&file, &LowerOptions::default()).unwrap_err();
    assert!(matches!(err.kind(), GraphErrorKind::CircularDependency(name) if name == "a"));
    assert_eq!(err.span().unwrap().start_line, 3);
}

#[test]
fn json_output_has_the_graph() {
    let json = serde_json::to_value(graph(MULTI, &[("V", "7")])).unwrap();
    assert_eq!(json["steps"][1]["args"]["V"], "7");
    assert_eq!(json["stages"][0]["base"]["kind"], "image");
    assert!(json["levels"].as_array().unwrap().len() == 3);
}

#[test]
fn dot_output_renders_with_graphviz() {
    let dot = graph(
        &format!(
            "{MULTI}COPY --from=nginx:1 /etc/nginx /etc/nginx\nLABEL q=\"a \\\"quoted\\\" value\"\n"
        ),
        &[],
    )
    .to_dot();
    assert!(dot.contains("subgraph cluster_stage0"));
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("graphviz `dot` is needed for this test and could not run: {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "dot -Tsvg rejected the graph: {}\n{dot}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = String::from_utf8_lossy(&output.stdout);
    assert!(svg.contains("<svg"), "no SVG produced");
    assert!(
        svg.contains("cluster_stage3"),
        "stage clusters missing from the SVG"
    );
}

/// Issue 14, bug 3: relative WORKDIRs on an image without a WorkingDir start at `/`
/// (BuildKit: `/a/b`; rbuild made it `a/b`, and RUN ran in `/b`); an absolute one stays
/// as written; a base image's relative WorkingDir is replayed relative to itself.
#[test]
fn relative_workdir_on_an_image_without_one_starts_at_the_root() {
    let g = graph(
        "FROM scratch\nWORKDIR a\nWORKDIR b\nRUN pwd\nWORKDIR /x/../y/\nRUN pwd\n",
        &[],
    );
    let workdirs: Vec<_> = g.steps.iter().map(|s| s.workdir.as_deref()).collect();
    assert_eq!(
        workdirs,
        [
            Some("/a"),
            Some("/a/b"),
            Some("/a/b"),
            Some("/x/../y/"),
            Some("/x/../y/")
        ]
    );

    let mut options = LowerOptions::default();
    options.base_images.insert(
        "img".into(),
        BaseImageConfig {
            workdir: Some("a/b".into()),
            ..BaseImageConfig::default()
        },
    );
    let g = lower(&parse("FROM img\nRUN pwd\n").unwrap(), &options).unwrap();
    assert_eq!(g.steps[0].workdir.as_deref(), Some("/a/b/a/b"));
}

#[test]
fn base_image_configuration_seeds_the_stage() {
    let source = "FROM alpine AS base\nENV PATH=/opt/bin:$PATH\nWORKDIR sub\nRUN true\n\
FROM base\nRUN true\nFROM scratch\nENV P=$PATH\n";
    let file = parse(source).unwrap();
    let first = lower(&file, &LowerOptions::default()).unwrap();
    assert_eq!(
        first.base_images(),
        Vec::<&str>::new(),
        "target scratch needs no image"
    );
    let options = LowerOptions {
        target: Some("base".into()),
        ..LowerOptions::default()
    };
    let unresolved = lower(&file, &options).unwrap();
    assert_eq!(unresolved.base_images(), ["alpine"]);
    assert_eq!(unresolved.steps[0].env.get("PATH"), Some("/opt/bin:"));
    assert_eq!(unresolved.steps[1].workdir.as_deref(), Some("/sub"));

    let mut options = options;
    options.base_images.insert(
        "alpine".into(),
        BaseImageConfig {
            env: [("PATH", "/usr/bin:/bin"), ("LANG", "C")]
                .into_iter()
                .collect(),
            workdir: Some("/home".into()),
            user: Some("nobody".into()),
            shell: None,
        },
    );
    let resolved = lower(&file, &options).unwrap();
    let env: Vec<_> = resolved.steps[0].env.iter().collect();
    assert_eq!(env, [("PATH", "/opt/bin:/usr/bin:/bin"), ("LANG", "C")]);
    assert_eq!(resolved.steps[1].workdir.as_deref(), Some("/home/sub"));
    assert_eq!(resolved.steps[2].user.as_deref(), Some("nobody"));
    assert_ne!(resolved.steps[2].digest, unresolved.steps[2].digest);

    // scratch has BuildKit's default PATH.
    let last = first.steps.last().unwrap();
    assert_eq!(last.env.get("P"), Some(rbuild_dockerfile::DEFAULT_PATH));
}
