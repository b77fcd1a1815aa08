//! The 3D seam: what the command handler needs from a renderer, and the
//! implementation that routes virtio-gpu contexts to the renderer core
//! ([`crate::renderer::Context`]) — the same core the vtest front door uses.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fence::{FenceId, Timeline};
use crate::ids::{BlobId, CapsetId, ContextId, ResourceId, RingIdx};
use crate::renderer::{
    Context, ContextConfig, ContextError, ContextHandle, ContextRegistry, ExecutorFactory,
    FenceDone, Resource,
};

/// A capset the device offers (GET_CAPSET_INFO index = position in the list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capset {
    /// Capset id.
    pub id: CapsetId,
    /// Highest version.
    pub max_version: u32,
    /// The bytes GET_CAPSET returns.
    pub bytes: Vec<u8>,
}

/// Errors of the renderer seam.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The capset has no context type here.
    #[error("{0} has no context type")]
    UnsupportedCapset(CapsetId),
    /// The context does not exist.
    #[error("{0} does not exist")]
    NoContext(ContextId),
    /// The renderer core refused.
    #[error("renderer core refused")]
    Core(#[from] ContextError),
    /// Creating the executor failed.
    #[error("creating the executor failed")]
    Executor(#[source] crate::renderer::ExecError),
    /// Starting the context's thread failed.
    #[error("starting the context thread failed")]
    Spawn(#[source] std::io::Error),
    /// The context's worker process refused or failed (the reason it gave, or why
    /// the daemon could not reach it).
    #[error("the context's worker process: {0}")]
    Worker(String),
}

/// Host memory behind a HOST3D blob: an fd another process can mmap (memfd or
/// dma-buf, offset 0 = blob offset 0), plus a way to read it for scanout.
pub trait BlobMemory: Send + Sync + fmt::Debug {
    /// The fd to send with SHMEM_MAP.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Copies bytes at `offset` into `dst`; false if the range is outside or the
    /// memory is not readable by the daemon.
    fn read(&self, offset: u64, dst: &mut [u8]) -> bool;
}

impl BlobMemory for Resource {
    fn fd(&self) -> BorrowedFd<'_> {
        Resource::fd(self).as_fd()
    }

    fn size(&self) -> u64 {
        Resource::size(self)
    }

    fn read(&self, offset: u64, dst: &mut [u8]) -> bool {
        self.shmem().is_some_and(|m| m.read(offset, dst).is_ok())
    }
}

/// Whether a fence completed when it was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceStatus {
    /// Everything before it on its timeline is done.
    Signalled,
    /// It will be reported through [`FenceSignals`].
    Pending,
}

/// A SUBMIT_3D the renderer runs later; its response waits for
/// [`FenceSignals::submitted`] with the same ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What [`RenderBackend::submit`] did with a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitStatus {
    /// It ran to completion on the calling thread.
    Done,
    /// It was queued; the outcome arrives through [`FenceSignals::submitted`].
    Queued,
}

#[derive(Default)]
struct Events {
    fences: Vec<(Timeline, FenceId)>,
    submits: Vec<(Ticket, Result<(), RenderError>)>,
}

/// Where renderers report fences that complete later and queued submissions that
/// finished. The notifier wakes the thread that drains them (the vhost-user glue
/// registers an eventfd).
#[derive(Clone)]
pub struct FenceSignals {
    events: Arc<Mutex<Events>>,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for FenceSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FenceSignals").finish_non_exhaustive()
    }
}

