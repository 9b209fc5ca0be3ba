//! The examples build reproducibly: friendlyhello (pip from PyPI) and hello-c (a
//! multi-stage C compile) give the same image digest on two store roots with the same
//! `SOURCE_DATE_EPOCH`, and `--reproducible-check` catches `RUN date +%N > /t`.
//!
//! Needs root, network access to PyPI, and the python3, gcc and busybox fixtures
//! (`fixtures/base-images/make`); the fixtures are large, so each test builds twice
//! and no more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use rbuild_core::{
    BuildError, BuildRequest, Builder, ContentStore, ContextSource, Digest, DockerfileInput,
    error_chain::error_chain,
    layer::{Compression, LayerOptions},
    progress::Collect,
};
use support::build::*;
use support::require::require_root;

const EPOCH: u64 = 1_700_000_000;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// A store in `dir` with the fixtures the examples start from, imported as their README
/// says (the same way in every store: uncompressed, which is faster to write, with
/// docker's default PATH and no creation time).
fn store_with(dir: &Path, fixtures: &[(&str, &str)]) -> ContentStore {
    require_root("builds mount overlays and run steps in namespaces");
    let store = ContentStore::open(dir.join("store")).unwrap();
    let options = LayerOptions::default().with_compression(Compression::None);
    for (fixture, name) in fixtures {
        import_with(&store, &fixture_tarball(fixture), name, &options);
    }
    store
}

/// Builds example `name` in a fresh store with `fixtures`, under [`EPOCH`]; returns the
/// image digest and the store (in the returned directory).
fn build_example(
    name: &str,
    fixtures: &[(&str, &str)],
) -> (Digest, ContentStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), fixtures);
    let root = example(name);
    let mut request = BuildRequest::new(
        DockerfileInput::Path(root.join("Dockerfile")),
        ContextSource::Directory(root),
    );
    request.spec.source_date_epoch = Some(EPOCH);
    let result = Builder::new(store.clone())
        .build(&request, &Collect::new())
        .unwrap_or_else(|e| panic!("building {name} failed: {}", error_chain(&e)));
    (result.image.digest().unwrap(), store, dir)
}

const GCC: (&str, &str) = ("gcc", "rbuild-fixtures/gcc:bookworm");
const BUSYBOX: (&str, &str) = ("busybox", "rbuild-fixtures/busybox:latest");
const PYTHON3: (&str, &str) = ("python3", "rbuild-fixtures/python3:bookworm");

#[test]
fn hello_c_gives_the_same_digest_on_two_store_roots_and_date_nanoseconds_are_caught() {
    let (first, _, _) = build_example("hello-c", &[GCC, BUSYBOX]);
    let (second, store, dir) = build_example("hello-c", &[GCC, BUSYBOX]);
    assert_eq!(first, second);

    // The gcc fixture is Debian: its date has %N.
    let ctx = context(dir.path(), &[]);
    let request = BuildRequest::new(
        DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text: "FROM rbuild-fixtures/gcc:bookworm\nRUN date +%N > /t\n".to_owned(),
        },
        ContextSource::Directory(ctx),
    );
    let err = Builder::new(store)
        .check_reproducible(&request, &Collect::new())
        .unwrap_err();
    let BuildError::NotReproducible { difference, .. } = &err else {
        panic!("not a reproducibility failure: {}", error_chain(&err));
    };
    assert!(
        difference.starts_with("/t (layer 2) differs in content"),
        "{difference}"
    );
}

#[test]
fn friendlyhello_gives_the_same_digest_on_two_store_roots() {
    let (first, _, _) = build_example("friendlyhello", &[PYTHON3]);
    let (second, _, _) = build_example("friendlyhello", &[PYTHON3]);
    assert_eq!(first, second);
}
