//! QoS on the real submission path: one arbiter service per daemon, a submission gate
//! per VM, and the transports between them.
//!
//! ```text
//!  ring thread (context, maybe in a worker process)          daemon
//!  ─────────────────────────────────────────────          ──────────────────────────
//!  SubmitGate::acquire ── GateTransport ──────────────▶  ArbiterService thread
//!     (blocks until granted,    InProcess: mpsc           (owns vgpu_scheduler::Arbiter,
//!      polls the stop flag)     GateClient: SEQPACKET       driven by message::Request)
//!  vkQueueSubmit + marker fence                               ▲
//!  retire thread: fence signalled ── Ticket::complete ───────┘ Completion { device_ns }
//! ```
//!
//! # Rules
//!
//! - **Grant before submit.** The ring thread asks for a grant *before* it takes the
//!   queue lock and calls `vkQueueSubmit`; nothing the guest can observe claims progress
//!   for work that is not on the host queue yet (a waiter on its fence simply waits).
//! - **Completion = the retire marker fence; device time = timestamps.** The marker
//!   submitted right after the guest's batch signals when the batch is done. A
//!   granted batch's device time is what a timestamp pair around its command buffers
//!   measured on the device (`renderer::venus::stamps`; [`Ticket::measured`]), at
//!   most the time from submit to the fence being seen; where a batch cannot be
//!   stamped (no command buffers, a `pNext` that depends on their count, a family
//!   without timestamps) and for best-effort batches (not stamped: on lavapipe the
//!   stamps cost a third of the throughput of 0.2 ms batches) it is that completion
//!   timing. [`SubmitGate::timing`] keeps both sums for stamped batches (logged when
//!   the gate goes).
//! - **One VM on the device; serial-engine timing.** The daemon's arbiter keeps one
//!   submission on the host at a time (`service::LAVAPIPE_GPU`: lavapipe runs each
//!   `VkDevice` on its own thread, so two VMs' batches would otherwise share the CPU
//!   and inflate each other). With a deeper GPU model the service still holds back a
//!   grant for another VM (deferred) until no other VM's work is on the host and lets
//!   a VM's own next submission pipeline. It charges
//!   `t_complete − max(t_released, previous completion)`, never more than the gate
//!   reports.
//! - **Stalled grants.** A released submission that has not completed within
//!   [`stall_bound_ns`] (it may wait on a semaphore that a later, not yet granted
//!   submission of the same VM signals) is charged the time it held the device and its
//!   slot is released, so one VM cannot stall the device for everyone; its real
//!   completion is then ignored.
//! - **A VM alone gets a lease** ([`lease`]): a grant released when nothing else is
//!   queued or held and no other VM asked for or finished anything for 50 ms, to a
//!   VM that may use the whole device, covers every batch its gate submits until the
//!   service revokes it (any other request, a policy, share or membership change).
//!   Batches under it pipeline up to 2 ms of estimated work (or the next one is
//!   taken once the running one should end within 2 ms), are not stamped (completion
//!   timing, serial), and are charged to the VM's account in parts (`Ran`); the
//!   lease's grant completes when its last batch has finished after the revocation.
//!   An idle lease goes back at once: a worker's gate reader thread acts on the
//!   revocation, and the service begins and revokes an in-process gate's leases
//!   itself.
//! - **Best-effort means no gate.** Under best-effort the gate grants locally without a
//!   round trip (today's behaviour and speed); it only reports device time for the
//!   figures, summed over at most [`REPORT_PERIOD`] per message (one message per
//!   completion woke two daemon threads per guest submission and cost a depth-1
//!   guest about a tenth of its throughput, issue 15). What is still unreported when
//!   the context's retire thread goes quiet is flushed then
//!   ([`SubmitGate::flush_unreported`]). Switching policy live flips every gate.
//! - **A waiter that gives up** (its context is stopping) never blocks anyone: if the
//!   grant comes later the route to it is gone and the service completes it at once.

mod control;
mod lease;
mod metrics;
mod service;
mod socket;
mod wire;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use control::{control_request, ControlServer};
pub use metrics::{parse_metrics_listen, render_metrics, MetricsServer};
pub use service::{ArbiterService, MemoryProbe, QosHandle, VmSnapshot};
pub use socket::{attach_shared, serve_gate, serve_gate_for, GateClient, GateServer};
pub use vgpu_scheduler::{Policy, Share, SubmissionId, VmConfig, VmId};

