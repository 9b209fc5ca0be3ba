//! `rbuild build` with registries, against a real `docker-registry` on 127.0.0.1: FROM
//! pulls what the store lacks (also through a Docker Hub mirror), `--pull` looks base
//! images up again, the base's registry digest is recorded in the manifest annotations,
//! and `--push` / `-o type=registry` push the result (checked with skopeo and `rbuild
//! pull`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod support;

use support::registry::Registry;
use support::require::require_tool;
use support::scratch::Scratch;

/// image-spec annotations.md: the manifest digest of the base image.
const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";
/// image-spec annotations.md: the name of an image in an index.
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The digest `rbuild push` prints: `NAME: digest: sha256:...`.
fn pushed_digest(stdout: &str) -> String {
    stdout
        .rsplit_once("digest: ")
        .map(|(_, d)| d.trim().to_owned())
        .unwrap_or_else(|| panic!("no digest in push output {stdout:?}"))
}

/// The manifest the store at `root` names `name` (its full name), and its digest.
fn stored_manifest(root: &Path, name: &str) -> (Value, String) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"][REF_NAME_ANNOTATION] == name)
        .unwrap_or_else(|| panic!("no image {name} in {index}"));
    let digest = entry["digest"].as_str().unwrap().to_owned();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(root.join("blobs/sha256").join(hex)).unwrap();
    (serde_json::from_slice(&bytes).unwrap(), digest)
}

/// The base digest recorded in the manifest of `name`.
fn base_digest(root: &Path, name: &str) -> String {
    let (manifest, _) = stored_manifest(root, name);
    manifest["annotations"][BASE_DIGEST_ANNOTATION]
        .as_str()
        .unwrap_or_else(|| panic!("no base digest annotation in {manifest}"))
        .to_owned()
}

fn skopeo_digest(reference: &str) -> String {
    require_tool("skopeo", "skopeo");
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `--explain-cache`'s verdict on the step whose name contains `step`.
fn explained(stderr: &str, step: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains(step) && (l.ends_with(": cached") || l.contains(": ran")))
        .unwrap_or_else(|| panic!("no --explain-cache line for {step} in {stderr}"))
        .to_owned()
}

#[test]
fn from_pulls_what_the_store_lacks_and_records_the_registry_digest() {
    let reg = Registry::start(None);
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let a = s.store_with_busybox("a");
    let base = format!("{}/base/busybox:1", reg.addr);
    let (out, _) = s.ok(&a, &["push", "busybox:latest", &base]);
    let pushed = pushed_digest(&out);

    let b = s.path("b");
    let ctx = s.context(
        "ctx",
        &format!("FROM {base}\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n"),
    );
    s.ok(&b, &["build", "--progress", "plain", "-t", "out:1", &ctx]);
    let full = "docker.io/library/out:1";
    assert_eq!(base_digest(&b, full), pushed, "the base's registry digest");
    // The base was pulled into the store under its name, as `rbuild pull` leaves it.
    let (_, stored) = stored_manifest(&b, &base);
    assert_eq!(stored, pushed);

    // COPY --from=<image> pulls too.
    let c = s.path("c");
    let ctx = s.context(
        "ctx-copy",
        &format!("FROM scratch\nCOPY --from={base} /bin/busybox /busybox\n"),
    );
    let rootfs = s.path("rootfs");
    let dest = format!("type=local,dest={}", rootfs.display());
    s.ok(&c, &["build", "--progress", "plain", "-o", &dest, &ctx]);
    assert!(rootfs.join("busybox").is_file());
    assert_eq!(stored_manifest(&c, &base).1, pushed);

    // A registry error is a build error at the FROM line.
    let missing = format!("{}/base/missing:1", reg.addr);
    let ctx = s.context("ctx-missing", &format!("FROM {missing}\nRUN true\n"));
    let out = s.rbuild(&b, &["build", "--progress", "plain", &ctx]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "Dockerfile:1:1: failed to resolve image {missing}: failed to pull image {missing} \
             (it is not in the store either)"
        )),
        "{err}"
    );
    assert!(err.contains("answered 404"), "{err}");
}

