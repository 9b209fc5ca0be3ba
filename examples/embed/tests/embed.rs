//! Runs the embedding example on a tiny busybox Dockerfile: it builds, prints the steps'
//! events as they come (including a RUN step's output), and a second build is cached.

use std::path::Path;
use std::process::{Command, Output};

fn embed(dockerfile: &Path, context: &Path, store: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_embed"))
        .arg(dockerfile)
        .arg(context)
        .arg(store)
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
fn embed_builds_a_busybox_dockerfile_and_prints_its_events() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test needs root (RUN steps use namespaces and overlay mounts)"
    );
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install busybox-static"
    );
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let context = dir.path().join("context");
    std::fs::create_dir(&context).expect("creating the context");
    std::fs::copy(busybox, context.join("busybox")).expect("copying busybox");
    let dockerfile = context.join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo embedded-hello; /bin/busybox mkdir /out\"]\n",
    )
    .expect("writing the Dockerfile");
    let store = dir.path().join("store");

    let first = String::from_utf8_lossy(&embed(&dockerfile, &context, &store).stdout).into_owned();
    for want in [
        "start [1/2] COPY busybox /bin/busybox",
        "| embedded-hello",
        "built sha256:",
    ] {
        assert!(first.contains(want), "no {want:?} in:\n{first}");
    }
    assert!(
        first.lines().any(|l| l.contains(" done ")),
        "no finished step in:\n{first}"
    );
    assert!(
        first
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("image sha256:")),
        "{first}"
    );

    let second = String::from_utf8_lossy(&embed(&dockerfile, &context, &store).stdout).into_owned();
    assert_eq!(
        second.lines().filter(|l| l.ends_with(" cached")).count(),
        2,
        "both steps should come from the cache:\n{second}"
    );
    assert!(
        !second.contains("| embedded-hello"),
        "a cached RUN ran again:\n{second}"
    );
}