/// Errors of the QoS service, gates and their transports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QosError {
    /// The arbiter service thread is gone.
    #[error("the arbiter service has stopped")]
    ServiceGone,
    /// The arbiter refused a request.
    #[error("arbiter refused the request")]
    Arbiter(#[from] vgpu_scheduler::ArbiterError),
    /// An unknown policy name.
    #[error("unknown policy {0:?} (best-effort, equal-share, fixed-share, burst)")]
    UnknownPolicy(String),
    /// A malformed control or gate message.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A named VM is not attached.
    #[error("no VM named {0:?}")]
    UnknownVm(String),
    /// A share or cap value was rejected.
    #[error("invalid share")]
    Share(#[from] vgpu_scheduler::ModelError),
    /// Socket or thread I/O.
    #[error("I/O")]
    Io(#[from] std::io::Error),
    /// The context stopped while waiting for a grant.
    #[error("stopped while waiting for a grant")]
    Stopped,
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, QosError>;

/// Everything QoS a daemon runs: the arbiter service and, if configured, the control
/// socket and the metrics endpoint (all stopped when dropped).
#[derive(Debug)]
pub struct QosRuntime {
    service: ArbiterService,
    _control: Option<ControlServer>,
    _metrics: Option<MetricsServer>,
}

impl QosRuntime {
    /// Starts the service with `policy`, and the control socket and metrics endpoint
    /// where given.
    pub fn start(
        policy: Policy,
        control: Option<&std::path::Path>,
        metrics: Option<&crate::config::MetricsListen>,
    ) -> Result<Self> {
        let service = ArbiterService::start(policy)?;
        let control = control
            .map(|p| ControlServer::bind(p, service.handle()))
            .transpose()?;
        let metrics = metrics
            .map(|m| MetricsServer::bind_listen(m, service.handle()))
            .transpose()?;
        Ok(Self {
            service,
            _control: control,
            _metrics: metrics,
        })
    }

    /// A handle for attaching VMs.
    pub fn handle(&self) -> QosHandle {
        self.service.handle()
    }
}

/// Parses a policy name as `--qos-policy` and `ctl policy` take it.
pub fn parse_policy(name: &str) -> Result<Policy> {
    Policy::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| QosError::UnknownPolicy(name.to_owned()))
}

/// The configuration every VM gets until the TOML config names one: an equal (small)
/// share, so any number of VMs fit, and no cap beyond the whole GPU. Under fixed-share
/// and burst all VMs weigh the same; equal-share gives 1/N each.
pub fn default_vm_config() -> VmConfig {
    VmConfig::new(Share::from_ppm(1_000).unwrap_or(Share::FULL)).with_cap(Share::FULL)
}

/// How long a granted submission may hold the device before it counts as blocked and
/// its slot is released: four times its estimate, at least 250 ms.
pub fn stall_bound_ns(estimate_ns: u64) -> u64 {
    estimate_ns.saturating_mul(4).max(250_000_000)
}

/// What the service tells a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateEvent {
    /// The submission with this tag may go to the device.
    Granted {
        /// The gate's tag.
        tag: u64,
        /// The arbiter's id for it (for the completion).
        submission: SubmissionId,
        /// The grant is a lease: the gate may submit further batches under it until
        /// it is revoked (see [`lease`]).
        lease: bool,
    },
    /// The lease given with this grant is revoked: submit nothing more under it, and
    /// complete it when its batches have finished.
    Revoke {
        /// The lease's grant.
        submission: SubmissionId,
    },
    /// Refused (backpressure): try again shortly.
    Refused {
        /// The gate's tag.
        tag: u64,
    },
    /// Best-effort on (`true`: grant locally) or off.
    Bypass(bool),
}

/// How a gate reaches the arbiter service: in-process ([`InProcess`]) or over a
/// SOCK_SEQPACKET socket from a worker process ([`GateClient`]). The daemon end binds
/// each connection to one VM, so nothing here names the VM.
pub trait GateTransport: Send + Sync + fmt::Debug {
    /// Queues a submission; the grant (or refusal) is sent to `waiter` with `tag`.
    fn submit(&self, tag: u64, cost_hint_ns: Option<u64>, waiter: Sender<GateEvent>) -> Result<()>;
    /// Reports that a granted submission finished after `device_ns` on the device.
    fn complete(&self, submission: SubmissionId, device_ns: u64) -> Result<()>;
    /// Reports `submissions` that ran without a grant (best-effort) and their summed
    /// device time.
    fn ran(&self, submissions: u64, device_ns: u64) -> Result<()>;
    /// Returns a revoked lease whose batches have all finished, with those of them
    /// not yet reported.
    fn end_lease(&self, submission: SubmissionId, submissions: u64, device_ns: u64) -> Result<()>;
    /// Whether grants are local (best-effort: no round trip).
    fn bypass(&self) -> bool;
    /// Counts a failed context of this VM (metrics).
    fn context_failed(&self) -> Result<()>;
    /// The arbiter's id of the VM, where this end knows it (in-process).
    fn vm(&self) -> Option<VmId> {
        None
    }
    /// The gate's lease state, for a transport that takes leases (one that acts on a
    /// revocation while the VM is idle: a worker's gate client).
    fn leases(&self) -> Option<&lease::Leases> {
        None
    }
}

/// The in-process transport: a channel to the service thread.
#[derive(Debug)]
pub struct InProcess {
    vm: VmId,
    handle: QosHandle,
    bypass: Arc<AtomicBool>,
    /// Begun and revoked by the service thread itself.
    leases: Arc<lease::Leases>,
}

impl GateTransport for InProcess {
    fn submit(&self, tag: u64, cost_hint_ns: Option<u64>, waiter: Sender<GateEvent>) -> Result<()> {
        self.handle.submit(self.vm, tag, cost_hint_ns, true, waiter)
    }

    fn complete(&self, submission: SubmissionId, device_ns: u64) -> Result<()> {
        self.handle.complete(self.vm, submission, device_ns)
    }

    fn ran(&self, submissions: u64, device_ns: u64) -> Result<()> {
        self.handle.ran(self.vm, submissions, device_ns)
    }

    fn end_lease(&self, submission: SubmissionId, submissions: u64, device_ns: u64) -> Result<()> {
        self.handle
            .end_lease(self.vm, submission, submissions, device_ns)
    }

    fn bypass(&self) -> bool {
        self.bypass.load(Ordering::Acquire)
    }

    fn context_failed(&self) -> Result<()> {
        self.handle.failure(self.vm);
        Ok(())
    }

    fn vm(&self) -> Option<VmId> {
        Some(self.vm)
    }

    fn leases(&self) -> Option<&lease::Leases> {
        Some(&self.leases)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.handle.detach(self.vm);
    }
}

/// A VM's submission gate, shared by all its contexts' ring threads.
#[derive(Debug)]
pub struct SubmitGate {
    transport: Box<dyn GateTransport>,
    next_tag: AtomicU64,
    /// Best-effort completions not yet reported to the service.
    unreported: Mutex<Unreported>,
    /// Timestamp-measured vs completion-timed device time, for the record.
    timing: Timing,
    /// Estimated device time of one command buffer, ns (0: nothing learned yet);
    /// see [`SubmitGate::per_command_buffer_ns`].
    per_cb_ns: AtomicU64,
    /// Device time of command buffers seen alone in a granted or leased batch, by
    /// host handle ([`SubmitGate::command_buffer_ns`]); at most [`MAX_KNOWN_CBS`]
    /// entries.
    known_cbs: Mutex<std::collections::HashMap<u64, u64>>,
}

/// Command buffers whose own device time a gate remembers (forgotten all at once
/// when full: a guest that records new ones for ever cannot grow the map).
const MAX_KNOWN_CBS: usize = 4096;

/// Sums of the device time of stamped, granted submissions as the timestamps measured
/// it and as completion timing would have (submit to retire fence seen at once), so
/// that the two can be compared on a host (logged when the gate goes;
/// [`SubmitGate::timing`]).
#[derive(Debug, Default)]
struct Timing {
    submissions: AtomicU64,
    stamped_ns: AtomicU64,
    completion_ns: AtomicU64,
}

impl Timing {
    fn note(&self, stamped: u64, completion: u64) {
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.stamped_ns.fetch_add(stamped, Ordering::Relaxed);
        self.completion_ns.fetch_add(completion, Ordering::Relaxed);
    }
}

/// [`SubmitGate::timing`]: stamped submissions and their summed device time by both
/// measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingFigures {
    /// Submissions measured with timestamps.
    pub submissions: u64,
    /// Their device time from the timestamps, ns.
    pub stamped_ns: u64,
    /// The same submissions by completion timing, ns.
    pub completion_ns: u64,
}