impl FenceSignals {
    /// A sink that calls `notify` after each report.
    pub fn new(notify: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self {
            events: Arc::default(),
            notify,
        }
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports `fence` done on `timeline` (any thread).
    pub fn signal(&self, timeline: Timeline, fence: FenceId) {
        self.events().fences.push((timeline, fence));
        (self.notify)();
    }

    /// Reports a queued submission finished (any thread).
    pub fn submitted(&self, ticket: Ticket, result: Result<(), RenderError>) {
        self.events().submits.push((ticket, result));
        (self.notify)();
    }

    /// Takes every reported fence.
    pub fn take(&self) -> Vec<(Timeline, FenceId)> {
        std::mem::take(&mut self.events().fences)
    }

    /// Takes every finished submission.
    pub fn take_submitted(&self) -> Vec<(Ticket, Result<(), RenderError>)> {
        std::mem::take(&mut self.events().submits)
    }
}

/// What the command handler needs from a renderer.
pub trait RenderBackend: Send {
    /// The capsets offered, in GET_CAPSET_INFO index order.
    fn capsets(&self) -> &[Capset];
    /// Creates a context of capset `capset`.
    fn create_context(
        &mut self,
        ctx: ContextId,
        capset: CapsetId,
        name: &str,
    ) -> Result<(), RenderError>;
    /// Destroys a context (unknown ids are ignored). Queued submissions of the context
    /// still report (as failed), and its pending global-timeline fences signal.
    fn destroy_context(&mut self, ctx: ContextId);
    /// Executes a SUBMIT_3D stream, now or later (see [`SubmitStatus`]).
    fn submit(
        &mut self,
        ctx: ContextId,
        ticket: Ticket,
        cmds: Vec<u8>,
    ) -> Result<SubmitStatus, RenderError>;
    /// Creates HOST3D blob memory for `blob` in `ctx`.
    fn create_blob(
        &mut self,
        ctx: ContextId,
        res: ResourceId,
        blob: BlobId,
        size: u64,
    ) -> Result<Arc<dyn BlobMemory>, RenderError>;
    /// Releases a blob created with [`RenderBackend::create_blob`].
    fn destroy_blob(&mut self, ctx: ContextId, res: ResourceId);
    /// Makes blob `res`, created by context `owner`, visible to context `ctx`
    /// (CTX_ATTACH_RESOURCE). The default refuses.
    fn attach_blob(
        &mut self,
        owner: ContextId,
        res: ResourceId,
        ctx: ContextId,
    ) -> Result<(), RenderError> {
        let _ = (owner, res);
        Err(RenderError::NoContext(ctx))
    }
    /// Undoes [`RenderBackend::attach_blob`] (unknown ids are ignored).
    fn detach_blob(&mut self, res: ResourceId, ctx: ContextId) {
        let _ = (res, ctx);
    }
    /// Creates a fence after all work submitted so far on `timeline` by the command's
    /// context `ctx` (0 for commands outside any context).
    fn create_fence(&mut self, ctx: ContextId, timeline: Timeline, fence: FenceId) -> FenceStatus;
}

/// Work for a context's thread, in guest order.
enum Job {
    Submit {
        ticket: Ticket,
        cmds: Vec<u8>,
    },
    /// `ring` is the queue timeline to wait on; `None` for the global timeline (done
    /// once the stream got here).
    Fence {
        timeline: Timeline,
        fence: FenceId,
        ring: Option<RingIdx>,
    },
    /// Takes a resource out of the context's table, after the streams queued before.
    Release(ResourceId),
}

/// How long RESOURCE_CREATE_BLOB waits for the context's thread to release a resource
/// id the guest unreferenced just before and now reuses (Linux hands out the lowest
/// free id, so a free-then-allocate reuses it at once).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Resource ids whose release is queued to a context's thread, so a create that reuses
/// one can wait for it instead of finding the old resource still in the table.
#[derive(Debug, Default)]
struct PendingReleases {
    ids: Mutex<HashMap<ResourceId, u32>>,
    released: Condvar,
}

impl PendingReleases {
    fn add(&self, res: ResourceId) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        let n = ids.entry(res).or_insert(0);
        *n = n.saturating_add(1);
    }

