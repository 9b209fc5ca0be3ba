//! Resolving COPY sources stays inside the context; symlinks are copied as links.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use rbuild_core::context::{ContextListing, IgnoreRules, ResolveError, resolve_source};

fn context() -> (tempfile::TempDir, ContextListing) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    fs::create_dir_all(root.join("src/app")).expect("mkdir");
    fs::create_dir_all(root.join("etc")).expect("mkdir");
    fs::write(root.join("src/app/main.py"), "x").expect("write");
    fs::write(root.join("src/app/util.py"), "y").expect("write");
    fs::write(root.join("src/readme.txt"), "z").expect("write");
    fs::write(root.join("etc/passwd"), "ctx-passwd").expect("write");
    fs::write(root.join("hidden.py"), "h").expect("write");
    symlink("/etc/shadow", root.join("shadow")).expect("symlink");
    symlink("../x", root.join("up")).expect("symlink");
    symlink("/etc", root.join("abs-etc")).expect("symlink");
    symlink("../../../src", root.join("src/app/escape")).expect("symlink");
    symlink("loop2", root.join("loop1")).expect("symlink");
    symlink("loop1", root.join("loop2")).expect("symlink");
    let rules = IgnoreRules::parse("hidden.py\n").expect("rules");
    let listing = ContextListing::walk(root, &rules).expect("walk");
    (tmp, listing)
}

fn paths(listing: &ContextListing, source: &str) -> Vec<String> {
    resolve_source(listing, source)
        .unwrap_or_else(|e| panic!("resolving {source:?}: {e}"))
        .iter()
        .map(|e| e.path.display().to_string())
        .collect()
}

#[test]
fn wildcards_match_one_component_with_go_semantics() {
    let (_tmp, listing) = context();
    assert_eq!(
        paths(&listing, "src/app/*.py"),
        ["src/app/main.py", "src/app/util.py"]
    );
    assert_eq!(paths(&listing, "src/*/m?in.py"), ["src/app/main.py"]);
    assert_eq!(paths(&listing, "src/[q-s]*"), ["src/readme.txt"]);
}

#[test]
fn a_symlink_source_is_the_link_itself() {
    let (_tmp, listing) = context();
    let found = resolve_source(&listing, "shadow").expect("resolve");
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].link_target.as_deref(),
        Some(Path::new("/etc/shadow"))
    );
    let found = resolve_source(&listing, "up").expect("resolve");
    assert_eq!(found[0].link_target.as_deref(), Some(Path::new("../x")));
}

#[test]
fn parent_symlinks_and_dotdot_stay_inside_the_root() {
    let (_tmp, listing) = context();
    // `/etc` as a link target means the context's own etc, never the host's.
    assert_eq!(paths(&listing, "abs-etc/passwd"), ["etc/passwd"]);
    // `..` above the root is clamped at the root.
    assert_eq!(paths(&listing, "../../etc/passwd"), ["etc/passwd"]);
    assert_eq!(paths(&listing, "/src/../etc/passwd"), ["etc/passwd"]);
    assert_eq!(
        paths(&listing, "src/app/escape/readme.txt"),
        ["src/readme.txt"]
    );
}

#[test]
fn excluded_and_missing_sources_are_not_found() {
    let (_tmp, listing) = context();
    for source in ["hidden.py", "nope", "*.none", "shadow/x"] {
        assert!(
            matches!(
                resolve_source(&listing, source),
                Err(ResolveError::NotFound { .. })
            ),
            "{source}"
        );
    }
}

#[test]
fn symlink_loops_are_an_error() {
    let (_tmp, listing) = context();
    assert!(matches!(
        resolve_source(&listing, "loop1/x"),
        Err(ResolveError::SymlinkLoop { .. })
    ));
}

#[test]
fn the_root_resolves_to_its_top_level_entries() {
    let (_tmp, listing) = context();
    let top = paths(&listing, ".");
    assert!(top.contains(&"src".to_owned()) && top.contains(&"shadow".to_owned()));
    assert!(!top.iter().any(|p| p.contains('/')));
    let sub = resolve_source(&listing, "src").expect("resolve");
    let subtree: Vec<_> = listing
        .subtree(sub[0])
        .iter()
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(subtree.len(), 6, "{subtree:?}");
}

#[test]
fn a_link_target_is_not_a_pattern() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for dir in ["star*dir", "starXdir"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
        fs::write(root.join(dir).join("f"), dir).expect("write");
    }
    symlink("star*dir", root.join("s")).expect("symlink");
    let listing = ContextListing::walk(root, &IgnoreRules::none()).expect("walk");
    assert_eq!(paths(&listing, "s/f"), ["star*dir/f"]);
    assert_eq!(paths(&listing, "star\\*dir/f"), ["star*dir/f"]);
    assert_eq!(paths(&listing, "star*dir/f"), ["star*dir/f", "starXdir/f"]);
}
