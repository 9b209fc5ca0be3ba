//! Fuzzes the whole Dockerfile front end: syntax tree, AST dump, typed instructions and
//! error rendering. Any panic, hang or super-linear blow-up is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tree) = rbuild_dockerfile::parse_syntax(source) {
        let _ = rbuild_dockerfile::dump(&tree);
    }
    match rbuild_dockerfile::parse(source) {
        Ok(dockerfile) => {
            let _ = format!("{dockerfile:?}");
        }
        Err(err) => {
            let _ = err.render("Dockerfile", source);
        }
    }
});
