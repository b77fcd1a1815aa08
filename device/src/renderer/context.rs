//! A renderer context: one guest Vulkan connection (a vtest connection or a virtio-gpu
//! context). It owns its resources, rings, reply streams and fatal flag; nothing is
//! global, so a later worker-process split can move a `Context` as a unit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::executor::{run_commands, ExecError, Origin, StreamCtx, StreamExecutor, StreamLocal};
use super::executor::{CommandStreamDesc, FenceDone, TransportError};
use super::fds::{FdBudget, FdKind};
use super::monitor::StatusWord;
use super::reply::ReplyStream;
use super::resource::{Resource, ResourceError, ResourceLimits, ResourceTable};
use super::ring::{RingTable, STATUS_FATAL};
use crate::error_chain;
use crate::ids::{BlobId, ContextId, ResourceId, RingId, RingIdx};

/// Errors of context operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The context already failed; it accepts nothing more.
    #[error("{0} is fatal")]
    Fatal(ContextId),
    /// A resource operation failed.
    #[error("resource operation failed")]
    Resource(#[from] ResourceError),
    /// Executing the context stream failed (the context is now fatal).
    #[error("context stream failed")]
    Exec(#[from] ExecError),
}

/// Called once, from whichever thread notices, with the reason, when the context turns
/// fatal. Front doors use it to log one line and drop the guest connection promptly.
/// Without a hook the core logs the reason itself.
pub type FatalHook = Box<dyn FnOnce(ContextId, &str) + Send>;

/// A ring was created or destroyed (see [`Context::set_ring_hook`]).
#[derive(Debug)]
pub enum RingEvent<'a> {
    /// A ring now lives in the shared-memory resource whose fd is `fd`, with its
    /// status word at byte `status_offset`.
    Created {
        /// The ring.
        ring: RingId,
        /// The memfd the ring lives in.
        fd: std::os::fd::BorrowedFd<'a>,
        /// Byte offset of the ring's status word in that memfd.
        status_offset: u64,
    },
    /// The ring is gone.
    Destroyed(RingId),
}

/// Told about every ring the context creates or destroys (a worker process passes
/// the ring's memfd to the daemon, which sets FATAL on it if the worker dies).
pub type RingHook = Box<dyn Fn(RingEvent<'_>) + Send + Sync>;

/// Per-context limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextConfig {
    /// Resource limits.
    pub limits: ResourceLimits,
    /// Rings per context.
    pub max_rings: usize,
    /// How often an idle ring re-reads its tail in case the guest's notify was
    /// rate-limited away (the guest notifies at most once per ms).
    pub ring_idle_poll: std::time::Duration,
    /// Longest ring idle timeout honoured: a ring busy-polls its tail for
    /// `min(idleTimeout, this)` before it sets IDLE and sleeps until notified (Mesa
    /// asks for 1 ms; a guest asking for 2^64-1 ns must not keep a thread polling).
    pub max_ring_idle_timeout: std::time::Duration,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            limits: ResourceLimits::default(),
            max_rings: 64,
            ring_idle_poll: std::time::Duration::from_millis(20),
            max_ring_idle_timeout: std::time::Duration::from_millis(10),
        }
    }
}

/// What the context thread and ring threads share.
pub(crate) struct ContextShared {
    pub(crate) id: ContextId,
    pub(crate) executor: Arc<dyn StreamExecutor>,
    resources: RwLock<ResourceTable>,
    limits: ResourceLimits,
    /// The VM's fd budget (from the executor); `None`: no limit.
    fds: Option<Arc<FdBudget>>,
    pub(crate) ring_idle_poll: std::time::Duration,
    pub(crate) max_ring_idle_timeout: std::time::Duration,
    fatal: AtomicBool,
    /// The owner is destroying the context: waits give up, nothing new starts.
    stopping: AtomicBool,
    fatal_hook: Mutex<Option<FatalHook>>,
    /// Status words of the live rings, so whichever thread fails the context sets
    /// FATAL on every ring at once (a leaf lock, never nested).
    ring_status: Mutex<Vec<(RingId, StatusWord)>>,
    /// Told about ring creation and destruction (a leaf lock, never nested).
    ring_hook: Mutex<Option<RingHook>>,
}

