//! Guest rings (`VkRingMESA`, venus-wire.md §5): layout validation, the consumer
//! thread, seqno publication and cross-waits.
//!
//! Memory ordering with the guest:
//! - `tail` is loaded with acquire (the guest stores it with release after copying
//!   commands in), and command bytes are copied out only after that load.
//! - `head` is stored with release after each command, after its reply is written, so
//!   the guest (acquire) sees the whole reply once it sees the head.
//! - setting IDLE and re-reading `tail` are both `SeqCst`, pairing with the guest's
//!   `SeqCst` store-tail / load-status (a Dekker-style handshake).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::context::ContextShared;
use super::executor::{run_commands, ExecError, Origin, StreamCtx, StreamLocal, TransportError};
use super::monitor::{MonitorHandle, StatusWord};
use super::reply::ReplyStream;
use crate::error_chain;
use crate::ids::{ContextId, ResourceId, RingId};
use crate::sys::SharedMemory;

/// Status bit: the host ring thread is sleeping; the guest must notify.
pub const STATUS_IDLE: u32 = 0x1;
/// Status bit: the host hit an unrecoverable error (sticky).
pub const STATUS_FATAL: u32 = 0x2;
/// Status bit: set periodically by the host monitor, cleared by the guest watchdog.
pub const STATUS_ALIVE: u32 = 0x4;

/// Largest ring buffer accepted (`VKR_RING_BUFFER_MAX_SIZE`).
pub const RING_BUFFER_MAX_SIZE: u64 = 16 * 1024 * 1024;

/// How often blocked waits re-check for a fatal context or a stop request.
const WAIT_POLL: Duration = Duration::from_millis(50);
/// Longest back-off sleep while busy-polling an empty ring.
const MAX_RELAX_SLEEP: Duration = Duration::from_millis(1);

/// `VkRingCreateInfoMESA` plus its pNext structs, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingCreateInfo {
    /// `flags` (must be 0 today; not interpreted).
    pub flags: u32,
    /// Shared-memory resource holding the ring.
    pub resource: ResourceId,
    /// Start of the ring inside the resource.
    pub offset: u64,
    /// Size of the ring area.
    pub size: u64,
    /// Idle timeout in nanoseconds.
    pub idle_timeout_ns: u64,
    /// Offset of `head` (relative to `offset`).
    pub head_offset: u64,
    /// Offset of `tail`.
    pub tail_offset: u64,
    /// Offset of `status`.
    pub status_offset: u64,
    /// Offset of the command buffer.
    pub buffer_offset: u64,
    /// Size of the command buffer (power of two, at most 16 MiB).
    pub buffer_size: u64,
    /// Offset of the extra region.
    pub extra_offset: u64,
    /// Size of the extra region.
    pub extra_size: u64,
    /// `VkRingMonitorInfoMESA::maxReportingPeriodMicroseconds`, if chained.
    pub monitor_period_us: Option<u32>,
    /// `VkRingPriorityInfoMESA::priority`, if chained (recorded, not applied yet).
    pub priority: Option<i32>,
}

/// A half-open byte range `[begin, end)` in a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub begin: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Region {
    fn new(offset: u64, size: u64) -> Option<Self> {
        Some(Self {
            begin: offset,
            end: offset.checked_add(size)?,
        })
    }

    fn size(&self) -> u64 {
        self.end - self.begin
    }

    fn is_within(&self, other: &Region) -> bool {
        self.begin >= other.begin && self.end <= other.end
    }

    fn is_disjoint(&self, other: &Region) -> bool {
        self.begin >= other.end || other.begin >= self.end
    }

    fn is_aligned(&self, align: u64) -> bool {
        (self.begin | self.end) & (align - 1) == 0
    }
}

/// A validated ring layout; all offsets are absolute within the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    /// `head` word.
    pub head: Region,
    /// `tail` word.
    pub tail: Region,
    /// `status` word.
    pub status: Region,
    /// Command buffer.
    pub buffer: Region,
    /// Extra region.
    pub extra: Region,
}

