//! `rbuild [build] [-t NAME]... [-f FILE] CONTEXT`: build an image from a Dockerfile, as
//! `docker build` does. `build` is the default subcommand.

use std::io::{IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rbuild_core::{
    BuildError, BuildRequest, Builder, ContextSource, DockerfileInput, ExportTarget, ImageName,
    Progress,
    exec::Network,
    image::ImageFormat,
    layer::Compression,
    progress::NullProgress,
    registry::{Mirror, RegistryConfig},
    solver::{BuildSecret, CacheExport, CacheImport, ExecutorKind, SnapshotterKind, Squash},
};

use super::build_flags::{
    AllowArg, IsolationArg, NetworkArg, OutputArg, SnapshotterArg, allow_arg, build_arg, secret_arg,
};
pub(crate) use super::build_flags::{Epoch, epoch_arg};
use super::build_ssh;

use super::pull::RegistryArgs;
use super::store::StoreArgs;
use crate::progress::{ProgressMode, Reporter};

/// The exit code of a build that failed (usage errors exit with 2, through clap).
const EXIT_BUILD_FAILED: u8 = 1;
/// Exit code of a build stopped by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
const EXIT_CANCELED: u8 = 130;

/// `rbuild build`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild -t friendlyhello .
  rbuild build --pull -t app:1.0 -f docker/Dockerfile --build-arg VERSION=1.0 .
  rbuild build -t localhost:5000/app:1.0 --push -o type=registry,name=localhost:5000/app:latest .")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Docker Hub mirror (http[s]://host[:port]) to pull FROM images through, before
    /// docker.io; repeatable, tried before the config file's registry-mirrors
    #[arg(long = "registry-mirror", value_name = "URL", value_parser = super::pull::MirrorArg)]
    registry_mirrors: Vec<Mirror>,
    /// Name (and optionally tag) of the image, NAME[:TAG]; may be repeated
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    tag: Vec<ImageName>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from standard input)
    #[arg(short, long, value_name = "FILE")]
    file: Option<String>,
    /// A build argument, KEY=VALUE, or KEY to take its value from the environment; may be
    /// repeated
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_arg: Vec<String>,
    /// The stage to build (default: the last one)
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Do not use the cache: run every step
    #[arg(long)]
    no_cache: bool,
    /// Do not use the cache for the steps of this stage; may be repeated
    #[arg(long, value_name = "STAGE")]
    no_cache_filter: Vec<String>,
    /// Look every FROM image up in its registry again, even when the store has it (without
    /// it, only images missing from the store are pulled)
    #[arg(long)]
    pull: bool,
    /// Push the image to the registry of every -t name after the build (same as
    /// -o type=registry)
    #[arg(long)]
    push: bool,
    /// Hand the image to the docker (or, without docker, podman) on this machine after the
    /// build, as `rbuild save IMAGE | docker load` does
    #[arg(long, conflicts_with = "reproducible_check")]
    load: bool,
    /// A label for the image, KEY=VALUE; may be repeated
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// The platforms the image is for, as linux/arm64 or linux/amd64,linux/arm64 (one
    /// build each, the result an image index; steps of a foreign platform run through
    /// QEMU's binfmt_misc handlers)
    #[arg(long, value_name = "OS/ARCH[/VARIANT][,...]")]
    platform: Option<String>,
    /// Where else the image goes: type=oci|docker|local|tar|image|registry[,dest=PATH]
    /// [,tar=false][,name=NAME][,push=true][,compression=gzip|zstd|uncompressed]
    /// [,force-compression=true]; may be repeated
    #[arg(short, long, value_name = "OUTPUT")]
    output: Vec<OutputArg>,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Print only the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Accepted for docker's classic builder (BuildKit ignores it too): rbuild keeps no
    /// intermediate containers to remove
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    rm: Option<bool>,
    /// Accepted for docker's classic builder (BuildKit ignores it too)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force_rm: Option<bool>,
    /// How to show progress
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// The network of RUN steps (host needs --allow network.host)
    #[arg(long, value_enum, default_value = "default")]
    network: NetworkArg,
    /// How many stages may run at once [default: the number of cores]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// After the build, say why each step that ran missed the cache
    #[arg(long)]
    explain_cache: bool,
    /// How step roots are made
    #[arg(long, value_enum, default_value = "overlay")]
    snapshotter: SnapshotterArg,
    /// How RUN steps are isolated (chroot needs no namespaces and no mounts, and makes
    /// step roots by copy)
    #[arg(long, value_enum, default_value = "auto", conflicts_with = "runtime")]
    isolation: IsolationArg,
    /// Run RUN steps with this OCI runtime (e.g. /usr/sbin/runc) instead of the built-in
    /// sandbox
    #[arg(long, value_name = "PATH")]
    runtime: Option<PathBuf>,
    /// Compression of the image's layers (new and cached; the base image's stay as they
    /// are unless -o ...,force-compression=true): gzip, zstd or uncompressed [default:
    /// gzip, or the -o compression=]
    #[arg(long)]
    compression: Option<Compression>,
    /// Media types of the image: oci or docker
    #[arg(long, default_value = "oci")]
    format: ImageFormat,
    /// A secret RUN --mount=type=secret may mount, id=ID,src=FILE or id=ID,env=VAR (just
    /// id=ID: the variable ID); may be repeated. Its value is never stored
    #[arg(long, value_name = "id=ID,src=FILE|env=VAR", value_parser = secret_arg)]
    secret: Vec<BuildSecret>,
    /// Allow an entitlement: security.insecure (RUN --security=insecure: every capability,
    /// no seccomp filter), network.host (--network=host, RUN --network=host: the host's
    /// network unconfined), fs.read=DIR (FROM docker-archive://, oci-archive://,
    /// oci-layout:// may name paths beneath DIR, outside the context); may be repeated
    #[arg(long, value_name = "ENTITLEMENT", value_parser = allow_arg)]
    allow: Vec<AllowArg>,
    /// An ssh agent RUN --mount=type=ssh may use: default (the agent of SSH_AUTH_SOCK),
    /// ID=SOCKET, or ID=KEY[,KEY...] (loaded into an agent started for the build); may
    /// be repeated
    #[arg(long, value_name = "default|ID[=SOCKET|KEY[,KEY...]]", value_parser = build_ssh::ssh_arg)]
    ssh: Vec<build_ssh::SshArg>,
    /// Seconds since 1970: the created time of the image and its new history entries,
    /// and the latest mtime in the new layers (reproducible builds; RUN steps see it as
    /// SOURCE_DATE_EPOCH; --build-arg SOURCE_DATE_EPOCH=N does the same)
    #[arg(long, value_name = "N", env = "SOURCE_DATE_EPOCH", value_parser = epoch_arg)]
    source_date_epoch: Option<Epoch>,
    /// Build twice from an empty cache in temporary stores and fail, naming the first
    /// differing file, unless both give the same image; keeps nothing
    #[arg(long, conflicts_with_all = ["push", "output", "tag"])]
    reproducible_check: bool,
    /// Merge the layers this build adds into one (the base image's layers stay)
    #[arg(long, conflicts_with = "squash_all")]
    squash: bool,
    /// Merge every layer of the image, the base image's too, into one
    #[arg(long)]
    squash_all: bool,
    /// Export the build cache: type=registry,ref=REF[,mode=min|max] or
    /// type=local,dest=DIR[,mode=min|max][,tag=TAG] (a bare REF is type=registry);
    /// ignore-error=true makes a failed export a warning; may be repeated
    #[arg(long = "cache-to", value_name = "OPTIONS")]
    cache_to: Vec<CacheExport>,
    /// Use an exported build cache: type=registry,ref=REF or type=local,src=DIR[,tag=TAG]
    /// (a bare REF is type=registry); one that cannot be read is a warning; may be repeated
    #[arg(long = "cache-from", value_name = "OPTIONS")]
    cache_from: Vec<CacheImport>,
    /// The build context: a directory, or `-` for a tar archive on standard input
    context: String,
}

