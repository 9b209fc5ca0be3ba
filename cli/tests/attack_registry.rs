//! Attack suite, registries and URLs (issue 13): hostile HTTP servers of the test's own
//! on 127.0.0.1 (silent, dripping, endless, lying, redirecting, stealing credentials)
//! against `rbuild pull`, `rbuild build` (FROM, ADD <url>) and `rbuild login`, through
//! the binary. Deadlines are set small with `RBUILD_HTTP_TIMEOUT`; each attempt bounds
//! its own wait generously and asserts only that rbuild finished with the right error.
//!
//! Over 600 lines on purpose: one suite of attempts against the test's own hostile
//! servers, each attempt a few lines read on its own; the servers and helpers at the top
//! serve them all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::attack::{Attacks, files_holding, refused, run, run_bounded, succeeded};
use support::attack_net::{Request, Server, drip, endless, respond, respond_head, silent};
use support::require::require_root;
use support::run::{busybox_setup, rbuild, scratch_entries};

/// A credential that must never be shown or sent where it does not belong.
const TOKEN: &str = "tok-canary-93b1e0";
const PASSWORD: &str = "pw-canary-5c7a2d";
/// A credential written in a Dockerfile's URL (no build argument holds it).
const LITERAL: &str = "lit-canary-2e4f61";

/// The small deadline the attempts set (seconds).
const DEADLINE: &str = "3";

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Holds when none of `needles` is in `out` (stdout and stderr).
fn not_shown(out: &Output, needles: &[&str]) -> Result<(), String> {
    let t = text(out);
    for n in needles {
        if t.contains(n) {
            return Err(format!("{n:?} is in rbuild's output: {t}"));
        }
    }
    Ok(())
}

/// A build of `dockerfile` in `ctx` with a small request deadline.
fn build(root: &Path, ctx: &Path, dockerfile: &str, extra: &[&str]) -> Command {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = rbuild(root);
    cmd.args(["build", "--compression", "none"])
        .args(extra)
        .arg(ctx)
        .env("RBUILD_HTTP_TIMEOUT", DEADLINE);
    cmd
}

/// `rbuild pull` of `name` with a small deadline and `docker_config` as DOCKER_CONFIG.
fn pull(root: &Path, name: &str, docker_config: &Path) -> Command {
    let mut cmd = rbuild(root);
    cmd.args(["pull", name])
        .env("RBUILD_HTTP_TIMEOUT", DEADLINE)
        .env("DOCKER_CONFIG", docker_config);
    cmd
}

/// A DOCKER_CONFIG directory holding `user:PASSWORD` for `registry`.
fn docker_config(dir: &Path, registry: &str) -> PathBuf {
    let cfg = dir.join(format!("docker-{}", registry.replace(':', "_")));
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = base64(format!("robot:{PASSWORD}").as_bytes());
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    cfg
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A manifest whose config is `config` and with no layers.
fn manifest_for(config: &[u8]) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[]}}"#,
        sha256_hex(config),
        config.len()
    )
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;

/// A config of its own for an attempt (`n` makes it differ), so no attempt finds its
/// blob already in the store from another.
fn config_n(n: u32) -> Vec<u8> {
    format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"n":"{n}"}}}}}}"#).into_bytes()
}

/// Whether `req` carries the registry's Basic credentials.
fn has_basic(req: &Request) -> bool {
    req.header("authorization").is_some_and(|a| {
        a.starts_with("Basic") || a.contains(&base64(format!("robot:{PASSWORD}").as_bytes()))
    })
}

