//! Runs the embedding example (`examples/embed.rs`, an example of this crate) on a tiny
//! busybox Dockerfile: it builds, shows each step and a RUN step's output as they come,
//! prints the image id, and a second build is cached.
//!
//! The example binary is built by `cargo test` (all targets) or by
//! `cargo build -p rbuild-core --example embed`; this test fails when it is missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::require::require_root;

/// `target/<profile>/examples/embed`, beside this test's own `deps/` directory.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("finding the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join("embed");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p rbuild-core --example embed` \
         (a plain `cargo test` builds it too)",
        path.display()
    );
    path
}

fn embed(context: &Path, store: &Path) -> Output {
    let out = Command::new(example())
        .arg(context)
        .env("RBUILD_ROOT", store)
        .output()
        .expect("running the embed example");
    assert!(
        out.status.success(),
        "embed failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn embed_example_builds_a_busybox_dockerfile_and_reports_its_steps() {
    require_root("RUN steps use namespaces and overlay mounts");
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install busybox-static"
    );
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let context = dir.path().join("context");
    std::fs::create_dir(&context).expect("creating the context");
    std::fs::copy(busybox, context.join("busybox")).expect("copying busybox");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo embedded-$((6 * 7))\"]\n",
    )
    .expect("writing the Dockerfile");
    let store = dir.path().join("store");

    let first = embed(&context, &store);
    let events = String::from_utf8_lossy(&first.stderr).into_owned();
    for want in [
        "[1/2] COPY busybox /bin/busybox",
        "[2/2] RUN",
        "embedded-42",
        "done in",
    ] {
        assert!(
            events.contains(want),
            "no {want:?} in the events:\n{events}"
        );
    }
    let id = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "not an image id: {id:?}"
    );

    let second = embed(&context, &store);
    let events = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(
        events.lines().filter(|l| l.ends_with(" cached")).count(),
        2,
        "both steps should come from the cache:\n{events}"
    );
    assert!(
        !events.contains("embedded-42"),
        "a cached RUN ran again:\n{events}"
    );
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), id);
}
