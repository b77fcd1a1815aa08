//! vhost-user (virtio-gpu) contexts in worker processes: [`ProcessBackend`] is the
//! [`RenderBackend`] of a VM whose contexts each run in a worker of their own. The
//! boundary is the render seam itself — create/destroy a context, submit a stream,
//! create/destroy/detach a blob, fences — carried by the context-operations socket
//! ([`super::ops`]); inside the worker the same [`crate::virtio_gpu::CoreBackend`]
//! runs the context as the daemon would (`child.rs`). The worker is supervised as a
//! vtest worker is (`supervisor::supervise`: ring status words, pidfd, GPU-hang
//! deadline, the VM's account and QoS gate).
//!
//! What the daemon keeps per context: the socket, a reader thread, and what the
//! context still owes the front door (queued submissions, pending fences). When
//! the worker dies, or the context is destroyed, everything owed is reported at once
//! (submissions as failed, fences signalled), so the guest's control queue never
//! waits on a dead process.
//!
//! A blob one context created and another attaches (CTX_ATTACH_RESOURCE: shared
//! blobs, PRIME import) is sent to the other context's worker as its memfd
//! (`ATTACH`); that worker imports it like a resource of its own.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::ops::{self, Event, Request};
use super::supervisor::{self, GateSpec, Pool, Workers};
use super::{WorkerError, WorkerSettings};
use crate::ids::{BlobId, CapsetId, ContextId, ResourceId};
use crate::ratelimit::RateLimiter;
use crate::renderer::venus::VmAccount;
use crate::renderer::ContextError;
use crate::sys::SharedMemory;
use crate::virtio_gpu::{
    BlobMemory, Capset, FenceId, FenceSignals, FenceStatus, RenderBackend, RenderError,
    SubmitStatus, Ticket, Timeline,
};

/// How long a worker may take to create its context or a blob.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a dropped backend waits for its workers to end by themselves before it
/// kills them.
const DROP_LIMIT: Duration = Duration::from_secs(2);

/// What every context of one VM's worker processes shares (one per VM, for all of
/// its frontends).
pub struct GpuWorkers {
    settings: WorkerSettings,
    /// The worker settings as TOML (`worker::wire`).
    config: String,
    vm: String,
    qos: Option<(crate::qos::QosHandle, vgpu_scheduler::VmId)>,
    account: Arc<VmAccount>,
    workers: Workers,
    pool: OnceLock<Pool>,
    warn: RateLimiter,
    next: AtomicU64,
}

impl std::fmt::Debug for GpuWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuWorkers")
            .field("vm", &self.vm)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl GpuWorkers {
    /// The workers of VM `vm`: `config` is what each worker serves with (its
    /// `worker` settings start them), `account` the VM's account they charge, `qos`
    /// the arbiter and the VM's id there, if scheduled.
    pub fn new(
        config: &crate::vtest::VtestConfig,
        account: Arc<VmAccount>,
        qos: Option<(crate::qos::QosHandle, vgpu_scheduler::VmId)>,
    ) -> Result<Arc<Self>, WorkerError> {
        let text = super::wire::WorkerConfigWire::from_config(config).to_text()?;
        let vm = config
            .vm
            .as_ref()
            .map_or_else(|| "vm".to_owned(), ToString::to_string);
        Ok(Arc::new(Self {
            pool: OnceLock::new(),
            settings: config.worker.clone(),
            config: text,
            vm,
            qos,
            account,
            workers: Workers::default(),
            warn: RateLimiter::new("vgpu::virtio_gpu", Duration::from_secs(5), 20),
            next: AtomicU64::new(1),
        }))
    }

    /// FATAL on every ring of every context; returns how many contexts.
    pub fn set_rings_fatal(&self) -> usize {
        self.workers.set_rings_fatal()
    }

    /// Daemon shutdown: FATAL on every ring of every context, then kills the
    /// workers and the idle pool; returns how many workers were running.
    pub fn shutdown(&self) -> usize {
        self.workers.set_rings_fatal();
        if let Some(pool) = self.pool.get() {
            pool.shutdown();
        }
        self.workers.kill_all()
    }

    /// The idle-worker pool, started with the first context (a VM that never
    /// creates a 3D context starts no worker).
    fn pool(&self) -> &Pool {
        self.pool
            .get_or_init(|| Pool::start(self.settings.pool, &self.settings))
    }
}

