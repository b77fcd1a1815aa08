//! The vhost-user front door: thin glue between rust-vmm's `vhost-user-backend` and
//! the transport-independent [`crate::virtio_gpu::GpuHandler`].
//!
//! No protocol logic lives here: the backend negotiates features, exposes the config
//! space and the host-visible region, pops descriptor chains, hands each one to the
//! handler, and returns used entries the handler releases (at once, or when their
//! fence signals).
//!
//! Locks: two, in this order ([`VgpuBackend`] has the details). `handler` (the
//! device) comes first and may be held across slow work; `state` (the glue's chains,
//! stashed used entries, guest memory and display socket) may be taken while
//! `handler` is held, never the other way round, and is held only for bookkeeping.
//! The handler's MAP_BLOB calls SHMEM_MAP, which blocks on the frontend's reply on the
//! backend channel while `handler` is held; the frontend must answer it without
//! waiting for the vhost-user message thread (crosvm and the test harness do). The
//! display socket's locks ([`gpu_socket`]) are leaves taken under `handler`; nothing
//! there blocks on the frontend.
//!
//! [`serve`] binds the socket once and serves one frontend at a time, each with a
//! fresh [`VgpuBackend`] (handler, renderer, fences, mappings, display socket) and a
//! fresh [`VhostUserDaemon`]; when the frontend goes away (VM shutdown, VMM restart,
//! QEMU's `reconnect=`) all of it is dropped and the next frontend is accepted.
//! `ServeConfig::once` keeps the single-connection behaviour.

