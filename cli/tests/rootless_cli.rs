//! Issue 15, bug 4: building as a non-root user, end to end through the CLI. Each
//! scenario runs the `rbuild` binary as `nobody` (no subordinate ids: only root exists in
//! rbuild's user namespace) and as the user named by `RBUILD_ROOTLESS_USER` (default
//! `rbuild-rootless`, which `scripts/test` creates with ranges in /etc/subuid and
//! /etc/subgid), with a store in a directory that user owns.
//!
//! Before the fix, every COPY, ADD and WORKDIR failed with `unshare the mount namespace:
//! Operation not permitted`, and RUN with the default network failed to mount sysfs.
//!
//! Over 600 lines on purpose: ten scenarios of one bug, each run as both users through
//! the user and store set-up at the top.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::require::require_root;
use support::run::{compile_probe, fixture, mounts_under, processes_with};

const SETPRIV: &str = "/usr/bin/setpriv";

/// An unprivileged user the tests run rbuild as.
#[derive(Debug, Clone)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// Whether it has subordinate ids (other ids than root exist in its namespace).
    ranges: bool,
}

fn user(name: &str) -> User {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, name])
            .output()
            .expect("running id");
        assert!(
            out.status.success(),
            "the unprivileged test user {name:?} does not exist: scripts/test creates \
             rbuild-rootless (or set RBUILD_ROOTLESS_USER to an existing unprivileged user)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("a numeric id")
    };
    let (uid, gid) = (id("-u"), id("-g"));
    assert_ne!(uid, 0, "{name} must not be root");
    let ranges = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")) || l.starts_with(&format!("{uid}:")));
    User {
        name: name.to_owned(),
        uid,
        gid,
        ranges,
    }
}

/// `nobody`, then the user with subordinate ids; fails saying what is missing.
fn users() -> Vec<User> {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    assert!(
        Path::new(SETPRIV).is_file(),
        "{SETPRIV} (util-linux) is missing"
    );
    for helper in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        assert!(
            Path::new(helper).is_file(),
            "{helper} is missing: install Debian's uidmap package"
        );
    }
    let ranged = std::env::var("RBUILD_ROOTLESS_USER").unwrap_or_else(|_| "rbuild-rootless".into());
    let ranged = user(&ranged);
    assert!(
        ranged.ranges,
        "{} has no range in /etc/subuid: scripts/test gives rbuild-rootless one",
        ranged.name
    );
    let nobody = user("nobody");
    assert!(!nobody.ranges, "nobody must have no subordinate ids");
    vec![nobody, ranged]
}

/// A 0755 directory with the binary and the busybox fixture, readable by every user
/// (the build's own target directory and the fixture cache may not be); removed when the
/// test process exits.
fn shared() -> &'static Path {
    static SHARED: OnceLock<PathBuf> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-rootless-cli-")
            .tempdir_in("/tmp")
            .expect("creating the shared dir")
            .keep();
        extern "C" fn remove_shared() {
            if let Some(dir) = SHARED.get() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a function without arguments that only removes a directory.
        unsafe { libc::atexit(remove_shared) };
        // A hard link costs no room, when the file is already open to others (the link
        // shares its mode); else a copy.
        for (from, name, mode) in [
            (PathBuf::from(env!("CARGO_BIN_EXE_rbuild")), "rbuild", 0o755),
            (fixture("busybox"), "busybox.tar", 0o644),
        ] {
            let to = dir.join(name);
            let open = std::fs::metadata(&from).map_or(0, |m| m.permissions().mode());
            if open & mode != mode || std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).expect("copying into the shared dir");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                    .expect("opening up a shared file");
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("opening up the shared dir");
        dir
    })
}

/// A directory owned by `user` (0700) for its store, contexts and outputs.
struct Home {
    user: User,
    dir: tempfile::TempDir,
}

impl Home {
    fn new(user: &User) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-rootless-home-")
            .tempdir_in("/tmp")
            .expect("creating a home");
        std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid))
            .expect("giving the home to the user");
        Home {
            user: user.clone(),
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Writes a build context `name` with `files`, owned by the user.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.path().join(name);
        std::fs::create_dir_all(&ctx).expect("creating a context");
        for (rel, content) in files {
            let path = ctx.join(rel);
            std::fs::create_dir_all(path.parent().expect("a context file has a parent"))
                .expect("creating a context directory");
            std::fs::write(path, content).expect("writing a context file");
        }
        chown_tree(&ctx, &self.user);
        ctx
    }

    /// `rbuild ARGS` as the user, with HOME in its directory and nothing else of the
    /// test's environment.
    fn rbuild(&self) -> Command {
        let mut cmd = Command::new(SETPRIV);
        cmd.args([
            format!("--reuid={}", self.user.uid),
            format!("--regid={}", self.user.gid),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ])
        .arg(shared().join("rbuild"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", self.path())
        .env("TMPDIR", self.path())
        .current_dir(self.path())
        .stdin(Stdio::null());
        cmd
    }

    /// `rbuild build` of `ctx` as the user under `--isolation proot`, without a user
    /// namespace, exported as a tar at `dest`; `extra` before the context.
    fn proot_build(&self, ctx: &Path, dest: &Path, extra: &[&str]) -> Output {
        let mut build = self.rbuild();
        build
            .env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(self.store())
            .args(["build", "--progress", "plain", "--isolation", "proot"])
            .args(extra)
            .arg("-o")
            .arg(format!("type=tar,dest={}", dest.display()))
            .arg(ctx);
        build.output().expect("running rbuild")
    }

    /// `rbuild --root STORE ARGS` as the user.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.rbuild();
        cmd.arg("--root").arg(self.store()).args(args);
        cmd.output().expect("running rbuild")
    }

    /// Like [`run`](Self::run), failing unless it succeeded.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "as {}: rbuild {args:?} failed with {}:\n{}{}",
            self.user.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn import_busybox(&self) {
        let tar = shared().join("busybox.tar");
        self.ok(&[
            "import",
            tar.to_str().expect("UTF-8 path"),
            "busybox:latest",
        ]);
    }
}

fn chown_tree(dir: &Path, user: &User) {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walking a context");
        std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid))
            .expect("giving a context to the user");
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `scenario` for every user; reports every user's failure, not only the first.
/// Fails unless Debian's proot is installed (the proot isolation's tests need it).
fn require_proot() {
    assert!(
        Path::new("/usr/bin/proot").is_file(),
        "missing /usr/bin/proot: install the Debian package proot (scripts/setup-host does)"
    );
}