    fn finish(&self, res: ResourceId) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = ids.get_mut(&res) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                ids.remove(&res);
            }
        }
        self.released.notify_all();
    }

    /// Waits up to `limit` for every queued release of `res`; false if one is still
    /// queued (the context's thread is busy with an earlier stream).
    fn wait(&self, res: ResourceId, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        while ids.contains_key(&res) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            ids = self
                .released
                .wait_timeout(ids, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// A context and the thread that runs its SUBMIT_3D streams and fences in order, so a
/// stream that blocks (`vkWaitRingSeqnoMESA`, a slow host call) holds up only its own
/// context, never the VM's control queue.
struct Worker {
    /// Taken when the worker is stopped, so the thread holds the context's last
    /// reference and tears it down there, not on the caller's (the vring worker's).
    handle: Option<ContextHandle>,
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Answered once every queued job has reported, before the slow teardown.
    drained: Receiver<()>,
    /// Resources whose `Job::Release` is queued.
    releases: Arc<PendingReleases>,
}

impl Worker {
    fn start(context: Context, signals: FenceSignals) -> Result<Self, RenderError> {
        let handle = context.handle();
        let (tx, rx) = mpsc::channel();
        let (drained_tx, drained) = mpsc::channel();
        let releases = Arc::new(PendingReleases::default());
        let pending = Arc::clone(&releases);
        let thread = std::thread::Builder::new()
            .name(format!("vgpu-ctx-{}", context.id().0))
            .spawn(move || run_worker(context, &rx, &signals, &drained_tx, &pending))
            .map_err(RenderError::Spawn)?;
        Ok(Self {
            handle: Some(handle),
            tx: Some(tx),
            thread: Some(thread),
            drained,
            releases,
        })
    }

    /// Queues the release of `res` behind the streams queued before.
    fn release(&self, res: ResourceId) {
        self.releases.add(res);
        if !self.send(Job::Release(res)) {
            self.releases.finish(res);
        }
    }

    /// Stops the context: waits give up, queued work reports (as failed), and once it
    /// has, returns the thread, which goes on tearing the context down (rings, host
    /// objects; seconds if a guest wedged a queue). Nothing of the context reaches the
    /// front door after this returns.
    fn stop(&mut self) -> Option<JoinHandle<()>> {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
        self.tx = None;
        let thread = self.thread.take()?;
        // Err: the thread ended early (it cannot report any more either).
        let _ = self.drained.recv();
        Some(thread)
    }

    fn handle(&self) -> Result<&ContextHandle, RenderError> {
        // Only `drop` takes it.
        self.handle
            .as_ref()
            .ok_or(RenderError::Core(ContextError::Fatal(ContextId(0))))
    }

    /// Queues `job`; false if the thread is gone.
    fn send(&self, job: Job) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(t) = self.stop() {
            if t.join().is_err() {
                log::warn!("virtio-gpu: a context worker panicked");
            }
        }
    }
}

fn run_worker(
    mut context: Context,
    rx: &Receiver<Job>,
    signals: &FenceSignals,
    drained: &Sender<()>,
    releases: &PendingReleases,
) {
    // Ring fences still in the executor's retire thread when the context is stopped
    // report to nobody: the front door dropped those timelines, and a new context
    // may reuse the id.
    let muted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for job in rx {
        match job {
            Job::Submit { ticket, cmds } => {
                // A panic in a handler must not strand this context's queued work: the
                // context turns fatal and every later job still reports.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    context.submit(&cmds)
                }))
                .unwrap_or_else(|_| {
                    context.set_fatal("the context stream panicked");
                    Err(ContextError::Fatal(context.id()))
                })
                .map_err(RenderError::Core);
                signals.submitted(ticket, result);
            }
            Job::Release(res) => {
                // The handler releases only what it created or attached.
                let _ = context.destroy_resource(res);
                releases.finish(res);
            }
            Job::Fence {
                timeline,
                fence,
                ring: None,
            } => signals.signal(timeline, fence),
            Job::Fence {
                timeline,
                fence,
                ring: Some(ring),
            } => {
                let to = signals.clone();
                let muted = Arc::clone(&muted);
                let done: FenceDone = Box::new(move || {
                    if !muted.load(std::sync::atomic::Ordering::Acquire) {
                        to.signal(timeline, fence);
                    }
                });
                if let Err(e) = context.submit_fence(ring, done) {
                    // `done` has run: the guest is not left waiting.
                    log::debug!(
                        "virtio-gpu: {} fence {fence} on {ring}: {}",
                        context.id(),
                        crate::error_chain(&e)
                    );
                }
            }
        }
    }
    muted.store(true, std::sync::atomic::Ordering::Release);
    let _ = drained.send(());
    // The teardown (rings, host objects) happens here, after the front door moved on.
    drop(context);
}

