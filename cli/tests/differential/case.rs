//! A differential case on disk, and the deliberate divergences it declares.
//!
//! ```text
//! <case>/Dockerfile            the Dockerfile both builders build
//! <case>/context/              the build context (else the case directory itself)
//! <case>/dockerfile-path       optional: the Dockerfile's path relative to the case
//!                              directory instead of Dockerfile (one line)
//! <case>/args                  optional: build args, one K=V a line (# comments)
//! <case>/target                optional: the stage to build (one line)
//! <case>/platforms             optional: a multi-platform case: the `--platform` list
//!                              both builders get (one line, `linux/amd64,linux/arm64`);
//!                              each platform's result is compared on its own
//! <case>/divergences.md        optional: allowed differences, each explained (see below)
//! <case>/secrets               optional: `--secret` values, one `id=ID,src=FILE` a line,
//!                              FILE relative to the case directory (# comments)
//! <case>/ssh                   optional: ssh ids, one a line: both builders get
//!                              `--ssh ID=KEY` with a key the harness generates
//! <case>/fails                 optional: a negative case: both builders must fail. Its
//!                              text says why; an optional line `rbuild-error: TEXT`
//!                              names a substring rbuild's error output must contain
//! <case>/SOURCE                where an adapted case came from (ignored here)
//! ```
//!
//! divergences.md is prose with directive lines; every paragraph holding a directive must
//! also hold at least one line of explanation:
//!
//! ```text
//! allow: <path-glob> <field>     a rootfs difference (field: presence type mode uid gid
//!                                size content link device hardlink mtime, or *)
//! allow-config: <Field>          an image config field (Env, Cmd, ...)
//! buildkit-dockerfile: <file>    BuildKit builds this Dockerfile (relative to the case
//!                                directory) instead, for features its frontend lacks
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};

use super::config::{self, ConfigDifference};
use super::tree::{Difference, Field};

/// One `allow:` line.
#[derive(Debug, Clone)]
pub struct Allowance {
    pub line: String,
    pub paths: GlobMatcher,
    /// None: any field.
    pub field: Option<Field>,
}

/// What a case's divergences.md declares.
#[derive(Debug, Clone, Default)]
pub struct Divergences {
    pub allow: Vec<Allowance>,
    pub allow_config: Vec<String>,
    pub buildkit_dockerfile: Option<PathBuf>,
}

impl Divergences {
    /// Whether the file declares nothing.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.allow_config.is_empty() && self.buildkit_dockerfile.is_none()
    }

    /// Parses the text of a divergences.md.
    pub fn parse(text: &str) -> Result<Divergences, String> {
        let mut out = Divergences::default();
        let mut paragraph_has_prose = false;
        let mut paragraph_directives: Vec<String> = Vec::new();
        let mut unexplained = Vec::new();
        for raw in text.lines().chain(std::iter::once("")) {
            let line = raw.trim();
            if line.is_empty() {
                if !paragraph_has_prose {
                    unexplained.append(&mut paragraph_directives);
                }
                paragraph_directives.clear();
                paragraph_has_prose = false;
                continue;
            }
            let directive = |name: &str| line.strip_prefix(name).map(str::trim);
            if let Some(rest) = directive("allow:") {
                let (glob, field) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| format!("`{line}`: expected `allow: <path-glob> <field>`"))?;
                let field = match field.trim() {
                    "*" => None,
                    name => Some(
                        Field::parse(name)
                            .ok_or_else(|| format!("`{line}`: unknown field {name}"))?,
                    ),
                };
                let paths = Glob::new(glob)
                    .map_err(|e| format!("`{line}`: bad glob: {e}"))?
                    .compile_matcher();
                out.allow.push(Allowance {
                    line: line.to_owned(),
                    paths,
                    field,
                });
            } else if let Some(rest) = directive("allow-config:") {
                if !config::FIELDS.contains(&rest) {
                    return Err(format!("`{line}`: unknown config field {rest}"));
                }
                out.allow_config.push(rest.to_owned());
            } else if let Some(rest) = directive("buildkit-dockerfile:") {
                if rest.is_empty() {
                    return Err(format!("`{line}`: expected a file name"));
                }
                out.buildkit_dockerfile = Some(PathBuf::from(rest));
            } else {
                paragraph_has_prose = true;
                continue;
            }
            paragraph_directives.push(line.to_owned());
        }
        if unexplained.is_empty() {
            Ok(out)
        } else {
            Err(format!(
                "directives without an explanation in their paragraph: {}",
                unexplained.join("; ")
            ))
        }
    }

    /// Whether an `allow:` line covers `d`.
    pub fn allows(&self, d: &Difference) -> bool {
        self.allow
            .iter()
            .any(|a| a.field.is_none_or(|f| f == d.field) && a.paths.is_match(d.path.as_str()))
    }

    /// The `allow:` lines that cover none of `found`: stale, once rbuild has caught up.
    pub fn unused<'a>(&'a self, found: &[Difference]) -> Vec<&'a str> {
        self.allow
            .iter()
            .filter(|a| {
                !found.iter().any(|d| {
                    a.field.is_none_or(|f| f == d.field) && a.paths.is_match(d.path.as_str())
                })
            })
            .map(|a| a.line.as_str())
            .collect()
    }

    /// Whether an `allow-config:` line covers `d`.
    pub fn allows_config(&self, d: &ConfigDifference) -> bool {
        self.allow_config.iter().any(|f| f == d.field)
    }
}

