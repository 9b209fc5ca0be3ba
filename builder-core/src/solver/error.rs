//! The build's error type, gathering the errors of the modules it drives.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_dockerfile::Span;

use crate::context::{ContextError, HashError, IgnoreError, WalkError};
use crate::copy::CopyError;
use crate::error_chain::error_chain;
use crate::exec::ExecError;
use crate::export::ExportError;
use crate::image::ImageError;
use crate::layer::LayerError;
use crate::registry::RegistryError;
use crate::snapshot::SnapshotError;
use crate::store::{ImageName, StoreError};

/// A failed build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile could not be read.
    #[error("failed to read dockerfile {path}")]
    ReadDockerfile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The Dockerfile does not parse or lower: the parser's error, its span at `at`.
    #[error("{at}: {error}")]
    Dockerfile {
        /// The file, and where in it ([`rbuild_dockerfile::Error::span`]).
        at: Location,
        /// Whether it failed to parse or to lower into a build graph.
        phase: DockerfilePhase,
        /// What went wrong ([`rbuild_dockerfile::Error::kind`]).
        error: rbuild_dockerfile::Error,
    },
    /// A base image (or `--from` image) could not be found or loaded: `at` is the line
    /// that asked for it, the source why ([`BuildError::ImageNotFound`],
    /// [`BuildError::Pull`] with the registry's error, ...).
    #[error("{at}: failed to resolve image {reference}")]
    BaseImage {
        /// The image as the Dockerfile names it.
        reference: String,
        /// The `FROM` (or `COPY --from`, `RUN --mount=from=`) that names it.
        at: Location,
        /// Why.
        source: Box<BuildError>,
    },
    /// An `ONBUILD` trigger of a base image (or stage) does not parse.
    #[error(
        "{at}: failed to parse ONBUILD trigger {trigger:?} of {from}: {}",
        trigger_error(error)
    )]
    OnbuildTrigger {
        /// The trigger's text.
        trigger: String,
        /// Where it comes from: the image's name, or `stage N`.
        from: String,
        /// The `FROM` of the stage that inherits it.
        at: Location,
        /// What the parser said, its span in the two-line file `FROM scratch\nTRIGGER`.
        error: rbuild_dockerfile::Error,
    },
    /// A `COPY <<EOF` heredoc's variables do not expand.
    #[error("{at}: {error}")]
    HeredocExpansion {
        /// The step.
        at: Location,
        /// Why.
        error: rbuild_dockerfile::ExpandError,
    },
    /// An instruction's value is invalid for the image config (a bad `HEALTHCHECK`
    /// duration, `STOPSIGNAL`, ...).
    #[error("{at}: {message}")]
    Instruction {
        /// The instruction.
        at: Location,
        /// What is wrong, lower case.
        message: String,
    },
    /// The build asks for something it was not allowed (`--allow`).
    #[error("{}{what} is not allowed: pass --allow {entitlement}", prefix(at.as_ref()))]
    NotEntitled {
        /// What asked for it (`--network=host`, `RUN --security=insecure`).
        what: &'static str,
        /// The entitlement that would allow it.
        entitlement: super::request::Entitlement,
        /// The step that asked for it, if a step did (not the request).
        at: Option<Location>,
    },
    /// A `FROM docker-archive://` (`oci-archive://`, `oci-layout://`) path outside the
    /// build context that no `--allow fs.read=DIR` covers.
    #[error(
        "{path} is outside the build context: a Dockerfile may load archives and layouts only from its context, unless the build allows their directory with --allow fs.read=DIR"
    )]
    OutsideContext {
        /// The path as the Dockerfile names it.
        path: PathBuf,
    },
    /// An image reference names nothing rbuild can load.
    #[error("image {0} not found in the store{hint}", hint = not_found_hint(.0))]
    ImageNotFound(String),
    /// A base image is not in the store (or `--pull` asked for a fresh look-up) and
    /// pulling it from its registry failed.
    #[error(
        "failed to pull image {reference}{}",
        pull_hint(.reference, *.in_store, .similar, .store_platforms)
    )]
    Pull {
        /// The image as the Dockerfile names it.
        reference: String,
        /// Whether the store has an image of that name (then `--pull` asked for a new one,
        /// or the build wants another platform than `store_platforms`).
        in_store: bool,
        /// The platforms the store has the name for, when the build wanted another.
        store_platforms: Vec<String>,
        /// Names in the store close to `reference` (a typo'd tag or repository).
        similar: Vec<String>,
        /// Why the pull failed.
        source: Box<RegistryError>,
    },
    /// Pushing the built image (`--push`, `-o type=registry`) failed.
    #[error("failed to push image {name}")]
    Push {
        /// Where it was pushed.
        name: ImageName,
        /// Why.
        source: Box<RegistryError>,
    },
    /// A `RUN` step's command failed.
    #[error("{location}: {name}: {message}{}", tail_text(.tail))]
    StepFailed {
        /// `Dockerfile:LINE`.
        location: String,
        /// The step's display name.
        name: String,
        /// What went wrong, lower case.
        message: String,
        /// The command's exit code; `None` when it did not exit (killed by a signal).
        exit_code: Option<i32>,
        /// The last lines of the step's output.
        tail: Vec<String>,
    },
    /// A step could not be carried out (not the command's fault).
    #[error("{location}: failed to build {name}")]
    Step {
        /// `Dockerfile:LINE`.
        location: String,
        /// The step's display name.
        name: String,
        /// The underlying error.
        #[source]
        source: Box<BuildError>,
    },
    /// The build was canceled because another stage failed.
    #[error("build canceled")]
    Canceled,
    /// A `SOURCE_DATE_EPOCH` build argument that is not a number of seconds.
    #[error("invalid SOURCE_DATE_EPOCH {value:?}: expected seconds since 1970-01-01")]
    SourceDateEpoch {
        /// The value given.
        value: String,
    },
    /// `--reproducible-check`: two builds from an empty cache gave different images.
    #[error("build is not reproducible: {first} and {second} differ: {difference}")]
    NotReproducible {
        /// The manifest digest of the first build.
        first: crate::digest::Digest,
        /// The manifest digest of the second build.
        second: crate::digest::Digest,
        /// The first difference found, e.g. `/t: content differs`.
        difference: String,
    },
    /// A filesystem operation of the build failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A cache entry could not be written or read.
    #[error("failed to {action} cache entry {path}")]
    Cache {
        /// What was being done.
        action: &'static str,
        /// The entry.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The build context.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// Copying files.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// Setting up a `RUN --mount`.
    #[error(transparent)]
    Mount(#[from] super::mounts::MountError),
    /// Running a step.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Exporting the image.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Assembling or reading an image.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Writing or unpacking a layer.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Preparing or diffing a snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The content store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Importing or exporting a shared cache (`--cache-from`, `--cache-to`).
    #[error(transparent)]
    CacheShare(#[from] super::cache::share::CacheShareError),
}

/// Whether a [`BuildError::Dockerfile`] came from parsing the file or from lowering it
/// into a build graph (build arguments, stage references, `--target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DockerfilePhase {
    /// [`rbuild_dockerfile::parse`].
    Parse,
    /// [`rbuild_dockerfile::lower`].
    Lower,
}

/// A place in the Dockerfile: the file's name and, when known, the span; it keeps the
/// file's text to quote the line when rendered ([`BuildError::render`]).
#[derive(Clone)]
pub struct Location(
    // Shared and behind one pointer: errors stay small, and cloning one is cheap.
    Arc<Place>,
);

struct Place {
    file: String,
    text: String,
    span: Option<Span>,
}

impl Location {
    pub(crate) fn new(file: &str, text: &str, span: Option<Span>) -> Location {
        Location(Arc::new(Place {
            file: file.to_owned(),
            text: text.to_owned(),
            span,
        }))
    }

    /// The file's name as rbuild shows it (`Dockerfile`, `app.Dockerfile`, `-`).
    pub fn file(&self) -> &str {
        &self.0.file
    }

    /// The region of the file, when known.
    pub fn span(&self) -> Option<Span> {
        self.0.span
    }

    /// The 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        self.0.span.map(|s| s.start_line)
    }

    /// The 1-based column (in characters), when known.
    pub fn column(&self) -> Option<usize> {
        self.0.span.map(|s| s.start_column)
    }

    /// The quoted source line and the caret under the column, as
    /// [`rbuild_dockerfile::Error::render`] draws them; no final newline.
    fn quote(&self) -> Option<String> {
        let span = self.0.span?;
        let text = self
            .0
            .text
            .split('\n')
            .nth(span.start_line.saturating_sub(1))?;
        let text = text.trim_end_matches('\r');
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let quoted = rbuild_dockerfile::quote_line(span.start_line, span.start_column, text);
        Some(quoted.trim_end_matches('\n').to_owned())
    }
}