/// Best-effort completions summed since the last report.
#[derive(Debug, Default)]
struct Unreported {
    submissions: u64,
    device_ns: u64,
    last_report: Option<Instant>,
}

/// Longest a best-effort completion waits before its device time is reported while
/// the VM keeps submitting (see the module rules).
pub const REPORT_PERIOD: Duration = Duration::from_millis(10);

/// How often a waiting ring thread looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(5);
/// How long a refused (backpressured) submission waits before asking again.
const REFUSED_RETRY: Duration = Duration::from_millis(1);

impl SubmitGate {
    /// A gate over `transport`.
    pub fn new(transport: Box<dyn GateTransport>) -> Self {
        Self {
            transport,
            next_tag: AtomicU64::new(1),
            unreported: Mutex::new(Unreported::default()),
            timing: Timing::default(),
            per_cb_ns: AtomicU64::new(0),
            known_cbs: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The estimated device time of command buffer `handle`, ns: what it took when
    /// it last ran alone in a granted or leased batch (averaged with the time
    /// before), else [`SubmitGate::per_command_buffer_ns`]. A short command buffer (Mesa's fence
    /// feedback) is known as short once it has run alone.
    pub fn command_buffer_ns(&self, handle: u64) -> Option<u64> {
        self.known_command_buffer_ns(handle)
            .or_else(|| self.per_command_buffer_ns())
    }

    /// What command buffer `handle` took when it last ran alone in a granted or
    /// leased batch (averaged with the time before), if it has.
    pub fn known_command_buffer_ns(&self, handle: u64) -> Option<u64> {
        self.known_cbs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&handle)
            .copied()
    }

    /// The estimated device time of one command buffer of this VM, ns: a moving
    /// average (weight 1/4) of granted or leased batches' device time divided by
    /// their command buffers (a leased batch's time is serial completion timing,
    /// from its submission or the end of the batch before it, whichever is later).
    /// `None` until such a batch with command buffers has finished. Best-effort
    /// batches teach it nothing (their completion timing includes queueing).
    pub fn per_command_buffer_ns(&self) -> Option<u64> {
        Some(self.per_cb_ns.load(Ordering::Relaxed)).filter(|&ns| ns > 0)
    }

    fn learn(&self, command_buffers: u32, single: Option<u64>, device_ns: u64) {
        if command_buffers == 0 || device_ns == 0 {
            return;
        }
        if let Some(handle) = single {
            let mut known = self
                .known_cbs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if known.len() >= MAX_KNOWN_CBS && !known.contains_key(&handle) {
                known.clear();
            }
            let e = known.entry(handle).or_insert(device_ns);
            *e = (*e / 2).saturating_add(device_ns / 2).max(1);
        }
        let sample = (device_ns / u64::from(command_buffers)).max(1);
        let old = self.per_cb_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old.saturating_mul(3).saturating_add(sample) / 4
        };
        // Ring threads of one VM race here; either update is a fair estimate.
        self.per_cb_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// Device time of the stamped, granted submissions so far, by timestamps and by
    /// completion timing.
    pub fn timing(&self) -> TimingFigures {
        TimingFigures {
            submissions: self.timing.submissions.load(Ordering::Relaxed),
            stamped_ns: self.timing.stamped_ns.load(Ordering::Relaxed),
            completion_ns: self.timing.completion_ns.load(Ordering::Relaxed),
        }
    }

    /// Counts a best-effort completion; reports the sum once [`REPORT_PERIOD`] has
    /// passed since the last report (at once after a quiet spell).
    fn ran(&self, device_ns: u64) {
        let due = {
            let mut u = self
                .unreported
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            u.submissions = u.submissions.saturating_add(1);
            u.device_ns = u.device_ns.saturating_add(device_ns);
            let now = Instant::now();
            if u.last_report
                .is_none_or(|t| now.duration_since(t) >= REPORT_PERIOD)
            {
                u.last_report = Some(now);
                Some((
                    std::mem::take(&mut u.submissions),
                    std::mem::take(&mut u.device_ns),
                ))
            } else {
                None
            }
        };
        if let Some((n, ns)) = due {
            self.report_ran(n, ns);
        }
    }

    /// Sends what a lease change reports: the device time of its finished batches
    /// (charged to the VM), then the end of the lease.
    fn send_report(&self, r: lease::Report) {
        match r.end {
            Some(end) => {
                if let Err(e) = self.transport.end_lease(end, r.submissions, r.device_ns) {
                    log::debug!("qos: returning a lease failed: {e}");
                }
            }
            None if r.submissions > 0 => self.report_ran(r.submissions, r.device_ns),
            None => {}
        }
    }

    /// Reports whatever best-effort or leased device time is still unreported (a
    /// context's retire thread calls this when its work has drained and it goes
    /// quiet).
    pub fn flush_unreported(&self) {
        if let Some(leases) = self.transport.leases() {
            self.send_report(leases.flush());
        }
        let (n, ns) = {
            let mut u = self
                .unreported
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (
                std::mem::take(&mut u.submissions),
                std::mem::take(&mut u.device_ns),
            )
        };
        if n > 0 {
            self.report_ran(n, ns);
        }
    }

    fn report_ran(&self, submissions: u64, device_ns: u64) {
        if let Err(e) = self.transport.ran(submissions, device_ns) {
            log::debug!("qos: reporting best-effort device time failed: {e}");
        }
    }

    /// The arbiter's id of this gate's VM (in-process gates).
    pub fn vm(&self) -> Option<VmId> {
        self.transport.vm()
    }

    /// Counts a failed context of this VM (a command failed; metrics only).
    pub fn context_failed(&self) {
        if let Err(e) = self.transport.context_failed() {
            log::debug!("qos: reporting a context failure failed: {e}");
        }
    }

    /// Blocks until the next submission may go to the host queue, or `stop` turns true
    /// ([`QosError::Stopped`]: the caller fails or drops the submission). The returned
    /// ticket must see [`Ticket::submitted`] and then its completion; dropping it early
    /// reports zero device time so the device slot is never leaked.
    pub fn acquire(self: &Arc<Self>, stop: &dyn Fn() -> bool) -> Result<Ticket> {
        let ticket = |submission, lease| Ticket {
            gate: Arc::clone(self),
            submission,
            lease,
            submitted_at: None,
            measured_ns: None,
            command_buffers: 0,
            single: None,
        };
        loop {
            if self.transport.bypass() {
                return Ok(ticket(None, None));
            }
            if let Some(leases) = self.transport.leases() {
                match leases.take(stop) {
                    lease::Take::Leased(s) => return Ok(ticket(None, Some(s))),
                    lease::Take::Stopped => return Err(QosError::Stopped),
                    lease::Take::Ask => {}
                }
            }
            let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel();
            self.transport.submit(tag, None, tx)?;
            match wait_grant(&rx, tag, stop)? {
                Some((submission, false)) => return Ok(ticket(Some(submission), None)),
                Some((submission, true)) => return Ok(ticket(None, Some(submission))),
                None => std::thread::sleep(REFUSED_RETRY),
            }
        }
    }
}

/// Waits for `tag`'s grant (`Some`, with whether it is a lease) or refusal (`None`).
fn wait_grant(
    rx: &Receiver<GateEvent>,
    tag: u64,
    stop: &dyn Fn() -> bool,
) -> Result<Option<(SubmissionId, bool)>> {
    loop {
        match rx.recv_timeout(STOP_POLL) {
            Ok(GateEvent::Granted {
                tag: t,
                submission,
                lease,
            }) if t == tag => return Ok(Some((submission, lease))),
            Ok(GateEvent::Refused { tag: t }) if t == tag => return Ok(None),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                if stop() {
                    // Dropping `rx` tells the service to complete the grant at once when
                    // it comes.
                    return Err(QosError::Stopped);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Err(QosError::ServiceGone),
        }
    }
}

/// One granted (or bypassed) submission, from grant to completion. Dropping it
/// reports the completion (zero device time if it never reached the host queue).
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<SubmitGate>,
    submission: Option<SubmissionId>,
    /// Submitted under this lease (see [`lease`]).
    lease: Option<SubmissionId>,
    submitted_at: Option<Instant>,
    measured_ns: Option<u64>,
    /// Guest command buffers in the batch (for [`SubmitGate::per_command_buffer_ns`]).
    command_buffers: u32,
    /// The batch's one command buffer, where it has exactly one (for
    /// [`SubmitGate::command_buffer_ns`]).
    single: Option<u64>,
}

impl Ticket {
    /// Records how many guest command buffers the batch has, and the one's host
    /// handle where it has exactly one.
    pub fn set_command_buffers(&mut self, n: usize, single: Option<u64>) {
        self.command_buffers = u32::try_from(n).unwrap_or(u32::MAX);
        self.single = single.filter(|_| n == 1);
    }