fn for_each_user(scenario: impl Fn(&User) + std::panic::RefUnwindSafe) {
    let mut failures = Vec::new();
    for user in users() {
        if let Err(panic) = std::panic::catch_unwind(|| scenario(&user)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("as {}: {message}", user.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

const DOCKERFILE: &str = "\
FROM busybox:latest AS base
COPY a.txt /app/a.txt
ADD b.txt /added/
WORKDIR /app
RUN echo built > /app/run.txt && ls /sys/class/net > /dev/null
RUN --mount=type=cache,target=/cache echo x >> /cache/n && cp /cache/n /app/cache-count
FROM busybox:latest
COPY --from=base /app /app
COPY --from=base /added/b.txt /app/b.txt
CMD [\"cat\", \"/app/a.txt\"]
";

#[test]
fn a_whole_build_and_the_image_commands_work_without_root() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[
                ("Dockerfile", DOCKERFILE),
                ("a.txt", "from a\n"),
                ("b.txt", "from b\n"),
            ],
        );
        let ctx = ctx.to_str().expect("UTF-8 path");
        home.ok(&["build", "--progress", "plain", "-t", "app", ctx]);
        let images = home.ok(&["images"]);
        assert!(images.contains("app"), "{images}");
        let again = home.ok(&["build", "--progress", "plain", "-t", "app", ctx]);
        assert!(
            again.contains("9 steps, 9 cached"),
            "the second build was not all cached:\n{again}"
        );
        let run = home.ok(&["run", "app"]);
        assert_eq!(run.trim(), "from a", "{run}");
        let listed = home.ok(&[
            "run",
            "app",
            "cat",
            "/app/run.txt",
            "/app/b.txt",
            "/app/cache-count",
        ]);
        assert_eq!(listed, "built\nfrom b\nx\n");
        let whoami = home.ok(&["run", "app", "id", "-u"]);
        assert_eq!(whoami.trim(), "0");

        // RUN without a network of the host's.
        let offline = home.context(
            "offline",
            &[(
                "Dockerfile",
                "FROM busybox:latest\nRUN ip link | grep -c '^[0-9]' > /links && cat /links\n",
            )],
        );
        let out = home.ok(&[
            "build",
            "--progress",
            "plain",
            "--network",
            "none",
            "-t",
            "offline",
            offline.to_str().expect("UTF-8 path"),
        ]);
        assert!(out.contains("DONE"), "{out}");
        assert_eq!(home.ok(&["run", "offline", "cat", "/links"]).trim(), "1");

        let saved = home.path().join("app.tar");
        home.ok(&["save", "-o", saved.to_str().expect("UTF-8 path"), "app"]);
        assert!(saved.metadata().expect("the saved archive").len() > 0);
        home.ok(&["rmi", "app", "offline"]);
        let pruned = home.ok(&["prune", "-f"]);
        assert!(pruned.contains("reclaimed"), "{pruned}");
        let images = home.ok(&["images"]);
        assert!(!images.contains("app"), "{images}");
        let scratch: Vec<_> = std::fs::read_dir(home.store().join("tmp"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(scratch.is_empty(), "scratch left behind: {scratch:?}");
    });
}

/// Without `--root` an unprivileged user's store is in its home, not /var/lib/rbuild,
/// although rbuild runs as root of its user namespace.
#[test]
fn the_default_store_of_a_user_is_in_its_home() {
    for_each_user(|user| {
        let home = Home::new(user);
        let tar = shared().join("busybox.tar");
        let out = home
            .rbuild()
            .args([
                "import",
                tar.to_str().expect("UTF-8 path"),
                "busybox:latest",
            ])
            .output()
            .expect("running rbuild");
        assert!(out.status.success(), "{}", text(&out));
        let store = home.path().join(".local/share/rbuild");
        assert!(
            store.join("index.json").is_file(),
            "no store in {}",
            store.display()
        );
    });
}

#[test]
fn other_ids_work_with_subordinate_ids_and_fail_clearly_without() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let run_as = home.context(
            "user",
            &[(
                "Dockerfile",
                "FROM busybox:latest\nUSER 1000:1000\nRUN id -u > /tmp/id\n",
            )],
        );
        let copy = home.context(
            "copy",
            &[
                (
                    "Dockerfile",
                    "FROM busybox:latest\nCOPY --chown=1000:1000 a.txt /owned\n",
                ),
                ("a.txt", "a\n"),
            ],
        );
        // Without subordinate ids a COPY --chown needs no other id on disk: the owner is
        // kept in the side table (fakeroot) and written into the layer.
        let exported = home.path().join("copied.tar");
        let out = home.run(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "copied",
            "-o",
            &format!("type=tar,dest={}", exported.display()),
            copy.to_str().expect("UTF-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            owner_in(&exported, "owned"),
            Some((1000, 1000)),
            "the image's owner of /owned"
        );
        let out = home.run(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "run-as",
            run_as.to_str().expect("UTF-8"),
        ]);
        if user.ranges {
            assert!(out.status.success(), "{}", text(&out));
        } else {
            assert!(!out.status.success(), "{}", text(&out));
            assert!(
                text(&out).contains("user 1000:1000 does not exist in the user namespace"),
                "no clear message: {}",
                text(&out)
            );
        }
        // chown inside a step: the step's own system call, which fails (EINVAL) without
        // subordinate ids as it would in buildah's or podman's namespace.
        let chown = home.context(
            "chown",
            &[(
                "Dockerfile",
                "FROM busybox:latest\n\
                 RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd \
                 && echo 'app:x:1000:' >> /etc/group && mkdir /data && chown app:app /data\n\
                 USER app\n\
                 RUN touch /data/mine\n",
            )],
        );
        let out = home.run(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "chowned",
            chown.to_str().expect("UTF-8"),
        ]);
        assert_eq!(out.status.success(), user.ranges, "{}", text(&out));
        if user.ranges {
            let listed = home.ok(&["run", "chowned", "stat", "-c", "%u:%g", "/data/mine"]);
            assert_eq!(listed, "1000:1000\n");
        }
        if user.ranges {
            let listed = home.ok(&["run", "run-as", "cat", "/tmp/id"]);
            assert_eq!(listed, "1000\n");
            let owned = home.ok(&["run", "copied", "stat", "-c", "%u:%g", "/owned"]);
            assert_eq!(owned, "1000:1000\n");
        }
    });
}

/// A base image with files of uid 1000 and a device node: as `nobody` they unpack as
/// owned by 0 (podman's `ignore_chown_errors`), with subordinate ids as they are.
#[test]
fn base_image_owners_the_namespace_does_not_map_are_squashed_to_root() {
    let tar = shared().join("owned.tar");
    if !tar.exists() {
        let mut archive = tar::Builder::new(Vec::new());
        let source = std::fs::read(shared().join("busybox.tar")).expect("reading the fixture");
        let mut base = tar::Archive::new(source.as_slice());
        for entry in base.entries().expect("reading the fixture") {
            let mut entry = entry.expect("a fixture entry");
            let header = entry.header().clone();
            archive
                .append(&header, &mut entry)
                .expect("copying an entry");
        }
        let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(1000);
            header.set_gid(1000);
            header.set_size(data.len() as u64);
            header.set_mtime(1_700_000_000);
            if kind == tar::EntryType::Char {
                header.set_device_major(1).expect("major");
                header.set_device_minor(3).expect("minor");
            }
            archive
                .append_data(&mut header, path, data)
                .expect("adding an entry");
        };
        add("home/app/", tar::EntryType::Directory, 0o750, b"");
        add("home/app/f", tar::EntryType::Regular, 0o4755, b"owned\n");
        add("dev/mynull", tar::EntryType::Char, 0o600, b"");
        std::fs::write(&tar, archive.into_inner().expect("finishing the archive"))
            .expect("writing the archive");
        std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    for_each_user(|user| {
        let home = Home::new(user);
        home.ok(&["import", tar.to_str().expect("UTF-8 path"), "owned"]);
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                "FROM owned\nRUN stat -c %u:%g:%a /home/app/f > /owners\n",
            )],
        );
        home.ok(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "seen",
            ctx.to_str().expect("UTF-8"),
        ]);
        let expected = if user.ranges {
            "1000:1000:4755"
        } else {
            "0:0:4755"
        };
        assert_eq!(home.ok(&["run", "seen", "cat", "/owners"]).trim(), expected);
    });
}

