//! The differential suite: every case under fixtures/differential (or `RBUILD_DIFF_DIR`) is
//! built by BuildKit and by rbuild, and the two final root filesystems and image configs
//! must be equal, up to what the case's divergences.md allows. See
//! fixtures/differential/README.md.
//!
//! Environment:
//! - `RBUILD_DIFF_DIR`: the case directory (default: fixtures/differential).
//! - `RBUILD_DIFF_CASES`: comma-separated case names to run (default: all).
//! - `RBUILD_DIFF_AGAINST`: `rbuild` (default) or `buildkit`, which builds each case a
//!   second time with BuildKit instead of rbuild: a check of the harness itself, whose
//!   comparison must then find nothing.
//! - `RBUILD_DIFF_KEEP`: when set, the exported trees are kept, and their directory printed.
//! - `RBUILD_DOCKERD_DIR`: the private dockerd's state (default:
//!   /tmp/rbuild-dockerd-differential); a daemon this test started is stopped at its end.
//!
//! Needs root, docker.io (dockerd, /usr/bin/docker with BuildKit) and busybox-static; the
//! test fails, saying what is missing, without them.

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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use builders::{Built, Dockerd};
use case::Case;

/// Images the cases may start from: the fixture that makes each, and its name.
const BASE_IMAGES: &[(&str, &str)] = &[
    ("busybox", "busybox:latest"),
    ("python3", "rbuild-fixtures/python3:bookworm"),
];

/// Where a case's images go (in the dockerd and in rbuild's store).
const REFERENCE_REPO: &str = "rbuild-diff";
/// Where the second BuildKit build goes when BuildKit is compared with itself.
const AGAIN_REPO: &str = "rbuild-diff-again";

fn image_tag(repo: &str, case: &str) -> String {
    format!("{repo}/{case}:latest")
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
    rbuild_root: tempfile::TempDir,
    scratch: tempfile::TempDir,
    against: Against,
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
        let dockerd_dir = std::env::var_os("RBUILD_DOCKERD_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/rbuild-dockerd-differential"));
        let dockerd = Dockerd::start(&ws, &dockerd_dir)?;
        let mut scratch = tempfile::tempdir().map_err(|e| format!("creating scratch dir: {e}"))?;
        scratch.disable_cleanup(std::env::var_os("RBUILD_DIFF_KEEP").is_some());
        dockerd.check_buildkit(scratch.path())?;
        let rbuild_root = tempfile::tempdir().map_err(|e| format!("creating rbuild root: {e}"))?;
        for (fixture, image) in BASE_IMAGES {
            if *fixture != "busybox" && !cases.iter().any(|c| c.uses_image(image)) {
                continue;
            }
            let made =
                builders::run(Command::new(ws.join("fixtures/base-images/make")).arg(fixture))?;
            let tarball = String::from_utf8_lossy(&made.stdout).trim().to_owned();
            builders::run(
                builders::rbuild_command(rbuild_root.path())
                    .arg("import")
                    .arg(&tarball)
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
        Ok(Harness {
            dockerd,
            rbuild_root,
            scratch,
            against,
        })
    }

    /// Builds one case both ways; the differences no divergence allows, and notes.
    fn run_case(&self, case: &Case) -> Result<Outcome, String> {
        let dir = self.scratch.path().join(&case.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let started = SystemTime::now();
        let tag = image_tag(REFERENCE_REPO, &case.name);
        let reference = builders::buildkit(&self.dockerd, case, &tag, &dir.join("buildkit"))?;
        let tested: Built = match self.against {
            Against::Rbuild => {
                builders::rbuild(self.rbuild_root.path(), case, &tag, &dir.join("rbuild"))?
            }
            Against::Buildkit => {
                let tag = image_tag(AGAIN_REPO, &case.name);
                builders::buildkit(&self.dockerd, case, &tag, &dir.join("buildkit-again"))?
            }
        };
        let snap = |p: &Path| {
            tree::snapshot(p, started).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let mut outcome = Outcome::default();
        let found = tree::compare(&snap(&reference.rootfs)?, &snap(&tested.rootfs)?);
        for line in case.divergences.unused(&found) {
            outcome
                .notes
                .push(format!("`{line}` in divergences.md matched nothing"));
        }
        for d in found {
            if case.divergences.allows(&d) {
                outcome.allowed.push(d.to_string());
            } else if d.field == tree::Field::Content {
                let show = |root: &Path| small_text(&root.join(d.path.trim_start_matches('/')));
                outcome.differences.push(format!(
                    "{d}\n      reference text: {}\n      tested text:    {}",
                    show(&reference.rootfs),
                    show(&tested.rootfs)
                ));
            } else {
                outcome.differences.push(d.to_string());
            }
        }
        for d in config::compare(&reference.config, &tested.config) {
            if case.divergences.allows_config(&d) {
                outcome.allowed.push(d.to_string());
            } else {
                outcome.differences.push(d.to_string());
            }
        }
        if std::env::var_os("RBUILD_DIFF_KEEP").is_none() {
            // The exported trees can be large; keep scratch space small across 30+ cases.
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(outcome)
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

#[derive(Debug, Default)]
struct Outcome {
    differences: Vec<String>,
    allowed: Vec<String>,
    notes: Vec<String>,
}

/// Lines of differences shown per case.
const SHOWN_DIFFERENCES: usize = 40;

#[test]
fn rbuild_builds_what_buildkit_builds() {
    let cases_dir = std::env::var_os("RBUILD_DIFF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("fixtures/differential"));
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
    let cases = Case::all(&cases_dir, only.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cases.is_empty(), "no cases under {}", cases_dir.display());
    let harness = Harness::setup(&cases, against).unwrap_or_else(|e| panic!("{e}"));
    if std::env::var_os("RBUILD_DIFF_KEEP").is_some() {
        eprintln!("exported trees under {}", harness.scratch.path().display());
    }
    let mut failed = Vec::new();
    for case in &cases {
        match harness.run_case(case) {
            Ok(outcome) => {
                for a in &outcome.allowed {
                    eprintln!("case {}: allowed by divergences.md: {a}", case.name);
                }
                for n in &outcome.notes {
                    eprintln!("case {}: note: {n}", case.name);
                }
                if outcome.differences.is_empty() {
                    eprintln!("case {}: equal", case.name);
                } else {
                    let mut text = outcome.differences
                        [..outcome.differences.len().min(SHOWN_DIFFERENCES)]
                        .join("\n  ");
                    if outcome.differences.len() > SHOWN_DIFFERENCES {
                        text += &format!(
                            "\n  ... and {} more",
                            outcome.differences.len() - SHOWN_DIFFERENCES
                        );
                    }
                    eprintln!(
                        "case {}: {} difference(s)",
                        case.name,
                        outcome.differences.len()
                    );
                    failed.push(format!("case {}:\n  {text}", case.name));
                }
            }
            Err(e) => {
                eprintln!("case {}: build failed", case.name);
                failed.push(format!("case {}: {e}", case.name));
            }
        }
    }
    let tags: Vec<String> = cases
        .iter()
        .flat_map(|c| {
            [
                image_tag(REFERENCE_REPO, &c.name),
                image_tag(AGAIN_REPO, &c.name),
            ]
        })
        .collect();
    harness.dockerd.clean(&tags);
    assert!(
        failed.is_empty(),
        "{} of {} differential cases differ from BuildKit (reference = BuildKit, tested = {:?}):\n\n{}",
        failed.len(),
        cases.len(),
        against,
        failed.join("\n\n")
    );
}