/// The file and span; not the text, which can be long.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("file", &self.0.file)
            .field("span", &self.0.span)
            .finish_non_exhaustive()
    }
}

/// `FILE:LINE:COLUMN`, or `FILE` when the place in it is not known.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.span {
            Some(span) => write!(
                f,
                "{}:{}:{}",
                self.0.file, span.start_line, span.start_column
            ),
            None => f.write_str(&self.0.file),
        }
    }
}

impl BuildError {
    /// The error for a person, as rbuild's CLI prints it: the error and its causes,
    /// `: `-separated, and for an error at a place in the Dockerfile the line quoted
    /// with a caret under the column:
    ///
    /// ```text
    /// Dockerfile:2:6: unknown flag --frm for COPY
    ///     2 | COPY --frm=x a b
    ///       |      ^
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut link: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = link {
            if !out.is_empty() {
                out.push_str(": ");
            }
            // A boxed source (`Step`, `BaseImage`) is linked as the box itself.
            let build_error = error
                .downcast_ref::<BuildError>()
                .or_else(|| error.downcast_ref::<Box<BuildError>>().map(|b| &**b));
            let located = build_error.and_then(|e| Some((e, e.location()?)));
            if let Some((error, at)) = located {
                // The causes of a located error are part of its message; the quote ends it.
                out.push_str(&error_chain(error));
                if let Some(quote) = at.quote() {
                    out.push('\n');
                    out.push_str(&quote);
                }
                // A parse error has always been printed with the parser's final newline.
                if matches!(
                    error,
                    BuildError::Dockerfile {
                        phase: DockerfilePhase::Parse,
                        ..
                    }
                ) {
                    out.push('\n');
                }
                return out;
            }
            out.push_str(&error.to_string());
            link = error.source();
        }
        out
    }

    /// Where in the Dockerfile the error is, for errors about a place in it.
    pub fn location(&self) -> Option<&Location> {
        match self {
            BuildError::Dockerfile { at, .. }
            | BuildError::BaseImage { at, .. }
            | BuildError::OnbuildTrigger { at, .. }
            | BuildError::HeredocExpansion { at, .. }
            | BuildError::Instruction { at, .. } => Some(at),
            BuildError::NotEntitled { at, .. } => at.as_ref(),
            _ => None,
        }
    }

    /// The registry's error behind this one (a failed pull of a base image, a failed
    /// push), to ask its [`RegistryError::kind`].
    pub fn registry_error(&self) -> Option<&RegistryError> {
        match self {
            BuildError::Pull { source, .. } | BuildError::Push { source, .. } => Some(source),
            BuildError::BaseImage { source, .. } | BuildError::Step { source, .. } => {
                source.registry_error()
            }
            _ => None,
        }
    }
}

