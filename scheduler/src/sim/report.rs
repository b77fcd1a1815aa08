//! What a simulation run produced, and the metrics computed from it.

use crate::arbiter::VmStats;
use crate::ids::{SubmissionId, VmId};
use crate::model::PPM;

/// One submission's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRecord {
    /// Its VM.
    pub vm: VmId,
    /// Its arbiter id.
    pub submission: SubmissionId,
    /// Guest submit time.
    pub arrival_ns: u64,
    /// Grant time.
    pub grant_ns: u64,
    /// Device start.
    pub start_ns: u64,
    /// Device end.
    pub end_ns: u64,
    /// When the host (and so the guest) saw the fence.
    pub notify_ns: u64,
    /// Nominal work in ns of device time (what the guest asked for).
    pub work_ns: u64,
    /// Whether it completed.
    pub completed: bool,
}

impl JobRecord {
    /// A job that has just arrived.
    pub fn new(vm: VmId, submission: SubmissionId, arrival_ns: u64, work_ns: u64) -> JobRecord {
        JobRecord {
            vm,
            submission,
            arrival_ns,
            grant_ns: 0,
            start_ns: 0,
            end_ns: 0,
            notify_ns: 0,
            work_ns,
            completed: false,
        }
    }

    /// Measured device time.
    pub fn device_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }

    /// Guest-visible latency: submit to fence.
    pub fn latency_ns(&self) -> u64 {
        self.notify_ns - self.arrival_ns
    }

    fn overlap_ns(&self, t0: u64, t1: u64) -> u64 {
        self.end_ns.min(t1).saturating_sub(self.start_ns.max(t0))
    }
}

/// The result of [`crate::sim::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The scenario's duration (workloads stopped then).
    pub duration_ns: u64,
    /// When the last event ran (after draining).
    pub end_ns: u64,
    /// Every accepted submission, in arrival order.
    pub jobs: Vec<JobRecord>,
    /// Submissions refused by backpressure, per VM.
    pub rejected: Vec<(VmId, u64)>,
    /// The arbiter's counters per VM at the end.
    pub vm_stats: Vec<(VmId, VmStats)>,
    /// Time during which work was queued but nothing was in flight.
    pub idle_with_work_ns: u64,
}