/// What a negative case's `fails` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fails {
    /// Why both builders must fail (the file's other lines).
    pub reason: String,
    /// A substring rbuild's error output must contain.
    pub rbuild_error: Option<String>,
}

impl Fails {
    /// Parses the text of a `fails` file; the reason must not be empty.
    pub fn parse(text: &str) -> Result<Fails, String> {
        let mut reason = Vec::new();
        let mut rbuild_error = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.strip_prefix("rbuild-error:") {
                Some(rest) if rest.trim().is_empty() => {
                    return Err(format!("`{line}`: expected the text rbuild's error holds"));
                }
                Some(_) if rbuild_error.is_some() => {
                    return Err("more than one `rbuild-error:` line".into());
                }
                Some(rest) => rbuild_error = Some(rest.trim().to_owned()),
                None => reason.push(line),
            }
        }
        if reason.is_empty() {
            return Err("no explanation of why both builders must fail".into());
        }
        Ok(Fails {
            reason: reason.join(" "),
            rbuild_error,
        })
    }
}

/// A case directory found in a set: read, or why it cannot be.
#[derive(Debug)]
pub struct CaseDir {
    /// `set/name`, as [`Case::id`].
    pub id: String,
    pub case: Result<Case, String>,
}

/// A case directory, read.
#[derive(Debug, Clone)]
pub struct Case {
    /// The directory's name.
    pub name: String,
    /// The name of the directory holding the case (`differential`, `external`, ...).
    pub set: String,
    pub context: PathBuf,
    /// The Dockerfile rbuild builds.
    pub dockerfile: PathBuf,
    /// The Dockerfile BuildKit builds (the same one unless divergences.md names another).
    pub buildkit_dockerfile: PathBuf,
    pub build_args: Vec<String>,
    pub target: Option<String>,
    /// The platforms of a multi-platform case, in order; empty for the others.
    pub platforms: Vec<String>,
    pub divergences: Divergences,
    /// `--secret` values, their `src=` made absolute.
    pub secrets: Vec<String>,
    /// ssh ids to forward an agent for.
    pub ssh: Vec<String>,
    /// Set for a negative case.
    pub fails: Option<Fails>,
}