/// `kill -9` of rbuild during a RUN: no process of the build and no mount stays, and
/// the next command of the user cleans its scratch.
#[test]
fn kill_9_during_a_run_step_leaves_no_process_and_no_mount() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let marker = format!("rbuild-rootless-kill-{}-{}", std::process::id(), user.uid);
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                &format!("FROM busybox:latest\nRUN sleep 300; echo {marker}\n"),
            )],
        );
        let mut cmd = home.rbuild();
        cmd.arg("--root")
            .arg(home.store())
            .args(["build", "--progress", "plain", ctx.to_str().expect("UTF-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // setpriv execs rbuild: the child is rbuild itself.
        let mut child = cmd.spawn().expect("starting rbuild");
        let deadline = Instant::now() + Duration::from_secs(60);
        while processes_with(&marker).is_empty() {
            assert!(Instant::now() < deadline, "the RUN step never started");
            assert!(
                child.try_wait().expect("polling rbuild").is_none(),
                "rbuild ended early"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().expect("kill -9 of rbuild");
        child.wait().expect("reaping rbuild");
        let store = home.store();
        let store_name = store.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left: Vec<_> = processes_with(&marker)
                .into_iter()
                .chain(processes_with(&store_name))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(mounts_under(home.path()), Vec::<String>::new());
        home.ok(&["images"]);
        let scratch: Vec<_> = std::fs::read_dir(store.join("tmp"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(scratch.is_empty(), "scratch left behind: {scratch:?}");
    });
}

/// RBUILD_SKIP_USERNS keeps rbuild out of a user namespace: `run` still works (each
/// step gets its own), and so does COPY, its files the user's on disk and root's in the
/// image (the side table of a build that cannot give files away).
#[test]
fn opting_out_of_the_user_namespace() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[
                ("Dockerfile", "FROM busybox:latest\nCOPY a.txt /a.txt\n"),
                ("a.txt", "a\n"),
            ],
        );
        let mut run = home.rbuild();
        run.env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(home.store())
            .args(["run", "busybox:latest", "id", "-u"]);
        let out = run.output().expect("running rbuild");
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
        let mut build = home.rbuild();
        build
            .env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(home.store())
            .args(["build", "--progress", "plain", ctx.to_str().expect("UTF-8")]);
        let exported = home.path().join("skip.tar");
        build.args(["-o", &format!("type=tar,dest={}", exported.display())]);
        let out = build.output().expect("running rbuild");
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            owner_in(&exported, "a.txt"),
            Some((0, 0)),
            "the image's owner of /a.txt"
        );
    });
}

/// Without a user namespace the owners the build cannot give are kept in the side table
/// (fakeroot.rs); it must follow what later steps do as root's build would: a parent
/// directory a later COPY only passes through keeps its owner (it was reset to 0:0), a
/// file a RUN re-creates is root's (it kept the removed file's owner: a file root wrote,
/// owned by another user in the image), one a RUN appends to keeps its owner, one a RUN
/// removes leaves no entry behind. Found by an attacker of the side table.
#[test]
fn the_side_table_follows_what_later_steps_do() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[
                (
                    "Dockerfile",
                    "FROM busybox:latest\n\
                     COPY --chown=5:5 d /q/\n\
                     COPY d /q/sub/\n\
                     COPY x /q/\n\
                     COPY --chown=77:78 x /p/z\n\
                     COPY --chown=77:78 x /p/keep\n\
                     COPY --chown=77:78 x /p/gone\n\
                     RUN rm /p/z && echo new > /p/z && echo more >> /p/keep && rm /p/gone\n\
                     RUN echo back > /p/gone\n",
                ),
                ("d/f", "f\n"),
                ("x", "x\n"),
            ],
        );
        let exported = home.path().join("table.tar");
        let mut build = home.rbuild();
        build
            .env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(home.store())
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=tar,dest={}", exported.display()))
            .arg(&ctx);
        let out = build.output().expect("running rbuild");
        assert!(out.status.success(), "{}", text(&out));
        for (path, owner) in [
            ("q", (5, 5)),
            ("q/f", (5, 5)),
            ("q/sub/f", (0, 0)),
            ("q/x", (0, 0)),
            ("p/z", (0, 0)),
            ("p/keep", (77, 78)),
            ("p/gone", (0, 0)),
        ] {
            assert_eq!(
                owner_in(&exported, path),
                Some(owner),
                "the image's owner of /{path}"
            );
        }
    });
}

/// Under the proot isolation (no capability, no namespace: a restricted pod's lot) RUN
/// steps run as the step's user in proot's eyes, and the owners they give stay in the
/// image: what a `USER` step makes is that user's, `chown` calls (of a new user's
/// home, `chown -R`, `chown -h` of a link) are kept although nothing changes on disk,
/// a renamed or linked file keeps its owner, chown clears a set-user-ID bit, and a
/// `USER` step may not give a file away.
#[test]
fn proot_steps_keep_the_owners_their_user_and_their_chown_calls_give() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[
                (
                    "Dockerfile",
                    "FROM busybox:latest\n\
                     COPY --chown=77:78 x /owned\n\
                     RUN echo app:x:4000:4000::/home/app:/bin/sh >> /etc/passwd \\\n\
                      && echo app:x:4000: >> /etc/group && mkdir -p /home/app /srv/data \\\n\
                      && chown app:app /home/app \\\n\
                      && echo d > /srv/data/f && chown -R app:app /srv \\\n\
                      && ln -s data/f /srv/link && chown -h 9:9 /srv/link \\\n\
                      && mv /owned /renamed && ln /renamed /linked \\\n\
                      && cp /bin/busybox /suid && chmod 4755 /suid && chown 5:5 /suid\n\
                     RUN mkdir /t && touch /t/a && chown 1234:5678 /t/a && mv /t/a /t/b \\\n\
                      && mkdir /u && touch /u/f && chown -R 77:77 /u && mv /u /u2 \\\n\
                      && touch /h1 && ln /h1 /h2 && chown 55:55 /h1 \\\n\
                      && touch /r && chown 4321:4321 /r && rm /r && touch /r && chown 0:0 /\n\
                     USER app\n\
                     RUN mkdir /home/app/made && echo m > /home/app/made/f && id -u > /home/app/id \\\n\
                      && (chown 0:0 /home/app/made/f 2>/dev/null; echo $? > /home/app/rc)\n\
                     USER root\n\
                     WORKDIR /wd/sub\n\
                     RUN rmdir /wd/sub /wd\n\
                     RUN pwd > /pwd\n\
                     WORKDIR /x/../y//z/\n\
                     RUN pwd > /pwd2\n",
                ),
                ("x", "x\n"),
            ],
        );
        let exported = home.path().join("proot.tar");
        let out = home.proot_build(&ctx, &exported, &[]);
        assert!(out.status.success(), "{}", text(&out));
        for (path, owner) in [
            ("home/app", (4000, 4000)),
            ("srv", (4000, 4000)),
            ("srv/data/f", (4000, 4000)),
            ("srv/link", (9, 9)),
            ("renamed", (77, 78)),
            ("linked", (77, 78)),
            ("suid", (5, 5)),
            ("home/app/made", (4000, 4000)),
            ("home/app/made/f", (4000, 4000)),
            ("home/app/id", (4000, 4000)),
            ("etc/passwd", (0, 0)),
            // A chowned file renamed, a chowned tree renamed, a hard link of a chowned
            // file, and a file made where a chowned one was removed.
            ("t/b", (1234, 5678)),
            ("u2", (77, 77)),
            ("u2/f", (77, 77)),
            ("h1", (55, 55)),
            ("h2", (55, 55)),
            ("r", (0, 0)),
        ] {
            assert_eq!(
                owner_in(&exported, path),
                Some(owner),
                "the image's owner of /{path}\n{}",
                text(&out)
            );
        }
        let suid = mode_in(&exported, "suid").expect("/suid in the image");
        assert_eq!(suid & 0o7777, 0o755, "chown cleared the set-user-ID bit");
        let id = file_in(&exported, "home/app/id");
        assert_eq!(id, "4000\n", "the USER step ran as app in proot's eyes");
        // A working directory a step removed is made again for the next, as BuildKit's
        // executor does (proot would start in / instead).
        assert_eq!(file_in(&exported, "pwd"), "/wd/sub\n");
        // As runc, the path as written is made too: /x as well as /y/z.
        assert_eq!(file_in(&exported, "pwd2"), "/y/z\n");
        assert!(mode_in(&exported, "x").is_some(), "/x was not made");
        let refused = file_in(&exported, "home/app/rc");
        assert_eq!(refused, "1\n", "a USER step may not give a file to root");
    });
}

