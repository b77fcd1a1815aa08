//! The event loop: drives an [`Arbiter`] and a [`Device`] on a virtual clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::arbiter::{Arbiter, ArbiterError, Decision};
use crate::ids::{QueueId, SubmissionId};
use crate::model::{Completion, SubmitRequest};
use crate::sim::device::Device;
use crate::sim::report::{JobRecord, Report};
use crate::sim::rng::Rng;
use crate::sim::workload::Workload;
use crate::sim::{Change, Result, Scenario, SimError};

/// Extra virtual time allowed after the scenario's end for queued work to drain.
const DRAIN_NS: u64 = 60_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// VM (by index) submits one job.
    Arrive(usize),
    /// The host sees job (by index) complete.
    Notify(usize),
    /// A throttle timer.
    Poll,
    /// Scenario change (by index).
    Change(usize),
}

struct Engine<'a> {
    scenario: &'a Scenario,
    arbiter: Arbiter,
    device: Device,
    rng: Rng,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    jobs: Vec<JobRecord>,
    by_submission: HashMap<SubmissionId, usize>,
    rejected: Vec<u64>,
    next_poll: Option<u64>,
    idle_with_work_ns: u64,
}

impl Engine<'_> {
    fn schedule(&mut self, at: u64, event: Event) {
        self.queue.push(Reverse((at, self.seq, event)));
        self.seq += 1;
    }

    fn stop_ns(&self, vm: usize) -> u64 {
        let v = &self.scenario.vms[vm];
        v.stop_ns
            .unwrap_or(self.scenario.duration_ns)
            .min(self.scenario.duration_ns)
    }

    fn start(&mut self) {
        for (i, vm) in self.scenario.vms.iter().enumerate() {
            match vm.workload {
                Workload::ClosedLoop { outstanding, .. } => {
                    for _ in 0..outstanding {
                        self.schedule(vm.start_ns, Event::Arrive(i));
                    }
                }
                Workload::Poisson { .. } => {
                    let gap = self.gap(i);
                    self.schedule(vm.start_ns.saturating_add(gap), Event::Arrive(i));
                }
                Workload::Idle => {}
            }
        }
        for (i, (at, _)) in self.scenario.changes.iter().enumerate() {
            self.schedule(*at, Event::Change(i));
        }
    }

    fn gap(&mut self, vm: usize) -> u64 {
        let mean = self.scenario.vms[vm].workload.mean_gap_ns().unwrap_or(0.0);
        #[allow(
            clippy::cast_possible_truncation,
            reason = "exponential gaps are non-negative and far below 2^64 ns"
        )]
        let gap = self.rng.exponential(mean).round() as u64;
        gap
    }

    fn arrive(&mut self, now: u64, vm: usize) {
        if now >= self.stop_ns(vm) {
            return;
        }
        let spec = self.scenario.vms[vm];
        let work_ns = spec.workload.job_ns();
        let req = SubmitRequest {
            vm: spec.id,
            queue: QueueId(0),
            cost_hint_ns: spec.hints.then_some(work_ns),
            tag: u64::try_from(self.jobs.len()).unwrap_or(u64::MAX),
        };
        match self.arbiter.submit(now, req) {
            Ok(id) => {
                self.by_submission.insert(id, self.jobs.len());
                self.jobs.push(JobRecord::new(spec.id, id, now, work_ns));
            }
            Err(ArbiterError::QueueFull(_)) => self.rejected[vm] += 1,
            // Unknown VM or queue cannot happen: the engine attached every VM.
            Err(_) => self.rejected[vm] += 1,
        }
        if let Workload::Poisson { .. } = spec.workload {
            let next = now.saturating_add(self.gap(vm));
            if next < self.stop_ns(vm) {
                self.schedule(next, Event::Arrive(vm));
            }
        }
    }

    fn notify(&mut self, now: u64, job: usize) -> Result<()> {
        let rec = &mut self.jobs[job];
        rec.completed = true;
        let done = Completion {
            submission: rec.submission,
            device_ns: rec.device_ns(),
        };
        let vm_id = rec.vm;
        self.arbiter.complete(now, done)?;
        if let Some(vm) = self.scenario.vms.iter().position(|v| v.id == vm_id) {
            if let Workload::ClosedLoop { think_ns, .. } = self.scenario.vms[vm].workload {
                let next = now.saturating_add(think_ns);
                if next < self.stop_ns(vm) {
                    self.schedule(next, Event::Arrive(vm));
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, now: u64, change: usize) -> Result<()> {
        match self.scenario.changes[change].1 {
            Change::Policy(p) => self.arbiter.set_policy(now, p),
            Change::Vm(vm, cfg) => self.arbiter.update_vm(now, vm, cfg)?,
            Change::Gpu(gpu) => self.arbiter.set_gpu(now, gpu)?,
        }
        Ok(())
    }

    fn pump(&mut self, now: u64) {
        loop {
            match self.arbiter.next_grant(now) {
                Decision::Grant(g) => {
                    let Some(&job) = self.by_submission.get(&g.submission) else {
                        continue;
                    };
                    let rec = &mut self.jobs[job];
                    let exec = self.device.run(now, rec.work_ns);
                    rec.grant_ns = now;
                    rec.start_ns = exec.start_ns;
                    rec.end_ns = exec.end_ns;
                    rec.notify_ns = exec.notify_ns;
                    self.schedule(exec.notify_ns, Event::Notify(job));
                }
                Decision::Throttled { retry_at_ns } => {
                    let stale = self.next_poll.is_none_or(|p| p <= now || p > retry_at_ns);
                    if stale {
                        self.next_poll = Some(retry_at_ns);
                        self.schedule(retry_at_ns, Event::Poll);
                    }
                    return;
                }
                Decision::Busy | Decision::Idle => return,
            }
        }
    }

    fn run(mut self) -> Result<Report> {
        self.start();
        let limit = self.scenario.duration_ns.saturating_add(DRAIN_NS);
        let mut last = 0;
        let mut idle_with_work = false;
        while let Some(Reverse((now, _, event))) = self.queue.pop() {
            if now > limit {
                break;
            }
            if idle_with_work {
                self.idle_with_work_ns += now - last;
            }
            match event {
                Event::Arrive(vm) => self.arrive(now, vm),
                Event::Notify(job) => self.notify(now, job)?,
                Event::Poll => {
                    if self.next_poll == Some(now) {
                        self.next_poll = None;
                    }
                }
                Event::Change(i) => self.apply(now, i)?,
            }
            self.pump(now);
            idle_with_work = self.arbiter.in_flight() == 0 && self.arbiter.queued_total() > 0;
            last = now;
        }
        let queued = self.arbiter.queued_total() + self.arbiter.in_flight();
        if queued > 0 {
            return Err(SimError::DidNotDrain {
                queued,
                limit_ns: limit,
            });
        }
        let vm_stats = self
            .scenario
            .vms
            .iter()
            .map(|v| (v.id, self.arbiter.vm_stats(v.id).unwrap_or_default()))
            .collect();
        Ok(Report {
            duration_ns: self.scenario.duration_ns,
            end_ns: last,
            jobs: self.jobs,
            rejected: self
                .scenario
                .vms
                .iter()
                .map(|v| v.id)
                .zip(self.rejected)
                .collect(),
            vm_stats,
            idle_with_work_ns: self.idle_with_work_ns,
        })
    }
}

/// Runs a scenario to completion: workloads stop at `duration_ns`, then everything queued
/// drains. Fails if the arbiter rejects the configuration or the run does not drain.
pub fn run(scenario: &Scenario) -> Result<Report> {
    if scenario.duration_ns == 0 {
        return Err(SimError::ZeroDuration);
    }
    let mut arbiter = Arbiter::new(scenario.gpu, scenario.policy, scenario.accounting)?;
    for vm in &scenario.vms {
        arbiter.attach(0, vm.id, vm.config)?;
    }
    let engine = Engine {
        scenario,
        arbiter,
        device: Device::new(scenario.device, scenario.seed ^ 0x5EED_DE71_CE00_0001),
        rng: Rng::new(scenario.seed),
        queue: BinaryHeap::new(),
        seq: 0,
        jobs: Vec::new(),
        by_submission: HashMap::new(),
        rejected: vec![0; scenario.vms.len()],
        next_poll: None,
        idle_with_work_ns: 0,
    };
    engine.run()
}