mod config;
pub mod gpu_socket;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    VhostUserMMap, VhostUserMMapFlags, VhostUserProtocolFeatures, VhostUserShMemConfig,
};
use vhost::vhost_user::{Backend, GpuBackend, Listener, VhostUserFrontendReqHandler};
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock, VringT};
use virtio_bindings::virtio_config::{VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{DescriptorChain, QueueT, Reader};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use self::config::ServeConfig;
use self::gpu_socket::GpuSocket;
use crate::ratelimit::RateLimiter;
use crate::virtio_gpu::protocol::{features, CommandType, EVENT_DISPLAY, SHM_ID_HOST_VISIBLE};
use crate::virtio_gpu::{
    FenceSignals, GpuHandler, RenderBackend, RequestReader, ShmMapper, Ticket, UsedToken,
};

/// Control queue index.
pub const CONTROL_QUEUE: u16 = 0;
/// Cursor queue index.
pub const CURSOR_QUEUE: u16 = 1;
const NUM_QUEUES: usize = 2;
/// Queue size offered (QEMU uses 256 with virgl).
pub const QUEUE_SIZE: usize = 1024;
/// Device event id of the fence eventfd (0..=NUM_QUEUES are reserved by the crate).
pub const FENCE_EVENT: u16 = 3;
/// Device event id of the eventfd that stops the vring worker at the end of a
/// connection ([`VgpuBackend::stop_workers`]).
pub const STOP_EVENT: u16 = 4;
/// Thread name of each connection's vhost-user message thread.
const DAEMON_NAME: &str = "vhost-user-vgpu";
/// `VHOST_USER_F_PROTOCOL_FEATURES`.
const VHOST_USER_F_PROTOCOL_FEATURES: u32 = 30;
/// Size of the virtio-gpu config space.
pub const CONFIG_SIZE: usize = 16;

/// Errors of the vhost-user front door.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VhostUserError {
    /// Creating an eventfd failed.
    #[error("creating an eventfd failed")]
    EventFd(#[source] io::Error),
    /// Binding the listening socket failed.
    #[error("binding the vhost-user socket failed")]
    Bind(#[source] vhost::vhost_user::Error),
    /// The vhost-user daemon failed (`vhost_user_backend::Error` is not a
    /// `std::error::Error`, so it is kept as text).
    #[error("vhost-user daemon failed: {0}")]
    Daemon(String),
    /// Registering the stop or fence eventfd with the vring worker failed.
    #[error("registering an eventfd with the vring worker failed")]
    Register(#[source] io::Error),
    /// The guest memory table is not set yet.
    #[error("no guest memory table yet")]
    NoMemory,
    /// Reading the queue failed.
    #[error("virtqueue access failed")]
    Queue(#[source] virtio_queue::Error),
    /// Installing the frame-dump signal handler failed.
    #[error("installing the SIGUSR1 frame-dump handler failed")]
    Signal(#[source] io::Error),
}

impl From<VhostUserError> for io::Error {
    fn from(e: VhostUserError) -> Self {
        io::Error::other(crate::error_chain(&e))
    }
}

type GuestMem = GuestMemoryAtomic<GuestMemoryMmap>;

/// Adapts a virtio-queue chain reader to the handler's reader.
struct ChainReader<'a, B: BitmapSlice>(Reader<'a, B>);

impl<B: BitmapSlice> RequestReader for ChainReader<'_, B> {
    fn available(&self) -> usize {
        self.0.available_bytes()
    }

    fn read_exact_into(&mut self, buf: &mut [u8]) -> bool {
        io::Read::read_exact(&mut self.0, buf).is_ok()
    }
}

/// SHMEM_MAP / SHMEM_UNMAP on the backend channel.
struct VhostShmMapper(Backend);

impl ShmMapper for VhostShmMapper {
    fn map(
        &self,
        shm_offset: u64,
        fd: BorrowedFd<'_>,
        fd_offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<(), String> {
        let flags = if writable {
            VhostUserMMapFlags::WRITABLE
        } else {
            VhostUserMMapFlags::empty()
        };
        let msg = VhostUserMMap {
            shmid: SHM_ID_HOST_VISIBLE,
            padding: [0; 7],
            fd_offset,
            shm_offset,
            len,
            flags: flags.bits(),
        };
        match self.0.shmem_map(&msg, &fd.as_raw_fd()) {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("frontend refused SHMEM_MAP ({code})")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn unmap(&self, shm_offset: u64, len: u64) -> Result<(), String> {
        let msg = VhostUserMMap {
            shmid: SHM_ID_HOST_VISIBLE,
            padding: [0; 7],
            fd_offset: 0,
            shm_offset,
            len,
            flags: 0,
        };
        match self.0.shmem_unmap(&msg) {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("frontend refused SHMEM_UNMAP ({code})")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A descriptor chain held while its command runs on a context thread.
type Chain = DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>;

/// The glue's state besides the handler: chains the device keeps, used entries it
/// could not return yet, and what the frontend handed over. Behind
/// [`VgpuBackend::state`], the second lock.
#[derive(Default)]
struct State {
    /// Chains of queued SUBMIT_3Ds, by ticket, with their queue index.
    deferred: HashMap<Ticket, (u16, Chain)>,
    /// SUBMIT_3D chains (queue, ctx id, chain) waiting for their context to have
    /// room, in arrival order.
    held: VecDeque<(u16, u32, Chain)>,
    /// Used entries that became ready while the rings were stopped.
    stash: Vec<UsedToken>,
    /// The guest memory table (SET_MEM_TABLE); cloned for each pass over a queue.
    mem: Option<GuestMem>,
    /// The frontend's display socket (GPU_SET_SOCKET).
    gpu_socket: Option<Arc<GpuSocket>>,
}

/// The vhost-user virtio-gpu backend.
///
/// # Locks
///
/// Threads: the vring worker (one; every queue and fence event), the vhost-user
/// message thread (reset, memory table, backend channel, display socket, config),
/// the frame dumper (SIGUSR1) and tests (through [`VgpuBackend::handler`]).
///
/// Two locks, always taken in this order, never the reverse:
///
/// 1. `handler`: the device ([`GpuHandler`]). Held for a whole command, including the
///    response write and the display socket's [`GpuSocket::after_command`], so a
///    reset cannot slip between a command and its bookkeeping; held by the frame
///    dumper while it writes PNGs. It may be held across slow work, and across
///    SHMEM_MAP / SHMEM_UNMAP, which wait for the frontend's reply. The message
///    thread takes it too (reset, installing the mapper), which is why the frontend
///    must answer the backend channel without waiting for the message thread (see
///    the module doc).
/// 2. `state`: `State` (deferred and held chains, stashed used entries, guest
///    memory, display socket). May be taken while `handler` is held (a queued
///    SUBMIT_3D's chain is recorded under both); never held while taking `handler`,
///    a [`GpuSocket`] lock or anything that blocks: each use is a short critical
///    section that clones, inserts, removes or swaps.
///
/// The atomics (`stopped`, `last_avail`, `last_used`, `event_idx`, `events_read`)
/// are not locks and are read and written under either lock or none.
pub struct VgpuBackend {
    handler: Mutex<GpuHandler>,
    state: Mutex<State>,
    /// The frontend stopped the control queue (GET_VRING_BASE) and has not restarted
    /// it yet; see [`VgpuBackend::after_restart`].
    stopped: AtomicBool,
    /// Where the control queue stood when the device last touched it while it ran
    /// (next available index, next used index); see [`VgpuBackend::after_restart`].
    last_avail: AtomicU16,
    last_used: AtomicU16,
    event_idx: AtomicBool,
    events_read: AtomicU32,
    fence_event: EventFd,
    stop_event: EventFd,
    offer_virgl: bool,
    shm_size: u64,
    num_scanouts: u32,
    num_capsets: u32,
    warn: RateLimiter,
    /// For events on a queue that is stopped or disabled: one line a minute at most.
    not_ready: RateLimiter,
}

impl std::fmt::Debug for VgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VgpuBackend")
            .field("num_scanouts", &self.num_scanouts)
            .field("num_capsets", &self.num_capsets)
            .finish_non_exhaustive()
    }
}

impl VgpuBackend {
    /// A backend serving `render` with the device settings of `config`.
    pub fn new(
        config: &ServeConfig,
        render: impl FnOnce(FenceSignals) -> Box<dyn RenderBackend>,
    ) -> Result<Arc<Self>, VhostUserError> {
        let fence_event = EventFd::new(EFD_NONBLOCK).map_err(VhostUserError::EventFd)?;
        let notifier = fence_event.try_clone().map_err(VhostUserError::EventFd)?;
        let signals = FenceSignals::new(Arc::new(move || {
            // A full counter still wakes the worker; nothing to do on error.
            let _ = notifier.write(1);
        }));
        let handler = GpuHandler::new(config.handler.clone(), render(signals.clone()), signals);
        let num_scanouts = u32::try_from(handler.num_scanouts()).unwrap_or(1);
        let num_capsets = u32::try_from(handler.num_capsets()).unwrap_or(0);
        Ok(Arc::new(Self {
            handler: Mutex::new(handler),
            state: Mutex::new(State::default()),
            stopped: AtomicBool::new(false),
            last_avail: AtomicU16::new(0),
            last_used: AtomicU16::new(0),
            event_idx: AtomicBool::new(false),
            events_read: AtomicU32::new(0),
            fence_event,
            stop_event: EventFd::new(EFD_NONBLOCK).map_err(VhostUserError::EventFd)?,
            offer_virgl: config.offer_virgl,
            shm_size: config.handler.shm_size,
            num_scanouts,
            num_capsets,
            warn: RateLimiter::new("vgpu::vhost_user", Duration::from_secs(5), 10),
            not_ready: RateLimiter::new("vgpu::vhost_user", Duration::from_secs(60), 1),
        }))
    }

    /// The handler (tests read the display through it). The first lock: see
    /// [`VgpuBackend`].
    pub fn handler(&self) -> MutexGuard<'_, GpuHandler> {
        self.handler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The glue's state: the second lock, never held while taking the first (see
    /// [`VgpuBackend`]).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the stop and fence eventfds with the daemon's worker; call once
    /// after creating the daemon.
    pub fn register(
        self: &Arc<Self>,
        daemon: &VhostUserDaemon<Arc<Self>>,
    ) -> Result<(), VhostUserError> {
        for h in daemon.get_epoll_handlers() {
            for (fd, event) in [
                (self.stop_event.as_raw_fd(), STOP_EVENT),
                (self.fence_event.as_raw_fd(), FENCE_EVENT),
            ] {
                h.register_listener(fd, EventSet::IN, u64::from(event))
                    .map_err(VhostUserError::Register)?;
            }
        }
        Ok(())
    }

    /// Makes the daemon's vring worker threads return, so that dropping the daemon
    /// (which joins them) does not block; call once the connection has ended.
    ///
    /// vhost-user-backend 0.24 stops workers through `VhostUserBackend::exit_event`,
    /// but it registers that event's consumer fd with `into_raw_fd` and never closes
    /// it: one leaked fd per connection. This eventfd is owned here instead; the
    /// worker returns when [`VhostUserBackend::handle_event`] fails for it. It stays
    /// readable (never read), so every worker sees it.
    pub fn stop_workers(&self) {
        // A full counter is still readable; nothing to do on error.
        let _ = self.stop_event.write(1);
    }

    /// The frontend's display socket, once QEMU sent GPU_SET_SOCKET.
    pub fn gpu_socket(&self) -> Option<Arc<GpuSocket>> {
        self.state().gpu_socket.clone()
    }

    fn memory(&self) -> Result<GuestMem, VhostUserError> {
        self.state().mem.clone().ok_or(VhostUserError::NoMemory)
    }

    fn return_used(&self, vrings: &[VringRwLock], tokens: Vec<UsedToken>) -> io::Result<()> {
        if self.stopped.load(Ordering::Acquire) {
            // The frontend stopped the rings (GET_VRING_BASE): nothing may be written
            // to them. Kept until they restart; dropped if they restart from scratch.
            self.state().stash.extend(tokens);
            return Ok(());
        }
        let mut touched = [false; NUM_QUEUES];
        for t in tokens {
            log::trace!(
                target: "vgpu::vhost_user::chains",
                "queue {}: used head {} len {}",
                t.queue,
                t.head,
                t.len
            );
            let Some(vring) = vrings.get(usize::from(t.queue)) else {
                continue;
            };
            if let Err(e) = vring.add_used(t.head, t.len) {
                self.warn
                    .warn(format_args!("vhost-user: add_used({}) failed: {e}", t.head));
            }
            if let Some(flag) = touched.get_mut(usize::from(t.queue)) {
                *flag = true;
            }
        }
        if touched[usize::from(CONTROL_QUEUE)] {
            if let Some(control) = vrings.get(usize::from(CONTROL_QUEUE)) {
                self.note_position(control);
            }
        }
        for (q, (vring, _)) in (0u16..)
            .zip(vrings.iter().zip(touched))
            .filter(|(_, (_, t))| *t)
        {
            if vring.needs_notification().unwrap_or(true) {
                log::trace!(target: "vgpu::vhost_user::chains", "queue {q}: notify");
                vring.signal_used_queue()?;
            }
        }
        Ok(())
    }

    /// Called before the first queue event (control or cursor) after the frontend
    /// stopped the rings. QEMU stops them (GET_VRING_BASE) both to pause the VM and to
    /// reset the device when the guest reboots, and tells the backend nothing else. A
    /// pause restarts the control ring where it stopped: the same next available index
    /// (SET_VRING_BASE with what GET_VRING_BASE returned) and the same used index in
    /// guest memory (which SET_VRING_ADDR reloads). A reset restarts it as a new
    /// driver lays it out: base 0 and a zeroed used index, and the guest driver then
    /// expects a fresh device (its first resource is id 1 again). So: both the same →
    /// return what was stashed and go on; either different → the guest reset the
    /// device, and nothing from before the stop may reach the new rings.
    ///
    /// Both queue events come here first, so no chain of a restarted ring is popped
    /// before this decision (the cursor ring's first kick after a reset would
    /// otherwise be answered into the stash and then dropped with it). Returns
    /// whether the event's queue may be processed now: not while the control ring is
    /// still stopped. Once decided, the cursor ring is drained too, for a kick that
    /// came (and was consumed) while the decision waited.
    fn after_restart(&self, vrings: &[VringRwLock]) -> io::Result<bool> {
        if !self.stopped.load(Ordering::Acquire) {
            return Ok(true);
        }
        let Some(vring) = vrings.get(usize::from(CONTROL_QUEUE)) else {
            return Ok(true);
        };
        if !queue_live(vring) {
            // The control ring is still stopped (only the cursor ring came back so
            // far): decide when it restarts.
            return Ok(false);
        }
        self.stopped.store(false, Ordering::Release);
        self.decide_restart(vrings, vring)?;
        self.process_queue(vrings, CURSOR_QUEUE)?;
        Ok(true)
    }

    /// Pause or reset: see [`Self::after_restart`].
    fn decide_restart(&self, vrings: &[VringRwLock], vring: &VringRwLock) -> io::Result<()> {
        let now = (vring.queue_next_avail(), next_used(vring));
        let before = (
            self.last_avail.load(Ordering::Acquire),
            self.last_used.load(Ordering::Acquire),
        );
        let stashed = std::mem::take(&mut self.state().stash);
        if now == before {
            return self.return_used(vrings, stashed);
        }
        log::info!(
            "vhost-user: control queue restarted at avail {}, used {} (stopped at avail {}, \
             used {}): the guest reset the device; dropping its contexts and resources",
            now.0,
            now.1,
            before.0,
            before.1
        );
        self.reset_state();
        self.note_position(vring);
        Ok(())
    }

    /// Records where the control ring stands, for [`Self::after_restart`]. Only while
    /// it runs: once stopped, the frontend owns the indices.
    fn note_position(&self, vring: &VringRwLock) {
        if self.stopped.load(Ordering::Acquire) || !queue_live(vring) {
            return;
        }
        self.last_avail
            .store(vring.queue_next_avail(), Ordering::Release);
        self.last_used.store(next_used(vring), Ordering::Release);
    }

    /// Drops every resource, context, mapping, parked response and held chain.
    fn reset_state(&self) {
        // Parked tokens and held chains belong to the old rings; they are dropped
        // with them.
        let _ = self.handler().reset();
        let socket = {
            let mut state = self.state();
            state.deferred.clear();
            state.held.clear();
            state.stash.clear();
            state.gpu_socket.clone()
        };
        if let Some(socket) = socket {
            socket.reset();
        }
        self.events_read.store(0, Ordering::Release);
    }

    /// Writes `bytes` into the chain's device-writable part; returns the length used.
    fn write_response(&self, chain: &Chain, bytes: &[u8]) -> u32 {
        let head = chain.head_index();
        let mut writer = match chain.clone().writer(chain.memory()) {
            Ok(w) => w,
            Err(e) => {
                self.warn
                    .warn(format_args!("vhost-user: malformed chain {head}: {e}"));
                return 0;
            }
        };
        let fit = bytes.len().min(writer.available_bytes());
        if fit < bytes.len() {
            self.warn.warn(format_args!(
                "vhost-user: response of {} bytes truncated to {fit} (chain {head})",
                bytes.len()
            ));
        }
        match io::Write::write_all(&mut writer, &bytes[..fit]) {
            Ok(()) => u32::try_from(fit).unwrap_or(0),
            Err(e) => {
                self.warn
                    .warn(format_args!("vhost-user: writing response failed: {e}"));
                0
            }
        }
    }

    /// Pops every available chain of `queue` and processes it, except SUBMIT_3D
    /// requests of a context that has too much queued already (or has requests held
    /// already): those wait in `held`, in order, until [`Self::finish_queued`] finds
    /// room. So one context whose stream blocks never stops the control queue: its
    /// CTX_DESTROY, 2D work and other contexts still get through.
    ///
    /// Chains are taken in as soon as they are available, before the ones already
    /// taken are run, and read-only queries of the device's configuration
    /// (GET_CAPSET_INFO, GET_CAPSET, GET_DISPLAY_INFO, GET_EDID, without a fence) are
    /// answered at once, ahead of queued 2D work: their answer depends on nothing a
    /// queued command changes, and a guest driver waits for them with a deadline
    /// (Linux: 5 s for a capset, then `EBUSY`) while a console can queue seconds of
    /// flushes on a loaded host.
    fn drain(&self, vrings: &[VringRwLock], queue: u16) -> io::Result<()> {
        let mem = self.memory()?;
        let Some(vring) = vrings.get(usize::from(queue)) else {
            return Ok(());
        };
        let display_socket = self.gpu_socket();
        let run = |chain: Chain, header: Header| {
            self.run_chain(vrings, queue, chain, header, display_socket.as_deref())
        };
        let mut taken: VecDeque<(Chain, Header)> = VecDeque::new();
        loop {
            // Re-checked per chain: the frontend may stop the ring meanwhile, and a
            // stopped ring is the frontend's, not ours to pop.
            while queue_live(vring) {
                let next = vring
                    .get_mut()
                    .get_queue_mut()
                    .pop_descriptor_chain(mem.memory());
                let Some(chain) = next else { break };
                let header = peek_header(chain.clone().reader(chain.memory()).ok());
                log::trace!(
                    target: "vgpu::vhost_user::chains",
                    "queue {queue}: head {} command {:#x} ctx {}",
                    chain.head_index(),
                    header.command,
                    header.ctx
                );
                if header.is_config_query() {
                    run(chain, header)?;
                } else {
                    taken.push_back((chain, header));
                }
            }
            let Some((chain, header)) = taken.pop_front() else {
                break;
            };
            if queue == CONTROL_QUEUE && header.command == CommandType::Submit3d as u32 {
                // `handler` is released before `state` is taken.
                let busy = !self.handler().accepting(header.ctx);
                let mut state = self.state();
                if busy || state.held.iter().any(|(_, c, _)| *c == header.ctx) {
                    state.held.push_back((queue, header.ctx, chain));
                    continue;
                }
            }
            run(chain, header)?;
        }
        if queue == CONTROL_QUEUE {
            self.note_position(vring);
        }
        Ok(())
    }

    /// Runs one chain and returns what it released at once (not at the end of the
    /// pass); capset queries log their answer time at debug.
    fn run_chain(
        &self,
        vrings: &[VringRwLock],
        queue: u16,
        chain: Chain,
        header: Header,
        display_socket: Option<&GpuSocket>,
    ) -> io::Result<()> {
        let started = Instant::now();
        let head = chain.head_index();
        let mut released = Vec::new();
        self.handle_chain(queue, chain, header.command, display_socket, &mut released);
        if !released.is_empty() {
            // Notes the control ring's position too.
            self.return_used(vrings, released)?;
        }
        if is_capset_query(header.command) {
            log::debug!(
                target: "vgpu::virtio_gpu",
                "virtio-gpu: command {:#x} (head {head}) answered in {} us",
                header.command,
                started.elapsed().as_micros()
            );
        }
        Ok(())
    }

    /// Processes one chain: runs the command, writes its response (or keeps the chain
    /// until its queued command finishes) and collects what may be returned.
    fn handle_chain(
        &self,
        queue: u16,
        chain: Chain,
        command: u32,
        display_socket: Option<&GpuSocket>,
        released: &mut Vec<UsedToken>,
    ) {
        let head = chain.head_index();
        let guest = chain.memory();
        let reader = match chain.clone().reader(guest) {
            Ok(r) => r,
            Err(e) => {
                self.warn
                    .warn(format_args!("vhost-user: malformed chain {head}: {e}"));
                released.push(UsedToken {
                    queue,
                    head,
                    len: 0,
                });
                return;
            }
        };
        let mut handler = self.handler();
        let reply = handler.process(guest, &mut ChainReader(reader));
        if let Some(socket) = display_socket {
            socket.after_command(command, handler.display());
        }
        released.extend(handler.take_ready());
        if let Some(ticket) = reply.pending {
            // Under the handler lock, so a reset cannot slip in between (the lock
            // order's one nesting: `handler`, then `state`).
            self.state().deferred.insert(ticket, (queue, chain));
            return;
        }
        let len = self.write_response(&chain, &reply.bytes);
        released.extend(handler.complete(reply.fence, UsedToken { queue, head, len }));
    }

    /// Answers queued commands that finished, returns descriptors whose fences
    /// signalled, and runs held SUBMIT_3D requests whose context has room again.
    fn finish_queued(&self, vrings: &[VringRwLock]) -> io::Result<()> {
        let polled = self.handler().poll();
        let mut released = polled.released;
        for f in polled.finished {
            let Some((queue, chain)) = self.state().deferred.remove(&f.ticket) else {
                continue;
            };
            let len = self.write_response(&chain, &f.bytes);
            let token = UsedToken {
                queue,
                head: chain.head_index(),
                len,
            };
            released.extend(self.handler().complete(f.fence, token));
        }
        let waiting = std::mem::take(&mut self.state().held);
        if !waiting.is_empty() {
            let display_socket = self.gpu_socket();
            let mut blocked = std::collections::HashSet::new();
            let mut keep = VecDeque::new();
            for (queue, ctx, chain) in waiting {
                if blocked.contains(&ctx) || !self.handler().accepting(ctx) {
                    blocked.insert(ctx);
                    keep.push_back((queue, ctx, chain));
                    continue;
                }
                let command = CommandType::Submit3d as u32;
                self.handle_chain(
                    queue,
                    chain,
                    command,
                    display_socket.as_deref(),
                    &mut released,
                );
            }
            // Nothing else adds to `held` meanwhile (only this thread drains).
            let mut state = self.state();
            keep.append(&mut state.held);
            state.held = keep;
        }
        self.return_used(vrings, released)
    }

    fn process_queue(&self, vrings: &[VringRwLock], queue: u16) -> io::Result<()> {
        let Some(vring) = vrings.get(usize::from(queue)) else {
            return Ok(());
        };
        if !self.event_idx.load(Ordering::Acquire) {
            if self.live_or_log(vring, queue) {
                self.drain(vrings, queue)?;
            }
            return Ok(());
        }
        // EVENT_IDX: drain with notifications off, re-enable, and go again if the
        // guest added work meanwhile; a single pass makes the guest stop kicking.
        // A ring the frontend stops meanwhile ends the loop: `enable_notification`
        // compares the guest's avail index with ours and would report "more" for
        // ever on a stopped ring that nothing may pop (a busy loop that also kept
        // this, the only vring worker, from everything else).
        loop {
            if !self.live_or_log(vring, queue) {
                return Ok(());
            }
            vring
                .disable_notification()
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.drain(vrings, queue)?;
            if !queue_live(vring) {
                return Ok(());
            }
            if !vring
                .enable_notification()
                .map_err(|e| io::Error::other(e.to_string()))?
            {
                return Ok(());
            }
        }
    }

    /// Whether `vring` runs (started and enabled); if not, one line a minute says so.
    fn live_or_log(&self, vring: &VringRwLock, queue: u16) -> bool {
        if queue_live(vring) {
            return true;
        }
        self.not_ready.info(format_args!(
            "vhost-user: queue {queue} is stopped or disabled; its requests wait for the \
             frontend to restart it"
        ));
        false
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut out = [0u8; CONFIG_SIZE];
        out[0..4].copy_from_slice(&self.events_read.load(Ordering::Acquire).to_le_bytes());
        out[8..12].copy_from_slice(&self.num_scanouts.to_le_bytes());
        out[12..16].copy_from_slice(&self.num_capsets.to_le_bytes());
        out
    }
}

impl VhostUserBackend for VgpuBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        let gpu = (1u64 << features::EDID)
            | (1 << features::RESOURCE_UUID)
            | (1 << features::RESOURCE_BLOB)
            | (1 << features::CONTEXT_INIT)
            | if self.offer_virgl {
                1 << features::VIRGL
            } else {
                0
            };
        // Transport bits QEMU offers whatever we say; set_features rejects any bit
        // missing here, so they must be listed (vhost-user-gpu.md §4).
        gpu | (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << VIRTIO_F_RING_RESET)
            | (1 << VHOST_USER_F_PROTOCOL_FEATURES)
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut f = VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD;
        if self.shm_size > 0 {
            f |= VhostUserProtocolFeatures::SHMEM;
        }
        f
    }

    fn reset_device(&self) {
        self.reset_state();
        self.stopped.store(false, Ordering::Release);
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        if queue_index == u32::from(CONTROL_QUEUE) {
            self.stopped.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = self.config_bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
        cfg.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // Only events_clear (offset 4) is writable.
        if offset == 4 && buf.len() == 4 {
            let clear = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            self.events_read.fetch_and(!clear, Ordering::AcqRel);
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "only events_clear is writable",
        ))
    }

    fn update_memory(&self, mem: GuestMem) -> io::Result<()> {
        self.state().mem = Some(mem);
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        self.handler().set_mapper(Arc::new(VhostShmMapper(backend)));
    }

    fn set_gpu_socket(&self, gpu_backend: GpuBackend) -> io::Result<()> {
        // QEMU sends this at DRIVER_OK (the default fails the device), before the
        // vrings start. The headless display keeps running; the socket mirrors it.
        let num_scanouts = usize::try_from(self.num_scanouts).unwrap_or(1);
        let socket = Arc::new(GpuSocket::start(gpu_backend, num_scanouts)?);
        log::info!("vhost-user: GPU socket received; forwarding the display to it");
        // Dropping a previous socket stops its sender (after the lock is released).
        let previous = self.state().gpu_socket.replace(socket);
        drop(previous);
        Ok(())
    }

    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        if self.shm_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no host-visible region",
            ));
        }
        Ok(VhostUserShMemConfig::new(1, &[0, self.shm_size]))
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!("unexpected event set {evset:?}")));
        }
        log::trace!(target: "vgpu::vhost_user::chains", "event {device_event}");
        let result = match device_event {
            CONTROL_QUEUE | CURSOR_QUEUE => match self.after_restart(vrings) {
                Ok(true) => self.process_queue(vrings, device_event),
                other => other.map(|_| ()),
            },
            FENCE_EVENT => {
                let _ = self.fence_event.read();
                self.finish_queued(vrings)
            }
            // The error ends the worker's event loop; the crate discards it on join.
            STOP_EVENT => return Err(io::Error::other("connection closed; vring worker stops")),
            other => Err(io::Error::other(format!("unknown device event {other}"))),
        };
        // Any other error would end the only vring worker and leave the device dead
        // while its contexts run on: log it and keep serving.
        if let Err(e) = result {
            self.warn
                .warn(format_args!("vhost-user: event {device_event}: {e}"));
        }
        Ok(())
    }
}