/// A step under proot sees the owners and modes the image gives its files, not the
/// build user's that are on disk: what it reads back after a `chown`, under a new name,
/// in a `USER` step, and what tools that copy an owner or a mode they read (`sed -i`,
/// `cp -p`, `cp -a`) give their new files.
#[test]
fn proot_steps_see_the_owners_and_modes_the_image_gives() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[
                (
                    "Dockerfile",
                    "FROM busybox:latest\n\
                     COPY --chown=77:78 x /owned\n\
                     COPY --chmod=0000 x /closed\n\
                     COPY --chmod=0555 d /d\n\
                     RUN stat -c '%u:%g' /owned > /seen && stat -c '%a' /closed /d >> /seen \\\n\
                      && touch /new && chown 5:6 /new && stat -c '%u:%g' /new >> /seen \\\n\
                      && mv /new /moved && stat -c '%u:%g' /moved >> /seen \\\n\
                      && sed -i s/x/y/ /owned && cp -p /moved /copied && cp -a /d /d2\n\
                     USER 4000:4000\n\
                     RUN stat -c '%u:%g' /etc/passwd /owned > /tmp/user-seen \\\n\
                      && touch /tmp/mine && stat -c '%u:%g' /tmp/mine >> /tmp/user-seen \\\n\
                      && stat -c '%u:%g' / /etc/hosts >> /tmp/user-seen\n\
                     RUN echo hi | cat /dev/stdin > /tmp/stdin-read\n",
                ),
                ("x", "x\n"),
                ("d/f", "f\n"),
            ],
        );
        let exported = home.path().join("seen.tar");
        let out = home.proot_build(&ctx, &exported, &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            file_in(&exported, "seen"),
            "77:78\n0\n555\n5:6\n5:6\n",
            "what the step saw\n{}",
            text(&out)
        );
        assert_eq!(
            file_in(&exported, "tmp/user-seen"),
            "0:0\n77:78\n4000:4000\n0:0\n0:0\n",
            "what the USER step saw (its root and rbuild's /etc/hosts are root's)"
        );
        // sed -i writes a new file with the owner and mode it read; cp -p copies them.
        assert_eq!(owner_in(&exported, "owned"), Some((77, 78)));
        assert_eq!(file_in(&exported, "owned"), "y\n");
        assert_eq!(owner_in(&exported, "copied"), Some((5, 6)));
        assert_eq!(mode_in(&exported, "d2").map(|m| m & 0o7777), Some(0o555));
        // /dev/stdin and kin, as in the sandbox's /dev, for the step only.
        assert_eq!(file_in(&exported, "tmp/stdin-read"), "hi\n");
        assert_eq!(
            mode_in(&exported, "dev/stdin"),
            None,
            "a step's /dev/stdin was kept"
        );
    });
}

/// Where the image's user has the build user's own uid (a pod's `runAsUser: 1000` and an
/// image's first user), a step under proot still tells the two owners apart: a `chown`
/// to that uid gives it, one to root gives root, and the step sees either as it is
/// (proot turns root into that uid and back).
#[test]
fn proot_steps_tell_the_build_users_own_uid_from_root() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let (uid, gid) = (user.uid, user.gid);
        let dockerfile = format!(
            "FROM busybox:latest\n\
             RUN echo app:x:{uid}:{gid}::/home/app:/bin/sh >> /etc/passwd \\\n\
              && echo app:x:{gid}: >> /etc/group && mkdir -p /home/app \\\n\
              && chown app:app /home/app && touch /rootfile && chown 0:0 /rootfile \\\n\
              && stat -c %u:%g /home/app /rootfile > /seen\n\
             COPY --chown={uid}:{gid} x /copied\n\
             RUN stat -c %u:%g /copied > /seen2 && sed -i s/x/y/ /copied\n"
        );
        let ctx = home.context("ctx", &[("Dockerfile", &dockerfile), ("x", "x\n")]);
        let exported = home.path().join("ids.tar");
        let out = home.proot_build(&ctx, &exported, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let ids = (u64::from(uid), u64::from(gid));
        assert_eq!(owner_in(&exported, "home/app"), Some(ids), "{}", text(&out));
        assert_eq!(owner_in(&exported, "rootfile"), Some((0, 0)));
        assert_eq!(file_in(&exported, "seen"), format!("{uid}:{gid}\n0:0\n"));
        assert_eq!(file_in(&exported, "seen2"), format!("{uid}:{gid}\n"));
        // sed -i gave its new file the owner it read.
        assert_eq!(owner_in(&exported, "copied"), Some(ids));
    });
}

/// A `USER` step under proot runs with the groups `/etc/group` gives its user (proot
/// fakes the uid and gid only; the build user's own groups showed), may give its files
/// to any of them, and a root step's `setgroups` is kept for what it starts.
#[test]
fn proot_user_steps_have_the_groups_etc_group_gives_their_user() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                "FROM busybox:latest\n\
                 RUN echo app:x:1001:1001::/home/app:/bin/sh >> /etc/passwd \\\n\
                  && echo app:x:1001: >> /etc/group && echo extra:x:2000:app >> /etc/group\n\
                 USER app\n\
                 RUN id -G > /tmp/groups && touch /tmp/mine && chgrp extra /tmp/mine \\\n\
                  && (chgrp 3000 /tmp/mine 2>/dev/null; echo $? > /tmp/refused)\n",
            )],
        );
        let exported = home.path().join("groups.tar");
        let out = home.proot_build(&ctx, &exported, &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            file_in(&exported, "tmp/groups"),
            "1001 2000\n",
            "{}",
            text(&out)
        );
        assert_eq!(owner_in(&exported, "tmp/mine"), Some((1001, 2000)));
        assert_eq!(
            file_in(&exported, "tmp/refused"),
            "1\n",
            "a group app is not in"
        );
    });
}

/// A secret or cache mount's `uid` and `gid`, which the disk cannot give under proot,
/// are what the step sees.
#[test]
fn proot_steps_see_the_owners_their_secret_and_cache_mounts_name() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[
                (
                    "Dockerfile",
                    "FROM busybox:latest\n\
                     RUN --mount=type=secret,id=tok,target=/etc/app/token,mode=0440,uid=123,gid=456 \\\n\
                      stat -c '%a %u %g' /etc/app/token > /secret-seen\n\
                     RUN --mount=type=cache,target=/cache,uid=77,gid=88,mode=0750 \\\n\
                      stat -c '%a %u %g' /cache > /cache-seen\n",
                ),
                ("token.txt", "t0ken\n"),
            ],
        );
        let exported = home.path().join("mounts.tar");
        let secret = format!("id=tok,src={}", ctx.join("token.txt").display());
        let out = home.proot_build(&ctx, &exported, &["--secret", &secret]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            file_in(&exported, "secret-seen"),
            "440 123 456\n",
            "{}",
            text(&out)
        );
        assert_eq!(file_in(&exported, "cache-seen"), "750 77 88\n");
    });
}

