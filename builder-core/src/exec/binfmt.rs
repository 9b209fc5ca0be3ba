//! Whether this machine can run a foreign platform's programs: the kernel hands an ELF
//! binary of another architecture to the `binfmt_misc` handler whose magic and mask
//! match its header (QEMU user emulation, as `qemu-user-static` and
//! `scripts/binfmt-register` set up). A step of such a platform is checked before it runs,
//! so that a missing handler is a clear error instead of `exec format error`.

use std::path::Path;

use rbuild_dockerfile::Platform;

use super::ExecError;

/// Where the kernel shows `binfmt_misc` (Documentation/admin-guide/binfmt-misc.rst).
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Fails when steps of `platform` cannot run here: it is not the host's architecture
/// (`host`) nor one the host runs natively, and no enabled `binfmt_misc` handler in `dir`
/// takes its ELF binaries. When `dir` is not a mounted `binfmt_misc` (no `status` file,
/// as in a container that does not mount it) nothing can be told and the step runs.
pub fn check_emulation(platform: &Platform, host: &Platform, dir: &Path) -> Result<(), ExecError> {
    if !runs_emulated(platform, host) {
        return Ok(());
    }
    let Some(header) = elf_header(&platform.architecture) else {
        // An architecture rbuild knows no ELF header of: let the kernel decide.
        return Ok(());
    };
    let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
        return Ok(());
    };
    let enabled = status.trim() == "enabled";
    let handled = enabled
        && std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                std::fs::read_to_string(entry.path())
                    .is_ok_and(|text| handler_takes(&text, &header))
            })
        });
    if handled {
        Ok(())
    } else {
        Err(ExecError::NoEmulator {
            platform: platform.to_string(),
            host: host.to_string(),
        })
    }
}

/// Whether steps of `platform` run emulated on a `host` machine: the kernel hands their
/// programs to a `binfmt_misc` handler (QEMU) as the host does not run them natively.
pub fn runs_emulated(platform: &Platform, host: &Platform) -> bool {
    platform.os != host.os || !runs_natively(&platform.architecture, &host.architecture)
}

/// Whether a host of architecture `host` runs `arch`'s programs without a handler.
fn runs_natively(arch: &str, host: &str) -> bool {
    arch == host || (host == "amd64" && arch == "386")
}

/// The first 20 bytes of an executable ELF file of `arch` (GOARCH spelling): identity,
/// class, byte order, version, `e_type` `ET_EXEC` and `e_machine` (the System V ABI's
/// values, elf.h `EM_*`); `None` for an architecture not listed.
fn elf_header(arch: &str) -> Option<[u8; 20]> {
    // (64-bit, big-endian, e_machine)
    let (wide, big, machine): (bool, bool, u16) = match arch {
        "386" => (false, false, 3),
        "amd64" => (true, false, 62),
        "arm" => (false, false, 40),
        "arm64" => (true, false, 183),
        "riscv64" => (true, false, 243),
        "s390x" => (true, true, 22),
        "ppc64le" => (true, false, 21),
        "ppc64" => (true, true, 21),
        "mips" => (false, true, 8),
        "mipsle" => (false, false, 8),
        "mips64" => (true, true, 8),
        "mips64le" => (true, false, 8),
        "loong64" => (true, false, 258),
        _ => return None,
    };
    let mut header = [0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = if wide { 2 } else { 1 };
    header[5] = if big { 2 } else { 1 };
    header[6] = 1;
    let (e_type, e_machine) = if big {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    header[16..18].copy_from_slice(&e_type);
    header[18..20].copy_from_slice(&e_machine);
    Some(header)
}

/// Whether the `binfmt_misc` entry `text` (as the kernel shows it: `enabled`,
/// `interpreter`, `flags:`, `offset`, `magic`, `mask` lines) is enabled and matches
/// `header`.
fn handler_takes(text: &str, header: &[u8]) -> bool {
    let mut lines = text.lines();
    if lines.next() != Some("enabled") {
        return false;
    }
    let (mut offset, mut magic, mut mask) = (0usize, None, None);
    for line in lines {
        if let Some(v) = line.strip_prefix("offset ") {
            offset = v.trim().parse().unwrap_or(usize::MAX);
        } else if let Some(v) = line.strip_prefix("magic ") {
            magic = hex(v.trim());
        } else if let Some(v) = line.strip_prefix("mask ") {
            mask = hex(v.trim());
        }
    }
    let Some(magic) = magic else {
        return false;
    };
    magic.iter().enumerate().all(|(i, want)| {
        let m = mask
            .as_ref()
            .map_or(0xff, |m| m.get(i).copied().unwrap_or(0xff));
        offset
            .checked_add(i)
            .and_then(|at| header.get(at))
            .is_some_and(|byte| byte & m == *want)
    })
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's `qemu-user-static` entry for aarch64, as the kernel shows it.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    /// Its entry for s390x (big-endian).
    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\n\
        flags: POCF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\n\
        mask fffffffffffffffcfffffffffffffffffffeffff\n";

    fn platform(text: &str) -> Platform {
        Platform::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    fn binfmt_dir(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }

    #[test]
    fn a_handler_takes_the_binaries_of_its_architecture_only() {
        let arm64 = elf_header("arm64").unwrap_or_default();
        assert!(handler_takes(AARCH64, &arm64));
        assert!(!handler_takes(
            AARCH64,
            &elf_header("riscv64").unwrap_or_default()
        ));
        assert!(!handler_takes(
            AARCH64,
            &elf_header("arm").unwrap_or_default()
        ));
        assert!(handler_takes(
            S390X,
            &elf_header("s390x").unwrap_or_default()
        ));
        assert!(!handler_takes(
            &AARCH64.replacen("enabled", "disabled", 1),
            &arm64
        ));
    }

    #[test]
    fn a_foreign_platform_without_a_handler_is_refused_naming_what_installs_one() {
        let host = platform("linux/amd64");
        let dir = binfmt_dir(&[("status", "enabled\n"), ("qemu-aarch64", AARCH64)]);
        assert!(check_emulation(&platform("linux/arm64"), &host, dir.path()).is_ok());
        assert!(check_emulation(&platform("linux/amd64"), &host, dir.path()).is_ok());
        assert!(check_emulation(&platform("linux/386"), &host, dir.path()).is_ok());
        let err = check_emulation(&platform("linux/s390x"), &host, dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(err.contains("qemu-user-static"), "{err}");
        assert!(err.contains("scripts/binfmt-register"), "{err}");

        let disabled = binfmt_dir(&[("status", "disabled\n"), ("qemu-aarch64", AARCH64)]);
        assert!(check_emulation(&platform("linux/arm64"), &host, disabled.path()).is_err());
    }

    #[test]
    fn without_binfmt_misc_mounted_nothing_is_refused() {
        let empty = binfmt_dir(&[]);
        let host = platform("linux/amd64");
        assert!(check_emulation(&platform("linux/s390x"), &host, empty.path()).is_ok());
    }
}
