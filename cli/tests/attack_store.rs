//! Attacks on the store (issue 13, findings 3, 4, 11): other accounts reading or running
//! what the store holds, a store another account can write making root delete host
//! files, and a pull whose descriptors lie about blobs the store has. Each attempt goes
//! through the `rbuild` binary, as root and, where it applies, as `nobody` or the
//! unprivileged `rbuild-rootless`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::registry::Registry;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::attack::{Attacks, absent, as_user, refused, run, succeeded};
use support::attack_store::*;
use support::require::{require_tool, require_user};

const ROOTLESS: &str = "rbuild-rootless";

/// Every file under `dir` (not following links) whose mode has any of `bits`.
fn files_with_mode(dir: &Path, bits: u32) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| e.metadata().is_ok_and(|m| m.mode() & bits != 0))
        .map(|e| e.into_path())
        .collect()
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    files_with_mode(dir, 0o7777)
}

/// Runs `script` as `user`; holds when it fails (the account could not do it) and its
/// output does not contain `leak`.
fn denied_to(user: &str, script: &str, leak: &str) -> Result<(), String> {
    let out = run(&mut as_user(user, &sh(script)))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() || (!leak.is_empty() && stdout.contains(leak)) {
        return Err(format!("{user} could: {script}: {}", text(&out)));
    }
    Ok(())
}

