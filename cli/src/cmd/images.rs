//! `rbuild images`: list the named images of the store.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rbuild_core::load_image;

use super::store::StoreArgs;

/// `rbuild images`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild images
  rbuild images --format json
  rbuild images --root /srv/rbuild")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Output format: `table` or `json` (one object per line, as docker prints it)
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

/// Runs `rbuild images`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut rows = Vec::new();
    for named in store.images().context("reading index.json")? {
        let image = load_image(&store, &named.descriptor)
            .with_context(|| format!("reading image {}", named.name))?;
        rows.push((
            named.name.familiar_repository(),
            named.name.tag().unwrap_or("<none>").to_owned(),
            image.config_digest.short().to_owned(),
            image.config.created.clone(),
            image.size(),
        ));
    }
    match args.format.as_str() {
        "json" => {
            for (repo, tag, id, created, size) in rows {
                let obj = serde_json::json!({
                    "Repository": repo, "Tag": tag, "ID": id,
                    "CreatedAt": created.clone().unwrap_or_default(),
                    "CreatedSince": ago(created.as_deref()),
                    "Size": human_size(size),
                });
                println!("{obj}");
            }
        }
        "table" => {
            let lines: Vec<[String; 5]> = rows
                .into_iter()
                .map(|(r, t, i, c, s)| [r, t, i, ago(c.as_deref()), human_size(s)])
                .collect();
            let head = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
            let mut widths = [0usize; 5];
            for line in std::iter::once(&head).chain(&lines) {
                for (w, cell) in widths.iter_mut().zip(line) {
                    *w = (*w).max(cell.len());
                }
            }
            for line in std::iter::once(&head).chain(&lines) {
                let cells: Vec<String> = line
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", cells.join("   ").trim_end());
            }
        }
        other => anyhow::bail!("unknown format {other:?}: expected table or json"),
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