/// `RUN --mount=type=ssh` under proot: rbuild cannot bind the agent's socket, so it
/// listens at the target itself (proot translates the step's `connect`); the step lists
/// the key's identity (the boundary probe speaks the agent protocol), sees the mount's
/// owner and mode, and no socket reaches the image, even from a directory the step made
/// read-only. It was refused before.
#[test]
fn proot_steps_reach_the_builds_ssh_agent() {
    require_proot();
    for tool in ["ssh-keygen", "ssh-agent", "ssh-add"] {
        assert!(
            Path::new("/usr/bin").join(tool).is_file(),
            "/usr/bin/{tool} is missing: install openssh-client (scripts/setup-host does)"
        );
    }
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                "FROM busybox:latest\n\
                 COPY probe /usr/local/bin/probe\n\
                 RUN --mount=type=ssh probe agent > /default.txt && echo $SSH_AUTH_SOCK > /sock.txt\n\
                 RUN --mount=type=ssh,target=/tmp/deploy.sock,mode=0640,uid=1000,gid=1000 \\\n\
                  stat -c '%u %g %a %F' /tmp/deploy.sock > /deploy-stat.txt\n\
                 RUN --mount=type=ssh chmod 555 /run/buildkit && probe agent > /after-chmod.txt\n\
                 USER 1000:1000\n\
                 RUN --mount=type=ssh,uid=1000 probe agent > /tmp/user.txt\n",
            )],
        );
        compile_probe(&ctx.join("probe"));
        let key = home.path().join("id_test");
        let made = Command::new("/usr/bin/ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rbuild-proot-key",
                "-f",
            ])
            .arg(&key)
            .status()
            .expect("running ssh-keygen");
        assert!(made.success(), "ssh-keygen failed");
        chown_tree(home.path(), user);
        let exported = home.path().join("ssh.tar");
        let ssh = format!("default={}", key.display());
        let out = home.proot_build(&ctx, &exported, &["--ssh", &ssh]);
        assert!(out.status.success(), "{}", text(&out));
        let listed = "agent: 1 identities: rbuild-proot-key\n";
        assert_eq!(file_in(&exported, "default.txt"), listed, "{}", text(&out));
        assert_eq!(
            file_in(&exported, "sock.txt"),
            "/run/buildkit/ssh_agent.0\n"
        );
        assert_eq!(
            file_in(&exported, "deploy-stat.txt"),
            "1000 1000 640 socket\n"
        );
        assert_eq!(file_in(&exported, "tmp/user.txt"), listed);
        // The step left the socket's directory read-only: rbuild, without root's
        // override, still takes its socket and directory away (it failed the build).
        assert_eq!(file_in(&exported, "after-chmod.txt"), listed);
        for gone in ["run/buildkit/ssh_agent.0", "tmp/deploy.sock"] {
            assert!(
                entry_in(&exported, gone).is_none(),
                "{gone} is in the image"
            );
        }
    });
}

/// Whether to set RBUILD_SKIP_USERNS, for each way `user`'s builds keep owners and modes
/// in the side table: without a user namespace, and for a user without subordinate ids
/// also in rbuild's namespace of one id.
fn table_ways(user: &User) -> Vec<bool> {
    if user.ranges {
        vec![true]
    } else {
        vec![true, false]
    }
}

/// `cmd` with RBUILD_SKIP_USERNS=1 when `skip`.
fn skipping_userns(mut cmd: Command, skip: bool) -> Command {
    if skip {
        cmd.env("RBUILD_SKIP_USERNS", "1");
    }
    cmd
}

/// A tar of `entries` (path, kind, mode, content), owned by 0:0.
fn tar_of(entries: &[(&str, tar::EntryType, u32, &str)]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, kind, mode, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        archive
            .append_data(&mut header, path, data.as_bytes())
            .expect("adding an entry");
    }
    archive.into_inner().expect("finishing the archive")
}

/// Wherever owners are kept in the side table (RBUILD_SKIP_USERNS; a user without
/// subordinate ids in rbuild's namespace of one id) nothing on disk may be left where
/// its owner, the build user, cannot write, read or traverse it: directories of a base
/// layer, of `COPY --chmod` and of an ADDed archive that their owner may not write
/// (0555, 0500, 0000) are filled by later steps, files it may not read (0000) are copied
/// and written into layers, and the image, its layers and the exports keep the modes
/// (the side table keeps them, fakeroot.rs). Before, the builds failed with "Permission
/// denied".
#[test]
fn directories_their_owner_may_not_write_are_filled_and_keep_their_modes() {
    for_each_user(|user| {
        for skip_userns in table_ways(user) {
            modes_kept_building_on(user, skip_userns);
        }
    });
}

fn modes_kept_building_on(user: &User, skip_userns: bool) {
    use tar::EntryType::{Directory as D, Regular as F};
    let home = Home::new(user);
    let base = home.path().join("base.tar");
    std::fs::write(
        &base,
        tar_of(&[
            ("usr/", D, 0o755, ""),
            ("usr/bin/", D, 0o555, ""),
            ("usr/bin/tool", F, 0o755, "tool\n"),
            ("locked/", D, 0o500, ""),
            ("locked/secret", F, 0o400, "secret\n"),
            ("etc/", D, 0o755, ""),
            ("etc/gshadow", F, 0o000, "gshadow\n"),
            ("shut/", D, 0o000, ""),
            ("shut/f", F, 0o644, "f\n"),
        ]),
    )
    .expect("writing the base");
    let ctx = home.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM locked AS base\n\
                 COPY x /usr/bin/\n\
                 COPY x /locked/\n\
                 COPY x /shut/\n\
                 COPY --chmod=555 d /d\n\
                 COPY x /d/\n\
                 ADD a.tar /added/\n\
                 COPY x /added/r/s/\n\
                 FROM base\n\
                 COPY --from=base /etc/gshadow /locked/secret /copied/\n",
            ),
            ("x", "x\n"),
            ("d/f", "f\n"),
        ],
    );
    std::fs::write(
        ctx.join("a.tar"),
        tar_of(&[
            ("r/", D, 0o555, ""),
            ("r/f", F, 0o644, "f\n"),
            ("r/s/", D, 0o500, ""),
            ("r/s/g", F, 0o000, "g\n"),
        ]),
    )
    .expect("writing the archive");
    chown_tree(&ctx, user);
    let skip = |args: &[&str]| {
        let mut cmd = skipping_userns(home.rbuild(), skip_userns);
        cmd.arg("--root").arg(home.store()).args(args);
        let out = cmd.output().expect("running rbuild");
        assert!(
            out.status.success(),
            "rbuild {args:?} (RBUILD_SKIP_USERNS: {skip_userns}): {}",
            text(&out)
        );
    };
    skip(&["import", base.to_str().expect("UTF-8"), "locked"]);
    let rootfs = home.path().join("rootfs.tar");
    let oci = home.path().join("oci.tar");
    let local = home.path().join("local");
    skip(&[
        "build",
        "--progress",
        "plain",
        "--compression",
        "uncompressed",
        "-o",
        &format!("type=tar,dest={}", rootfs.display()),
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=local,dest={}", local.display()),
        ctx.to_str().expect("UTF-8"),
    ]);
    // Exported again into the tree the first export made, 0555 and 0000 directories
    // and all (written into, as docker does).
    skip(&[
        "build",
        "--progress",
        "plain",
        "-o",
        &format!("type=local,dest={}", local.display()),
        ctx.to_str().expect("UTF-8"),
    ]);
    let expected = [
        ("usr/bin", 0o555),
        ("usr/bin/tool", 0o755),
        ("usr/bin/x", 0o644),
        ("locked", 0o500),
        ("locked/secret", 0o400),
        ("locked/x", 0o644),
        ("etc/gshadow", 0o000),
        ("shut", 0o000),
        ("shut/f", 0o644),
        ("shut/x", 0o644),
        ("d", 0o555),
        ("d/f", 0o555),
        ("d/x", 0o644),
        ("added/r", 0o555),
        ("added/r/f", 0o644),
        ("added/r/s", 0o500),
        ("added/r/s/g", 0o000),
        ("added/r/s/x", 0o644),
        ("copied/gshadow", 0o000),
        ("copied/secret", 0o400),
    ];
    for (path, mode) in expected {
        assert_eq!(
            mode_in(&rootfs, path),
            Some(mode),
            "the image's mode of /{path} (-o type=tar)"
        );
        let on_disk = std::fs::symlink_metadata(local.join(path))
            .map(|m| m.permissions().mode() & 0o7777)
            .ok();
        assert_eq!(on_disk, Some(mode), "the mode of /{path} (-o type=local)");
    }
    // The layers of the steps that wrote into those directories hold them with
    // the image's mode.
    let layers = layer_modes(&oci);
    for (path, mode) in [
        ("usr/bin", 0o555),
        ("locked", 0o500),
        ("shut", 0o000),
        ("d", 0o555),
        ("added/r/s", 0o500),
    ] {
        let seen: Vec<u32> = layers
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| *m)
            .collect();
        assert!(
            !seen.is_empty() && seen.iter().all(|m| *m == mode),
            "the layers' modes of /{path}: {:?}, expected {mode:o}",
            seen.iter().map(|m| format!("{m:o}")).collect::<Vec<_>>()
        );
    }
}

