//! `--platform` values: `OS/ARCH[/VARIANT]`, normalized as containerd normalizes them
//! (`linux/aarch64` is `linux/arm64`), of Linux only; `build` takes a comma-separated
//! list of them, `run` and `inspect` one.

use anyhow::{Context, bail};
use rbuild_core::image::{config_platform, load_image_for, platform_images};
use rbuild_core::store::NamedImage;
use rbuild_core::{ContentStore, image::Image};
use rbuild_dockerfile::Platform;

/// One platform, `linux/arm64`: a clap value parser.
pub(crate) fn platform_arg(text: &str) -> Result<Platform, String> {
    let text = text.trim();
    if text.contains(',') {
        return Err(format!(
            "{text:?} names several platforms: give one, as linux/arm64"
        ));
    }
    // containerd's platforms.Parse: each part letters, digits, `_`, `-` (and `.` in a
    // variant such as v8.0).
    let well_formed = text.split('/').all(|part| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    });
    let platform = Platform::parse(text)
        .filter(|_| well_formed)
        .ok_or_else(|| {
            format!("{text:?} is not a platform: give OS/ARCH or OS/ARCH/VARIANT, as linux/arm64")
        })?;
    if platform.os != "linux" {
        return Err(format!(
            "{text}: rbuild makes and runs Linux images only (its steps run in Linux \
             namespaces); give linux/ARCH"
        ));
    }
    Ok(platform)
}

/// The platforms a comma-separated list names, each normalized and kept once, in the
/// order given, as BuildKit's `parsePlatforms` reads them. An empty item is refused
/// (`linux/amd64,`).
pub(crate) fn platform_list(text: &str) -> anyhow::Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            bail!(
                "--platform {text:?} has an empty item: give a comma-separated list of \
                 OS/ARCH[/VARIANT], as linux/amd64,linux/arm64"
            );
        }
        let platform = platform_arg(item).map_err(|e| anyhow::anyhow!("--platform {e}"))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}

/// The platforms of the images a named image holds (one, or an index's), in order.
pub(crate) fn platforms_of(
    store: &ContentStore,
    named: &NamedImage,
) -> anyhow::Result<Vec<String>> {
    Ok(platform_images(store, &named.descriptor)
        .with_context(|| format!("reading image {}", named.name))?
        .iter()
        .map(|image| config_platform(&image.config).to_string())
        .collect())
}

/// The image `reference` names for `platform`: its manifest when that is of the
/// platform, or its index's entry of the platform; an error naming the platforms it has
/// when there is none.
pub(crate) fn image_for(
    store: &ContentStore,
    reference: &str,
    platform: &Platform,
) -> anyhow::Result<(NamedImage, Image)> {
    let found = store
        .resolve(reference)
        .with_context(|| format!("finding image {reference}"))?;
    match load_image_for(store, &found.descriptor, platform)
        .with_context(|| format!("reading image {reference}"))?
    {
        Some(image) => Ok((found, image)),
        None => bail!(
            "image {reference} has no {platform} image (it has {})",
            platforms_of(store, &found)?.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_normalized_linux_ones_and_lists_keep_the_first_of_each() {
        assert_eq!(
            platform_arg("linux/aarch64").map(|p| p.to_string()),
            Ok("linux/arm64".to_owned())
        );
        assert!(platform_arg("windows/amd64").is_err_and(|e| e.contains("Linux images only")));
        assert!(platform_arg("arm64").is_err_and(|e| e.contains("is not a platform")));
        assert!(platform_arg("linux/arm 64").is_err_and(|e| e.contains("is not a platform")));
        assert!(
            platform_arg("linux/amd64,linux/arm64").is_err_and(|e| e.contains("several platforms"))
        );
        let list = platform_list("linux/amd64, linux/arm64/v8,linux/aarch64,linux/amd64")
            .map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        assert_eq!(
            list,
            Ok(vec!["linux/amd64".to_owned(), "linux/arm64".to_owned()])
        );
        for bad in [
            "linux/amd64,",
            ",linux/amd64",
            "linux/amd64,,linux/arm64",
            "",
        ] {
            let err = platform_list(bad).map_err(|e| e.to_string());
            assert!(
                err.as_ref().is_err_and(|e| e.contains("empty item")),
                "{bad:?}: {err:?}"
            );
        }
    }
}
