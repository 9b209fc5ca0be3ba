//! `rbuild man`: the manual pages, generated from the clap definitions.
//!
//! `rbuild man` prints `rbuild(1)` as roff on standard output (`rbuild man | man -l -`).
//! `rbuild man --dir DIR` writes `rbuild.1` and one page per visible subcommand, named
//! `rbuild-<subcommand>.1` (nested ones too, as `rbuild-store-verify.1`), into `DIR`,
//! ready for `/usr/local/share/man/man1`. The pages are rendered by `clap_mangen` at run
//! time rather than by a build script, so the binary is the one source of its manual.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `rbuild man`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild man | man -l -
  rbuild man --dir /usr/local/share/man/man1")]
pub struct Args {
    /// Write rbuild.1 and one page per subcommand into this directory (created if
    /// missing) instead of printing rbuild.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Runs `rbuild man` over `command`, the whole command line definition.
pub fn run(args: Args, command: clap::Command) -> anyhow::Result<ExitCode> {
    match args.dir {
        None => {
            let mut page = Vec::new();
            page_of(command)
                .render(&mut page)
                .context("rendering the rbuild manual page")?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&page)
                .and_then(|()| stdout.flush())
                .context("writing the rbuild manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating manual directory {}", dir.display()))?;
            let mut command = command.disable_help_subcommand(true);
            // Building fills in each subcommand's display name (`rbuild-store-verify`),
            // which names its page.
            command.build();
            write_pages(&command, &dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The page of `command`, titled in capitals as man(7) asks of `.TH`.
fn page_of(command: clap::Command) -> clap_mangen::Man {
    let title = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_uppercase();
    clap_mangen::Man::new(command)
        .title(title)
        .source(format!("rbuild {}", env!("CARGO_PKG_VERSION")))
}

/// Writes the page of `command` and of each of its visible subcommands, depth first,
/// into `dir`.
fn write_pages(command: &clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let page = page_of(command.clone());
    let path = dir.join(page.get_filename());
    page.generate_to(dir)
        .with_context(|| format!("writing manual page {}", path.display()))?;
    Ok(())
}
