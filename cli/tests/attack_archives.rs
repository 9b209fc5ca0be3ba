//! Attacks on rbuild's archive and layer handling (issue 13): `rbuild load`, `save`,
//! `import`, the file exporters, `FROM oci-archive://` / `docker-archive://` /
//! `oci-layout://`, `ADD` of a local archive and the context tar, through the CLI, as
//! root and (where a user can run it) as the unprivileged `rbuild-rootless`.
//!
//! `RBUILD_ATTACK_BIN=/path/to/rbuild` runs the attacks against another build of rbuild
//! (the one before a fix, to see them break it).

mod support;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::attack::{Attacks, absent, as_user, refused, run, succeeded};
use support::attack_archives::*;
use support::require::{require_root, require_user};
use support::run::fixture;

const ROOTLESS: &str = "rbuild-rootless";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir the unprivileged user can use too.
fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// Writes `bytes` to `dir/name` and returns the path.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("writing a test file");
    path
}

/// `rbuild load -i archive` against the store at `root`, as `user` when given.
fn load(root: &Path, archive: &Path, user: Option<&str>) -> Result<Output, String> {
    let mut cmd = rbuild(root);
    cmd.arg("load").arg("-i").arg(archive);
    match user {
        Some(u) => run(&mut as_user(u, &cmd)),
        None => run(&mut cmd),
    }
}

/// A store at `dir/name` with busybox imported as `busybox:latest`.
fn busybox_store(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(name);
    support::run::import(&root, &fixture("busybox"), "busybox:latest", &[]);
    root
}

/// The hex digests of the blobs of the store at `root`.
fn store_blobs(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Holds when stdout and stderr carry no raw ESC, BEL or CR byte.
fn no_raw_controls(out: &Output) -> Result<(), String> {
    let mut all = out.stderr.clone();
    all.extend_from_slice(&out.stdout);
    let raw = raw_controls(&all);
    if raw.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "raw control bytes {raw:x?} reached the terminal: {:?}",
            String::from_utf8_lossy(&all)
        ))
    }
}

