//! The arbiter: decides which queued submission may go to the device next.
//!
//! One [`Arbiter`] serves one GPU. Each attached VM has a [`Runlist`]; the renderer calls
//! [`Arbiter::submit`] for every guest queue submission, sends a submission to the host
//! driver only once [`Arbiter::next_grant`] has granted it, and reports the measured device
//! time with [`Arbiter::complete`]. The arbiter never blocks and does no I/O: a throttled
//! decision says when to ask again.
//!
//! # Decision rule
//!
//! 1. At most `in_flight_depth` submissions are outstanding; a second one is only
//!    pipelined while the estimated outstanding device time stays within `pipeline_ns`, so
//!    a newly arriving submission waits at most for one submission or one pipeline budget.
//! 2. A VM with a cap may start a submission only while its bucket is non-negative.
//! 3. Among the remaining VMs with queued work: FIFO by arrival (best-effort), or the
//!    smallest virtual time (all other policies), ties to interactive VMs, then arrival.
//!
//! Each decision is a linear scan over the attached VMs (no allocation).

use std::collections::HashMap;

use thiserror::Error;

use crate::accounting::{Account, AccountingConfig};
use crate::ids::{QueueId, SubmissionId, VmId};
use crate::model::{
    Completion, GpuConfig, Grant, LatencyClass, ModelError, SplitHint, SubmitRequest, VmConfig, PPM,
};
use crate::policy::{self, Effective, Policy, PolicyError};
use crate::runlist::{Queued, Runlist, RunlistError};

/// Errors from the arbiter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ArbiterError {
    /// No VM with this id is attached.
    #[error("unknown {0}")]
    UnknownVm(VmId),
    /// A VM with this id is already attached.
    #[error("{0} is already attached")]
    DuplicateVm(VmId),
    /// The submission names a queue the GPU does not have.
    #[error("{vm} submitted to {queue}, which this GPU does not have")]
    UnknownQueue {
        /// The VM.
        vm: VmId,
        /// The queue it named.
        queue: QueueId,
    },
    /// No submission with this id is in flight.
    #[error("{0} is not in flight")]
    UnknownSubmission(SubmissionId),
    /// The VM's runlist is full: backpressure.
    #[error("submission refused")]
    QueueFull(#[from] RunlistError),
    /// A VM configuration was rejected.
    #[error("VM configuration rejected")]
    Config(#[from] PolicyError),
    /// A GPU configuration was rejected.
    #[error("GPU configuration rejected")]
    Gpu(#[from] ModelError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ArbiterError>;

/// What the device should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send this submission to the device now.
    Grant(Grant),
    /// Work is queued but the device is full: ask again after the next completion.
    Busy,
    /// Work is queued but every VM that has some is over its cap: ask again at this time
    /// (or after the next completion or submission, whichever comes first).
    Throttled {
        /// When the first throttled VM may run again.
        retry_at_ns: u64,
    },
    /// Nothing is queued.
    Idle,
}

/// Counters for one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmStats {
    /// Submissions accepted into the runlist.
    pub submitted: u64,
    /// Submissions refused by backpressure.
    pub rejected: u64,
    /// Submissions granted.
    pub granted: u64,
    /// Submissions completed.
    pub completed: u64,
    /// Submissions cancelled by detach or revoke.
    pub cancelled: u64,
    /// Total measured device time of completed submissions.
    pub device_ns: u64,
}

/// A VM's balances, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmBalance {
    /// Cap bucket level in ns (0 without a cap).
    pub tokens_ns: i128,
    /// Device ns ahead (positive, debt) or behind (negative, credit) the system virtual time.
    pub lead_ns: i128,
    /// Current cost estimate.
    pub estimate_ns: u64,
}

/// What [`Arbiter::revoke`] took away from a VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revoked {
    /// Queued submissions that were cancelled.
    pub queued: Vec<SubmissionId>,
    /// In-flight submissions whose device slots were released.
    pub in_flight: Vec<SubmissionId>,
}

