//! Platforms (`linux/arm64`), parsed and normalized as containerd's `platforms` package
//! does, so that `linux/arm64/v8`, `linux/aarch64` and `linux/arm64` are one platform and
//! `TARGETPLATFORM` is spelled as BuildKit spells it.

use serde::Serialize;

/// An operating system and architecture, as in `linux/arm64` or `linux/arm/v7`; always
/// normalized (see [`Platform::new`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v6`, ... or empty.
    pub variant: String,
}

impl Platform {
    /// The platform of `os`, `architecture` and `variant` (empty: none), normalized as
    /// containerd's `platforms.Normalize`: lower case; `macos` is `darwin`; `x86_64` and
    /// `x86-64` are `amd64` (variant `v1` dropped); `aarch64` is `arm64`, whose variant
    /// `8`/`v8`/`v8.0` is dropped and `9`/`9.0`/`v9.0` is `v9`; `arm` without a variant
    /// is `arm/v7` and a bare digit gets its `v`; `armhf` is `arm/v7`, `armel` `arm/v6`;
    /// `i386` is `386`.
    pub fn new(os: &str, architecture: &str, variant: &str) -> Platform {
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        let architecture = architecture.to_ascii_lowercase();
        let variant = variant.to_ascii_lowercase();
        let (architecture, variant) = match architecture.as_str() {
            "i386" => ("386", String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64",
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64",
                match variant.as_str() {
                    "8" | "v8" | "v8.0" => String::new(),
                    "9" | "9.0" | "v9.0" => "v9".to_owned(),
                    _ => variant,
                },
            ),
            "armhf" => ("arm", "v7".to_owned()),
            "armel" => ("arm", "v6".to_owned()),
            "arm" => (
                "arm",
                match variant.as_str() {
                    "" | "7" => "v7".to_owned(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            other => (other, variant),
        };
        Platform {
            os,
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// `linux/amd64`, the default build and target platform.
    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", "")
    }

    /// Reads `os/arch[/variant]`, normalized (see [`Platform::new`]); `None` when the
    /// text has another shape.
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?;
        let architecture = parts.next().filter(|s| !s.is_empty())?;
        let variant = parts.next().unwrap_or("");
        if parts.next().is_some() {
            return None;
        }
        Some(Platform::new(os, architecture, variant))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn platforms_parse_normalized_as_containerd_normalizes_them() {
        for (given, normal) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/arm64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/aarch64/8", "linux/arm64"),
            ("linux/arm64/v8.0", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/v5", "linux/arm/v5"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("Linux/ARM64", "linux/arm64"),
            ("macos/arm64", "darwin/arm64"),
            ("linux/riscv64", "linux/riscv64"),
            ("linux/s390x", "linux/s390x"),
        ] {
            let platform = Platform::parse(given).expect(given);
            assert_eq!(platform.to_string(), normal, "{given}");
            assert_eq!(Platform::parse(normal), Some(platform), "{given}");
        }
    }

    #[test]
    fn the_parts_of_a_platform_are_its_normalized_os_architecture_and_variant() {
        let p = Platform::parse("linux/arm/7").expect("valid platform");
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()),
            ("linux", "arm", "v7")
        );
        assert_eq!(Platform::linux_amd64().to_string(), "linux/amd64");
    }

    #[test]
    fn text_of_another_shape_is_no_platform() {
        for bad in ["linux", "arm64", "/amd64", "linux/", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_none(), "{bad:?}");
        }
    }
}