/// What a context still owes the front door.
#[derive(Debug, Default)]
struct Owed {
    tickets: HashSet<Ticket>,
    fences: Vec<(Timeline, FenceId)>,
    /// The context is gone (destroyed, or its worker ended): nothing more is taken,
    /// nothing more is reported.
    closed: bool,
}

impl Owed {
    /// Closes and reports everything owed (submissions failed, fences signalled).
    fn settle(owed: &Mutex<Self>, ctx: ContextId, signals: &FenceSignals) {
        let (tickets, fences) = {
            let mut o = owed.lock().unwrap_or_else(PoisonError::into_inner);
            if o.closed {
                return;
            }
            o.closed = true;
            (
                std::mem::take(&mut o.tickets),
                std::mem::take(&mut o.fences),
            )
        };
        for t in tickets {
            signals.submitted(t, Err(RenderError::Core(ContextError::Fatal(ctx))));
        }
        for (timeline, fence) in fences {
            signals.signal(timeline, fence);
        }
    }
}

/// One context in its worker.
struct RemoteContext {
    /// The worker's key in [`GpuWorkers::workers`].
    conn: u64,
    /// Its supervisor and reader threads; both end once the worker has ended.
    threads: Vec<std::thread::JoinHandle<()>>,
    ops: Arc<OwnedFd>,
    owed: Arc<Mutex<Owed>>,
    /// `CREATED` and `BLOB_*` answers, in order.
    replies: Receiver<Event>,
}

impl RemoteContext {
    fn send(&self, req: &Request) -> Result<(), RenderError> {
        ops::send_request(&*self.ops, req)
            .map_err(|e| RenderError::Worker(crate::error_chain(&e).to_string()))
    }

    fn reply(&self) -> Result<Event, RenderError> {
        match self.replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(ev) => Ok(ev),
            Err(RecvTimeoutError::Timeout) => Err(RenderError::Worker(format!(
                "no answer within {REPLY_TIMEOUT:?}"
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                Err(RenderError::Worker("the worker has ended".into()))
            }
        }
    }

    fn closed(&self) -> bool {
        self.owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed
    }

    /// Ends the context: everything owed is reported now, and the worker sees its
    /// socket close (it tears the context down and exits).
    fn close(&self, ctx: ContextId, signals: &FenceSignals) {
        Owed::settle(&self.owed, ctx, signals);
        let _ = rustix::net::shutdown(&*self.ops, rustix::net::Shutdown::Both);
    }
}

/// A blob's memory, created in a worker: the memfd it sent (checked sealed against
/// shrinking, so the worker cannot make the daemon SIGBUS), mapped for reading on
/// first use (scanout).
#[derive(Debug)]
struct RemoteBlob {
    fd: OwnedFd,
    size: u64,
    map: OnceLock<Option<SharedMemory>>,
}

impl BlobMemory for RemoteBlob {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, dst: &mut [u8]) -> bool {
        self.map
            .get_or_init(|| SharedMemory::map(&self.fd, self.size).ok())
            .as_ref()
            .is_some_and(|m| m.read(offset, dst).is_ok())
    }
}

/// The [`RenderBackend`] of one frontend whose contexts each run in a worker
/// process.
pub struct ProcessBackend {
    capsets: Vec<Capset>,
    shared: Arc<GpuWorkers>,
    signals: FenceSignals,
    contexts: HashMap<ContextId, RemoteContext>,
    /// Host memory of every blob a context created, for attaching it elsewhere.
    blobs: HashMap<(ContextId, ResourceId), (BlobId, Arc<RemoteBlob>)>,
    /// Destroyed contexts whose workers may still be ending.
    retired: Vec<RemoteContext>,
}

