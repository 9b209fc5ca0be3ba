//! The differential suite: every case under the case directories is built by BuildKit
//! (docker 28.5's) and by rbuild, and the two final root filesystems and image configs
//! must be equal, up to what the case's divergences.md allows; a negative case (`fails`)
//! must fail with both. See fixtures/differential/README.md.
//!
//! Environment:
//! - `RBUILD_DIFF_DIR`: case directories separated by `:`, relative to the workspace
//!   (default: fixtures/differential and, when it exists, fixtures/external).
//! - `RBUILD_DIFF_CASES`: comma-separated cases to run, by name or `set/name` (the set is
//!   the case directory's name, e.g. `external/foo`) (default: all).
//! - `RBUILD_DIFF_JOBS`: how many cases run at once (default [`DEFAULT_JOBS`]).
//! - `RBUILD_DIFF_AGAINST`: `rbuild` (default) or `buildkit`, which builds each case a
//!   second time with BuildKit instead of rbuild: a check of the harness itself, whose
//!   comparison must then find nothing.
//! - `RBUILD_DIFF_ISOLATION`: passed to rbuild as `--isolation` (e.g. `chroot`, the
//!   isolation of a container with default security; default: rbuild's own choice).
//! - `RBUILD_DIFF_WRAPPER`: a program given the rbuild binary and its arguments to run
//!   them, e.g. `fixtures/differential/in-podman`, which runs rbuild inside podman with
//!   a pod's default security (issue 16; default: rbuild runs directly).
//! - `RBUILD_DIFF_KEEP`: when set, the exported trees are kept, and their directory printed.
//! - `MODERN_DOCKERD`, `MODERN_DOCKER`: the oracle's wrappers (default: what
//!   ../shared/tools/modern-buildkit prints).
//! - `RBUILD_DOCKERD_DIR`: the private dockerd's state (default:
//!   /tmp/rbuild-dockerd-differential-28); a daemon this test started is stopped at its end.
//! - `RBUILD_DIFF_CONTAINERD_STORE`: `0` (default) or `1`: whether that daemon uses the
//!   containerd image store (which `docker build -o type=oci` needs).
//!
//! Multi-platform cases (a `platforms` file) need BuildKit's multi-platform build, which
//! only the containerd image store has: without it, a second daemon with it is started for
//! them (state in `RBUILD_DOCKERD_DIR` + `-multiplatform`), and the base images are loaded
//! there with every platform; their arm64 images come from the fixtures' arm64 recipes,
//! and BuildKit's foreign steps use the same binfmt_misc handlers as rbuild's.
//!
//! Needs root, the oracle (scripts/setup-host installs it) and busybox-static; the test
//! fails, saying what is missing, without them.

#[path = "differential/builders.rs"]
mod builders;
#[path = "differential/case.rs"]
mod case;
#[path = "differential/config.rs"]
mod config;
#[path = "differential/tests.rs"]
mod tests;
#[path = "differential/tree.rs"]
mod tree;

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use builders::{Built, Dockerd, Oracle};
use case::{Case, CaseDir};

/// Images the cases may start from: the fixture that makes each, the fixture that makes
/// its linux/arm64 image (for multi-platform cases), and its name.
const BASE_IMAGES: &[(&str, &str, &str)] = &[
    ("busybox", "busybox-arm64", "busybox:latest"),
    (
        "python3",
        "python3-arm64",
        "rbuild-fixtures/python3:bookworm",
    ),
];

/// The platform of the arm64 fixtures.
const ARM64: &str = "linux/arm64";

/// Where a case's images go (in the dockerd and in rbuild's store).
const REFERENCE_REPO: &str = "rbuild-diff";
/// Where the second BuildKit build goes when BuildKit is compared with itself.
const AGAIN_REPO: &str = "rbuild-diff-again";

/// Cases run at once unless `RBUILD_DIFF_JOBS` says otherwise: measured fastest on two
/// cores (see fixtures/differential/README.md).
const DEFAULT_JOBS: usize = 8;

/// The image name of the case numbered `index` (unique in a run): a docker repository
/// component made of the case's set and name.
fn image_tag(repo: &str, index: usize, case: &Case) -> String {
    let mut name = String::new();
    for c in format!("{}-{}", case.set, case.name).chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    format!("{repo}/{index}-{}:latest", name.trim_end_matches('-'))
}

/// Who builds the tested side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Against {
    Rbuild,
    Buildkit,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