/// Whether the frontend has the ring running: started (SET_VRING_KICK after its
/// address) and enabled (SET_VRING_ENABLE 1), and not stopped by GET_VRING_BASE.
fn queue_live(vring: &VringRwLock) -> bool {
    let state = vring.get_ref();
    state.get_queue().ready() && state.is_enabled()
}

/// The ring's next used index (the device's side of the used ring).
fn next_used(vring: &VringRwLock) -> u16 {
    vring.get_ref().get_queue().next_used()
}

/// GET_CAPSET_INFO or GET_CAPSET: what a guest driver waits for with a deadline
/// (Linux: 5 s, then `EBUSY`), so their answer time is logged at debug.
fn is_capset_query(command: u32) -> bool {
    command == CommandType::GetCapsetInfo as u32 || command == CommandType::GetCapset as u32
}

/// What the device needs of a chain's header before running it.
#[derive(Clone, Copy, Debug, Default)]
struct Header {
    command: u32,
    flags: u32,
    ctx: u32,
}

impl Header {
    /// A fence-less query of the device's configuration, answerable ahead of queued
    /// work (see [`VgpuBackend::drain`]).
    fn is_config_query(&self) -> bool {
        let query = is_capset_query(self.command)
            || self.command == CommandType::GetDisplayInfo as u32
            || self.command == CommandType::GetEdid as u32;
        query && self.flags & crate::virtio_gpu::protocol::FLAG_FENCE == 0
    }
}

