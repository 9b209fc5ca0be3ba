//! Properties of lowering that golden listings do not show well: digest stability,
//! level ordering, JSON output, and DOT output accepted by Graphviz.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what a test is for

use std::io::Write as _;
use std::process::{Command, Stdio};

use rbuild_dockerfile::{
    BaseImageConfig, BuildGraph, Environment, ErrorKind, LowerOptions, Source, StepDigest, lower,
    parse,
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
fn copy_from_later_stage_fails_only_when_needed() {
    // BuildKit resolves --from names over the whole file, but makes the stages in file
    // order: a stage the target needs may not take files from one further down.
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
    let err = lower(&file, &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot copy from stage \"b\", it needs to be defined before current stage \"a\""
    );
    assert_eq!(err.span().unwrap().start_line, 2);
}

#[test]
fn errors_carry_spans() {
    let file = parse("FROM alpine AS a\nRUN true\nCOPY --from=a /x /y\n").unwrap();
    let err = lower(&file, &LowerOptions::default()).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::CircularDependency(name) if name == "a"));
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

fn lower_error(source: &str) -> ErrorKind {
    lower(&parse(source).unwrap(), &LowerOptions::default())
        .unwrap_err()
        .kind()
        .clone()
}

/// issue 14 bug 7: a proxy build argument, in any case, reaches every `RUN` in both
/// cases and after the step's own variables, as BuildKit's exec op appends it.
#[test]
fn proxy_build_args_reach_run_in_both_cases() {
    let g = graph(
        "FROM alpine\nARG no_proxy=declared\nRUN true\nENV X=1\n",
        &[
            ("http_proxy", "hp"),
            ("NO_PROXY", "np"),
            ("Ftp_Proxy", "fp"),
            ("ALL_PROXY", ""),
        ],
    );
    let run = &g.steps[1];
    let proxies: Vec<(&str, &str)> = run.proxy_env.iter().collect();
    assert_eq!(
        proxies,
        [
            ("HTTP_PROXY", "hp"),
            ("http_proxy", "hp"),
            ("FTP_PROXY", "fp"),
            ("ftp_proxy", "fp"),
            ("NO_PROXY", "np"),
            ("no_proxy", "np"),
        ]
    );
    assert!(g.steps[2].proxy_env.is_empty(), "only RUN gets them");
    assert!(g.unused_build_args.is_empty(), "{:?}", g.unused_build_args);
}

/// issue 14 bug 12 (BuildKit's testTargetStageNameArg): `TARGETSTAGE` is the `--target`
/// as given, else the last stage's name, else `default`; like the platform arguments,
/// a stage sees it only through `ARG`.
#[test]
fn targetstage_is_an_automatic_argument() {
    let source = "FROM alpine AS base\nARG TARGETSTAGE TARGETOSVERSION\nRUN true\n\
                  FROM scratch AS foo\nCOPY --from=base / /\nFROM scratch\nCOPY --from=base / /\n";
    let value = |target: Option<&str>| {
        let options = LowerOptions {
            target: target.map(str::to_owned),
            ..LowerOptions::default()
        };
        let g = lower(&parse(source).unwrap(), &options).unwrap();
        let run = g
            .steps
            .iter()
            .find(|s| s.instruction.keyword() == "RUN")
            .unwrap();
        assert_eq!(run.args.get("TARGETOSVERSION"), Some(""));
        run.args.get("TARGETSTAGE").map(str::to_owned)
    };
    assert_eq!(value(Some("Foo")).as_deref(), Some("Foo"));
    assert_eq!(value(None).as_deref(), Some("default"));
    let named = graph("FROM alpine AS last\nARG TARGETSTAGE\nRUN true\n", &[]);
    assert_eq!(named.steps[1].args.get("TARGETSTAGE"), Some("last"));
    let overridden = graph("FROM alpine\nARG TARGETSTAGE\n", &[("TARGETSTAGE", "x")]);
    assert_eq!(overridden.steps[0].args.get("TARGETSTAGE"), Some("x"));
}

