//! Reproducible builds: `SOURCE_DATE_EPOCH` fixes the times of what a build makes, two
//! builds on two store roots agree to the digest, and `--reproducible-check` names the
//! first file that differs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;

use rbuild_core::{
    BuildError, BuildRequest, Builder, ContentStore, ContextSource, DockerfileInput, Event,
    error_chain::error_chain,
    image::{Image, rfc3339},
    progress::Collect,
};
use support::build::*;

const EPOCH: u64 = 1_600_000_000;

/// The mtime of every entry of layer `index` of `image`, by path.
fn layer_mtimes(store: &ContentStore, image: &Image, index: usize) -> Vec<(String, u64)> {
    let (blob, _) = image.layers().unwrap()[index].clone();
    let file = store.open_blob(&blob).unwrap();
    let mut plain = Vec::new();
    rbuild_core::layer::decompress(std::io::BufReader::new(file))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    let mut archive = tar::Archive::new(&plain[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().mtime().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_epoch_fixes_created_times_and_clamps_new_files_but_not_the_base() {
    let (dir, store) = busybox_store();
    let base = store.resolve("busybox:latest").unwrap();
    let base = rbuild_core::image::load_image(&store, &base.descriptor).unwrap();
    let ctx = context(dir.path(), &[("f.txt", "from the context\n")]);
    let dockerfile = "FROM busybox\nRUN mkdir /app && echo $SOURCE_DATE_EPOCH > /app/epoch\nENV A=1\nCOPY f.txt /app/\nWORKDIR /w\n";
    let (result, _) = build_with(&store, dockerfile, &ctx, |r| {
        r.spec.source_date_epoch = Some(EPOCH);
    });
    let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    let image = &result.image;
    let when = rfc3339(EPOCH);
    assert_eq!(image.config.created.as_deref(), Some(when.as_str()));
    let base_entries = base.config.history.len();
    assert_eq!(
        image.config.history[..base_entries],
        base.config.history[..]
    );
    for entry in &image.config.history[base_entries..] {
        assert_eq!(entry.created.as_deref(), Some(when.as_str()), "{entry:?}");
    }
    // RUN saw the variable.
    assert_eq!(
        read(&store, image, dir.path(), "/app/epoch").trim(),
        EPOCH.to_string()
    );
    // The base layer is the base's, untouched; every entry of the new ones is clamped.
    let layers = image.layers().unwrap();
    assert_eq!(layers[0], base.layers().unwrap()[0]);
    for index in 1..layers.len() {
        for (path, mtime) in layer_mtimes(&store, image, index) {
            assert!(mtime <= EPOCH, "layer {index}: {path} has mtime {mtime}");
        }
    }
}

#[test]
fn the_build_argument_turns_it_on_and_is_never_reported_unused() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, events) = build_with(
        &store,
        "FROM busybox\nRUN echo $SOURCE_DATE_EPOCH > /e\n",
        &ctx,
        |r| {
            r.spec
                .build_args
                .push(("SOURCE_DATE_EPOCH".to_owned(), EPOCH.to_string()));
        },
    );
    let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    assert_eq!(
        result.image.config.created.as_deref(),
        Some(rfc3339(EPOCH).as_str())
    );
    assert_eq!(
        read(&store, &result.image, dir.path(), "/e").trim(),
        EPOCH.to_string()
    );
    let unused: Vec<Event> = events
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Warning { message, .. } if message.contains("SOURCE_DATE_EPOCH")))
        .collect();
    assert!(unused.is_empty(), "{unused:?}");
    // A value that is not a number is refused, naming it.
    let (result, _) = build_with(&store, "FROM busybox\n", &ctx, |r| {
        r.spec
            .build_args
            .push(("SOURCE_DATE_EPOCH".to_owned(), "yesterday".to_owned()));
    });
    let err = result.unwrap_err();
    assert!(matches!(err, BuildError::SourceDateEpoch { .. }), "{err}");
    assert!(err.to_string().contains("\"yesterday\""), "{err}");
}