/// The request type, flags and context id of a chain's header (zeros if it is
/// shorter).
fn peek_header<B: BitmapSlice>(reader: Option<Reader<'_, B>>) -> Header {
    let mut hdr = [0u8; 24];
    let Some(mut r) = reader else {
        return Header::default();
    };
    if io::Read::read_exact(&mut r, &mut hdr).is_err() {
        return Header::default();
    }
    let word = |at: usize| u32::from_le_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]]);
    Header {
        command: word(0),
        flags: word(4),
        ctx: word(16),
    }
}

/// Signals the guest that the display configuration changed (config interrupt is the
/// frontend's job; this only sets `events_read`).
pub fn raise_display_event(backend: &VgpuBackend) {
    backend
        .events_read
        .fetch_or(EVENT_DISPLAY, Ordering::AcqRel);
}

/// The device of the connection being served, if any. The serve loop replaces it
/// per connection; the frame dumper reads it. Its lock is a leaf, held only to clone
/// or replace the `Arc`.
#[derive(Clone, Debug, Default)]
struct CurrentDevice(Arc<Mutex<Option<Arc<VgpuBackend>>>>);

impl CurrentDevice {
    fn get(&self) -> Option<Arc<VgpuBackend>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, backend: Option<Arc<VgpuBackend>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = backend;
    }
}

