//! The build's error type, gathering the errors of the modules it drives.

use std::io;
use std::path::PathBuf;

use crate::context::{ContextError, HashError, IgnoreError, WalkError};
use crate::copy::CopyError;
use crate::exec::ExecError;
use crate::export::ExportError;
use crate::image::ImageError;
use crate::layer::LayerError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

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
    /// The Dockerfile does not parse or lower; the message is rendered with its
    /// location (`Dockerfile:3:1: ...`, the line and a caret).
    #[error("{0}")]
    Dockerfile(String),
    /// A base image (or `--from` image) could not be found or loaded; the message names
    /// the line that asked for it.
    #[error("{rendered}")]
    BaseImage {
        /// The error, its cause included, rendered with the Dockerfile location.
        rendered: String,
    },
    /// An image reference names nothing rbuild can load.
    #[error("image {0} not found in the store (registry pulls are not done by build)")]
    ImageNotFound(String),
    /// `--platform` asks for another platform than the host's.
    #[error("platform {requested} is not supported: this host builds only for {host}")]
    Platform {
        /// What was asked for.
        requested: String,
        /// What the host is.
        host: String,
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

/// Renders `message` at `span` of `source` the way the parser renders its errors:
/// `FILE:LINE:COL: message`, the line behind a gutter, a caret under the column.
pub(crate) fn render_at(
    file: &str,
    source: &str,
    span: &rbuild_dockerfile::Span,
    message: &str,
) -> String {
    let mut out = format!(
        "{file}:{}:{}: {message}",
        span.start_line, span.start_column
    );
    if let Some(text) = source.split('\n').nth(span.start_line.saturating_sub(1)) {
        let text = text.trim_end_matches('\r');
        let pad: String = text
            .chars()
            .take(span.start_column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "\n{:>5} | {text}\n{:>5} | {pad}^",
            span.start_line, ""
        ));
    }
    out
}