#[test]
fn other_accounts_cannot_use_what_the_store_holds() {
    require_user(
        "nobody",
        "scripts/test creates rbuild-rootless (useradd --system), nobody is standard",
    );
    require_user(
        ROOTLESS,
        "scripts/test creates rbuild-rootless (useradd --system), nobody is standard",
    );
    let s = Setup::new();
    std::fs::write(s.ctx.join("secret.txt"), "context-secret").unwrap();
    // A setuid-root busybox in a layer that a later step unpacks as a lower dir, a cache
    // mount with a secret, and a COPY that records a context hash.
    s.build(
        "suid:latest",
        "FROM busybox\nRUN cp /bin/busybox /bin/busybox-suid && chmod 4755 /bin/busybox-suid\n\
         RUN --mount=type=cache,target=/c echo cache-secret > /c/s\nCOPY secret.txt /s\nRUN true\n",
    )
    .expect("the setup build");
    let mut a = Attacks::new("store");

    a.attempt(
        "setuid-busybox-from-layers-as-nobody",
        "as nobody, run the image's setuid-root busybox from <root>/layers/<chain_id>/bin/busybox-suid (busybox runs argv[1] when its name starts with busybox)",
        || {
            let suid = files_with_mode(&s.root.join("layers"), 0o4000);
            let Some(bin) = suid.iter().find(|p| p.ends_with("bin/busybox-suid")) else {
                return Err(format!("setup: no setuid bin/busybox-suid unpacked: {suid:?}"));
            };
            denied_to("nobody", &format!("{} id -u", bin.display()), "0")
        },
    );
    a.attempt(
        "setuid-busybox-as-rootless-user",
        "as rbuild-rootless, run the same setuid busybox (by its full path)",
        || {
            let suid = files_with_mode(&s.root.join("layers"), 0o4000);
            let bin = suid
                .iter()
                .find(|p| p.ends_with("bin/busybox-suid"))
                .ok_or("setup: no setuid file unpacked")?;
            denied_to(ROOTLESS, &format!("{} id -u", bin.display()), "0")
        },
    );
    a.attempt(
        "read-cache-mount-as-nobody",
        "as nobody, read the file a RUN --mount=type=cache step wrote under <root>/cache-mounts",
        || {
            let files = all_files(&s.root.join("cache-mounts"));
            let f = files.first().ok_or("setup: no cache mount file")?;
            denied_to("nobody", &format!("cat {}", f.display()), "cache-secret")
        },
    );
    a.attempt(
        "read-context-hashes-as-nobody",
        "as nobody, list and read <root>/contexthash (which files a context has, their digests)",
        || {
            let files = all_files(&s.root.join("contexthash"));
            if files.is_empty() {
                return Err("setup: no context hash file".into());
            }
            denied_to(
                "nobody",
                &format!("ls {}/contexthash", s.root.display()),
                "",
            )?;
            denied_to("nobody", &format!("cat {}", files[0].display()), "")
        },
    );
    a.attempt(
        "read-blobs-and-index-as-nobody",
        "as nobody, read index.json and list blobs/sha256",
        || {
            denied_to(
                "nobody",
                &format!("cat {}/index.json", s.root.display()),
                "",
            )?;
            denied_to(
                "nobody",
                &format!("ls {}/blobs/sha256", s.root.display()),
                "",
            )
        },
    );
    a.attempt(
        "modes-of-a-new-store",
        "check that a new store's root and data directories are 0700",
        || {
            for d in [
                "",
                "blobs",
                "blobs/sha256",
                "tmp",
                "layers",
                "cache",
                "cache-mounts",
                "contexthash",
            ] {
                let m = mode(&s.root.join(d));
                if m & 0o077 != 0 {
                    return Err(format!("{d:?} has mode {m:o}"));
                }
            }
            Ok(())
        },
    );
    a.attempt(
        "loose-existing-store-is-tightened",
        "chmod 0755 the root, layers/ and cache-mounts/ (a store made before the fix), then run `rbuild images`",
        || {
            for d in ["", "layers", "cache-mounts"] {
                std::fs::set_permissions(s.root.join(d), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            succeeded(&s.run(&["images"]))?;
            for d in ["", "layers", "cache-mounts"] {
                let m = mode(&s.root.join(d));
                if m != 0o700 {
                    return Err(format!("{d:?} left at mode {m:o}"));
                }
            }
            Ok(())
        },
    );
    a.attempt(
        "rootless-user-opens-roots-store",
        "as rbuild-rootless, run `rbuild images` and `rbuild prune` on root's store",
        || {
            let mut cmd = support::run::rbuild(&s.root);
            cmd.arg("prune");
            let out = run(&mut as_user(ROOTLESS, &cmd))?;
            refused(&out, "store")?;
            verifies(&s.root)
        },
    );
    a.attempt(
        "rootless-user-gets-a-private-store",
        "as rbuild-rootless, create a store of its own in a directory it owns: it must be 0700",
        || {
            let home = s.dir.path().join("home");
            std::fs::create_dir_all(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(uid_of(ROOTLESS)), None).unwrap();
            let root = home.join("store");
            let mut cmd = support::run::rbuild(&root);
            cmd.arg("images");
            succeeded(&run(&mut as_user(ROOTLESS, &cmd))?)?;
            let m = mode(&root);
            if m != 0o700 {
                return Err(format!("the rootless store has mode {m:o}"));
            }
            Ok(())
        },
    );
    a.finish();
}

/// A fresh store (busybox imported) in its own temp dir, for attacks that damage it.
fn fresh() -> Setup {
    Setup::new()
}

#[test]
fn a_store_another_account_can_write_cannot_make_root_delete_host_files() {
    require_user(
        "nobody",
        "scripts/test creates rbuild-rootless (useradd --system), nobody is standard",
    );
    let mut a = Attacks::new("store");

    a.attempt(
        "tmp-symlink-to-host-dir",
        "replace <root>/tmp with a symlink to a host directory, then run `rbuild images` (which reclaims dead builds' scratch)",
        || {
            let s = fresh();
            let v = s.victim("victim");
            std::fs::remove_dir_all(s.root.join("tmp")).unwrap();
            symlink(&v, s.root.join("tmp")).unwrap();
            let out = s.run(&["images"]);
            intact(&v)?;
            refused(&out, "symbolic link")
        },
    );
    a.attempt(
        "layers-symlink-prune",
        "replace <root>/layers with a symlink to a host directory, then `rbuild prune --all`",
        || {
            let s = fresh();
            let v = s.victim("victim");
            std::fs::remove_dir_all(s.root.join("layers")).unwrap();
            symlink(&v, s.root.join("layers")).unwrap();
            let out = s.run(&["prune", "--all"]);
            intact(&v)?;
            refused(&out, "symbolic link")
        },
    );
    a.attempt(
        "deep-symlink-in-scratch",
        "plant <root>/tmp/build-x/sub -> host dir (and tmp/evil -> host dir), then `rbuild images` reclaims tmp",
        || {
            let s = fresh();
            let v = s.victim("victim");
            std::fs::create_dir_all(s.root.join("tmp/build-x")).unwrap();
            symlink(&v, s.root.join("tmp/build-x/sub")).unwrap();
            symlink(&v, s.root.join("tmp/evil")).unwrap();
            succeeded(&s.run(&["images"]))?;
            intact(&v)?;
            absent(&s.root.join("tmp/evil"))?;
            absent(&s.root.join("tmp/build-x"))
        },
    );
    a.attempt(
        "unpack-scratch-symlink",
        "plant <root>/layers/.unpack-x -> host dir (a scratch name reclaim removes)",
        || {
            let s = fresh();
            let v = s.victim("victim");
            symlink(&v, s.root.join("layers/.unpack-x")).unwrap();
            succeeded(&s.run(&["images"]))?;
            intact(&v)?;
            absent(&s.root.join("layers/.unpack-x"))
        },
    );
    a.attempt(
        "layer-entry-symlink-prune-all",
        "plant <root>/layers/<name> -> host dir and a layer dir holding a symlink to it, then `rbuild prune --all`",
        || {
            let s = fresh();
            let v = s.victim("victim");
            symlink(&v, s.root.join("layers/planted")).unwrap();
            std::fs::create_dir_all(s.root.join("layers/deadbeef/x")).unwrap();
            symlink(&v, s.root.join("layers/deadbeef/x/link")).unwrap();
            succeeded(&s.run(&["prune", "--all"]))?;
            intact(&v)?;
            absent(&s.root.join("layers/planted"))
        },
    );
    a.attempt(
        "cache-dir-symlink-prune",
        "replace <root>/cache with a symlink to a host directory, then `rbuild prune` (which drops the build cache whole)",
        || {
            let s = fresh();
            let v = s.victim("victim");
            std::fs::remove_dir_all(s.root.join("cache")).unwrap();
            symlink(&v, s.root.join("cache")).unwrap();
            let out = s.run(&["prune"]);
            intact(&v)?;
            refused(&out, "symbolic link")
        },
    );
    a.attempt(
        "cache-mount-entry-symlink",
        "plant <root>/cache-mounts/x -> host dir, then `rbuild prune --cache-mounts`",
        || {
            let s = fresh();
            let v = s.victim("victim");
            std::fs::create_dir_all(s.root.join("cache-mounts")).unwrap();
            symlink(&v, s.root.join("cache-mounts/x")).unwrap();
            succeeded(&s.run(&["prune", "--cache-mounts"]))?;
            intact(&v)?;
            absent(&s.root.join("cache-mounts/x"))
        },
    );
    a.attempt(
        "blobs-symlink",
        "replace <root>/blobs/sha256 with a symlink to a host directory, then `rbuild prune`",
        || {
            let s = fresh();
            let v = s.victim("victim");
            std::fs::rename(s.root.join("blobs/sha256"), s.dir.path().join("moved")).unwrap();
            symlink(&v, s.root.join("blobs/sha256")).unwrap();
            let out = s.run(&["prune"]);
            intact(&v)?;
            refused(&out, "symbolic link")
        },
    );
    a.attempt(
        "store-owned-by-nobody",
        "chown the store to nobody (as if nobody had made it), then run `rbuild images` as root",
        || {
            let s = fresh();
            let out = Command::new("chown")
                .args(["-R", "nobody", &s.root.to_string_lossy()])
                .output()
                .unwrap();
            succeeded(&out)?;
            refused(&s.run(&["images"]), "belongs to uid")
        },
    );
    a.attempt(
        "layers-owned-by-nobody",
        "chown only <root>/layers to nobody, then `rbuild prune --all` as root",
        || {
            let s = fresh();
            std::os::unix::fs::chown(s.root.join("layers"), Some(uid_of("nobody")), None).unwrap();
            refused(&s.run(&["prune", "--all"]), "belongs to uid")
        },
    );
    a.attempt(
        "root-symlink-owned-by-nobody",
        "a symlink owned by nobody as the store root, pointing at a root-owned host directory",
        || {
            let s = fresh();
            let v = s.victim("victim");
            let link = s.dir.path().join("link");
            symlink(&v, &link).unwrap();
            let out = Command::new("chown")
                .args(["-h", "nobody", &link.to_string_lossy()])
                .output()
                .unwrap();
            succeeded(&out)?;
            refused(&run_on(&link, &["images"]), "symbolic link owned by uid")?;
            intact(&v)?;
            absent(&v.join("store.lock"))?;
            absent(&v.join("blobs"))
        },
    );
    a.attempt(
        "lock-file-symlink",
        "replace <root>/store.lock with a dangling symlink to a host path, then `rbuild images`",
        || {
            let s = fresh();
            let target = s.dir.path().join("created-by-rbuild");
            std::fs::remove_file(s.root.join("store.lock")).unwrap();
            symlink(&target, s.root.join("store.lock")).unwrap();
            let out = s.run(&["images"]);
            absent(&target)?;
            refused(&out, "lock")
        },
    );
    a.attempt(
        "index-lock-symlink",
        "plant <root>/index.json.lock as a dangling symlink to a host path, then tag an image (which locks the index)",
        || {
            let s = fresh();
            let target = s.dir.path().join("created-by-rbuild");
            let _ = std::fs::remove_file(s.root.join("index.json.lock"));
            symlink(&target, s.root.join("index.json.lock")).unwrap();
            let out = s.run(&["tag", "busybox:latest", "other:latest"]);
            absent(&target)?;
            refused(&out, "symbolic link")
        },
    );
    a.attempt(
        "cache-mount-lock-symlink",
        "plant <root>/cache-mounts/<id>.lock as a dangling symlink, then build a step with that cache mount",
        || {
            let s = fresh();
            let target = s.dir.path().join("created-by-rbuild");
            std::fs::create_dir_all(s.root.join("cache-mounts")).unwrap();
            symlink(&target, s.root.join("cache-mounts/planted.lock")).unwrap();
            let err = s
                .build("cm:1", "FROM busybox\nRUN --mount=type=cache,id=planted,target=/c true\n")
                .err()
                .unwrap_or_default();
            absent(&target)?;
            if !err.contains("symbolic link") {
                return Err(format!("expected a refusal naming the symbolic link: {err}"));
            }
            Ok(())
        },
    );
    a.attempt(
        "index-symlink-to-host-file",
        "replace <root>/index.json with a symlink to a host file holding a copy of the index, then tag an image",
        || {
            let s = fresh();
            let host = s.dir.path().join("host-index.json");
            std::fs::copy(s.root.join("index.json"), &host).unwrap();
            let before = std::fs::read(&host).unwrap();
            std::fs::remove_file(s.root.join("index.json")).unwrap();
            symlink(&host, s.root.join("index.json")).unwrap();
            let _ = s.run(&["tag", "busybox:latest", "other:latest"]);
            if std::fs::read(&host).unwrap() != before {
                return Err("the host file behind the symlink was rewritten".into());
            }
            Ok(())
        },
    );
    a.finish();
}

/// PUTs `manifest` as `repo:tag`.
fn put_manifest(
    registry: &Registry,
    repo: &str,
    tag: &str,
    manifest: &serde_json::Value,
) -> Result<(), String> {
    let media = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json");
    let out = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {media}"))
        .arg("--data-binary")
        .arg(serde_json::to_string(manifest).unwrap())
        .arg(format!(
            "http://{}/v2/{repo}/manifests/{tag}",
            registry.addr
        ))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the registry refused the crafted manifest: {}",
            text(&out)
        ))
    }
}