impl RingLayout {
    /// Validates `info` against a shared-memory resource of `resource_size` bytes,
    /// exactly as virglrenderer's `vkr_ring_layout_init`: the ring area lies inside the
    /// resource; every region lies inside the ring area, is 4-byte aligned and is
    /// disjoint from the others; the buffer size is a power of two ≤ 16 MiB.
    pub fn new(info: &RingCreateInfo, resource_size: u64) -> Result<Self, TransportError> {
        let region = |rel: u64, size: u64| {
            info.offset
                .checked_add(rel)
                .and_then(|begin| Region::new(begin, size))
                .ok_or(TransportError::BadRingLayout("region offset overflows"))
        };
        let layout = Self {
            head: region(info.head_offset, 4)?,
            tail: region(info.tail_offset, 4)?,
            status: region(info.status_offset, 4)?,
            buffer: region(info.buffer_offset, info.buffer_size)?,
            extra: region(info.extra_offset, info.extra_size)?,
        };
        let ring_area = Region::new(info.offset, info.size)
            .ok_or(TransportError::BadRingLayout("ring area overflows"))?;
        let whole = Region {
            begin: 0,
            end: resource_size,
        };
        if !ring_area.is_within(&whole) {
            return Err(TransportError::BadRingLayout(
                "ring area outside the resource",
            ));
        }
        let regions = [
            layout.head,
            layout.tail,
            layout.status,
            layout.buffer,
            layout.extra,
        ];
        for r in &regions {
            if !r.is_within(&ring_area) {
                return Err(TransportError::BadRingLayout(
                    "region outside the ring area",
                ));
            }
            if !r.is_aligned(4) {
                return Err(TransportError::BadRingLayout("region not 4-byte aligned"));
            }
        }
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                if !a.is_disjoint(b) {
                    return Err(TransportError::BadRingLayout("regions overlap"));
                }
            }
        }
        let size = layout.buffer.size();
        if size > RING_BUFFER_MAX_SIZE || !size.is_power_of_two() {
            return Err(TransportError::BadRingLayout(
                "buffer size not a power of two ≤ 16 MiB",
            ));
        }
        Ok(layout)
    }
}

/// `a` has reached `b` in free-running u32 seqno space.
pub fn seqno_reached(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) <= i32::MAX as u32
}

#[derive(Debug)]
struct RingSyncState {
    head: u32,
    virtqueue_seqno: u64,
    stopped: bool,
}

/// State of one ring shared by its consumer thread, the context thread (cross-waits,
/// notify) and the monitor. The one mutex guards only the seqno bookkeeping and is
/// never held while taking another lock.
#[derive(Debug)]
pub(crate) struct RingShared {
    pub(crate) id: RingId,
    mem: Arc<SharedMemory>,
    layout: RingLayout,
    sync: Mutex<RingSyncState>,
    cond: Condvar,
}

impl RingShared {
    fn lock(&self) -> MutexGuard<'_, RingSyncState> {
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn load_tail(&self, order: Ordering) -> Result<u32, TransportError> {
        self.mem
            .load_u32(self.layout.tail.begin, order)
            .map_err(TransportError::Shm)
    }

    fn set_status(&self, bits: u32) {
        // The status word was bounds- and alignment-checked at creation.
        let _ = self
            .mem
            .fetch_or_u32(self.layout.status.begin, bits, Ordering::SeqCst);
    }

    fn clear_status(&self, bits: u32) {
        let _ = self
            .mem
            .fetch_and_u32(self.layout.status.begin, !bits, Ordering::SeqCst);
    }

