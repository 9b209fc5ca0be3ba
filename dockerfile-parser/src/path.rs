//! Lexical path handling, as Dockerfile instructions and `.dockerignore` patterns see
//! paths: slash-separated, cleaned like Go's `path.Clean`, never touching a filesystem.

/// Cleans a slash-separated path like Go's `path.Clean`: collapses `//`, drops `.`,
/// resolves `..` against earlier components (kept at the front of a relative path,
/// dropped at the root of an absolute one); the empty path is `.`.
///
/// ```
/// use rbuild_dockerfile::clean_path;
/// assert_eq!(clean_path("./a//b/../c/"), "a/c");
/// assert_eq!(clean_path("/../a"), "/a");
/// assert_eq!(clean_path("../a"), "../a");
/// assert_eq!(clean_path(""), ".");
/// ```
pub fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// The working directory after `WORKDIR path` when it was `current` (`None`: never set),
/// as BuildKit's `NormalizeWorkdir` makes it for Linux: an absolute `path` is taken as
/// written (not cleaned: `/a/../b/` stays, and so reaches the image config and the
/// runtime); a relative one is joined to `current` (or `/`) and cleaned; an empty one
/// keeps `current`. A relative `current` (an image config may hold one) is first taken
/// from `/`, so the result is always absolute.
///
/// ```
/// use rbuild_dockerfile::normalize_workdir;
/// assert_eq!(normalize_workdir(None, "a"), "/a");
/// assert_eq!(normalize_workdir(Some("/a"), "b/../c/"), "/a/c");
/// assert_eq!(normalize_workdir(Some("/a"), "/x//y/"), "/x//y/");
/// assert_eq!(normalize_workdir(Some("a"), "b"), "/a/b");
/// assert_eq!(normalize_workdir(Some("/a"), ""), "/a");
/// ```
pub fn normalize_workdir(current: Option<&str>, path: &str) -> String {
    let parent = match current.filter(|c| !c.is_empty()) {
        None => "/".to_owned(),
        Some(c) if c.starts_with('/') => c.to_owned(),
        Some(c) => clean_path(&format!("/{c}")),
    };
    if path.is_empty() {
        return parent;
    }
    if path.starts_with('/') {
        return path.to_owned();
    }
    clean_path(&format!("{parent}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean_path("a/.."), ".");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("//a/./b//"), "/a/b");
    }

    /// Issue 14, bug 3: `WORKDIR a` then `WORKDIR b` on an image without a WorkingDir
    /// gave `a/b` (and a RUN in `/b`); BuildKit makes it `/a/b`.
    #[test]
    fn relative_workdir_without_a_current_one_starts_at_the_root() {
        assert_eq!(normalize_workdir(None, "a"), "/a");
        assert_eq!(normalize_workdir(Some("/a"), "b"), "/a/b");
        assert_eq!(normalize_workdir(None, "."), "/");
        assert_eq!(normalize_workdir(None, ".."), "/");
        assert_eq!(normalize_workdir(None, "rel/../x/"), "/x");
        assert_eq!(normalize_workdir(Some("/"), "./d//e/."), "/d/e");
    }

    #[test]
    fn absolute_workdir_is_kept_as_written() {
        assert_eq!(normalize_workdir(None, "/a/../b/"), "/a/../b/");
        assert_eq!(normalize_workdir(Some("/q"), "/x//y/./"), "/x//y/./");
        // A relative step after an unclean absolute one is cleaned with it.
        assert_eq!(normalize_workdir(Some("/a/../b/"), "c/"), "/b/c");
    }

    /// A base image whose config holds a relative WorkingDir: BuildKit replays it as a
    /// WORKDIR relative to itself (checked against docker 28.5: `a/b` became `/a/b/a/b`).
    #[test]
    fn relative_current_workdir_is_taken_from_the_root() {
        assert_eq!(normalize_workdir(Some("a/b"), "a/b"), "/a/b/a/b");
        assert_eq!(normalize_workdir(Some("a"), ""), "/a");
    }
}