#[derive(Debug, Clone)]
struct VmState {
    id: VmId,
    config: VmConfig,
    eff: Effective,
    runlist: Runlist,
    account: Account,
    in_flight: u32,
    /// When the VM last ran out of work (nothing queued, nothing in flight).
    idle_since: u64,
    /// With a cap: when the bucket is non-negative again (kept current on every change
    /// to the bucket, so a decision is one comparison per VM).
    ready_at: u64,
    stats: VmStats,
}

impl VmState {
    fn backlogged(&self) -> bool {
        self.in_flight > 0 || !self.runlist.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: SubmissionId,
    vm: VmId,
    estimate_ns: u64,
}

/// The per-GPU arbiter. See the module docs.
#[derive(Debug, Clone)]
pub struct Arbiter {
    gpu: GpuConfig,
    policy: Policy,
    accounting: AccountingConfig,
    vms: Vec<VmState>,
    slots: HashMap<VmId, usize>,
    in_flight: Vec<InFlight>,
    in_flight_estimate_ns: u64,
    next_submission: u64,
    next_seq: u64,
    /// System virtual time: the start tag of the last granted submission.
    floor: u128,
    /// Longest recent measured submission (decaying).
    max_cost_ns: u64,
    /// Latest time seen; earlier times from callers are treated as this one.
    now: u64,
}

impl Arbiter {
    /// A new arbiter with no VMs.
    pub fn new(gpu: GpuConfig, policy: Policy, accounting: AccountingConfig) -> Result<Arbiter> {
        gpu.validate()?;
        Ok(Arbiter {
            gpu,
            policy,
            accounting,
            vms: Vec::new(),
            slots: HashMap::new(),
            in_flight: Vec::new(),
            in_flight_estimate_ns: 0,
            next_submission: 0,
            next_seq: 0,
            floor: 0,
            max_cost_ns: 0,
            now: 0,
        })
    }

    /// The GPU configuration in force.
    pub fn gpu(&self) -> &GpuConfig {
        &self.gpu
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Attached VMs, in attach order (modulo detaches).
    pub fn vms(&self) -> impl Iterator<Item = VmId> + '_ {
        self.vms.iter().map(|v| v.id)
    }

    /// A VM's configuration.
    pub fn vm_config(&self, vm: VmId) -> Option<&VmConfig> {
        self.slots.get(&vm).map(|&s| &self.vms[s].config)
    }

    /// A VM's counters.
    pub fn vm_stats(&self, vm: VmId) -> Option<VmStats> {
        self.slots.get(&vm).map(|&s| self.vms[s].stats)
    }

    /// A VM's balances.
    pub fn vm_balance(&self, vm: VmId) -> Option<VmBalance> {
        let vm = &self.vms[*self.slots.get(&vm)?];
        let weight = i128::from(vm.eff.weight_ppm.max(1));
        let scale = i128::try_from(crate::accounting::VT_SCALE).unwrap_or(i128::MAX);
        let lead = i128::try_from(vm.account.vtime()).unwrap_or(i128::MAX)
            - i128::try_from(self.floor).unwrap_or(i128::MAX);
        Some(VmBalance {
            tokens_ns: if vm.eff.cap_ppm.is_some() {
                vm.account.tokens_ns()
            } else {
                0
            },
            lead_ns: lead * weight / scale,
            estimate_ns: vm.account.estimate_ns(),
        })
    }

    /// Submissions waiting in a VM's runlist.
    pub fn queued(&self, vm: VmId) -> Option<usize> {
        self.slots.get(&vm).map(|&s| self.vms[s].runlist.len())
    }

    /// Submissions waiting in all runlists.
    pub fn queued_total(&self) -> usize {
        self.vms.iter().map(|v| v.runlist.len()).sum()
    }

    /// Submissions granted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the VM is attached.
    pub fn contains(&self, vm: VmId) -> bool {
        self.slots.contains_key(&vm)
    }

    /// The split hint for a submission of `expected_ns`, if it exceeds one slice.
    pub fn split_hint(&self, expected_ns: u64) -> Option<SplitHint> {
        let slice = self.gpu.slice_ns;
        (expected_ns > slice).then(|| SplitHint {
            expected_ns,
            slice_ns: slice,
            chunks: expected_ns.div_ceil(slice),
        })
    }

