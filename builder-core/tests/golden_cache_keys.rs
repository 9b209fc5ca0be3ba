//! Golden cache keys: the keys of a fixed set of builds, compared byte for byte with
//! `golden/cache_keys.txt`.
//!
//! A cache key is what a user's cache is found by: a key that changes without a reason
//! turns every cached step of every user into a miss. The builds here start from a base
//! image made in the test from fixed bytes (a tiny x86-64 `/bin/sh` that exits 0, a fixed
//! `/etc/passwd`, every mtime fixed) and contexts with fixed content, modes and owners,
//! so the keys depend on nothing but the code that computes them. No network is used.
//!
//! To regenerate after a change that is meant to change keys (say why in the commit):
//! `RBUILD_BLESS_GOLDEN=1 cargo test -p rbuild-core --test golden_cache_keys`.
//!
//! The same cases with `SOURCE_DATE_EPOCH` also pin bytes (`golden/image_digests.txt`):
//! the config, manifest and layer blob digests of each image built with gzip, zstd and no
//! compression, and the sha256 of its `-o type=tar`, `type=oci` and `type=docker`
//! archives. How a layer is stored between steps (a blob, a directory) must not change
//! any of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_core::{
    ContentStore, ImageName,
    context::{ContextHashes, ContextListing, IgnoreRules},
    copy::{CopyOp, CopySource, sources_digest},
    export::ExportTarget,
    export::import_rootfs,
    image::{ImageConfig, ImageSpec, tag_image},
    layer::{Compression, LayerOptions},
};
use rbuild_dockerfile::Instruction;
use support::build::build_with;
use support::require::require_root;

const GOLDEN: &str = "tests/golden/cache_keys.txt";
const GOLDEN_DIGESTS: &str = "tests/golden/image_digests.txt";
const EPOCH: u64 = 1_700_000_000;

/// A static x86-64 ELF executable that exits 0 (`mov eax, 60; xor edi, edi; syscall`):
/// every `RUN` succeeds without the base image carrying a host's shell.
fn exit_zero_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE: [u8; 9] = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
    let size = (64 + 56 + CODE.len()) as u64;
    let mut e = Vec::new();
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + 64 + 56).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&half.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // r-x
    for word in [0, BASE, BASE, size, size, 0x1000] {
        e.extend_from_slice(&word.to_le_bytes());
    }
    e.extend_from_slice(&CODE);
    e
}

/// The base rootfs as a tarball: fixed entries, owners, modes and mtimes.
fn base_tarball() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(EPOCH);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        tar.append_data(&mut h, path, &[][..]).unwrap();
    };
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_mtime(EPOCH);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, path, data).unwrap();
    };
    for d in ["bin", "etc", "tmp", "usr", "usr/bin"] {
        dir(&mut tar, d);
    }
    file(&mut tar, "bin/sh", 0o755, &exit_zero_elf());
    file(
        &mut tar,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    );
    file(&mut tar, "etc/group", 0o644, b"root:x:0:\napp:x:1000:\n");
    tar.into_inner().unwrap()
}

/// A store with the fixed base imported as `golden-base:1`.
fn golden_store(dir: &Path) -> ContentStore {
    let store = ContentStore::open(dir.join("store")).unwrap();
    let mut config = ImageConfig {
        architecture: "amd64".to_owned(),
        os: "linux".to_owned(),
        ..ImageConfig::default()
    };
    config.config.env = Some(vec!["PATH=/usr/bin:/bin".to_owned()]);
    let spec = ImageSpec::new(config);
    let image =
        import_rootfs(&store, &base_tarball()[..], &spec, &LayerOptions::default()).unwrap();
    let name: ImageName = "golden-base:1".parse().unwrap();
    tag_image(&store, &name, &image).unwrap();
    store
}

/// A context directory: files (path, mode, content) and directories (path), every
/// one owned by root with the mode given (directories 0755).
fn context(dir: &Path, name: &str, files: &[(&str, u32, &str)]) -> PathBuf {
    let ctx = dir.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::set_permissions(&ctx, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (path, mode, content) in files {
        let path = ctx.join(path);
        let mut parent = path.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&parent).unwrap();
        while parent != ctx {
            std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
            parent.pop();
        }
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        std::os::unix::fs::lchown(&path, Some(0), Some(0)).unwrap();
    }
    ctx
}