/// The `p`-th percentile (`0.0..=1.0`, nearest rank) of sorted values; 0 if empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "rank is within 0..len"
    )]
    let rank = ((p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[allow(
    clippy::cast_precision_loss,
    reason = "simulated durations are far below 2^53 ns"
)]
fn f(x: u64) -> f64 {
    x as f64
}

impl Report {
    /// Completed jobs of one VM, in arrival order.
    pub fn completed(&self, vm: VmId) -> impl Iterator<Item = &JobRecord> + '_ {
        self.jobs.iter().filter(move |j| j.vm == vm && j.completed)
    }

    /// Nominal work done for `vm` within `[t0, t1)`, counting partly overlapping jobs pro
    /// rata of their execution time.
    pub fn work_ns(&self, vm: VmId, t0: u64, t1: u64) -> f64 {
        self.completed(vm)
            .map(|j| {
                let d = j.device_ns();
                if d == 0 {
                    0.0
                } else {
                    f(j.work_ns) * f(j.overlap_ns(t0, t1)) / f(d)
                }
            })
            .sum()
    }

    /// Device time used by `vm` within `[t0, t1)`.
    pub fn device_ns_in(&self, vm: VmId, t0: u64, t1: u64) -> u64 {
        self.completed(vm).map(|j| j.overlap_ns(t0, t1)).sum()
    }

    /// Fraction of `[t0, t1)` the device was executing anything.
    pub fn busy_fraction(&self, t0: u64, t1: u64) -> f64 {
        if t1 <= t0 {
            return 0.0;
        }
        let busy: u64 = self
            .jobs
            .iter()
            .filter(|j| j.completed)
            .map(|j| j.overlap_ns(t0, t1))
            .sum();
        f(busy) / f(t1 - t0)
    }

    /// Sorted latencies of `vm`'s jobs that arrived within `[t0, t1)`.
    pub fn latencies_ns(&self, vm: VmId, t0: u64, t1: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .completed(vm)
            .filter(|j| (t0..t1).contains(&j.arrival_ns))
            .map(JobRecord::latency_ns)
            .collect();
        v.sort_unstable();
        v
    }

    /// The longest measured submission of any VM.
    pub fn largest_job_ns(&self) -> u64 {
        self.jobs
            .iter()
            .filter(|j| j.completed)
            .map(JobRecord::device_ns)
            .max()
            .unwrap_or(0)
    }

    /// The largest amount, in ns, by which `vm` used more than `cap_ppm` of any window:
    /// `max over [t0, t1] of used(t0, t1) - cap × (t1 - t0)`. Exact: the worst window
    /// starts at some job's start and ends at some job's end.
    pub fn max_cap_excess_ns(&self, vm: VmId, cap_ppm: u32) -> f64 {
        let mut jobs: Vec<(u64, u64)> =
            self.completed(vm).map(|j| (j.start_ns, j.end_ns)).collect();
        jobs.sort_unstable();
        let cap = f64::from(cap_ppm) / f64::from(PPM);
        // prefix[k] = device time of jobs 0..k.
        let mut prefix = Vec::with_capacity(jobs.len() + 1);
        prefix.push(0.0);
        for &(s, e) in &jobs {
            let last = prefix.last().copied().unwrap_or(0.0);
            prefix.push(last + f(e - s));
        }
        // best_end[m] = max over m' >= m of prefix[m'+1] - cap * end[m'].
        let mut best = f64::NEG_INFINITY;
        let mut excess = 0.0_f64;
        for k in (0..jobs.len()).rev() {
            best = best.max(prefix[k + 1] - cap * f(jobs[k].1));
            excess = excess.max(best - (prefix[k] - cap * f(jobs[k].0)));
        }
        excess
    }

    /// The longest time a job of `vm` waited at the head of its runlist: from when it
    /// could have been granted (arrival, or the previous job's grant) to its grant.
    pub fn max_head_wait_ns(&self, vm: VmId) -> u64 {
        let mut prev_grant = 0;
        let mut worst = 0;
        for j in self.jobs.iter().filter(|j| j.vm == vm && j.completed) {
            let ready = j.arrival_ns.max(prev_grant);
            worst = worst.max(j.grant_ns.saturating_sub(ready));
            prev_grant = j.grant_ns;
        }
        worst
    }

    /// Jobs of `vm` that were accepted but never completed.
    pub fn lost(&self, vm: VmId) -> usize {
        self.jobs
            .iter()
            .filter(|j| j.vm == vm && !j.completed)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(vm: u32, start: u64, end: u64) -> JobRecord {
        let mut j = JobRecord::new(VmId(vm), SubmissionId(0), start, end - start);
        j.grant_ns = start;
        j.start_ns = start;
        j.end_ns = end;
        j.notify_ns = end;
        j.completed = true;
        j
    }

    fn report(jobs: Vec<JobRecord>) -> Report {
        Report {
            duration_ns: 100,
            end_ns: 100,
            jobs,
            rejected: Vec::new(),
            vm_stats: Vec::new(),
            idle_with_work_ns: 0,
        }
    }

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn work_counts_partial_jobs_pro_rata() {
        let r = report(vec![job(1, 0, 10), job(1, 10, 20)]);
        assert_eq!(r.work_ns(VmId(1), 5, 15), 10.0);
        assert_eq!(r.device_ns_in(VmId(1), 5, 15), 10);
        assert_eq!(r.busy_fraction(0, 40), 0.5);
    }

    #[test]
    fn cap_excess_finds_the_worst_window() {
        // Busy 0..30 then idle until 100: at a 50 % cap the window 0..30 exceeds by 15.
        let r = report(vec![job(1, 0, 10), job(1, 10, 30), job(1, 90, 100)]);
        assert!((r.max_cap_excess_ns(VmId(1), 500_000) - 15.0).abs() < 1e-9);
        // A VM that never exceeds: 10 % busy, evenly spread, at a 50 % cap.
        let r = report(vec![job(2, 0, 1), job(2, 10, 11), job(2, 20, 21)]);
        assert!((r.max_cap_excess_ns(VmId(2), 500_000) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn head_wait_measures_time_ready_but_not_granted() {
        let mut a = job(1, 0, 10);
        a.arrival_ns = 0;
        let mut b = job(1, 25, 30);
        b.arrival_ns = 5;
        let r = report(vec![a, b]);
        assert_eq!(r.max_head_wait_ns(VmId(1)), 20);
    }
}
