//! `rbuild history IMAGE`: the steps that made an image, newest first, as docker shows them.

use std::process::ExitCode;

use super::images::{ago, human_size, layer_size};
use super::store::StoreArgs;
use crate::template::{Template, align};

/// The widest CREATED BY column before it is cut (`--no-trunc` keeps it whole).
const CREATED_BY_WIDTH: usize = 45;

/// `rbuild history`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild history myapp:latest
  rbuild history --no-trunc myapp:latest
  rbuild history --platform linux/arm64 --format '{{.CreatedBy}} {{.Size}}' multi:1")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The image, by name or image ID
    image: String,
    /// Print only the image IDs (`<missing>` for the steps below the top)
    #[arg(short, long)]
    quiet: bool,
    /// Do not cut long commands and IDs
    #[arg(long)]
    no_trunc: bool,
    /// `table`, `json`, or a Go template over ID, CreatedAt, CreatedSince, CreatedBy,
    /// Size, Comment (a `table` prefix adds a header)
    #[arg(long, default_value = "table")]
    format: String,
    /// Of a name holding images of several platforms (an image index), the history of this
    /// platform's image [default: the build machine's, else the first]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = super::platform_arg::platform_arg)]
    platform: Option<rbuild_dockerfile::Platform>,
}

/// Runs `rbuild history`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let (found, image) = match &args.platform {
        Some(platform) => super::platform_arg::image_for(&store, &args.image, platform)?,
        None => super::store::find_image(&store, &args.image)?,
    };
    let id = store.image_id(&found)?;
    let mut layers = image.manifest.layers().iter();
    let mut rows: Vec<serde_json::Value> = image
        .config
        .history
        .iter()
        .map(|step| {
            let size = if step.empty_layer {
                0
            } else {
                layers.next().map_or(0, |l| layer_size(&store, l))
            };
            let mut created_by = step.created_by.clone().unwrap_or_default();
            if !args.no_trunc && created_by.chars().count() > CREATED_BY_WIDTH {
                created_by = created_by.chars().take(CREATED_BY_WIDTH - 1).collect();
                created_by.push('…');
            }
            serde_json::json!({
                "ID": "<missing>",
                "CreatedAt": step.created.clone().unwrap_or_default(),
                "CreatedSince": ago(step.created.as_deref()),
                "CreatedBy": created_by,
                "Size": human_size(size),
                "Comment": step.comment.clone().unwrap_or_default(),
            })
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = if args.no_trunc {
            id.to_string()
        } else {
            id.short().to_owned()
        }
        .into();
    }
    if args.quiet {
        for row in &rows {
            println!("{}", row["ID"].as_str().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let format = match args.format.as_str() {
        "table" => "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        "json" => "{{json .}}",
        other => other,
    };
    let template = Template::parse(format).map_err(anyhow::Error::msg)?;
    let mut lines = Vec::new();
    if template.table {
        lines.push(template.header(|field| match field {
            "ID" => Some("IMAGE"),
            "CreatedSince" => Some("CREATED"),
            _ => None,
        }));
    }
    lines.extend(rows.iter().map(|row| template.render(row)));
    if template.table {
        lines = align(&lines);
    }
    for line in lines {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
