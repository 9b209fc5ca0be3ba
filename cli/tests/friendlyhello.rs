//! The acceptance test of issue 6: friendlyhello, built by `rbuild -t friendlyhello` on
//! the python3 fixture in a fresh store, has Flask installed and the seed's config,
//! answers on 127.0.0.1:80 under `rbuild run`, leaves nothing behind when stopped, is
//! fully cached on a second build, and `--explain-cache` names app.py after it changed.
//! The first build's `--progress rawjson` stream is checked against the schema kept in
//! `docs/progress/rawjson.schema.json`.
//!
//! Needs root, the python3 fixture (`fixtures/base-images/make python3`), port 80 free,
//! and PyPI reachable for the `pip install` step.
//!
//! The multi-platform test of issue 19 builds friendlyhello for linux/amd64 and
//! linux/arm64 in one command, on the python3 and python3-arm64 fixtures imported under
//! the one name, and runs the arm64 image under QEMU; it also needs the binfmt_misc
//! handler scripts/binfmt-register makes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::require::{require_arm64_emulation, require_root, require_x86_64_host};
use support::run::{
    fixture, import, mounts_under, output, processes_with, rbuild, scratch_entries, success,
    workspace,
};

const BASE: &str = "rbuild-fixtures/python3:bookworm";
const PORT: u16 = 80;

/// Copies the example (so that editing app.py touches a copy).
fn copy_example(dest: &Path) {
    let src = workspace().join("examples/friendlyhello");
    std::fs::create_dir_all(dest).expect("creating the context copy");
    for entry in std::fs::read_dir(&src).expect("reading examples/friendlyhello") {
        let entry = entry.expect("an example file");
        if entry.file_type().expect("a file type").is_file() {
            std::fs::copy(entry.path(), dest.join(entry.file_name())).expect("copying");
        }
    }
}

/// `GET /` on 127.0.0.1:PORT, as HTTP/1.0 (the server closes after answering).
fn get_root() -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", PORT))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// A background `rbuild run`, stopped with SIGTERM (and reaped) when dropped, so a
/// failed assertion does not leave the server running.
struct Server(Option<Child>);