    /// The VM's estimated device time of command buffer `handle`, ns
    /// ([`SubmitGate::command_buffer_ns`]).
    pub fn command_buffer_ns(&self, handle: u64) -> Option<u64> {
        self.gate.command_buffer_ns(handle)
    }

    /// [`SubmitGate::known_command_buffer_ns`].
    pub fn known_command_buffer_ns(&self, handle: u64) -> Option<u64> {
        self.gate.known_command_buffer_ns(handle)
    }

    /// Marks the moment the batch went to the host queue.
    pub fn submitted(&mut self) {
        self.submitted_at = Some(Instant::now());
    }

    /// The batch's device time as the device measured it (timestamp queries around
    /// it); without this the completion reports the time from submit to the retire
    /// fence being seen (completion timing).
    pub fn measured(&mut self, device_ns: u64) {
        self.measured_ns = Some(device_ns);
    }

    /// Whether the arbiter granted it alone (false: best-effort or under a lease,
    /// granted locally). Only these batches are stamped.
    pub fn is_arbitrated(&self) -> bool {
        self.submission.is_some()
    }

    /// Whether it went under its gate's lease.
    pub fn is_leased(&self) -> bool {
        self.lease.is_some()
    }

    /// The batch's fence signalled: report its device time.
    pub fn complete(self) {
        drop(self);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(s) = self.lease {
            if let Some(leases) = self.gate.transport.leases() {
                let (r, ns) = leases.finish(s, self.submitted_at);
                // Serial completion timing (never overlapping the VM's batch before):
                // good enough to plan splits by, so that a VM that has only ever
                // been alone splits its long submissions under its lease too.
                self.gate.learn(self.command_buffers, self.single, ns);
                self.gate.send_report(r);
            }
            return;
        }
        finish(
            &self.gate,
            self.submission,
            self.submitted_at,
            self.measured_ns,
            (self.command_buffers, self.single),
        );
    }
}

fn finish(
    gate: &SubmitGate,
    submission: Option<SubmissionId>,
    at: Option<Instant>,
    measured: Option<u64>,
    (command_buffers, single): (u32, Option<u64>),
) {
    let completion_ns = at.map_or(0, |t| {
        u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
    });
    // Only granted batches are stamped; compare where both figures exist.
    if let (Some(m), Some(_)) = (measured, submission) {
        gate.timing.note(m, completion_ns);
    }
    // The device's own figure where there is one; it cannot exceed the time the
    // batch was out (a bad clock must not charge a VM more than that).
    let device_ns = measured.map_or(completion_ns, |m| m.min(completion_ns));
    let r = match submission {
        Some(s) => {
            gate.learn(command_buffers, single, device_ns);
            gate.transport.complete(s, device_ns)
        }
        None if device_ns > 0 => {
            gate.ran(device_ns);
            Ok(())
        }
        None => Ok(()),
    };
    if let Err(e) = r {
        log::debug!("qos: reporting a completion failed: {e}");
    }
}

#[cfg(test)]
mod tests;

impl Drop for SubmitGate {
    fn drop(&mut self) {
        self.flush_unreported();
        let t = self.timing();
        if t.submissions > 0 {
            #[allow(clippy::cast_precision_loss, reason = "nanosecond sums far below 2^52")]
            let (s, c) = (t.stamped_ns as f64 / 1e6, t.completion_ns as f64 / 1e6);
            log::info!(
                "qos: device time of {} stamped submissions: {s:.3} ms by timestamps, \
                 {c:.3} ms by completion timing ({:+.2} %)",
                t.submissions,
                if s > 0.0 { (c / s - 1.0) * 100.0 } else { 0.0 }
            );
        }
    }
}
