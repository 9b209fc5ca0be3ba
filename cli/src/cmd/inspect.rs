//! `rbuild inspect IMAGE...`: print images as JSON, in the shape of `docker inspect`.

use std::process::ExitCode;

use rbuild_core::Digest;
use rbuild_dockerfile::Platform;

use super::platform_arg::{image_for, platform_arg, platforms_of};
use super::store::StoreArgs;
use crate::template::Template;

/// `rbuild inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild inspect myapp:latest | jq '.[0].Config.Env'
  rbuild inspect -f '{{json .Config.Env}}' myapp:latest
  rbuild inspect --platform linux/arm64 -f '{{.Architecture}} {{json .Platforms}}' multi:1")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Images, by name or image id
    #[arg(required = true)]
    images: Vec<String>,
    /// A Go template applied to each image (`{{.Id}}`, `{{.Config.Env}}`,
    /// `{{json .Config}}`), one line per image, instead of the JSON array
    #[arg(short, long)]
    format: Option<String>,
    /// Of a name holding images of several platforms (an image index), the image of this
    /// platform [default: the build machine's, else the first]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = platform_arg)]
    platform: Option<Platform>,
}

/// Runs `rbuild inspect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let all = store.images()?;
    let mut out = Vec::new();
    for reference in &args.images {
        let (named, image) = match &args.platform {
            Some(platform) => image_for(&store, reference, platform)?,
            None => super::store::find_image(&store, reference)?,
        };
        let digest = image.digest()?;
        // The names of what the reference names: the image, or the index holding it.
        let top = Digest::try_from(named.descriptor.digest())?;
        let tags: Vec<String> = all
            .iter()
            .filter(|n| n.digest().as_ref() == Some(&top))
            .map(|n| n.name.familiar())
            .collect();
        let index = (top != digest).then(|| {
            serde_json::json!({
                "Digest": top.to_string(),
                "MediaType": named.descriptor.media_type().to_string(),
            })
        });
        out.push(serde_json::json!({
            "Id": image.config_digest.to_string(),
            "RepoTags": tags,
            "ManifestDigest": digest.to_string(),
            "ManifestMediaType": image.descriptor.media_type().to_string(),
            "Created": image.config.created,
            "Author": image.config.author,
            "Architecture": image.config.architecture,
            "Os": image.config.os,
            "Variant": image.config.variant,
            "Platforms": platforms_of(&store, &named)?,
            "Index": index,
            "Config": image.config.config,
            "RootFS": image.config.rootfs,
            "History": image.config.history,
            "Size": image.size(),
            "Annotations": image.manifest.annotations(),
        }));
    }
    if let Some(format) = &args.format {
        let template = Template::parse(format).map_err(anyhow::Error::msg)?;
        for image in &out {
            println!("{}", template.render(image));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