    /// Publishes `head` to the guest (release) and wakes `vkWaitRingSeqnoMESA` waiters.
    fn publish_head(&self, head: u32) -> Result<(), TransportError> {
        self.mem
            .store_u32(self.layout.head.begin, head, Ordering::Release)
            .map_err(TransportError::Shm)?;
        self.lock().head = head;
        self.cond.notify_all();
        Ok(())
    }

    /// Whether the ring is being stopped (destroy or context teardown).
    pub(crate) fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    fn mark_stopped(&self) {
        self.lock().stopped = true;
        self.cond.notify_all();
    }

    pub(crate) fn write_extra(&self, offset: u64, value: u32) -> Result<(), TransportError> {
        let access = self
            .layout
            .extra
            .begin
            .checked_add(offset)
            .and_then(|begin| Region::new(begin, 4))
            .filter(|r| r.is_within(&self.layout.extra) && r.is_aligned(4))
            .ok_or(TransportError::ExtraOutOfRange(offset))?;
        self.mem
            .store_u32(access.begin, value, Ordering::Release)
            .map_err(TransportError::Shm)
    }

    pub(crate) fn submit_virtqueue_seqno(&self, seqno: u64) {
        self.lock().virtqueue_seqno = seqno;
        self.cond.notify_all();
    }

    /// Blocks until `cond(state)` holds, the ring stops, or the context turns fatal.
    fn wait_until(
        &self,
        ctx: &ContextShared,
        mut done: impl FnMut(&RingSyncState) -> bool,
    ) -> Result<(), TransportError> {
        let mut state = self.lock();
        loop {
            if done(&state) {
                return Ok(());
            }
            if state.stopped || ctx.should_stop() {
                return Err(TransportError::Stopped);
            }
            state = self
                .cond
                .wait_timeout(state, WAIT_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub(crate) fn wait_virtqueue_seqno(
        &self,
        ctx: &ContextShared,
        seqno: u64,
    ) -> Result<(), TransportError> {
        self.wait_until(ctx, |s| s.virtqueue_seqno >= seqno)
    }

    /// `vkWaitRingSeqnoMESA`: the guest has already published a tail at or past
    /// `seqno`; otherwise the wait could never finish and is fatal.
    pub(crate) fn wait_head(&self, ctx: &ContextShared, seqno: u64) -> Result<(), TransportError> {
        // Ring seqnos are u32 byte counters; the command carries them widened.
        let target = crate::lo32(seqno);
        let tail = self.load_tail(Ordering::Acquire)?;
        if !seqno_reached(tail, target) {
            return Err(TransportError::WaitBeyondTail {
                ring: self.id,
                seqno,
                tail,
            });
        }
        self.wait_until(ctx, |s| seqno_reached(s.head, target))
    }
}

enum RingMsg {
    Notify,
    Stop,
}

/// Owns a ring's consumer thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct RingHandle {
    shared: Arc<RingShared>,
    ctx: Arc<ContextShared>,
    tx: Sender<RingMsg>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RingMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RingMsg::Notify => "Notify",
            RingMsg::Stop => "Stop",
        })
    }
}

impl RingHandle {
    pub(crate) fn shared(&self) -> &Arc<RingShared> {
        &self.shared
    }

    pub(crate) fn notify(&self) {
        let _ = self.tx.send(RingMsg::Notify);
    }

    /// Sets FATAL in the guest-visible status (used when the context stream failed).
    pub(crate) fn set_fatal(&self) {
        self.shared.set_status(STATUS_FATAL);
    }
}

impl Drop for RingHandle {
    fn drop(&mut self) {
        self.ctx.remove_ring_status(self.shared.id);
        self.shared.mark_stopped();
        let _ = self.tx.send(RingMsg::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("renderer: {} thread panicked", self.shared.id);
            }
        }
    }
}

/// The rings of one context, owned by the context (only the context stream creates,
/// destroys or notifies rings, so no lock is needed). Rings are dropped (stopped and
/// joined) before the monitor.
#[derive(Debug)]
pub(crate) struct RingTable {
    rings: HashMap<RingId, RingHandle>,
    monitor: Option<MonitorHandle>,
    ctx: ContextId,
    max_rings: usize,
    created: u32,
}

