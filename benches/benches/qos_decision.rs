//! Criterion bench: the arbiter's per-submission path (grant + complete + resubmit) with
//! 64 attached, backlogged VMs, per policy. Run with
//! `cargo bench -p vgpu-benches --bench qos_decision`; the target is a median ≤ 2 µs.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vgpu_benches::qos_decision::{cycle, loaded_arbiter};
use vgpu_scheduler::Policy;

fn decision_64_vms(c: &mut Criterion) {
    let mut group = c.benchmark_group("qos_decision_64_vms");
    for policy in Policy::ALL {
        group.bench_with_input(
            BenchmarkId::from_parameter(policy.name()),
            &policy,
            |b, &p| {
                let mut arbiter = loaded_arbiter(p, 64, 4);
                let mut now = 0;
                b.iter(|| {
                    now = cycle(&mut arbiter, std::hint::black_box(now));
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decision_64_vms);
criterion_main!(benches);