/// A gzip tarball (one file `inner/t.txt`) for `ADD` to extract, with fixed bytes.
fn small_tar_gz() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(EPOCH);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(6);
    tar.append_data(&mut h, "inner/t.txt", &b"tared\n"[..])
        .unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    args: &'static [(&'static str, &'static str)],
    /// SOURCE_DATE_EPOCH: without it, a step that creates a directory (`WORKDIR`, a
    /// `COPY` into a new parent) writes the time of the build into its layer, and the
    /// keys after it follow that layer's content.
    epoch: Option<u64>,
}

/// Built twice: with its defaults, and with other build arguments.
const ENV_ARG: &str = "FROM golden-base:1
ARG V=1
ARG UNUSED=x
ENV FROM_ARG=$V
RUN echo $V > /v
ENV OTHER=fixed
RUN echo $OTHER
";

const CASES: &[Case] = &[
    Case {
        name: "scratch-copy",
        dockerfile: "FROM scratch\nCOPY a.txt /a.txt\nCOPY dir /dir\n",
        epoch: None,
        args: &[],
    },
    Case {
        name: "basic",
        dockerfile: "FROM golden-base:1
RUN echo hello > /hello
ENV GREETING=hi PATH=/usr/bin:/bin:/opt
WORKDIR /app
COPY a.txt .
COPY dir /app/dir/
COPY *.txt /app/globbed/
COPY dir/sub/*.md /app/md/
RUN echo $GREETING
",
        epoch: Some(EPOCH),
        args: &[],
    },
    Case {
        name: "copy-flags",
        dockerfile: "FROM golden-base:1
COPY --chown=app:app a.txt /owned-by-name
COPY --chown=1000:1000 dir /owned-by-id
COPY --chmod=640 a.txt /a640
COPY --chmod=u=rwx,go=rx dir /dir-sym
COPY --link a.txt /linked
COPY --link --chown=1000 --chmod=600 dir /linked-dir
COPY --exclude=*.log dir /no-logs
COPY --exclude=sub dir /no-sub
COPY --exclude=*.md --exclude=*.log . /ctx
",
        epoch: Some(EPOCH),
        args: &[],
    },
    Case {
        name: "add",
        dockerfile: "FROM golden-base:1
ADD a.txt /added.txt
ADD small.tar.gz /extracted/
ADD --chown=app:app dir /added-dir
ADD --chmod=600 b.txt /added-b
",
        epoch: Some(EPOCH),
        args: &[],
    },
    Case {
        name: "env-arg",
        dockerfile: ENV_ARG,
        epoch: None,
        args: &[],
    },
    Case {
        name: "env-arg-changed",
        dockerfile: ENV_ARG,
        epoch: None,
        args: &[("V", "2"), ("UNUSED", "y")],
    },
    Case {
        name: "run-mount",
        dockerfile: "FROM golden-base:1 AS tools
COPY dir /tools
FROM golden-base:1
RUN --mount=type=cache,target=/var/cache/x echo cached
RUN --mount=type=cache,id=shared,target=/c,sharing=locked echo locked
RUN --mount=type=tmpfs,target=/scratch echo tmp
RUN --mount=type=bind,source=a.txt,target=/mnt/a.txt echo bound
RUN --mount=type=bind,source=dir,target=/mnt/dir,rw echo bound-dir
RUN --mount=type=bind,from=tools,source=/tools,target=/t echo from-stage
",
        epoch: Some(EPOCH),
        args: &[],
    },
    Case {
        name: "multi-stage",
        dockerfile: "FROM golden-base:1 AS one
COPY a.txt /one/a.txt
COPY dir /one/dir
RUN echo built
FROM golden-base:1 AS two
COPY b.txt /two/b.txt
FROM two
COPY --from=one /one/a.txt /from-one.txt
COPY --from=one /one/dir /from-one-dir
COPY --from=one --chown=app:app --chmod=600 /one/dir/sub /owned-sub
COPY --from=two /two/b.txt /from-two.txt
COPY --from=golden-base:1 /etc/passwd /passwd-copy
COPY --from=one --link /one /linked-one
",
        epoch: Some(EPOCH),
        args: &[],
    },
];

fn context_files() -> Vec<(&'static str, u32, &'static str)> {
    vec![
        ("a.txt", 0o644, "alpha\n"),
        ("b.txt", 0o600, "bravo\n"),
        ("dir/one.txt", 0o644, "one\n"),
        ("dir/run.sh", 0o755, "#!/bin/sh\necho run\n"),
        ("dir/noise.log", 0o644, "noise\n"),
        ("dir/sub/readme.md", 0o644, "# readme\n"),
        ("dir/sub/deep/x.bin", 0o640, "\u{0}\u{1}\u{2}"),
    ]
}

/// The golden context under `root`: [`context_files`], a gzip tarball, a symlink, every
/// mtime fixed.
fn golden_context(root: &Path) -> PathBuf {
    let ctx = context(root, "ctx", &context_files());
    std::fs::write(ctx.join("small.tar.gz"), small_tar_gz()).unwrap();
    std::fs::set_permissions(
        ctx.join("small.tar.gz"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::create_dir(ctx.join("links")).unwrap();
    std::os::unix::fs::symlink("../a.txt", ctx.join("links/to-a")).unwrap();
    // COPY keeps the mtimes of what it copies: fixed ones keep its layers fixed.
    let fixed = std::time::UNIX_EPOCH + std::time::Duration::from_secs(EPOCH);
    for entry in walkdir::WalkDir::new(&ctx) {
        let entry = entry.unwrap();
        std::fs::File::open(entry.path())
            .unwrap()
            .set_modified(fixed)
            .unwrap();
    }
    ctx
}

/// The golden text of every case: `case<TAB>step name<TAB>key`, by case then step name.
fn compute(root: &Path) -> String {
    let store = golden_store(root);
    let ctx = golden_context(root);
    let mut out = String::new();
    for case in CASES {
        let (result, _) = build_with(&store, case.dockerfile, &ctx, |r| {
            r.spec.build_args = case
                .args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            r.spec.source_date_epoch = case.epoch;
        });
        let result = result.unwrap_or_else(|e| {
            panic!(
                "golden case {} failed to build: {}",
                case.name,
                rbuild_core::error_chain::error_chain(&e)
            )
        });
        let mut steps: Vec<(String, String)> = result
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.cache_key.to_string()))
            .collect();
        steps.sort();
        for (name, key) in steps {
            writeln!(out, "{}\t{name}\t{key}", case.name).unwrap();
        }
    }
    sources_digests(&ctx, &mut out);
    out
}

/// The sources digests of `COPY`s read from the context and from a tree (as a `--from`
/// stage's root is read), as `sources_digest` gives them to embedders.
fn sources_digests(ctx: &Path, out: &mut String) {
    let listing = ContextListing::walk(ctx, &IgnoreRules::none()).unwrap();
    let hashes = ContextHashes::compute(&listing, None).unwrap();
    let context = CopySource::Context {
        root: ctx,
        listing: &listing,
        hashes: &hashes,
    };
    let tree = CopySource::Tree(ctx);
    for line in [
        "COPY a.txt /x",
        "COPY dir /d",
        "COPY *.txt /g/",
        "COPY --exclude=*.log dir /d",
        "COPY --chown=1:2 --chmod=600 dir/sub /s",
        "COPY links /l",
        "ADD small.tar.gz /t/",
    ] {
        let text = format!("FROM scratch\n{line}\n");
        let dockerfile = rbuild_dockerfile::parse(&text).unwrap();
        let op = match &dockerfile.stages[0].instructions[0] {
            Instruction::Copy(c) => CopyOp::from_copy(c, "/"),
            Instruction::Add(a) => CopyOp::from_add(a, "/"),
            other => panic!("not a COPY or ADD: {other:?}"),
        };
        for (from, source) in [("context", &context), ("tree", &tree)] {
            let digest = sources_digest(&op, source).unwrap();
            writeln!(out, "sources-digest\t{from}\t{line}\t{digest}").unwrap();
        }
    }
    let all = hashes.selection_digest(listing.entries()).unwrap();
    writeln!(out, "selection-digest\tcontext\t.\t{all}").unwrap();
}

const HEADER: &str = "\
# Cache keys of the golden cases in tests/golden_cache_keys.rs, compared byte for byte.
# Generated from the code; a change here changes every user's cache and must be justified
# in its commit. Regenerate: RBUILD_BLESS_GOLDEN=1 cargo test -p rbuild-core --test golden_cache_keys
";

/// The sha256 of a file, as a digest string.
fn file_digest(path: &Path) -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).unwrap();
    format!("sha256:{:x}", sha2::Sha256::digest(&bytes))
}

/// The golden bytes of every case with `SOURCE_DATE_EPOCH`: per compression, a fresh
/// store builds the case and the image's config, manifest and layer blob digests are
/// written; the gzip image is also exported as `-o type=tar`, `type=oci` (tar) and
/// `type=docker` and each archive's sha256 written.
fn compute_digests(root: &Path) -> String {
    let ctx = golden_context(root);
    let mut out = String::new();
    for case in CASES.iter().filter(|c| c.epoch.is_some()) {
        for (compression, name) in [
            (Compression::Gzip, "gzip"),
            (Compression::Zstd, "zstd"),
            (Compression::None, "none"),
        ] {
            let store_dir = tempfile::tempdir_in(root).unwrap();
            let store = golden_store(store_dir.path());
            let (result, _) = build_with(&store, case.dockerfile, &ctx, |r| {
                r.spec.source_date_epoch = case.epoch;
                r.spec.compression = compression;
            });
            let result = result.unwrap_or_else(|e| {
                panic!(
                    "golden case {} ({name}) failed to build: {}",
                    case.name,
                    rbuild_core::error_chain::error_chain(&e)
                )
            });
            let image = &result.image;
            let case_name = case.name;
            writeln!(out, "{case_name}\t{name}\tconfig\t{}", image.config_digest).unwrap();
            writeln!(
                out,
                "{case_name}\t{name}\tmanifest\t{}",
                image.digest().unwrap()
            )
            .unwrap();
            for (i, (blob, diff_id)) in image.layers().unwrap().iter().enumerate() {
                writeln!(out, "{case_name}\t{name}\tlayer {i}\t{blob}\t{diff_id}").unwrap();
            }
            if compression != Compression::Gzip {
                continue;
            }
            for (output, target) in [
                (
                    "type=tar",
                    ExportTarget::Tar {
                        dest: store_dir.path().join("out.tar"),
                    },
                ),
                (
                    "type=oci",
                    ExportTarget::Oci {
                        dest: store_dir.path().join("out.oci.tar"),
                        tar: true,
                    },
                ),
                (
                    "type=docker",
                    ExportTarget::Docker {
                        dest: store_dir.path().join("out.docker.tar"),
                    },
                ),
            ] {
                let dest = match &target {
                    ExportTarget::Tar { dest }
                    | ExportTarget::Oci { dest, .. }
                    | ExportTarget::Docker { dest } => dest.clone(),
                    _ => unreachable!(),
                };
                rbuild_core::export::export(
                    &store,
                    &target,
                    image,
                    &[],
                    &rbuild_core::progress::NullProgress,
                )
                .unwrap();
                writeln!(
                    out,
                    "{case_name}\t{name}\t-o {output}\t{}",
                    file_digest(&dest)
                )
                .unwrap();
            }
        }
    }
    out
}

const DIGESTS_HEADER: &str = "\
# Image, layer blob and export archive digests of the golden cases with SOURCE_DATE_EPOCH
# (tests/golden_cache_keys.rs), compared byte for byte: case, compression, what, digest
# (layers: blob digest, diff_id). Exports are of the gzip image, with no names.
# Regenerate only for a change meant to change image bytes (say why in the commit):
# RBUILD_BLESS_GOLDEN=1 cargo test -p rbuild-core --test golden_cache_keys
";

#[test]
fn image_and_export_digests_of_the_golden_cases_are_unchanged() {
    require_root("builds mount overlays and run steps in namespaces");
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the golden base image's /bin/sh is an x86-64 executable; run this test on x86-64"
    );
    let dir = tempfile::tempdir().unwrap();
    let computed = format!("{DIGESTS_HEADER}{}", compute_digests(dir.path()));
    compare_with_golden(GOLDEN_DIGESTS, &computed);
}

#[test]
fn cache_keys_of_the_golden_cases_are_unchanged() {
    require_root("builds mount overlays and run steps in namespaces");
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the golden base image's /bin/sh is an x86-64 executable; run this test on x86-64"
    );
    let dir = tempfile::tempdir().unwrap();
    let computed = format!("{HEADER}{}", compute(dir.path()));
    compare_with_golden(GOLDEN, &computed);
}

/// Compares `computed` with the golden file `golden` (relative to the crate), or writes
/// it when `RBUILD_BLESS_GOLDEN` is set.
fn compare_with_golden(golden: &str, computed: &str) {
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(golden);
    if std::env::var_os("RBUILD_BLESS_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, computed).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&golden_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", golden_path.display()));
    if golden != computed {
        let diff: Vec<String> = golden
            .lines()
            .zip(computed.lines())
            .filter(|(g, c)| g != c)
            .map(|(g, c)| format!("-{g}\n+{c}"))
            .collect();
        panic!(
            "golden text differs from {} ({} vs {} lines):\n{}",
            golden_path.display(),
            golden.lines().count(),
            computed.lines().count(),
            diff.join("\n")
        );
    }
}
