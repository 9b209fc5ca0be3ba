//! `rbuild images`: list the named images of the store.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use oci_spec::image::Descriptor;
use rbuild_core::{
    ContentStore, Digest, ImageName,
    image::{Image, load_image},
};

use super::store::StoreArgs;
use crate::template::{Template, align};

/// `rbuild images`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild images
  rbuild images -q busybox
  rbuild images --format 'table {{.ID}}\t{{.Repository}}:{{.Tag}}'")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Only images of this repository (`busybox`), or this name (`busybox:1.36`)
    reference: Option<String>,
    /// Print only the image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show whole image IDs
    #[arg(long)]
    no_trunc: bool,
    /// `table` (with a PLATFORMS column when an image of several platforms is listed),
    /// `json` (one object a line, as docker prints it), or a Go template over the fields
    /// Repository, Tag, ID, Digest, CreatedAt, CreatedSince, Size, Platforms
    /// (`{{.Repository}}:{{.Tag}}`; a `table` prefix adds a header)
    #[arg(long, default_value = "table")]
    format: String,
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2023-11-14T22:13:20Z`, fractions
/// and offsets ignored).
pub fn parse_time(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// "3 days ago", as docker shows ages.
pub fn ago(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_time) else {
        return "N/A".to_owned();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = (now - t).max(0);
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86_400 => (secs / 3600, "hour"),
        86_400..604_800 => (secs / 86_400, "day"),
        604_800..2_592_000 => (secs / 604_800, "week"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A size in docker's units (powers of 1000): `7.5MB`.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + units[i]
    }
}

/// The size docker shows for an image: what its layers hold unpacked (the uncompressed
/// tar streams: a gzip layer's size is in its trailer), plus the config.
pub fn content_size(store: &ContentStore, image: &Image) -> u64 {
    let layers: u64 = image
        .manifest
        .layers()
        .iter()
        .map(|layer| layer_size(store, layer))
        .sum();
    layers + image.manifest.config().size()
}

/// What one layer holds unpacked: its uncompressed tar stream's size.
pub fn layer_size(store: &ContentStore, layer: &Descriptor) -> u64 {
    let compressed = layer.size();
    if !layer.media_type().to_string().ends_with("gzip") {
        return compressed;
    }
    Digest::try_from(layer.digest())
        .ok()
        .and_then(|d| gzip_isize(&store.blob_path(&d)))
        .map_or(compressed, |plain| {
            // ISIZE is the size modulo 2^32: add back the wraps a layer of 4 GiB or
            // more must have made (a tar stream is never much smaller than its gzip).
            let mut size = plain;
            while size < compressed / 2 {
                size += 1 << 32;
            }
            size
        })
}

/// The last four bytes of a gzip file: the uncompressed size modulo 2^32 (RFC 1952).
fn gzip_isize(path: &std::path::Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::End(-4)).ok()?;
    let mut tail = [0u8; 4];
    file.read_exact(&mut tail).ok()?;
    Some(u64::from(u32::from_le_bytes(tail)))
}

/// One row of `rbuild images`.
struct Row {
    repository: String,
    tag: String,
    id: Digest,
    digest: String,
    created: Option<String>,
    size: u64,
    /// The platforms of its images (several for an image index), `linux/amd64`.
    platforms: Vec<String>,
}

impl Row {
    fn id(&self, no_trunc: bool) -> String {
        if no_trunc {
            self.id.to_string()
        } else {
            self.id.short().to_owned()
        }
    }

    fn fields(&self, no_trunc: bool) -> serde_json::Value {
        serde_json::json!({
            "Repository": self.repository,
            "Tag": self.tag,
            "ID": self.id(no_trunc),
            "Digest": self.digest,
            "CreatedAt": self.created.clone().unwrap_or_default(),
            "CreatedSince": ago(self.created.as_deref()),
            "Size": human_size(self.size),
            "Platforms": self.platforms.join(","),
        })
    }
}

/// Whether `name` is shown for the filter `reference` (a repository, or a full name).
fn matches(name: &ImageName, reference: &str) -> bool {
    let Ok(wanted) = reference.parse::<ImageName>() else {
        return false;
    };
    let has_tag = reference
        .rsplit_once('/')
        .map_or(reference, |(_, last)| last)
        .contains(':')
        || reference.contains('@');
    if has_tag {
        *name == wanted
    } else {
        name.full_repository() == wanted.full_repository()
    }
}

/// Runs `rbuild images`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut rows = Vec::new();
    for named in store.images().context("reading index.json")? {
        if let Some(reference) = &args.reference {
            if !matches(&named.name, reference) {
                continue;
            }
        }
        let image = load_image(&store, &named.descriptor)
            .with_context(|| format!("reading image {}", named.name))?;
        rows.push(Row {
            repository: named.name.familiar_repository(),
            tag: named.name.tag().unwrap_or("<none>").to_owned(),
            id: store.image_id(&named)?,
            digest: named.descriptor.digest().to_string(),
            created: image.config.created.clone(),
            size: content_size(&store, &image),
            platforms: super::platform_arg::platforms_of(&store, &named)?,
        });
    }
    if args.quiet {
        for row in &rows {
            println!("{}", row.id(args.no_trunc));
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format.as_str() {
        "json" => {
            for row in &rows {
                println!("{}", row.fields(args.no_trunc));
            }
        }
        "table" => {
            // The platforms are shown when they tell more than the build machine's one.
            let several = rows.iter().any(|row| row.platforms.len() > 1);
            let mut header = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE".to_owned();
            if several {
                header.push_str("\tPLATFORMS");
            }
            let mut lines = vec![header];
            for row in &rows {
                let mut line = format!(
                    "{}\t{}\t{}\t{}\t{}",
                    row.repository,
                    row.tag,
                    row.id(args.no_trunc),
                    ago(row.created.as_deref()),
                    human_size(row.size)
                );
                if several {
                    line.push('\t');
                    line.push_str(&row.platforms.join(","));
                }
                lines.push(line);
            }
            for line in align(&lines) {
                println!("{line}");
            }
        }
        format => {
            let template = Template::parse(format).map_err(anyhow::Error::msg)?;
            let mut lines = Vec::new();
            if template.table {
                lines.push(template.header(|field| match field {
                    "ID" => Some("IMAGE ID"),
                    "CreatedSince" => Some("CREATED"),
                    _ => None,
                }));
            }
            for row in &rows {
                lines.push(template.render(&row.fields(args.no_trunc)));
            }
            if template.table {
                lines = align(&lines);
            }
            for line in lines {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_like_docker() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(7_500_000), "7.5MB");
    }
}
