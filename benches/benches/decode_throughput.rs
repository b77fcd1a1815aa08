//! Criterion bench: decode + dispatch of the benchmark streams (compute command buffer,
//! submit/update mix, back-to-back vkCmdDispatch) with a no-op handler, through the id
//! table and through the identity map. Throughput is in commands (elements) per second.
//! Run with `cargo bench -p vgpu-benches --bench decode_throughput`; `decode_report`
//! writes the CSV and chart.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vgpu_benches::decode::{decode_all, streams, NoOp};
use vulkan_proto::{Arena, Encoder, RawIds};

fn decode_dispatch(c: &mut Criterion) {
    let (streams, table) = streams();
    let mut group = c.benchmark_group("decode_dispatch");
    for s in &streams {
        group.throughput(Throughput::Elements(s.commands));
        let mut arena = Arena::default();
        let mut reply = Encoder::new();
        group.bench_with_input(BenchmarkId::new("hash_table", s.name), s, |b, s| {
            let mut h = NoOp::new(table.clone());
            b.iter(|| {
                decode_all(
                    &mut h,
                    std::hint::black_box(&s.bytes),
                    &mut arena,
                    &mut reply,
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("identity", s.name), s, |b, s| {
            let mut h = NoOp::new(RawIds);
            b.iter(|| {
                decode_all(
                    &mut h,
                    std::hint::black_box(&s.bytes),
                    &mut arena,
                    &mut reply,
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode_dispatch);
criterion_main!(benches);
