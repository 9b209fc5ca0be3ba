//! Hostile layers: every entry that would write outside the target is refused with an
//! error naming it, and nothing outside the target changes.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::Path;

use rbuild_core::layer::{ApplyMode, LayerError, apply_layer};
use support::require::require_root;
use tar::{EntryType, Header};

/// A tar entry built with raw bytes, bypassing the tar crate's own name checks.
struct Raw<'a> {
    name: &'a str,
    kind: EntryType,
    link: &'a str,
    body: &'a [u8],
}

fn file(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: EntryType::Regular,
        link: "",
        body: b"pwned",
    }
}

fn link<'a>(name: &'a str, kind: EntryType, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind,
        link: target,
        body: b"",
    }
}

fn tar_of(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(e.body.len() as u64);
        h.set_cksum();
        b.append(&h, e.body).unwrap();
    }
    b.into_inner().unwrap()
}

fn outside_state(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let body = if e.file_type().is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.path().display().to_string(), body)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn hostile_layers_are_refused_naming_the_entry() {
    require_root("the applier runs as root in production, where escapes matter most");
    let cases: Vec<(&str, Vec<Raw<'_>>, &str)> = vec![
        (
            "dot-dot entry",
            vec![file("../outside/evil")],
            "../outside/evil",
        ),
        (
            "nested dot-dot",
            vec![file("a/../../outside/evil")],
            "a/../../outside/evil",
        ),
        (
            "absolute path",
            vec![file("/OUTSIDE/evil")],
            "/OUTSIDE/evil",
        ),
        (
            "relative symlink then write through it",
            vec![
                link("esc", EntryType::Symlink, "../outside"),
                file("esc/evil"),
            ],
            "esc/evil",
        ),
        (
            "absolute symlink then write through it",
            vec![
                link("esc", EntryType::Symlink, "/OUTSIDE"),
                file("esc/evil"),
            ],
            "esc/evil",
        ),
        (
            "hardlink to outside",
            vec![link("hl", EntryType::Link, "../outside/secret")],
            "hl",
        ),
        (
            "hardlink through a symlink",
            vec![
                link("esc", EntryType::Symlink, "/OUTSIDE"),
                link("hl", EntryType::Link, "esc/secret"),
            ],
            "hl",
        ),
        (
            "whiteout of ../x",
            vec![file("../.wh.secret")],
            "../.wh.secret",
        ),
        ("whiteout named ..", vec![file("sub/.wh...")], "sub/.wh..."),
    ];
    for (what, entries, bad_entry) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let target = tmp.path().join("target");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(target.join("sub")).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        let outside_abs = outside.display().to_string();
        // Absolute names point at the real outside directory of this case.
        let fixed: Vec<(String, String)> = entries
            .iter()
            .map(|e| {
                (
                    e.name.replace("/OUTSIDE", &outside_abs),
                    e.link.replace("/OUTSIDE", &outside_abs),
                )
            })
            .collect();
        let entries: Vec<Raw<'_>> = entries
            .iter()
            .zip(&fixed)
            .map(|(e, (n, l))| Raw {
                name: n,
                kind: e.kind,
                link: l,
                body: e.body,
            })
            .collect();
        let bad_entry = bad_entry.replace("/OUTSIDE", &outside_abs);
        let before = outside_state(&outside);
        for mode in [ApplyMode::Merged, ApplyMode::OverlayLower] {
            let err = apply_layer(&tar_of(&entries)[..], &target, mode)
                .expect_err(&format!("{what}: hostile layer was accepted"));
            assert!(
                matches!(err, LayerError::Unsafe { .. }),
                "{what}: expected a refusal, got {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&bad_entry),
                "{what}: error {msg:?} does not name entry {bad_entry:?}"
            );
            assert_eq!(
                outside_state(&outside),
                before,
                "{what}: something changed outside the target"
            );
        }
    }
}
