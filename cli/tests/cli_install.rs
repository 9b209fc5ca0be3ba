//! `scripts/install` into a temporary prefix: the binary runs, `man -l` renders the
//! installed pages, and the installed bash completion completes a subcommand. Needs man
//! and bash; without them the test fails saying so.

use std::path::Path;
use std::process::Command;

fn run(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} could not be run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_puts_binary_manual_and_completions_under_the_prefix() {
    let prefix = tempfile::tempdir().expect("creating a temp prefix");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install");
    run(
        Command::new(&script)
            .arg(prefix.path())
            // The test's own binary: no release build inside the test.
            .env("RBUILD_BINARY", env!("CARGO_BIN_EXE_rbuild")),
        "scripts/install",
    );
    let p = prefix.path();
    let version = run(
        Command::new(p.join("bin/rbuild")).arg("--version"),
        "the installed rbuild",
    );
    assert!(version.starts_with("rbuild "), "{version}");

    for page in ["rbuild.1", "rbuild-build.1", "rbuild-run.1"] {
        let text = run(
            Command::new("man")
                .arg("-l")
                .arg(p.join("share/man/man1").join(page))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80"),
            "man -l (install the man-db package)",
        );
        assert!(
            text.contains("NAME"),
            "{page} renders no NAME section:\n{text}"
        );
        let name = page.trim_end_matches(".1");
        assert!(text.contains(name), "{page} does not name {name}:\n{text}");
    }

    // What bash asks the completion function for `rbuild im<TAB>`.
    let completion = p.join("share/bash-completion/completions/rbuild");
    let words = run(
        Command::new("bash").arg("-c").arg(format!(
            "source '{}' && f=$(complete -p rbuild | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p') && \
             COMP_WORDS=(rbuild im) COMP_CWORD=1 COMP_LINE='rbuild im' COMP_POINT=9 && \
             $f rbuild im rbuild && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            completion.display()
        )),
        "bash with the installed completion",
    );
    let words: Vec<&str> = words.lines().collect();
    for want in ["images", "image", "import"] {
        assert!(words.contains(&want), "rbuild im<TAB> gave {words:?}");
    }
    for other in [
        "zsh/site-functions/_rbuild",
        "fish/vendor_completions.d/rbuild.fish",
    ] {
        let path = p.join("share").join(other);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.contains("rbuild"),
            "{} is missing or empty",
            path.display()
        );
    }
}