/// What every case needs: the daemon, the rbuild store with the base images, scratch space.
struct Harness {
    dockerd: Dockerd,
    /// The daemon of the multi-platform cases when `dockerd` cannot build them (it lacks
    /// the containerd image store) and the run has some.
    multi_platform: Option<Dockerd>,
    rbuild_root: tempfile::TempDir,
    scratch: tempfile::TempDir,
    against: Against,
    /// When the first case started: an mtime after it was set during the run. Cases run
    /// concurrently, and BuildKit runs a step that two builds share once (even under
    /// --no-cache), so a case may get a file made a little before its own start.
    started: SystemTime,
}

impl Harness {
    fn setup(cases: &[Case], against: Against) -> Result<Harness, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(
                "the differential suite must run as root (dockerd, overlay mounts, \
                        and file owners in the exported trees)"
                    .into(),
            );
        }
        let ws = workspace();
        let oracle = Oracle::find(&ws)?;
        let dockerd_dir = std::env::var_os("RBUILD_DOCKERD_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/rbuild-dockerd-differential-28"));
        let store = builders::containerd_store()?;
        let dockerd = Dockerd::start(&ws, oracle.clone(), &dockerd_dir, store)?;
        let mut scratch = tempfile::tempdir().map_err(|e| format!("creating scratch dir: {e}"))?;
        scratch.disable_cleanup(std::env::var_os("RBUILD_DIFF_KEEP").is_some());
        dockerd.check_buildkit(scratch.path())?;
        let rbuild_root = tempfile::tempdir().map_err(|e| format!("creating rbuild root: {e}"))?;
        let make = |fixture: &str| -> Result<String, String> {
            let made =
                builders::run(Command::new(ws.join("fixtures/base-images/make")).arg(fixture))?;
            Ok(String::from_utf8_lossy(&made.stdout).trim().to_owned())
        };
        for (fixture, _, image) in BASE_IMAGES {
            if *fixture != "busybox" && !cases.iter().any(|c| c.uses_image(image)) {
                continue;
            }
            builders::run(
                builders::rbuild_command(rbuild_root.path())
                    .arg("import")
                    .arg(make(fixture)?)
                    .arg(image),
            )?;
            let archive = scratch.path().join(format!("{fixture}.docker.tar"));
            builders::run(
                builders::rbuild_command(rbuild_root.path())
                    .args(["save", "--format", "docker", "-o"])
                    .arg(&archive)
                    .arg(image),
            )?;
            dockerd.load(&archive)?;
        }
        let multi: Vec<&Case> = cases.iter().filter(|c| !c.platforms.is_empty()).collect();
        let multi_platform = if multi.is_empty() || store {
            None
        } else {
            let mut dir = dockerd_dir.into_os_string();
            dir.push("-multiplatform");
            Some(Dockerd::start(&ws, oracle, Path::new(&dir), true)?)
        };
        if !multi.is_empty() {
            if let Some(bad) = multi
                .iter()
                .flat_map(|c| &c.platforms)
                .find(|p| !["linux/amd64", ARM64].contains(&p.as_str()))
            {
                return Err(format!(
                    "a multi-platform case asks for {bad}: the base images exist for \
                     linux/amd64 and {ARM64} only"
                ));
            }
            let daemon = multi_platform.as_ref().unwrap_or(&dockerd);
            for (fixture, arm64, image) in BASE_IMAGES {
                if *fixture != "busybox" && !multi.iter().any(|c| c.uses_image(image)) {
                    continue;
                }
                builders::run(
                    builders::rbuild_command(rbuild_root.path())
                        .args(["import", "--platform", ARM64])
                        .arg(make(arm64)?)
                        .arg(image),
                )?;
                daemon.load_all_platforms(rbuild_root.path(), image, scratch.path())?;
            }
        }
        Ok(Harness {
            started: SystemTime::now(),
            dockerd,
            multi_platform,
            rbuild_root,
            scratch,
            against,
        })
    }

    /// The daemon that builds `case` with BuildKit.
    fn dockerd_for(&self, case: &Case) -> &Dockerd {
        match &self.multi_platform {
            Some(daemon) if !case.platforms.is_empty() => daemon,
            _ => &self.dockerd,
        }
    }

    /// Builds the case numbered `index` both ways and compares, or checks that both fail.
    fn run_case(&self, index: usize, case: &Case) -> Result<Outcome, String> {
        let dir = self.scratch.path().join(index.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let result = match &case.fails {
            Some(fails) => self.run_negative(index, case, fails, &dir),
            None => self.run_positive(index, case, &dir),
        };
        if std::env::var_os("RBUILD_DIFF_KEEP").is_none() {
            // The exported trees can be large; keep scratch space small across many cases.
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    /// A negative case: both builders must fail, rbuild with a clear error.
    fn run_negative(
        &self,
        index: usize,
        case: &Case,
        fails: &case::Fails,
        dir: &Path,
    ) -> Result<Outcome, String> {
        let dockerd = self.dockerd_for(case);
        let tag = image_tag(REFERENCE_REPO, index, case);
        let reference = builders::buildkit_build(dockerd, case, &tag)?;
        let mut problems = Vec::new();
        if reference.status.success() {
            dockerd.remove_images(&[&tag]);
            problems.push(
                "BuildKit built it, but the case's `fails` says both builders must fail".into(),
            );
        }
        let tested = match self.against {
            Against::Rbuild => {
                builders::rbuild_build(self.rbuild_root.path(), case, &tag, &dir.join("rbuild"))?
            }
            Against::Buildkit => {
                let tag = image_tag(AGAIN_REPO, index, case);
                let out = builders::buildkit_build(dockerd, case, &tag)?;
                dockerd.remove_images(&[&tag]);
                out
            }
        };
        let stderr = String::from_utf8_lossy(&tested.stderr);
        if tested.status.success() {
            let who = match self.against {
                Against::Rbuild => "rbuild",
                Against::Buildkit => "BuildKit's second build",
            };
            problems.push(format!(
                "{who} built it, but the case's `fails` says both builders must fail"
            ));
        } else if stderr.contains("panicked") {
            problems.push(format!(
                "rbuild panicked instead of reporting an error:\n{}",
                builders::tail(&tested)
            ));
        } else if let Some(want) = &fails.rbuild_error
            && self.against == Against::Rbuild
            && !stderr.contains(want.as_str())
        {
            problems.push(format!(
                "rbuild's error does not contain `{want}`:\n{}",
                builders::tail(&tested)
            ));
        }
        let error_line = |out: &std::process::Output| {
            if out.status.success() {
                return "(built it)".to_owned();
            }
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.lines()
                .rev()
                .find(|l| l.contains("ERROR") || l.contains("error"))
                .or_else(|| text.lines().last())
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        Ok(Outcome {
            kind: Kind::Negative,
            differences: problems,
            notes: vec![
                format!("BuildKit: {}", error_line(&reference)),
                format!("tested:   {}", error_line(&tested)),
            ],
            ..Outcome::default()
        })
    }

    /// A positive case: both builders build it, the results compared (each platform's
    /// on its own for a multi-platform case).
    fn run_positive(&self, index: usize, case: &Case, dir: &Path) -> Result<Outcome, String> {
        let dockerd = self.dockerd_for(case);
        let tag = image_tag(REFERENCE_REPO, index, case);
        let reference = builders::buildkit(dockerd, case, &tag, &dir.join("buildkit"))?;
        let tested: Vec<Built> = match self.against {
            Against::Rbuild => {
                builders::rbuild(self.rbuild_root.path(), case, &tag, &dir.join("rbuild"))?
            }
            Against::Buildkit => {
                let tag = image_tag(AGAIN_REPO, index, case);
                builders::buildkit(dockerd, case, &tag, &dir.join("buildkit-again"))?
            }
        };
        let mut outcome = Outcome::default();
        let mut found = Vec::new();
        for (reference, tested) in reference.iter().zip(&tested) {
            found.extend(self.compare_platform(case, reference, tested, &mut outcome)?);
        }
        for line in case.divergences.unused(&found) {
            outcome
                .notes
                .push(format!("`{line}` in divergences.md matched nothing"));
        }
        outcome.kind = if outcome.allowed.is_empty() && case.divergences.is_empty() {
            Kind::Equal
        } else {
            Kind::Explained
        };
        Ok(outcome)
    }

    /// Compares one platform's results into `outcome` (its lines name the platform of a
    /// multi-platform case); returns the rootfs differences found, allowed or not.
    fn compare_platform(
        &self,
        case: &Case,
        reference: &Built,
        tested: &Built,
        outcome: &mut Outcome,
    ) -> Result<Vec<tree::Difference>, String> {
        let label = match &reference.platform {
            Some(platform) => format!("[{platform}] "),
            None => String::new(),
        };
        let snap = |p: &Path| {
            tree::snapshot(p, self.started).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let found = tree::compare(&snap(&reference.rootfs)?, &snap(&tested.rootfs)?);
        for d in &found {
            if case.divergences.allows(d) {
                outcome.allowed.push(format!("{label}{d}"));
            } else if d.field == tree::Field::Content {
                let show = |root: &Path| small_text(&root.join(d.path.trim_start_matches('/')));
                outcome.differences.push(format!(
                    "{label}{d}\n      reference text: {}\n      tested text:    {}",
                    show(&reference.rootfs),
                    show(&tested.rootfs)
                ));
            } else {
                outcome.differences.push(format!("{label}{d}"));
            }
        }
        for d in config::compare(&reference.config, &tested.config) {
            if case.divergences.allows_config(&d) {
                outcome.allowed.push(format!("{label}{d}"));
            } else {
                outcome.differences.push(format!("{label}{d}"));
            }
        }
        if reference.image_platform != tested.image_platform {
            outcome.differences.push(format!(
                "{label}image platform: reference {} | tested {}",
                reference.image_platform, tested.image_platform
            ));
        }
        Ok(found)
    }
}

/// Files up to this size have their text shown when their contents differ.
const SHOWN_TEXT_BYTES: u64 = 1024;

/// A small UTF-8 file's text, quoted, or why it is not shown.
fn small_text(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) if m.len() <= SHOWN_TEXT_BYTES => match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => format!("{text:?}"),
                Err(_) => "(binary)".into(),
            },
            Err(e) => format!("(unreadable: {e})"),
        },
        Ok(m) => format!("({} bytes, not shown)", m.len()),
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// How a case came out, when nothing failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The same rootfs and config, with no divergences.md directive in play.
    #[default]
    Equal,
    /// The same up to what divergences.md allows (or with BuildKit building another
    /// Dockerfile).
    Explained,
    /// A negative case: both builders failed.
    Negative,
}

#[derive(Debug, Default)]
struct Outcome {
    kind: Kind,
    /// What makes the case fail: differences no divergence allows, or a negative case's
    /// broken expectations.
    differences: Vec<String>,
    allowed: Vec<String>,
    notes: Vec<String>,
}

/// Writes a line of the run's log to stderr directly, past the test harness's output
/// capture: the progress of a long run and its summary show even when the test passes.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Lines of differences shown per case.
const SHOWN_DIFFERENCES: usize = 40;

/// The case directories: `RBUILD_DIFF_DIR` (`:`-separated, relative to the workspace,
/// each must exist), else
/// fixtures/differential and fixtures/external when it exists (other branches fill it).
fn case_dirs() -> Result<Vec<PathBuf>, String> {
    match std::env::var_os("RBUILD_DIFF_DIR") {
        Some(dirs) => {
            // Relative to the workspace (cargo runs the test in cli/).
            let ws = workspace();
            let dirs: Vec<PathBuf> = std::env::split_paths(&dirs)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| ws.join(p))
                .collect();
            if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
                return Err(format!(
                    "RBUILD_DIFF_DIR names {}, which is not a directory",
                    missing.display()
                ));
            }
            Ok(dirs)
        }
        None => {
            let ws = workspace();
            Ok(["fixtures/differential", "fixtures/external"]
                .iter()
                .map(|d| ws.join(d))
                .enumerate()
                .filter(|(i, d)| *i == 0 || d.is_dir())
                .map(|(_, d)| d)
                .collect())
        }
    }
}