#[test]
fn pull_flag_looks_again_and_push_outputs_reach_the_registry() {
    let reg = Registry::start(None);
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let a = s.store_with_busybox("a");
    let base = format!("{}/base/busybox:1", reg.addr);
    let (out, _) = s.ok(&a, &["push", "busybox:latest", &base]);
    let first = pushed_digest(&out);

    let b = s.path("b");
    let ctx = s.context("ctx", &format!("FROM {base}\nRUN ls / > /listing\n"));
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--progress",
            "plain",
            "--explain-cache",
            "-t",
            "app",
        ];
        args.extend_from_slice(extra);
        args.push(&ctx);
        s.ok(&b, &args).1
    };
    build(&[]);
    assert_eq!(base_digest(&b, "docker.io/library/app:latest"), first);

    // A new image under the same tag, built and pushed with --push.
    let ctx_v2 = s.context("ctx-v2", "FROM busybox\nRUN echo two > /v2\n");
    let (_, err) = s.ok(
        &a,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            &base,
            "--push",
            &ctx_v2,
        ],
    );
    let (_, second) = stored_manifest(&a, &base);
    assert_ne!(second, first);
    assert!(
        err.contains(&format!("pushed {base}: digest: {second}")),
        "{err}"
    );
    assert_eq!(
        skopeo_digest(&base),
        second,
        "skopeo reads what --push sent"
    );

    // Without --pull the store's base is used and the step stays cached.
    let err = build(&[]);
    assert_eq!(base_digest(&b, "docker.io/library/app:latest"), first);
    assert!(explained(&err, "RUN ls").ends_with(": cached"), "{err}");

    // With --pull the registry's new image is the base: new cache keys, its files.
    let rootfs = s.path("rootfs");
    let dest = format!("type=local,dest={}", rootfs.display());
    let err = build(&["--pull", "-o", &dest]);
    assert_eq!(base_digest(&b, "docker.io/library/app:latest"), second);
    assert!(explained(&err, "RUN ls").contains(": ran"), "{err}");
    assert_eq!(std::fs::read_to_string(rootfs.join("v2")).unwrap(), "two\n");
    let listing = std::fs::read_to_string(rootfs.join("listing")).unwrap();
    assert!(listing.lines().any(|l| l == "v2"), "{listing}");

    // -o type=registry and -o type=image,push=true push what the store names.
    let two = format!("{}/team/app:2", reg.addr);
    let three = format!("{}/team/app:3", reg.addr);
    let to_registry = format!("type=registry,name={two}");
    let to_image = format!("type=image,name={three},push=true");
    build(&["-o", &to_registry, "-o", &to_image]);
    let (_, built) = stored_manifest(&b, &two);
    assert_eq!(skopeo_digest(&two), built);
    assert_eq!(skopeo_digest(&three), built);
    let (out, _) = s.ok(&s.path("c"), &["pull", &two]);
    assert!(out.contains(&format!("Digest: {built}")), "{out}");

    // --push without a name has nothing to push to.
    let out = s.rbuild(&b, &["build", "--progress", "plain", "--push", &ctx]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("give one with -t"), "{err}");
}

#[test]
fn docker_hub_names_are_pulled_through_the_configured_mirror() {
    let reg = Registry::start(None);
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let a = s.store_with_busybox("a");
    let mirrored = format!("{}/library/busybox:mirrored", reg.addr);
    let (out, _) = s.ok(&a, &["push", "busybox:latest", &mirrored]);
    let pushed = pushed_digest(&out);
    // The mirror serves docker.io/library/busybox; docker.io itself is never reached.
    // The first mirror is down (nothing listens on that port): skipped with a warning.
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &s.config,
        format!(
            "registry-mirrors = [\"http://127.0.0.1:{down}\", \"http://{}\"]\n",
            reg.addr
        ),
    )
    .unwrap();

    let b = s.path("b");
    let ctx = s.context("ctx", "FROM busybox:mirrored\nRUN echo ok > /ok\n");
    let (_, err) = s.ok(
        &b,
        &["build", "--progress", "plain", "-t", "viamirror", &ctx],
    );
    assert!(
        err.contains(&format!(
            "registry mirror http://127.0.0.1:{down} skipped for docker.io/library/busybox:mirrored"
        )),
        "{err}"
    );
    assert_eq!(
        base_digest(&b, "docker.io/library/viamirror:latest"),
        pushed
    );
    let (_, stored) = stored_manifest(&b, "docker.io/library/busybox:mirrored");
    assert_eq!(stored, pushed);
}

