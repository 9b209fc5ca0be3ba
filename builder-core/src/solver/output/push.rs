//! After the build: the image pushed to registries (`--push`, `-o type=registry`).

use crate::digest::Digest;
use crate::export::ExportTarget;
use crate::image::{BASE_NAME_ANNOTATION, Image};
use crate::progress::Progress;
use crate::registry::{PushOptions, RegistryClient, RegistryConfig, push};
use crate::solver::error::BuildError;
use crate::solver::request::BuildOptions;
use crate::store::{ContentStore, ImageName};

/// The names `options` push, each once, in order: the `-t` names with `--push`, then
/// those of every registry output (its `name=`s, or the `-t` names).
pub(crate) fn names_to_push(options: &BuildOptions) -> Vec<ImageName> {
    let mut names: Vec<ImageName> = Vec::new();
    let mut add = |list: &[ImageName]| {
        for name in list {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    };
    if options.push {
        add(&options.tags);
    }
    for output in &options.outputs {
        if let ExportTarget::Registry { names: own } = output {
            add(if own.is_empty() { &options.tags } else { own });
        }
    }
    names
}

/// The repository to mount blobs from when pushing `image` to `dest`: its base image's,
/// when that is another repository of the same registry (the base layers are there
/// already, so the registry links them instead of receiving them again).
fn mount_source(image: &Image, dest: &ImageName) -> Option<String> {
    let base = image
        .manifest
        .annotations()
        .as_ref()?
        .get(BASE_NAME_ANNOTATION)?
        .parse::<ImageName>()
        .ok()?;
    (base.registry() == dest.registry() && base.repository() != dest.repository())
        .then(|| base.repository().to_owned())
}

/// Pushes `image` (named in the store under each of `names` already) to the registry of
/// each name; returns the digest each registry stored.
pub(crate) fn push_image(
    store: &ContentStore,
    image: &Image,
    names: &[ImageName],
    registry: &RegistryConfig,
    progress: &dyn Progress,
) -> Result<Vec<(ImageName, Digest)>, BuildError> {
    let source = image.digest().map_err(crate::image::ImageError::from)?;
    push_manifest_of(store, &source, Some(image), names, registry, progress)
}

/// Pushes the manifest or index `source` of the store (named under each of `names`
/// already; an index's manifests go first, then the index) to the registry of each
/// name, mounting blobs from the repository of `image`'s base when it can; returns the
/// digest each registry stored.
pub(crate) fn push_manifest_of(
    store: &ContentStore,
    source: &Digest,
    image: Option<&Image>,
    names: &[ImageName],
    registry: &RegistryConfig,
    progress: &dyn Progress,
) -> Result<Vec<(ImageName, Digest)>, BuildError> {
    let options = registry.options();
    let mut pushed = Vec::new();
    for name in names {
        let fail = |source| BuildError::Push {
            name: name.clone(),
            source: Box::new(source),
        };
        let client = RegistryClient::new(name.registry(), options.clone()).map_err(fail)?;
        let digest = push(
            &client,
            store,
            source.as_str(),
            name,
            &PushOptions {
                mount_from: image.and_then(|image| mount_source(image, name)),
            },
            progress,
        )
        .map_err(fail)?;
        pushed.push((name.clone(), digest));
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_names_come_from_tags_and_registry_outputs_once_each() {
        let name = |s: &str| s.parse::<ImageName>().unwrap_or_else(|e| panic!("{e}"));
        let mut request = BuildOptions {
            tags: vec![name("r:5000/a:1"), name("r:5000/b:1")],
            ..BuildOptions::default()
        };
        assert!(names_to_push(&request).is_empty());
        request.push = true;
        request.outputs = vec![
            ExportTarget::Registry { names: Vec::new() },
            ExportTarget::Registry {
                names: vec![name("r:5000/c:1"), name("r:5000/a:1")],
            },
            ExportTarget::Image,
        ];
        assert_eq!(
            names_to_push(&request),
            [name("r:5000/a:1"), name("r:5000/b:1"), name("r:5000/c:1")]
        );
        request.push = false;
        request.outputs = vec![ExportTarget::Registry {
            names: vec![name("r:5000/c:1")],
        }];
        assert_eq!(names_to_push(&request), [name("r:5000/c:1")]);
    }
}
