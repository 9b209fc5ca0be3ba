//! The root file system of a stack of layers, read straight from their overlay lower
//! dirs (`<root>/layers/<chain_id>/`, see [`ContentStore::unpack_layers`]) as overlayfs
//! would merge them, without unpacking anything again.
//!
//! In a lower dir a deleted path is a whiteout, a character device 0:0
//! (overlayfs.rst, "whiteouts and opaque directories"), and a directory that hides what
//! the layers below hold at its path carries [`OVERLAY_OPAQUE_XATTR`] or, in a store
//! written inside a user namespace, [`OVERLAY_OPAQUE_USER_XATTR`] set to `y`.
//!
//! [`walk_merged`] goes depth first, siblings in byte order: the order of a layer tar
//! (see `write_layer_to`), so [`write_merged_tar`] gives the same bytes as writing a
//! tree unpacked from all the layers. Each directory is listed from the topmost layer
//! holding it down to the first opaque one (or the first layer where something else
//! than a directory stands at its path); memory is one merged listing per depth level.
//!
//! [`ContentStore::unpack_layers`]: crate::store::ContentStore::unpack_layers

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::writer::WriteState;
use super::{LayerError, LayerOptions, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR};
use crate::fakeroot::Owners;

/// One path of the merged tree, as [`walk_merged`] visits it.
pub(crate) struct MergedEntry<'a> {
    /// The path in the merged tree, relative (no leading `/`).
    pub rel: &'a Path,
    /// Where it is on disk: in the topmost layer dir holding it.
    pub source: &'a Path,
}

/// A name of a merged directory: the topmost layer holding it (an index into the walk's
/// layers) and whether it is a directory there.
struct Child {
    name: OsString,
    layer: usize,
    is_dir: bool,
}

/// A directory being walked: its path, the layers merged into it (topmost first) and its
/// merged listing.
struct Level {
    rel: PathBuf,
    layers: Vec<usize>,
    children: std::vec::IntoIter<Child>,
}

/// Calls `visit` for every path of the tree `layers` (lower dirs, lowest first) merge
/// into, depth first, siblings in byte order; the root itself is not visited.
pub(crate) fn walk_merged(
    layers: &[PathBuf],
    mut visit: impl FnMut(MergedEntry<'_>) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let root = Path::new("");
    let mut top: Vec<usize> = Vec::new();
    for index in (0..layers.len()).rev() {
        top.push(index);
        if is_opaque(&layers[index]).map_err(source_err(root))? {
            break;
        }
    }
    let children = list(layers, root, &top)?;
    let mut stack = vec![Level {
        rel: PathBuf::new(),
        layers: top,
        children: children.into_iter(),
    }];
    while let Some(level) = stack.last_mut() {
        let Some(child) = level.children.next() else {
            stack.pop();
            continue;
        };
        let rel = level.rel.join(&child.name);
        let source = layers[child.layer].join(&rel);
        visit(MergedEntry {
            rel: &rel,
            source: &source,
        })?;
        if !child.is_dir {
            continue;
        }
        let mut below = vec![child.layer];
        let mut opaque = is_opaque(&source).map_err(source_err(&rel))?;
        for &index in level.layers.iter().filter(|&&i| i < child.layer) {
            if opaque {
                break;
            }
            let path = layers[index].join(&rel);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    below.push(index);
                    opaque = is_opaque(&path).map_err(source_err(&rel))?;
                }
                // A whiteout, a file or a symlink hides whatever the layers below hold.
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(source_err(&rel)(e)),
            }
        }
        let children = list(layers, &rel, &below)?;
        stack.push(Level {
            rel,
            layers: below,
            children: children.into_iter(),
        });
    }
    Ok(())
}

