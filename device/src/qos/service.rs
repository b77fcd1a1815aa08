//! The arbiter service: one named thread per daemon owning the
//! [`vgpu_scheduler::Arbiter`], driven by [`Cmd`] messages over a channel. Gates (one
//! per VM), the control socket and the metrics endpoint talk to it through a
//! [`QosHandle`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vgpu_scheduler::{
    AccountingConfig, Arbiter, Completion, GpuConfig, Policy, QueueId, Reply, Request, Share,
    SubmissionId, SubmitRequest, VmConfig, VmId,
};

use super::lease::{Leases, Report};
use super::{
    default_vm_config, stall_bound_ns, GateEvent, InProcess, QosError, Result, SubmitGate,
};
use crate::ratelimit::RateLimiter;

/// How often the service looks for stalled grants while any is outstanding.
const STALL_CHECK: Duration = Duration::from_millis(20);

/// How long every other VM must have asked for nothing and finished nothing before a
/// VM's grant may be a lease: two VMs taking turns keep being granted batch by batch
/// (so their shares and latencies are what per-batch arbitration gives), and a VM
/// alone gets its lease.
const LEASE_QUIET_NS: u64 = 50_000_000;

/// The GPU model the daemon's arbiter uses on lavapipe: one queue, **one** submission
/// on the host at a time. Each lavapipe `VkDevice` runs its own queue thread, so two
/// VMs' batches on the host at once would run side by side on the CPU and neither
/// batch's fence-to-fence time would be its device time; with one at a time the host
/// is a serial engine. Every batch then pays the same per-batch overhead (the wake-ups
/// between grant, submit, execution and the completion being seen), so those charges
/// stay proportional. With depth 2 (a VM's own next batch pipelined behind its first,
/// a grant for another VM deferred until the device is free; the service supports it)
/// only the VM switched in pays the wake-ups, and under heavy CPU load (load average
/// 15–19 on 2 cores) the smaller share was starved (2:1 measured as 6–8:1).
pub const LAVAPIPE_GPU: GpuConfig = GpuConfig {
    queues: 1,
    in_flight_depth: 1,
    slice_ns: 2_000_000,
    pipeline_ns: 2_000_000,
    queue_limit: 256,
};

/// Reads a VM's device memory in use, in bytes (for `list` and the metrics).
pub type MemoryProbe = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A request to the service thread.
pub(crate) enum Cmd {
    Attach {
        name: String,
        config: VmConfig,
        memory: Option<MemoryProbe>,
        /// An in-process gate's lease state (the service begins and revokes its
        /// leases itself).
        leases: Option<Arc<Leases>>,
        reply: Sender<Result<(VmId, Arc<AtomicBool>)>>,
    },
    /// A socket server subscribes to best-effort changes of its VM.
    Notify {
        vm: VmId,
        tx: Sender<GateEvent>,
    },
    Detach {
        vm: VmId,
    },
    Submit {
        vm: VmId,
        tag: u64,
        cost_hint_ns: Option<u64>,
        /// The gate can take a lease (it acts on a revocation while idle).
        leasable: bool,
        waiter: Sender<GateEvent>,
    },
    Complete {
        vm: VmId,
        submission: SubmissionId,
        device_ns: u64,
    },
    Ran {
        vm: VmId,
        submissions: u64,
        device_ns: u64,
    },
    EndLease {
        vm: VmId,
        submission: SubmissionId,
        submissions: u64,
        device_ns: u64,
    },
    Failure {
        vm: VmId,
    },
    SetPolicy {
        policy: Policy,
        reply: Sender<Result<()>>,
    },
    Update {
        vm: String,
        share: Option<Share>,
        cap: Option<Option<Share>>,
        reply: Sender<Result<()>>,
    },
    Snapshot {
        reply: Sender<(Policy, Vec<VmSnapshot>)>,
    },
}