/// Mirrors and insecure registries: the flags' first, then the config file's, as `rbuild
/// pull` has them.
fn registry_config(args: &Args) -> anyhow::Result<RegistryConfig> {
    let file = RegistryConfig::load().context("reading rbuild's config file")?;
    let mut config = RegistryConfig::default()
        .with_registry_mirrors(args.registry_mirrors.clone())
        .with_insecure_registries(args.registry.insecure_registries.clone());
    config.registry_mirrors.extend(file.registry_mirrors);
    config.insecure_registries.extend(file.insecure_registries);
    Ok(config)
}

/// Runs `rbuild build`.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let platforms = match args.platform.as_deref() {
        Some(text) => super::platform_arg::platform_list(text)?,
        None => Vec::new(),
    };
    if args.load && platforms.len() > 1 {
        bail!(
            "--load hands docker one image, and --platform names {}: docker's image store \
             takes one platform's image at a time; build it with --platform OS/ARCH --load",
            platforms.len()
        );
    }
    if args.push && args.tag.is_empty() {
        bail!("--push needs a name to push to: give one with -t");
    }
    if args.context == "-" && args.file.as_deref() == Some("-") {
        bail!("the context and the Dockerfile cannot both come from standard input");
    }
    let store = args.store.open()?;
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // `-`: standard input holds a context archive (tar, maybe compressed) or, as docker
    // has it, a plain Dockerfile with an empty context.
    let mut stdin_dockerfile = None;
    let context = if args.context == "-" {
        let mut stdin = std::io::stdin().lock();
        let mut head = Vec::with_capacity(TAR_MAGIC_END);
        (&mut stdin)
            .take(TAR_MAGIC_END as u64)
            .read_to_end(&mut head)
            .context("reading standard input")?;
        if head.is_empty() {
            bail!(
                "standard input is empty: send a Dockerfile or a context archive (build - < Dockerfile)"
            );
        }
        if looks_like_archive(&head) {
            ContextSource::from_tar_limited(
                std::io::Cursor::new(head).chain(stdin),
                &tmp,
                &store.archive_limits(),
            )
            .context("reading the build context from standard input")?
        } else {
            if args.file.is_some() {
                bail!(
                    "standard input holds a Dockerfile, not a context archive, so -f has \
                     nothing to name: drop -f, or send a tar of the context"
                );
            }
            let mut text = Vec::new();
            (&mut stdin)
                .take(MAX_STDIN_DOCKERFILE)
                .read_to_end(&mut text)
                .context("reading the Dockerfile from standard input")?;
            head.extend_from_slice(&text);
            if head.len() as u64 > MAX_STDIN_DOCKERFILE {
                bail!(
                    "the Dockerfile on standard input is larger than {MAX_STDIN_DOCKERFILE} bytes"
                );
            }
            let text = String::from_utf8(head)
                .context("the Dockerfile on standard input is not UTF-8 text")?;
            stdin_dockerfile = Some(text);
            // An empty context: a tar archive of no entries.
            ContextSource::from_tar_limited(
                std::io::Cursor::new(vec![0u8; 1024]),
                &tmp,
                &store.archive_limits(),
            )
            .context("making an empty build context")?
        }
    } else {
        let dir = PathBuf::from(&args.context);
        if !dir.is_dir() {
            bail!(
                "unable to prepare context: path {:?} not found",
                args.context
            );
        }
        ContextSource::Directory(dir)
    };
    let dockerfile = match (stdin_dockerfile, args.file.as_deref()) {
        (Some(text), _) => DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text,
        },
        (None, Some("-")) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Dockerfile from standard input")?;
            DockerfileInput::Text {
                name: "Dockerfile".to_owned(),
                text,
            }
        }
        // With the context on stdin, a relative -f names a file inside it, as docker has it.
        (None, Some(path)) if args.context == "-" && Path::new(path).is_relative() => {
            DockerfileInput::Path(context.root().join(path))
        }
        (None, Some(path)) => DockerfileInput::Path(PathBuf::from(path)),
        // The default Dockerfile is the context's: resolved inside it, a link out of the
        // context reads as missing.
        (None, None) => DockerfileInput::InContext(PathBuf::from("Dockerfile")),
    };
    let mut labels = Vec::new();
    for label in &args.label {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        labels.push((k.to_owned(), v.to_owned()));
    }

    let mut request = BuildRequest::new(dockerfile, context);
    request.spec.build_args = args.build_arg.iter().filter_map(|a| build_arg(a)).collect();
    request.spec.target = args.target.clone();
    request.spec.platforms = platforms;
    request.options.tags = args.tag.clone();
    request.options.outputs = args.output.iter().map(|o| o.target.clone()).collect();
    let to_stdout = args
        .output
        .iter()
        .filter(|o| writes_stdout(&o.target))
        .count();
    if to_stdout > 1 {
        anyhow::bail!("only one output can go to standard output (dest=-)");
    }
    if to_stdout == 1 && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "refusing to write an archive to a terminal: redirect standard output \
             (rbuild build -o - . > rootfs.tar) or give dest=FILE"
        );
    }
    request.spec.labels = labels;
    request.options.no_cache = args.no_cache;
    request.options.no_cache_filter = args.no_cache_filter.clone();
    if let Some(jobs) = args.jobs {
        request.options.jobs = jobs.max(1);
    }
    request.options.network = match args.network {
        NetworkArg::Default => Network::Default,
        NetworkArg::Host => Network::Host,
        NetworkArg::None => Network::None,
    };
    request.options.snapshotter = match args.snapshotter {
        SnapshotterArg::Overlay => SnapshotterKind::Overlay,
        SnapshotterArg::Copy => SnapshotterKind::Copy,
    };
    if let Some(runtime) = &args.runtime {
        request.options.executor = ExecutorKind::Runc(runtime.clone());
    } else {
        let isolation = match args.isolation {
            IsolationArg::Auto if rbuild_core::exec::sandbox_available() => IsolationArg::Sandbox,
            IsolationArg::Auto => {
                let (picked, what) = if rbuild_core::exec::chroot_available() {
                    (
                        IsolationArg::Chroot,
                        "--isolation chroot (no /proc, the container's network and processes"
                            .to_owned(),
                    )
                } else {
                    match rbuild_core::exec::find_proot()
                        .ok_or_else(|| "install proot for RUN steps without it".to_owned())
                        .and_then(|proot| rbuild_core::exec::check_proot(&proot))
                    {
                        Ok(()) => (
                            IsolationArg::Proot,
                            "--isolation proot, as no capability is held (steps are traced, \
                             slower; the container's network and processes"
                                .to_owned(),
                        ),
                        Err(why) => (
                            IsolationArg::Chroot,
                            format!(
                                "--isolation chroot, which needs CAP_SYS_CHROOT (not held; \
                                 proot cannot stand in: {why}"
                            ),
                        ),
                    }
                };
                eprintln!(
                    "notice: namespaces cannot be created here (a container with default \
                     security?): RUN steps run with {what}; see README)"
                );
                picked
            }
            other => other,
        };
        match isolation {
            IsolationArg::Chroot => {
                request.options.executor = ExecutorKind::Chroot;
                request.options.snapshotter = SnapshotterKind::Copy;
            }
            IsolationArg::Proot => {
                let Some(proot) = rbuild_core::exec::find_proot() else {
                    bail!(
                        "--isolation proot needs the proot program: install it (Debian: \
                         apt-get install proot) or name it in RBUILD_PROOT"
                    );
                };
                if let Err(why) = rbuild_core::exec::check_proot(&proot) {
                    bail!("--isolation proot: {why}");
                }
                request.options.executor = ExecutorKind::Proot(proot);
                request.options.snapshotter = SnapshotterKind::Copy;
            }
            IsolationArg::Auto | IsolationArg::Sandbox => {}
        }
    }
    let (compression, force_compression) = layer_compression(&args)?;
    request.spec.compression = compression;
    request.spec.force_compression = force_compression;
    // The plain and tty views show a step's lines in the order it wrote them; rawjson
    // keeps each line's stream.
    request.options.merge_step_output = args.progress != ProgressMode::Rawjson;
    request.spec.format = args.format;
    request.options.pull = args.pull;
    request.options.push = args.push;
    request.options.registry = registry_config(&args)?;
    request.options.secrets = args.secret.clone();
    for allow in &args.allow {
        match allow {
            AllowArg::Entitlement(e) => request.options.allow.push(*e),
            AllowArg::FsRead(dir) => request.options.allow_fs_read.push(dir.clone()),
        }
    }
    // Agents started for key files live until the build is done.
    let agents = build_ssh::agents(&args.ssh)?;
    request.options.ssh = agents.agents.clone();
    request.spec.source_date_epoch = args.source_date_epoch.and_then(|e| e.0);
    request.spec.squash = if args.squash_all {
        Squash::All
    } else if args.squash {
        Squash::New
    } else {
        Squash::None
    };
    request.options.cache_to = args.cache_to.clone();
    request.options.cache_from = args.cache_from.clone();

    let reporter;
    // `--progress quiet` is `-q`; `none` shows nothing but errors.
    let silent = args.progress == ProgressMode::None;
    args.quiet |= matches!(args.progress, ProgressMode::Quiet | ProgressMode::None);
    let progress: &dyn Progress = if args.quiet {
        &NullProgress
    } else {
        reporter = Reporter::new(args.progress);
        &reporter
    };
    let builder = Builder::new(store.clone()).with_limits(crate::limits::from_env()?);
    if args.reproducible_check {
        return reproducible_check(&builder, &request, progress, args.quiet);
    }
    super::run::cancel_on_signals(request.options.cancel.clone())?;
    let result = builder.build(&request, progress);
    let result = match result {
        Ok(result) => result,
        Err(BuildError::Canceled) if request.options.cancel.is_cancelled() => {
            // The progress renderers said so already; with -q nothing was shown.
            if args.quiet {
                eprintln!("error: build canceled");
            }
            return Ok(ExitCode::from(EXIT_CANCELED));
        }
        Err(err) => {
            // The progress renderers end with the failure (rawjson in its last event);
            // with -q nothing was shown yet, nor is a push failure, which comes after the
            // build has finished.
            if args.quiet || matches!(err, BuildError::Push { .. }) {
                eprintln!("error: {}", crate::escape::printable(&err.render()));
            }
            return Ok(ExitCode::from(EXIT_BUILD_FAILED));
        }
    };
    if args.explain_cache {
        let mut err = std::io::stderr().lock();
        for step in &result.steps {
            let why = match (&step.miss, step.cached) {
                (_, true) => "cached".to_owned(),
                (Some(reason), false) => format!("ran: {reason}"),
                (None, false) => "ran".to_owned(),
            };
            let _ = writeln!(err, "{} {}: {why}", step.step, step.name);
        }
    }
    if !args.quiet {
        for (name, digest) in &result.pushed {
            eprintln!("pushed {name}: digest: {digest}");
        }
    }
    let id = result.image_id.to_string();
    if args.load {
        load_into_engine(&store, &result)?;
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &id).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.quiet && !silent {
        // Standard output may carry the exported archive: the ID then goes to stderr.
        if args.output.iter().any(|o| writes_stdout(&o.target)) {
            eprintln!("{id}");
        } else {
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The layers' compression and whether it is forced on the base image's layers: from
/// `--compression` and the `compression=` and `force-compression=` keys of `-o` (as
/// BuildKit's exporters take them); two different compressions are refused.
fn layer_compression(args: &Args) -> anyhow::Result<(Compression, bool)> {
    let mut chosen = args.compression.map(|c| (c, "--compression".to_owned()));
    let mut force = false;
    for spec in args.output.iter().map(|o| &o.spec) {
        for field in spec.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key.trim() {
                "compression" => {
                    let c: Compression = value
                        .trim()
                        .parse()
                        .map_err(|e| anyhow::anyhow!("-o {spec}: {e}"))?;
                    match &chosen {
                        Some((other, from)) if *other != c => bail!(
                            "-o {spec} asks for {} layers but {from} for {}: an image has \
                             one compression",
                            c.name(),
                            other.name()
                        ),
                        Some(_) => {}
                        None => chosen = Some((c, format!("-o {spec}"))),
                    }
                }
                "force-compression" => match value.trim() {
                    "true" | "1" => force = true,
                    "false" | "0" => {}
                    v => bail!("-o {spec}: force-compression={v} is not true or false"),
                },
                _ => {}
            }
        }
    }
    Ok((chosen.map_or(Compression::Gzip, |(c, _)| c), force))
}

/// `--load`: the image as a docker archive, given to `docker load` (or `podman load` where
/// there is no docker) under the build's names.
fn load_into_engine(
    store: &rbuild_core::ContentStore,
    result: &rbuild_core::BuildResult,
) -> anyhow::Result<()> {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    let Some(engine) = ["docker", "podman"].into_iter().find(|t| on_path(t)) else {
        bail!(
            "--load hands the image to docker or podman, and neither is on PATH; the image \
             is in rbuild's store: rbuild save IMAGE | docker load"
        );
    };
    let dir = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(store.tmp_dir())
        .context("making a scratch directory for --load")?;
    if let Some(warning) = rbuild_core::export::zstd_docker_archive_warning([&result.image]) {
        eprintln!("warning: --load: {warning}");
    }
    let archive = dir.path().join("image.tar");
    rbuild_core::export::save_images(
        store,
        &archive,
        &[(
            rbuild_core::export::Saved::Image(result.image.clone()),
            result.names.clone(),
        )],
        ImageFormat::Docker,
        &rbuild_core::progress::NullProgress,
    )
    .context("writing the image for --load")?;
    let out = std::process::Command::new(engine)
        .arg("load")
        .arg("-i")
        .arg(&archive)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {engine} load"))?;
    if !out.status.success() {
        bail!(
            "--load: {engine} load failed ({}): {}\nthe image is in rbuild's store: rbuild save IMAGE | {engine} load",
            out.status,
            crate::escape::printable(String::from_utf8_lossy(&out.stderr).trim())
        );
    }
    eprint!(
        "{}",
        crate::escape::printable(&String::from_utf8_lossy(&out.stdout))
    );
    Ok(())
}

/// Where a tar header's `ustar` magic ends: what is read of standard input to tell a
/// context archive from a Dockerfile.
const TAR_MAGIC_END: usize = 263;

/// The largest Dockerfile taken from standard input.
const MAX_STDIN_DOCKERFILE: u64 = 16 << 20;

/// Whether `head` (the first bytes of standard input) starts an archive: compressed
/// (gzip, bzip2, xz, zstd) or a tar header. Anything else is a Dockerfile.
fn looks_like_archive(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 4] = [
        &[0x1f, 0x8b],
        b"BZh",
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    MAGICS.iter().any(|m| head.starts_with(m)) || head.get(257..262) == Some(b"ustar".as_slice())
}

/// Whether an `-o` output is written to standard output (`-o -`, `dest=-`).
fn writes_stdout(target: &ExportTarget) -> bool {
    match target {
        ExportTarget::Oci { dest, .. }
        | ExportTarget::Docker { dest }
        | ExportTarget::Tar { dest }
        | ExportTarget::Local { dest } => dest == Path::new(rbuild_core::export::DEST_STDOUT),
        ExportTarget::Image | ExportTarget::Registry { .. } => false,
    }
}

/// `--reproducible-check`: the verdict on standard output, the difference as the error.
fn reproducible_check(
    builder: &Builder,
    request: &BuildRequest,
    progress: &dyn Progress,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    match builder.check_reproducible(request, progress) {
        Ok(report) => {
            if quiet {
                println!("{}", report.image_id);
            } else if request.spec.platforms.len() > 1 {
                let platforms: Vec<String> = request
                    .spec
                    .platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                println!(
                    "reproducible: two builds from an empty cache gave the same images of {} \
                     (image index {}, SOURCE_DATE_EPOCH={})",
                    platforms.join(", "),
                    report.digest,
                    report.source_date_epoch
                );
            } else {
                println!(
                    "reproducible: two builds from an empty cache gave the same image {} \
                     (image ID {}, SOURCE_DATE_EPOCH={})",
                    report.digest, report.image_id, report.source_date_epoch
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            // A failed build was shown by the progress renderer already; the verdict
            // of a check that built twice was not.
            if quiet || matches!(err, BuildError::NotReproducible { .. }) {
                eprintln!("error: {}", crate::escape::printable(&err.render()));
            }
            Ok(ExitCode::from(EXIT_BUILD_FAILED))
        }
    }
}