impl std::fmt::Debug for ProcessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBackend")
            .field("vm", &self.shared.vm)
            .field("contexts", &self.contexts.len())
            .finish_non_exhaustive()
    }
}

impl ProcessBackend {
    /// A backend offering the Venus capset, its contexts in `shared`'s workers.
    pub fn new(
        venus: &crate::capset::VenusCapset,
        shared: Arc<GpuWorkers>,
        signals: FenceSignals,
    ) -> Self {
        Self {
            capsets: vec![Capset {
                id: CapsetId::VENUS,
                max_version: 1,
                bytes: venus.to_bytes().to_vec(),
            }],
            shared,
            signals,
            contexts: HashMap::new(),
            blobs: HashMap::new(),
            retired: Vec::new(),
        }
    }

    /// Joins the threads of retired contexts whose workers have ended.
    fn prune(&mut self) {
        self.retired.retain_mut(|rc| {
            if rc.threads.iter().all(std::thread::JoinHandle::is_finished) {
                for t in rc.threads.drain(..) {
                    let _ = t.join();
                }
                false
            } else {
                true
            }
        });
    }

    fn ctx(&self, ctx: ContextId) -> Result<&RemoteContext, RenderError> {
        self.contexts.get(&ctx).ok_or(RenderError::NoContext(ctx))
    }

    /// Starts a worker for `ctx` and its supervisor and reader threads.
    fn start(&self, ctx: ContextId) -> Result<RemoteContext, WorkerError> {
        let shared = &self.shared;
        let (ours, theirs) = super::protocol::seqpacket_pair()?;
        let gate = shared.qos.as_ref().map(|(qos, vm)| GateSpec::Vm {
            qos: qos.clone(),
            vm: *vm,
        });
        let started = supervisor::start(
            shared.pool(),
            &shared.settings,
            gate,
            &shared.account,
            |spawned| {
                let ops = theirs.try_clone().map_err(WorkerError::Control)?;
                super::protocol::send(
                    &spawned.control,
                    &super::protocol::Msg::ServeGpu {
                        config: shared.config.clone(),
                        ops,
                    },
                )
            },
        )?;
        drop(theirs);
        let conn = shared.next.fetch_add(1, Ordering::Relaxed);
        let mut threads = Vec::with_capacity(2);
        {
            let shared = Arc::clone(shared);
            let t = std::thread::Builder::new()
                .name(format!("vgpu-sup-{}", ctx.0))
                .spawn(move || {
                    let ended = supervisor::supervise(
                        conn,
                        started,
                        &shared.workers,
                        &shared.settings,
                        &shared.warn,
                    );
                    if let Some(how) = ended {
                        shared
                            .warn
                            .warn(format_args!("virtio-gpu: VM {}: {how}", shared.vm));
                    }
                })
                .map_err(WorkerError::Control)?;
            threads.push(t);
        }
        let ops = Arc::new(ours);
        let owed = Arc::new(Mutex::new(Owed::default()));
        let (tx, replies) = mpsc::channel();
        {
            let (ops, owed, signals) = (Arc::clone(&ops), Arc::clone(&owed), self.signals.clone());
            let warn_vm = shared.vm.clone();
            let t = std::thread::Builder::new()
                .name(format!("vgpu-ops-{}", ctx.0))
                .spawn(move || {
                    read_events(&ops, ctx, &owed, &signals, &tx, &warn_vm);
                })
                .map_err(WorkerError::Control)?;
            threads.push(t);
        }
        Ok(RemoteContext {
            conn,
            threads,
            ops,
            owed,
            replies,
        })
    }
}

