//! `rbuild import rootfs.tar[.gz] NAME[:TAG] [--change 'CMD ...']`: an image from a rootfs.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rbuild_core::{
    ImageName,
    export::import_rootfs,
    image::{
        Empty, History, ImageConfig, ImageFormat, ImageSpec, RunConfig, rfc3339,
        tag_keeping_platforms,
    },
    layer::LayerOptions,
};
use rbuild_dockerfile::Platform;

use super::store::StoreArgs;

/// `rbuild import`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild import rootfs.tar.gz mybase:latest
  rbuild import -c 'CMD [\"/bin/sh\"]' -c 'ENV LANG=C.UTF-8' rootfs.tar mybase:1.0
  rbuild import --platform linux/arm64 arm64-rootfs.tar mybase:arm64")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Dockerfile instruction to apply to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// USER, VOLUME, WORKDIR, STOPSIGNAL); may be repeated
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message for the history
    #[arg(short, long)]
    message: Option<String>,
    /// The platform the rootfs's binaries are for, OS/ARCH[/VARIANT] (linux/arm64,
    /// linux/arm/v7), as the image config records it; this host's platform by default.
    /// With it, the images of other platforms the name had stay under it (an image index)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = platform_arg)]
    platform: Option<Platform>,
    /// Media types of the image: oci or docker
    #[arg(long, default_value = "oci")]
    format: ImageFormat,
    /// Seconds since 1970: the created time of the image and the latest mtime in its
    /// layer, so that two imports of one archive give one image ID (reproducible builds)
    #[arg(long, value_name = "N", env = "SOURCE_DATE_EPOCH", value_parser = super::build::epoch_arg)]
    source_date_epoch: Option<super::build::Epoch>,
    /// The rootfs archive (plain, gzip or zstd)
    file: PathBuf,
    /// The name to give the image
    name: Option<String>,
}

/// `--platform`: `os/arch` or `os/arch/variant`, recorded as given.
fn platform_arg(text: &str) -> Result<Platform, String> {
    Platform::parse(text).ok_or_else(|| {
        format!("{text:?} is not a platform: give OS/ARCH or OS/ARCH/VARIANT, as linux/arm64")
    })
}

/// A JSON array (exec form) or a shell command wrapped in `/bin/sh -c`.
fn command_words(rest: &str) -> anyhow::Result<Vec<String>> {
    if rest.trim_start().starts_with('[') {
        serde_json::from_str(rest).with_context(|| format!("parsing JSON array {rest}"))
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_owned()])
    }
}

/// `KEY=value KEY2="v 2"` or the legacy `KEY value`.
fn pairs(rest: &str) -> Vec<(String, String)> {
    if !rest.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return vec![(k.to_owned(), v.trim().to_owned())];
    }
    rest.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// Applies one `--change` instruction to `config`.
pub fn apply_change(config: &mut RunConfig, change: &str) -> anyhow::Result<()> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    match word.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command_words(rest)?),
        "ENTRYPOINT" => config.entrypoint = Some(command_words(rest)?),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(rest) {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(Default::default);
            labels.extend(pairs(rest));
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(Default::default);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_owned()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, Empty {});
            }
        }
        "VOLUME" => {
            let vols = config.volumes.get_or_insert_with(Default::default);
            let list: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest)?
            } else {
                rest.split_whitespace().map(str::to_owned).collect()
            };
            for v in list {
                vols.insert(v, Empty {});
            }
        }
        "USER" => config.user = Some(rest.to_owned()),
        "WORKDIR" => config.working_dir = Some(rest.to_owned()),
        "STOPSIGNAL" => config.stop_signal = Some(rest.to_owned()),
        other => bail!("unsupported --change instruction {other:?}"),
    }
    Ok(())
}

/// Runs `rbuild import`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut config = ImageConfig::for_host();
    if let Some(platform) = &args.platform {
        config.os.clone_from(&platform.os);
        config.architecture.clone_from(&platform.architecture);
        config.variant = Some(platform.variant.clone()).filter(|v| !v.is_empty());
    }
    for change in &args.change {
        apply_change(&mut config.config, change)
            .with_context(|| format!("applying --change {change:?}"))?;
    }
    let epoch = args.source_date_epoch.and_then(|e| e.0);
    let now = epoch.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    config.created = Some(rfc3339(now));
    config.history.push(History {
        created: config.created.clone(),
        created_by: Some(format!("rbuild import {}", args.file.display())),
        comment: args.message.clone(),
        empty_layer: false,
    });
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let spec = ImageSpec::new(config).with_format(args.format);
    let mut options = LayerOptions::default();
    options.source_date_epoch = epoch;
    let image = import_rootfs(&store, file, &spec, &options)
        .with_context(|| format!("importing {}", args.file.display()))?;
    if let Some(name) = &args.name {
        let name: ImageName = name.parse()?;
        if args.platform.is_some() {
            // One name for the images of several platforms, as a build for each wants.
            tag_keeping_platforms(&store, &name, &image)?;
        } else {
            store.tag(&name, &image.descriptor)?;
        }
    }
    println!("{}", image.config_digest);
    Ok(ExitCode::SUCCESS)
}
