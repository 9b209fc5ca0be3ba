//! What a tool embedding rbuild-core can tell about a failed build without parsing
//! messages (issue 17, "Done when"): registry unauthorized, base image not found,
//! Dockerfile syntax error with its line and column, step failed with its exit code.
#![allow(clippy::unwrap_used)]

mod support;

use rbuild_core::{
    BuildError, RegistryErrorKind,
    registry::{DockerConfig, RegistryCredentials},
    solver::DockerfilePhase,
};
use rbuild_dockerfile::ErrorKind;

use support::build::{build_with, busybox_store, context};
use support::registry::{Registry, htpasswd_line};

/// One test in this binary: it points `DOCKER_CONFIG` at its own directory, which no
/// other thread may read meanwhile.
#[test]
fn an_embedder_tells_failed_builds_apart_by_type() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);

    // A Dockerfile syntax error: the parser's own error, its line and column.
    let (result, _) = build_with(&store, "FROM busybox\n\nCOPY --frm=x a b\n", &ctx, |_| {});
    let err = result.unwrap_err();
    let BuildError::Dockerfile { at, phase, error } = &err else {
        panic!("expected a Dockerfile error, got {err:?}");
    };
    assert_eq!(*phase, DockerfilePhase::Parse);
    assert!(
        matches!(error.kind(), ErrorKind::UnknownFlag { instruction, flag }
            if instruction == "COPY" && flag == "frm"),
        "{error:?}"
    );
    assert_eq!(
        (at.file(), at.line(), at.column()),
        ("Dockerfile", Some(3), Some(6))
    );
    let span = error.span().unwrap();
    assert_eq!((span.start_line, span.start_column), (3, 6));

    // A step whose command fails: its exit code.
    let (result, _) = build_with(&store, "FROM busybox\nRUN exit 3\n", &ctx, |_| {});
    let err = result.unwrap_err();
    let BuildError::StepFailed { exit_code, .. } = &err else {
        panic!("expected a failed step, got {err:?}");
    };
    assert_eq!(*exit_code, Some(3));

    // A registry that refuses the password: the pull's registry error says so.
    let config_dir = dir.path().join("docker");
    // SAFETY: this binary runs this single test, so no other thread reads the environment.
    unsafe { std::env::set_var(rbuild_core::registry::DOCKER_CONFIG_ENV, &config_dir) };
    let guarded = Registry::start(Some(&htpasswd_line("tester", "s3cret")));
    let mut config = DockerConfig::load().unwrap();
    let wrong = RegistryCredentials {
        username: "tester".into(),
        password: "nope".into(),
    };
    config.store_credentials(&guarded.addr, &wrong).unwrap();
    let from = format!("{}/private/base:1", guarded.addr);
    let (result, _) = build_with(&store, &format!("FROM {from}\n"), &ctx, |_| {});
    let err = result.unwrap_err();
    let BuildError::BaseImage {
        reference,
        at,
        source,
    } = &err
    else {
        panic!("expected a base image error, got {err:?}");
    };
    assert_eq!(reference, &from);
    assert_eq!(at.line(), Some(1));
    assert!(
        matches!(source.as_ref(), BuildError::Pull { reference, .. } if reference == &from),
        "{source:?}"
    );
    assert_eq!(
        err.registry_error().map(|e| e.kind()),
        Some(RegistryErrorKind::Unauthorized),
        "{err:?}"
    );

    // A registry that lacks the image: not found.
    let open = Registry::start(None);
    let from = format!("{}/absent/base:1", open.addr);
    let (result, _) = build_with(
        &store,
        &format!("FROM busybox\nFROM {from}\n"),
        &ctx,
        |_| {},
    );
    let err = result.unwrap_err();
    let BuildError::BaseImage { reference, at, .. } = &err else {
        panic!("expected a base image error, got {err:?}");
    };
    assert_eq!(reference, &from);
    assert_eq!(at.line(), Some(2));
    assert_eq!(
        err.registry_error().map(|e| e.kind()),
        Some(RegistryErrorKind::NotFound),
        "{err:?}"
    );
}