/// `LOCATION: ` before a message, or nothing.
fn prefix(at: Option<&Location>) -> String {
    at.map(|at| format!("{at}: ")).unwrap_or_default()
}

/// A trigger's parse error as it has always been shown: `dockerfile line L:C: message`.
fn trigger_error(error: &rbuild_dockerfile::Error) -> String {
    match error.span() {
        Some(span) => format!(
            "dockerfile line {}:{}: {error}",
            span.start_line, span.start_column
        ),
        None => format!("dockerfile: {error}"),
    }
}

impl From<IgnoreError> for BuildError {
    fn from(e: IgnoreError) -> Self {
        BuildError::Context(e.into())
    }
}

impl From<WalkError> for BuildError {
    fn from(e: WalkError) -> Self {
        BuildError::Context(e.into())
    }
}

impl From<HashError> for BuildError {
    fn from(e: HashError) -> Self {
        BuildError::Context(e.into())
    }
}

/// How to make one of this repository's fixture images (`rbuild-fixtures/NAME:TAG`),
/// which are made by a script and never in a registry.
fn fixture_recipe(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix("rbuild-fixtures/")?;
    let (name, tag) = rest.split_once(':').unwrap_or((rest, "latest"));
    // Only the names and tags fixtures/base-images/make gives: a typo'd one must not be
    // suggested as a name to create.
    let known = matches!(
        (name, tag),
        ("busybox", "latest")
            | ("python3", "bookworm")
            | ("gcc", "bookworm")
            | ("node", "bookworm")
            | ("golang", "bookworm")
    );
    known.then(|| format!("rbuild import \"$(fixtures/base-images/make {name})\" {reference}"))
}

/// What to do about a missing image: the fixture images of this repository are made by
/// a script; others must be pulled or loaded first.
fn not_found_hint(reference: &str) -> String {
    match fixture_recipe(reference) {
        Some(recipe) => format!(" (make it with: {recipe})"),
        None => " (pull or load it first: rbuild pull, rbuild load)".to_owned(),
    }
}

