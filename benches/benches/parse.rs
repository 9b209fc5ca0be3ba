//! Parse time of large Dockerfiles: the front end must stay linear in its input.
//!
//! `cargo bench -p rbuild-benches --bench parse`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rbuild_benches::{dockerfile_of_size, one_long_instruction};

fn parse_sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.sample_size(20);
    for &kib in &[100usize, 1024] {
        let text = dockerfile_of_size(kib * 1024);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("stages", kib), &text, |b, text| {
            b.iter(|| rbuild_dockerfile::parse(text).expect("valid Dockerfile"))
        });
        let long = one_long_instruction(kib * 1024);
        group.throughput(Throughput::Bytes(long.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("one_instruction", kib),
            &long,
            |b, text| b.iter(|| rbuild_dockerfile::parse(text).expect("valid Dockerfile")),
        );
    }
    group.finish();
}

criterion_group!(benches, parse_sizes);
criterion_main!(benches);