/// One VM's live figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSnapshot {
    /// Arbiter id.
    pub id: VmId,
    /// Name (`ctx3`, `frontend 1`, or the config's name).
    pub name: String,
    /// Configured share in ppm.
    pub share_ppm: u32,
    /// Configured cap in ppm, if any.
    pub cap_ppm: Option<u32>,
    /// Measured device time of completed submissions, ns.
    pub device_ns: u64,
    /// Submissions that went to the device (granted or best-effort).
    pub submissions: u64,
    /// Grants by the arbiter.
    pub grants: u64,
    /// Submissions waiting for a grant now.
    pub queued: usize,
    /// Time submissions spent waiting for their grants, ns.
    pub throttled_ns: u64,
    /// Submissions refused by backpressure (then retried).
    pub refused: u64,
    /// Grants released as stalled.
    pub stalls: u64,
    /// Context failures reported for this VM.
    pub failures: u64,
    /// Device memory the VM holds, bytes (if the VM's account was given).
    pub memory_bytes: Option<u64>,
}

struct VmEntry {
    memory: Option<MemoryProbe>,
    name: String,
    config: VmConfig,
    bypass: Arc<AtomicBool>,
    notify: Vec<Sender<GateEvent>>,
    device_ns: u64,
    submissions: u64,
    grants: u64,
    throttled_ns: u64,
    refused: u64,
    stalls: u64,
    failures: u64,
    /// When it last asked for a grant, had one complete or reported device time.
    active_at: Option<u64>,
    /// Its in-process gate's lease state.
    leases: Option<Arc<Leases>>,
}

#[derive(Debug)]
struct Pending {
    vm: VmId,
    tag: u64,
    waiter: Sender<GateEvent>,
    queued_at: u64,
    /// Granted by the arbiter (possibly deferred).
    granted: bool,
    /// Released to the gate: from here the submission may be on the host.
    released_at: Option<u64>,
    estimate_ns: u64,
    /// The gate can take a lease.
    leasable: bool,
    /// Released as a lease (`crate::qos::lease`), and when it was revoked.
    lease: Option<LeaseState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    Held,
    Revoked { at: u64 },
}

struct State {
    arb: Arbiter,
    vms: HashMap<VmId, VmEntry>,
    order: Vec<VmId>,
    pending: HashMap<SubmissionId, Pending>,
    /// Granted by the arbiter, waiting for the device to be free of other VMs' work.
    deferred: std::collections::VecDeque<SubmissionId>,
    /// When the last completion was seen (serial-engine timing).
    last_completion: u64,
    next_vm: u32,
    wake_at: Option<u64>,
    epoch: Instant,
    bogus: RateLimiter,
}

/// A cloneable handle to the service thread.
#[derive(Debug, Clone)]
pub struct QosHandle {
    tx: Sender<Cmd>,
}

/// The arbiter service thread; stops and joins when dropped (after every handle and
/// gate is gone, or at once if it is the last owner).
#[derive(Debug)]
pub struct ArbiterService {
    handle: QosHandle,
    thread: Option<JoinHandle<()>>,
}

impl ArbiterService {
    /// Starts the service with `policy` on [`LAVAPIPE_GPU`].
    pub fn start(policy: Policy) -> Result<Self> {
        Self::start_with(LAVAPIPE_GPU, policy)
    }

    /// Starts the service with an explicit GPU model.
    pub fn start_with(gpu: GpuConfig, policy: Policy) -> Result<Self> {
        let arb = Arbiter::new(gpu, policy, AccountingConfig::DEFAULT)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vgpu-qos".into())
            .spawn(move || {
                let mut st = State {
                    arb,
                    vms: HashMap::new(),
                    order: Vec::new(),
                    pending: HashMap::new(),
                    deferred: std::collections::VecDeque::new(),
                    last_completion: 0,
                    next_vm: 1,
                    wake_at: None,
                    epoch: Instant::now(),
                    bogus: RateLimiter::new("qos", Duration::from_secs(10), 5),
                };
                st.run(&rx);
            })?;
        Ok(Self {
            handle: QosHandle { tx },
            thread: Some(thread),
        })
    }

    /// A handle for gates, the control socket and metrics.
    pub fn handle(&self) -> QosHandle {
        self.handle.clone()
    }
}

