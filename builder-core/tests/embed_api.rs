//! What a tool embedding rbuild-core gets from its public API (issue 17, item 5): a
//! closure is a progress sink, a build cancelled from another thread leaves nothing
//! behind, and the embedder's own executor and snapshotter run the steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbuild_core::exec::{ExecError, Executor, ExitStatus, OutputSink, RunSpec, SandboxExecutor};
use rbuild_core::snapshot::{OverlaySnapshotter, Snapshot, SnapshotError, Snapshotter};
use rbuild_core::{
    BuildError, BuildRequest, Builder, ContentStore, ContextSource, DockerfileInput, Event,
    Progress,
};
use rbuild_core::{change::ChangeSet, progress::StepOutput};

use support::build::{busybox_store, context};

fn request(dockerfile: &str, ctx: PathBuf) -> BuildRequest {
    let mut request = BuildRequest::new(
        DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text: dockerfile.to_owned(),
        },
        ContextSource::Directory(ctx),
    );
    request.options.no_cache = true;
    request
}

/// Processes whose command line (arguments joined by spaces) is `line`.
fn processes(line: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("reading /proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let found = String::from_utf8_lossy(&raw).replace('\0', " ");
            (found.trim_end() == line).then_some(pid)
        })
        .collect()
}

/// Mount points under `dir`, in this process's mount namespace.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let dir = dir.to_string_lossy().into_owned();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_closure_is_a_progress_sink() {
    let seen = Mutex::new(Vec::new());
    let sink = |event: &Event| {
        if let Event::Warning { message, .. } = event {
            seen.lock().unwrap().push(message.clone());
        }
    };
    let as_trait_object: &dyn Progress = &sink;
    as_trait_object.event(&Event::Warning {
        rule: None,
        message: "first".to_owned(),
        line: None,
    });
    sink.event(&Event::Warning {
        rule: None,
        message: "second".to_owned(),
        line: None,
    });
    assert_eq!(*seen.lock().unwrap(), ["first", "second"]);
}

/// The embedder keeps a clone of the request's token, cancels it from its own thread
/// while a step sleeps: the build ends `Canceled`, the step's process is gone, nothing is
/// mounted under the store, no scratch is left in it, and the store is still whole.
#[test]
fn a_build_cancelled_from_another_thread_leaves_nothing_behind() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let request = request("FROM busybox\nRUN echo started; sleep 4343\n", ctx);
    let cancel = request.options.cancel.clone();
    let started = AtomicBool::new(false);
    let progress = |event: &Event| {
        if matches!(event, Event::StepLog { text, .. } if text.contains("started")) {
            started.store(true, Ordering::SeqCst);
        }
    };
    let root = store.root().to_path_buf();
    let builder = Builder::new(store);
    let result = std::thread::scope(|s| {
        let canceller = s.spawn(|| {
            let begun = Instant::now();
            while !started.load(Ordering::SeqCst) {
                if begun.elapsed() > Duration::from_secs(60) {
                    cancel.cancel();
                    panic!("the step never started");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(processes("sleep 4343").len(), 1, "the step is not running");
            cancel.cancel();
        });
        let result = builder.build(&request, &progress);
        canceller.join().unwrap();
        result
    });
    assert!(matches!(result, Err(BuildError::Canceled)), "{result:?}");
    assert_eq!(
        processes("sleep 4343"),
        Vec::<u32>::new(),
        "the step outlived the build"
    );
    assert_eq!(mounts_under(&root), Vec::<String>::new());
    let scratch: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        scratch,
        Vec::<std::ffi::OsString>::new(),
        "scratch left in the store"
    );
    drop(builder);
    let store = ContentStore::open(&root).unwrap();
    assert_eq!(rbuild_core::image::verify(&store).unwrap(), Vec::new());
    assert!(store.resolve("busybox:latest").is_ok());
}

/// Runs steps with the sandbox, counting them.
struct CountingExecutor {
    inner: SandboxExecutor,
    runs: AtomicUsize,
}

impl Executor for CountingExecutor {
    fn run(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.inner.run(snapshot, spec, sink)
    }
}

/// Makes step roots with overlay, counting them.
struct CountingSnapshotter {
    inner: OverlaySnapshotter,
    prepared: AtomicUsize,
}

impl Snapshotter for CountingSnapshotter {
    fn prepare(
        &self,
        lowers: &[PathBuf],
        scratch: &std::path::Path,
    ) -> Result<Snapshot, SnapshotError> {
        self.prepared.fetch_add(1, Ordering::SeqCst);
        self.inner.prepare(lowers, scratch)
    }

    fn diff(&self, snapshot: &Snapshot) -> Result<ChangeSet, SnapshotError> {
        self.inner.diff(snapshot)
    }
}

#[test]
fn the_embedders_executor_and_snapshotter_run_the_steps() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("file", "x")]);
    let executor = Arc::new(CountingExecutor {
        inner: SandboxExecutor::new(),
        runs: AtomicUsize::new(0),
    });
    let snapshotter = Arc::new(CountingSnapshotter {
        inner: OverlaySnapshotter::new(),
        prepared: AtomicUsize::new(0),
    });
    let builder = Builder::new(store)
        .with_executor(executor.clone())
        .with_snapshotter(snapshotter.clone());
    let layers = AtomicUsize::new(0);
    let progress = |event: &Event| {
        if let Event::StepFinished {
            output: StepOutput::Layer { .. },
            ..
        } = event
        {
            layers.fetch_add(1, Ordering::SeqCst);
        }
    };
    let request = request(
        "FROM busybox\nRUN echo one > /one\nCOPY file /file\nRUN echo two > /two\n",
        ctx,
    );
    let result = builder.build(&request, &progress);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(executor.runs.load(Ordering::SeqCst), 2, "the RUN steps");
    assert_eq!(
        snapshotter.prepared.load(Ordering::SeqCst),
        layers.load(Ordering::SeqCst),
        "one step root per step that wrote a layer"
    );
    assert!(snapshotter.prepared.load(Ordering::SeqCst) >= 2);
}

/// `platforms` of an embedder's request: each is built once (a platform named twice
/// too), in the order first named, and the result is their index. A `scratch` image with a
/// copied file runs no program, so no emulation is needed for arm64.
#[test]
fn a_request_of_several_platforms_builds_each_once_into_an_index() {
    use rbuild_core::image::config_platform;
    use rbuild_dockerfile::Platform;

    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("store")).unwrap();
    let ctx = context(dir.path(), &[("hello.txt", "hello\n")]);
    let platform = |text: &str| Platform::parse(text).unwrap();
    let (result, events) = support::build::build_with(
        &store,
        "FROM scratch\nCOPY hello.txt /\n",
        &ctx,
        |request| {
            request.spec.platforms = vec![
                platform("linux/arm64"),
                platform("linux/amd64"),
                platform("linux/aarch64"),
            ];
        },
    );
    let result = result.unwrap_or_else(|e| panic!("{}", rbuild_core::error_chain::error_chain(&e)));
    let index = result
        .index
        .expect("a build of two platforms gives an index");
    let built: Vec<String> = index
        .images
        .iter()
        .map(|image| config_platform(&image.config).to_string())
        .collect();
    assert_eq!(built, ["linux/arm64", "linux/amd64"]);
    assert_eq!(result.image_id, index.digest().unwrap());
    let copies = events
        .events()
        .iter()
        .filter(|e| matches!(e, Event::StepStarted { name, .. } if name.contains("COPY hello.txt")))
        .count();
    assert_eq!(copies, 2, "{:?}", events.events());
}
