//! Parses a generated Dockerfile once; for instruction counting under callgrind:
//! `valgrind --tool=callgrind target/release/examples/scaling stages 1024`
fn main() {
    let mut args = std::env::args().skip(1);
    let shape = args.next().unwrap_or_else(|| "stages".into());
    let kib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let text = match shape.as_str() {
        "long" => rbuild_benches::one_long_instruction(kib * 1024),
        _ => rbuild_benches::dockerfile_of_size(kib * 1024),
    };
    let parsed = rbuild_dockerfile::parse(&text).expect("valid Dockerfile");
    println!("{} stages", parsed.stages.len());
}