impl Drop for ArbiterService {
    fn drop(&mut self) {
        // The thread ends when every sender is gone; other handles may keep it alive,
        // so only join if this was the last one (detached otherwise).
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.handle.tx, tx));
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl QosHandle {
    fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx.send(cmd).map_err(|_| QosError::ServiceGone)
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv().map_err(|_| QosError::ServiceGone)
    }

    /// Attaches a VM and returns its in-process gate.
    pub fn attach(&self, name: String, config: VmConfig) -> Result<Arc<SubmitGate>> {
        self.attach_with_memory(name, config, None)
    }

    /// Attaches a VM whose device memory in use `memory` reads, and returns its gate.
    pub fn attach_with_memory(
        &self,
        name: String,
        config: VmConfig,
        memory: Option<MemoryProbe>,
    ) -> Result<Arc<SubmitGate>> {
        let leases = Arc::new(Leases::default());
        let (vm, bypass) = self.ask(|reply| Cmd::Attach {
            name,
            config,
            memory,
            leases: Some(Arc::clone(&leases)),
            reply,
        })??;
        Ok(Arc::new(SubmitGate::new(Box::new(InProcess {
            vm,
            handle: self.clone(),
            bypass,
            leases,
        }))))
    }

    /// Attaches a VM with the default configuration.
    pub fn attach_default(&self, name: String) -> Result<Arc<SubmitGate>> {
        self.attach(name, default_vm_config())
    }

    pub(crate) fn attach_raw(
        &self,
        name: String,
        config: VmConfig,
        memory: Option<MemoryProbe>,
    ) -> Result<(VmId, Arc<AtomicBool>)> {
        self.ask(|reply| Cmd::Attach {
            name,
            config,
            memory,
            leases: None,
            reply,
        })?
    }

    pub(crate) fn notify(&self, vm: VmId, tx: Sender<GateEvent>) -> Result<()> {
        self.send(Cmd::Notify { vm, tx })
    }

    /// Detaches a VM (its queued submissions are dropped; their waiters see a refusal
    /// channel close).
    pub fn detach(&self, vm: VmId) {
        let _ = self.send(Cmd::Detach { vm });
    }

    pub(crate) fn submit(
        &self,
        vm: VmId,
        tag: u64,
        cost_hint_ns: Option<u64>,
        leasable: bool,
        waiter: Sender<GateEvent>,
    ) -> Result<()> {
        self.send(Cmd::Submit {
            vm,
            tag,
            cost_hint_ns,
            leasable,
            waiter,
        })
    }

    pub(crate) fn complete(
        &self,
        vm: VmId,
        submission: SubmissionId,
        device_ns: u64,
    ) -> Result<()> {
        self.send(Cmd::Complete {
            vm,
            submission,
            device_ns,
        })
    }

    pub(crate) fn ran(&self, vm: VmId, submissions: u64, device_ns: u64) -> Result<()> {
        self.send(Cmd::Ran {
            vm,
            submissions,
            device_ns,
        })
    }

    pub(crate) fn end_lease(
        &self,
        vm: VmId,
        submission: SubmissionId,
        submissions: u64,
        device_ns: u64,
    ) -> Result<()> {
        self.send(Cmd::EndLease {
            vm,
            submission,
            submissions,
            device_ns,
        })
    }

    /// Counts a context failure against `vm`.
    pub fn failure(&self, vm: VmId) {
        let _ = self.send(Cmd::Failure { vm });
    }

    /// Switches the policy live; nothing queued is lost.
    pub fn set_policy(&self, policy: Policy) -> Result<()> {
        self.ask(|reply| Cmd::SetPolicy { policy, reply })?
    }

    /// Changes a VM's share and/or cap live (`cap: Some(None)` removes the cap). `vm`
    /// is its name or `vmN`.
    pub fn update(&self, vm: &str, share: Option<Share>, cap: Option<Option<Share>>) -> Result<()> {
        self.ask(|reply| Cmd::Update {
            vm: vm.to_owned(),
            share,
            cap,
            reply,
        })?
    }

    /// The policy and every VM's live figures, in attach order.
    pub fn snapshot(&self) -> Result<(Policy, Vec<VmSnapshot>)> {
        self.ask(|reply| Cmd::Snapshot { reply })
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl State {
    fn now(&self) -> u64 {
        ns(self.epoch.elapsed())
    }

    fn run(&mut self, rx: &Receiver<Cmd>) {
        loop {
            let now = self.now();
            let mut timeout: Option<Duration> = self
                .wake_at
                .map(|t| Duration::from_nanos(t.saturating_sub(now)));
            // A held lease is not checked for stalls (it lasts while its VM is alone).
            if self
                .pending
                .values()
                .any(|p| p.released_at.is_some() && p.lease != Some(LeaseState::Held))
            {
                timeout = Some(timeout.map_or(STALL_CHECK, |t| t.min(STALL_CHECK)));
            }
            let msg = match timeout {
                Some(t) => match rx.recv_timeout(t) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            match msg {
                Some(cmd) => self.handle(cmd),
                None => {
                    if self.wake_at.is_some_and(|t| t <= self.now()) {
                        self.wake_at = None;
                        self.drive(Request::Poll);
                    }
                }
            }
            self.release_stalled();
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Attach {
                name,
                config,
                memory,
                leases,
                reply,
            } => {
                let _ = reply.send(self.attach(name, config, memory, leases));
            }
            Cmd::Notify { vm, tx } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    let _ = tx.send(GateEvent::Bypass(v.bypass.load(Ordering::Acquire)));
                    v.notify.push(tx);
                }
            }
            Cmd::Detach { vm } => {
                if self.vms.remove(&vm).is_some() {
                    // One VM fewer changes equal shares.
                    self.revoke_leases();
                    self.order.retain(|&v| v != vm);
                    // Its in-flight grants complete now (their device work is gone with
                    // the context); its queued ones are cancelled by the detach.
                    let held: Vec<SubmissionId> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.vm == vm && p.granted)
                        .map(|(&id, _)| id)
                        .collect();
                    self.pending.retain(|_, p| p.vm != vm);
                    self.deferred.retain(|id| !held.contains(id));
                    for submission in held {
                        self.drive(Request::Complete(Completion {
                            submission,
                            device_ns: 0,
                        }));
                    }
                    self.drive(Request::Detach { vm });
                }
            }
            Cmd::Submit {
                vm,
                tag,
                cost_hint_ns,
                leasable,
                waiter,
            } => {
                if !self.vms.contains_key(&vm) {
                    let _ = waiter.send(GateEvent::Refused { tag });
                    return;
                }
                // Someone else wants the device (a gate never asks while it holds a
                // lease it may use).
                self.revoke_leases();
                let now = self.now();
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.active_at = Some(now);
                }
                let req = SubmitRequest {
                    vm,
                    queue: QueueId(0),
                    cost_hint_ns,
                    tag,
                };
                self.drive_submit(req, leasable, waiter);
            }
            Cmd::Complete {
                vm,
                submission,
                device_ns,
            } => self.complete(vm, submission, device_ns),
            Cmd::Ran {
                vm,
                submissions,
                device_ns,
            } => self.ran(vm, submissions, device_ns),
            Cmd::EndLease {
                vm,
                submission,
                submissions,
                device_ns,
            } => self.end_lease(vm, submission, submissions, device_ns),
            Cmd::Failure { vm } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.failures += 1;
                }
            }
            Cmd::SetPolicy { policy, reply } => {
                self.revoke_leases();
                self.drive(Request::SetPolicy(policy));
                let bypass = policy == Policy::BestEffort;
                for v in self.vms.values_mut() {
                    v.bypass.store(bypass, Ordering::Release);
                    v.notify
                        .retain(|tx| tx.send(GateEvent::Bypass(bypass)).is_ok());
                }
                let _ = reply.send(Ok(()));
            }
            Cmd::Update {
                vm,
                share,
                cap,
                reply,
            } => {
                self.revoke_leases();
                let _ = reply.send(self.update(&vm, share, cap));
            }
            Cmd::Snapshot { reply } => {
                let _ = reply.send((self.arb.policy(), self.snapshot()));
            }
        }
    }

    /// Batches that ran without a grant of their own (best-effort, or under a lease)
    /// finished.
    fn ran(&mut self, vm: VmId, submissions: u64, device_ns: u64) {
        let now = self.now();
        if let Some(v) = self.vms.get_mut(&vm) {
            v.active_at = Some(now);
            v.device_ns = v.device_ns.saturating_add(device_ns);
            v.submissions = v.submissions.saturating_add(submissions);
            // Leased batches are charged here; best-effort ones too (the account
            // only orders VMs under the other policies).
            if let Err(e) = self.arb.charge(now, vm, submissions, device_ns) {
                log::debug!("qos: {vm}: charging reported device time: {e}");
            }
        }
    }

    /// Acts on what an in-process gate's lease reports (as its messages would).
    fn lease_report(&mut self, vm: VmId, r: Report) {
        match r.end {
            Some(end) => self.end_lease(vm, end, r.submissions, r.device_ns),
            None if r.submissions > 0 => self.ran(vm, r.submissions, r.device_ns),
            None => {}
        }
    }

    /// A gate returns a lease it holds, with its last batches: they are charged (at
    /// most the time since the lease was released: a worker may lie) and the lease's
    /// grant completes. A lease already released as stalled is not charged again.
    fn end_lease(&mut self, vm: VmId, submission: SubmissionId, submissions: u64, device_ns: u64) {
        let now = self.now();
        let held_since = self
            .pending
            .get(&submission)
            .filter(|p| p.vm == vm && p.lease.is_some())
            .and_then(|p| p.released_at);
        let Some(since) = held_since else {
            if let Some(suppressed) = self.bogus.check() {
                log::debug!(
                    "qos: {vm}: return of lease {submission}, which it does not hold \
                     ({suppressed} more suppressed)"
                );
            }
            return;
        };
        if submissions > 0 {
            self.ran(vm, submissions, device_ns.min(now.saturating_sub(since)));
        }
        self.complete(vm, submission, 0);
    }

    fn attach(
        &mut self,
        name: String,
        config: VmConfig,
        memory: Option<MemoryProbe>,
        leases: Option<Arc<Leases>>,
    ) -> Result<(VmId, Arc<AtomicBool>)> {
        // One VM more changes equal shares.
        self.revoke_leases();
        let vm = VmId(self.next_vm);
        self.next_vm = self.next_vm.wrapping_add(1).max(1);
        let mut out = Vec::new();
        self.arb
            .handle(self.now(), Request::Attach { vm, config }, &mut out);
        if let Some(Reply::Refused(e)) = out.first() {
            let vgpu_scheduler::MessageError::Arbiter(e) = e.clone() else {
                return Err(QosError::Malformed("attach refused"));
            };
            return Err(QosError::Arbiter(e));
        }
        let bypass = Arc::new(AtomicBool::new(self.arb.policy() == Policy::BestEffort));
        self.vms.insert(
            vm,
            VmEntry {
                memory,
                name,
                config,
                bypass: Arc::clone(&bypass),
                notify: Vec::new(),
                device_ns: 0,
                submissions: 0,
                grants: 0,
                throttled_ns: 0,
                refused: 0,
                stalls: 0,
                failures: 0,
                active_at: None,
                leases,
            },
        );
        self.order.push(vm);
        self.route(out);
        Ok((vm, bypass))
    }

    fn find(&self, name: &str) -> Option<VmId> {
        self.order
            .iter()
            .copied()
            .find(|id| self.vms.get(id).is_some_and(|v| v.name == name) || id.to_string() == name)
    }

    fn update(
        &mut self,
        name: &str,
        share: Option<Share>,
        cap: Option<Option<Share>>,
    ) -> Result<()> {
        let vm = self
            .find(name)
            .ok_or_else(|| QosError::UnknownVm(name.to_owned()))?;
        let Some(entry) = self.vms.get(&vm) else {
            return Err(QosError::UnknownVm(name.to_owned()));
        };
        let mut config = entry.config;
        if let Some(s) = share {
            config.share = s;
        }
        if let Some(c) = cap {
            config.cap = c;
        }
        config.validate()?;
        self.arb.update_vm(self.now(), vm, config)?;
        if let Some(v) = self.vms.get_mut(&vm) {
            v.config = config;
        }
        self.drive(Request::Poll);
        Ok(())
    }

    fn snapshot(&self) -> Vec<VmSnapshot> {
        self.order
            .iter()
            .filter_map(|&id| {
                let v = self.vms.get(&id)?;
                Some(VmSnapshot {
                    id,
                    name: v.name.clone(),
                    share_ppm: v.config.share.ppm(),
                    cap_ppm: v.config.cap.map(Share::ppm),
                    device_ns: v.device_ns,
                    submissions: v.submissions,
                    grants: v.grants,
                    queued: self.arb.queued(id).unwrap_or(0),
                    throttled_ns: v.throttled_ns,
                    refused: v.refused,
                    stalls: v.stalls,
                    failures: v.failures,
                    memory_bytes: v.memory.as_ref().map(|m| m()),
                })
            })
            .collect()
    }

    fn drive_submit(&mut self, req: SubmitRequest, leasable: bool, waiter: Sender<GateEvent>) {
        let now = self.now();
        let mut out = Vec::new();
        self.arb.handle(now, Request::Submit(req), &mut out);
        match out.first() {
            Some(Reply::Queued { submission, .. }) => {
                self.pending.insert(
                    *submission,
                    Pending {
                        vm: req.vm,
                        tag: req.tag,
                        waiter,
                        queued_at: now,
                        granted: false,
                        released_at: None,
                        estimate_ns: 0,
                        leasable,
                        lease: None,
                    },
                );
            }
            _ => {
                if let Some(v) = self.vms.get_mut(&req.vm) {
                    v.refused += 1;
                }
                let _ = waiter.send(GateEvent::Refused { tag: req.tag });
            }
        }
        self.route(out);
    }

    fn drive(&mut self, req: Request) {
        let mut out = Vec::new();
        self.arb.handle(self.now(), req, &mut out);
        self.route(out);
    }

    /// Takes the arbiter's replies: grants join the deferred queue, which is then
    /// released as far as the one-VM-on-the-device rule allows.
    fn route(&mut self, out: Vec<Reply>) {
        let mut unclaimed = Vec::new();
        for reply in out {
            match reply {
                Reply::Granted(g) => match self.pending.get_mut(&g.submission) {
                    Some(p) => {
                        p.granted = true;
                        p.estimate_ns = g.estimate_ns;
                        self.deferred.push_back(g.submission);
                    }
                    None => unclaimed.push(g.submission),
                },
                Reply::WakeAt(t) => self.wake_at = Some(t),
                Reply::Cancelled { submission, .. } => {
                    if let Some(p) = self.pending.remove(&submission) {
                        let _ = p.waiter.send(GateEvent::Refused { tag: p.tag });
                    }
                }
                Reply::Done | Reply::Queued { .. } | Reply::Refused(_) => {}
            }
        }
        unclaimed.extend(self.release_deferred());
        for submission in unclaimed {
            self.drive(Request::Complete(Completion {
                submission,
                device_ns: 0,
            }));
        }
    }

    /// Releases deferred grants in order while no other VM has work on the host;
    /// returns those whose waiter is gone (to be completed at once, zero time).
    fn release_deferred(&mut self) -> Vec<SubmissionId> {
        let mut gone = Vec::new();
        while let Some(&next) = self.deferred.front() {
            let Some(vm) = self.pending.get(&next).map(|p| p.vm) else {
                self.deferred.pop_front();
                continue;
            };
            let busy_elsewhere = self
                .pending
                .values()
                .any(|p| p.vm != vm && p.released_at.is_some());
            if busy_elsewhere {
                break;
            }
            self.deferred.pop_front();
            let now = self.now();
            let mut lease = self.may_lease(vm, next);
            if let Some(l) = self.vms.get(&vm).and_then(|v| v.leases.as_ref()) {
                // An in-process gate's lease begins here, in order with any later
                // revocation (a worker's gate reader begins it on receipt).
                lease = lease && l.begin(next);
            }
            let Some(p) = self.pending.get_mut(&next) else {
                continue;
            };
            p.released_at = Some(now);
            p.lease = lease.then_some(LeaseState::Held);
            let waited = now.saturating_sub(p.queued_at);
            let ev = GateEvent::Granted {
                tag: p.tag,
                submission: next,
                lease,
            };
            let delivered = p.waiter.send(ev).is_ok();
            if let Some(v) = self.vms.get_mut(&vm) {
                v.grants += 1;
                v.throttled_ns = v.throttled_ns.saturating_add(waited);
            }
            if !delivered {
                self.pending.remove(&next);
                gone.push(next);
            }
        }
        gone
    }

    /// Whether `submission` of `vm`, about to be released, may go as a lease: its gate
    /// takes leases, the policy gates at all, nothing else is queued or held, no
    /// other VM asked for or finished anything in the last [`LEASE_QUIET_NS`], and the
    /// VM may use the whole device (no cap below 100 %).
    fn may_lease(&self, vm: VmId, submission: SubmissionId) -> bool {
        let policy = self.arb.policy();
        let quiet_since = self.now().saturating_sub(LEASE_QUIET_NS);
        let others_quiet = self
            .vms
            .iter()
            .all(|(&id, v)| id == vm || v.active_at.is_none_or(|t| t < quiet_since));
        let alone = others_quiet
            && self.pending.len() == 1
            && self.pending.contains_key(&submission)
            && self.deferred.is_empty()
            && self.arb.queued_total() == 0;
        let leasable = self.pending.get(&submission).is_some_and(|p| p.leasable);
        let whole = self.arb.vm_config(vm).is_some_and(|cfg| {
            let eff = vgpu_scheduler::policy::effective(policy, cfg, self.vms.len());
            eff.cap_ppm.is_none_or(|c| c >= vgpu_scheduler::model::PPM)
        });
        policy != Policy::BestEffort && alone && leasable && whole
    }

    /// Revokes every lease not yet revoked (someone else wants the device, or the
    /// terms changed). A gate that does not return its lease has it released as
    /// stalled [`stall_bound_ns`] after this.
    fn revoke_leases(&mut self) {
        let now = self.now();
        let mut revoked = Vec::new();
        for (&submission, p) in &mut self.pending {
            if p.lease == Some(LeaseState::Held) {
                p.lease = Some(LeaseState::Revoked { at: now });
                // A worker's gate gets it over its socket; an in-process one below.
                let _ = p.waiter.send(GateEvent::Revoke { submission });
                revoked.push((p.vm, submission));
            }
        }
        for (vm, submission) in revoked {
            let report = self
                .vms
                .get(&vm)
                .and_then(|v| v.leases.as_ref())
                .map(|l| l.revoke(submission));
            if let Some(r) = report {
                self.lease_report(vm, r);
            }
        }
    }

    /// A gate reports a completion. Only the VM's own granted submissions count, and
    /// the time charged is clamped to the wall time since the grant (a worker may lie).
    fn complete(&mut self, vm: VmId, submission: SubmissionId, device_ns: u64) {
        let now = self.now();
        let owned = self
            .pending
            .get(&submission)
            .is_some_and(|p| p.vm == vm && p.released_at.is_some());
        if !owned {
            // A stalled grant's late completion, or a lie.
            if let Some(suppressed) = self.bogus.check() {
                log::debug!(
                    "qos: {vm}: completion of {submission}, which it does not hold \
                     ({suppressed} more suppressed)"
                );
            }
            return;
        }
        let Some(p) = self.pending.remove(&submission) else {
            return;
        };
        // Serial engine: it started when released or when the work before it on the
        // device finished, whichever is later; a worker's own figure can only lower it.
        let start = p.released_at.unwrap_or(now).max(self.last_completion);
        let device_ns = device_ns.min(now.saturating_sub(start));
        self.last_completion = now;
        if let Some(v) = self.vms.get_mut(&vm) {
            // A VM whose job just finished is not quiet: an online VM whose every
            // job waited out a lease batch would otherwise look quiet again by the
            // time the next batch is granted, and that grant would be a lease.
            v.active_at = Some(now);
            v.device_ns = v.device_ns.saturating_add(device_ns);
            // A lease's batches were counted as they were reported.
            if p.lease.is_none() {
                v.submissions += 1;
            }
        }
        self.drive(Request::Complete(Completion {
            submission,
            device_ns,
        }));
    }

    /// Releases grants held past their stall bound (see the module docs).
    fn release_stalled(&mut self) {
        let now = self.now();
        let stalled: Vec<(SubmissionId, VmId, u64)> = self
            .pending
            .iter()
            .filter_map(|(&id, p)| {
                // A lease may be held as long as its VM is alone; once revoked, it
                // holds the others up from then on.
                let at = match p.lease {
                    Some(LeaseState::Held) => return None,
                    Some(LeaseState::Revoked { at }) => at,
                    None => p.released_at?,
                };
                let held = now.saturating_sub(at);
                (held > stall_bound_ns(p.estimate_ns)).then_some((id, p.vm, held))
            })
            .collect();
        for (id, vm, held) in stalled {
            self.pending.remove(&id);
            if let Some(v) = self.vms.get_mut(&vm) {
                v.stalls += 1;
                v.device_ns = v.device_ns.saturating_add(held);
                v.submissions += 1;
            }
            log::debug!("qos: {vm}: {id} held the device {held} ns; released as stalled");
            self.last_completion = now;
            self.drive(Request::Complete(Completion {
                submission: id,
                device_ns: held,
            }));
        }
    }
}