/// Every case directory of `dirs`, read or with why it cannot be, keeping only
/// those `only` names (by name or `set/name`) when given.
fn load_cases(dirs: &[PathBuf], only: Option<&[String]>) -> Result<Vec<CaseDir>, String> {
    let mut all = Vec::new();
    for dir in dirs {
        all.extend(Case::all(dir)?);
    }
    let mut ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "two case directories hold {}: give the sets different names",
            w[0]
        ));
    }
    let Some(names) = only else {
        return Ok(all);
    };
    let wanted = |id: &str, n: &str| id == n || id.rsplit_once('/').is_some_and(|(_, b)| b == n);
    for n in names {
        if !all.iter().any(|d| wanted(&d.id, n)) {
            return Err(format!("no case named {n} in {dirs:?}"));
        }
    }
    Ok(all
        .into_iter()
        .filter(|d| names.iter().any(|n| wanted(&d.id, n)))
        .collect())
}

/// What the report says of one case: its line in the log, and its failure text.
fn report(id: &str, result: &Result<Outcome, String>, seconds: f64) -> (String, Option<String>) {
    match result {
        Ok(outcome) => {
            let mut log = String::new();
            for a in &outcome.allowed {
                log += &format!("case {id}: allowed by divergences.md: {a}\n");
            }
            for n in &outcome.notes {
                log += &format!("case {id}: note: {n}\n");
            }
            if outcome.differences.is_empty() {
                let how = match outcome.kind {
                    Kind::Equal => "equal",
                    Kind::Explained => "equal up to divergences.md",
                    Kind::Negative => "both failed, as `fails` says",
                };
                log += &format!("case {id}: {how} ({seconds:.1} s)");
                (log, None)
            } else {
                let shown = outcome.differences.len().min(SHOWN_DIFFERENCES);
                let mut text = outcome.differences[..shown].join("\n  ");
                if outcome.differences.len() > shown {
                    text += &format!("\n  ... and {} more", outcome.differences.len() - shown);
                }
                log += &format!(
                    "case {id}: {} difference(s) ({seconds:.1} s)",
                    outcome.differences.len()
                );
                (log, Some(format!("case {id}:\n  {text}")))
            }
        }
        Err(e) => (
            format!("case {id}: failed ({seconds:.1} s)"),
            Some(format!("case {id}: {e}")),
        ),
    }
}

