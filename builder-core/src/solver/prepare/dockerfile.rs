//! Reading the Dockerfile: from a path, from the context, or given as text.

use std::path::{Path, PathBuf};

use crate::context::{ContextSource, read_in_context, read_named_file};
use crate::solver::error::BuildError;
use crate::solver::request::{BuildSpec, DockerfileInput};

/// The Dockerfile of `spec`: the name messages give it, its text, and its path when it
/// is a file (for the `<file>.dockerignore` beside it).
pub(crate) fn read(spec: &BuildSpec) -> Result<(String, String, Option<PathBuf>), BuildError> {
    Ok(match &spec.dockerfile {
        DockerfileInput::Path(path) => {
            let text = read_dockerfile(path, &spec.context, false).map_err(|source| {
                BuildError::ReadDockerfile {
                    path: path.clone(),
                    source,
                }
            })?;
            (dockerfile_name(path), text, Some(path.clone()))
        }
        DockerfileInput::InContext(rel) => {
            let path = spec.context.root().join(rel);
            let text = read_dockerfile(&path, &spec.context, true).map_err(|source| {
                BuildError::ReadDockerfile {
                    path: path.clone(),
                    source,
                }
            })?;
            (dockerfile_name(&path), text, Some(path))
        }
        DockerfileInput::Text { name, text } => (name.clone(), text.clone(), None),
    })
}

/// The name messages give a Dockerfile read from a path: its file name.
fn dockerfile_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "Dockerfile".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// How much of a Dockerfile is read: past the parser's own limit, so that a file a bit
/// too large gets the parser's message (its size), but bounded, so that a Dockerfile
/// that is `/dev/zero` or an endless pipe does not fill memory.
const DOCKERFILE_READ_LIMIT: u64 = 4 * rbuild_dockerfile::MAX_DOCKERFILE_BYTES as u64;

/// Reads the Dockerfile at `path`. Inside a context unpacked from a tar (`rbuild build -`,
/// whose symlinks are anyone's), its symlinks resolve inside the context, as BuildKit
/// reads it from the context it received; elsewhere it is the file the user named, read
/// as the docker CLI reads it (following symlinks). Either way it must be a regular file
/// or a pipe, and it is read only up to [`DOCKERFILE_READ_LIMIT`].
fn read_dockerfile(
    path: &Path,
    context: &ContextSource,
    in_context: bool,
) -> std::io::Result<String> {
    let bytes = match (context, path.strip_prefix(context.root())) {
        (ContextSource::Unpacked(_), Ok(rel)) | (ContextSource::Directory(_), Ok(rel))
            if in_context || matches!(context, ContextSource::Unpacked(_)) =>
        {
            read_in_context(context.root(), rel, DOCKERFILE_READ_LIMIT)?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file in the build context",
                )
            })?
        }
        _ => read_named_file(path, DOCKERFILE_READ_LIMIT)?,
    };
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}
