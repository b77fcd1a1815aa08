//! A gate's lease: one grant of the arbiter that covers every batch its VM submits
//! while it is alone on the device, until the service revokes it.
//!
//! Asking the daemon for each batch costs a round trip through two daemon threads and,
//! with the one-VM-on-the-device rule, keeps a lone VM from pipelining its own
//! batches: one VM alone under fixed-share 100 % got 0.47 of the ungated throughput
//! at 0.2 ms batches (issue 13). A leased gate grants locally instead:
//!
//! - **Given** with a grant when nothing else is queued or held and the VM's policy
//!   lets it use the whole device (no cap below 100 %), only to gates that can be
//!   revoked asynchronously (worker processes: their gate's reader thread acts on a
//!   revocation even while the VM is idle).
//! - **Bounded pipelining.** A batch is taken under the lease while nothing is in
//!   flight, or while the estimated work queued behind the running batch, this one
//!   included, stays within [`PIPELINE_NS`], or (one batch running, nothing queued)
//!   once the running batch is expected to end within [`PIPELINE_NS`], so that it is
//!   on the host queue when the device frees instead of a completion round trip
//!   later (that idle gap cost a lone VM about 2 % at 5–50 ms batches). So a VM that
//!   arrives waits for at most the running batch and 2 ms of queued ones, or about
//!   2 ms of the running one and one batch — per-batch grants plus the 2 ms the
//!   latency target allows. A batch waiting longer than [`stall_ns`] is taken
//!   anyway (it may be the one that signals a semaphore the running batch waits
//!   on).
//! - **Charged in parts.** Each batch costs `done − max(submitted, previous done)`
//!   (serial-engine completion timing: the batches of a lease are not stamped, the
//!   stamps cost a third of the throughput of small batches on lavapipe); the sums
//!   are reported as `Ran` at most every [`super::REPORT_PERIOD`] and charged to the
//!   VM's account by the arbiter ([`vgpu_scheduler::Arbiter::charge`]).
//! - **Revoked** when any other submission reaches the service, or the policy, a
//!   share or the set of VMs changes. From then on no batch is taken; when the last
//!   one in flight finishes the gate reports what is left and completes the lease's
//!   grant (zero device time: it was all charged in parts), which frees the device for
//!   the arbiter's next grant. A gate that never returns a revoked lease has it
//!   released as stalled by the service.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vgpu_scheduler::SubmissionId;

use super::REPORT_PERIOD;

/// Most estimated device time a leased gate keeps queued behind its running batch.
pub const PIPELINE_NS: u64 = 2_000_000;
/// Most batches of one lease in flight.
const MAX_IN_FLIGHT: u32 = 8;
/// How often a batch waiting for room under the lease looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(5);

/// How long a batch waits for room under the lease before it is taken anyway: four
/// batches' worth, at least 250 ms (the service's stall bound for grants).
pub fn stall_ns(estimate_ns: u64) -> u64 {
    super::stall_bound_ns(estimate_ns)
}

/// What a gate must tell the service after a lease change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Batches finished under the lease and not yet reported.
    pub submissions: u64,
    /// Their device time, ns.
    pub device_ns: u64,
    /// The lease's grant, when the lease has ended (complete it with zero time after
    /// reporting the rest).
    pub end: Option<SubmissionId>,
}

impl Report {
    /// Whether there is anything to send.
    pub fn is_empty(&self) -> bool {
        self.submissions == 0 && self.end.is_none()
    }
}

/// What [`Leases::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Submit under this lease.
    Leased(SubmissionId),
    /// No lease (or a revoked one): ask the arbiter.
    Ask,
    /// The caller's stop flag turned true while it waited for room.
    Stopped,
}

#[derive(Debug)]
struct Held {
    submission: SubmissionId,
    revoked: bool,
    in_flight: u32,
    /// Mean batch of this lease (EWMA, 1/4), once one has finished.
    estimate_ns: Option<u64>,
    last_done: Option<Instant>,
    /// When the latest batch was taken (it went to the host right after).
    last_taken: Option<Instant>,
    unreported_n: u64,
    unreported_ns: u64,
    last_report: Instant,
}

impl Held {
    fn has_room(&self, now: Instant) -> bool {
        self.room_in(now) == Some(Duration::ZERO)
    }

    /// How long until a batch may be taken: `Some(0)` now, `Some(t)` once the running
    /// batch is expected to end within [`PIPELINE_NS`], `None` not before something
    /// finishes.
    fn room_in(&self, now: Instant) -> Option<Duration> {
        if self.in_flight == 0 {
            return Some(Duration::ZERO);
        }
        let est = self.estimate_ns?;
        // One batch runs; this one and the others in flight wait behind it.
        if self.in_flight < MAX_IN_FLIGHT
            && est.saturating_mul(u64::from(self.in_flight)) <= PIPELINE_NS
        {
            return Some(Duration::ZERO);
        }
        if self.in_flight > 1 {
            return None;
        }
        // Just in time: the running batch started when it was taken, or when the one
        // before it finished if that was later.
        let started = match (self.last_taken, self.last_done) {
            (Some(t), Some(d)) => t.max(d),
            (Some(t), None) => t,
            (None, _) => return None,
        };
        let ends = started.checked_add(Duration::from_nanos(est.saturating_sub(PIPELINE_NS)))?;
        Some(ends.saturating_duration_since(now))
    }