/// issue 14 bug 10: `--exclude` patterns are taken as written; `--chown`, `--chmod`
/// are expanded.
#[test]
fn copy_flags_expand_as_buildkit_does() {
    let g = graph(
        "FROM alpine\nARG E=*.txt O=1000 M=640\nCOPY --exclude=$E --chown=$O --chmod=$M . /\n\
         ADD --exclude=$E --chown=$O . /\n",
        &[],
    );
    let text = format!("{:?}", g.steps[1].instruction);
    assert!(text.contains("\"$E\""), "{text}");
    assert!(
        text.contains("\"1000\"") && text.contains("\"640\""),
        "{text}"
    );
    assert!(format!("{:?}", g.steps[2].instruction).contains("\"$E\""));
}

/// issue 14 bug 10: a variable in `COPY --from` is refused, even in a stage the target
/// does not need; a literal name is fine.
#[test]
fn copy_from_variable_is_refused() {
    assert_eq!(
        lower_error("FROM alpine AS a\nFROM alpine AS b\nCOPY --from=${X:-a} / /\nFROM a\n"),
        ErrorKind::VariableInCopyFrom
    );
    assert_eq!(
        lower_error("FROM alpine AS a\nFROM alpine\nCOPY --from=a$B / /\n"),
        ErrorKind::VariableInCopyFrom
    );
    graph("FROM alpine AS a\nFROM alpine\nCOPY --from=a / /\n", &[]);
}

/// issue 14 bug 11: `FROM` matches stage names exactly (they are lower case); `COPY
/// --from`, `RUN --mount=from=` and `--target` ignore case.
#[test]
fn from_matches_stage_names_exactly() {
    assert!(matches!(
        lower_error("FROM alpine AS base\nFROM Base\n"),
        ErrorKind::StageNameCase { .. }
    ));
    let g = graph(
        "FROM alpine AS Base\nFROM base\nCOPY --from=BASE / /\nRUN --mount=from=bAsE,target=/m true\n",
        &[],
    );
    assert_eq!(g.stages.len(), 2);
    let on_stages = g
        .edges
        .iter()
        .filter(|e| matches!(e.source, Source::Stage(_)));
    assert_eq!(
        on_stages.count(),
        3,
        "FROM, COPY --from and the mount: {:?}",
        g.edges
    );
}

/// issue 14 bug 8: `RUN []` has nothing to run (BuildKit: "arguments are required");
/// an empty shell-form `RUN` is fine.
#[test]
fn empty_exec_form_run_is_refused() {
    assert_eq!(
        lower_error("FROM alpine\nRUN []\n"),
        ErrorKind::EmptyRunCommand
    );
    graph("FROM alpine\nRUN\nRUN --network=none\n", &[]);
}

/// issue 14 bug 9: on the empty `scratch` filesystem a user name cannot be looked up;
/// numeric ids and `root` can be used, and names once a step wrote files.
#[test]
fn owner_names_on_empty_scratch_are_refused() {
    for source in [
        "FROM scratch\nUSER app\nWORKDIR /w\n",
        "FROM scratch\nUSER 1000:app\nWORKDIR /w\n",
        "FROM scratch\nCOPY --chown=app a /a\n",
        "FROM scratch\nADD --chown=app a /a\n",
        "FROM scratch AS s\nFROM s\nCOPY --chown=app a /a\n",
    ] {
        assert!(
            matches!(lower_error(source), ErrorKind::OwnerOnEmptyRoot { .. }),
            "{source}"
        );
    }
    for source in [
        "FROM scratch\nUSER root\nWORKDIR /w\n",
        "FROM scratch\nUSER app\nWORKDIR /\n",
        "FROM scratch\nCOPY --chown=1000:1000 a /a\n",
        "FROM scratch\nCOPY a /a\nCOPY --chown=app a /b\n",
        "FROM scratch\nWORKDIR /w\nUSER app\nWORKDIR /v\n",
        "FROM alpine\nCOPY --chown=nosuchuser a /a\n",
    ] {
        graph(source, &[]);
    }
}

/// A global `ARG NAME` without a default keeps the value NAME already has (BuildKit's
/// `buildMetaArgs`), an automatic argument's included.
#[test]
fn bare_global_arg_keeps_its_value() {
    let g = graph(
        "ARG TARGETSTAGE\nARG V=1\nARG V\nFROM alpine:$V\nARG TARGETSTAGE\n",
        &[],
    );
    assert_eq!(g.global_args.get("V"), Some("1"));
    assert_eq!(g.steps[0].args.get("TARGETSTAGE"), Some("default"));
}