    fn advance(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    fn slot(&self, vm: VmId) -> Result<usize> {
        self.slots
            .get(&vm)
            .copied()
            .ok_or(ArbiterError::UnknownVm(vm))
    }

    fn burst_ns(&self, cfg: &VmConfig) -> u64 {
        cfg.burst_ns.unwrap_or(self.gpu.slice_ns)
    }

    /// Bucket ceiling: the burst allowance, plus (while backlogged) what the VM can be owed
    /// while it waits behind one of the longest recent submissions.
    fn ceiling_ns(&self, vm: &VmState, backlogged: bool) -> u64 {
        let burst = self.burst_ns(&vm.config);
        match (backlogged, vm.eff.cap_ppm) {
            (true, Some(cap)) => {
                let owed = u128::from(self.max_cost_ns) * u128::from(cap) / u128::from(PPM);
                burst.saturating_add(u64::try_from(owed).unwrap_or(u64::MAX))
            }
            _ => burst,
        }
    }

    fn queue_limit(&self, cfg: &VmConfig) -> usize {
        cfg.queue_limit.unwrap_or(self.gpu.queue_limit)
    }

    /// Brings a VM's bucket up to `now` (no-op without a cap).
    fn refill(&mut self, slot: usize, now: u64) {
        let vm = &self.vms[slot];
        if let Some(cap) = vm.eff.cap_ppm {
            let ceiling = self.ceiling_ns(vm, vm.backlogged());
            self.vms[slot].account.refill(now, cap, ceiling);
        }
    }

    /// Recomputes when a capped VM may start its next submission. The bucket only grows
    /// until then and its ceiling is never negative, so the time is exact until the next
    /// charge, refund or clip.
    fn update_ready(&mut self, slot: usize, now: u64) {
        let vm = &self.vms[slot];
        let ready = match vm.eff.cap_ppm {
            Some(cap) => {
                let ceiling = self.ceiling_ns(vm, true);
                vm.account.tokens_ready_at(now, cap, ceiling)
            }
            None => 0,
        };
        self.vms[slot].ready_at = ready;
    }

    /// Recomputes every VM's effective parameters after a policy or membership change,
    /// keeping each VM's lag or lead in device time and its bucket within bounds.
    fn recompute(&mut self, now: u64) {
        for slot in 0..self.vms.len() {
            self.refill(slot, now);
        }
        let attached = self.vms.len();
        for slot in 0..self.vms.len() {
            let new = policy::effective(self.policy, &self.vms[slot].config, attached);
            let vm = &mut self.vms[slot];
            vm.account
                .reweight(self.floor, vm.eff.weight_ppm, new.weight_ppm);
            vm.eff = new;
            let limit = vm.config.queue_limit.unwrap_or(self.gpu.queue_limit);
            vm.runlist.set_limit(limit);
            let ceiling = self.ceiling_ns(&self.vms[slot], self.vms[slot].backlogged());
            self.vms[slot]
                .account
                .clip_tokens(self.accounting.debt_window_ns, ceiling);
            self.update_ready(slot, now);
        }
    }

    /// Attaches a VM. Fails if the id is taken or the shares would not fit.
    pub fn attach(&mut self, now: u64, vm: VmId, config: VmConfig) -> Result<()> {
        let now = self.advance(now);
        if self.slots.contains_key(&vm) {
            return Err(ArbiterError::DuplicateVm(vm));
        }
        policy::validate(
            self.vms
                .iter()
                .map(|v| (v.id, &v.config))
                .chain([(vm, &config)]),
        )?;
        let eff = policy::effective(self.policy, &config, self.vms.len() + 1);
        let burst = self.burst_ns(&config);
        let state = VmState {
            id: vm,
            config,
            eff,
            runlist: Runlist::new(vm, self.queue_limit(&config)),
            account: Account::new(now, self.floor, burst, self.gpu.slice_ns),
            in_flight: 0,
            idle_since: now,
            ready_at: now,
            stats: VmStats::default(),
        };
        self.slots.insert(vm, self.vms.len());
        self.vms.push(state);
        self.recompute(now);
        Ok(())
    }

    /// Detaches a VM, returning its queued submissions (cancelled; the caller fails them).
    /// Its in-flight submissions still release their device slots when they complete.
    pub fn detach(&mut self, now: u64, vm: VmId) -> Result<Vec<SubmissionId>> {
        let now = self.advance(now);
        let slot = self.slot(vm)?;
        let mut state = self.vms.swap_remove(slot);
        self.slots.remove(&vm);
        if let Some(moved) = self.vms.get(slot) {
            self.slots.insert(moved.id, slot);
        }
        let cancelled = state.runlist.drain();
        self.recompute(now);
        Ok(cancelled)
    }

    /// Takes everything away from a VM whose work hangs (watchdog): its queued work is
    /// cancelled and its in-flight submissions stop occupying device slots. The VM stays
    /// attached with its accounting intact.
    pub fn revoke(&mut self, now: u64, vm: VmId) -> Result<Revoked> {
        self.advance(now);
        let slot = self.slot(vm)?;
        let mut revoked = Revoked {
            queued: self.vms[slot].runlist.drain(),
            in_flight: Vec::new(),
        };
        let mut freed = 0;
        self.in_flight.retain(|f| {
            if f.vm == vm {
                revoked.in_flight.push(f.id);
                freed += f.estimate_ns;
                false
            } else {
                true
            }
        });
        self.in_flight_estimate_ns = self.in_flight_estimate_ns.saturating_sub(freed);
        let state = &mut self.vms[slot];
        state.in_flight = 0;
        state.idle_since = self.now;
        let n = revoked.queued.len() + revoked.in_flight.len();
        state.stats.cancelled += u64::try_from(n).unwrap_or(u64::MAX);
        let now = self.now;
        self.update_ready(slot, now);
        Ok(revoked)
    }

    /// Switches the policy live. Queued and in-flight work is kept.
    pub fn set_policy(&mut self, now: u64, policy: Policy) {
        let now = self.advance(now);
        self.policy = policy;
        self.recompute(now);
    }

    /// Changes a VM's configuration live. Queued work is kept even if a new queue limit
    /// is lower than what is queued.
    pub fn update_vm(&mut self, now: u64, vm: VmId, config: VmConfig) -> Result<()> {
        let now = self.advance(now);
        let slot = self.slot(vm)?;
        policy::validate(self.vms.iter().map(|v| {
            if v.id == vm {
                (v.id, &config)
            } else {
                (v.id, &v.config)
            }
        }))?;
        self.refill(slot, now);
        self.vms[slot].config = config;
        self.recompute(now);
        Ok(())
    }

    /// Changes the GPU controls live (depth, slice, pipelining, default queue limit).
    /// Lowering the depth below what is in flight only delays new grants.
    pub fn set_gpu(&mut self, now: u64, gpu: GpuConfig) -> Result<()> {
        gpu.validate()?;
        let now = self.advance(now);
        self.gpu = gpu;
        self.recompute(now);
        Ok(())
    }

    /// Queues a submission. Refused with [`ArbiterError::QueueFull`] when the VM's runlist
    /// is at its limit (backpressure), and for unknown VMs or queues.
    pub fn submit(&mut self, now: u64, req: SubmitRequest) -> Result<SubmissionId> {
        let now = self.advance(now);
        let slot = self.slot(req.vm)?;
        if req.queue.0 >= self.gpu.queues {
            return Err(ArbiterError::UnknownQueue {
                vm: req.vm,
                queue: req.queue,
            });
        }
        if !self.vms[slot].backlogged() {
            // Waking up: virtual time lags the system by at most the burst allowance, and
            // the bucket did not fill beyond it while idle. Credit the VM was owed for
            // waiting behind others survives a short gap (a submit → fence → submit round
            // trip); after an idle period longer than a slice it is cut to the allowance.
            self.refill(slot, now);
            let burst = self.burst_ns(&self.vms[slot].config);
            let floor = self.floor;
            let slice = self.gpu.slice_ns;
            let debt = self.accounting.debt_window_ns;
            let vm = &mut self.vms[slot];
            vm.account.wake(floor, burst, vm.eff.weight_ppm);
            if now.saturating_sub(vm.idle_since) > slice {
                vm.account.clip_tokens(debt, burst);
            }
            self.update_ready(slot, now);
        }
        let id = SubmissionId(self.next_submission);
        let item = Queued {
            id,
            queue: req.queue,
            cost_hint_ns: req.cost_hint_ns,
            tag: req.tag,
            seq: self.next_seq,
        };
        let vm = &mut self.vms[slot];
        if let Err(e) = vm.runlist.push(item) {
            vm.stats.rejected += 1;
            return Err(e.into());
        }
        vm.stats.submitted += 1;
        self.next_submission += 1;
        self.next_seq += 1;
        Ok(id)
    }

    /// Decides what the device should do next, granting at most one submission.
    pub fn next_grant(&mut self, now: u64) -> Decision {
        let now = self.advance(now);
        let depth_full =
            self.in_flight.len() >= usize::try_from(self.gpu.in_flight_depth).unwrap_or(usize::MAX);
        let fifo = self.policy.is_fifo();
        let mut best: Option<(u128, LatencyClass, u64, usize)> = None;
        let mut retry_at: Option<u64> = None;
        let mut any_queued = false;
        for (slot, vm) in self.vms.iter().enumerate() {
            let Some(head) = vm.runlist.head() else {
                continue;
            };
            any_queued = true;
            if depth_full {
                break;
            }
            if vm.ready_at > now {
                let at = vm.ready_at;
                retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                continue;
            }
            let key = if fifo {
                (0, LatencyClass::Interactive, head.seq, slot)
            } else {
                (vm.account.vtime(), vm.config.latency, head.seq, slot)
            };
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        if !any_queued {
            return Decision::Idle;
        }
        if depth_full {
            return Decision::Busy;
        }
        let Some((_, _, _, slot)) = best else {
            return match retry_at {
                Some(retry_at_ns) => Decision::Throttled { retry_at_ns },
                None => Decision::Busy,
            };
        };
        let estimate = {
            let vm = &self.vms[slot];
            let head = vm.runlist.head();
            head.and_then(|h| h.cost_hint_ns)
                .unwrap_or_else(|| vm.account.estimate_ns())
        };
        if !self.in_flight.is_empty()
            && self.in_flight_estimate_ns.saturating_add(estimate) > self.gpu.pipeline_ns
        {
            return Decision::Busy;
        }
        self.grant(slot, now, estimate)
    }

    fn grant(&mut self, slot: usize, now: u64, estimate: u64) -> Decision {
        self.refill(slot, now);
        let split = self.split_hint(estimate);
        let floor = self.floor;
        let vm = &mut self.vms[slot];
        let Some(item) = vm.runlist.pop() else {
            return Decision::Busy;
        };
        self.floor = floor.max(vm.account.vtime());
        vm.account.charge_vtime(estimate, vm.eff.weight_ppm);
        if vm.eff.cap_ppm.is_some() {
            vm.account.charge_tokens(estimate);
        }
        vm.in_flight += 1;
        vm.stats.granted += 1;
        self.in_flight.push(InFlight {
            id: item.id,
            vm: vm.id,
            estimate_ns: estimate,
        });
        self.in_flight_estimate_ns = self.in_flight_estimate_ns.saturating_add(estimate);
        let grant = Decision::Grant(Grant {
            submission: item.id,
            vm: vm.id,
            queue: item.queue,
            tag: item.tag,
            estimate_ns: estimate,
            split,
        });
        self.update_ready(slot, now);
        grant
    }

    /// Grants as many submissions as the device can take now, appending them to `out`, and
    /// returns the decision that stopped the loop (never [`Decision::Grant`]).
    pub fn pump(&mut self, now: u64, out: &mut Vec<Grant>) -> Decision {
        loop {
            match self.next_grant(now) {
                Decision::Grant(g) => out.push(g),
                other => return other,
            }
        }
    }

    /// Records a completion with its measured device time: replaces the estimate charged
    /// at grant time by the measurement and frees the device slot.
    pub fn complete(&mut self, now: u64, done: Completion) -> Result<()> {
        let now = self.advance(now);
        let pos = self
            .in_flight
            .iter()
            .position(|f| f.id == done.submission)
            .ok_or(ArbiterError::UnknownSubmission(done.submission))?;
        let flight = self.in_flight.swap_remove(pos);
        self.in_flight_estimate_ns = self
            .in_flight_estimate_ns
            .saturating_sub(flight.estimate_ns);
        let measured = done.device_ns;
        let decayed = self.max_cost_ns - (self.max_cost_ns >> self.accounting.max_cost_decay_shift);
        self.max_cost_ns = decayed.max(measured);
        let Some(&slot) = self.slots.get(&flight.vm) else {
            // Detached meanwhile: only the slot had to be released.
            return Ok(());
        };
        self.refill(slot, now);
        let floor = self.floor;
        let acc = self.accounting;
        let vm = &mut self.vms[slot];
        let weight = vm.eff.weight_ppm;
        let capped = vm.eff.cap_ppm.is_some();
        if measured >= flight.estimate_ns {
            let extra = measured - flight.estimate_ns;
            vm.account.charge_vtime(extra, weight);
            if capped {
                vm.account.charge_tokens(extra);
            }
        } else {
            let refund = flight.estimate_ns - measured;
            vm.account.refund_vtime(refund, weight);
            if capped {
                vm.account.refund_tokens(refund);
            }
        }
        // Zero is a submission that never ran (cancelled, abandoned) or whose time was
        // charged in parts ([`Arbiter::charge`]): it says nothing about cost.
        if measured > 0 {
            vm.account.observe(measured, acc.ewma_shift);
        }
        vm.account.bound_debt(floor, acc.debt_window_ns, weight);
        vm.in_flight = vm.in_flight.saturating_sub(1);
        vm.stats.completed += 1;
        vm.stats.device_ns = vm.stats.device_ns.saturating_add(measured);
        let backlogged = vm.backlogged();
        if !backlogged {
            vm.idle_since = now;
        }
        self.settle_bucket(slot, now);
        Ok(())
    }

    /// After a charge: clips the VM's bucket to its bounds and recomputes when it may
    /// start next.
    fn settle_bucket(&mut self, slot: usize, now: u64) {
        let ceiling = self.ceiling_ns(&self.vms[slot], true);
        let debt = self.accounting.debt_window_ns;
        self.vms[slot].account.clip_tokens(debt, ceiling);
        self.update_ready(slot, now);
    }

    /// Charges `device_ns` of device time that `submissions` batches of `vm` used
    /// without a grant of their own: the batches of a lease (a VM alone on the device
    /// submitting under a grant that covers many batches, see the daemon's QoS
    /// service). The VM's account moves as if each had been granted and completed:
    /// while no other VM is backlogged the system virtual time follows it (so a VM
    /// that was alone does not owe the time it used while nobody else wanted the
    /// device), its cap bucket pays, and its estimate learns the mean batch.
    pub fn charge(&mut self, now: u64, vm: VmId, submissions: u64, device_ns: u64) -> Result<()> {
        let now = self.advance(now);
        let slot = self.slot(vm)?;
        self.refill(slot, now);
        let acc = self.accounting;
        // As a grant would: the system virtual time follows the VM while it is alone.
        // With others waiting it stays (a grant goes to the least virtual time, which
        // is not this VM's then): their credit must not grow with its charges.
        let alone = self.vms.iter().all(|v| v.id == vm || !v.backlogged());
        if alone {
            self.floor = self.floor.max(self.vms[slot].account.vtime());
        }
        let floor = self.floor;
        let vm = &mut self.vms[slot];
        let weight = vm.eff.weight_ppm;
        vm.account.charge_vtime(device_ns, weight);
        if vm.eff.cap_ppm.is_some() {
            vm.account.charge_tokens(device_ns);
        }
        if let Some(mean) = device_ns.checked_div(submissions).filter(|&m| m > 0) {
            vm.account.observe(mean, acc.ewma_shift);
        }
        vm.account.bound_debt(floor, acc.debt_window_ns, weight);
        vm.stats.device_ns = vm.stats.device_ns.saturating_add(device_ns);
        self.settle_bucket(slot, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