#[test]
fn load_treats_archives_as_data() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_user(
        ROOTLESS,
        "create it as scripts/test does (useradd and /etc/subuid ranges)",
    );
    let tmp = shared_tempdir();
    let dir = tmp.path();
    let hostname = fs::read("/etc/hostname").expect("reading /etc/hostname");
    let host_hex = sha256(&hostname);
    let mut attacks = Attacks::new("archives");

    for user in [None, Some(ROOTLESS)] {
        let who = user.unwrap_or("root");
        let root = dir.join(format!("store-f2-{who}"));

        attacks.attempt(
            &format!("load-docker-config-dotdot-{who}"),
            &format!("as {who}: rbuild load of a docker archive whose manifest.json says \"Config\": \"../../../../etc/hostname\""),
            || {
                let manifest = br#"[{"Config":"../../../../etc/hostname","RepoTags":["evil:1"],"Layers":[]}]"#;
                let mut tar = RawTar::new();
                tar.file("manifest.json", manifest);
                let archive = put(dir, &format!("dotdot-{who}.tar"), &tar.finish());
                let out = load(&root, &archive, user)?;
                refused(&out, "'..'")?;
                if store_has(&root, &host_hex) {
                    return Err("the host's /etc/hostname is in the store".into());
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("load-docker-absolute-layer-{who}"),
            &format!("as {who}: rbuild load of a docker archive whose Layers name /etc/hostname (absolute) with a config that agrees"),
            || {
                let config = config_json(std::slice::from_ref(&host_hex));
                let manifest = r#"[{"Config":"config.json","RepoTags":["evil:2"],"Layers":["/etc/hostname"]}]"#;
                let mut tar = RawTar::new();
                tar.file("manifest.json", manifest.as_bytes()).file("config.json", &config);
                let archive = put(dir, &format!("abs-{who}.tar"), &tar.finish());
                let out = load(&root, &archive, user)?;
                refused(&out, "absolute")?;
                if store_has(&root, &host_hex) {
                    return Err("the host's /etc/hostname is in the store".into());
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("load-oci-blob-symlink-{who}"),
            &format!("as {who}: rbuild load of an OCI archive whose blobs/sha256/<x> is a symlink to /etc/hostname"),
            || {
                let fake = "ab".repeat(32);
                let config = config_json(std::slice::from_ref(&fake));
                let cdig = sha256(&config);
                let manifest = manifest_json((&cdig, config.len() as u64), &[(&fake, hostname.len() as u64)]);
                let mdig = sha256(&manifest);
                let index = index_json(&[(descriptor(MANIFEST, &mdig, manifest.len() as u64), Some("example.com/evil:3"))]);
                let mut tar = RawTar::new();
                tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .file("index.json", &index)
                    .file(&format!("blobs/sha256/{mdig}"), &manifest)
                    .file(&format!("blobs/sha256/{cdig}"), &config)
                    .entry(format!("blobs/sha256/{fake}").as_bytes(), SYMLINK, b"/etc/hostname", 0o777, b"");
                let archive = put(dir, &format!("symlink-{who}.tar"), &tar.finish());
                let out = load(&root, &archive, user)?;
                refused(&out, "symlink")?;
                if store_has(&root, &host_hex) {
                    return Err("the host's /etc/hostname was stored under its digest".into());
                }
                if stderr(&out).contains(&host_hex) {
                    return Err("the error prints the host file's digest".into());
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("load-names-blob-it-lacks-{who}"),
            &format!("as {who}: after the symlink attempt, rbuild load of an archive naming the host file's digest as a layer it does not carry, then rbuild save"),
            || {
                let config = config_json(std::slice::from_ref(&host_hex));
                let cdig = sha256(&config);
                let manifest = manifest_json((&cdig, config.len() as u64), &[(&host_hex, hostname.len() as u64)]);
                let mdig = sha256(&manifest);
                let index = index_json(&[(descriptor(MANIFEST, &mdig, manifest.len() as u64), Some("example.com/evil:4"))]);
                let mut tar = RawTar::new();
                tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .file("index.json", &index)
                    .file(&format!("blobs/sha256/{mdig}"), &manifest)
                    .file(&format!("blobs/sha256/{cdig}"), &config);
                let archive = put(dir, &format!("lacks-{who}.tar"), &tar.finish());
                let out = load(&root, &archive, user)?;
                refused(&out, "neither the archive nor the store")?;
                let saved = dir.join(format!("saved-{who}.tar"));
                let mut save = rbuild(&root);
                save.args(["save", "-o"]).arg(&saved).arg("example.com/evil:4");
                let out = match user {
                    Some(u) => run(&mut as_user(u, &save))?,
                    None => run(&mut save)?,
                };
                if out.status.success() {
                    return Err("rbuild save shipped the image naming the host file".into());
                }
                absent(&saved)
            },
        );
    }

    let root = dir.join("store-more");
    let canary = dir.join("escape-canary");
    attacks.attempt(
        "load-entry-dotdot",
        "rbuild load of an archive holding an entry ../../escape-canary",
        || {
            let rel = format!("../../../../../../../..{}", canary.display());
            let mut tar = RawTar::new();
            tar.entry(rel.as_bytes(), FILE, b"", 0o644, b"pwned")
                .file("index.json", b"{}");
            let archive = put(dir, "entry-dotdot.tar", &tar.finish());
            refused(&load(&root, &archive, None)?, "'..'")?;
            absent(&canary)
        },
    );

    attacks.attempt(
        "load-entry-absolute",
        "rbuild load of an archive holding an entry with an absolute name",
        || {
            let mut tar = RawTar::new();
            tar.entry(
                canary.to_string_lossy().as_bytes(),
                FILE,
                b"",
                0o644,
                b"pwned",
            );
            let archive = put(dir, "entry-abs.tar", &tar.finish());
            refused(&load(&root, &archive, None)?, "absolute")?;
            absent(&canary)
        },
    );

    attacks.attempt(
        "load-nothing-to-load",
        "rbuild load of an empty file, of empty standard input and of a tar holding \
         neither manifest.json nor index.json: each says what it is, not that index.json \
         is missing",
        || {
            let empty = put(dir, "empty.tar", b"");
            refused(&load(&root, &empty, None)?, "it is empty")?;
            let mut from_stdin = rbuild(&root);
            from_stdin
                .arg("load")
                .stdin(std::fs::File::open(&empty).map_err(|e| e.to_string())?);
            refused(&run(&mut from_stdin)?, "it is empty")?;
            let other = put(
                dir,
                "other.tar",
                &RawTar::new().file("notes.txt", b"hi").finish(),
            );
            refused(&load(&root, &other, None)?, "neither manifest.json")
        },
    );

    attacks.attempt(
        "load-index-symlink",
        "rbuild load of an OCI archive whose index.json is a symlink to a host file",
        || {
            let mut tar = RawTar::new();
            tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                .entry(b"index.json", SYMLINK, b"/etc/hostname", 0o777, b"");
            let archive = put(dir, "index-link.tar", &tar.finish());
            refused(&load(&root, &archive, None)?, "symlink")
        },
    );

    attacks.attempt(
        "load-duplicate-entries",
        "rbuild load of an archive with index.json twice (a checked one, then another)",
        || {
            let good = oci_archive(&RawTar::new().file("a", b"a").finish(), "example.com/dup:1");
            let mut bytes = good[..good.len() - 1024].to_vec();
            bytes.extend_from_slice(
                &RawTar::new()
                    .file("index.json", b"{\"schemaVersion\":2,\"manifests\":[]}")
                    .finish(),
            );
            let archive = put(dir, "dup.tar", &bytes);
            refused(&load(&root, &archive, None)?, "twice")
        },
    );

    let layer = RawTar::new().file("hello", b"hello").finish();
    let ldig = sha256(&layer);
    let config = config_json(std::slice::from_ref(&ldig));
    let cdig = sha256(&config);
    let layout = |index: &[u8], blobs: &[(&str, &[u8])]| {
        let mut tar = RawTar::new();
        tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file("index.json", index);
        for (name, bytes) in blobs {
            tar.file(&format!("blobs/sha256/{name}"), bytes);
        }
        tar.finish()
    };

    let docker_with_links = |layers_json: &str, links: &[(&str, &str)]| {
        let config = config_json(std::slice::from_ref(&ldig));
        let manifest = format!(
            r#"[{{"Config":"config.json","RepoTags":["example.com/links:1"],"Layers":{layers_json}}}]"#
        );
        let mut tar = RawTar::new();
        tar.file("manifest.json", manifest.as_bytes())
            .file("config.json", &config)
            .file("first/layer.tar", &layer);
        for (name, target) in links {
            tar.entry(name.as_bytes(), SYMLINK, target.as_bytes(), 0o777, b"");
        }
        tar.finish()
    };

    attacks.attempt(
        "load-docker-shared-layer-symlink",
        "rbuild load of a docker archive whose layer is a symlink second/layer.tar -> ../first/layer.tar (as docker save before 25 writes a shared layer): followed inside the archive only",
        || {
            let tar = docker_with_links(r#"["second/layer.tar"]"#, &[("second/layer.tar", "../first/layer.tar")]);
            succeeded(&load(&root, &put(dir, "shared.tar", &tar), None)?)
        },
    );

    attacks.attempt(
        "load-docker-symlink-climbs-out",
        "rbuild load of a docker archive whose layer is a symlink x/layer.tar -> ../../../../etc/hostname",
        || {
            let tar = docker_with_links(r#"["x/layer.tar"]"#, &[("x/layer.tar", "../../../../etc/hostname")]);
            refused(&load(&root, &put(dir, "climb.tar", &tar), None)?, "outside the archive")
        },
    );

    attacks.attempt(
        "load-docker-symlink-loop",
        "rbuild load of a docker archive whose layer is a symlink loop a -> b, b -> a",
        || {
            let tar = docker_with_links(r#"["a"]"#, &[("a", "b"), ("b", "a")]);
            refused(&load(&root, &put(dir, "loop.tar", &tar), None)?, "links")
        },
    );

    attacks.attempt(
        "load-index-missing-blob",
        "rbuild load of an OCI archive whose index names a manifest the archive lacks",
        || {
            let index = index_json(&[(
                descriptor(MANIFEST, &"cd".repeat(32), 100),
                Some("example.com/m:1"),
            )]);
            let archive = put(dir, "missing.tar", &layout(&index, &[]));
            refused(
                &load(&root, &archive, None)?,
                "neither the archive nor the store",
            )
        },
    );

    attacks.attempt(
        "load-corrupt-layer-blob",
        "rbuild load of an OCI archive whose layer blob does not hash to its name",
        || {
            let manifest =
                manifest_json((&cdig, config.len() as u64), &[(&ldig, layer.len() as u64)]);
            let mdig = sha256(&manifest);
            let index = index_json(&[(
                descriptor(MANIFEST, &mdig, manifest.len() as u64),
                Some("example.com/c:1"),
            )]);
            let mut bad = layer.clone();
            bad[600] ^= 1;
            let archive = put(
                dir,
                "corrupt.tar",
                &layout(
                    &index,
                    &[(&mdig, &manifest), (&cdig, &config), (&ldig, &bad)],
                ),
            );
            let before = store_blobs(&root);
            refused(&load(&root, &archive, None)?, "does not hash")?;
            let after = store_blobs(&root);
            if after
                .iter()
                .any(|b| !before.contains(b) && b != &mdig && b != &cdig)
            {
                return Err(format!(
                    "a blob that failed verification is stored: {after:?}"
                ));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "load-lying-size",
        "rbuild load of an OCI archive whose manifest gives its layer a size of 1 TiB",
        || {
            let manifest = manifest_json((&cdig, config.len() as u64), &[(&ldig, 1 << 40)]);
            let mdig = sha256(&manifest);
            let index = index_json(&[(
                descriptor(MANIFEST, &mdig, manifest.len() as u64),
                Some("example.com/s:1"),
            )]);
            let archive = put(
                dir,
                "size.tar",
                &layout(
                    &index,
                    &[(&mdig, &manifest), (&cdig, &config), (&ldig, &layer)],
                ),
            );
            refused(&load(&root, &archive, None)?, "descriptor says")
        },
    );

    attacks.attempt(
        "load-index-oversized-manifest",
        "rbuild load of an OCI archive whose index says its manifest has 2^40 bytes",
        || {
            let manifest =
                manifest_json((&cdig, config.len() as u64), &[(&ldig, layer.len() as u64)]);
            let mdig = sha256(&manifest);
            let index = index_json(&[(
                descriptor(MANIFEST, &mdig, 1 << 40),
                Some("example.com/o:1"),
            )]);
            let archive = put(
                dir,
                "oversized.tar",
                &layout(
                    &index,
                    &[(&mdig, &manifest), (&cdig, &config), (&ldig, &layer)],
                ),
            );
            refused(&load(&root, &archive, None)?, "bytes")
        },
    );

    attacks.attempt(
        "load-lying-media-type",
        "rbuild load of an OCI archive whose index names its manifest with a layer media type",
        || {
            let manifest =
                manifest_json((&cdig, config.len() as u64), &[(&ldig, layer.len() as u64)]);
            let mdig = sha256(&manifest);
            let index = index_json(&[(
                descriptor(LAYER, &mdig, manifest.len() as u64),
                Some("example.com/t:1"),
            )]);
            let archive = put(
                dir,
                "media.tar",
                &layout(
                    &index,
                    &[(&mdig, &manifest), (&cdig, &config), (&ldig, &layer)],
                ),
            );
            refused(&load(&root, &archive, None)?, "media type")
        },
    );

    attacks.attempt(
        "load-config-not-json",
        "rbuild load of an OCI archive whose config blob is not JSON",
        || {
            let junk = b"\x00\x01 not json".to_vec();
            let jdig = sha256(&junk);
            let manifest =
                manifest_json((&jdig, junk.len() as u64), &[(&ldig, layer.len() as u64)]);
            let mdig = sha256(&manifest);
            let index = index_json(&[(
                descriptor(MANIFEST, &mdig, manifest.len() as u64),
                Some("example.com/j:1"),
            )]);
            let archive = put(
                dir,
                "junk.tar",
                &layout(
                    &index,
                    &[(&mdig, &manifest), (&jdig, &junk), (&ldig, &layer)],
                ),
            );
            refused(&load(&root, &archive, None)?, "config")
        },
    );

    attacks.attempt(
        "load-nested-index-chain",
        "rbuild load of an OCI archive whose index names an index naming an index ... 12 deep (an index cannot name itself by digest; a deep chain is the loop's stand-in)",
        || {
            let manifest = manifest_json((&cdig, config.len() as u64), &[(&ldig, layer.len() as u64)]);
            let mut child = descriptor(MANIFEST, &sha256(&manifest), manifest.len() as u64);
            let mut blobs: Vec<(String, Vec<u8>)> = vec![
                (sha256(&manifest), manifest.clone()),
                (cdig.clone(), config.clone()),
                (ldig.clone(), layer.clone()),
            ];
            for _ in 0..12 {
                let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [child]})).expect("json");
                let d = sha256(&idx);
                child = descriptor(INDEX, &d, idx.len() as u64);
                blobs.push((d, idx));
            }
            let index = index_json(&[(child, Some("example.com/n:1"))]);
            let refs: Vec<(&str, &[u8])> = blobs.iter().map(|(d, b)| (d.as_str(), b.as_slice())).collect();
            let archive = put(dir, "nested.tar", &layout(&index, &refs));
            refused(&load(&root, &archive, None)?, "nest")
        },
    );

    attacks.attempt(
        "load-truncated",
        "rbuild load of a valid OCI archive cut off in the middle of its layer",
        || {
            let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let good = oci_archive(
                &RawTar::new().file("big", &big).finish(),
                "example.com/cut:1",
            );
            let archive = put(dir, "cut.tar", &good[..good.len() / 2]);
            let out = load(&root, &archive, None)?;
            refused(&out, "")
        },
    );

    attacks.attempt(
        "load-entry-count-bomb",
        "rbuild load of an archive of 500 empty files with RBUILD_ARCHIVE_MAX_ENTRIES=100",
        || {
            let mut tar = RawTar::new();
            for i in 0..500 {
                tar.file(&format!("f{i}"), b"");
            }
            let archive = put(dir, "many.tar", &tar.finish());
            let mut cmd = rbuild(&root);
            cmd.env("RBUILD_ARCHIVE_MAX_ENTRIES", "100")
                .arg("load")
                .arg("-i")
                .arg(&archive);
            refused(&run(&mut cmd)?, "entries")
        },
    );

    attacks.attempt(
        "load-decompression-bomb",
        "rbuild load of a gzip archive of 20 MB of zeros (20 KB compressed) with RBUILD_ARCHIVE_RATIO_ABOVE=1000000 RBUILD_ARCHIVE_MAX_RATIO=10",
        || {
            let mut tar = RawTar::new();
            tar.file("zeros", &vec![0u8; 20 << 20]);
            let plain = put(dir, "bomb.tar", &tar.finish());
            let gz = Command::new("gzip").arg("-kf").arg(&plain).status().map_err(|e| format!("gzip: {e}"))?;
            if !gz.success() {
                return Err("gzip failed".into());
            }
            let mut cmd = rbuild(&root);
            cmd.env("RBUILD_ARCHIVE_RATIO_ABOVE", "1000000")
                .env("RBUILD_ARCHIVE_MAX_RATIO", "10")
                .arg("load")
                .arg("-i")
                .arg(dir.join("bomb.tar.gz"));
            refused(&run(&mut cmd)?, "expands")
        },
    );

    attacks.finish();
}

#[test]
fn base_images_from_archives_and_layouts() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let root = busybox_store(dir, "store");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("ctx");
    let build = |dockerfile: &str, extra: &[&str]| -> Result<Output, String> {
        fs::write(ctx.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        let mut cmd = rbuild(&root);
        cmd.args(["build", "--progress", "plain"])
            .args(extra)
            .arg(&ctx);
        run(&mut cmd)
    };
    // The archives and layouts below are outside the context: the invoker allows them.
    let allow = format!("fs.read={}", dir.display());
    let mut attacks = Attacks::new("archives");

    attacks.attempt(
        "from-docker-archive-dotdot",
        "FROM docker-archive:// of an archive whose manifest.json Config is ../../../../etc/hostname",
        || {
            let mut tar = RawTar::new();
            tar.file("manifest.json", br#"[{"Config":"../../../../etc/hostname","Layers":[]}]"#);
            let archive = put(dir, "fdotdot.tar", &tar.finish());
            let out = build(
                &format!("FROM docker-archive://{}\n", archive.display()),
                &["--allow", &allow],
            )?;
            let mut all = out.stderr.clone();
            all.extend_from_slice(&out.stdout);
            if out.status.success() || !String::from_utf8_lossy(&all).contains("'..'") {
                return Err(format!("not refused for '..': {}", String::from_utf8_lossy(&all)));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "cache-from-local-blob-symlink",
        "--cache-from type=local,src=DIR where DIR (a CI artifact) holds its cache manifest as a symlink to a file outside DIR with the same bytes",
        || {
            let cache = dir.join("cache-link");
            let first = build(
                "FROM busybox:latest\nRUN echo cached > /c\n",
                &["--cache-to", &format!("type=local,dest={}", cache.display())],
            )?;
            if !first.status.success() {
                return Err(format!("the exporting build failed: {}", stderr(&first)));
            }
            let index: serde_json::Value = serde_json::from_slice(
                &fs::read(cache.join("index.json")).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let digest = index["manifests"][0]["digest"]
                .as_str()
                .ok_or("the cache index names no manifest")?
                .trim_start_matches("sha256:")
                .to_string();
            let blob = cache.join("blobs/sha256").join(&digest);
            let outside = dir.join("outside-the-cache-dir");
            fs::rename(&blob, &outside).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&outside, &blob).map_err(|e| e.to_string())?;
            let fresh = dir.join("fresh-store");
            support::run::import(&fresh, &fixture("busybox"), "busybox:latest", &[]);
            let mut cmd = rbuild(&fresh);
            cmd.args(["build", "--progress", "plain", "--cache-from"])
                .arg(format!("type=local,src={}", cache.display()))
                .arg(&ctx);
            let out = run(&mut cmd)?;
            let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            if !text.contains("symbolic link") {
                return Err(format!("the symlinked cache manifest was read: {text}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "from-oci-layout-blob-symlink",
        "FROM oci-layout://DIR whose blobs/sha256/<digest of /etc/hostname> is a symlink to /etc/hostname",
        || {
            let hostname = fs::read("/etc/hostname").map_err(|e| e.to_string())?;
            let hhex = sha256(&hostname);
            let config = config_json(std::slice::from_ref(&hhex));
            let cdig = sha256(&config);
            let manifest = manifest_json((&cdig, config.len() as u64), &[(&hhex, hostname.len() as u64)]);
            let mdig = sha256(&manifest);
            let l = dir.join("layout-link");
            fs::create_dir_all(l.join("blobs/sha256")).map_err(|e| e.to_string())?;
            fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| e.to_string())?;
            fs::write(l.join("index.json"), index_json(&[(descriptor(MANIFEST, &mdig, manifest.len() as u64), None)])).map_err(|e| e.to_string())?;
            fs::write(l.join(format!("blobs/sha256/{mdig}")), &manifest).map_err(|e| e.to_string())?;
            fs::write(l.join(format!("blobs/sha256/{cdig}")), &config).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink("/etc/hostname", l.join(format!("blobs/sha256/{hhex}"))).map_err(|e| e.to_string())?;
            let out = build(
                &format!("FROM oci-layout://{}\n", l.display()),
                &["--allow", &allow],
            )?;
            if out.status.success() {
                return Err("built from a layout whose layer is a host file".into());
            }
            if store_has(&root, &hhex) {
                return Err("the host file was stored".into());
            }
            let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            if !all.contains("symlink") {
                return Err(format!("refused without saying why: {all}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "from-oci-archive-rewritten-in-place",
        "FROM oci-archive://F, then F rewritten in place (same inode) with another image of the same size and its mtime set back; build again",
        || {
            let make = |content: &[u8], name: &str| -> Vec<u8> {
                let layer = RawTar::new().file("marker", content).finish();
                oci_archive(&layer, name)
            };
            let a = make(b"one", "example.com/m:1");
            let b = make(b"two", "example.com/m:1");
            if a.len() != b.len() {
                return Err(format!("test archives differ in size: {} {}", a.len(), b.len()));
            }
            let f = put(dir, "base.tar", &a);
            let meta = fs::metadata(&f).map_err(|e| e.to_string())?;
            let out_dir = dir.join("out1");
            let df = format!("FROM oci-archive://{}\n", f.display());
            let o1 = build(
                &df,
                &["--allow", &allow, "-o", &format!("type=local,dest={}", out_dir.display())],
            )?;
            succeeded(&o1)?;
            let first = fs::read(out_dir.join("marker")).map_err(|e| e.to_string())?;
            if first != b"one" {
                return Err("the first build did not see the first archive".into());
            }
            // Rewrite in place: same inode, same size; then the old mtime back.
            let mut file = fs::OpenOptions::new().write(true).open(&f).map_err(|e| e.to_string())?;
            file.write_all(&b).map_err(|e| e.to_string())?;
            drop(file);
            let touch = Command::new("touch")
                .arg("-m")
                .arg("-d")
                .arg(format!("@{}.{:09}", meta.mtime(), meta.mtime_nsec()))
                .arg(&f)
                .status()
                .map_err(|e| e.to_string())?;
            if !touch.success() {
                return Err("touch failed".into());
            }
            let m2 = fs::metadata(&f).map_err(|e| e.to_string())?;
            if (m2.ino(), m2.size(), m2.mtime(), m2.mtime_nsec()) != (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()) {
                return Err("could not keep inode, size and mtime".into());
            }
            let out_dir2 = dir.join("out2");
            let o2 = build(
                &df,
                &["--allow", &allow, "-o", &format!("type=local,dest={}", out_dir2.display())],
            )?;
            succeeded(&o2)?;
            let second = fs::read(out_dir2.join("marker")).map_err(|e| e.to_string())?;
            if second != b"two" {
                return Err(format!("the build used the old content: {:?}", String::from_utf8_lossy(&second)));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "add-archive-dotdot-and-symlink",
        "ADD of a local tar holding ../../canary, then one holding a symlink esc -> / and esc/<canary path>",
        || {
            let canary = dir.join("add-canary");
            let mut t1 = RawTar::new();
            t1.entry(format!("../../../../../../..{}", canary.display()).as_bytes(), FILE, b"", 0o644, b"x");
            fs::write(ctx.join("t1.tar"), t1.finish()).map_err(|e| e.to_string())?;
            let o1 = build("FROM busybox\nADD t1.tar /x/\n", &[])?;
            absent(&canary)?;
            if o1.status.success() {
                return Err("ADD accepted a '..' entry".into());
            }
            let mut t2 = RawTar::new();
            t2.entry(b"esc", SYMLINK, b"/", 0o777, b"");
            t2.entry(format!("esc{}", canary.display()).as_bytes(), FILE, b"", 0o644, b"x");
            fs::write(ctx.join("t2.tar"), t2.finish()).map_err(|e| e.to_string())?;
            let _ = build("FROM busybox\nADD t2.tar /y/\n", &[])?;
            absent(&canary)
        },
    );

    attacks.finish();
}

/// Flips one byte in the middle of blob `hex` of the store at `root`.
fn flip(root: &Path, hex: &str) {
    let path = root.join("blobs/sha256").join(hex);
    let mut bytes = fs::read(&path).expect("reading a blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&path, bytes).expect("writing a blob");
}

/// The layer blobs of the image `name` in the store at `root` (through `rbuild inspect`).
fn layer_blobs(root: &Path, name: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).expect("index")).expect("json");
    let mut out = Vec::new();
    for m in index["manifests"].as_array().expect("manifests") {
        let ann = &m["annotations"]["org.opencontainers.image.ref.name"];
        if ann.as_str().is_some_and(|n| n.contains(name)) {
            let d = m["digest"]
                .as_str()
                .expect("digest")
                .trim_start_matches("sha256:");
            let manifest: serde_json::Value = serde_json::from_slice(
                &fs::read(root.join("blobs/sha256").join(d)).expect("manifest"),
            )
            .expect("json");
            for l in manifest["layers"].as_array().expect("layers") {
                out.push(
                    l["digest"]
                        .as_str()
                        .expect("digest")
                        .trim_start_matches("sha256:")
                        .to_owned(),
                );
            }
        }
    }
    out
}

#[test]
fn exports_verify_and_replace_atomically() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut attacks = Attacks::new("archives");

    // Finding 5: corrupt blobs must not be exported.
    let root = busybox_store(dir, "corrupt");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("ctx");
    fs::write(ctx.join("a"), "a").expect("a");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a /a\n").expect("Dockerfile");
    let mut first = rbuild(&root);
    first
        .args(["build", "--progress", "plain", "-t", "app:1"])
        .arg(&ctx);
    support::run::success(&mut first);
    let layers = layer_blobs(&root, "app:1");
    let top = layers.last().expect("a layer").clone();
    flip(&root, &top);

    for (name, args) in [
        ("save-docker", vec!["save", "-o", "OUT", "app:1"]),
        (
            "save-oci",
            vec!["save", "--format", "oci", "-o", "OUT", "app:1"],
        ),
        (
            "build-o-oci",
            vec![
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "-o",
                "type=oci,dest=OUT",
                "CTX",
            ],
        ),
        (
            "build-o-docker",
            vec![
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "-o",
                "type=docker,dest=OUT",
                "CTX",
            ],
        ),
        (
            "build-o-oci-dir",
            vec![
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "-o",
                "type=oci,tar=false,dest=OUT",
                "CTX",
            ],
        ),
    ] {
        attacks.attempt(
            &format!("export-corrupt-blob-{name}"),
            &format!(
                "a byte of the image's top layer blob flipped in the store, then rbuild {}",
                args.join(" ")
            ),
            || {
                let out_path = dir.join(format!("{name}.out"));
                let mut cmd = rbuild(&root);
                for a in &args {
                    match *a {
                        "CTX" => cmd.arg(&ctx),
                        // OUT alone or inside -o type=...,dest=OUT.
                        other => cmd.arg(other.replace("OUT", &out_path.to_string_lossy())),
                    };
                }
                let out = run(&mut cmd)?;
                if out.status.success() {
                    return Err(format!(
                        "exit 0 with a corrupt blob; wrote {}",
                        out_path.display()
                    ));
                }
                let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
                if !all.contains("corrupt") {
                    return Err(format!("refused without saying the blob is corrupt: {all}"));
                }
                if out_path.is_file() {
                    return Err("a partial archive was left".into());
                }
                if out_path.join("index.json").exists() {
                    return Err("the layout directory looks complete".into());
                }
                if out_path.join("blobs/sha256").join(&top).exists() {
                    return Err("the corrupt blob was written under its name".into());
                }
                Ok(())
            },
        );
    }

    // Finding 14: kill -9 and ENOSPC leave the old file.
    let big_root = dir.join("big");
    let rootfs = dir.join("rootfs.tar");
    {
        let data: Vec<u8> = {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            (0..(48 << 20))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let mut tar = RawTar::new();
        tar.file("noise", &data);
        fs::write(&rootfs, tar.finish()).expect("rootfs");
    }
    let mut imp = rbuild(&big_root);
    imp.env("RBUILD_ARCHIVE_RATIO_ABOVE", "1000000000000")
        .args(["import"])
        .arg(&rootfs)
        .arg("big:1");
    support::run::success(&mut imp);

    for (name, args) in [
        (
            "save",
            vec!["save", "--format", "oci", "-o", "OUT", "big:1"],
        ),
        ("save-docker", vec!["save", "-o", "OUT", "big:1"]),
    ] {
        attacks.attempt(
            &format!("export-kill-9-{name}"),
            &format!(
                "kill -9 of rbuild {} while it writes, over an existing OUT",
                args.join(" ")
            ),
            || {
                let sub = dir.join(format!("kill-{name}"));
                fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
                let out_path = put(&sub, "out.tar", b"OLD ARCHIVE");
                let mut cmd = rbuild(&big_root);
                for a in &args {
                    if *a == "OUT" {
                        cmd.arg(&out_path);
                    } else {
                        cmd.arg(a);
                    }
                }
                let mut child = cmd
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                // Wait until the export has started writing (a new file beside OUT, or
                // OUT itself changed), then kill it.
                let mut seen = false;
                for _ in 0..20_000 {
                    let entries = fs::read_dir(&sub).map(|r| r.count()).unwrap_or(0);
                    let changed = fs::read(&out_path)
                        .map(|b| b != b"OLD ARCHIVE")
                        .unwrap_or(true);
                    if entries > 1 || changed {
                        seen = true;
                        break;
                    }
                    if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                // SAFETY: not needed; Child::kill sends SIGKILL.
                let _ = child.kill();
                let status = child.wait().map_err(|e| e.to_string())?;
                if !seen {
                    return Err(format!(
                        "never saw the export start (exit {status}); cannot judge"
                    ));
                }
                let now = fs::read(&out_path).map_err(|e| format!("OUT is gone: {e}"))?;
                println!(
                    "  ({})",
                    if status.success() {
                        "the export finished before the kill"
                    } else {
                        "killed mid-export"
                    }
                );
                if status.success() {
                    // It finished before the kill: then OUT must be the whole new archive.
                    return if now != b"OLD ARCHIVE" {
                        Ok(())
                    } else {
                        Err("exit 0 but OUT unchanged".into())
                    };
                }
                if now != b"OLD ARCHIVE" {
                    return Err(format!(
                        "killed mid-export, OUT now holds {} bytes of a partial archive",
                        now.len()
                    ));
                }
                Ok(())
            },
        );
    }

    let small = dir.join("tiny-tmpfs");
    fs::create_dir_all(&small).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "rbuild-attack-enospc"])
        .arg(&small)
        .status()
        .expect("running mount");
    assert!(
        mounted.success(),
        "mounting a 4 MiB tmpfs for the ENOSPC attempts failed"
    );
    for (name, old) in [("over-old", true), ("no-old", false)] {
        attacks.attempt(
            &format!("export-enospc-{name}"),
            &format!(
                "rbuild save -o F of a 48 MiB image onto a full 4 MiB tmpfs ({})",
                if old { "F exists" } else { "no F" }
            ),
            || {
                let out_path = small.join(format!("{name}.tar"));
                if old {
                    fs::write(&out_path, b"OLD ARCHIVE").map_err(|e| e.to_string())?;
                }
                let mut cmd = rbuild(&big_root);
                cmd.args(["save", "-o"]).arg(&out_path).arg("big:1");
                let out = run(&mut cmd)?;
                refused(&out, "")?;
                if old {
                    let now = fs::read(&out_path).map_err(|e| format!("F is gone: {e}"))?;
                    if now != b"OLD ARCHIVE" {
                        return Err(format!("F was damaged: {} bytes", now.len()));
                    }
                } else {
                    absent(&out_path)?;
                }
                let left: Vec<_> = fs::read_dir(&small)
                    .map_err(|e| e.to_string())?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                let expected = usize::from(old)
                    + usize::from(name == "no-old" && small.join("over-old.tar").exists());
                if left.len() > expected {
                    return Err(format!("temporary files left behind: {left:?}"));
                }
                Ok(())
            },
        );
    }
    attacks.attempt(
        "export-enospc-type-tar",
        "rbuild build -o type=tar,dest=F of a 48 MiB image onto a full 4 MiB tmpfs, F existing",
        || {
            let c2 = dir.join("ctx-big");
            fs::create_dir_all(&c2).map_err(|e| e.to_string())?;
            fs::write(c2.join("Dockerfile"), "FROM big:1\n").map_err(|e| e.to_string())?;
            let out_path = small.join("rootfs.tar");
            fs::write(&out_path, b"OLD ARCHIVE").map_err(|e| e.to_string())?;
            let mut cmd = rbuild(&big_root);
            cmd.env("RBUILD_ARCHIVE_RATIO_ABOVE", "1000000000000")
                .args(["build", "--progress", "plain", "-o"])
                .arg(format!("type=tar,dest={}", out_path.display()))
                .arg(&c2);
            let out = run(&mut cmd)?;
            if out.status.success() {
                return Err("exit 0 on a full disk".into());
            }
            let now = fs::read(&out_path).map_err(|e| format!("F is gone: {e}"))?;
            if now != b"OLD ARCHIVE" {
                return Err(format!("F was damaged: {} bytes", now.len()));
            }
            Ok(())
        },
    );
    let _ = Command::new("umount").arg(&small).status();

    attacks.finish();
}

/// A 4 MiB file with data only at its start and end (a hole between).
fn make_sparse(path: &Path) {
    use std::os::unix::fs::FileExt as _;
    let f = fs::File::create(path).expect("creating a sparse file");
    f.set_len(4 << 20).expect("truncate");
    f.write_all_at(b"head", 0).expect("head");
    f.write_all_at(b"tail", (4 << 20) - 4).expect("tail");
    let blocks = f.metadata().expect("stat").blocks();
    assert!(
        blocks < 64,
        "the file system here does not keep holes: sparse attempts cannot run"
    );
}

#[test]
fn sparse_entries_are_refused_everywhere() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut attacks = Attacks::new("archives");
    // A sparse file: 4 MiB with data at the start and the end.
    let src = dir.join("src");
    fs::create_dir_all(&src).expect("src");
    let sparse = src.join("sparse.bin");
    make_sparse(&sparse);
    let mut tars = Vec::new();
    for format in ["gnu", "pax"] {
        let tar = dir.join(format!("sparse-{format}.tar"));
        let ok = Command::new("tar")
            .args(["--sparse", &format!("--format={format}"), "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .arg("sparse.bin")
            .status()
            .expect("GNU tar is needed for the sparse attempts");
        assert!(ok.success(), "GNU tar --sparse --format={format} failed");
        tars.push((format, tar));
    }
    let root = busybox_store(dir, "store");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("ctx");
    for (format, tar) in &tars {
        attacks.attempt(
            &format!("import-sparse-{format}"),
            &format!(
                "rbuild import of a {format}-format sparse tar (tar --sparse --format={format})"
            ),
            || {
                refused(
                    &run(rbuild(&root)
                        .arg("import")
                        .arg(tar)
                        .arg(format!("sparse-{format}:1")))?,
                    "sparse file",
                )
            },
        );
        attacks.attempt(
            &format!("add-sparse-{format}"),
            &format!("ADD of a {format}-format sparse tar in a build"),
            || {
                fs::copy(tar, ctx.join("s.tar")).map_err(|e| e.to_string())?;
                fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD s.tar /x/\n")
                    .map_err(|e| e.to_string())?;
                let out = run(rbuild(&root)
                    .args(["build", "--progress", "plain"])
                    .arg(&ctx))?;
                let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
                if out.status.success() || !all.contains("sparse file") {
                    return Err(format!("not refused as sparse: {all}"));
                }
                Ok(())
            },
        );
        attacks.attempt(
            &format!("context-stdin-sparse-{format}"),
            &format!(
                "a build context on stdin that is a {format}-format sparse tar (with a Dockerfile)"
            ),
            || {
                let c = dir.join(format!("cstdin-{format}"));
                fs::create_dir_all(&c).map_err(|e| e.to_string())?;
                fs::write(c.join("Dockerfile"), "FROM busybox\nCOPY sparse.bin /\n")
                    .map_err(|e| e.to_string())?;
                make_sparse(&c.join("sparse.bin"));
                let ctar = dir.join(format!("ctx-{format}.tar"));
                let ok = Command::new("tar")
                    .args(["--sparse", &format!("--format={format}"), "-cf"])
                    .arg(&ctar)
                    .arg("-C")
                    .arg(&c)
                    .args(["Dockerfile", "sparse.bin"])
                    .status()
                    .map_err(|e| e.to_string())?;
                if !ok.success() {
                    return Err("tar failed".into());
                }
                let out = run(rbuild(&root)
                    .args(["build", "--progress", "plain", "-"])
                    .stdin(fs::File::open(&ctar).map_err(|e| e.to_string())?))?;
                let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
                if out.status.success() || !all.contains("sparse file") {
                    return Err(format!("not refused as sparse: {all}"));
                }
                Ok(())
            },
        );
    }
    attacks.attempt(
        "load-sparse-layer",
        "rbuild load of an OCI archive whose layer is a GNU sparse tar, then a build FROM it",
        || {
            let layer = fs::read(&tars[0].1).map_err(|e| e.to_string())?;
            let archive = put(
                dir,
                "sparse-oci.tar",
                &oci_archive(&layer, "example.com/sparse:1"),
            );
            let loaded = run(rbuild(&root).arg("load").arg("-i").arg(&archive))?;
            succeeded(&loaded)?;
            fs::write(
                ctx.join("Dockerfile"),
                "FROM example.com/sparse:1\nCOPY Dockerfile /d\n",
            )
            .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            if out.status.success() || !all.contains("sparse file") {
                return Err(format!("not refused as sparse: {all}"));
            }
            Ok(())
        },
    );
    attacks.finish();
}

#[test]
fn import_refuses_hostile_entries() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_user(
        ROOTLESS,
        "create it as scripts/test does (useradd and /etc/subuid ranges)",
    );
    let tmp = shared_tempdir();
    let dir = tmp.path();
    let mut attacks = Attacks::new("archives");
    let canary = dir.join("import-canary");
    let import =
        |root: &Path, tar: &[u8], file: &str, user: Option<&str>| -> Result<Output, String> {
            let path = put(dir, file, tar);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
            let mut cmd = rbuild(root);
            cmd.arg("import").arg(&path).arg("hostile:1");
            match user {
                Some(u) => run(&mut as_user(u, &cmd)),
                None => run(&mut cmd),
            }
        };
    let canary_rel = format!("../../../../../../../..{}", canary.display());
    for user in [None, Some(ROOTLESS)] {
        let who = user.unwrap_or("root");
        let root = dir.join(format!("store-{who}"));
        let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
            (
                "dotdot",
                "an entry ../../<canary>",
                RawTar::new()
                    .entry(canary_rel.as_bytes(), FILE, b"", 0o644, b"x")
                    .finish(),
                "'..'",
            ),
            (
                "absolute",
                "an entry with the canary's absolute path",
                RawTar::new()
                    .entry(canary.to_string_lossy().as_bytes(), FILE, b"", 0o644, b"x")
                    .finish(),
                "absolute",
            ),
            (
                "symlink-then-write",
                "a symlink esc -> <tmp dir> then a file esc/import-canary",
                {
                    let mut t = RawTar::new();
                    t.entry(
                        b"esc",
                        SYMLINK,
                        dir.to_string_lossy().as_bytes(),
                        0o777,
                        b"",
                    );
                    t.entry(b"esc/import-canary", FILE, b"", 0o644, b"x");
                    t.finish()
                },
                "symlink",
            ),
            (
                "hardlink-outside",
                "a hardlink to ../../etc/passwd",
                RawTar::new()
                    .entry(b"pw", HARDLINK, b"../../../../etc/passwd", 0o644, b"")
                    .finish(),
                "",
            ),
            (
                "hardlink-later-entry",
                "a hardlink to an entry that comes later",
                {
                    let mut t = RawTar::new();
                    t.entry(b"early", HARDLINK, b"late", 0o644, b"");
                    t.file("late", b"x");
                    t.finish()
                },
                "",
            ),
            (
                "hardlink-self",
                "a hardlink to itself",
                RawTar::new()
                    .entry(b"self", HARDLINK, b"self", 0o644, b"")
                    .finish(),
                "",
            ),
            (
                "whiteout-dotdot",
                "a whiteout .wh... (hides '..')",
                RawTar::new()
                    .entry(b"a/.wh..", FILE, b"", 0o644, b"")
                    .finish(),
                "",
            ),
            (
                "pax-path-dotdot",
                "a PAX path record ../../<canary> over a harmless header name",
                {
                    let mut t = RawTar::new();
                    t.pax(&[("path", canary_rel.as_bytes())]);
                    t.file("harmless", b"x");
                    t.finish()
                },
                "'..'",
            ),
            (
                "pax-linkpath-dotdot",
                "a PAX linkpath record ../../etc/shadow on a hardlink",
                {
                    let mut t = RawTar::new();
                    t.pax(&[("linkpath", b"../../../../etc/shadow")]);
                    t.entry(b"sh", HARDLINK, b"harmless", 0o644, b"");
                    t.finish()
                },
                "",
            ),
        ];
        for (name, what, tar, needle) in cases {
            let root = root.clone();
            attacks.attempt(
                &format!("import-{name}-{who}"),
                &format!("as {who}: rbuild import of a rootfs tar with {what}"),
                || {
                    let out = import(&root, &tar, &format!("{name}-{who}.tar"), user)?;
                    absent(&canary)?;
                    if !needle.is_empty() {
                        refused(&out, needle)?;
                    } else if out.status.code() == Some(101) || stderr(&out).contains("panicked") {
                        return Err(format!("panicked: {}", stderr(&out)));
                    }
                    if fs::symlink_metadata("/etc/passwd")
                        .map(|m| m.nlink())
                        .unwrap_or(1)
                        > 1
                    {
                        return Err("/etc/passwd gained a hardlink".into());
                    }
                    Ok(())
                },
            );
        }

        attacks.attempt(
            &format!("import-opaque-whiteout-at-root-{who}"),
            &format!(
                "as {who}: rbuild import of a tar whose first entry is .wh..wh..opq at its root"
            ),
            || {
                let mut t = RawTar::new();
                t.file(".wh..wh..opq", b"");
                t.file("kept", b"x");
                let out = import(&root, &t.finish(), &format!("opq-{who}.tar"), user)?;
                if out.status.code() == Some(101) {
                    return Err("panicked".into());
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("import-setuid-device-{who}"),
            &format!("as {who}: rbuild import of a tar with a setuid-root file and a char device 1:1 (/dev/mem)"),
            || {
                let mut t = RawTar::new();
                t.entry(b"suid", FILE, b"", 0o4755, b"#!/bin/sh\n");
                t.entry_dev(b"mem", CHAR, b"", 0o666, b"", 1, 1);
                let out = import(&root, &t.finish(), &format!("suid-{who}.tar"), user)?;
                if out.status.code() == Some(101) {
                    return Err("panicked".into());
                }
                if user.is_some() {
                    // Nothing in the user's store may be a device or a root-owned setuid file.
                    for entry in walk(&root) {
                        let m = fs::symlink_metadata(&entry).map_err(|e| e.to_string())?;
                        let ft = m.mode() & 0o170000;
                        if ft == 0o020000 && m.rdev() != 0 {
                            return Err(format!("a device node was made: {}", entry.display()));
                        }
                        if m.uid() == 0 && m.mode() & 0o4000 != 0 {
                            return Err(format!("a root-owned setuid file: {}", entry.display()));
                        }
                    }
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("import-long-names-{who}"),
            &format!("as {who}: rbuild import of a tar with a 5000-byte PAX path and a 300-byte component"),
            || {
                let mut t = RawTar::new();
                let long = format!("{}x", "d/".repeat(2500));
                t.pax(&[("path", long.as_bytes())]);
                t.file("short", b"x");
                t.pax(&[("path", "c".repeat(300).as_bytes())]);
                t.file("short2", b"x");
                let out = import(&root, &t.finish(), &format!("long-{who}.tar"), user)?;
                if out.status.code() == Some(101) || stderr(&out).contains("panicked") {
                    return Err(format!("panicked: {}", stderr(&out)));
                }
                Ok(())
            },
        );
    }
    attacks.finish();
}

/// Every path under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&p) {
            for e in rd.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path.clone());
                }
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn errors_escape_control_bytes() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let root = busybox_store(dir, "store");
    let mut attacks = Attacks::new("archives");
    let evil = "\x1b]0;pwned\x07\x1b[2J\rX";

    attacks.attempt(
        "escape-entry-name",
        "rbuild import of a tar whose entry name ../<ESC ] 0;pwned BEL ESC[2J CR>X holds terminal escapes",
        || {
            let mut t = RawTar::new();
            t.entry(format!("../{evil}").as_bytes(), FILE, b"", 0o644, b"x");
            let path = put(dir, "esc.tar", &t.finish());
            let out = run(rbuild(&root).arg("import").arg(&path).arg("esc:1"))?;
            refused(&out, "'..'")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-file-name",
        "rbuild load -i of a missing file whose name holds ESC, BEL and CR",
        || {
            let out = run(rbuild(&root)
                .arg("load")
                .arg("-i")
                .arg(dir.join(format!("missing{evil}.tar"))))?;
            refused(&out, "")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-image-name",
        "rbuild save of an image name holding ESC, BEL and CR",
        || {
            let out = run(rbuild(&root)
                .arg("save")
                .arg("-o")
                .arg(dir.join("x.tar"))
                .arg(format!("busybox{evil}")))?;
            refused(&out, "")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-manifest-fields",
        "rbuild load of a docker archive whose RepoTags and Config hold ESC, BEL and CR",
        || {
            let manifest = serde_json::to_vec(&serde_json::json!([{"Config": format!("{evil}/../../c"), "RepoTags": [format!("x{evil}:1")], "Layers": []}]))
                .map_err(|e| e.to_string())?;
            let mut t = RawTar::new();
            t.file("manifest.json", &manifest);
            let out = run(rbuild(&root).arg("load").arg("-i").arg(put(dir, "m.tar", &t.finish())))?;
            refused(&out, "")?;
            no_raw_controls(&out)?;
            let manifest = serde_json::to_vec(&serde_json::json!([{"Config": "c.json", "RepoTags": [format!("x{evil}:1")], "Layers": []}]))
                .map_err(|e| e.to_string())?;
            let mut t = RawTar::new();
            t.file("manifest.json", &manifest).file("c.json", &config_json(&[]));
            let out = run(rbuild(&root).arg("load").arg("-i").arg(put(dir, "m2.tar", &t.finish())))?;
            refused(&out, "")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-add-entry-in-build",
        "a build whose ADD extracts a tar with an entry ../<escapes>, progress plain",
        || {
            let ctx = dir.join("ctx");
            fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
            let mut t = RawTar::new();
            t.entry(
                format!("../../../../{evil}").as_bytes(),
                FILE,
                b"",
                0o644,
                b"x",
            );
            fs::write(ctx.join("e.tar"), t.finish()).map_err(|e| e.to_string())?;
            fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD e.tar /x/\n")
                .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            if out.status.success() {
                return Err("the build accepted the entry".into());
            }
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-step-name-in-progress",
        "a Dockerfile whose RUN line holds ESC ] 0;pwned BEL ESC[2J: the step name in plain progress and the summary",
        || {
            let ctx = dir.join("ctx-step-name");
            fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
            fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN echo '{evil}' > /dev/null\n"))
                .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            succeeded(&out)?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-dockerfile-caret-kept",
        "a Dockerfile error still prints its line and caret on separate lines",
        || {
            let ctx = dir.join("ctx2");
            fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
            fs::write(ctx.join("Dockerfile"), "FROM busybox\nNOPE x\n")
                .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            let err = stderr(&out);
            if out.status.success() || !err.contains('\n') || !err.contains('^') {
                return Err(format!("no multi-line caret error: {err}"));
            }
            Ok(())
        },
    );
    attacks.finish();
}

#[test]
fn skopeo_bare_tag_archive_is_not_lost() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let root = busybox_store(dir, "store");
    let skopeo = Command::new("skopeo").arg("--version").output();
    assert!(
        skopeo.is_ok_and(|o| o.status.success()),
        "skopeo is missing: scripts/setup-host installs it"
    );
    let mut attacks = Attacks::new("archives");
    // An OCI layout directory written by rbuild, copied by real skopeo.
    let layout = dir.join("layout");
    support::run::success(
        rbuild(&root)
            .args(["save", "--format", "oci", "-o"])
            .arg(dir.join("bb.tar"))
            .arg("busybox:latest"),
    );
    fs::create_dir_all(&layout).expect("layout dir");
    support::run::success(
        Command::new("tar")
            .arg("-xf")
            .arg(dir.join("bb.tar"))
            .arg("-C")
            .arg(&layout),
    );
    let skopeo_copy = |dest: &str| {
        support::run::success(Command::new("skopeo").args([
            "copy",
            &format!("oci:{}:latest", layout.display()),
            dest,
        ]));
    };

    attacks.attempt(
        "load-skopeo-bare-tag",
        "skopeo copy oci:LAYOUT:latest oci-archive:F:v1 (index names the image only by ref.name v1), then rbuild load -i F",
        || {
            let f = dir.join("bare.tar");
            skopeo_copy(&format!("oci-archive:{}:v1", f.display()));
            let before = fs::read(root.join("index.json")).map_err(|e| e.to_string())?;
            let out = run(rbuild(&root).arg("load").arg("-i").arg(&f))?;
            if out.status.success() {
                let after = fs::read(root.join("index.json")).map_err(|e| e.to_string())?;
                if after == before {
                    return Err(format!(
                        "exit 0 ({}) but nothing reachable was stored",
                        String::from_utf8_lossy(&out.stdout).trim()
                    ));
                }
                return Ok(());
            }
            refused(&out, "no full name")
        },
    );
    attacks.attempt(
        "load-skopeo-full-name",
        "skopeo copy ... oci-archive:F:example.com/app:v1, then rbuild load -i F and rbuild images",
        || {
            let f = dir.join("full.tar");
            skopeo_copy(&format!("oci-archive:{}:example.com/app:v1", f.display()));
            succeeded(&run(rbuild(&root).arg("load").arg("-i").arg(&f))?)?;
            let images = run(rbuild(&root).arg("images"))?;
            if !String::from_utf8_lossy(&images.stdout).contains("example.com/app") {
                return Err("the loaded image is not listed".into());
            }
            Ok(())
        },
    );
    attacks.finish();
}
