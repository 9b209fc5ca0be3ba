//! `rbuild build` through the binary, on the busybox fixture imported with `rbuild
//! import`: the default subcommand, flags, exit codes, stdin inputs, progress modes and
//! `--explain-cache`.
//!
//! Over 600 lines on purpose: the flags of one subcommand through the binary, 15 short
//! cases sharing the helpers at the top.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::run::busybox_setup as setup;

mod support;

fn rbuild(root: &Path, args: &[&str]) -> Output {
    rbuild_with_stdin(root, args, None)
}

fn rbuild_with_stdin(root: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("RBUILD_ROOT", root)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the rbuild binary");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_is_the_default_subcommand_and_quiet_prints_the_image_id() {
    let (dir, root, ctx) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY a.txt /a.txt\nCMD [\"cat\", \"/a.txt\"]\n",
        ),
        ("a.txt", "a\n"),
    ]);
    let iid = dir.path().join("iid");
    let out = rbuild(
        &root,
        &[
            "-t",
            "hello",
            "-q",
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    let images = rbuild(&root, &["images"]);
    assert!(stdout(&images).contains("hello"), "{}", stdout(&images));
    let inspect = rbuild(&root, &["inspect", "hello"]);
    let json: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(json[0]["Id"], Value::String(id));
}

/// The ID a build prints (`--iidfile`, `-q`, `images`) is what docker users paste into the
/// next command: `run`, `tag`, `inspect`, `save` and `rmi` take it whole, `sha256:`-prefixed
/// or as the 12-digit short form; `rmi` by ID refuses an image with several names unless
/// `--force`, then removes them all.
#[test]
fn the_printed_image_id_works_in_every_image_command() {
    let (dir, root, ctx) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo made > /made\nCMD [\"cat\", \"/made\"]\n",
    )]);
    let iid = dir.path().join("iid");
    let out = rbuild(
        &root,
        &[
            "build",
            "-q",
            "-t",
            "idapp",
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = std::fs::read_to_string(&iid).unwrap();
    let hex = id.trim_start_matches("sha256:").to_owned();
    let short = &hex[..12];
    let images = stdout(&rbuild(&root, &["images"]));
    assert!(
        images.contains(short),
        "images must show the short ID {short}:\n{images}"
    );

    let run = rbuild(&root, &["run", &id]);
    assert_eq!(
        stdout(&run).trim(),
        "made",
        "run by full ID: {}",
        stderr(&run)
    );
    let run = rbuild(&root, &["run", short]);
    assert_eq!(
        stdout(&run).trim(),
        "made",
        "run by short ID: {}",
        stderr(&run)
    );
    let inspect = rbuild(&root, &["inspect", &hex]);
    assert_eq!(inspect.status.code(), Some(0), "{}", stderr(&inspect));
    let json: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(json[0]["Id"], Value::String(id.clone()));
    let save = rbuild(
        &root,
        &[
            "save",
            "-o",
            dir.path().join("s.tar").to_str().unwrap(),
            short,
        ],
    );
    assert_eq!(
        save.status.code(),
        Some(0),
        "save by short ID: {}",
        stderr(&save)
    );
    // As docker save: nothing on standard error when it is not a terminal.
    assert_eq!(stderr(&save), "", "save printed progress to a pipe");
    let tag = rbuild(&root, &["tag", &format!("sha256:{short}"), "idapp:two"]);
    assert_eq!(
        tag.status.code(),
        Some(0),
        "tag by short ID: {}",
        stderr(&tag)
    );

    let rmi = rbuild(&root, &["rmi", short]);
    assert_ne!(
        rmi.status.code(),
        Some(0),
        "two names: rmi by ID must refuse"
    );
    assert!(stderr(&rmi).contains("--force"), "{}", stderr(&rmi));
    let rmi = rbuild(&root, &["rmi", "--force", short]);
    assert_eq!(rmi.status.code(), Some(0), "{}", stderr(&rmi));
    assert!(stdout(&rmi).contains("idapp:latest") && stdout(&rmi).contains("idapp:two"));
    let gone = rbuild(&root, &["inspect", short]);
    assert_ne!(gone.status.code(), Some(0), "the image has no name left");
}

#[test]
fn a_failing_run_exits_1_naming_the_line_and_its_output() {
    let (_dir, root, ctx) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo the last words && false\n",
    )]);
    let out = rbuild(
        &root,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("the last words"), "{err}");
    assert!(err.contains("exit code: 1"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let (_dir, root, ctx) = setup(&[("Dockerfile", "FROM busybox\n")]);
    let out = rbuild(&root, &["build", "--no-such-flag", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = rbuild(&root, &["-t", "Not A Name", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn dockerfile_and_context_can_come_from_standard_input() {
    let (dir, root, ctx) = setup(&[("a.txt", "from the context\n")]);
    let out = rbuild_with_stdin(
        &root,
        &[
            "build",
            "-q",
            "-t",
            "fromstdin",
            "-f",
            "-",
            ctx.to_str().unwrap(),
        ],
        Some(b"FROM busybox\nCOPY a.txt /a.txt\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The context as a tar on stdin, its Dockerfile inside (under another name: with the
    // context on stdin, -f names a file of the context).
    std::fs::write(
        ctx.join("Build.docker"),
        "FROM busybox\nCOPY a.txt /b.txt\n",
    )
    .unwrap();
    let tar = Command::new("tar")
        .args(["-C", ctx.to_str().unwrap(), "-c", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let dest = dir.path().join("out");
    let output = format!("type=local,dest={}", dest.display());
    let out = rbuild_with_stdin(
        &root,
        &["build", "-q", "-f", "Build.docker", "-o", &output, "-"],
        Some(&tar.stdout),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dest.join("b.txt")).unwrap(),
        "from the context\n"
    );

    // A plain Dockerfile on stdin (`docker build - < Dockerfile`): an empty context.
    let dest = dir.path().join("plain");
    let output = format!("type=local,dest={}", dest.display());
    let out = rbuild_with_stdin(
        &root,
        &["build", "-q", "-o", &output, "-"],
        Some(b"FROM busybox\nRUN echo plain > /plain\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dest.join("plain")).unwrap(),
        "plain\n"
    );
    let out = rbuild_with_stdin(
        &root,
        &["build", "-q", "-"],
        Some(b"FROM busybox\nCOPY a.txt /a.txt\n"),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the context is empty: {}",
        stderr(&out)
    );
    let out = rbuild_with_stdin(&root, &["build", "-q", "-"], Some(b""));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("standard input is empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn build_args_without_a_value_come_from_the_environment() {
    let (dir, root, ctx) = setup(&[(
        "Dockerfile",
        "FROM busybox\nARG FROM_ENV=default\nRUN echo $FROM_ENV > /value\n",
    )]);
    let dest = dir.path().join("out");
    let output = format!("type=local,dest={}", dest.display());
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["build", "-q", "--build-arg", "FROM_ENV", "-o", &output])
        .arg(&ctx)
        .env("RBUILD_ROOT", &root)
        .env("FROM_ENV", "from the environment")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dest.join("value")).unwrap(),
        "from the environment\n"
    );
}

#[test]
fn a_second_build_is_all_cached_and_explain_cache_names_the_changed_file() {
    let (_dir, root, ctx) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nWORKDIR /app\nCOPY . /app\nRUN cat app.py\n",
        ),
        ("app.py", "print('one')\n"),
        ("other.txt", "x\n"),
    ]);
    let ctx_arg = ctx.to_str().unwrap();
    let first = rbuild(
        &root,
        &["build", "--progress", "plain", "-t", "app", ctx_arg],
    );
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let second = rbuild(
        &root,
        &["build", "--progress", "plain", "-t", "app", ctx_arg],
    );
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let err = stderr(&second);
    for step in [
        "[2/4] WORKDIR /app",
        "[3/4] COPY . /app",
        "[4/4] RUN cat app.py",
    ] {
        let number = err
            .lines()
            .find(|l| l.ends_with(step))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no line for {step}: {err}"));
        assert!(
            err.lines().any(|l| l == format!("{number} CACHED")),
            "{step} not cached: {err}"
        );
    }

    std::fs::write(ctx.join("app.py"), "print('two')\n").unwrap();
    let third = rbuild(
        &root,
        &["build", "--progress", "plain", "--explain-cache", ctx_arg],
    );
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    let err = stderr(&third);
    let copy = err
        .lines()
        .find(|l| l.contains("COPY . /app:"))
        .unwrap_or_else(|| panic!("no explanation for the COPY: {err}"));
    assert!(copy.contains("app.py"), "{copy}");
    assert!(!copy.contains("other.txt"), "{copy}");
    assert!(
        err.lines().any(|l| l.contains("WORKDIR /app: cached")),
        "{err}"
    );
}

#[test]
fn explain_cache_names_the_changed_file_of_a_copy_too_large_to_list_in_its_entry() {
    let (_dir, root, ctx) = setup(&[("Dockerfile", "FROM busybox\nCOPY tree/ /tree/\n")]);
    // More entries than a cache entry keeps in memory: the list goes to a side file.
    for d in 0..5 {
        let dir = ctx.join(format!("tree/d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f:04}")), format!("{d} {f}\n")).unwrap();
        }
    }
    let ctx_arg = ctx.to_str().unwrap();
    let first = rbuild(&root, &["build", "--progress", "plain", ctx_arg]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let lists: Vec<_> = std::fs::read_dir(root.join("cache/sources"))
        .expect("a source list")
        .collect();
    assert_eq!(lists.len(), 1);
    for entry in std::fs::read_dir(root.join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size < 64 * 1024, "{}: {size} bytes", path.display());
        }
    }

    std::fs::write(ctx.join("tree/d3/f0500"), "changed\n").unwrap();
    let second = rbuild(
        &root,
        &["build", "--progress", "plain", "--explain-cache", ctx_arg],
    );
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let err = stderr(&second);
    let copy = err
        .lines()
        .find(|l| l.contains("COPY tree/ /tree/:"))
        .unwrap_or_else(|| panic!("no explanation for the COPY: {err}"));
    assert!(copy.contains("tree/d3/f0500"), "{copy}");
    assert!(!copy.contains("f0501"), "{copy}");
}

#[test]
fn rawjson_progress_is_valid_against_the_schema() {
    let (_dir, root, ctx) = setup(&[("Dockerfile", "FROM busybox\nRUN echo hi\n")]);
    let out = rbuild(
        &root,
        &["build", "--progress", "rawjson", ctx.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let path = support::run::workspace().join("docs/progress/rawjson.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let lines: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    for line in &lines {
        assert!(validator.is_valid(line), "invalid event: {line}");
    }
    assert_eq!(lines.first().unwrap()["type"], "build_started");
    assert_eq!(lines.last().unwrap()["type"], "build_finished");
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "step_log" && l["text"] == "hi")
    );
}

/// `-` is standard output or input wherever docker has it: `-o -` (a tar of the
/// filesystem), `-o type=docker,dest=-`, `save` with no `-o` into a pipe, `save -o
/// /dev/stdout` into a redirected file, `load` from a pipe and `load -i -`; an archive is
/// never written to a terminal and no file named `-` appears. `--load` hands the image to
/// the docker on PATH (here a shim running podman on a private storage).
#[test]
fn a_dash_means_standard_streams_and_load_hands_the_image_over() {
    let (dir, root, ctx) = setup(&[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")]);
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .env("RBUILD_ROOT", &root)
            .env("B", env!("CARGO_BIN_EXE_rbuild"))
            .env("CTX", &ctx)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", stderr(&out));
        stdout(&out)
    };
    sh(r#""$B" build -q -t dash -o - "$CTX" > fs.tar 2> id"#);
    assert_eq!(sh("tar xOf fs.tar hi"), "hi\n");
    assert!(
        sh("cat id").starts_with("sha256:"),
        "-q prints the ID to stderr then"
    );
    sh(r#""$B" build -q -o type=docker,dest=- "$CTX" > docker.tar 2>/dev/null"#);
    assert!(sh("tar tf docker.tar").contains("manifest.json"));
    sh(
        r#""$B" save dash > a.tar && "$B" save -o /dev/stdout dash > b.tar && "$B" save -o - dash > c.tar"#,
    );
    sh("cmp a.tar b.tar && cmp a.tar c.tar");
    let piped = sh(r#""$B" save dash | RBUILD_ROOT="$RBUILD_ROOT.2" "$B" load"#);
    assert!(piped.contains("Loaded image: dash:latest"), "{piped}");
    let dashed = sh(r#"RBUILD_ROOT="$RBUILD_ROOT.3" "$B" load -i - < a.tar"#);
    assert!(dashed.contains("Loaded image: dash:latest"), "{dashed}");
    assert!(
        !ctx.join("-").exists() && !dir.path().join("-").exists(),
        "a file named -"
    );
    let bad = rbuild(
        &root,
        &["build", "-o", "type=local,dest=-", ctx.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    let podman = ["/usr/bin/podman", "/usr/local/bin/podman"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("missing podman: install the Debian package podman (the --load test hands images to it)");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let storage = dir.path().join("podman");
    let podman_args = format!(
        "--root {0}/root --runroot {0}/run --storage-driver vfs",
        storage.display()
    );
    std::fs::write(
        bin.join("docker"),
        format!("#!/bin/sh\nexec {podman} {podman_args} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("docker"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args([
            "build",
            "-q",
            "-t",
            "handed:over",
            "--load",
            ctx.to_str().unwrap(),
        ])
        .env("RBUILD_ROOT", &root)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = Command::new(podman)
        .args(podman_args.split(' '))
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    assert!(
        stdout(&listed).contains("handed:over"),
        "podman images after --load: {} {}",
        stdout(&listed),
        stderr(&listed)
    );
}

/// The verbs docker users type: unknown commands say so (and what was meant) instead of
/// being taken as a build context; global options go before the subcommand; `image
/// ls|rm|history|inspect`, `history`, `images -q|NAME|--format`, `inspect -f`, `system df`
/// and `builder prune` work.
#[test]
fn docker_verbs_and_unknown_commands() {
    let (_dir, root, ctx) = setup(&[("Dockerfile", "FROM busybox\nENV A=1\nRUN echo hi > /hi\n")]);
    let ok = |args: &[&str]| {
        let out = rbuild(&root, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    ok(&["build", "-q", "-t", "verbs:1", ctx.to_str().unwrap()]);

    for (typed, meant) in [
        ("imagse", "images"),
        ("ps", "rbuild keeps no containers"),
        ("histroy", "history"),
    ] {
        let out = rbuild(&root, &[typed]);
        assert_eq!(out.status.code(), Some(2), "{typed}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("unknown command \"{typed}\"")) && err.contains(meant),
            "{err}"
        );
        assert!(
            !err.contains("not found"),
            "{typed} was taken as a context: {err}"
        );
    }
    let listed = ok(&["--root", root.to_str().unwrap(), "images"]);
    assert!(listed.contains("verbs"), "{listed}");
    // Before nested subcommands too: after the innermost one, as docker's globals go.
    let root_eq = format!("--root={}", root.display());
    for nested in [
        &["--root", root.to_str().unwrap(), "system", "df"][..],
        &[root_eq.as_str(), "image", "ls", "-q", "verbs"][..],
        &["--root", root.to_str().unwrap(), "builder", "prune", "-f"][..],
        &["--root", root.to_str().unwrap(), "store", "verify"][..],
    ] {
        assert!(!ok(nested).is_empty(), "{nested:?}");
    }
    assert!(ok(&[root_eq.as_str(), "help", "images"]).contains("Usage"));
    assert!(ok(&["--root", root.to_str().unwrap(), "--version"]).contains("rbuild"));
    assert_eq!(ok(&["image", "ls", "-q", "verbs"]).lines().count(), 1);
    assert_eq!(
        ok(&["images", "busybox", "--format", "{{.Repository}}:{{.Tag}}"]).trim(),
        "busybox:latest"
    );
    let table = ok(&["images", "--format", "table {{.Repository}}\\t{{.ID}}"]);
    assert!(table.starts_with("REPOSITORY   IMAGE ID"), "{table}");
    assert_eq!(
        ok(&["inspect", "-f", "{{.Config.Env}}", "verbs:1"]).trim(),
        "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin A=1]"
    );
    let history = ok(&["history", "--no-trunc", "verbs:1"]);
    assert!(
        history.contains("ENV A=1") && history.contains("echo hi > /hi"),
        "{history}"
    );
    assert_eq!(
        ok(&["image", "history", "-q", "verbs:1"]).lines().nth(1),
        Some("<missing>")
    );
    let df = ok(&["system", "df"]);
    for kind in ["Images", "Build Cache", "Unpacked Layers", "Cache Mounts"] {
        assert!(df.contains(kind), "{df}");
    }
    assert!(ok(&["builder", "prune"]).contains("Total reclaimed space"));
    ok(&["image", "rm", "verbs:1"]);
    assert!(!ok(&["images"]).contains("verbs"));
}

/// One step definition gives one result within a build, `--no-cache` or not: two stages
/// that start the same way (FROM + WORKDIR, as a Node app's build and runtime stages do)
/// share one layer, so the next build finds every step in the cache.
#[test]
fn steps_shared_by_stages_give_one_result_even_under_no_cache() {
    let (_dir, root, ctx) = setup(&[(
        "Dockerfile",
        "FROM busybox AS deps\nWORKDIR /app\nRUN echo deps > deps\n\
         FROM busybox AS build\nWORKDIR /app\nRUN sleep 1; echo build > build\n\
         FROM busybox\nWORKDIR /app\nCOPY --from=deps /app/deps .\nCOPY --from=build /app/build .\n",
    )]);
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--progress", "plain", "--explain-cache"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let out = rbuild(&root, &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };
    build(&["--no-cache"]);
    let again = build(&[]);
    let ran: Vec<&str> = again.lines().filter(|l| l.contains(": ran")).collect();
    assert!(
        ran.is_empty(),
        "after --no-cache, a plain build reran {ran:?}:\n{again}"
    );
}

/// Smaller docker habits: `--progress quiet` prints the ID as `-q` does, `none` prints
/// nothing; the classic builder's `--rm`/`--force-rm` are accepted; BuildKit's own build
/// args (`BUILDKIT_INLINE_CACHE`) are never "not consumed"; a base image name that pulls
/// nothing points at the close names the store has, never at making the typo.
#[test]
fn docker_build_habits_are_accepted() {
    let (_dir, root, ctx) = setup(&[("Dockerfile", "FROM busybox\nRUN echo x > /x\n")]);
    let run = |args: &[&str]| {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        all.push(ctx.to_str().unwrap());
        rbuild(&root, &all)
    };
    let quiet = run(&["--progress", "quiet", "--rm", "--force-rm=false"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert!(stdout(&quiet).trim().starts_with("sha256:") && stderr(&quiet).is_empty());
    let none = run(&[
        "--progress",
        "none",
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
    ]);
    assert_eq!(none.status.code(), Some(0), "{}", stderr(&none));
    assert!(
        stdout(&none).is_empty() && stderr(&none).is_empty(),
        "{}",
        stderr(&none)
    );
    let plain = run(&[
        "--progress",
        "plain",
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
    ]);
    assert!(
        !stderr(&plain).contains("not consumed"),
        "{}",
        stderr(&plain)
    );

    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:lates\n").unwrap();
    let typo = run(&["--progress", "plain"]);
    assert_eq!(typo.status.code(), Some(1), "{}", stderr(&typo));
    assert!(
        stderr(&typo).contains("the store has busybox:latest"),
        "{}",
        stderr(&typo)
    );
    assert!(!stderr(&typo).contains("make it with"), "{}", stderr(&typo));
}

/// `rbuild import` honours SOURCE_DATE_EPOCH: two imports of one archive give one image ID
/// (without it, the import time makes each one new).
#[test]
fn imports_under_source_date_epoch_give_one_image_id() {
    let (_dir, root, _ctx) = setup(&[]);
    let tar = support::run::fixture("busybox");
    let import = |name: &str, epoch: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.args(["import", tar.to_str().unwrap(), name])
            .env("RBUILD_ROOT", &root)
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let first = import("epoch:1", Some("1700000000"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(import("epoch:2", Some("1700000000")), first);
    let flag = rbuild(
        &root,
        &[
            "import",
            "--source-date-epoch",
            "1700000000",
            tar.to_str().unwrap(),
            "epoch:3",
        ],
    );
    assert_eq!(stdout(&flag).trim(), first, "{}", stderr(&flag));
}

/// Ctrl-C (SIGINT) during a build stops it: the running step is killed, the build says
/// it was canceled and exits 130, and nothing of it is left (processes, mounts, scratch).
#[test]
fn ctrl_c_cancels_a_build_and_leaves_nothing() {
    let (_dir, root, ctx) =
        setup(&[("Dockerfile", "FROM busybox\nRUN echo started; sleep 4242\n")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["build", "--progress", "plain", ctx.to_str().unwrap()])
        .env("RBUILD_ROOT", &root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let begun = std::time::Instant::now();
    let sleeping = || {
        support::run::processes_with("sleep 4242")
            .iter()
            .any(|(_, l)| l.starts_with("sleep"))
    };
    while !sleeping() {
        if begun.elapsed().as_secs() > 60 {
            let _ = child.kill();
            panic!("the step never started");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill on the pid of this test's own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("canceled"), "{}", stderr(&out));
    assert!(!sleeping(), "the step outlived the build");
    assert_eq!(support::run::mounts_under(&root), Vec::<String>::new());
    assert_eq!(support::run::scratch_entries(&root), Vec::<String>::new());
}

/// `system df`'s Images SIZE is docker's: the images' unpacked content, a layer two images
/// share counted once, so it equals the shared part plus each image's unique part of
/// `system df -v`, whose SIZE column is `images`'s (issue 15: the row showed compressed
/// blob bytes while `images` showed uncompressed sizes).
#[test]
fn system_df_images_size_is_the_images_content_with_shared_layers_once() {
    let (_dir, root, ctx) = setup(&[(
        "Dockerfile",
        "FROM busybox:latest\nRUN head -c 300000 /dev/urandom > /blob\n",
    )]);
    let built = rbuild(
        &root,
        &["build", "-q", "-t", "withblob", ctx.to_str().unwrap()],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let df = rbuild(&root, &["system", "df", "-v", "--format", "json"]);
    assert!(df.status.success(), "{}", stderr(&df));
    let rows: Vec<Value> = stdout(&df)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let images_row = rows
        .iter()
        .find(|r| r["Type"] == "Images")
        .expect("an Images row");
    let per_image: Vec<&Value> = rows.iter().filter(|r| r["Type"] == "Image").collect();
    assert_eq!(per_image.len(), 2, "{rows:?}");
    let bytes = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    // busybox's layer and config are shared with withblob: counted once.
    let shared = per_image
        .iter()
        .map(|r| bytes(r, "SharedBytes"))
        .max()
        .unwrap();
    let unique: u64 = per_image
        .iter()
        .map(|r| bytes(r, "Bytes") - bytes(r, "SharedBytes"))
        .sum();
    assert_eq!(bytes(images_row, "Bytes"), shared + unique, "{rows:?}");
    assert!(bytes(images_row, "Bytes") > 300_000, "{rows:?}");
    // SIZE per image is `images`'s SIZE.
    let images = rbuild(&root, &["images", "--format", "{{.Repository}} {{.Size}}"]);
    for row in per_image {
        let line = format!(
            "{} {}",
            row["Repository"].as_str().unwrap(),
            row["Size"].as_str().unwrap()
        );
        assert!(
            stdout(&images).lines().any(|l| l == line),
            "{line} not in\n{}",
            stdout(&images)
        );
    }
}