/// A registry that wants Basic auth, then serves `manifest` for any tag and hands
/// every blob request to `blob`.
fn basic_registry(
    manifest: String,
    blob: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static,
) -> Server {
    Server::start(move |req, conn| {
        if req.header("authorization").is_none() {
            respond(
                conn,
                401,
                &[("WWW-Authenticate", r#"Basic realm="r""#)],
                b"",
            );
        } else if req.path.contains("/manifests/") {
            respond(
                conn,
                200,
                &[("Content-Type", MANIFEST_TYPE)],
                manifest.as_bytes(),
            );
        } else if req.path.contains("/blobs/") {
            blob(req, conn);
        } else {
            respond(conn, 200, &[], b"{}");
        }
    })
}

#[test]
fn attack_registry() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let mut attacks = Attacks::new("registry");
    let (dir, root, ctx) = busybox_setup(&[]);
    let files = Server::start(|req, conn| match req.path.as_str() {
        "/file.txt" => respond(conn, 200, &[], b"downloaded\n"),
        "/to-file" => respond(conn, 302, &[("Location", "file:///etc/shadow")], b""),
        "/to-ftp" => respond(conn, 302, &[("Location", "ftp://127.0.0.1/x")], b""),
        "/to-gopher" => respond(conn, 301, &[("Location", "gopher://127.0.0.1:70/x")], b""),
        "/silent" => silent(conn, 60),
        "/drip" => drip(conn, 1000, 60),
        "/endless" => endless(conn, &[], 8 << 30),
        _ => respond(conn, 404, &[], b"not found"),
    });

    attacks.attempt(
        "add-url-userinfo-history",
        "ADD http://ci:${TOKEN}@host/file.txt with --build-arg TOKEN=...: the ADD's history entry, inspect's view of it, plain and rawjson progress and --explain-cache output must not hold the token (ARG TOKEN=... itself is BuildKit's history: warned about instead)",
        || {
            let df = format!(
                "FROM busybox\nARG TOKEN\nADD http://ci:${{TOKEN}}@{}/file.txt /g\n",
                files.addr
            );
            let arg = format!("TOKEN={TOKEN}");
            let plain = run(&mut build(&root, &ctx, &df, &["-t", "reg1", "--build-arg", &arg, "--explain-cache"]))?;
            succeeded(&plain)?;
            let raw = run(&mut build(&root, &ctx, &df, &["-t", "reg1", "--build-arg", &arg, "--progress", "rawjson", "--explain-cache"]))?;
            succeeded(&raw)?;
            for out in [&plain, &raw] {
                not_shown(out, &[TOKEN])?;
            }
            if !String::from_utf8_lossy(&plain.stderr).contains("--secret") {
                return Err(format!("no warning about ARG TOKEN: {}", text(&plain)));
            }
            let inspect = run(rbuild(&root).args(["inspect", "reg1"]))?;
            let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).map_err(|e| e.to_string())?;
            let adds: Vec<String> = doc.to_string().split("\"created_by\":").skip(1)
                .filter_map(|s| s.split('"').nth(1).map(str::to_owned))
                .filter(|s| s.starts_with("ADD"))
                .collect();
            if adds.is_empty() {
                return Err(format!("no ADD in the history: {}", text(&inspect)));
            }
            for add in adds {
                if add.contains(TOKEN) || !add.contains("xxxxx@") {
                    return Err(format!("the ADD's history entry is {add:?}"));
                }
            }
            Ok(())
        },
    );

    attacks.attempt(
        "add-url-userinfo-literal-stored",
        "ADD http://ci:LITERAL@host/file.txt written in the Dockerfile: the token is in no file of the store (config, history, cache entries, layers) and no output",
        || {
            let df = format!("FROM busybox\nADD http://ci:{LITERAL}@{}/file.txt /lit\n", files.addr);
            let out = run(&mut build(&root, &ctx, &df, &["-t", "reg1b", "--progress", "rawjson", "--explain-cache"]))?;
            succeeded(&out)?;
            not_shown(&out, &[LITERAL])?;
            let inspect = run(rbuild(&root).args(["inspect", "reg1b"]))?;
            not_shown(&inspect, &[LITERAL])?;
            let stored = files_holding(&root, LITERAL.as_bytes());
            if !stored.is_empty() {
                return Err(format!("the token is stored in {stored:?}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "add-url-userinfo-in-dockerfile",
        "ADD http://user:TOKEN@host/missing written in the Dockerfile, answered 404: the error and progress must not show the token",
        || {
            let df = format!("FROM busybox\nADD http://user:{TOKEN}@{}/missing /g\n", files.addr);
            let out = run(&mut build(&root, &ctx, &df, &["--progress", "rawjson"]))?;
            refused(&out, "404")?;
            not_shown(&out, &[TOKEN])
        },
    );

    attacks.attempt(
        "add-checksum-mismatch",
        "ADD --checksum=sha256:<wrong> of a URL: refused, no image, nothing left in the store's scratch",
        || {
            let df = format!(
                "FROM busybox\nADD --checksum=sha256:{} http://{}/file.txt /g\n",
                "0".repeat(64),
                files.addr
            );
            let out = run(&mut build(&root, &ctx, &df, &["-t", "reg3"]))?;
            refused(&out, "checksum")?;
            let left = scratch_entries(&root);
            if !left.is_empty() {
                return Err(format!("scratch left behind: {left:?}"));
            }
            let inspect = run(rbuild(&root).args(["inspect", "reg3"]))?;
            if inspect.status.success() {
                return Err("the image was tagged".into());
            }
            Ok(())
        },
    );

    for (name, path) in [
        ("add-redirect-file", "/to-file"),
        ("add-redirect-ftp", "/to-ftp"),
        ("add-redirect-gopher", "/to-gopher"),
    ] {
        attacks.attempt(
            name,
            &format!("ADD of a URL redirecting ({path}) to a non-http scheme: refused, nothing read from the host"),
            || {
                let df = format!("FROM busybox\nADD http://{}{path} /g\n", files.addr);
                let out = run(&mut build(&root, &ctx, &df, &[]))?;
                refused(&out, "download")
            },
        );
    }

    attacks.attempt(
        "add-silent-server",
        "ADD of a URL whose server accepts and says nothing, RBUILD_HTTP_TIMEOUT=3: finished, with an error naming the deadline",
        || {
            let df = format!("FROM busybox\nADD http://{}/silent /g\n", files.addr);
            let out = run_bounded(build(&root, &ctx, &df, &[]), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "deadline")
        },
    );

    attacks.attempt(
        "add-dripping-server",
        "ADD of a URL dripping one byte a second: finished, with an error naming the deadline",
        || {
            let df = format!("FROM busybox\nADD http://{}/drip /g\n", files.addr);
            let out = run_bounded(
                build(&root, &ctx, &df, &[]),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "deadline")
        },
    );

    attacks.attempt(
        "add-endless-body",
        "ADD of a URL with an endless body: stopped by the deadline, nothing left in the store's scratch",
        || {
            let df = format!("FROM busybox\nADD http://{}/endless /g\n", files.addr);
            let out = run_bounded(build(&root, &ctx, &df, &[]), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "download")?;
            let left = scratch_entries(&root);
            if !left.is_empty() {
                return Err(format!("scratch left behind: {left:?}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "add-url-control-characters",
        "ADD of a URL holding a control character and a space-encoded CRLF: a clear error, no panic, no request smuggled",
        || {
            let df = format!("FROM busybox\nADD http://{}/a\u{1}b%0d%0aX-Injected:1 /g\n", files.addr);
            let out = run(&mut build(&root, &ctx, &df, &[]))?;
            refused(&out, "")?;
            if files.requests().iter().any(|r| r.header("x-injected").is_some()) {
                return Err("a header was injected".into());
            }
            Ok(())
        },
    );

    // --- registries ---

    attacks.attempt(
        "registry-silent",
        "rbuild pull from a registry that accepts connections and never answers, RBUILD_HTTP_TIMEOUT=3: finished, error names the deadline, no retries of the timed-out request",
        || {
            let reg = Server::start(|_, conn| silent(conn, 120));
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "deadline")?;
            let asked = reg.requests().len();
            if asked > 1 {
                return Err(format!("the timed-out request was sent {asked} times"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "registry-dripping-manifest",
        "rbuild pull whose manifest drips one byte a second: finished, error names the deadline",
        || {
            let reg = Server::start(|req, conn| {
                if req.path.contains("/manifests/") {
                    drip(conn, 4000, 120);
                } else {
                    respond(conn, 200, &[], b"{}");
                }
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(
                pull(&root, &format!("{}/app:1", reg.addr), &cfg),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "deadline")
        },
    );

    attacks.attempt(
        "registry-dripping-blob",
        "rbuild pull whose config blob drips one byte a second: finished, error names the deadline, blob not retried",
        || {
            let config = config_n(1);
            let len = config.len() as u64;
            let reg = basic_registry(manifest_for(&config), move |_, conn| drip(conn, len, 120));
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "deadline")?;
            let blob_gets = reg.requests().iter().filter(|r| r.path.contains("/blobs/") && r.header("authorization").is_some()).count();
            if blob_gets > 1 {
                return Err(format!("the timed-out blob was asked {blob_gets} times"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "registry-realm-elsewhere",
        "a registry whose Bearer realm is plain http on another port: the Basic credentials of the registry must not reach it",
        || {
            let thief = Server::start(|_, conn| respond(conn, 200, &[], br#"{"token":"t"}"#));
            let realm = thief.url("/token");
            let reg = Server::start(move |_, conn| {
                let challenge = format!(r#"Bearer realm="{realm}",service="s""#);
                respond(conn, 401, &[("WWW-Authenticate", challenge.as_str())], b"");
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "")?;
            let stolen: Vec<Request> = thief.requests().into_iter().filter(has_basic).collect();
            if !stolen.is_empty() {
                return Err(format!("the token service on another port received the credentials: {stolen:?}"));
            }
            if thief.requests().is_empty() {
                return Err("the token service was never asked (the attempt tested nothing)".into());
            }
            not_shown(&out, &[PASSWORD])
        },
    );

    attacks.attempt(
        "registry-realm-not-http",
        "a Bearer realm of file:///etc/passwd: refused with a clear error",
        || {
            let reg = Server::start(|_, conn| {
                respond(
                    conn,
                    401,
                    &[(
                        "WWW-Authenticate",
                        r#"Bearer realm="file:///etc/passwd",service="s""#,
                    )],
                    b"",
                );
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(
                pull(&root, &format!("{}/app:1", reg.addr), &cfg),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "not an http(s) url")
        },
    );

    attacks.attempt(
        "registry-blob-redirect-other-host",
        "a blob GET (sent with Basic credentials) redirected to a server on another port: the Authorization header must not follow",
        || {
            let other = Server::start(|_, conn| respond(conn, 200, &[], CONFIG));
            let target = other.url("/stolen");
            let reg = basic_registry(manifest_for(CONFIG), move |_, conn| {
                respond(conn, 307, &[("Location", target.as_str())], b"");
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            let _ = out;
            if other.requests().is_empty() {
                return Err("the redirect was never followed (the attempt tested nothing)".into());
            }
            let leaked: Vec<Request> = other.requests().into_iter().filter(|r| r.header("authorization").is_some()).collect();
            if !leaked.is_empty() {
                return Err(format!("the Authorization header followed the redirect: {leaked:?}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "registry-blob-redirect-file",
        "a blob GET redirected to file:///etc/passwd: refused, no panic",
        || {
            let reg = basic_registry(manifest_for(&config_n(2)), |_, conn| {
                respond(conn, 307, &[("Location", "file:///etc/passwd")], b"");
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(
                pull(&root, &format!("{}/app:1", reg.addr), &cfg),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "")
        },
    );

    attacks.attempt(
        "registry-endless-manifest",
        "a manifest of 1 GB (endless chunked body): refused at the manifest size limit with bounded memory",
        || {
            let reg = Server::start(|req, conn| {
                if req.path.contains("/manifests/") {
                    endless(conn, &[("Content-Type", MANIFEST_TYPE)], 1 << 30);
                } else {
                    respond(conn, 200, &[], b"{}");
                }
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "")?;
            // The largest resident size of any child this test waited for, in KiB.
            // SAFETY: getrusage writes into the zeroed struct it is given.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: getrusage writes into `usage`, a live struct of the right type.
            unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
            if usage.ru_maxrss > 512 * 1024 {
                return Err(format!("a child grew to {} KiB", usage.ru_maxrss));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "registry-content-length-lie",
        "a manifest answer promising 100000 bytes and closing after 20: refused with a clear error",
        || {
            let reg = Server::start(|req, conn| {
                if req.path.contains("/manifests/") {
                    respond_head(conn, 200, &[("Content-Type", MANIFEST_TYPE)], Some(100_000));
                    let _ = conn.write_all(br#"{"schemaVersion":2,"#);
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                } else {
                    respond(conn, 200, &[], b"{}");
                }
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(
                pull(&root, &format!("{}/app:1", reg.addr), &cfg),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "")
        },
    );

    attacks.attempt(
        "registry-garbage-www-authenticate",
        "401 with a WWW-Authenticate header of garbage: refused naming authentication, no panic",
        || {
            let reg = Server::start(|_, conn| {
                respond(
                    conn,
                    401,
                    &[("WWW-Authenticate", "Digest ,,,=== realm=\"\" \\ ;;")],
                    b"",
                );
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(
                pull(&root, &format!("{}/app:1", reg.addr), &cfg),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "authentication")
        },
    );

    attacks.attempt(
        "registry-header-bad-bytes",
        "401 whose WWW-Authenticate holds a DEL byte (not a valid header value): a clear error, no panic",
        || {
            let reg = Server::start(|_, conn| {
                respond(conn, 401, &[("WWW-Authenticate", "\u{7f}=== realm=\"")], b"");
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "invalid header")
        },
    );

    attacks.attempt(
        "registry-html-200",
        "a registry answering 200 with an HTML page for the manifest: refused with a clear error",
        || {
            let reg = Server::start(|_, conn| {
                respond(
                    conn,
                    200,
                    &[("Content-Type", "text/html")],
                    b"<html><body>login</body></html>",
                );
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let out = run_bounded(
                pull(&root, &format!("{}/app:1", reg.addr), &cfg),
                Duration::from_secs(100),
                "no deadline held",
            )?;
            refused(&out, "")
        },
    );

    attacks.attempt(
        "registry-credentials-not-printed",
        "a registry refusing the configured credentials, pulled and used as FROM with --progress rawjson: the password (plain or base64) is in no output",
        || {
            let reg = Server::start(|_, conn| {
                respond(conn, 401, &[("WWW-Authenticate", r#"Basic realm="r""#)], b"{\"errors\":[]}");
            });
            let cfg = docker_config(dir.path(), &reg.addr);
            let b64 = base64(format!("robot:{PASSWORD}").as_bytes());
            let out = run_bounded(pull(&root, &format!("{}/app:1", reg.addr), &cfg), Duration::from_secs(100), "no deadline held")?;
            refused(&out, "authentication")?;
            not_shown(&out, &[PASSWORD, &b64])?;
            let df = format!("FROM {}/app:1\n", reg.addr);
            let mut cmd = build(&root, &ctx, &df, &["--progress", "rawjson"]);
            cmd.env("DOCKER_CONFIG", &cfg);
            let out = run_bounded(cmd, Duration::from_secs(100), "no deadline held")?;
            refused(&out, "")?;
            not_shown(&out, &[PASSWORD, &b64])
        },
    );

    attacks.attempt(
        "mirror-userinfo-not-printed",
        "--registry-mirror http://u:PASSWORD@host (refused: a mirror is a host): the error must not print the password",
        || {
            let mut cmd = rbuild(&root);
            cmd.args(["pull", "--registry-mirror", &format!("http://u:{PASSWORD}@127.0.0.1:9"), "busybox:nope"]);
            let out = run_bounded(cmd, Duration::from_secs(100), "no deadline held")?;
            refused(&out, "mirror")?;
            not_shown(&out, &[PASSWORD])
        },
    );

    attacks.attempt(
        "login-password-flag",
        "rbuild login -p PASSWORD: a warning to use --password-stdin; config.json written 0600 in a 0700 directory, the password in no output",
        || {
            let reg = Server::start(|req, conn| {
                if req.header("authorization").is_some() {
                    respond(conn, 200, &[], b"{}");
                } else {
                    respond(conn, 401, &[("WWW-Authenticate", r#"Basic realm="r""#)], b"");
                }
            });
            let cfg = dir.path().join("login-config/nested");
            let mut cmd = rbuild(&root);
            cmd.args(["login", "-u", "robot", "-p", PASSWORD, &reg.addr])
                .env("DOCKER_CONFIG", &cfg);
            let out = run_bounded(cmd, Duration::from_secs(100), "no deadline held")?;
            succeeded(&out)?;
            if !String::from_utf8_lossy(&out.stderr).contains("--password-stdin") {
                return Err(format!("no warning: {}", text(&out)));
            }
            not_shown(&out, &[PASSWORD])?;
            let mode = std::fs::metadata(cfg.join("config.json")).map_err(|e| e.to_string())?.permissions().mode() & 0o777;
            if mode != 0o600 {
                return Err(format!("config.json has mode {mode:o}"));
            }
            let dmode = std::fs::metadata(&cfg).map_err(|e| e.to_string())?.permissions().mode() & 0o777;
            if dmode & 0o077 != 0 {
                return Err(format!("the config directory has mode {dmode:o}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "login-password-stdin",
        "rbuild login --password-stdin: no warning, the password in no output",
        || {
            let reg = Server::start(|req, conn| {
                if req.header("authorization").is_some() {
                    respond(conn, 200, &[], b"{}");
                } else {
                    respond(
                        conn,
                        401,
                        &[("WWW-Authenticate", r#"Basic realm="r""#)],
                        b"",
                    );
                }
            });
            let cfg = dir.path().join("login-stdin");
            let mut child = rbuild(&root)
                .args(["login", "-u", "robot", "--password-stdin", &reg.addr])
                .env("DOCKER_CONFIG", &cfg)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(PASSWORD.as_bytes())
                .unwrap();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            succeeded(&out)?;
            if String::from_utf8_lossy(&out.stderr).contains("warning") {
                return Err(format!("a warning without cause: {}", text(&out)));
            }
            not_shown(&out, &[PASSWORD])
        },
    );

    attacks.attempt(
        "invalid-deadline-knob",
        "RBUILD_HTTP_TIMEOUT=soon: a usage error naming the variable, not a silent default",
        || {
            let mut cmd = rbuild(&root);
            cmd.args(["images"]).env("RBUILD_HTTP_TIMEOUT", "soon");
            let out = run(&mut cmd)?;
            refused(&out, "RBUILD_HTTP_TIMEOUT")
        },
    );

    drop(files);
    drop(dir);
    attacks.finish();
}