/// The non-comment, non-empty lines of an optional file.
fn lines_of(path: &Path) -> Result<Vec<String>, String> {
    Ok(read_optional(path)?
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn one_line(path: &Path) -> Result<Option<String>, String> {
    Ok(read_optional(path)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty()))
}

impl Case {
    /// Reads the case in `dir`.
    pub fn load(dir: &Path) -> Result<Case, String> {
        let utf8_name = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("case directory {} has no UTF-8 name", p.display()))
        };
        let name = utf8_name(dir)?;
        let set = dir.parent().map_or(Ok(String::new()), utf8_name)?;
        let context = if dir.join("context").is_dir() {
            dir.join("context")
        } else {
            dir.to_path_buf()
        };
        let dockerfile = match one_line(&dir.join("dockerfile-path"))? {
            Some(p) => dir.join(p),
            None => dir.join("Dockerfile"),
        };
        if !dockerfile.is_file() {
            return Err(format!(
                "case {name}: no Dockerfile at {}",
                dockerfile.display()
            ));
        }
        let build_args = read_optional(&dir.join("args"))?
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                if l.contains('=') {
                    Ok(l.to_owned())
                } else {
                    Err(format!("case {name}: build arg `{l}` is not K=V"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target = one_line(&dir.join("target"))?;
        let platforms: Vec<String> = one_line(&dir.join("platforms"))?
            .map(|line| line.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default();
        if let Some(bad) = platforms.iter().find(|p| p.split('/').count() < 2) {
            return Err(format!(
                "case {name}: platforms: `{bad}` is not os/arch[/variant]"
            ));
        }
        let divergences = match read_optional(&dir.join("divergences.md"))? {
            Some(text) => Divergences::parse(&text)
                .map_err(|e| format!("case {name}: divergences.md: {e}"))?,
            None => Divergences::default(),
        };
        let buildkit_dockerfile = match &divergences.buildkit_dockerfile {
            Some(p) => {
                let p = dir.join(p);
                if !p.is_file() {
                    return Err(format!(
                        "case {name}: divergences.md names {} which does not exist",
                        p.display()
                    ));
                }
                p
            }
            None => dockerfile.clone(),
        };
        let secrets = lines_of(&dir.join("secrets"))?
            .into_iter()
            .map(|line| {
                let fields: Vec<String> = line
                    .split(',')
                    .map(|f| match f.strip_prefix("src=") {
                        Some(src) => format!("src={}", dir.join(src).display()),
                        None => f.to_owned(),
                    })
                    .collect();
                if fields.iter().any(|f| f.starts_with("id=")) {
                    Ok(fields.join(","))
                } else {
                    Err(format!("case {name}: secret `{line}` has no id="))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ssh = lines_of(&dir.join("ssh"))?;
        let fails = match read_optional(&dir.join("fails"))? {
            Some(text) => {
                Some(Fails::parse(&text).map_err(|e| format!("case {name}: fails: {e}"))?)
            }
            None => None,
        };
        if fails.is_some() && !divergences.is_empty() {
            return Err(format!(
                "case {name}: a negative case (fails) builds nothing to compare; its \
                 divergences.md has no meaning"
            ));
        }
        Ok(Case {
            name,
            set,
            context,
            dockerfile,
            buildkit_dockerfile,
            build_args,
            target,
            platforms,
            divergences,
            secrets,
            ssh,
            fails,
        })
    }

    /// `set/name`: unique among the cases of one run.
    pub fn id(&self) -> String {
        format!("{}/{}", self.set, self.name)
    }

    /// Every case directory under `root` (but [`NOTICES_DIR`]), in name order, each read or with why it cannot
    /// be (a broken case fails on its own instead of stopping the run).
    pub fn all(root: &Path) -> Result<Vec<CaseDir>, String> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(root)
            .map_err(|e| format!("reading case directory {}: {e}", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            // A set's licence notices (fixtures/external/LICENSES) are no case.
            .filter(|p| p.file_name().is_none_or(|n| n != NOTICES_DIR))
            .collect();
        dirs.sort();
        let set = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(dirs
            .iter()
            .map(|d| {
                let name = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                CaseDir {
                    id: format!("{set}/{name}"),
                    case: Case::load(d),
                }
            })
            .collect())
    }

    /// The base images the case's Dockerfiles name (by a plain text search of the known
    /// fixture image names).
    pub fn uses_image(&self, image: &str) -> bool {
        [&self.dockerfile, &self.buildkit_dockerfile]
            .iter()
            .any(|p| fs::read_to_string(p).is_ok_and(|t| t.contains(image)))
    }
}

/// The directory of a case set that holds the licence notices of the projects its cases
/// come from, not a case.
pub const NOTICES_DIR: &str = "LICENSES";
