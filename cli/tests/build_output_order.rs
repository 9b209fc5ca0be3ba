//! A failing RUN's output keeps the order the process wrote it in, stdout and stderr
//! interleaved (issue 15 #10: a stderr line was printed before the stdout line written
//! first), in the plain and the tty views, in the log and in the failure's excerpt.
//! Needs root (builds).

mod support;

use support::run::{busybox_setup, output, rbuild};

/// Pairs the step writes, alternating streams: enough that two pipes read by two
/// threads show a pair swapped.
const PAIRS: usize = 40;

#[test]
fn a_failing_runs_interleaved_output_keeps_its_order() {
    let dockerfile = format!(
        "FROM busybox:latest\nRUN i=0; while [ $i -lt {PAIRS} ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; echo out-last; exit 3\n"
    );
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", &dockerfile)]);
    let mut want: Vec<String> = (0..PAIRS)
        .flat_map(|i| [format!("out{i}"), format!("err{i}")])
        .collect();
    want.push("out-last".to_owned());
    for mode in ["plain", "tty"] {
        let out = output(
            rbuild(&root)
                .args(["build", "--no-cache", "--progress", mode])
                .arg(&ctx),
        );
        assert_eq!(out.status.code(), Some(1), "{mode}: {out:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        // The excerpt of the failure, between the two "------" lines.
        let excerpt: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "------")
            .skip(2)
            .take_while(|l| *l != "------")
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        let tail = &want[want.len() - excerpt.len().min(want.len())..];
        assert_eq!(excerpt, tail, "{mode}: the failure's excerpt\n{text}");
        if mode == "plain" {
            // The live log: "#2 0.012 out0" lines.
            let log: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("#2 ") && !l.contains("ERROR") && !l.contains("RUN"))
                .filter_map(|l| l.split_whitespace().last())
                .filter(|w| w.starts_with("out") || w.starts_with("err"))
                .collect();
            assert_eq!(log, want, "plain: the step's log\n{text}");
        }
    }
}