/// A RUN step's processes (root of a user namespace of the one id) may leave
/// directories their owner may not write and files it may not read; without a user
/// namespace for rbuild itself (RBUILD_SKIP_USERNS; and in rbuild's namespace of one
/// id) the steps after it must still fill
/// and read them, the image keeping the modes the step gave. A mode the step changed in
/// place replaces the one the table kept. Before, the COPY after the RUN failed with
/// "Permission denied".
#[test]
fn modes_a_run_step_gives_are_kept_and_later_steps_fill_them() {
    for_each_user(|user| {
        for skip_userns in table_ways(user) {
            modes_of_a_run_kept(user, skip_userns);
        }
    });
}

fn modes_of_a_run_kept(user: &User, skip_userns: bool) {
    let home = Home::new(user);
    home.import_busybox();
    let ctx = home.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox:latest\n\
                 COPY --chmod=555 d /d\n\
                 RUN mkdir -m 555 /r && echo s > /r/s && chmod 000 /r/s && \
                     mkdir -m 500 /r/sub && chmod 700 /d\n\
                 COPY x /r/\n\
                 COPY x /r/sub/\n\
                 COPY x /d/\n",
            ),
            ("x", "x\n"),
            ("d/f", "f\n"),
        ],
    );
    let rootfs = home.path().join("rootfs.tar");
    let mut build = skipping_userns(home.rbuild(), skip_userns);
    build
        .arg("--root")
        .arg(home.store())
        .args(["build", "--progress", "plain", "-o"])
        .arg(format!("type=tar,dest={}", rootfs.display()))
        .arg(&ctx);
    let out = build.output().expect("running rbuild");
    assert!(
        out.status.success(),
        "RBUILD_SKIP_USERNS: {skip_userns}: {}",
        text(&out)
    );
    for (path, mode) in [
        ("r", 0o555),
        ("r/s", 0o000),
        ("r/x", 0o644),
        ("r/sub", 0o500),
        ("r/sub/x", 0o644),
        ("d", 0o700),
        ("d/f", 0o555),
        ("d/x", 0o644),
    ] {
        assert_eq!(
            mode_in(&rootfs, path),
            Some(mode),
            "the image's mode of /{path}"
        );
    }
}

/// The mode a tarball gives `path`.
fn mode_in(tar: &Path, path: &str) -> Option<u32> {
    entry_in(tar, path).map(|(_, mode, _)| mode)
}

fn tar_name(path: &Path) -> String {
    path.to_string_lossy()
        .trim_start_matches("./")
        .trim_end_matches('/')
        .to_owned()
}

/// (path, mode) of every entry of every uncompressed layer of an OCI archive.
fn layer_modes(oci: &Path) -> Vec<(String, u32)> {
    let file = std::fs::File::open(oci).unwrap_or_else(|e| panic!("{}: {e}", oci.display()));
    let mut found = Vec::new();
    for entry in tar::Archive::new(file).entries().expect("a tar").flatten() {
        let is_blob = entry
            .path()
            .is_ok_and(|p| p.to_string_lossy().contains("blobs/sha256/"));
        if !is_blob {
            continue;
        }
        let mut blob = Vec::new();
        std::io::Read::read_to_end(&mut { entry }, &mut blob).expect("reading a blob");
        // Configs, manifests and the compressed base layer are no tars.
        if blob.len() < 512 || blob.get(257..262) != Some(b"ustar") {
            continue;
        }
        let mut layer = tar::Archive::new(blob.as_slice());
        for item in layer.entries().expect("a layer").flatten() {
            if let (Ok(path), Ok(mode)) = (item.path(), item.header().mode()) {
                found.push((tar_name(&path), mode));
            }
        }
    }
    found
}

/// proot (Debian 12's 5.1) does not translate the paths of system calls newer than it
/// (`statx`, `faccessat2`, `openat2`, ...): under the proot isolation they must not reach
/// the container's own files, and the C library must still see the step's (rbuild
/// refuses them with ENOSYS, glibc falls back). A static probe (tests/proot_probe.c)
/// checks both inside a step.
#[test]
fn proot_steps_see_their_own_files_through_newer_system_calls() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                "FROM busybox:latest\nCOPY probe /probe\nARG HOST\n\
                 RUN touch /only-in-the-image && /probe /only-in-the-image \"$HOST\"\n",
            )],
        );
        let probe = ctx.join("probe");
        let compiled = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&probe)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proot_probe.c"))
            .output()
            .expect("running gcc (Debian packages gcc and libc6-dev)");
        assert!(compiled.status.success(), "gcc: {}", text(&compiled));
        chown_tree(&ctx, user);
        let host_only = home.path().join("only-on-the-host");
        std::fs::write(&host_only, "host\n").expect("a file of the host");
        chown_tree(&host_only, user);
        let mut build = home.rbuild();
        build
            .env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(home.store())
            .args(["build", "--progress", "plain", "--isolation", "proot"])
            .arg("--build-arg")
            .arg(format!("HOST={}", host_only.display()))
            .arg(&ctx);
        let out = build.output().expect("running rbuild");
        assert!(
            out.status.success() && text(&out).contains("probe ok"),
            "{}",
            text(&out)
        );
    });
}

