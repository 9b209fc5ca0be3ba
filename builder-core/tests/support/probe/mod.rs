//! The boundary probe (probe.c beside this file): a static C program making system
//! calls busybox has no applet for, compiled once per test binary with the host's gcc.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A directory holding `bin/probe` (usable as a layer, or as a build context).
pub fn probe_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/probe/probe.c");
        let out = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(dir.join("bin/probe"))
            .arg(&source)
            .output()
            .unwrap_or_else(|e| {
                panic!("gcc is needed to compile the boundary probe (apt-get install gcc): {e}")
            });
        assert!(
            out.status.success(),
            "gcc -static failed on {} (libc6-dev is needed):\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}