/// The manifest of `busybox:latest` in the store at `root`.
fn busybox_manifest(root: &Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.contains("busybox"))
        })
        .expect("busybox in the index")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = digest.trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(root.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn a_pull_whose_descriptors_lie_about_present_blobs_is_refused() {
    let s = fresh();
    require_tool("curl", "curl");
    let registry = Registry::start(None);
    let remote = format!("{}/bb", registry.addr);
    succeeded(&s.run(&["push", "busybox:latest", &format!("{remote}:1")]))
        .expect("pushing busybox to the test registry");
    let manifest = busybox_manifest(&s.root);
    let mut a = Attacks::new("store");

    let mut lie = |name: &str,
                   tried: &str,
                   tag: &str,
                   edit: &dyn Fn(&mut serde_json::Value),
                   needle: &str| {
        a.attempt(name, tried, || {
            let mut m = manifest.clone();
            edit(&mut m);
            put_manifest(&registry, "bb", tag, &m)?;
            let out = s.run(&["pull", &format!("{remote}:{tag}")]);
            refused(&out, needle)?;
            verifies(&s.root)
        });
    };
    lie(
        "pull-config-size-lie",
        "pull a manifest whose config descriptor says one byte more than the config the store already has",
        "config-size",
        &|m| {
            let size = m["config"]["size"].as_u64().unwrap();
            m["config"]["size"] = (size + 1).into();
        },
        "bytes",
    );
    lie(
        "pull-layer-size-lie",
        "pull a manifest whose layer descriptor says 10 bytes (the layer blob is in the store)",
        "layer-size",
        &|m| m["layers"][0]["size"] = 10.into(),
        "bytes",
    );
    lie(
        "pull-layer-media-type-lie",
        "pull a manifest whose (present) layer is declared zstd while it is gzip or plain tar",
        "layer-type",
        &|m| m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        "descriptor says",
    );
    lie(
        "pull-config-is-a-layer",
        "pull a manifest whose config descriptor names the (present) layer blob",
        "config-layer",
        &|m| {
            m["config"]["digest"] = m["layers"][0]["digest"].clone();
            m["config"]["size"] = m["layers"][0]["size"].clone();
        },
        "descriptor says",
    );
    a.finish();
}

/// Scratch a failed rootless build left in the store's tmp with directories of mode 000
/// below its top (overlayfs's `work/incompat/volatile`, or a step's own `chmod 000`)
/// made every later command of that user fail ("failed to remove ... Permission
/// denied") until someone fixed the modes by hand.
#[test]
fn unreadable_leftovers_do_not_lock_a_rootless_user_out_of_the_store() {
    support::require::require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("store");
    let left = root.join("tmp/build-left/step-2/root/work/work/incompat/volatile");
    std::fs::create_dir_all(&left).expect("the leftover tree");
    std::fs::write(left.join("dirty"), b"").expect("a leftover file");
    let status = Command::new("chown")
        .args(["-R", ROOTLESS])
        .arg(dir.path())
        .status()
        .expect("chown");
    assert!(status.success());
    let mut path = left.clone();
    while path != root.join("tmp/build-left/step-2/root/work") {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("mode 000");
        path.pop();
    }
    let mut images = support::run::rbuild(&root);
    images.arg("images");
    let out = run(&mut as_user(ROOTLESS, &images)).expect("rbuild images");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!root.join("tmp/build-left").exists(), "the leftover stayed");
}
