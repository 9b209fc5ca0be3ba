//! The new-user walkthrough of issue 15 (`scripts/walkthrough`) with this build's rbuild:
//! the docker-habit commands against a fresh store, a local htpasswd registry and a
//! private dockerd, each result checked by the script. Fails with the script's output,
//! which names the step and what was expected. Needs root, the python3 and busybox
//! fixtures, PyPI, docker-registry and dockerd (the script says which is missing).

use std::path::Path;
use std::process::Command;

#[test]
fn a_new_user_walks_through_the_docker_habit_commands() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/walkthrough");
    let out = Command::new(&script)
        .env("RBUILD", env!("CARGO_BIN_EXE_rbuild"))
        .output()
        .expect("running scripts/walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/walkthrough failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("walkthrough: all steps passed"), "{stdout}");
}