/// proot waits for every process of a step; BuildKit's step ends with its first process
/// (the PID namespace goes, and what it left running with it). Under the proot isolation
/// a step that leaves a process in the background (a daemon, `cmd &`, `setsid cmd`) must
/// end too, and the build go on. (The guard below only keeps a hang from stalling the
/// suite; it measures nothing.)
#[test]
fn a_proot_step_ends_with_its_first_process() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        // Durations no other process is likely to sleep, to find what is left.
        let (a, b) = (
            format!("7{}1", std::process::id()),
            format!("7{}2", std::process::id()),
        );
        let dockerfile = format!(
            "FROM busybox:latest\n\
             RUN (sleep {a} &) ; setsid sleep {b} & echo started\n\
             RUN echo next > /next\n"
        );
        let ctx = home.context("ctx", &[("Dockerfile", &dockerfile)]);
        let mut build = home.rbuild();
        build
            .env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(home.store())
            .args(["build", "--progress", "plain", "--isolation", "proot"])
            .arg(&ctx)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = build.spawn().expect("running rbuild");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while child.try_wait().expect("waiting for rbuild").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("rbuild's output");
                panic!("the build never ended: {}", text(&out));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let out = child.wait_with_output().expect("rbuild's output");
        assert!(out.status.success(), "{}", text(&out));
        let left = Command::new("pgrep")
            .args(["-f", &format!("sleep ({a}|{b})")])
            .output()
            .expect("running pgrep (Debian package procps)");
        assert!(
            left.stdout.is_empty(),
            "the step's background processes are still running: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    });
}

/// `kill -9` of rbuild during a step under proot ends every process of the step, the
/// first one, what it started in the background and what left its session, as the end
/// of a PID namespace would (they ran on, untraced, on the container's paths).
#[test]
fn killing_rbuild_ends_every_process_of_a_proot_step() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        // Durations no other process is likely to sleep, to find what is left.
        let sleeps: Vec<String> = (1..=3)
            .map(|i| format!("8{}{i}", std::process::id()))
            .collect();
        let dockerfile = format!(
            "FROM busybox:latest\n\
             RUN (sleep {} &) ; setsid sleep {} & sleep {}\n",
            sleeps[0], sleeps[1], sleeps[2]
        );
        let ctx = home.context("ctx", &[("Dockerfile", &dockerfile)]);
        let mut build = home.rbuild();
        build
            .env("RBUILD_SKIP_USERNS", "1")
            .arg("--root")
            .arg(home.store())
            .args(["build", "--progress", "plain", "--isolation", "proot"])
            .arg(&ctx)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let pattern = format!("^sleep ({})$", sleeps.join("|"));
        let running = || {
            let out = Command::new("pgrep")
                .args(["-f", &pattern])
                .output()
                .expect("running pgrep (Debian package procps)");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let mut child = build.spawn().expect("running rbuild");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while running().len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the step's three processes never all ran"
            );
            assert!(
                child.try_wait().expect("waiting for rbuild").is_none(),
                "the build ended before its step's processes all ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        child.kill().expect("kill -9 of rbuild");
        child.wait().expect("reaping rbuild");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut left = running();
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            left = running();
        }
        for pid in &left {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        assert!(
            left.is_empty(),
            "the step's processes outlived rbuild: {left:?}"
        );
    });
}

/// A step's status is its first process's, as in BuildKit; proot's own is the last
/// process's to end: `cmd & exit 7` fails, `(false) & true` passes, a shell killed by
/// a signal fails, a program that exits from another thread passes.
#[test]
fn a_proot_steps_status_is_its_first_processs() {
    require_proot();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        // A program whose exit comes from another thread than its first (as a Go
        // program's may): its status is still its own.
        let threads = home.path().join("threads");
        let source = home.path().join("threads.c");
        std::fs::write(
            &source,
            "#include <pthread.h>\n#include <stdlib.h>\n#include <unistd.h>\n\
             static void *w(void *a) { usleep(100000); exit(0); return a; }\n\
             int main(void) { pthread_t t; pthread_create(&t, 0, w, 0); for (;;) pause(); }\n",
        )
        .expect("writing a C source");
        let compiled = Command::new("gcc")
            .args(["-static", "-pthread", "-O1", "-o"])
            .arg(&threads)
            .arg(&source)
            .output()
            .expect("running gcc (Debian packages gcc and libc6-dev)");
        assert!(compiled.status.success(), "gcc: {}", text(&compiled));
        let threads = std::fs::read(&threads).expect("the compiled program");
        for (run, code) in [
            ("sleep 0.2 & exit 7", Some(7)),
            ("(sleep 0.2; exit 3) & true", None),
            ("kill -ABRT $$", Some(1)),
            ("[\"/threads\"]", None),
        ] {
            let dockerfile = format!("FROM busybox:latest\nCOPY threads /threads\nRUN {run}\n");
            let ctx = home.context("ctx", &[("Dockerfile", &dockerfile)]);
            std::fs::write(ctx.join("threads"), &threads).expect("the program in the context");
            std::fs::set_permissions(
                ctx.join("threads"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("making it executable");
            chown_tree(&ctx, user);
            let mut build = home.rbuild();
            build
                .env("RBUILD_SKIP_USERNS", "1")
                .arg("--root")
                .arg(home.store())
                .args(["build", "--no-cache", "--progress", "plain"])
                .args(["--isolation", "proot"])
                .arg(&ctx);
            let out = build.output().expect("running rbuild");
            match code {
                None => assert!(out.status.success(), "RUN {run}: {}", text(&out)),
                Some(7) => assert!(
                    !out.status.success() && text(&out).contains("exit code: 7"),
                    "RUN {run}: {}",
                    text(&out)
                ),
                Some(_) => assert!(!out.status.success(), "RUN {run}: {}", text(&out)),
            }
        }
    });
}

/// A PAX record `"<len> key=value\n"`, its length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    [len.to_string().as_bytes(), &body].concat()
}

/// Base images made by root (`rbuild build` and `import`, then `save`): `opq`, whose
/// second layer replaces directory `/d` (an opaque whiteout over the first), and `xat`,
/// whose layer gives files `trusted.*` and `user.*` extended attributes.
fn images_root_made() -> PathBuf {
    let archive = shared().join("root-made.tar");
    if archive.exists() {
        return archive;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = dir.path().join("store");
    support::run::import(&store, &shared().join("busybox.tar"), "busybox:latest", &[]);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).expect("a context");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\n\
         RUN mkdir /d && echo a > /d/old\n\
         RUN rm -rf /d && mkdir /d && echo b > /d/new\n",
    )
    .expect("a Dockerfile");
    support::run::success(
        support::run::rbuild(&store)
            .args(["build", "-q", "-t", "opq"])
            .arg(&ctx),
    );

    let mut layer = tar::Builder::new(Vec::new());
    for (name, key) in [
        ("trusted-file", "trusted.rbuild-test"),
        ("user-file", "user.rbuild-test"),
    ] {
        let records = pax_record(&format!("SCHILY.xattr.{key}"), b"1");
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(records.len() as u64);
        pax.set_mode(0o644);
        pax.set_uid(0);
        pax.set_gid(0);
        pax.set_mtime(0);
        layer
            .append_data(&mut pax, "PaxHeaders/x", records.as_slice())
            .expect("a PAX header");
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(2);
        header.set_mtime(1_700_000_000);
        layer
            .append_data(&mut header, name, &b"x\n"[..])
            .expect("a file");
    }
    let rootfs = dir.path().join("xattrs.tar");
    std::fs::write(&rootfs, layer.into_inner().expect("the layer")).expect("writing the layer");
    support::run::import(&store, &rootfs, "xat", &[]);
    support::run::success(
        support::run::rbuild(&store)
            .arg("save")
            .arg("-o")
            .arg(&archive)
            .args(["opq", "xat"]),
    );
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    archive
}

