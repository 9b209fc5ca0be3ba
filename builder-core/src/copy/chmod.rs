//! `--chmod`: an octal mode, or a symbolic one (`u+x,go=rX`) as chmod(1) and
//! BuildKit's Dockerfile frontend (1.14 and later) accept.

/// A `--chmod` value that is not a mode.
#[derive(Debug, thiserror::Error)]
#[error("invalid --chmod={spec}: {reason}")]
pub struct ChmodError {
    /// The value as written.
    pub spec: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// How `--chmod` changes the mode of each copied file and directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeChange {
    /// An octal mode, set as is.
    Octal(u32),
    /// Symbolic clauses applied in order to each entry's own mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` part of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The bits of `u`, `g`, `o` the clause touches (`a` or nothing: all).
    who: u32,
    /// `+`, `-` or `=`.
    op: char,
    /// `rwxst` as bits for every class; `X` separately.
    perms: u32,
    /// `X`: execute only for directories or entries already executable by someone.
    cond_exec: bool,
}

/// The umask dockerd (and so BuildKit's file operations) runs with: docker sets it to
/// 0022 at start.
const DOCKERD_UMASK: u32 = 0o022;
/// Mode of the directories a copy creates without an octal `--chmod` (fsutil's
/// `defaultDirectoryMode`).
pub(crate) const DEFAULT_DIR_MODE: u32 = 0o755;

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl ModeChange {
    /// Parses a `--chmod` value.
    pub fn parse(spec: &str) -> Result<ModeChange, ChmodError> {
        let bad = |reason| ChmodError {
            spec: spec.to_owned(),
            reason,
        };
        if spec.is_empty() {
            return Err(bad("empty mode"));
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(spec, 8).map_err(|_| bad("not an octal number"))?;
            if mode > 0o7777 {
                return Err(bad("octal mode above 7777"));
            }
            return Ok(ModeChange::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => USER | GROUP | OTHER,
                    _ => break,
                };
                chars.next();
            }
            if who == 0 {
                who = USER | GROUP | OTHER;
            }
            let mut any = false;
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad("expected +, - or = in a symbolic mode"));
                }
                let mut perms = 0;
                let mut cond_exec = false;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => perms |= 0o444,
                        'w' => perms |= 0o222,
                        'x' => perms |= 0o111,
                        'X' => cond_exec = true,
                        's' => perms |= 0o6000,
                        't' => perms |= 0o1000,
                        '+' | '-' | '=' => break,
                        _ => return Err(bad("unknown permission letter in a symbolic mode")),
                    }
                    chars.next();
                }
                any = true;
                clauses.push(Clause {
                    who,
                    op,
                    perms,
                    cond_exec,
                });
            }
            if !any {
                return Err(bad("symbolic mode without an operator"));
            }
        }
        Ok(ModeChange::Symbolic(clauses))
    }

    /// The mode of the directories a copy with this `--chmod` (or none) creates for its
    /// destination: the destination itself when it names a directory, and every missing
    /// parent. BuildKit's fsutil `Copy` makes them with `MkdirAll(path, mode)`, where the
    /// mode is `--chmod`'s when octal (Go's `os.Mkdir` keeps only its permission bits)
    /// and 0755 otherwise, under dockerd's umask (issue 14, bug 13: `COPY --chmod=770
    /// foo /parent/sub/foo` makes `/parent/sub` 0750 in docker 28.5).
    pub(crate) fn created_dir_mode(change: Option<&ModeChange>) -> u32 {
        match change {
            Some(ModeChange::Octal(mode)) => mode & 0o777 & !DOCKERD_UMASK,
            _ => DEFAULT_DIR_MODE,
        }
    }

    /// The mode an entry with `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            ModeChange::Octal(m) => return *m,
            ModeChange::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for c in clauses {
            let mut bits = c.perms;
            if c.cond_exec && (is_dir || mode & 0o111 != 0) {
                bits |= 0o111;
            }
            let bits = bits & c.who;
            mode = match c.op {
                '+' => mode | bits,
                '-' => mode & !bits,
                _ => (mode & !c.who) | bits,
            };
        }
        mode
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Issue 14, bug 13, checked against docker 28.5: the parents `COPY --chmod`
    /// creates get the octal mode less dockerd's umask; special bits and symbolic modes
    /// leave them 0755.
    #[test]
    fn created_directories_take_an_octal_mode_under_the_umask() {
        let created =
            |spec: &str| ModeChange::created_dir_mode(Some(&ModeChange::parse(spec).unwrap()));
        assert_eq!(created("770"), 0o750);
        assert_eq!(created("707"), 0o705);
        assert_eq!(created("600"), 0o600);
        assert_eq!(created("0"), 0);
        assert_eq!(created("4755"), 0o755);
        assert_eq!(created("777"), 0o755);
        assert_eq!(created("u+x,go=r"), 0o755);
        assert_eq!(ModeChange::created_dir_mode(None), 0o755);
    }

    fn apply(spec: &str, mode: u32, dir: bool) -> u32 {
        ModeChange::parse(spec).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_sets_the_mode() {
        assert_eq!(apply("755", 0o600, false), 0o755);
        assert_eq!(apply("0640", 0o777, true), 0o640);
        assert_eq!(apply("4755", 0o600, false), 0o4755);
        assert!(ModeChange::parse("8").is_err());
        assert!(ModeChange::parse("17777").is_err());
    }

    #[test]
    fn symbolic_modes_follow_chmod() {
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("a=r", 0o755, false), 0o444);
        assert_eq!(apply("u=rwx,go=rx", 0o600, false), 0o755);
        assert_eq!(apply("+X", 0o644, true), 0o755);
        assert_eq!(apply("+X", 0o644, false), 0o644);
        assert_eq!(apply("+X", 0o744, false), 0o755);
        assert_eq!(apply("g+s", 0o755, true), 0o2755);
        assert!(ModeChange::parse("u*x").is_err());
        assert!(ModeChange::parse("u").is_err());
    }
}
