//! Pull, push and export show their progress (issue 15, item 8): one line per blob, in
//! every progress mode, against a real `docker-registry` on 127.0.0.1 and an image of
//! several layers of a few MB each (random bytes, so that gzip cannot shrink them and
//! bytes move long enough to be reported).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

mod support;

use support::registry::Registry;
use support::run::fixture;
use support::scratch::Scratch;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

/// A store with the busybox fixture and `name` built on it: busybox's layer and two
/// layers of 3 MB and 5 MB of random bytes.
fn store_with_layers(scratch: &Scratch, store: &str, name: &str) -> PathBuf {
    let tar = fixture("busybox");
    let tar = tar.to_str().expect("fixture paths are UTF-8");
    let root = scratch.path(store);
    scratch.ok(&root, &["import", tar, "busybox:latest"]);
    let ctx = scratch.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         RUN head -c 3000000 /dev/urandom > /three\n\
         RUN head -c 5000000 /dev/urandom > /five\n",
    )
    .unwrap();
    scratch.ok(
        &root,
        &[
            "build",
            "--progress",
            "quiet",
            "-t",
            name,
            ctx.to_str().unwrap(),
        ],
    );
    root
}

/// The size of blob `digest` (`sha256:<hex>`) in the store at `root`.
fn blob_size(root: &Path, digest: &str) -> u64 {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let path = root.join("blobs/sha256").join(hex);
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// The blobs (config and layers) of the image `name` in the store at `root`, with their
/// sizes: those a save writes, but the manifest (which `inspect` names).
fn image_blobs(scratch: &Scratch, root: &Path, name: &str) -> BTreeMap<String, u64> {
    let (inspect, _) = scratch.ok(root, &["inspect", name]);
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    let manifest = inspect[0]["ManifestDigest"].as_str().unwrap().to_owned();
    let out = scratch.path("list.tar");
    let (_, stderr) = scratch.ok(
        root,
        &[
            "save",
            "--progress",
            "rawjson",
            "-o",
            out.to_str().unwrap(),
            name,
        ],
    );
    let transfers = check_transfers(&stderr, "export");
    transfers
        .into_keys()
        .filter(|digest| *digest != manifest)
        .map(|digest| {
            let size = blob_size(root, &digest);
            (digest, size)
        })
        .collect()
}

/// What rawjson said about one blob.
#[derive(Debug, Default)]
struct Seen {
    started: u32,
    total: Option<u64>,
    progress: Vec<u64>,
    finished: Option<(u64, String)>,
}

/// Parses rawjson `stderr`, checks every line against the schema and the transfer
/// contract (each started transfer finishes once; bytes never go back; the last progress
/// is the size), and returns each blob's transfer, all of kind `kind`.
fn check_transfers(stderr: &str, kind: &str) -> BTreeMap<String, Seen> {
    let schema_path = repo().join("docs/progress/rawjson.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid");
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for line in stderr.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{line}\n{errors:#?}");
        let Some(digest) = event["digest"].as_str() else {
            continue;
        };
        assert_eq!(event["kind"], kind, "{line}");
        let blob = seen.entry(digest.to_owned()).or_default();
        match event["type"].as_str().unwrap() {
            "transfer_started" => {
                blob.started += 1;
                blob.total = event["total"].as_u64();
            }
            "transfer_progress" => {
                assert_eq!(blob.started, 1, "progress before start: {line}");
                assert!(blob.finished.is_none(), "progress after the end: {line}");
                let current = event["current"].as_u64().unwrap();
                if let Some(last) = blob.progress.last() {
                    assert!(current >= *last, "bytes went back: {line}");
                }
                blob.progress.push(current);
            }
            "transfer_finished" => {
                assert_eq!(blob.started, 1, "end before start: {line}");
                assert!(blob.finished.is_none(), "finished twice: {line}");
                let size = event["size"].as_u64().unwrap();
                let outcome = event["outcome"].as_str().unwrap().to_owned();
                if outcome == "done" {
                    assert_eq!(blob.progress.last(), Some(&size), "no final bytes: {line}");
                }
                blob.finished = Some((size, outcome));
            }
            other => panic!("unexpected event {other}: {line}"),
        }
    }
    for (digest, blob) in &seen {
        assert!(
            blob.finished.is_some(),
            "{digest} started and never finished"
        );
    }
    seen
}

fn size_text(bytes: u64) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    let units = ["B", "kB", "MB", "GB"];
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes}B"),
        _ if value >= 100.0 => format!("{value:.0}{}", units[unit]),
        _ if value >= 10.0 => format!("{value:.1}{}", units[unit]),
        _ => format!("{value:.2}{}", units[unit]),
    }
}