/// The daemon's reader of one context's events: answers go to the waiting call,
/// reports to the front door; at the end (the worker closed or died, or sent
/// something malformed) everything still owed is reported.
fn read_events(
    ops: &OwnedFd,
    ctx: ContextId,
    owed: &Mutex<Owed>,
    signals: &FenceSignals,
    replies: &mpsc::Sender<Event>,
    vm: &str,
) {
    loop {
        match ops::recv_event(ops) {
            Ok(Some(Event::Submitted { ticket, result })) => {
                let mut o = owed.lock().unwrap_or_else(PoisonError::into_inner);
                if !o.closed && o.tickets.remove(&ticket) {
                    drop(o);
                    signals.submitted(ticket, result.map_err(RenderError::Worker));
                }
            }
            Ok(Some(Event::FenceDone { timeline, fence })) => {
                let mut o = owed.lock().unwrap_or_else(PoisonError::into_inner);
                let at = o.fences.iter().position(|&f| f == (timeline, fence));
                if let (false, Some(at)) = (o.closed, at) {
                    o.fences.remove(at);
                    drop(o);
                    signals.signal(timeline, fence);
                }
            }
            Ok(Some(answer)) => {
                let _ = replies.send(answer);
            }
            Ok(None) => break,
            Err(e) => {
                log::warn!(
                    "virtio-gpu: VM {vm}: {ctx}: its worker sent {}; context ended",
                    crate::error_chain(&e)
                );
                let _ = rustix::net::shutdown(ops, rustix::net::Shutdown::Both);
                break;
            }
        }
    }
    Owed::settle(owed, ctx, signals);
}

impl Drop for ProcessBackend {
    /// Closes every context and waits for their workers to end (killing those that
    /// take longer than [`DROP_LIMIT`]), so a frontend's device leaves nothing behind.
    fn drop(&mut self) {
        for (ctx, rc) in self.contexts.drain() {
            rc.close(ctx, &self.signals);
            self.retired.push(rc);
        }
        let deadline = std::time::Instant::now() + DROP_LIMIT;
        while !self.retired.is_empty() && std::time::Instant::now() < deadline {
            self.prune();
            std::thread::sleep(Duration::from_millis(10));
        }
        for rc in &self.retired {
            self.shared.workers.kill(rc.conn);
        }
        for rc in self.retired.drain(..) {
            for t in rc.threads {
                let _ = t.join();
            }
        }
    }
}

impl RenderBackend for ProcessBackend {
    fn capsets(&self) -> &[Capset] {
        &self.capsets
    }

    fn create_context(
        &mut self,
        ctx: ContextId,
        capset: CapsetId,
        name: &str,
    ) -> Result<(), RenderError> {
        if capset != CapsetId::VENUS {
            return Err(RenderError::UnsupportedCapset(capset));
        }
        if self.contexts.contains_key(&ctx) {
            return Err(RenderError::Worker(format!("{ctx} exists already")));
        }
        self.prune();
        let rc = self
            .start(ctx)
            .map_err(|e| RenderError::Worker(crate::error_chain(&e).to_string()))?;
        rc.send(&Request::Create {
            ctx,
            capset,
            name: name.to_owned(),
        })?;
        match rc.reply() {
            Ok(Event::Created(Ok(()))) => {
                self.contexts.insert(ctx, rc);
                Ok(())
            }
            other => {
                rc.close(ctx, &self.signals);
                self.retired.push(rc);
                Err(match other {
                    Ok(Event::Created(Err(reason))) => RenderError::Worker(reason),
                    Err(e) => e,
                    Ok(_) => RenderError::Worker("answered out of order".into()),
                })
            }
        }
    }

    fn destroy_context(&mut self, ctx: ContextId) {
        if let Some(rc) = self.contexts.remove(&ctx) {
            rc.close(ctx, &self.signals);
            self.retired.push(rc);
        }
        self.prune();
    }

    fn submit(
        &mut self,
        ctx: ContextId,
        ticket: Ticket,
        cmds: Vec<u8>,
    ) -> Result<SubmitStatus, RenderError> {
        let rc = self.ctx(ctx)?;
        {
            let mut o = rc.owed.lock().unwrap_or_else(PoisonError::into_inner);
            if o.closed {
                return Err(RenderError::Core(ContextError::Fatal(ctx)));
            }
            o.tickets.insert(ticket);
        }
        if let Err(e) = rc.send(&Request::Submit { ctx, ticket, cmds }) {
            rc.owed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .tickets
                .remove(&ticket);
            return Err(e);
        }
        Ok(SubmitStatus::Queued)
    }

