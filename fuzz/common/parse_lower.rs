//! The body of the `parse_lower` fuzz target, shared with the corpus replay test in
//! `dockerfile-parser/tests/fuzz_corpus.rs` so both exercise exactly the same path:
//! syntax tree, AST dump, typed instructions, lowering (with and without a target and
//! build args), graph rendering and error rendering.

use rbuild_dockerfile::{Environment, LowerOptions};

/// Runs the whole front end on `data`; returns normally unless something panics.
pub fn run(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tree) = rbuild_dockerfile::parse_syntax(source) {
        let _ = rbuild_dockerfile::dump(&tree);
    }
    let dockerfile = match rbuild_dockerfile::parse(source) {
        Ok(dockerfile) => dockerfile,
        Err(err) => {
            let _ = err.render("Dockerfile", source);
            return;
        }
    };
    // Lower for the last stage, then for the first named stage with a build arg set:
    // the two paths through target pruning and ARG scoping.
    let mut options = vec![LowerOptions::default()];
    if let Some(name) = dockerfile.stages.iter().find_map(|s| s.name.clone()) {
        let mut build_args = Environment::default();
        build_args.set("A", "1");
        options.push(LowerOptions {
            target: Some(name),
            build_args,
            ..LowerOptions::default()
        });
    }
    for options in &options {
        match rbuild_dockerfile::lower(&dockerfile, options) {
            Ok(graph) => {
                let _ = graph.to_text();
                let _ = graph.to_dot();
            }
            Err(err) => {
                let _ = err.render("Dockerfile", source);
            }
        }
    }
}
