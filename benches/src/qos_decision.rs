//! The arbiter's per-submission path with many backlogged VMs, for timing.

use vgpu_scheduler::{
    AccountingConfig, Arbiter, Completion, Decision, GpuConfig, Policy, QueueId, Share,
    SubmitRequest, VmConfig, VmId, PPM,
};

/// An arbiter with `vms` attached VMs (equal shares, alternating latency classes), each
/// with `queued` submissions waiting, under `policy`.
pub fn loaded_arbiter(policy: Policy, vms: u32, queued: u32) -> Arbiter {
    let mut a = Arbiter::new(GpuConfig::DEFAULT, policy, AccountingConfig::DEFAULT)
        .unwrap_or_else(|e| panic!("default GPU config rejected: {e}"));
    let each = Share::from_ppm(u64::from(PPM / vms.max(1)))
        .unwrap_or_else(|e| panic!("share for {vms} VMs: {e}"));
    for vm in 0..vms {
        a.attach(0, VmId(vm), VmConfig::new(each))
            .unwrap_or_else(|e| panic!("attach: {e}"));
        for _ in 0..queued {
            a.submit(0, request(vm))
                .unwrap_or_else(|e| panic!("submit: {e}"));
        }
    }
    a
}

fn request(vm: u32) -> SubmitRequest {
    SubmitRequest {
        vm: VmId(vm),
        queue: QueueId(0),
        cost_hint_ns: None,
        tag: 0,
    }
}

/// One steady-state cycle of the per-submission path: decide and grant the next
/// submission, complete it with a measured time, and queue a replacement for its VM.
/// Returns the new clock.
pub fn cycle(a: &mut Arbiter, now: u64) -> u64 {
    match a.next_grant(now) {
        Decision::Grant(g) => {
            // Vary the measured time a little so the accounting does real work.
            let device_ns = 1_000_000 + (now / 7) % 50_000;
            let now = now + device_ns;
            let done = Completion {
                submission: g.submission,
                device_ns,
            };
            if a.complete(now, done).is_ok() {
                // The VM had room: it just lost one submission from its runlist.
                let _ = a.submit(now, request(g.vm.0));
            }
            now
        }
        Decision::Throttled { retry_at_ns } => retry_at_ns,
        Decision::Busy | Decision::Idle => now + 1_000_000,
    }
}

/// Median, minimum and maximum ns per [`cycle`] over `samples` runs of `iters` cycles,
/// after `iters` warm-up cycles.
pub fn time_cycles(policy: Policy, vms: u32, samples: usize, iters: u32) -> (f64, f64, f64) {
    let mut a = loaded_arbiter(policy, vms, 4);
    let mut now = 0;
    for _ in 0..iters {
        now = cycle(&mut a, now);
    }
    let mut per_cycle = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = std::time::Instant::now();
        for _ in 0..iters {
            now = cycle(&mut a, std::hint::black_box(now));
        }
        per_cycle.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
    }
    per_cycle.sort_by(f64::total_cmp);
    let median = per_cycle[per_cycle.len() / 2];
    let min = per_cycle.first().copied().unwrap_or(f64::NAN);
    let max = per_cycle.last().copied().unwrap_or(f64::NAN);
    (median, min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_keep_every_vm_backlogged_and_granting() {
        let mut a = loaded_arbiter(Policy::FixedShare, 64, 4);
        let mut now = 0;
        for _ in 0..10_000 {
            now = cycle(&mut a, now);
        }
        assert_eq!(a.queued_total() + a.in_flight(), 64 * 4);
        for vm in 0..64 {
            let s = a.vm_stats(VmId(vm)).unwrap();
            assert!(s.completed > 100, "vm {vm}: {s:?}");
        }
    }
}