#[test]
fn insecure_registries_come_from_the_flag_and_the_config_file() {
    let reg = Registry::start_on("127.0.0.2", None);
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let a = s.store_with_busybox("a");
    let base = format!("{}/base/busybox:1", reg.addr);
    let (out, _) = s.ok(
        &a,
        &[
            "push",
            "--insecure-registry",
            &reg.addr,
            "busybox:latest",
            &base,
        ],
    );
    let pushed = pushed_digest(&out);

    let b = s.path("b");
    let ctx = s.context("ctx", &format!("FROM {base}\nRUN echo ok > /ok\n"));
    // Not named insecure: rbuild speaks TLS to it, which a plain HTTP registry cannot answer.
    let out = s.rbuild(&b, &["build", "--progress", "plain", &ctx]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("failed to pull image {base}")) && err.contains("https://"),
        "{err}"
    );

    // Named in the config file: pulled over plain HTTP.
    std::fs::write(
        &s.config,
        format!("insecure-registries = [\"{}\"]\n", reg.addr),
    )
    .unwrap();
    s.ok(&b, &["build", "--progress", "plain", "-t", "app", &ctx]);
    assert_eq!(base_digest(&b, "docker.io/library/app:latest"), pushed);

    // Named with the flag: --push reaches it.
    std::fs::write(&s.config, "").unwrap();
    let app = format!("{}/team/app:1", reg.addr);
    let (_, err) = s.ok(
        &b,
        &[
            "build",
            "--progress",
            "plain",
            "--insecure-registry",
            &reg.addr,
            "-t",
            &app,
            "--push",
            &ctx,
        ],
    );
    let (_, built) = stored_manifest(&b, &app);
    assert!(
        err.contains(&format!("pushed {app}: digest: {built}")),
        "{err}"
    );
    assert_eq!(skopeo_digest(&app), built);
    // The base's layers were mounted from its repository, not uploaded again.
    let log = std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap();
    assert!(log.contains("from=base"), "{log}");
}

