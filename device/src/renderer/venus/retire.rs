//! Ring fences on host queues: `submit_fence` puts an empty batch with a host
//! `VkFence` on the queue bound to a `ringIdx` (`VkDeviceQueueTimelineInfoMESA`), and
//! one retire thread per context waits for those fences in order and reports each
//! once it signals, as vkr's per-queue sync threads do.
//!
//! The thread owns every fence it was given. Before a device is destroyed its fences
//! are waited for and destroyed ([`Retirer::flush_device`]); stopping the thread
//! does the same for all of them, so no fence outlives its device.
//!
//! It waits in `vkWaitForFences` on the oldest fence that must be seen at once
//! ([`Waiting::prompt`]: ring fences, submissions a QoS gate accounts for); fences
//! of submissions nobody times are looked at every [`LAZY_POLL`] (the thread parks,
//! and only a prompt fence, a flush or a stop unparks it), so they cost no wake-up
//! each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ash::vk;

use super::busy::{BusyClock, QueueKey};
use super::objects::DeviceState;
use crate::ids::ContextId;
use crate::renderer::FenceDone;

/// Fences one context may have in flight before `submit_fence` waits inline.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;
/// How long one wait slice blocks before the thread looks at its inbox again.
const SLICE: Duration = Duration::from_millis(2);
/// How often the thread looks at fences none of which is [`Waiting::prompt`].
const LAZY_POLL: Duration = Duration::from_millis(1);
/// How long the thread waits, once its fences have drained, before it calls the
/// quiet hook (a VM that keeps submitting is not interrupted by it).
const QUIET_AFTER: Duration = crate::qos::REPORT_PERIOD;
/// Longest wait for all fences of a flush (a device that never finishes its work
/// loses its fences' objects rather than hanging teardown).
const FLUSH_LIMIT: Duration = Duration::from_secs(2);
/// Longest wait for a device's queues to drain before it is destroyed.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Called by the retire thread once its fences have drained and nothing new came
/// for [`QUIET_AFTER`] (the QoS gate flushes its best-effort figures).
pub(crate) type QuietHook = Arc<dyn Fn() + Send + Sync>;

/// One fence waited for.
pub(crate) struct Waiting {
    pub(crate) device: Arc<DeviceState>,
    /// The queue the fence was submitted to (the GPU-hang watchdog counts each
    /// queue's running time apart, `busy.rs`).
    pub(crate) queue: vk::Queue,
    pub(crate) fence: vk::Fence,
    pub(crate) done: FenceDone,
    /// What the work before the fence uses (`lifetime::InFlight`): dropped once the
    /// fence signalled, leaked if it never does (never destroyed under running work).
    pub(crate) keep: Option<Box<dyn Send>>,
    /// Whether `done` must run as soon as the fence signals (a guest-visible ring
    /// fence, a submission a QoS gate accounts for: a grant holds the device, and
    /// completion timing needs the moment). Fences that are not (submissions no gate
    /// accounts for) are looked at every [`LAZY_POLL`] instead, so they do not wake
    /// this thread twice per submission.
    pub(crate) prompt: bool,
}

enum Msg {
    Wait(Waiting),
    Flush { device: u64, ack: Sender<()> },
}

/// The retire thread of one context (started on first use).
#[derive(Default)]
pub(crate) struct Retirer {
    inner: Mutex<Option<Running>>,
    in_flight: Arc<AtomicUsize>,
    /// `CLOCK_MONOTONIC` ns since which the work of the oldest still-pending fence
    /// has been running (0: none; `busy.rs`), for the daemon's GPU-hang watchdog of
    /// in-daemon contexts.
    oldest: Arc<AtomicU64>,
    on_quiet: Option<QuietHook>,
}

struct Running {
    tx: Sender<Msg>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for Retirer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retirer")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Retirer {
    /// A retirer that calls `hook` whenever its work has drained and stayed so for a
    /// moment (see [`QuietHook`]).
    pub(crate) fn with_quiet_hook(hook: QuietHook) -> Self {
        Self {
            on_quiet: Some(hook),
            ..Self::default()
        }
    }