impl std::fmt::Debug for ContextShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextShared")
            .field("id", &self.id)
            .field("fatal", &self.fatal)
            .finish_non_exhaustive()
    }
}

impl ContextShared {
    pub(crate) fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::Acquire)
    }

    /// Whether work should give up: the context failed or is being destroyed.
    pub(crate) fn should_stop(&self) -> bool {
        self.is_fatal() || self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn add_ring_status(&self, ring: RingId, status: StatusWord) {
        self.ring_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((ring, status));
    }

    /// Runs the ring hook, if any, on `event`.
    pub(crate) fn ring_event(&self, event: RingEvent<'_>) {
        if let Some(hook) = self
            .ring_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            hook(event);
        }
    }

    pub(crate) fn remove_ring_status(&self, ring: RingId) {
        self.ring_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != ring);
    }

    /// Sets FATAL in the guest-visible status of every ring without failing the
    /// context: the guest stops using its rings while the front door still answers
    /// what it already sent (daemon shutdown).
    pub(crate) fn set_rings_fatal(&self) {
        for (_, status) in self
            .ring_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            status.set(STATUS_FATAL);
        }
    }

    /// Marks the context fatal and sets FATAL on every ring; the first caller logs
    /// `reason` and runs the hook.
    pub(crate) fn set_fatal(&self, reason: &str) {
        if self.fatal.swap(true, Ordering::AcqRel) {
            return;
        }
        self.set_rings_fatal();
        let hook = self
            .fatal_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match hook {
            Some(hook) => hook(self.id, reason),
            None => log::warn!("renderer: {} failed: {reason}", self.id),
        }
    }

    pub(crate) fn resource(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
    }

    /// Copies a command-stream range out of a shared-memory resource.
    pub(crate) fn copy_shmem_range(&self, desc: &CommandStreamDesc) -> Result<Vec<u8>, ExecError> {
        let res = self
            .resource(desc.resource)
            .ok_or(TransportError::UnknownResource(desc.resource))?;
        let mem = res.shmem().ok_or(TransportError::NotShmem(desc.resource))?;
        let out_of_range = || TransportError::RangeOutsideResource {
            res: desc.resource,
            offset: desc.offset,
            size: desc.size,
        };
        let end = desc
            .offset
            .checked_add(desc.size)
            .ok_or_else(out_of_range)?;
        if end > res.size() {
            return Err(out_of_range().into());
        }
        // Bounded by the resource size checked above, so the guest cannot make us
        // allocate more than memory it already has.
        let len = usize::try_from(desc.size).map_err(|_| out_of_range())?;
        let mut bytes = vec![0u8; len];
        mem.read(desc.offset, &mut bytes)
            .map_err(TransportError::Shm)?;
        Ok(bytes)
    }
}

/// A renderer context. Dropping it stops and joins its ring and monitor threads and
/// releases its resources.
#[derive(Debug)]
pub struct Context {
    shared: Arc<ContextShared>,
    rings: RingTable,
    reply: ReplyStream,
    local: StreamLocal,
}

impl Context {
    /// Creates a context that executes commands with `executor`.
    pub fn new(id: ContextId, config: ContextConfig, executor: Arc<dyn StreamExecutor>) -> Self {
        let fds = executor.fd_budget();
        Self {
            shared: Arc::new(ContextShared {
                id,
                executor,
                resources: RwLock::new(ResourceTable::default()),
                limits: config.limits,
                fds,
                ring_idle_poll: config.ring_idle_poll,
                max_ring_idle_timeout: config.max_ring_idle_timeout,
                fatal: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                fatal_hook: Mutex::new(None),
                ring_status: Mutex::new(Vec::new()),
                ring_hook: Mutex::new(None),
            }),
            rings: RingTable::new(id, config.max_rings),
            reply: ReplyStream::default(),
            local: None,
        }
    }