    fn create_blob(
        &mut self,
        ctx: ContextId,
        res: ResourceId,
        blob: BlobId,
        size: u64,
    ) -> Result<Arc<dyn BlobMemory>, RenderError> {
        let rc = self.ctx(ctx)?;
        if rc.closed() {
            return Err(RenderError::Core(ContextError::Fatal(ctx)));
        }
        rc.send(&Request::Blob {
            ctx,
            res,
            blob,
            size,
        })?;
        match rc.reply()? {
            Event::BlobMade {
                res: made,
                size: got,
                fd,
            } if made == res && got >= size => {
                crate::sys::check_sealed(&fd, got).map_err(|e| {
                    RenderError::Worker(format!("{res}: {}", crate::error_chain(&e)))
                })?;
                let mem = Arc::new(RemoteBlob {
                    fd,
                    size: got,
                    map: OnceLock::new(),
                });
                self.blobs.insert((ctx, res), (blob, Arc::clone(&mem)));
                Ok(mem)
            }
            Event::BlobFailed { res: r, reason } if r == res => Err(RenderError::Worker(reason)),
            _ => Err(RenderError::Worker(format!(
                "{res}: the worker answered out of order"
            ))),
        }
    }

    fn destroy_blob(&mut self, ctx: ContextId, res: ResourceId) {
        self.blobs.remove(&(ctx, res));
        if let Some(rc) = self.contexts.get(&ctx) {
            let _ = rc.send(&Request::DestroyBlob { ctx, res });
        }
    }

    fn attach_blob(
        &mut self,
        owner: ContextId,
        res: ResourceId,
        ctx: ContextId,
    ) -> Result<(), RenderError> {
        let (blob, mem) = self
            .blobs
            .get(&(owner, res))
            .cloned()
            .ok_or(RenderError::Core(ContextError::Resource(
                crate::renderer::ResourceError::Unknown(res),
            )))?;
        let rc = self.ctx(ctx)?;
        if rc.closed() {
            return Err(RenderError::Core(ContextError::Fatal(ctx)));
        }
        let fd = mem
            .fd
            .try_clone()
            .map_err(|e| RenderError::Worker(format!("{res}: {e}")))?;
        rc.send(&Request::Attach {
            ctx,
            res,
            blob,
            size: mem.size,
            fd,
        })?;
        match rc.reply()? {
            Event::Attached { res: r, result } if r == res => result.map_err(RenderError::Worker),
            _ => Err(RenderError::Worker(format!(
                "{res}: the worker answered out of order"
            ))),
        }
    }

    fn detach_blob(&mut self, res: ResourceId, ctx: ContextId) {
        if let Some(rc) = self.contexts.get(&ctx) {
            let _ = rc.send(&Request::Detach { res, ctx });
        }
    }

    fn create_fence(&mut self, ctx: ContextId, timeline: Timeline, fence: FenceId) -> FenceStatus {
        let owner = match timeline {
            Timeline::Ring(c, _) => c,
            Timeline::Global => ctx,
        };
        let Some(rc) = self.contexts.get(&owner) else {
            // No context (2D work, or gone): nothing of it is outstanding.
            return FenceStatus::Signalled;
        };
        {
            let mut o = rc.owed.lock().unwrap_or_else(PoisonError::into_inner);
            if o.closed {
                return FenceStatus::Signalled;
            }
            o.fences.push((timeline, fence));
        }
        let sent = rc.send(&Request::Fence {
            ctx: owner,
            timeline,
            fence,
        });
        if sent.is_err() {
            let mut o = rc.owed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = o.fences.iter().position(|&f| f == (timeline, fence)) {
                o.fences.remove(at);
            }
            return FenceStatus::Signalled;
        }
        FenceStatus::Pending
    }
}