    /// Whether another fence may be queued (else the caller waits inline).
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < MAX_IN_FLIGHT
    }

    /// Queues `w`; returns it if the thread could not be started.
    pub(crate) fn push(&self, ctx: ContextId, w: Waiting) -> Result<(), Waiting> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.is_none() {
            let (tx, rx) = mpsc::channel();
            let in_flight = Arc::clone(&self.in_flight);
            let oldest = Arc::clone(&self.oldest);
            let on_quiet = self.on_quiet.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vgpu-retire-{}", ctx.0))
                .spawn(move || run(&rx, &in_flight, &oldest, on_quiet.as_deref()));
            match spawned {
                Ok(thread) => *inner = Some(Running { tx, thread }),
                Err(e) => {
                    log::warn!("venus: {ctx}: cannot start the fence thread: {e}");
                    return Err(w);
                }
            }
        }
        let Some(running) = inner.as_ref() else {
            return Err(w);
        };
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let prompt = w.prompt;
        match running.tx.send(Msg::Wait(w)) {
            Ok(()) => {
                if prompt {
                    // It may be sleeping out a lazy poll.
                    running.thread.thread().unpark();
                }
                Ok(())
            }
            Err(mpsc::SendError(Msg::Wait(w))) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(w)
            }
            // `push` sends nothing else.
            Err(mpsc::SendError(Msg::Flush { .. })) => Ok(()),
        }
    }

    /// Waits for and retires every fence of `device` (call before destroying it).
    pub(crate) fn flush_device(&self, device: u64) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(running) = inner.as_ref() else {
            return;
        };
        let (ack, done) = mpsc::channel();
        if running.tx.send(Msg::Flush { device, ack }).is_ok() {
            running.thread.thread().unpark();
            // The thread answers after retiring the device's fences, or drops `ack`
            // if it ended.
            let _ = done.recv();
        }
    }

    /// Since when the work of the oldest fence still pending has been running
    /// (`CLOCK_MONOTONIC` ns; `busy.rs`), if any.
    pub(crate) fn oldest_pending_ns(&self) -> Option<u64> {
        Some(self.oldest.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// Retires every fence and joins the thread.
    pub(crate) fn stop(&self) {
        let running = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Running { tx, thread }) = running {
            drop(tx);
            thread.thread().unpark();
            if thread.join().is_err() {
                log::warn!("venus: the fence thread panicked");
            }
        }
    }
}

/// Puts an empty batch with a new host fence on `queue`; the fence signals once
/// everything submitted to the queue before it has completed. On failure, names the
/// call that failed.
///
/// # Safety
///
/// `device` must be live and `queue` one of its queues that no other thread uses
/// during the call (the caller holds its submission lock, or no one else submits).
pub(crate) unsafe fn submit_marker(
    device: &ash::Device,
    queue: vk::Queue,
) -> Result<vk::Fence, (&'static str, vk::Result)> {
    // SAFETY: live device (the caller's contract).
    let fence = unsafe { device.create_fence(&vk::FenceCreateInfo::default(), None) }
        .map_err(|e| ("vkCreateFence", e))?;
    // SAFETY: a queue of this live device, externally synchronized by the caller.
    if let Err(e) = unsafe { device.queue_submit(queue, &[], fence) } {
        // SAFETY: never submitted, so unused.
        unsafe { device.destroy_fence(fence, None) };
        return Err(("vkQueueSubmit", e));
    }
    Ok(fence)
}

/// Waits for `w` on the calling thread, for as long as it takes, and retires it. If
/// `stop` turns true first (the context is being destroyed), the fence is leaked
/// rather than destroyed while a queue may still use it, and reported.
pub(crate) fn wait_inline(w: Waiting, stop: &dyn Fn() -> bool) {
    wait_then_retire(w, stop);
}

/// Waits for `w` until it signals or `give_up` turns true, then reports it; destroys
/// the fence only if it signalled (one that did not is leaked, not destroyed while a
/// queue might still use it). False if it gave up.
fn wait_then_retire(w: Waiting, give_up: &dyn Fn() -> bool) -> bool {
    loop {
        if is_done(&w) {
            retire(w);
            return true;
        }
        if give_up() {
            std::mem::forget(w.keep);
            (w.done)();
            return false;
        }
        wait_slice(&w);
    }
}

/// Whether `w`'s fence has signalled (or can never signal: device lost).
fn is_done(w: &Waiting) -> bool {
    // SAFETY: the fence belongs to this live device (devices are flushed before they
    // are destroyed) and only this thread uses it after submission.
    !matches!(
        unsafe { w.device.device.get_fence_status(w.fence) },
        Ok(false)
    )
}

/// Destroys the fence and reports it.
fn retire(w: Waiting) {
    // SAFETY: the fence signalled (or the device is lost), so no queue uses it, and
    // nothing else holds it.
    unsafe { w.device.device.destroy_fence(w.fence, None) };
    drop(w.keep);
    (w.done)();
}

/// Blocks until `w` signals or `limit` passes; retires it either way (a fence that
/// never signals is leaked, not destroyed while a queue might still use it).
fn finish(w: Waiting, limit: Duration) {
    let deadline = Instant::now() + limit;
    if !wait_then_retire(w, &|| Instant::now() >= deadline) {
        log::warn!("venus: a ring fence did not signal within {limit:?}; leaking it");
    }
}