impl Server {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        // SAFETY: kill on our own child's pid, not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `#N [i/n] TEXT` step headers of `--progress plain` output: (N, TEXT).
fn steps(plain: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in plain.lines() {
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        if !id.starts_with('#') || !rest.starts_with('[') || rest.starts_with("[internal]") {
            continue;
        }
        let Some((_, text)) = rest.split_once("] ") else {
            continue;
        };
        if !found.iter().any(|(n, _)| n == id) {
            found.push((id.to_owned(), text.to_owned()));
        }
    }
    found
}

/// Parses `--progress rawjson` output, checking every line against the schema.
fn valid_rawjson(stream: &str) -> Vec<serde_json::Value> {
    let path = workspace().join("docs/progress/rawjson.schema.json");
    let schema_text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&schema_text).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema is a JSON Schema");
    let events: Vec<serde_json::Value> = stream
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("rawjson line {}: not JSON ({e}): {line}", n + 1));
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "rawjson line {}: {line}\n{errors:#?}",
                n + 1
            );
            value
        })
        .collect();
    assert!(!events.is_empty(), "no rawjson events");
    events
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn friendlyhello_builds_runs_and_rebuilds_from_the_cache() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tar = fixture("python3");
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let root = dir.path().join("root");
    let context = dir.path().join("friendlyhello");
    copy_example(&context);
    import(&root, &tar, BASE, &[]);

    // The first build really runs its steps, and says so in valid rawjson.
    let first = success(
        rbuild(&root)
            .args(["-t", "friendlyhello", "--progress", "rawjson"])
            .arg(&context),
    );
    let events = valid_rawjson(&text(&first.stderr));
    let pip = events
        .iter()
        .find(|e| {
            e["type"] == "step_started"
                && e["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("RUN pip install"))
        })
        .unwrap_or_else(|| panic!("no pip step in the first build: {events:#?}"))["step"]
        .clone();
    let ran = |kind: &str| events.iter().any(|e| e["type"] == kind && e["step"] == pip);
    assert!(
        ran("step_log") && ran("step_finished") && !ran("step_cached"),
        "{events:#?}"
    );
    assert_eq!(
        events.last().map(|e| &e["type"]),
        Some(&"build_finished".into())
    );

    // Flask is installed.
    let flask =
        output(rbuild(&root).args(["run", "friendlyhello", "python", "-c", "import flask"]));
    assert!(flask.status.success(), "import flask failed: {flask:?}");

    // The config is the seed's.
    let inspect = success(rbuild(&root).args(["inspect", "friendlyhello"]));
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    let config = &json[0]["Config"];
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["python", "app.py"]),
        "{config}"
    );
    assert!(config["ExposedPorts"].get("80/tcp").is_some(), "{config}");
    let env = config["Env"].as_array().expect("Env is a list");
    assert!(env.iter().any(|e| e == "NAME=World"), "{config}");
    assert_eq!(config["WorkingDir"], "/app", "{config}");

    // The app answers on the host's port 80, then stops leaving nothing behind.
    assert!(
        TcpStream::connect(("127.0.0.1", PORT)).is_err(),
        "port {PORT} is already in use on this machine: the test cannot tell whose answer it gets"
    );
    let log = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log).expect("creating the server log");
    let mut server = Server(Some(
        rbuild(&root)
            .args(["run", "friendlyhello"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("cloning the log file"))
            .stderr(log_file)
            .spawn()
            .expect("starting rbuild run friendlyhello"),
    ));
    let started = Instant::now();
    let page = loop {
        match get_root() {
            Ok(page) => break page,
            Err(e) => {
                let exited = server.0.as_mut().and_then(|c| c.try_wait().ok().flatten());
                assert!(
                    exited.is_none() && started.elapsed() < Duration::from_secs(120),
                    "no answer on 127.0.0.1:{PORT} ({e}; server {exited:?}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");
    assert!(page.contains("Hello World!"), "{page}");
    assert!(
        page.contains("cannot connect to Redis, counter disabled"),
        "{page}"
    );
    let status = server.stop().expect("the server was running");
    assert!(
        !status.success(),
        "a stopped server does not exit 0: {status}"
    );
    let stopped = Instant::now();
    while !processes_with("python app.py").is_empty() {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the app outlived rbuild run: {:?}",
            processes_with("python app.py")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", PORT)).is_err(),
        "port {PORT} still answers"
    );
    assert_eq!(mounts_under(&root), Vec::<String>::new());
    assert!(
        scratch_entries(&root)
            .iter()
            .all(|e| !e.starts_with("run-")),
        "{:?}",
        scratch_entries(&root)
    );

    // A second build with nothing changed is fully cached.
    let second = success(
        rbuild(&root)
            .args(["-t", "friendlyhello", "--progress", "plain"])
            .arg(&context),
    );
    let second_log = text(&second.stderr);
    let second_steps = steps(&second_log);
    assert!(
        second_steps.len() >= 3,
        "too few steps in the second build's output:\n{second_log}"
    );
    for (id, step) in second_steps.iter().filter(|(_, t)| !t.starts_with("FROM")) {
        assert!(
            second_log.lines().any(|l| l == format!("{id} CACHED")),
            "step {id} [{step}] was not CACHED:\n{second_log}"
        );
    }

    // --explain-cache names the edited file.
    let help = success(rbuild(&root).args(["build", "--help"]));
    assert!(
        text(&help.stdout).contains("--explain-cache"),
        "rbuild build has no --explain-cache option (issue 6, scope 3): cannot check that it names app.py"
    );
    let app = context.join("app.py");
    let mut source = std::fs::read_to_string(&app).expect("reading app.py");
    source.push_str("\n# edited by the friendlyhello test\n");
    std::fs::write(&app, source).expect("editing app.py");
    let explained = success(
        rbuild(&root)
            .args([
                "-t",
                "friendlyhello",
                "--progress",
                "plain",
                "--explain-cache",
            ])
            .arg(&context),
    );
    let all = format!("{}{}", text(&explained.stdout), text(&explained.stderr));
    assert!(
        all.lines()
            .any(|l| l.contains("app.py") && !l.contains("CMD")),
        "--explain-cache does not name app.py:\n{all}"
    );
}

/// What the multi-platform test asks each image: its machine, and the page the app gives
/// through Flask's test client (no port, so it runs beside the test above).
const APP_CHECK: &str = "import platform, flask, redis, app; \
print(platform.machine(), flask.__name__, redis.__name__); \
print(app.app.test_client().get('/').get_data(as_text=True))";

#[test]
fn friendlyhello_builds_for_amd64_and_arm64_in_one_command_and_its_arm64_image_runs_under_qemu() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let amd64 = fixture("python3");
    let arm64 = fixture("python3-arm64");
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let root = dir.path().join("root");
    let context = dir.path().join("friendlyhello");
    copy_example(&context);
    // Both fixtures under the one name: the second import adds its platform to the first.
    import(&root, &amd64, BASE, &[]);
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/arm64"])
            .arg(&arm64)
            .arg(BASE),
    );
    let base = success(rbuild(&root).args(["inspect", "-f", "{{json .Platforms}}", BASE]));
    assert_eq!(
        text(&base.stdout).trim(),
        r#"["linux/amd64","linux/arm64"]"#,
        "the base is not an index of both platforms"
    );

    let built = success(
        rbuild(&root)
            .args([
                "build",
                "--platform",
                "linux/amd64,linux/arm64",
                "-t",
                "friendlyhello",
                "--progress",
                "plain",
            ])
            .arg(&context),
    );
    let log = text(&built.stderr);
    // pip runs under QEMU for arm64 (WORKDIR, ADD and the metadata steps need no binary).
    assert!(
        log.contains("\nRan emulated: 1 step for linux/arm64\n"),
        "{log}"
    );
    let image =
        success(rbuild(&root).args(["inspect", "-f", "{{json .Platforms}}", "friendlyhello"]));
    assert_eq!(
        text(&image.stdout).trim(),
        r#"["linux/amd64","linux/arm64"]"#,
        "{log}"
    );

    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let ran = success(rbuild(&root).args([
            "run",
            "--platform",
            platform,
            "friendlyhello",
            "python",
            "-c",
            APP_CHECK,
        ]));
        let said = text(&ran.stdout);
        assert!(
            said.starts_with(&format!("{machine} flask redis\n")),
            "{platform}: {said}"
        );
        assert!(
            said.contains("Hello World!")
                && said.contains("cannot connect to Redis, counter disabled"),
            "{platform}: {said}"
        );
        let config = success(rbuild(&root).args([
            "inspect",
            "--platform",
            platform,
            "-f",
            "{{.Architecture}} {{json .Config.Cmd}} {{.Config.WorkingDir}}",
            "friendlyhello",
        ]));
        let arch = platform.trim_start_matches("linux/");
        assert_eq!(
            text(&config.stdout).trim(),
            format!(r#"{arch} ["python","app.py"] /app"#)
        );
    }
}