/// The merged listing of directory `rel` held by `merged` (layer indexes, topmost first),
/// sorted by name, whiteouts and what they hide left out.
fn list(layers: &[PathBuf], rel: &Path, merged: &[usize]) -> Result<Vec<Child>, LayerError> {
    // None: whited out by a layer above those that may still hold the name.
    let mut names: BTreeMap<OsString, Option<(usize, bool)>> = BTreeMap::new();
    for &index in merged {
        let dir = layers[index].join(rel);
        for entry in fs::read_dir(&dir).map_err(source_err(rel))? {
            let entry = entry.map_err(source_err(rel))?;
            let name = entry.file_name();
            if names.contains_key(&name) {
                continue;
            }
            let kind = entry.file_type().map_err(source_err(rel))?;
            let whiteout =
                kind.is_char_device() && entry.metadata().map_err(source_err(rel))?.rdev() == 0;
            let found = (!whiteout).then_some((index, kind.is_dir()));
            names.insert(name, found);
        }
    }
    Ok(names
        .into_iter()
        .filter_map(|(name, found)| {
            found.map(|(layer, is_dir)| Child {
                name,
                layer,
                is_dir,
            })
        })
        .collect())
}

fn source_err(rel: &Path) -> impl Fn(io::Error) -> LayerError + '_ {
    move |source| LayerError::Source {
        path: rel.to_path_buf(),
        source,
    }
}