fn wait_slice(w: &Waiting) {
    let ns = u64::try_from(SLICE.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: as in `is_done`. The result is re-read with `is_done`.
    let _ = unsafe { w.device.device.wait_for_fences(&[w.fence], true, ns) };
}

/// The queue `w`'s fence was submitted to.
fn queue_key(w: &Waiting) -> QueueKey {
    QueueKey {
        device: vk::Handle::as_raw(w.device.device.handle()),
        queue: vk::Handle::as_raw(w.queue),
    }
}

fn run(
    rx: &Receiver<Msg>,
    in_flight: &AtomicUsize,
    oldest: &AtomicU64,
    on_quiet: Option<&(dyn Fn() + Send + Sync)>,
) {
    // Each pending fence with when it arrived (monotonic ns), in arrival order, and
    // when each queue last retired one: so the GPU-hang watchdog (the daemon's, or a
    // worker's page) sees how long the oldest pending work has been running.
    let mut pending: VecDeque<(Waiting, u64)> = VecDeque::new();
    let mut clock = BusyClock::default();
    let retired = |w: Waiting, limit: Option<Duration>| {
        match limit {
            Some(l) => finish(w, l),
            None => retire(w),
        }
        in_flight.fetch_sub(1, Ordering::AcqRel);
    };
    // Retired something since the quiet hook last ran.
    let mut unquiet = false;
    loop {
        let msg = if pending.is_empty() {
            match (unquiet, on_quiet) {
                (true, Some(hook)) => match rx.recv_timeout(QUIET_AFTER) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        hook();
                        unquiet = false;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                _ => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            }
        } else {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        };
        match msg {
            Some(Msg::Wait(w)) => {
                pending.push_back((w, crate::worker::hang::now_ns()));
            }
            Some(Msg::Flush { device, ack }) => {
                let (mine, rest): (VecDeque<_>, VecDeque<_>) = pending
                    .drain(..)
                    .partition(|(w, _)| queue_key(w).device == device);
                pending = rest;
                let deadline = Instant::now() + FLUSH_LIMIT;
                for (w, _) in mine {
                    retired(w, Some(deadline.saturating_duration_since(Instant::now())));
                    unquiet = true;
                }
                clock.forget_device(device);
                let _ = ack.send(());
            }
            None => {}
        }
        // Retire every fence that has signalled, oldest first.
        let mut progressed = false;
        let mut still = VecDeque::with_capacity(pending.len());
        for (w, arrived) in pending.drain(..) {
            if is_done(&w) {
                clock.retired(queue_key(&w), crate::worker::hang::now_ns());
                retired(w, None);
                progressed = true;
                unquiet = true;
            } else {
                still.push_back((w, arrived));
            }
        }
        pending = still;
        let front = clock.running_since(pending.iter().map(|(w, at)| (queue_key(w), *at)));
        crate::worker::hang::publish_oldest(front);
        oldest.store(front.map_or(0, |t| t.max(1)), Ordering::Release);
        if !progressed {
            match pending.iter().find(|(w, _)| w.prompt) {
                Some((w, _)) => wait_slice(w),
                // Nothing needs to be seen at once: sleep without being woken by every
                // new submission (a channel receive would be), then look again.
                // A prompt fence or a flush unparks the thread early.
                None if !pending.is_empty() => std::thread::park_timeout(LAZY_POLL),
                None => {}
            }
        }
    }
    let deadline = Instant::now() + FLUSH_LIMIT;
    for (w, _) in pending {
        retired(w, Some(deadline.saturating_duration_since(Instant::now())));
    }
    crate::worker::hang::publish_oldest(None);
    oldest.store(0, Ordering::Release);
    if let Some(hook) = on_quiet {
        hook();
    }
}

/// Waits, up to `limit` in all, until every queue in `queues` of `device` has
/// completed its work (an empty submission with a fence on each). False if a queue
/// did not drain in time (blocked on a semaphore nobody signals, a hung job): the
/// caller must then not destroy the device. The caller holds the queues' submission
/// locks or knows no other thread submits.
pub(crate) fn drain_queues(device: &DeviceState, queues: &[vk::Queue], limit: Duration) -> bool {
    let d = &device.device;
    let deadline = Instant::now() + limit;
    for &queue in queues {
        // SAFETY: a live queue of this live device, not used by other threads now.
        let Ok(fence) = (unsafe { submit_marker(d, queue) }) else {
            return false;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let ns = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: live device and fence.
        let done = unsafe { d.wait_for_fences(&[fence], true, ns) }.is_ok();
        if !done {
            // The fence stays with the undrained queue (leaked with the device).
            return false;
        }
        // SAFETY: signalled, so unused.
        unsafe { d.destroy_fence(fence, None) };
    }
    true
}
