//! The `-o` / `--output` syntax of `docker build`: `type=oci,dest=out.tar,tar=false`.

use std::path::PathBuf;
use std::str::FromStr;

use crate::store::ImageName;

/// Where and how a built image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// An OCI image layout, as a tar archive (`tar=true`, the default) or a directory.
    Oci {
        /// The archive or directory.
        dest: PathBuf,
        /// Whether to write a tar archive.
        tar: bool,
    },
    /// A `docker load`able archive (manifest.json, repositories, and the OCI layout).
    Docker {
        /// The archive.
        dest: PathBuf,
    },
    /// The image's filesystem, unpacked into a directory.
    Local {
        /// The directory.
        dest: PathBuf,
    },
    /// The image's filesystem as one tar archive.
    Tar {
        /// The archive.
        dest: PathBuf,
    },
    /// The local content store, under the names given with `-t`.
    Image,
    /// `type=registry[,name=NAME]...` or `type=image,name=NAME,push=true`, as BuildKit's
    /// image exporter: the local store under `names` (the `-t` names when empty), then
    /// each name pushed to its registry. [`export`](super::export) does the naming; the
    /// [`Builder`](crate::solver::Builder) pushes once the build is done.
    Registry {
        /// The names to give and push; empty means the `-t` names.
        names: Vec<ImageName>,
    },
}

/// An `-o` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid output {spec:?}: {reason}")]
pub struct InvalidExportTarget {
    /// The value given.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

impl FromStr for ExportTarget {
    type Err = InvalidExportTarget;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| InvalidExportTarget {
            spec: spec.to_owned(),
            reason,
        };
        // docker build -o DIR is type=local,dest=DIR; -o - is a tar on standard output.
        if !spec.contains('=') {
            return if spec == super::DEST_STDOUT {
                Ok(ExportTarget::Tar {
                    dest: PathBuf::from(super::DEST_STDOUT),
                })
            } else if spec.is_empty() {
                Err(bad("empty".to_owned()))
            } else {
                Ok(ExportTarget::Local {
                    dest: PathBuf::from(spec),
                })
            };
        }
        let mut kind = None;
        let mut dest = None;
        let mut tar = true;
        let mut names = Vec::new();
        let mut push = false;
        let flag = |key: &str, value: &str| match value.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            v => Err(bad(format!("{key}={v} is not true or false"))),
        };
        for field in spec.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("field {field:?} is not key=value")))?;
            match key.trim() {
                "type" => kind = Some(value.trim().to_owned()),
                "dest" => dest = Some(PathBuf::from(value.trim())),
                "tar" => tar = flag("tar", value)?,
                "push" => push = flag("push", value)?,
                "name" => {
                    names.push(value.trim().parse().map_err(|e| bad(format!("{e}")))?);
                }
                // The layers' compression is the build's (the CLI reads these keys into
                // BuildRequest::compression and force_compression); --format decides the
                // media types.
                "compression" | "compression-level" | "force-compression" | "oci-mediatypes" => {}
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        let kind = kind.ok_or_else(|| bad("missing type=".to_owned()))?;
        let need_dest = || {
            dest.clone()
                .ok_or_else(|| bad(format!("type={kind} needs dest=")))
        };
        Ok(match kind.as_str() {
            "oci" if !tar && dest.as_deref() == Some(std::path::Path::new(super::DEST_STDOUT)) => {
                return Err(bad(
                    "tar=false writes a directory, not standard output".to_owned()
                ));
            }
            "oci" => ExportTarget::Oci {
                dest: need_dest()?,
                tar,
            },
            "docker" => ExportTarget::Docker { dest: need_dest()? },
            "local" if dest.as_deref() == Some(std::path::Path::new(super::DEST_STDOUT)) => {
                return Err(bad(
                    "type=local writes a directory, not standard output: use type=tar,dest=- \
                     (or -o -) for a tar of the filesystem on standard output"
                        .to_owned(),
                ));
            }
            "local" => ExportTarget::Local { dest: need_dest()? },
            "tar" => ExportTarget::Tar { dest: need_dest()? },
            "image" if push => ExportTarget::Registry { names },
            // Without push, the names of type=image come from -t, as before.
            "image" => ExportTarget::Image,
            "registry" => ExportTarget::Registry { names },
            other => {
                return Err(bad(format!(
                    "unknown type {other:?}: expected oci, docker, local, tar, image or registry"
                )));
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_is_standard_output_where_a_file_is_written() {
        assert_eq!(
            "-".parse::<ExportTarget>().unwrap(),
            ExportTarget::Tar { dest: "-".into() }
        );
        for spec in ["type=tar,dest=-", "type=oci,dest=-", "type=docker,dest=-"] {
            let target: ExportTarget = spec.parse().unwrap();
            assert!(
                matches!(&target, ExportTarget::Tar { dest } | ExportTarget::Oci { dest, .. } | ExportTarget::Docker { dest } if dest == std::path::Path::new("-")),
                "{spec}: {target:?}"
            );
        }
        for spec in ["type=local,dest=-", "type=oci,tar=false,dest=-"] {
            let err = spec.parse::<ExportTarget>().unwrap_err();
            assert!(err.reason.contains("directory"), "{spec}: {err}");
        }
    }

    #[test]
    fn parses_docker_build_output_syntax() {
        let cases = [
            (
                "type=oci,dest=out.tar",
                ExportTarget::Oci {
                    dest: "out.tar".into(),
                    tar: true,
                },
            ),
            (
                "type=oci,dest=dir,tar=false",
                ExportTarget::Oci {
                    dest: "dir".into(),
                    tar: false,
                },
            ),
            (
                "type=docker,dest=d.tar",
                ExportTarget::Docker {
                    dest: "d.tar".into(),
                },
            ),
            (
                "type=local,dest=root",
                ExportTarget::Local {
                    dest: "root".into(),
                },
            ),
            (
                "type=tar,dest=rootfs.tar",
                ExportTarget::Tar {
                    dest: "rootfs.tar".into(),
                },
            ),
            ("type=image", ExportTarget::Image),
            (
                "outdir",
                ExportTarget::Local {
                    dest: "outdir".into(),
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.parse::<ExportTarget>().unwrap(), want, "{spec}");
        }
        let name = |s: &str| s.parse::<ImageName>().unwrap();
        let registry_cases = [
            (
                "type=registry,name=127.0.0.1:5000/app:1",
                vec![name("127.0.0.1:5000/app:1")],
            ),
            (
                "type=image,name=127.0.0.1:5000/app:1,push=true",
                vec![name("127.0.0.1:5000/app:1")],
            ),
            ("type=registry", vec![]),
            (
                "type=registry,name=a:1,name=b:2,push=true",
                vec![name("a:1"), name("b:2")],
            ),
        ];
        for (spec, names) in registry_cases {
            assert_eq!(
                spec.parse::<ExportTarget>().unwrap(),
                ExportTarget::Registry { names },
                "{spec}"
            );
        }
        assert_eq!(
            "type=image,name=app:1,push=false"
                .parse::<ExportTarget>()
                .unwrap(),
            ExportTarget::Image
        );
        for bad in [
            "type=registry,name=Not A Name",
            "type=image,push=maybe",
            "type=oci",
            "type=nope,dest=x",
            "type=oci,dest=x,tar=maybe",
            "dest=x",
        ] {
            assert!(bad.parse::<ExportTarget>().is_err(), "{bad}");
        }
    }
}