/// Whether directory `path` carries an overlay opaque marker (either namespace).
fn is_opaque(path: &Path) -> io::Result<bool> {
    for key in [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR] {
        let mut value = [0u8; 1];
        match rustix::fs::lgetxattr(path, key, &mut value[..]) {
            Ok(1) if value == *b"y" => return Ok(true),
            Ok(_)
            | Err(rustix::io::Errno::NODATA)
            | Err(rustix::io::Errno::NOTSUP)
            | Err(rustix::io::Errno::RANGE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Writes the merged tree of `layers` (lower dirs, lowest first) to `out` as one
/// uncompressed tar, with the headers a layer of that tree would have (no epoch); returns
/// `out`.
pub(crate) fn write_merged_tar<W: Write>(out: W, layers: &[PathBuf]) -> Result<W, LayerError> {
    let mut tar = tar::Builder::new(out);
    append_merged(&mut tar, layers, Path::new(""))?;
    tar.into_inner().map_err(|source| LayerError::Write {
        path: PathBuf::from("/"),
        source,
    })
}

/// Writes several merged trees to `out` as one uncompressed tar, each `(directory,
/// layers)` under its directory (an entry of its own: mode 0755, owned by root, mtime 0),
/// as BuildKit's tar exporter writes the platforms of a multi-platform build
/// (`linux_amd64/...`, `linux_arm64/...`); returns `out`.
pub(crate) fn write_merged_tars<W: Write>(
    out: W,
    trees: &[(PathBuf, Vec<PathBuf>)],
) -> Result<W, LayerError> {
    let mut tar = tar::Builder::new(out);
    for (dir, layers) in trees {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        let werr = |source| LayerError::Write {
            path: dir.clone(),
            source,
        };
        header.set_path(dir.join("")).map_err(werr)?;
        header.set_cksum();
        tar.append(&header, io::empty()).map_err(werr)?;
        append_merged(&mut tar, layers, dir)?;
    }
    tar.into_inner().map_err(|source| LayerError::Write {
        path: PathBuf::from("/"),
        source,
    })
}

/// Appends the merged tree of `layers` to `tar`, its entries named under `prefix`.
fn append_merged<W: Write>(
    tar: &mut tar::Builder<W>,
    layers: &[PathBuf],
    prefix: &Path,
) -> Result<(), LayerError> {
    let options = LayerOptions::default();
    let mut state = WriteState::new(Path::new(""), &options);
    state.under(prefix);
    // Unprivileged, each path's owner and mode are in the table of the layer it comes
    // from.
    let tables = if crate::fakeroot::active() {
        state.keep_owners(Owners::default());
        layers
            .iter()
            .map(|dir| {
                Owners::load(dir).map_err(|source| LayerError::Source {
                    path: crate::fakeroot::table_path(dir),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    walk_merged(layers, |entry| {
        let from = layers
            .iter()
            .zip(&tables)
            .rev()
            .find(|(dir, _)| entry.source.starts_with(dir));
        if let Some((_, table)) = from {
            state.record(entry.rel, table.entry(entry.rel).unwrap_or_default());
        }
        state.append_from(tar, entry.source, entry.rel)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_support {
    use tar::{EntryType, Header};

    use super::*;
    use crate::layer::{ApplyMode, Compression, apply_layer, tree_changes, write_layer_to};
    use crate::store::ContentStore;

    /// One entry of a crafted layer: name, kind, body or link target, mode, mtime,
    /// xattrs.
    pub(super) struct E(
        pub &'static str,
        pub EntryType,
        pub &'static str,
        pub u32,
        pub u64,
        pub &'static [(&'static str, &'static str)],
    );

    pub(super) fn dir(name: &'static str, mtime: u64) -> E {
        E(name, EntryType::Directory, "", 0o755, mtime, &[])
    }

    pub(super) fn file(name: &'static str, body: &'static str) -> E {
        E(name, EntryType::Regular, body, 0o644, 1_000, &[])
    }

    /// image-spec's whiteout of `path` (`dir/.wh.name`), or the opaque marker.
    pub(super) fn whiteout(name: &'static str) -> E {
        E(name, EntryType::Regular, "", 0o644, 0, &[])
    }

    pub(super) fn tar_of(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for E(name, kind, body, mode, mtime, xattrs) in entries {
            let mut h = Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_uid(if name.starts_with("owned") { 1234 } else { 0 });
            h.set_gid(0);
            h.set_mtime(*mtime);
            if !xattrs.is_empty() {
                let pax: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_bytes()))
                    .collect();
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                    .unwrap();
            }
            match kind {
                EntryType::Regular => {
                    h.set_size(body.len() as u64);
                    h.set_path(name).unwrap();
                    h.set_cksum();
                    b.append(&h, body.as_bytes()).unwrap();
                }
                EntryType::Char => {
                    h.set_size(0);
                    h.set_device_major(1).unwrap();
                    h.set_device_minor(3).unwrap();
                    h.set_path(name).unwrap();
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                _ => {
                    h.set_size(0);
                    if !body.is_empty() {
                        h.set_link_name(body).unwrap();
                    }
                    h.set_path(name).unwrap();
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Today's way, the reference: every layer applied in turn to one tree, the tree
    /// written as one tar.
    pub(super) fn tar_of_applied(layers: &[Vec<u8>]) -> Vec<u8> {
        let tree = tempfile::tempdir().unwrap();
        for layer in layers {
            apply_layer(&layer[..], tree.path(), ApplyMode::Merged).unwrap();
        }
        let changes = tree_changes(tree.path()).unwrap();
        let options = LayerOptions::default().with_compression(Compression::None);
        write_layer_to(Vec::new(), tree.path(), &changes, &options)
            .unwrap()
            .0
    }

    /// The merged walk's way: the layers unpacked as a store unpacks them for overlay.
    pub(super) fn tar_of_lowers(layers: &[Vec<u8>]) -> (Vec<u8>, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let store = ContentStore::open(root.path()).unwrap();
        let pairs: Vec<(crate::digest::Digest, crate::digest::Digest)> = layers
            .iter()
            .map(|l| {
                let blob = store.put(l).unwrap();
                (blob.digest.clone(), crate::digest::Digest::of(l))
            })
            .collect();
        let dirs = store
            .unpack_layers(pairs.iter().map(|(b, d)| (b, d)))
            .unwrap();
        (write_merged_tar(Vec::new(), &dirs).unwrap(), root)
    }

    pub(super) fn names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tar::EntryType;

    use super::tests_support::*;
    use crate::privilege::Privilege;

    #[test]
    fn the_merged_walk_gives_the_bytes_of_the_applied_layers() {
        assert!(
            Privilege::current().is_host_root(),
            "this test needs root of the host: layers with owners, devices and trusted.overlay.opaque"
        );
        let base = tar_of(&[
            dir("d/", 100),
            file("d/a", "a"),
            dir("d/sub/", 101),
            file("d/sub/s", "s"),
            file("f", "f"),
            file("p", "p1"),
            file("h1", "linked"),
            E("h2", EntryType::Link, "h1", 0o644, 0, &[]),
            E("sl", EntryType::Symlink, "d/a", 0o777, 5, &[]),
            E("fifo", EntryType::Fifo, "", 0o600, 6, &[]),
            E("cdev", EntryType::Char, "", 0o600, 7, &[]),
            E(
                "x",
                EntryType::Regular,
                "xattrs",
                0o4755,
                8,
                &[("user.b", "2"), ("user.a", "1")],
            ),
            dir("o/", 102),
            file("o/gone", "g"),
            dir("o/deep/", 103),
            file("o/deep/gone", "g"),
            dir("owned/", 104),
            file("owned/file", "o"),
            dir("w/", 105),
            file("w/one", "1"),
        ]);
        let middle = tar_of(&[
            dir("d/", 200),
            whiteout("d/.wh.a"),
            file("d/b", "b"),
            whiteout(".wh.f"),
            dir("o/", 201),
            whiteout("o/.wh..wh..opq"),
            file("o/new", "n"),
            dir("p/", 202),
            file("p/c", "c"),
            file("h1", "replaced"),
            dir("w/", 203),
            file("w/one", "1 again"),
            file("w/two", "2"),
        ]);
        let top = tar_of(&[
            dir("d/", 300),
            whiteout("d/.wh.sub"),
            file("f", "back"),
            file("p", "p3"),
            dir("o/", 301),
            dir("o/deep/", 302),
            file("o/deep/again", "a"),
            file("h1", "top"),
            E("h3", EntryType::Link, "h1", 0o644, 0, &[]),
            dir("w/", 303),
            whiteout("w/.wh.one"),
        ]);
        let layers = [base, middle, top];
        let want = tar_of_applied(&layers);
        let (got, _store) = tar_of_lowers(&layers);
        assert_eq!(names(&got), names(&want));
        assert!(
            got == want,
            "the merged tar differs from the applied tree's tar"
        );
        let listed = names(&got);
        for gone in ["d/a", "d/sub/", "o/gone", "o/deep/gone", "w/one"] {
            assert!(!listed.iter().any(|n| n == gone), "{gone} in {listed:?}");
        }
        for kept in [
            "d/b",
            "f",
            "p",
            "o/new",
            "o/deep/again",
            "cdev",
            "fifo",
            "h2",
            "h3",
        ] {
            assert!(listed.iter().any(|n| n == kept), "{kept} not in {listed:?}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod implied_parent_tests {
    use super::tests_support::*;

    /// A layer holding `d/f` but no entry for `d/` (rbuild's own diff of a file changed in
    /// place): applying the layers to one tree gave `d/` the time of the export, so the
    /// tar changed from run to run; the merged walk shows the directory the layers below
    /// give, as overlayfs does, every time.
    #[test]
    fn a_directory_a_layer_only_implies_keeps_the_lower_ones_mtime() {
        let base = tar_of(&[dir("d/", 100), file("d/f", "one")]);
        let top = tar_of(&[file("d/f", "two")]);
        let (got, _store) = tar_of_lowers(&[base, top]);
        let mut archive = tar::Archive::new(&got[..]);
        let times: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (name, e.header().mtime().unwrap())
            })
            .collect();
        assert_eq!(times, [("d/".to_owned(), 100), ("d/f".to_owned(), 1_000)]);
    }
}