/// What to say about a base image the registry did not give: the fixture images of this
/// repository are made by a script, not pulled; names in the store close to it may be
/// what was meant.
fn pull_hint(
    reference: &str,
    in_store: bool,
    similar: &[String],
    store_platforms: &[String],
) -> String {
    let mut hint = if !store_platforms.is_empty() {
        format!(
            " (the store has it for {} only: import it for this platform, `rbuild import \
             --platform`, or let the build pull it)",
            store_platforms.join(", ")
        )
    } else if in_store {
        String::new()
    } else if let Some(recipe) = fixture_recipe(reference) {
        format!(" (it is not in the store: make it with: {recipe})")
    } else {
        " (it is not in the store either)".to_owned()
    };
    if !similar.is_empty() && !in_store {
        hint.push_str(&format!("; the store has {}", similar.join(", ")));
    }
    hint
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n------\n");
    for line in tail {
        out.push_str(" > ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("------");
    out
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn located_errors_render_with_their_line_quoted_also_as_the_cause_of_a_step() {
        let text = "FROM busybox\nSTOPSIGNAL SIGFOO\n";
        let span = rbuild_dockerfile::Span::from_offsets(text, 13, 30);
        let located = BuildError::Instruction {
            at: Location::new("Dockerfile", text, Some(span)),
            message: "invalid signal: SIGFOO".to_owned(),
        };
        let quoted = "Dockerfile:2:1: invalid signal: SIGFOO\n    2 | STOPSIGNAL SIGFOO\n      | ^";
        assert_eq!(
            located.to_string(),
            "Dockerfile:2:1: invalid signal: SIGFOO"
        );
        assert_eq!(located.render(), quoted);
        let step = BuildError::Step {
            location: "Dockerfile:2".to_owned(),
            name: "[2/2] STOPSIGNAL SIGFOO".to_owned(),
            source: Box::new(located),
        };
        assert_eq!(
            step.render(),
            format!("Dockerfile:2: failed to build [2/2] STOPSIGNAL SIGFOO: {quoted}")
        );
    }

    #[test]
    fn missing_fixture_images_say_how_to_make_them() {
        let err = BuildError::ImageNotFound("rbuild-fixtures/python3:bookworm".to_owned());
        assert_eq!(
            err.to_string(),
            "image rbuild-fixtures/python3:bookworm not found in the store (make it with: \
             rbuild import \"$(fixtures/base-images/make python3)\" rbuild-fixtures/python3:bookworm)"
        );
        // examples/hello-go's base, made only when named.
        let err = BuildError::ImageNotFound("rbuild-fixtures/golang:bookworm".to_owned());
        assert!(
            err.to_string().ends_with(
                "(make it with: rbuild import \"$(fixtures/base-images/make golang)\" \
                 rbuild-fixtures/golang:bookworm)"
            ),
            "{err}"
        );
        let pull_err = |reference: &str, in_store| BuildError::Pull {
            reference: reference.to_owned(),
            in_store,
            store_platforms: Vec::new(),
            similar: Vec::new(),
            source: Box::new(crate::registry::RegistryError::MediaType("x".to_owned())),
        };
        assert_eq!(
            pull_err("rbuild-fixtures/busybox:latest", false).to_string(),
            "failed to pull image rbuild-fixtures/busybox:latest (it is not in the store: make \
             it with: rbuild import \"$(fixtures/base-images/make busybox)\" \
             rbuild-fixtures/busybox:latest)"
        );
        assert_eq!(
            pull_err("alpine", false).to_string(),
            "failed to pull image alpine (it is not in the store either)"
        );
        assert_eq!(
            pull_err("alpine", true).to_string(),
            "failed to pull image alpine"
        );
        let typo = BuildError::Pull {
            reference: "rbuild-fixtures/python3:bookwrom".to_owned(),
            in_store: false,
            store_platforms: Vec::new(),
            similar: vec!["rbuild-fixtures/python3:bookworm".to_owned()],
            source: Box::new(crate::registry::RegistryError::MediaType("x".to_owned())),
        };
        assert_eq!(
            typo.to_string(),
            "failed to pull image rbuild-fixtures/python3:bookwrom (it is not in the store \
             either); the store has rbuild-fixtures/python3:bookworm"
        );
        let err = BuildError::ImageNotFound("alpine".to_owned());
        assert!(
            err.to_string()
                .ends_with("(pull or load it first: rbuild pull, rbuild load)")
        );
    }
}