fn short(digest: &str) -> &str {
    &digest["sha256:".len().."sha256:".len() + 12]
}

#[test]
fn plain_push_and_pull_print_a_start_and_an_end_line_per_blob_with_its_size() {
    let reg = Registry::start(None);
    let scratch = Scratch::new("it builds its multi-layer image with RUN steps");
    let name = format!("{}/app/layers:1", reg.addr);
    let src = store_with_layers(&scratch, "src", &name);
    let blobs = image_blobs(&scratch, &src, &name);
    assert_eq!(blobs.len(), 4, "config and three layers: {blobs:?}");

    let (stdout, stderr) = scratch.ok(&src, &["push", "--progress", "plain", &name]);
    assert!(stdout.contains("digest: sha256:"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("The push refers to repository [{}/app/layers]", reg.addr).as_str()),
        "{stderr}"
    );
    for (digest, size) in &blobs {
        let id = short(digest);
        let size = size_text(*size);
        assert!(
            lines.contains(&format!("{id}: Pushing {size}").as_str()),
            "no start line for {digest}:\n{stderr}"
        );
        assert!(
            lines.contains(&format!("{id}: Pushed {size}").as_str()),
            "no end line for {digest}:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), 1 + 2 * blobs.len(), "{stderr}");

    // Again: the registry has every blob.
    let (_, stderr) = scratch.ok(&src, &["push", "--progress", "plain", &name]);
    for digest in blobs.keys() {
        assert!(
            stderr.contains(&format!("{}: Layer already exists\n", short(digest))),
            "{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 1 + blobs.len(), "{stderr}");

    let dst = scratch.path("dst");
    let (stdout, stderr) = scratch.ok(&dst, &["pull", "--progress", "plain", &name]);
    assert!(stdout.starts_with("Digest: sha256:"), "{stdout}");
    assert_eq!(stderr.lines().next(), Some("1: Pulling from app/layers"));
    for (digest, size) in &blobs {
        let id = short(digest);
        assert_eq!(blob_size(&dst, digest), *size, "{digest} pulled whole");
        let size = size_text(*size);
        assert!(
            stderr.contains(&format!("{id}: Downloading {size}\n")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("{id}: Pull complete {size}\n")),
            "{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 1 + 2 * blobs.len(), "{stderr}");

    // Quiet: nothing but the result.
    let (stdout, stderr) = scratch.ok(&dst, &["pull", "-q", &name]);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.starts_with("Digest: sha256:"), "{stdout}");
    let (_, stderr) = scratch.ok(&dst, &["pull", "--progress", "plain", &name]);
    for digest in blobs.keys() {
        assert!(
            stderr.contains(&format!("{}: Already exists\n", short(digest))),
            "{stderr}"
        );
    }
}

#[test]
fn rawjson_transfers_parse_grow_and_end_at_the_blob_size() {
    let reg = Registry::start(None);
    let scratch = Scratch::new("it builds its multi-layer image with RUN steps");
    let name = format!("{}/app/json:1", reg.addr);
    let src = store_with_layers(&scratch, "src", &name);

    let (_, stderr) = scratch.ok(&src, &["push", "--progress", "rawjson", &name]);
    let pushed = check_transfers(&stderr, "push");
    assert_eq!(pushed.len(), 4, "{stderr}");
    for (digest, blob) in &pushed {
        let size = blob_size(&src, digest);
        assert_eq!(blob.total, Some(size), "{digest}");
        assert_eq!(blob.finished, Some((size, "done".to_owned())), "{digest}");
    }

    let dst = scratch.path("dst");
    let (_, stderr) = scratch.ok(&dst, &["pull", "--progress", "rawjson", &name]);
    let pulled = check_transfers(&stderr, "pull");
    assert_eq!(
        pulled.keys().collect::<BTreeSet<_>>(),
        pushed.keys().collect::<BTreeSet<_>>()
    );
    for (digest, blob) in &pulled {
        let size = blob_size(&dst, digest);
        assert_eq!(blob.finished, Some((size, "done".to_owned())), "{digest}");
        // Throttled: a few events a second per blob, not one per read.
        assert!(blob.progress.len() <= 40, "{digest}: {:?}", blob.progress);
    }

    // Pushed to another repository of the registry: mounted, not uploaded.
    let other = format!("{}/app/other:1", reg.addr);
    let (_, stderr) = scratch.ok(&src, &["push", "--progress", "rawjson", &name, &other]);
    let mounted = check_transfers(&stderr, "push");
    for (digest, blob) in &mounted {
        assert_eq!(
            blob.finished.as_ref().map(|(_, o)| o.as_str()),
            Some("mounted"),
            "{digest}"
        );
        assert!(blob.progress.is_empty(), "{digest}");
    }
}

#[test]
fn tty_pull_draws_a_line_per_layer_that_ends_in_its_final_state() {
    let reg = Registry::start(None);
    let scratch = Scratch::new("it builds its multi-layer image with RUN steps");
    let name = format!("{}/app/tty:1", reg.addr);
    let src = store_with_layers(&scratch, "src", &name);
    let blobs = image_blobs(&scratch, &src, &name);
    scratch.ok(&src, &["push", "-q", &name]);

    let dst = scratch.path("dst");
    let command = format!(
        "env RBUILD_ROOT={} RBUILD_CONFIG={} DOCKER_CONFIG={} {} pull {name}; echo EXIT=$?; sleep 600",
        dst.display(),
        scratch.path("config.toml").display(),
        scratch.path("docker").display(),
        env!("CARGO_BIN_EXE_rbuild"),
    );
    let tmux = support::tmux::Tmux::start(
        "the pull progress",
        &command,
        100,
        30,
        Duration::from_secs(120),
    );
    let screen = tmux.wait_for("the end of the pull", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
    for digest in blobs.keys() {
        let id = short(digest);
        let lines: Vec<&str> = screen.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(
            lines,
            [format!("{id}: Pull complete").as_str()],
            "one line per blob, in its final state:\n{screen}"
        );
    }
    assert!(!screen.contains("Downloading"), "a stale line:\n{screen}");
    assert!(screen.contains("Digest: sha256:"), "{screen}");

    drop(tmux);

    // Pushed again to a new registry: the same lines for a push.
    let reg2 = Registry::start(None);
    let moved = format!("{}/app/tty:1", reg2.addr);
    let command = format!(
        "env RBUILD_ROOT={} RBUILD_CONFIG={} DOCKER_CONFIG={} {} push {name} {moved}; echo EXIT=$?; sleep 600",
        dst.display(),
        scratch.path("config.toml").display(),
        scratch.path("docker").display(),
        env!("CARGO_BIN_EXE_rbuild"),
    );
    let tmux = support::tmux::Tmux::start(
        "the push progress to a second registry",
        &command,
        100,
        30,
        Duration::from_secs(120),
    );
    let screen = tmux.wait_for("the end of the push", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
    for digest in blobs.keys() {
        let id = short(digest);
        let lines: Vec<&str> = screen.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(lines, [format!("{id}: Pushed").as_str()], "{screen}");
    }
    assert!(!screen.contains("Pushing"), "a stale line:\n{screen}");
}

#[test]
fn builds_show_the_base_pull_and_the_export_as_buildkit_does_and_save_reports_blobs() {
    let reg = Registry::start(None);
    let scratch = Scratch::new("it builds its multi-layer image with RUN steps");
    let name = format!("{}/app/base:1", reg.addr);
    let src = store_with_layers(&scratch, "src", &name);
    let blobs = image_blobs(&scratch, &src, &name);
    scratch.ok(&src, &["push", "-q", &name]);

    // A fresh store pulls the base within the build, then exports an OCI layout.
    let root = scratch.path("builder");
    let ctx = scratch.path("ctx2");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {name}\nENV A=1\n")).unwrap();
    let layout = scratch.path("layout");
    let output = format!("type=oci,dest={},tar=false", layout.display());
    let (_, stderr) = scratch.ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &output,
            ctx.to_str().unwrap(),
        ],
    );
    let blocks: Vec<&str> = stderr.split("\n\n").collect();
    let metadata = blocks
        .iter()
        .find(|b| b.starts_with(&format!("#1 [internal] load metadata for {name}\n")))
        .unwrap_or_else(|| panic!("no metadata step:\n{stderr}"));
    for (digest, size) in &blobs {
        let size = bk_size(*size);
        let line = format!("#1 {digest} {size} / {size} ");
        assert!(
            metadata
                .lines()
                .any(|l| l.starts_with(&line) && l.ends_with(" done")),
            "no line {line}... done:\n{stderr}"
        );
    }
    assert!(
        metadata.ends_with("#1 DONE") || metadata.contains("\n#1 DONE "),
        "{stderr}"
    );
    let export = blocks
        .iter()
        .find(|b| b.contains(" exporting to oci image format\n"))
        .unwrap_or_else(|| panic!("no export step:\n{stderr}"));
    let step = export.split(' ').next().unwrap();
    // The layers of the base are in the exported image, each reported once.
    for (digest, size) in blobs
        .iter()
        .filter(|(d, _)| layout.join("blobs/sha256").join(&d[7..]).is_file())
    {
        let size = bk_size(*size);
        let line = format!("{step} exporting {digest} {size} / {size} ");
        assert_eq!(
            export.lines().filter(|l| l.starts_with(&line)).count(),
            1,
            "{line}:\n{stderr}"
        );
    }
    assert!(
        export
            .lines()
            .any(|l| l.starts_with(&format!("{step} DONE "))),
        "{stderr}"
    );

    // save: every blob an export transfer of the archive's path, sizes right.
    let archive = scratch.path("saved.tar");
    let (_, stderr) = scratch.ok(
        &src,
        &[
            "save",
            "--progress",
            "rawjson",
            "-o",
            archive.to_str().unwrap(),
            &name,
        ],
    );
    let saved = check_transfers(&stderr, "export");
    let manifest_and_blobs = saved.len();
    assert_eq!(
        manifest_and_blobs,
        blobs.len() + 1,
        "the manifest too: {stderr}"
    );
    for (digest, size) in &blobs {
        assert_eq!(
            saved[digest].finished,
            Some((*size, "done".to_owned())),
            "{digest}"
        );
    }
    assert!(
        stderr.contains(&format!("\"target\":\"{}\"", archive.display())),
        "{stderr}"
    );
}

/// Bytes as BuildKit's plain progress shows them: `6.00MB`.
fn bk_size(bytes: u64) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    let units = ["B", "kB", "MB", "GB"];
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", units[unit])
    }
}

/// More blobs than the terminal has rows: the live view shows what fits, and at the end
/// every blob's final line is in the terminal's scrollback, in order, as docker leaves a
/// pull of many layers (none lost above the screen).
#[test]
fn tty_progress_of_more_blobs_than_rows_leaves_every_final_line() {
    let scratch = Scratch::new("it builds its multi-layer image with RUN steps");
    let root = store_with_layers(&scratch, "store", "base:1");
    let ctx = scratch.path("many");
    std::fs::create_dir_all(&ctx).unwrap();
    let steps: String = (0..24).map(|i| format!("RUN echo {i} > /f{i}\n")).collect();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM base:1\n{steps}")).unwrap();
    scratch.ok(
        &root,
        &[
            "build",
            "--progress",
            "quiet",
            "-t",
            "many:1",
            ctx.to_str().unwrap(),
        ],
    );
    let blobs = image_blobs(&scratch, &root, "many:1");
    assert!(blobs.len() > 24, "{blobs:?}");

    let command = format!(
        "env RBUILD_ROOT={} RBUILD_CONFIG={} {} save --progress tty -o {} many:1; echo EXIT=$?; sleep 600",
        root.display(),
        scratch.path("config.toml").display(),
        env!("CARGO_BIN_EXE_rbuild"),
        scratch.path("many.tar").display(),
    );
    let tmux = support::tmux::Tmux::start(
        "the save progress of many blobs",
        &command,
        60,
        12,
        Duration::from_secs(120),
    );
    tmux.wait_for("the end of the save", |s| s.contains("EXIT="));
    let all = tmux.capture_history();
    assert!(all.contains("EXIT=0"), "{all}");
    for digest in blobs.keys() {
        let id = short(digest);
        let lines: Vec<&str> = all.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(
            lines,
            [format!("{id}: Exported").as_str()],
            "every blob's final line, once, in the scrollback:\n{all}"
        );
    }
}
