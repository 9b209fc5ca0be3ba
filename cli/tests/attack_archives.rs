//! Attacks on rbuild's archive handling (issue 13), through the CLI, as root and (where a
//! user can run it) as the unprivileged `rbuild-rootless`: `rbuild load` of hostile
//! docker and OCI archives, and skopeo's bare-tag archives. Layers, bases and `import`
//! are in `attack_archive_layers.rs`, exports and control bytes in
//! `attack_archive_exports.rs`.
//!
//! `RBUILD_ATTACK_BIN=/path/to/rbuild` runs the attacks against another build of rbuild
//! (the one before a fix, to see them break it). The helpers are
//! `support/attack_archives.rs`'s, shared with the other `attack_archive*.rs` suites.

mod support;

use std::fs;
use std::process::Command;

use support::attack::{Attacks, absent, as_user, refused, run, succeeded};
use support::attack_archives::*;
use support::require::{require_root, require_user};

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

        // An index naming an index naming an image (legal OCI): prune must keep the inner
        // index (it deleted it, and every later images/prune/save of the store failed).
        attacks.attempt(
            &format!("load-nested-index-then-prune-{who}"),
            &format!("as {who}: rbuild load of an archive whose named index's one entry is an index, then rbuild prune, store verify and images"),
            || {
                let [(layer, lhex), (config, chex), (manifest, mhex)] = one_layer_image();
                let inner = index_json(&[(descriptor(MANIFEST, &mhex, manifest.len() as u64), None)]);
                let ihex = sha256(&inner);
                let index = index_json(&[(descriptor(INDEX, &ihex, inner.len() as u64), Some("example.com/nested:1"))]);
                let mut tar = RawTar::new();
                tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .file("index.json", &index)
                    .file(&format!("blobs/sha256/{ihex}"), &inner)
                    .file(&format!("blobs/sha256/{mhex}"), &manifest)
                    .file(&format!("blobs/sha256/{chex}"), &config)
                    .file(&format!("blobs/sha256/{lhex}"), &layer);
                let archive = put(dir, &format!("nested-{who}.tar"), &tar.finish());
                let root = dir.join(format!("store-nested-{who}"));
                succeeded(&load(&root, &archive, user)?)?;
                for args in [&["prune"][..], &["store", "verify"], &["images"]] {
                    let mut cmd = rbuild(&root);
                    cmd.args(args);
                    let out = run_as(&mut cmd, user)?;
                    succeeded(&out).map_err(|e| format!("rbuild {args:?}: {e}"))?;
                }
                if !store_has(&root, &ihex) {
                    return Err("prune removed the inner index".into());
                }
                Ok(())
            },
        );

        // An index entry declared a layer whose blob is a manifest naming a layer the
        // archive lacks: load checks a layer's bytes only, so no image may be read from
        // it later (one was named, its layer missing).
        attacks.attempt(
            &format!("load-index-entry-declared-a-layer-{who}"),
            &format!("as {who}: rbuild load of an archive whose named index's entry says layer but is a manifest naming a missing layer"),
            || {
                let config = config_json(&["cd".repeat(32)]);
                let chex = sha256(&config);
                let manifest = manifest_json((&chex, config.len() as u64), &[(&"cd".repeat(32), 10)]);
                let mhex = sha256(&manifest);
                let index = index_json(&[(descriptor(LAYER, &mhex, manifest.len() as u64), None)]);
                let ihex = sha256(&index);
                let top = index_json(&[(descriptor(INDEX, &ihex, index.len() as u64), Some("example.com/hidden:1"))]);
                let mut tar = RawTar::new();
                tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .file("index.json", &top)
                    .file(&format!("blobs/sha256/{ihex}"), &index)
                    .file(&format!("blobs/sha256/{mhex}"), &manifest)
                    .file(&format!("blobs/sha256/{chex}"), &config);
                let archive = put(dir, &format!("hidden-{who}.tar"), &tar.finish());
                let root = dir.join(format!("store-hidden-{who}"));
                refused(&load(&root, &archive, user)?, "an index of no image")?;
                let mut cmd = rbuild(&root);
                cmd.args(["store", "verify"]);
                let out = run_as(&mut cmd, user)?;
                succeeded(&out)
            },
        );

        // 4 levels of 64 entries, every entry the same inner index: a walk that does not
        // read each document once visits 64^4 images (a 72 KB archive loaded for hours).
        attacks.attempt(
            &format!("load-index-dag-{who}"),
            &format!("as {who}: rbuild load and images of an archive whose index repeats one inner index 64 times at each of 4 levels"),
            || {
                let [(layer, lhex), (config, chex), (manifest, mhex)] = one_layer_image();
                let mut tar = RawTar::new();
                tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                    .file(&format!("blobs/sha256/{mhex}"), &manifest)
                    .file(&format!("blobs/sha256/{chex}"), &config)
                    .file(&format!("blobs/sha256/{lhex}"), &layer);
                let mut below = (descriptor(MANIFEST, &mhex, manifest.len() as u64), mhex.clone());
                for _ in 0..4 {
                    let entries: Vec<_> = (0..64).map(|_| (below.0.clone(), None)).collect();
                    let level = index_json(&entries);
                    let hex = sha256(&level);
                    tar.file(&format!("blobs/sha256/{hex}"), &level);
                    below = (descriptor(INDEX, &hex, level.len() as u64), hex);
                }
                tar.file("index.json", &index_json(&[(below.0, Some("example.com/dag:1"))]));
                let archive = put(dir, &format!("dag-{who}.tar"), &tar.finish());
                let root = dir.join(format!("store-dag-{who}"));
                succeeded(&load(&root, &archive, user)?)?;
                let mut cmd = rbuild(&root);
                cmd.args(["images", "--format", "{{.Platforms}}"]);
                let out = run_as(&mut cmd, user)?;
                succeeded(&out)?;
                let listed = String::from_utf8_lossy(&out.stdout);
                if listed.trim() != "linux/amd64" {
                    return Err(format!("images lists {listed:?}, not the one image"));
                }
                Ok(())
            },
        );

        // An index of no image, named: alone (an OCI layout) and beside a manifest.json
        // (a docker archive holding an index is loaded as its layout).
        for docker in [false, true] {
            let kind = if docker { "docker" } else { "oci" };
            attacks.attempt(
                &format!("load-{kind}-empty-index-{who}"),
                &format!("as {who}: rbuild load of an archive ({kind}) whose index.json names an index of no manifest"),
                || {
                    let empty = index_json(&[]);
                    let edig = sha256(&empty);
                    let index = index_json(&[(
                        descriptor(INDEX, &edig, empty.len() as u64),
                        Some("evil:empty"),
                    )]);
                    let mut tar = RawTar::new();
                    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
                        .file("index.json", &index)
                        .file(&format!("blobs/sha256/{edig}"), &empty);
                    if docker {
                        tar.file("manifest.json", b"[]");
                    }
                    let archive = put(dir, &format!("empty-index-{kind}-{who}.tar"), &tar.finish());
                    let out = load(&root, &archive, user)?;
                    refused(&out, "an index of no image")
                },
            );
        }

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
                let out = run_as(&mut save, user)?;
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

/// `cmd` run as `user` when given, else as this (root) process.
fn run_as(cmd: &mut Command, user: Option<&str>) -> Result<std::process::Output, String> {
    match user {
        Some(u) => run(&mut as_user(u, cmd)),
        None => run(cmd),
    }
}

/// The blobs of an image of one layer (a file `hello`): the layer, its config and its
/// manifest, each with its hex digest.
fn one_layer_image() -> [(Vec<u8>, String); 3] {
    let layer = RawTar::new().file("hello", b"hello\n").finish();
    let lhex = sha256(&layer);
    let config = config_json(std::slice::from_ref(&lhex));
    let chex = sha256(&config);
    let manifest = manifest_json((&chex, config.len() as u64), &[(&lhex, layer.len() as u64)]);
    let mhex = sha256(&manifest);
    [(layer, lhex), (config, chex), (manifest, mhex)]
}