/// Starts the thread that writes every scanout's last frame of the connected device
/// to `dir/scanout-<n>.png` each time the daemon receives `SIGUSR1` (the headless
/// display's "show me what the guest shows"). One thread for the whole process: it
/// follows `current` from connection to connection.
fn spawn_frame_dumper(current: CurrentDevice, dir: PathBuf) -> Result<(), VhostUserError> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])
        .map_err(VhostUserError::Signal)?;
    std::thread::Builder::new()
        .name("vgpu-frame-dump".to_owned())
        .spawn(move || {
            for _ in signals.forever() {
                let Some(backend) = current.get() else {
                    log::info!("frame dump: no frontend connected");
                    continue;
                };
                let handler = backend.handler();
                let display = handler.display();
                for n in 0..u32::try_from(display.len()).unwrap_or(0) {
                    let path = dir.join(format!("scanout-{n}.png"));
                    match display.write_png(crate::virtio_gpu::display::ScanoutId(n), &path) {
                        Ok(()) => log::info!("frame dump: wrote {}", path.display()),
                        Err(e) => log::info!("frame dump: scanout {n}: {}", crate::error_chain(&e)),
                    }
                }
            }
        })
        .map_err(VhostUserError::Signal)?;
    Ok(())
}

/// How one connection ended.
#[derive(Debug)]
enum ConnectionEnd {
    /// The frontend went away (closed the socket, or stopped mid-message).
    Disconnected,
    /// The connection failed otherwise (a protocol error, a panic in the message
    /// thread).
    Failed(VhostUserError),
}