/// The names of the steps `--progress rawjson` output (stderr) shows as run, not cached.
fn steps_run(rawjson: &str) -> Vec<String> {
    let events: Vec<Value> = rawjson
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let name_of = |step: &Value| {
        events
            .iter()
            .find(|e| e["type"] == "step_started" && &e["step"] == step)
            .and_then(|e| e["name"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    events
        .iter()
        .filter(|e| e["type"] == "step_finished")
        .map(|e| name_of(&e["step"]))
        // Pulls, exports and pushes are steps too; only the Dockerfile's count here.
        .filter(|name| !name.starts_with("[internal]") && !name.starts_with("exporting "))
        .collect()
}

#[test]
fn a_fresh_store_builds_from_the_registry_cache_of_another_without_running_steps() {
    let reg = Registry::start(None);
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let a = s.store_with_busybox("a");
    let base = format!("{}/base/busybox:1", reg.addr);
    s.ok(&a, &["push", "busybox:latest", &base]);
    let ctx = s.context(
        "ctx",
        &format!(
            "FROM {base}\nRUN echo one > /one\nCOPY Dockerfile /df\nRUN cat /one /df > /both\n"
        ),
    );
    let cache = format!("{}/cache/app:build", reg.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    let iid_a = s.path("iid-a");
    let (_, stderr) = s.ok(
        &a,
        &[
            "build",
            "--progress",
            "rawjson",
            "--cache-to",
            &to,
            "--iidfile",
            iid_a.to_str().unwrap(),
            &ctx,
        ],
    );
    assert_eq!(steps_run(&stderr).len(), 3, "{stderr}");

    // B has an empty store: the base comes from the registry, the steps from the cache.
    let b = s.path("b");
    let from = format!("type=registry,ref={cache}");
    let iid_b = s.path("iid-b");
    let (_, stderr) = s.ok(
        &b,
        &[
            "build",
            "--progress",
            "rawjson",
            "--cache-from",
            &from,
            "--iidfile",
            iid_b.to_str().unwrap(),
            &ctx,
        ],
    );
    assert_eq!(steps_run(&stderr), Vec::<String>::new(), "{stderr}");
    assert!(!stderr.contains("\"type\":\"warning\""), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&iid_b).unwrap(),
        std::fs::read_to_string(&iid_a).unwrap()
    );

    // A cache that is not there: a warning, and the steps run.
    let c = s.path("c");
    let missing = format!("type=registry,ref={}/cache/none:x", reg.addr);
    let (_, stderr) = s.ok(
        &c,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-from",
            &missing,
            &ctx,
        ],
    );
    assert!(stderr.contains("cache/none:x not imported"), "{stderr}");

    // Flags that do not parse are usage errors that name the problem.
    let out = s.rbuild(&c, &["build", "--cache-to", "type=s3,ref=x", &ctx]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cache-to") && err.contains("unknown type \"s3\""),
        "{err}"
    );
}

/// Basic auth (htpasswd), as ECR, Nexus, Artifactory and GitLab use it: after `rbuild
/// login`, a multi-layer image goes up and comes back through the CLI, several times over
/// (the parallel blob checks all start anonymous; the first 401 must not make the others
/// report the credentials as refused), and a wrong password is refused as such.
#[test]
fn basic_auth_registries_take_multi_layer_pushes_and_pulls_after_login() {
    let reg = Registry::start_with_basic_auth("tester", "s3cret");
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let a = s.store_with_busybox("a");
    let ctx = s.context(
        "ctx",
        "FROM busybox\nRUN echo 1 > /one\nRUN echo 2 > /two\nRUN echo 3 > /three\nRUN echo 4 > /four\n",
    );
    s.ok(&a, &["build", "--progress", "plain", "-t", "layers", &ctx]);

    let wrong = s.rbuild(&a, &["login", "-u", "tester", "-p", "nope", &reg.addr]);
    assert!(!wrong.status.success(), "a wrong password must be refused");
    let out = s.rbuild(&a, &["push", "layers", &format!("{}/t/x:1", reg.addr)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("login"), "{err}");

    s.ok(&a, &["login", "-u", "tester", "-p", "s3cret", &reg.addr]);
    for round in 0..3 {
        let dest = format!("{}/team/layers:{round}", reg.addr);
        let (out, _) = s.ok(&a, &["push", "layers", &dest]);
        let pushed = pushed_digest(&out);
        let fresh = s.path(&format!("fresh{round}"));
        let (out, _) = s.ok(&fresh, &["pull", &dest]);
        assert!(out.contains(&format!("Digest: {pushed}")), "{out}");
        let (listing, _) = s.ok(
            &fresh,
            &["run", &dest, "cat", "/one", "/two", "/three", "/four"],
        );
        assert_eq!(listing, "1\n2\n3\n4\n");
    }
}

/// `rbuild login SERVER` on a terminal asks for the user name and the password (not
/// echoed), as `docker login` does, then works for a push.
#[test]
fn login_asks_on_the_terminal() {
    let reg = Registry::start_with_basic_auth("tester", "s3cret");
    let s = Scratch::new("builds mount overlays and run steps in namespaces");
    let root = s.path("store");
    let done = s.path("done");
    let command = format!(
        "env RBUILD_ROOT={} RBUILD_CONFIG={} DOCKER_CONFIG={} {} login {}; echo \"exit=$?\" > {}; sleep 30",
        root.display(),
        s.config.display(),
        s.path("docker").display(),
        env!("CARGO_BIN_EXE_rbuild"),
        reg.addr,
        done.display()
    );
    let tmux =
        support::tmux::Tmux::start("login prompts", &command, 100, 10, Duration::from_secs(60));
    tmux.wait_for("the user name prompt", |screen| {
        screen.contains("Username:")
    });
    tmux.type_line("tester");
    tmux.wait_for("the password prompt", |screen| screen.contains("Password:"));
    tmux.type_line("s3cret");
    let screen = tmux.wait_for("Login Succeeded", |screen| {
        screen.contains("Login Succeeded")
    });
    assert!(
        !screen.contains("s3cret"),
        "the password was echoed:\n{screen}"
    );
    let config = std::fs::read_to_string(s.path("docker").join("config.json")).unwrap();
    assert!(config.contains(&reg.addr), "{config}");
}