    fn take_report(&mut self, now: Instant) -> Report {
        self.last_report = now;
        Report {
            submissions: std::mem::take(&mut self.unreported_n),
            device_ns: std::mem::take(&mut self.unreported_ns),
            end: None,
        }
    }
}

/// A gate's lease state, shared by its ring threads, its retire threads and (for a
/// worker's gate) the reader thread that receives grants and revocations.
#[derive(Debug, Default)]
pub struct Leases {
    held: Mutex<Option<Held>>,
    room: Condvar,
    /// Batches waiting on `room` (changed only under `held`'s lock, so a finishing
    /// batch skips the wake-up system call when nobody waits: the common case).
    waiting: AtomicU32,
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes batches waiting for room, if any (call with `held` locked).
    fn wake(&self) {
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify_all();
        }
    }

    /// A grant that carries a lease arrived; the batch it was asked for counts as in
    /// flight under it. `false`: a lease is still held (not expected), so this grant
    /// is an ordinary one.
    pub fn begin(&self, submission: SubmissionId) -> bool {
        let mut held = self.lock();
        if held.is_some() {
            return false;
        }
        *held = Some(Held {
            submission,
            revoked: false,
            in_flight: 1,
            estimate_ns: None,
            last_done: None,
            last_taken: Some(Instant::now()),
            unreported_n: 0,
            unreported_ns: 0,
            last_report: Instant::now(),
        });
        true
    }

    /// Takes the next batch under the lease, waiting while the lease has no room.
    pub fn take(&self, stop: &dyn Fn() -> bool) -> Take {
        let started = Instant::now();
        let mut held = self.lock();
        loop {
            let Some(h) = held.as_mut() else {
                return Take::Ask;
            };
            if h.revoked {
                return Take::Ask;
            }
            let now = Instant::now();
            let waited = u64::try_from(now.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
            if h.has_room(now) || waited > stall_ns(h.estimate_ns.unwrap_or(0)) {
                h.in_flight += 1;
                h.last_taken = Some(now);
                return Take::Leased(h.submission);
            }
            if stop() {
                return Take::Stopped;
            }
            let nap = h.room_in(now).map_or(STOP_POLL, |t| t.min(STOP_POLL));
            self.waiting.fetch_add(1, Ordering::Relaxed);
            held = self
                .room
                .wait_timeout(held, nap)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A batch under lease `submission` finished (`submitted`: when it went to the
    /// host queue; `None`: it never did). Returns what to report, if anything is due,
    /// and the batch's own device time by serial completion timing (0: it never
    /// ran, or not under the lease held).
    pub fn finish(&self, submission: SubmissionId, submitted: Option<Instant>) -> (Report, u64) {
        let now = Instant::now();
        let mut held = self.lock();
        let Some(h) = held.as_mut().filter(|h| h.submission == submission) else {
            return (Report::default(), 0);
        };
        h.in_flight = h.in_flight.saturating_sub(1);
        let mut batch_ns = 0;
        if let Some(at) = submitted {
            let start = h.last_done.map_or(at, |d| d.max(at));
            let ns =
                u64::try_from(now.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
            h.last_done = Some(now);
            batch_ns = ns;
            h.unreported_n = h.unreported_n.saturating_add(1);
            h.unreported_ns = h.unreported_ns.saturating_add(ns);
            h.estimate_ns = Some(h.estimate_ns.map_or(ns, |e| {
                let delta = (i128::from(ns) - i128::from(e)) >> 2;
                u64::try_from(i128::from(e) + delta).unwrap_or(ns)
            }));
        }
        self.wake();
        if h.revoked && h.in_flight == 0 {
            let mut r = h.take_report(now);
            r.end = Some(h.submission);
            *held = None;
            return (r, batch_ns);
        }
        if now.saturating_duration_since(h.last_report) >= REPORT_PERIOD {
            return (h.take_report(now), batch_ns);
        }
        (Report::default(), batch_ns)
    }

    /// The service revoked lease `submission`: no more batches under it; returns the
    /// final report at once if nothing is in flight.
    pub fn revoke(&self, submission: SubmissionId) -> Report {
        let mut held = self.lock();
        let Some(h) = held.as_mut().filter(|h| h.submission == submission) else {
            return Report::default();
        };
        h.revoked = true;
        self.wake();
        if h.in_flight > 0 {
            return Report::default();
        }
        let mut r = h.take_report(Instant::now());
        r.end = Some(h.submission);
        *held = None;
        r
    }

    /// What is unreported so far (a context's retire thread went quiet).
    pub fn flush(&self) -> Report {
        let mut held = self.lock();
        match held.as_mut() {
            Some(h) if h.unreported_n > 0 => h.take_report(Instant::now()),
            _ => Report::default(),
        }
    }

    /// Whether a lease is held (revoked or not).
    pub fn is_held(&self) -> bool {
        self.lock().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    /// What `finish` reported (if due) plus what a flush reports after it.
    fn reported(l: &Leases, from_finish: Report) -> Report {
        let rest = l.flush();
        Report {
            submissions: from_finish.submissions + rest.submissions,
            device_ns: from_finish.device_ns + rest.device_ns,
            end: from_finish.end.or(rest.end),
        }
    }

    #[test]
    fn a_lease_pipelines_small_batches_and_ends_after_its_last_one() {
        let l = Leases::default();
        let s = SubmissionId(5);
        assert_eq!(l.take(&never), Take::Ask, "no lease yet");
        assert!(l.begin(s));
        assert!(!l.begin(SubmissionId(6)), "one lease at a time");
        // Before any batch finished its size is unknown: one at a time.
        assert_eq!(l.take(&|| true), Take::Stopped);
        let (r, ns) = l.finish(s, Some(Instant::now()));
        assert_eq!((r.submissions, r.end), (0, None), "not due yet");
        assert!(ns > 0, "its own device time");
        // Small batches (well under 2 ms): several in flight.
        assert_eq!(l.take(&never), Take::Leased(s));
        assert_eq!(l.take(&never), Take::Leased(s));
        assert_eq!(l.revoke(s), Report::default(), "two still in flight");
        assert_eq!(l.take(&never), Take::Ask, "revoked: ask the arbiter");
        assert!(l.finish(s, Some(Instant::now())).0.end.is_none());
        let (last, _) = l.finish(s, Some(Instant::now()));
        assert_eq!(last.end, Some(s));
        assert_eq!(last.submissions, 3, "every batch reported once");
        assert!(!l.is_held());
    }

    #[test]
    fn a_revoked_idle_lease_ends_at_once_and_strangers_are_ignored() {
        let l = Leases::default();
        let s = SubmissionId(1);
        assert!(l.begin(s));
        assert_eq!(
            l.finish(SubmissionId(2), Some(Instant::now())),
            (Report::default(), 0)
        );
        assert_eq!(l.revoke(SubmissionId(2)), Report::default());
        let r = l.finish(s, None);
        assert_eq!(
            r,
            (Report::default(), 0),
            "a batch that never ran costs nothing"
        );
        let r = l.revoke(s);
        assert_eq!((r.submissions, r.end), (0, Some(s)));
        assert!(!l.is_held());
    }

    #[test]
    fn long_batches_run_one_at_a_time_and_time_is_charged_serially() {
        let l = Leases::default();
        let s = SubmissionId(3);
        assert!(l.begin(s));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let first = reported(&l, l.finish(s, Some(t0)).0);
        assert_eq!(first.submissions, 1);
        assert!(first.device_ns >= 30_000_000, "{first:?}");
        // A 30 ms batch: the next one waits while one is in flight (until it is
        // expected to end within 2 ms).
        assert_eq!(l.take(&never), Take::Leased(s));
        assert_eq!(l.take(&|| true), Take::Stopped);
        // Submitted together with the first: charged only from the first's end.
        std::thread::sleep(Duration::from_millis(10));
        let second = reported(&l, l.finish(s, Some(t0)).0);
        assert_eq!(second.submissions, 1);
        assert!(second.device_ns >= 10_000_000, "{second:?}");
        assert!(second.device_ns < first.device_ns, "{first:?} {second:?}");
    }

    #[test]
    fn the_next_long_batch_is_taken_when_the_running_one_is_about_to_end() {
        let l = Leases::default();
        let s = SubmissionId(7);
        assert!(l.begin(s));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let _ = l.finish(s, Some(t0));
        // A ~20 ms batch runs from here: no room now, room ~2 ms before it ends.
        let taken = Instant::now();
        assert_eq!(l.take(&never), Take::Leased(s));
        assert_eq!(l.take(&|| true), Take::Stopped, "18 ms early");
        assert_eq!(l.take(&never), Take::Leased(s));
        let waited = taken.elapsed();
        assert!(
            waited >= Duration::from_millis(17) && waited < Duration::from_millis(200),
            "taken after {waited:?}"
        );
        // Two in flight: nothing more until one finishes.
        assert_eq!(l.take(&|| true), Take::Stopped);
    }

    #[test]
    fn a_waiting_batch_wakes_when_room_frees() {
        let l = std::sync::Arc::new(Leases::default());
        let s = SubmissionId(4);
        assert!(l.begin(s));
        let waiter = {
            let l = std::sync::Arc::clone(&l);
            std::thread::spawn(move || l.take(&never))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "no room while the first batch runs");
        let _ = l.finish(s, Some(Instant::now()));
        assert_eq!(waiter.join().ok(), Some(Take::Leased(s)));
    }
}