/// Stops the vring workers when dropped, before the daemon that joins them.
struct StopWorkers<'a>(&'a VgpuBackend);

impl Drop for StopWorkers<'_> {
    fn drop(&mut self) {
        self.0.stop_workers();
    }
}

/// Serves vhost-user frontends on `config.socket`, one at a time, each on a fresh
/// device built with `render`: every context, resource, parked fence, mapping and
/// display socket of a connection is dropped when its frontend disconnects, and the
/// next frontend connecting to the same path gets a new device.
///
/// Returns after the first connection if `config.once` (an error if it failed other
/// than by a disconnect); otherwise only on a fatal error: binding the socket,
/// accepting, or setting up a device.
pub fn serve(
    config: &ServeConfig,
    render: impl Fn(FenceSignals) -> Box<dyn RenderBackend>,
) -> Result<(), VhostUserError> {
    let current = CurrentDevice::default();
    // Before binding: once the socket exists, SIGUSR1 is safe to send.
    if let Some(dir) = &config.frame_dir {
        spawn_frame_dumper(current.clone(), dir.clone())?;
    }
    let mut listener = Listener::new(&config.socket, true).map_err(VhostUserError::Bind)?;
    log::info!(
        "vhost-user: VM {}: serving on {}",
        config.vm,
        config.socket.display()
    );
    for n in 1u64.. {
        match serve_connection(config, &render, &mut listener, &current, n)? {
            ConnectionEnd::Disconnected => {
                log::info!(
                    "vhost-user: VM {}: frontend {n} disconnected; its device state is dropped",
                    config.vm
                );
            }
            ConnectionEnd::Failed(e) if config.once => return Err(e),
            ConnectionEnd::Failed(e) => {
                log::warn!(
                    "vhost-user: VM {}: connection {n} failed, its device state is dropped: {}",
                    config.vm,
                    crate::error_chain(&e)
                );
            }
        }
        if config.once {
            break;
        }
    }
    Ok(())
}