/// Layers that a user namespace unpacks other than root does: an opaque directory (the
/// overlay of a user namespace reads `user.overlay.opaque`, and `trusted.*` may not be
/// set there) and `trusted.*` xattrs of an image, left out as docker's and podman's
/// appliers do in a user namespace. Before the fix both failed with EPERM.
#[test]
fn opaque_directories_and_trusted_xattrs_of_base_images_unpack_without_root() {
    let archive = images_root_made();
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        home.ok(&["load", "-i", archive.to_str().expect("UTF-8 path")]);
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                "FROM opq\n\
                 COPY --from=xat /user-file /trusted-file /x/\n\
                 RUN ls /d > /listing\n",
            )],
        );
        home.ok(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "seen",
            ctx.to_str().expect("UTF-8"),
        ]);
        assert_eq!(home.ok(&["run", "seen", "cat", "/listing"]), "new\n");
        assert_eq!(home.ok(&["run", "seen", "cat", "/x/user-file"]), "x\n");
    });
}

/// Where the default store goes when the environment is odd: a relative XDG_DATA_HOME
/// is ignored (the XDG base directory specification says so) and an unset or relative
/// HOME gives way to the user's home in /etc/passwd; before, the store went under the
/// working directory, or was sought in `/.local/share`.
#[test]
fn the_default_store_ignores_relative_or_missing_homes() {
    for_each_user(|user| {
        let home = Home::new(user);
        let tar = shared().join("busybox.tar");
        let tar = tar.to_str().expect("UTF-8 path");
        let mut relative = home.rbuild();
        relative
            .env("XDG_DATA_HOME", "data")
            .args(["import", tar, "busybox:latest"]);
        let out = relative.output().expect("running rbuild");
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            home.path().join(".local/share/rbuild/index.json").is_file(),
            "the store is not in $HOME/.local/share/rbuild"
        );
        assert!(
            !home.path().join("data").exists(),
            "a store under the working directory"
        );

        let passwd_home = std::fs::read_to_string("/etc/passwd")
            .expect("reading /etc/passwd")
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 5 && f[0] == user.name).then(|| f[5].to_owned())
            })
            .expect("the user's passwd line");
        for home_var in [None, Some("relative")] {
            let mut cmd = home.rbuild();
            cmd.env_remove("HOME").arg("images");
            if let Some(value) = home_var {
                cmd.env("HOME", value);
            }
            let out = cmd.output().expect("running rbuild");
            let said = text(&out);
            // The passwd home may not exist (nobody's /nonexistent): then the error names it.
            assert!(
                out.status.success() || said.contains(&format!("{passwd_home}/.local")),
                "HOME={home_var:?}: not the passwd home {passwd_home}: {said}"
            );
            assert!(!said.contains(" /.local"), "HOME={home_var:?}: {said}");
        }
    });
}

/// `-o type=local` writes a tree the caller owns, as BuildKit's client does for a user:
/// before, files of other ids inside were written as the caller's subordinate ids, which
/// the caller cannot even remove outside rbuild.
#[test]
fn a_local_export_belongs_to_the_caller() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let chown = if user.ranges {
            " && chown -R 1000:1000 /out"
        } else {
            ""
        };
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                &format!("FROM busybox:latest\nRUN mkdir -p /out/d && touch /out/d/f{chown}\n"),
            )],
        );
        let dest = home.path().join("exported");
        home.ok(&[
            "build",
            "-q",
            "-o",
            &format!("type=local,dest={}", dest.display()),
            ctx.to_str().expect("UTF-8"),
        ]);
        for entry in walkdir::WalkDir::new(&dest) {
            let entry = entry.expect("walking the export");
            let meta = std::fs::symlink_metadata(entry.path()).expect("an exported entry");
            assert_eq!(
                (
                    std::os::unix::fs::MetadataExt::uid(&meta),
                    std::os::unix::fs::MetadataExt::gid(&meta)
                ),
                (user.uid, user.gid),
                "{} is not the caller's",
                entry.path().display()
            );
        }
        let removed = Command::new(SETPRIV)
            .args([
                format!("--reuid={}", user.uid),
                format!("--regid={}", user.gid),
                "--clear-groups".to_owned(),
                "--".to_owned(),
                "rm".to_owned(),
                "-rf".to_owned(),
            ])
            .arg(&dest)
            .output()
            .expect("running rm");
        assert!(removed.status.success(), "{}", text(&removed));
    });
}

/// What the README and rbuild_core::rootless promise: after `system prune -a
/// --cache-mounts` every file left in the store is the caller's own, so a plain `rm -rf`
/// of the user removes it, even after steps wrote files of other ids (layers, a cache
/// mount, a killed build's scratch) and made directories unreadable.
#[test]
fn after_prune_all_the_store_is_the_callers_to_remove() {
    for_each_user(|user| {
        let home = Home::new(user);
        home.import_busybox();
        let chown = if user.ranges {
            " && chown -R 1000:1000 /d /c/d"
        } else {
            ""
        };
        let ctx = home.context(
            "ctx",
            &[(
                "Dockerfile",
                &format!(
                    "FROM busybox:latest\n\
                     RUN --mount=type=cache,target=/c mkdir -p /d/e /c/d && touch /d/e/f \
                     /c/d/f{chown} && chmod 000 /d/e /c/d\n"
                ),
            )],
        );
        home.ok(&["build", "-q", "-t", "made", ctx.to_str().expect("UTF-8")]);
        home.ok(&["system", "prune", "-a", "--cache-mounts", "-f"]);
        let removed = Command::new(SETPRIV)
            .args([
                format!("--reuid={}", user.uid),
                format!("--regid={}", user.gid),
                "--clear-groups".to_owned(),
                "--".to_owned(),
                "rm".to_owned(),
                "-rf".to_owned(),
            ])
            .arg(home.store())
            .output()
            .expect("running rm");
        assert!(removed.status.success(), "{}", text(&removed));
    });
}

/// The owner (uid, gid) a tarball gives `path`.
fn owner_in(tar: &Path, path: &str) -> Option<(u64, u64)> {
    entry_in(tar, path).map(|(owner, _, _)| owner)
}

/// The content of the file `path` in the tar at `tar`.
fn file_in(tar: &Path, path: &str) -> String {
    entry_in(tar, path)
        .unwrap_or_else(|| panic!("no {path} in {}", tar.display()))
        .2
}

/// The owner, mode and content of `path` in the tar at `tar`.
fn entry_in(tar: &Path, path: &str) -> Option<((u64, u64), u32, String)> {
    use std::io::Read as _;
    let file = std::fs::File::open(tar).unwrap_or_else(|e| panic!("{}: {e}", tar.display()));
    let mut archive = tar::Archive::new(file);
    let entries = archive.entries().expect("a tar");
    for entry in entries.flatten() {
        let mut entry = entry;
        let named = entry.path().is_ok_and(|p| tar_name(&p) == path);
        if named {
            let header = entry.header().clone();
            let mut body = String::new();
            let _ = entry.read_to_string(&mut body);
            return Some((
                (header.uid().expect("a uid"), header.gid().expect("a gid")),
                header.mode().expect("a mode"),
                body,
            ));
        }
    }
    None
}