#[test]
fn a_layer_cached_without_the_epoch_is_not_reused_by_an_epoch_build() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox\nRUN echo same > /same\n";
    let plain = build(&store, dockerfile, &ctx);
    let epoch = |e: u64| {
        move |r: &mut BuildRequest| {
            r.spec.source_date_epoch = Some(e);
        }
    };
    let (first, _) = build_with(&store, dockerfile, &ctx, epoch(EPOCH));
    let first = first.unwrap();
    assert_eq!(
        cached(&first),
        vec![("[2/2] RUN echo same > /same".to_owned(), false)]
    );
    assert_ne!(first.image.layers().unwrap(), plain.image.layers().unwrap());
    for (path, mtime) in layer_mtimes(&store, &first.image, 1) {
        assert!(mtime <= EPOCH, "{path} has mtime {mtime}");
    }
    // The same epoch again: from the cache, the same image.
    let (again, _) = build_with(&store, dockerfile, &ctx, epoch(EPOCH));
    let again = again.unwrap();
    assert_eq!(
        cached(&again),
        vec![("[2/2] RUN echo same > /same".to_owned(), true)]
    );
    assert_eq!(again.image.digest().unwrap(), first.image.digest().unwrap());
    // Another epoch: runs again.
    let (other, _) = build_with(&store, dockerfile, &ctx, epoch(EPOCH + 1));
    assert!(!other.unwrap().steps[0].cached);
}

/// A multi-stage build with RUN, COPY, COPY --from, WORKDIR, a whiteout and a hard link.
const MULTI_STAGE: &str = "FROM busybox AS tools
WORKDIR /src
COPY . .
RUN mkdir -p out/d && cat a.txt b/c.txt > out/d/all && ln out/d/all out/link && rm /etc/group
FROM busybox
COPY --from=tools /src/out /opt/out
RUN touch /stamp && rm /etc/passwd
";

#[test]
fn two_store_roots_give_the_same_digest_with_the_same_epoch() {
    let mut digests = Vec::new();
    for _ in 0..2 {
        let (dir, store) = busybox_store();
        let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b/c.txt", "c\n")]);
        let (result, _) = build_with(&store, MULTI_STAGE, &ctx, |r| {
            r.spec.source_date_epoch = Some(EPOCH);
        });
        let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
        digests.push((
            result.image.digest().unwrap(),
            result.image.layers().unwrap(),
        ));
    }
    assert_eq!(digests[0], digests[1]);
}

/// Runs `--reproducible-check` on `dockerfile` in `store`.
fn check(
    store: &ContentStore,
    dockerfile: &str,
    ctx: &std::path::Path,
) -> Result<rbuild_core::solver::ReproReport, BuildError> {
    let request = BuildRequest::new(
        DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text: dockerfile.to_owned(),
        },
        ContextSource::Directory(ctx.to_path_buf()),
    );
    Builder::new(store.clone()).check_reproducible(&request, &Collect::new())
}

#[test]
fn the_reproducible_check_names_the_file_that_differs() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    // busybox's date has no %N: the kernel's random UUID differs as surely.
    let err = check(
        &store,
        "FROM busybox\nRUN echo same > /same && cat /proc/sys/kernel/random/uuid > /t\n",
        &ctx,
    )
    .unwrap_err();
    let BuildError::NotReproducible { difference, .. } = &err else {
        panic!("not a reproducibility failure: {}", error_chain(&err));
    };
    assert!(
        difference.starts_with("/t (layer 2) differs in content"),
        "{difference}"
    );
    // Nothing was kept: the user's store has only the base image, and no scratch.
    assert_eq!(store.images().unwrap().len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(store.tmp_dir()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_reproducible_check_passes_a_deterministic_build() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b/c.txt", "c\n")]);
    let report = check(&store, MULTI_STAGE, &ctx)
        .unwrap_or_else(|e| panic!("check failed: {}", error_chain(&e)));
    // The same image a build with that epoch gives.
    let (result, _) = build_with(&store, MULTI_STAGE, &ctx, |r| {
        r.spec.source_date_epoch = Some(report.source_date_epoch);
    });
    assert_eq!(result.unwrap().image.digest().unwrap(), report.digest);
}

/// The check builds the image the build itself makes: every field of the spec is carried
/// into the check builds (`force_compression` was once copied by hand, field by field).
#[test]
fn the_reproducible_check_builds_the_image_a_build_with_the_same_spec_makes() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("f.txt", "from the context\n")]);
    let mut request = BuildRequest::new(
        DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text: "FROM busybox\nCOPY f.txt /f.txt\nLABEL a=b\n".to_owned(),
        },
        ContextSource::Directory(ctx.clone()),
    );
    request.spec.source_date_epoch = Some(EPOCH);
    request.spec.compression = rbuild_core::layer::Compression::Zstd;
    request.spec.force_compression = true;
    request.spec.labels = vec![("org.example.team".to_owned(), "repro".to_owned())];
    let builder = Builder::new(store.clone());
    let report = builder
        .check_reproducible(&request, &Collect::new())
        .unwrap_or_else(|e| panic!("check failed: {}", error_chain(&e)));
    let built = builder
        .build(&request, &Collect::new())
        .unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    assert_eq!(report.digest, built.image.digest().unwrap());
}