/// Routes contexts to the renderer core, one worker thread per context. SUBMIT_3D
/// streams are queued to the context's thread and answered when they have run;
/// fences on a ring are reported when the host queue bound to that ring
/// (`VkDeviceQueueTimelineInfoMESA`) has retired everything submitted before them.
pub struct CoreBackend {
    capsets: Vec<Capset>,
    factory: Arc<dyn ExecutorFactory>,
    config: ContextConfig,
    signals: FenceSignals,
    contexts: HashMap<ContextId, Worker>,
    /// Joins stopped context threads while they tear down, off the caller's thread.
    reaper: Option<(Sender<JoinHandle<()>>, JoinHandle<()>)>,
    /// Where new contexts are registered, so daemon shutdown can fail them.
    registry: Option<ContextRegistry>,
    /// The VM this device belongs to, named when one of its contexts fails.
    vm: Option<String>,
    /// Run on each new context before it starts (a worker process installs its ring
    /// hook here, so the daemon can set FATAL on the context's rings).
    on_context: Option<ContextHook>,
}

/// See [`CoreBackend::with_context_hook`].
pub type ContextHook = Box<dyn Fn(&Context) + Send>;

impl Drop for CoreBackend {
    fn drop(&mut self) {
        // Contexts first (each joined), then the reaper once it joined the rest.
        self.contexts.clear();
        if let Some((tx, thread)) = self.reaper.take() {
            drop(tx);
            if thread.join().is_err() {
                log::warn!("virtio-gpu: the context reaper panicked");
            }
        }
    }
}

impl fmt::Debug for CoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreBackend")
            .field("capsets", &self.capsets.len())
            .field("contexts", &self.contexts.len())
            .finish_non_exhaustive()
    }
}

impl CoreBackend {
    /// A backend offering the Venus capset `venus` (160 bytes from [`crate::capset`]),
    /// reporting late work through `signals`.
    pub fn new(
        venus: &crate::capset::VenusCapset,
        factory: Arc<dyn ExecutorFactory>,
        config: ContextConfig,
        signals: FenceSignals,
    ) -> Self {
        Self {
            capsets: vec![Capset {
                id: CapsetId::VENUS,
                max_version: 1,
                bytes: venus.to_bytes().to_vec(),
            }],
            factory,
            config,
            signals,
            contexts: HashMap::new(),
            reaper: None,
            registry: None,
            vm: None,
            on_context: None,
        }
    }

    /// Runs `hook` on each context this backend creates, before it starts.
    #[must_use]
    pub fn with_context_hook(mut self, hook: ContextHook) -> Self {
        self.on_context = Some(hook);
        self
    }

    /// Names the VM in the line logged when one of its contexts fails.
    #[must_use]
    pub fn with_vm(mut self, vm: String) -> Self {
        self.vm = Some(vm);
        self
    }