    /// Installs the hook run when the context turns fatal (replacing any earlier one).
    pub fn set_fatal_hook(&self, hook: FatalHook) {
        *self
            .shared
            .fatal_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// Installs the hook told about every ring created or destroyed from now on.
    pub fn set_ring_hook(&self, hook: RingHook) {
        *self
            .shared
            .ring_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// The context id.
    pub fn id(&self) -> ContextId {
        self.shared.id
    }

    pub(crate) fn shared(&self) -> &Arc<ContextShared> {
        &self.shared
    }

    /// Whether the context has failed.
    pub fn is_fatal(&self) -> bool {
        self.shared.is_fatal()
    }

    /// Marks the context fatal (e.g. the front door saw garbage) and sets FATAL on
    /// every ring so the guest stops waiting.
    pub fn set_fatal(&self, reason: &str) {
        self.shared.set_fatal(reason);
        self.rings.set_all_fatal();
    }

    /// Number of live rings.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// Number of attached resources.
    pub fn resource_count(&self) -> usize {
        self.shared
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The VM's fd budget, if the executor has one.
    pub fn fd_budget(&self) -> Option<Arc<FdBudget>> {
        self.shared.fds.clone()
    }

    /// A handle for the operations other threads may run while this context's
    /// owner executes its stream (blob creation, resource attach/detach, stopping).
    pub fn handle(&self) -> ContextHandle {
        ContextHandle(Arc::clone(&self.shared))
    }

    /// Creates a blob resource; see [`ContextHandle::create_blob`].
    pub fn create_blob(
        &self,
        id: ResourceId,
        blob: BlobId,
        size: u64,
    ) -> Result<Arc<Resource>, ContextError> {
        self.handle().create_blob(id, blob, size)
    }

    /// Detaches a resource; see [`ContextHandle::destroy_resource`].
    pub fn destroy_resource(&self, id: ResourceId) -> Result<(), ContextError> {
        self.handle().destroy_resource(id)
    }

    /// Looks up a resource.
    pub fn resource(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.shared.resource(id)
    }

    /// Asks the executor to call `done` once everything submitted so far on the
    /// host queue bound to `ring` (`VkDeviceQueueTimelineInfoMESA::ringIdx`) has
    /// retired; with no queue bound to it, once the context stream got here (the CPU
    /// timeline). `done` is called exactly once, also on failure.
    pub fn submit_fence(&self, ring: RingIdx, done: FenceDone) -> Result<(), ContextError> {
        if self.shared.stopping.load(Ordering::Acquire) {
            // Being destroyed: its timelines are gone from the front door already.
            done();
            return Err(ContextError::Fatal(self.id()));
        }
        // A fatal context still orders its fences behind the ones in flight: the
        // executor's queues may still be running earlier work.
        let shared = Arc::clone(&self.shared);
        let stop = move || shared.stopping.load(Ordering::Acquire);
        self.shared.executor.submit_fence(ring, done, &stop)?;
        Ok(())
    }

    /// Executes a context command stream (vtest SUBMIT_CMD2 / virtio-gpu SUBMIT_3D) on
    /// the calling thread, in order. Any error makes the context fatal.
    pub fn submit(&mut self, cmds: &[u8]) -> Result<(), ContextError> {
        if self.shared.should_stop() {
            return Err(ContextError::Fatal(self.id()));
        }
        let executor = Arc::clone(&self.shared.executor);
        let result = {
            let mut stream = StreamCtx {
                ctx: &self.shared,
                reply: &mut self.reply,
                local: &mut self.local,
                origin: Origin::Context {
                    rings: &mut self.rings,
                },
                nested: false,
            };
            run_commands(&*executor, &mut stream, cmds, |_| {})
        };
        if let Err(err) = result {
            if self.shared.is_fatal() {
                // Whoever failed it logged the cause; this is a consequence.
                self.set_fatal(&format!("context stream: {}", error_chain(&err)));
                self.rings.set_all_fatal();
            } else if !(err.is_stop() && self.shared.should_stop()) {
                self.set_fatal(&format!("context stream: {}", error_chain(&err)));
            } else {
                // The owner stops the context (its front door destroys it): a wait
                // that gives up is no failure, and nothing is logged for it.
                log::debug!(
                    "renderer: {}: context stream stopped while waiting",
                    self.id()
                );
            }
            return Err(err.into());
        }
        Ok(())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // Another thread may have failed the context (a ring, the front door, daemon
        // shutdown) while a ring thread slept: it would see the stop request before
        // the fatal flag and leave without FATAL. Set it here, before the rings stop,
        // so the guest sees a lost device rather than a silent ring.
        if self.shared.is_fatal() {
            self.rings.set_all_fatal();
        }
    }
}

/// What other threads may do to a context while its owner runs its stream.
#[derive(Clone, Debug)]
pub struct ContextHandle(Arc<ContextShared>);

impl ContextHandle {
    /// The context id.
    pub fn id(&self) -> ContextId {
        self.0.id
    }

    /// Whether the context has failed.
    pub fn is_fatal(&self) -> bool {
        self.0.is_fatal()
    }

    /// Fails the context from another thread (daemon shutdown): every wait gives up,
    /// ring threads set FATAL in the guest-visible status, and the fatal hook runs
    /// once with `reason`.
    pub fn set_fatal(&self, reason: &str) {
        self.0.set_fatal(reason);
    }

    /// Makes every wait of the context give up and every later command fail, without
    /// calling it a failure (the owner is destroying the context).
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
    }

    /// Creates a blob resource: shared memory for [`BlobId::SHMEM`], else device memory
    /// exported by the executor. All sizes are checked before anything is allocated.
    pub fn create_blob(
        &self,
        id: ResourceId,
        blob: BlobId,
        size: u64,
    ) -> Result<Arc<Resource>, ContextError> {
        let shared = &self.0;
        if shared.should_stop() {
            return Err(ContextError::Fatal(shared.id));
        }
        let limits = &shared.limits;
        // The VM's blob budget is charged before the fd exists.
        let charge = match &shared.fds {
            Some(fds) => Some(
                fds.try_charge(FdKind::Blob)
                    .ok_or(ResourceError::FdLimit(fds.limits().max_blobs))?,
            ),
            None => None,
        };
        let resource = if blob == BlobId::SHMEM {
            shared
                .resources
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .check_new_shmem(size, limits)?;
            Resource::new_shmem(size)?
        } else {
            let exported =
                shared
                    .executor
                    .export_blob(blob, size)
                    .map_err(|e| ResourceError::Export {
                        blob,
                        source: Box::new(e),
                    })?;
            Resource::new_device_memory(blob, exported.size, exported.fd)?
        }
        .with_fd_charge(charge);
        let res = shared
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, resource, limits)?;
        Ok(res)
    }

    /// Makes a resource another context created visible here under the same id
    /// (virtio-gpu CTX_ATTACH_RESOURCE of a shared blob).
    pub fn attach_resource(&self, id: ResourceId, res: Arc<Resource>) -> Result<(), ContextError> {
        self.0
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .attach(id, res, &self.0.limits)?;
        Ok(())
    }

    /// Detaches a resource. Rings and reply streams that use it keep its mapping alive
    /// until they stop using it.
    pub fn destroy_resource(&self, id: ResourceId) -> Result<(), ContextError> {
        self.0
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)?;
        Ok(())
    }

    /// Looks up a resource.
    pub fn resource(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.0.resource(id)
    }

    /// The VM's fd budget, if the executor has one (vtest charges pending sync waits
    /// to it).
    pub fn fd_budget(&self) -> Option<Arc<FdBudget>> {
        self.0.fds.clone()
    }
}