/// Accepts one frontend on a fresh device and serves it until it goes away.
fn serve_connection(
    config: &ServeConfig,
    render: &impl Fn(FenceSignals) -> Box<dyn RenderBackend>,
    listener: &mut Listener,
    current: &CurrentDevice,
    n: u64,
) -> Result<ConnectionEnd, VhostUserError> {
    let backend = VgpuBackend::new(config, render)?;
    let mut daemon = VhostUserDaemon::new(
        DAEMON_NAME.to_owned(),
        Arc::clone(&backend),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(|e| VhostUserError::Daemon(e.to_string()))?;
    if let Err(e) = backend.register(&daemon) {
        // Without its stop listener the worker cannot be stopped, and dropping the
        // daemon would join it forever; leak it instead (the error ends `serve`).
        std::mem::forget(daemon);
        return Err(e);
    }
    // Dropped before `daemon`: the workers are told to stop before the join.
    let _stop = StopWorkers(&backend);
    daemon
        .start(listener)
        .map_err(|e| VhostUserError::Daemon(e.to_string()))?;
    current.set(Some(Arc::clone(&backend)));
    log::info!("vhost-user: VM {}: frontend {n} connected", config.vm);
    let result = daemon.wait();
    current.set(None);
    Ok(match result {
        // `wait` already counts a broken socket as a clean end.
        Ok(())
        | Err(vhost_user_backend::Error::HandleRequest(
            vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
        )) => ConnectionEnd::Disconnected,
        Err(e) => ConnectionEnd::Failed(VhostUserError::Daemon(e.to_string())),
    })
}
