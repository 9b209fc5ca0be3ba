//! Listing only the part of a `--from` tree a copy can reach.
//!
//! A stage's root holds tens of thousands of entries; `COPY --from=build /app/bin /x`
//! needs a few. The literal part of each source (up to its first wildcard) is resolved
//! inside the tree first, symlinks included, so the walk can be limited to what lies
//! beneath it. When a narrowed selection cannot be resolved (a symlink leading out of
//! the walked part), the caller falls back to a walk of the whole tree.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::dest::DestRoot;
use super::{CopyError, CopyOp};
use crate::context::IgnoreRules;

/// How a tree's listing is narrowed for one op.
pub(crate) struct Narrowing {
    /// Ignore rules that keep only what the sources can reach.
    pub rules: IgnoreRules,
    /// Each source rewritten to its resolved path (as a pattern).
    pub rewrites: HashMap<String, String>,
}

/// The narrowing of a tree's listing for `op`; `None` when the whole tree must be
/// listed (`--parents`, a source naming the root or with a wildcard before its last
/// component).
pub(crate) fn narrowing(root: &Path, op: &CopyOp) -> Result<Option<Narrowing>, CopyError> {
    if op.parents {
        return Ok(None);
    }
    let tree = DestRoot::open(root)?;
    let mut rules = String::from("*\n");
    let mut rewrites = HashMap::new();
    for source in &op.sources {
        let parts: Vec<&str> = Path::new(source)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => n.to_str(),
                Component::ParentDir => Some(".."),
                _ => None,
            })
            .collect();
        let Some((last, parents)) = parts.split_last() else {
            return Ok(None);
        };
        if parents.contains(&"..") || *last == ".." {
            return Ok(None);
        }
        if parents.iter().any(|p| has_wildcard(p)) {
            return Ok(None);
        }
        let parent: PathBuf = parents.iter().collect();
        let resolved = tree
            .resolve(&parent)
            .map_err(CopyError::dest("resolve", &parent))?;
        // The last component stays as written: a wildcard, or a name whose symlink
        // the copy follows itself.
        let rewritten = resolved.join(last);
        if rewritten.as_os_str().is_empty() {
            return Ok(None);
        }
        let keep = if has_wildcard(last) {
            if resolved.as_os_str().is_empty() {
                return Ok(None);
            }
            resolved.clone()
        } else {
            rewritten.clone()
        };
        rules.push('!');
        rules.push_str(&escape(&keep.to_string_lossy()));
        rules.push('\n');
        let pattern = if resolved.as_os_str().is_empty() {
            (*last).to_owned()
        } else {
            format!("{}/{last}", escape(&resolved.to_string_lossy()))
        };
        rewrites.insert(source.clone(), pattern);
    }
    let rules = IgnoreRules::parse(&rules).map_err(CopyError::Exclude)?;
    Ok(Some(Narrowing { rules, rewrites }))
}

fn has_wildcard(part: &str) -> bool {
    part.contains(['*', '?', '[', '\\'])
}

/// A literal path as a .dockerignore pattern.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn op(sources: &[&str], parents: bool) -> CopyOp {
        CopyOp {
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            heredocs: Vec::new(),
            dest: "/x/".to_owned(),
            workdir: "/".to_owned(),
            chown: None,
            chmod: None,
            excludes: Vec::new(),
            parents,
            link: false,
            add: false,
            checksum: None,
            keep_git_dir: false,
            limits: Default::default(),
        }
    }

    #[test]
    fn sources_are_resolved_and_the_rest_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::create_dir_all(dir.path().join("big")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", dir.path().join("lib")).unwrap();
        let n = narrowing(dir.path(), &op(&["/lib/libz.so.1", "/opt/*.whl"], false))
            .unwrap()
            .unwrap();
        assert_eq!(n.rewrites["/lib/libz.so.1"], "usr/lib/libz.so.1");
        assert_eq!(n.rewrites["/opt/*.whl"], "opt/*.whl");
        assert!(n.rules.is_excluded("big/1"));
        assert!(n.rules.is_excluded("usr/bin"));
        assert!(!n.rules.is_excluded("usr/lib/libz.so.1"));
        assert!(!n.rules.is_excluded("opt/a.whl"));
        // The whole tree is listed for the root, a wildcard in a directory, --parents.
        for (sources, parents) in [(&["."][..], false), (&["/*/lib"], false), (&["a"], true)] {
            assert!(
                narrowing(dir.path(), &op(sources, parents))
                    .unwrap()
                    .is_none()
            );
        }
    }
}