#[test]
fn rbuild_builds_what_buildkit_builds() {
    let began = Instant::now();
    let only: Option<Vec<String>> = std::env::var("RBUILD_DIFF_CASES").ok().map(|s| {
        s.split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    });
    let against = match std::env::var("RBUILD_DIFF_AGAINST").as_deref() {
        Err(_) | Ok("rbuild") => Against::Rbuild,
        Ok("buildkit") => Against::Buildkit,
        Ok(other) => panic!("RBUILD_DIFF_AGAINST must be rbuild or buildkit, not {other}"),
    };
    let jobs = match std::env::var("RBUILD_DIFF_JOBS") {
        Err(_) => DEFAULT_JOBS,
        Ok(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("RBUILD_DIFF_JOBS must be a positive number, not {n}"),
        },
    };
    let dirs = case_dirs().unwrap_or_else(|e| panic!("{e}"));
    let loaded = load_cases(&dirs, only.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!loaded.is_empty(), "no cases in {dirs:?}");
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    for CaseDir { id, case } in loaded {
        match case {
            Ok(case) => cases.push(case),
            Err(e) => {
                say(&format!("case {id}: cannot be read"));
                failed.push((id.clone(), format!("case {id}: cannot be read: {e}")));
            }
        }
    }
    let unreadable = failed.len();
    let harness = Harness::setup(&cases, against).unwrap_or_else(|e| panic!("{e}"));
    if std::env::var_os("RBUILD_DIFF_KEEP").is_some() {
        say(&format!(
            "exported trees under {}",
            harness.scratch.path().display()
        ));
    }
    say(&format!(
        "{} case(s) from {dirs:?}, {jobs} at a time, reference = BuildKit (docker 28.5), \
         tested = {against:?}",
        cases.len()
    ));

    let next = AtomicUsize::new(0);
    let kinds: Mutex<Vec<Kind>> = Mutex::new(Vec::new());
    let failures = Mutex::new(&mut failed);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(cases.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let clock = Instant::now();
                    let result = harness.run_case(i, case);
                    let (log, failure) = report(&case.id(), &result, clock.elapsed().as_secs_f64());
                    say(&log);
                    match failure {
                        Some(text) => failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((case.id(), text)),
                        None => kinds
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(result.map(|o| o.kind).unwrap_or_default()),
                    }
                }
            });
        }
    });
    harness.dockerd.clean();
    if let Some(daemon) = &harness.multi_platform {
        daemon.clean();
    }
    let kinds = kinds.into_inner().unwrap_or_else(|e| e.into_inner());
    let count = |k: Kind| kinds.iter().filter(|&&x| x == k).count();
    failed.sort();
    let total = cases.len() + unreadable;
    say(&format!(
        "\ndifferential summary: {total} case(s) in {:.0} s ({jobs} at a time): {} equal, \
         {} equal up to divergences.md, {} negative (both failed), {} failing",
        began.elapsed().as_secs_f64(),
        count(Kind::Equal),
        count(Kind::Explained),
        count(Kind::Negative),
        failed.len()
    ));
    for (id, _) in &failed {
        say(&format!("  failing: {id}"));
    }
    assert!(
        failed.is_empty(),
        "{} of {total} differential cases differ from BuildKit (reference = BuildKit, tested = {:?}):\n\n{}",
        failed.len(),
        against,
        failed
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