impl RingTable {
    pub(crate) fn new(ctx: ContextId, max_rings: usize) -> Self {
        Self {
            rings: HashMap::new(),
            monitor: None,
            ctx,
            max_rings,
            created: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rings.len()
    }

    pub(crate) fn get(&self, ring: RingId) -> Result<&RingHandle, TransportError> {
        self.rings
            .get(&ring)
            .ok_or(TransportError::UnknownRing(ring))
    }

    pub(crate) fn set_all_fatal(&self) {
        for ring in self.rings.values() {
            ring.set_fatal();
        }
    }

    pub(crate) fn create(
        &mut self,
        ctx: &Arc<ContextShared>,
        id: RingId,
        info: &RingCreateInfo,
    ) -> Result<(), TransportError> {
        if self.rings.contains_key(&id) {
            return Err(TransportError::DuplicateRing(id));
        }
        if self.rings.len() >= self.max_rings {
            return Err(TransportError::TooManyRings(self.max_rings));
        }
        let res = ctx
            .resource(info.resource)
            .ok_or(TransportError::UnknownResource(info.resource))?;
        let mem = Arc::clone(res.shmem().ok_or(TransportError::NotShmem(info.resource))?);
        let layout = RingLayout::new(info, res.size())?;
        let head = mem
            .load_u32(layout.head.begin, Ordering::Acquire)
            .map_err(TransportError::Shm)?;
        let status = mem
            .load_u32(layout.status.begin, Ordering::Acquire)
            .map_err(TransportError::Shm)?;
        if head != 0 || status != 0 {
            return Err(TransportError::BadRingLayout(
                "head or status not zero at creation",
            ));
        }
        if info.monitor_period_us == Some(0) {
            return Err(TransportError::BadMonitorPeriod);
        }
        if let Some(prio) = info.priority {
            log::debug!("renderer: {id} priority {prio} requested (not applied)");
        }

        let shared = Arc::new(RingShared {
            id,
            mem: Arc::clone(&mem),
            layout,
            sync: Mutex::new(RingSyncState {
                head: 0,
                virtqueue_seqno: 0,
                stopped: false,
            }),
            cond: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel();
        let worker = RingWorker {
            ctx: Arc::clone(ctx),
            ring: Arc::clone(&shared),
            rx,
            reply: ReplyStream::default(),
            local: None,
            cursor: 0,
            buf: Vec::new(),
            idle_timeout: clamp_idle_timeout(info.idle_timeout_ns, ctx.max_ring_idle_timeout),
            precise_timers: false,
        };
        ctx.add_ring_status(
            id,
            StatusWord {
                mem: Arc::clone(&mem),
                offset: layout.status.begin,
            },
        );
        self.created = self.created.wrapping_add(1);
        let thread = std::thread::Builder::new()
            .name(format!("vgpu-r{}.{}", self.ctx.0, self.created))
            .spawn(move || worker.run())
            .map_err(|e| {
                ctx.remove_ring_status(id);
                TransportError::Spawn(e)
            })?;
        ctx.ring_event(super::context::RingEvent::Created {
            ring: id,
            fd: std::os::fd::AsFd::as_fd(res.fd()),
            status_offset: layout.status.begin,
        });
        self.rings.insert(
            id,
            RingHandle {
                shared,
                ctx: Arc::clone(ctx),
                tx,
                thread: Some(thread),
            },
        );

        if let Some(period) = info.monitor_period_us {
            if self.monitor.is_none() {
                self.monitor = Some(MonitorHandle::spawn(self.ctx).map_err(TransportError::Spawn)?);
            }
            if let Some(monitor) = &self.monitor {
                monitor.watch(
                    id,
                    StatusWord {
                        mem,
                        offset: layout.status.begin,
                    },
                    period,
                );
            }
        }
        Ok(())
    }

    pub(crate) fn destroy(&mut self, id: RingId) -> Result<(), TransportError> {
        let handle = self
            .rings
            .remove(&id)
            .ok_or(TransportError::UnknownRing(id))?;
        if let Some(monitor) = &self.monitor {
            monitor.unwatch(id);
        }
        handle
            .ctx
            .ring_event(super::context::RingEvent::Destroyed(id));
        drop(handle);
        Ok(())
    }
}

/// The idle timeout a ring runs with: the guest's `idleTimeout`, at most `max`. A
/// ring polls its tail (yields, then sleeps up to 1 ms) until the timeout, then sets
/// IDLE and sleeps until notified; an unbounded timeout would keep it polling forever.
fn clamp_idle_timeout(requested_ns: u64, max: Duration) -> Duration {
    let requested = Duration::from_nanos(requested_ns);
    if requested > max {
        log::debug!("renderer: ring idle timeout {requested:?} clamped to {max:?}");
    }
    requested.min(max)
}

/// Why a ring thread ended.
enum RingExit {
    Stopped,
    Fault(ExecError),
}

struct RingWorker {
    ctx: Arc<ContextShared>,
    ring: Arc<RingShared>,
    rx: Receiver<RingMsg>,
    reply: ReplyStream,
    local: StreamLocal,
    cursor: u32,
    buf: Vec<u8>,
    idle_timeout: Duration,
    /// Whether the thread's timer slack is the precise one (see `relax`).
    precise_timers: bool,
}

impl RingWorker {
    fn run(mut self) {
        // A panic in a handler (a bug of ours) must not leave the guest waiting: the
        // ALIVE monitor would keep the ring looking alive forever. It fails the
        // context like any other fault, and the guest sees FATAL at once.
        let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.consume()))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".to_owned());
                RingExit::Fault(ExecError::Failed(
                    format!("ring thread panicked: {what}").into(),
                ))
            });
        match exit {
            RingExit::Stopped => {}
            // A wait inside a command gave up because the owner stops the context:
            // no failure (one already failing the context logged its own cause).
            RingExit::Fault(err)
                if err.is_stop() && self.ctx.should_stop() && !self.ctx.is_fatal() =>
            {
                log::debug!("renderer: {} stopped while waiting", self.ring.id);
                self.ring.mark_stopped();
            }
            RingExit::Fault(err) => {
                // The context first, so the reason logged is this fault and not that of
                // a stream that was waiting on the ring and sees it stop.
                self.ctx
                    .set_fatal(&format!("{}: {}", self.ring.id, error_chain(&err)));
                self.ring.set_status(STATUS_FATAL);
                self.ring.mark_stopped();
            }
        }
    }

    /// Drains pending control messages; `Err` means stop.
    fn drain_control(&self) -> Result<(), ()> {
        loop {
            match self.rx.try_recv() {
                Ok(RingMsg::Notify) => {}
                Ok(RingMsg::Stop) | Err(TryRecvError::Disconnected) => return Err(()),
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    fn consume(&mut self) -> RingExit {
        let mut last_activity = Instant::now();
        let mut relax_iter = 0u32;
        loop {
            if self.ctx.is_fatal() {
                return RingExit::Fault(ExecError::ContextFatal);
            }
            if self.drain_control().is_err() {
                return RingExit::Stopped;
            }
            if last_activity.elapsed() >= self.idle_timeout {
                match self.idle() {
                    Ok(true) => {}
                    Ok(false) => return RingExit::Stopped,
                    Err(e) => return RingExit::Fault(e),
                }
                last_activity = Instant::now();
                relax_iter = 0;
            }
            let tail = match self.ring.load_tail(Ordering::Acquire) {
                Ok(t) => t,
                Err(e) => return RingExit::Fault(e.into()),
            };
            let pending = tail.wrapping_sub(self.cursor);
            if pending == 0 {
                if !self.relax(&mut relax_iter) {
                    return RingExit::Stopped;
                }
                continue;
            }
            if let Err(e) = self.dispatch(pending) {
                return RingExit::Fault(e);
            }
            last_activity = Instant::now();
            relax_iter = 0;
        }
    }

    /// Sets IDLE and sleeps until notified if there is still nothing to do. Returns
    /// `Ok(false)` when asked to stop.
    fn idle(&mut self) -> Result<bool, ExecError> {
        self.ring.set_status(STATUS_IDLE);
        let result = self.idle_wait();
        self.ring.clear_status(STATUS_IDLE);
        result
    }

    fn idle_wait(&mut self) -> Result<bool, ExecError> {
        loop {
            if self.ring.load_tail(Ordering::SeqCst)? != self.cursor {
                return Ok(true);
            }
            match self.rx.recv_timeout(self.ctx.ring_idle_poll) {
                Ok(RingMsg::Notify) => return Ok(true),
                Ok(RingMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(false),
                Err(RecvTimeoutError::Timeout) => {
                    if self.ctx.is_fatal() {
                        return Err(ExecError::ContextFatal);
                    }
                }
            }
        }
    }

    /// Back-off while the ring is empty: 16 yields, then sleeps from 10 µs doubling
    /// up to 1 ms. Returns false when asked to stop.
    ///
    /// The 16 sleeps of 10 µs cover the time in which a guest that waits for its
    /// last submission usually sends the next one (its own fence polling wakes
    /// every ~160–250 µs); they run with a 1 µs timer slack so they last 10 µs, not
    /// Linux's default 60 µs. Longer sleeps go back to the default slack, so a ring
    /// that waits out a long batch wakes no more often than before (issue 15).
    fn relax(&mut self, iter: &mut u32) -> bool {
        *iter = iter.saturating_add(1);
        if *iter < 16 {
            std::thread::yield_now();
            return true;
        }
        let shift = (31 - iter.leading_zeros()).saturating_sub(4).min(7);
        self.set_precise(shift == 0);
        let sleep = (Duration::from_micros(10) * (1u32 << shift)).min(MAX_RELAX_SLEEP);
        match self.rx.recv_timeout(sleep) {
            Ok(RingMsg::Notify) | Err(RecvTimeoutError::Timeout) => true,
            Ok(RingMsg::Stop) | Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Switches this thread's timer slack between precise and the default.
    fn set_precise(&mut self, precise: bool) {
        if self.precise_timers != precise {
            crate::sys::thread::set_precise_timers(precise);
            self.precise_timers = precise;
        }
    }

    /// Copies `pending` bytes (wrap-aware) to the linear buffer and executes them,
    /// publishing `head` after each command.
    fn dispatch(&mut self, pending: u32) -> Result<(), ExecError> {
        let buffer = self.ring.layout.buffer;
        let size = buffer.size();
        let n = u64::from(pending);
        if n > size {
            return Err(ExecError::Malformed {
                command_type: None,
                reason: "ring tail is more than a buffer ahead of head",
            });
        }
        // Both fit: n ≤ buffer size ≤ 16 MiB.
        let n_usize =
            usize::try_from(pending).map_err(|_| TransportError::BadRingLayout("ring size"))?;
        if self.buf.len() < n_usize {
            self.buf.resize(n_usize, 0);
        }
        let index = u64::from(self.cursor) & (size - 1);
        let first = n.min(size - index);
        let first_usize =
            usize::try_from(first).map_err(|_| TransportError::BadRingLayout("ring size"))?;
        let mem = &self.ring.mem;
        mem.read(buffer.begin + index, &mut self.buf[..first_usize])
            .map_err(TransportError::Shm)?;
        mem.read(buffer.begin, &mut self.buf[first_usize..n_usize])
            .map_err(TransportError::Shm)?;

        let start = self.cursor;
        let executor = Arc::clone(&self.ctx.executor);
        let ring = Arc::clone(&self.ring);
        let bytes = std::mem::take(&mut self.buf);
        let mut publish_err = None;
        let result = {
            let mut stream = StreamCtx {
                ctx: &self.ctx,
                reply: &mut self.reply,
                local: &mut self.local,
                origin: Origin::Ring { ring: &ring },
                nested: false,
            };
            run_commands(&*executor, &mut stream, &bytes[..n_usize], |end| {
                // `end` ≤ n ≤ 16 MiB, so the conversion never saturates.
                let head = start.wrapping_add(u32::try_from(end).unwrap_or(u32::MAX));
                if let Err(e) = ring.publish_head(head) {
                    publish_err = Some(e);
                }
            })
        };
        self.buf = bytes;
        result?;
        if let Some(e) = publish_err {
            return Err(e.into());
        }
        self.cursor = start.wrapping_add(pending);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesa_instance_ring() -> RingCreateInfo {
        RingCreateInfo {
            resource: ResourceId(1),
            offset: 0,
            size: 131_268,
            idle_timeout_ns: 1_000_000,
            head_offset: 0,
            tail_offset: 64,
            status_offset: 128,
            buffer_offset: 192,
            buffer_size: 131_072,
            extra_offset: 131_264,
            extra_size: 4,
            monitor_period_us: Some(3_000_000),
            ..RingCreateInfo::default()
        }
    }

    #[test]
    fn mesa_layout_is_accepted() {
        let layout = RingLayout::new(&mesa_instance_ring(), 131_268).expect("valid");
        assert_eq!(
            layout.buffer,
            Region {
                begin: 192,
                end: 131_264
            }
        );
    }

    #[test]
    fn layout_outside_resource_is_rejected() {
        assert!(matches!(
            RingLayout::new(&mesa_instance_ring(), 131_264),
            Err(TransportError::BadRingLayout(_))
        ));
    }

    #[test]
    fn overlapping_regions_are_rejected() {
        let info = RingCreateInfo {
            tail_offset: 0,
            ..mesa_instance_ring()
        };
        assert!(matches!(
            RingLayout::new(&info, 131_268),
            Err(TransportError::BadRingLayout(_))
        ));
    }

    #[test]
    fn misaligned_region_is_rejected() {
        let info = RingCreateInfo {
            status_offset: 130,
            ..mesa_instance_ring()
        };
        assert!(matches!(
            RingLayout::new(&info, 131_268),
            Err(TransportError::BadRingLayout(_))
        ));
    }

    #[test]
    fn non_power_of_two_buffer_is_rejected() {
        let info = RingCreateInfo {
            buffer_size: 131_068,
            ..mesa_instance_ring()
        };
        assert!(matches!(
            RingLayout::new(&info, 131_268),
            Err(TransportError::BadRingLayout(_))
        ));
    }

    #[test]
    fn overflowing_offsets_are_rejected() {
        let info = RingCreateInfo {
            offset: u64::MAX - 8,
            ..mesa_instance_ring()
        };
        assert!(matches!(
            RingLayout::new(&info, u64::MAX),
            Err(TransportError::BadRingLayout(_))
        ));
    }

    #[test]
    fn idle_timeout_is_clamped() {
        let max = Duration::from_millis(10);
        assert_eq!(clamp_idle_timeout(u64::MAX, max), max);
        assert_eq!(
            clamp_idle_timeout(1_000_000, max),
            Duration::from_millis(1),
            "Mesa's 1 ms is honoured"
        );
        assert_eq!(clamp_idle_timeout(0, max), Duration::ZERO);
    }

    #[test]
    fn seqnos_compare_across_wrap() {
        assert!(seqno_reached(5, 0xffff_fff0));
        assert!(!seqno_reached(0xffff_fff0, 5));
        assert!(seqno_reached(7, 7));
    }
}