    /// Registers every context this backend creates in `registry` (daemon shutdown
    /// fails them all).
    #[must_use]
    pub fn with_registry(mut self, registry: ContextRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Makes `resource` (another process's blob, see [`Resource::import`]) visible
    /// in context `ctx` as `res` (CTX_ATTACH_RESOURCE in a worker process).
    pub fn import_blob(
        &mut self,
        ctx: ContextId,
        res: ResourceId,
        resource: Arc<Resource>,
    ) -> Result<(), RenderError> {
        let target = self.ctx(ctx)?;
        // As in `attach_blob`: an id detached just before may still be queued.
        if !target.releases.wait(res, RELEASE_WAIT) {
            log::debug!("virtio-gpu: {ctx}: {res} is still being released");
        }
        target.handle()?.attach_resource(res, resource)?;
        Ok(())
    }

    /// Hands a stopped context's thread to the reaper (started on first use); joins
    /// it here if no reaper thread can be started.
    fn reap(&mut self, thread: JoinHandle<()>) {
        if self.reaper.is_none() {
            let (tx, rx) = mpsc::channel::<JoinHandle<()>>();
            let spawned = std::thread::Builder::new()
                .name("vgpu-ctx-reaper".to_owned())
                .spawn(move || {
                    for t in rx {
                        if t.join().is_err() {
                            log::warn!("virtio-gpu: a context worker panicked");
                        }
                    }
                });
            if let Ok(handle) = spawned {
                self.reaper = Some((tx, handle));
            }
        }
        let thread = match &self.reaper {
            Some((tx, _)) => match tx.send(thread) {
                Ok(()) => return,
                Err(mpsc::SendError(t)) => t,
            },
            None => thread,
        };
        if thread.join().is_err() {
            log::warn!("virtio-gpu: a context worker panicked");
        }
    }

    fn ctx(&self, ctx: ContextId) -> Result<&Worker, RenderError> {
        self.contexts.get(&ctx).ok_or(RenderError::NoContext(ctx))
    }
}

impl RenderBackend for CoreBackend {
    fn capsets(&self) -> &[Capset] {
        &self.capsets
    }

    fn create_context(
        &mut self,
        ctx: ContextId,
        capset: CapsetId,
        _name: &str,
    ) -> Result<(), RenderError> {
        if capset != CapsetId::VENUS {
            return Err(RenderError::UnsupportedCapset(capset));
        }
        let executor = self.factory.create(ctx).map_err(RenderError::Executor)?;
        let context = Context::new(ctx, self.config, executor);
        if let Some(vm) = &self.vm {
            let vm = vm.clone();
            context.set_fatal_hook(Box::new(move |id, reason| {
                log::warn!("virtio-gpu: VM {vm}: {id} failed: {reason}");
            }));
        }
        if let Some(registry) = &self.registry {
            registry.register(&context);
        }
        if let Some(hook) = &self.on_context {
            hook(&context);
        }
        let worker = Worker::start(context, self.signals.clone())?;
        self.contexts.insert(ctx, worker);
        Ok(())
    }

    fn destroy_context(&mut self, ctx: ContextId) {
        let Some(mut worker) = self.contexts.remove(&ctx) else {
            return;
        };
        // Returns once the context's queued work has reported; its teardown goes on
        // in the background, so a context that takes seconds to die (a wedged host
        // queue) does not hold up the VM's control queue.
        if let Some(thread) = worker.stop() {
            self.reap(thread);
        }
    }

    fn submit(
        &mut self,
        ctx: ContextId,
        ticket: Ticket,
        cmds: Vec<u8>,
    ) -> Result<SubmitStatus, RenderError> {
        let worker = self.ctx(ctx)?;
        if worker.handle()?.is_fatal() {
            return Err(RenderError::Core(ContextError::Fatal(ctx)));
        }
        if !worker.send(Job::Submit { ticket, cmds }) {
            return Err(RenderError::NoContext(ctx));
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
        let worker = self.ctx(ctx)?;
        // The guest may reuse an id it has just unreferenced: let the context's thread
        // release the old resource first.
        if !worker.releases.wait(res, RELEASE_WAIT) {
            log::debug!("virtio-gpu: {ctx}: {res} is still being released");
        }
        let r = worker.handle()?.create_blob(res, blob, size)?;
        Ok(r)
    }

    fn destroy_blob(&mut self, ctx: ContextId, res: ResourceId) {
        // In order behind the context's queued streams, which may still use it.
        if let Some(w) = self.contexts.get(&ctx) {
            w.release(res);
        }
    }

    fn attach_blob(
        &mut self,
        owner: ContextId,
        res: ResourceId,
        ctx: ContextId,
    ) -> Result<(), RenderError> {
        let resource = self
            .ctx(owner)?
            .handle()?
            .resource(res)
            .ok_or(RenderError::Core(ContextError::Resource(
                crate::renderer::ResourceError::Unknown(res),
            )))?;
        let target = self.ctx(ctx)?;
        // As in `create_blob`: an id detached just before may still be queued.
        if !target.releases.wait(res, RELEASE_WAIT) {
            log::debug!("virtio-gpu: {ctx}: {res} is still being released");
        }
        target.handle()?.attach_resource(res, resource)?;
        Ok(())
    }

    fn detach_blob(&mut self, res: ResourceId, ctx: ContextId) {
        if let Some(w) = self.contexts.get(&ctx) {
            w.release(res);
        }
    }

    fn create_fence(&mut self, ctx: ContextId, timeline: Timeline, fence: FenceId) -> FenceStatus {
        let (owner, ring) = match timeline {
            Timeline::Ring(c, r) => (c, Some(r)),
            Timeline::Global => (ctx, None),
        };
        match self.contexts.get(&owner) {
            Some(w)
                if w.send(Job::Fence {
                    timeline,
                    fence,
                    ring,
                }) =>
            {
                FenceStatus::Pending
            }
            // No context (2D work, or gone): nothing of it is outstanding.
            _ => FenceStatus::Signalled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capset::{VenusCapset, VenusProtocolInfo};
    use crate::renderer::transport::TransportOnlyExecutor;
    use crate::renderer::{ExecError, StreamExecutor};

    fn backend() -> CoreBackend {
        let factory = |_ctx| -> Result<Arc<dyn StreamExecutor>, ExecError> {
            Ok(Arc::new(TransportOnlyExecutor))
        };
        let capset = VenusCapset::new(&VenusProtocolInfo::generated()).expect("capset");
        CoreBackend::new(
            &capset,
            Arc::new(factory),
            ContextConfig::default(),
            FenceSignals::new(Arc::new(|| {})),
        )
    }

    #[test]
    fn a_blob_id_reused_right_after_its_release_is_created() {
        let mut b = backend();
        b.create_context(ContextId(1), CapsetId::VENUS, "t")
            .expect("context");
        let res = ResourceId(5);
        b.create_blob(ContextId(1), res, BlobId::SHMEM, 4096)
            .expect("blob");
        for _ in 0..200 {
            b.destroy_blob(ContextId(1), res);
            b.create_blob(ContextId(1), res, BlobId::SHMEM, 4096)
                .expect("the id is free once its queued release ran");
        }
    }

    /// The transport-only executor in a VM with an fd budget.
    struct Budgeted(Arc<crate::renderer::FdBudget>);

    impl StreamExecutor for Budgeted {
        fn execute_one(
            &self,
            stream: &mut crate::renderer::StreamCtx<'_>,
            cmds: &[u8],
        ) -> Result<usize, ExecError> {
            TransportOnlyExecutor.execute_one(stream, cmds)
        }

        fn fd_budget(&self) -> Option<Arc<crate::renderer::FdBudget>> {
            Some(Arc::clone(&self.0))
        }
    }

    #[test]
    fn blobs_past_the_vms_fd_limit_are_out_of_memory_for_every_context_of_it() {
        let budget = crate::renderer::FdBudget::new(
            "vm-a",
            crate::renderer::FdLimits {
                max_blobs: 2,
                max_sync_waits: 1,
            },
        );
        let shared = Arc::clone(&budget);
        let factory = move |_ctx| -> Result<Arc<dyn StreamExecutor>, ExecError> {
            Ok(Arc::new(Budgeted(Arc::clone(&shared))))
        };
        let capset = VenusCapset::new(&VenusProtocolInfo::generated()).expect("capset");
        let mut b = CoreBackend::new(
            &capset,
            Arc::new(factory),
            ContextConfig::default(),
            FenceSignals::new(Arc::new(|| {})),
        );
        for c in [1, 2] {
            b.create_context(ContextId(c), CapsetId::VENUS, "t")
                .expect("context");
        }
        b.create_blob(ContextId(1), ResourceId(1), BlobId::SHMEM, 4096)
            .expect("first blob of the VM");
        b.create_blob(ContextId(2), ResourceId(2), BlobId::SHMEM, 4096)
            .expect("second blob of the VM");
        let Err(e) = b.create_blob(ContextId(1), ResourceId(3), BlobId::SHMEM, 4096) else {
            panic!("a third blob past max_blobs = 2 was created");
        };
        assert_eq!(
            crate::virtio_gpu::handler::CommandError::Render(e).resp(),
            crate::virtio_gpu::protocol::RespType::ErrOutOfMemory
        );
        b.destroy_blob(ContextId(2), ResourceId(2));
        // The release runs on context 2's thread, behind its queued streams.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while budget.in_use(crate::renderer::FdKind::Blob) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the release never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        b.create_blob(ContextId(1), ResourceId(3), BlobId::SHMEM, 4096)
            .expect("the released blob's slot is free again");
    }

    #[test]
    fn pending_release_wait_ends_when_the_release_runs() {
        let pending = Arc::new(PendingReleases::default());
        let res = ResourceId(7);
        pending.add(res);
        assert!(!pending.wait(res, Duration::from_millis(10)));
        let p = Arc::clone(&pending);
        let t = std::thread::spawn(move || p.finish(res));
        assert!(pending.wait(res, Duration::from_secs(10)));
        t.join().expect("join");
    }

    #[test]
    fn attached_blob_is_the_same_memory_in_both_contexts() {
        let mut b = backend();
        for c in [1, 2] {
            b.create_context(ContextId(c), CapsetId::VENUS, "t")
                .expect("context");
        }
        let res = ResourceId(5);
        b.create_blob(ContextId(1), res, BlobId::SHMEM, 4096)
            .expect("blob");
        b.attach_blob(ContextId(1), res, ContextId(2))
            .expect("attach");
        b.attach_blob(ContextId(1), res, ContextId(2))
            .expect("attach twice");
        let in_1 = b.contexts[&ContextId(1)]
            .handle()
            .expect("live")
            .resource(res)
            .expect("owner");
        let in_2 = b.contexts[&ContextId(2)]
            .handle()
            .expect("live")
            .resource(res)
            .expect("attached");
        assert!(Arc::ptr_eq(&in_1, &in_2));
        assert!(matches!(
            b.attach_blob(ContextId(1), res, ContextId(9)),
            Err(RenderError::NoContext(ContextId(9)))
        ));
        assert!(b
            .attach_blob(ContextId(1), ResourceId(6), ContextId(2))
            .is_err());
        b.detach_blob(res, ContextId(2));
        // The release runs on the context's thread, after what was queued before; a
        // stream queued after it reports once it is done.
        b.submit(ContextId(2), Ticket(99), Vec::new())
            .expect("queued");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !b
            .signals
            .take_submitted()
            .iter()
            .any(|(t, _)| *t == Ticket(99))
        {
            assert!(std::time::Instant::now() < deadline, "worker answered");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(b.contexts[&ContextId(2)]
            .handle()
            .expect("live")
            .resource(res)
            .is_none());
        assert!(b.contexts[&ContextId(1)]
            .handle()
            .expect("live")
            .resource(res)
            .is_some());
    }

    #[test]
    fn destroying_a_context_answers_its_queued_work() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let signals = FenceSignals::new(Arc::new(move || {
            let _ = tx.lock().map(|t| t.send(()));
        }));
        let mut b = backend();
        b.signals = signals.clone();
        b.create_context(ContextId(1), CapsetId::VENUS, "t")
            .expect("context");
        for t in 0..8 {
            assert_eq!(
                b.submit(ContextId(1), Ticket(t), Vec::new())
                    .expect("queued"),
                SubmitStatus::Queued
            );
        }
        let g = Timeline::Global;
        assert_eq!(
            b.create_fence(ContextId(1), g, FenceId(3)),
            FenceStatus::Pending
        );
        b.destroy_context(ContextId(1));
        let _ = rx.try_recv();
        let mut done: Vec<u64> = signals
            .take_submitted()
            .into_iter()
            .map(|(t, _)| t.0)
            .collect();
        done.sort_unstable();
        assert_eq!(done, (0..8).collect::<Vec<_>>(), "every ticket answered");
        assert_eq!(
            signals.take(),
            vec![(g, FenceId(3))],
            "global fence signalled"
        );
        assert_eq!(
            b.create_fence(ContextId(1), g, FenceId(4)),
            FenceStatus::Signalled,
            "no context, nothing outstanding"
        );
    }
}
