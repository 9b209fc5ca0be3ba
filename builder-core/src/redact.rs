//! Credentials in URLs kept out of everything rbuild displays or stores.
//!
//! A URL may carry a user name and password (`https://ci:TOKEN@host/x`, the userinfo of
//! RFC 3986). rbuild uses them to fetch, but never writes them to an image's history, a
//! cache entry, a progress event or an error message: [`redact_urls`] replaces each
//! URL's userinfo with [`REDACTED`] in any text.

use std::borrow::Cow;

/// What a URL's userinfo is replaced with.
pub const REDACTED: &str = "xxxxx";

/// `text` with the userinfo of every URL in it (`scheme://userinfo@host...`) replaced by
/// [`REDACTED`]; text without one is returned as it is.
///
/// ```
/// use rbuild_core::redact::redact_urls;
/// assert_eq!(
///     redact_urls("ADD http://ci:s3cret@host/x /g"),
///     "ADD http://xxxxx@host/x /g"
/// );
/// assert_eq!(redact_urls("RUN echo a@b"), "RUN echo a@b");
/// ```
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, query or fragment, or where the URL ends.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | '\\')
                    || c.is_whitespace()
                    || c.is_control()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(user_end) => {
                out.push_str(REDACTED);
                out.push_str(&authority[user_end..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `text` holds a URL with userinfo.
pub fn has_url_credentials(text: &str) -> bool {
    matches!(redact_urls(text), Cow::Owned(_))
}

/// The name parts that make a build argument or environment variable look like a
/// secret, as BuildKit's `SecretsUsedInArgOrEnv` check reads names.
const SECRET_WORDS: &[&str] = &[
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];

/// Whether `name` (of an `ARG` or `ENV`) looks like it holds a secret: one of its parts,
/// split at `_`, `-` and `.` and compared without case, is a word such as `password`,
/// `token`, `secret`, `key` or `auth`; a part right after `public` does not count
/// (`PUBLIC_KEY`, `GPG_PUBLIC_KEY` are harmless), as in BuildKit's check.
pub fn is_secret_name(name: &str) -> bool {
    let parts: Vec<String> = name
        .split(['_', '-', '.'])
        .map(str::to_ascii_lowercase)
        .collect();
    parts.iter().enumerate().any(|(i, part)| {
        SECRET_WORDS.contains(&part.as_str())
            && !(i > 0 && parts.get(i - 1).is_some_and(|p| p == "public"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "PASSWORD",
            "DB_PASSWORD",
            "github_token",
            "AWS_SECRET_ACCESS_KEY",
            "API-KEY",
            "npm_auth",
            "ApiKey",
            "passwd",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "VERSION",
            "PUBLIC_KEY",
            "GPG_PUBLIC_KEY",
            "KEYBOARD",
            "TOKENIZER_MODEL",
            "AUTHOR",
            "BUILDKIT_INLINE_CACHE",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn userinfo_is_replaced_everywhere() {
        assert_eq!(
            redact_urls("ADD https://u:p@h:1/a?b=c@d http://x@y /g"),
            "ADD https://xxxxx@h:1/a?b=c@d http://xxxxx@y /g"
        );
        assert_eq!(redact_urls("https://a:b@c@host"), "https://xxxxx@host");
        assert_eq!(redact_urls("\"http://t@h\""), "\"http://xxxxx@h\"");
        assert_eq!(redact_urls("GET http://h/v2/ a@b"), "GET http://h/v2/ a@b");
        assert_eq!(redact_urls("no url"), "no url");
        assert!(has_url_credentials("git://tok@host/r"));
        assert!(!has_url_credentials("http://host/a@b"));
    }
}
