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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean_path("a/.."), ".");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("//a/./b//"), "/a/b");
    }
}