/// `RUN --mount` values are expanded with the step's variables (ENV and ARG, of this
/// stage and the one it is based on), `type=` included, and typed after expansion;
/// `moby/buildkit` `testMountEnvAcrossStages` (fixtures/external
/// buildkit-mount-env-across-stages).
#[test]
fn mount_values_are_expanded_then_typed() {
    use rbuild_dockerfile::{CacheSharing, Instruction, MountType};
    let g = graph(
        "FROM busybox AS stage1\nENV MNT_ID=mycache\nENV MNT_TYPE2=cache\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba true\n\
         FROM stage1\nARG S=locked RO=true\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/w,sharing=$S,ro=$RO true\n",
        &[("S", "private")],
    );
    let mounts: Vec<_> = g
        .steps
        .iter()
        .filter_map(|s| match &s.instruction {
            Instruction::Run(run) => Some(run.mounts.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(mounts.len(), 2);
    let first = &mounts[0][0];
    assert_eq!(first.mount_type, MountType::Cache);
    assert_eq!(first.id.as_deref(), Some("mycache"));
    assert!(!first.read_only);
    let second = &mounts[1][0];
    assert_eq!(second.mount_type, MountType::Cache);
    assert_eq!(second.sharing, Some(CacheSharing::Private));
    assert!(second.read_only);
}

/// A value that is wrong only once expanded fails when its stage is lowered, at the
/// flag; in a stage the target does not need it is no error.
#[test]
fn mount_errors_wait_for_lowering() {
    let source = "FROM busybox AS other\nARG T=nfs\nRUN --mount=type=$T,target=/x true\n\
                  FROM busybox\nRUN true\n";
    let file = parse(source).unwrap();
    assert!(lower(&file, &LowerOptions::default()).is_ok());
    let options = LowerOptions {
        target: Some("other".to_owned()),
        ..LowerOptions::default()
    };
    let error = lower(&file, &options).unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::InvalidMount { reason, .. }
            if reason == "unsupported mount type \"nfs\""),
        "{error}"
    );
    assert_eq!(
        error.render("Dockerfile", source),
        "Dockerfile:3:5: invalid mount \"type=$T,target=/x\": unsupported mount type \"nfs\"\n    \
         3 | RUN --mount=type=$T,target=/x true\n      |     ^\n"
    );
}

#[test]
fn a_stage_runs_as_its_from_platform_normalized_or_its_parents_and_its_steps_digest_it() {
    let source = "FROM --platform=$BUILDPLATFORM alpine AS build\nRUN true\n\
FROM build AS test\nRUN true\nFROM --platform=linux/arm64/v8 alpine AS arm\nRUN true\n\
FROM alpine\nRUN true\nCOPY --from=test /a /a\nCOPY --from=arm /b /b\n";
    let options = LowerOptions {
        target_platform: rbuild_dockerfile::Platform::parse("linux/aarch64").unwrap(),
        ..LowerOptions::default()
    };
    let g = lower(&parse(source).unwrap(), &options).unwrap();
    let platforms: Vec<Option<&str>> = g.stages.iter().map(|s| s.platform.as_deref()).collect();
    assert_eq!(
        platforms,
        [
            Some("linux/amd64"),
            Some("linux/amd64"),
            Some("linux/arm64"),
            None
        ]
    );
    // The first `RUN true` of each stage: the same step, and the same platform but for
    // the native stages.
    let first =
        |g: &BuildGraph, stage: usize| g.step(g.stages[stage].steps[0]).unwrap().digest.clone();
    assert_eq!(first(&g, 0), first(&g, 1));
    assert_eq!(first(&g, 2), first(&g, 3));
    assert_ne!(first(&g, 0), first(&g, 3));
    // For another target, the stages that follow it differ; the others do not.
    let amd64 = lower(&parse(source).unwrap(), &LowerOptions::default()).unwrap();
    for stage in 0..3 {
        assert_eq!(first(&amd64, stage), first(&g, stage), "stage {stage}");
    }
    assert_ne!(first(&amd64, 3), first(&g, 3));
}
