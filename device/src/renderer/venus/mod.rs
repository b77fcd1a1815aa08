//! The Venus executor: decodes every command with `vulkan_proto`'s generated decoder
//! and runs it on the host Vulkan driver through `ash`.
//!
//! One [`VenusExecutor`] per context owns everything that context created: the loader
//! entry, host instances and devices, and the typed object table (guest object id →
//! host handle). Nothing is global, so a context can later move into a worker process
//! as a unit.
//!
//! Handlers are grouped per object family (`instance.rs`, `physical_device.rs`, …) as
//! inherent methods of [`Handler`]; the one `unsafe impl Dispatch` (the generated trait)
//! forwards to them.
//!
//! # Concurrency and lock order
//!
//! `execute_one` runs concurrently on the context thread and on every ring thread of the
//! context. All shared state sits behind **one** mutex per context
//! (`VenusExecutor::state`). It is held only for table lookups and updates, **never
//! across a driver call or a transport operation**: handlers look up what they need
//! (cloning `Arc`s of the instance/device function tables), release the lock, call the
//! driver, then lock again to record results. So a ring thread blocked in
//! `vkWaitForFences`, a context thread blocked in `vkWaitRingSeqnoMESA`, and nested
//! `vkExecuteCommandStreamsMESA` (which re-enters `execute_one` on the same thread)
//! cannot deadlock on it. The decoder's id lookups take the same lock per lookup. The
//! only other locks are leaves: one submission lock per host queue (`vkQueueSubmit*`,
//! `vkQueueWaitIdle` and ring fences take it, since ring threads and the context
//! thread share queues; `state` may be taken briefly under it, never the reverse), and
//! the retire thread's inbox (`retire.rs`). The core's own locks (resources, rings,
//! reply streams) are never taken while `state` is held.
//!
//! Host object lifetimes (`lifetime.rs`): every handle the decoder looks up is pinned
//! (an `Arc<HostObject>` clone) until the command ends, recorded commands keep what
//! they use alive through their command buffer, and submissions keep their command
//! buffers' objects alive until a host fence after them retires; destroys only drop
//! the table's reference, so the host destroy call runs when the last user is done.
//!
//! Guest-side external synchronization (e.g. two rings recording into one command
//! buffer at once) is not enforced, as in virglrenderer: a guest that breaks it can only
//! hurt its own context's host objects.

mod bind;
mod bounds;
mod buffer;
mod busy;
mod command_buffer;
mod descriptor;
mod device;
mod fns;
mod forward;
mod graphics;
mod image;
mod instance;
mod lifetime;
pub mod limits;
mod memory;
mod objects;
mod ownership;
mod physical_device;
mod pipeline;
mod query;
mod queue;
mod raw;
mod retire;
mod robustness;
mod split;
mod stamps;
mod sync;
mod transfer;
mod transport;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args;
use vulkan_proto::{
    dispatch_command, info, Arena, CommandType, Decoder, Dispatch, DispatchError, Encoder,
    HandleMap, ObjectId,
};

use super::executor::{
    ExecError, ExecutorFactory, FenceDone, StreamCtx, StreamExecutor, TransportError,
};
use super::resource::ExportedBlob;
use crate::error_chain;
use crate::ids::{BlobId, ContextId, ResourceId, RingIdx};
pub use instance::preload_host_driver;
use lifetime::HostObject;
pub use limits::{Limit, VenusLimits, VmAccount};
use objects::State;
pub(crate) use objects::{DeviceState, InstanceState};

/// Errors of the Venus handlers. Every one is fatal for the context; the executor
/// prefixes the command name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VenusError {
    /// A required pointer parameter was NULL.
    #[error("{what} is NULL")]
    Null {
        /// The parameter.
        what: &'static str,
    },
    /// A create command carried object id 0 for the new object.
    #[error("new {0:?} has object id 0")]
    ZeroId(vk::ObjectType),
    /// A create command reused a live object id.
    #[error("object id {0} is already in use")]
    DuplicateId(u64),
    /// A handle decoded fine but has no host-side state (e.g. a device without tables).
    #[error("{ty:?} {raw:#x} has no host state")]
    NoState {
        /// Object type.
        ty: vk::ObjectType,
        /// Host handle.
        raw: u64,
    },
    /// Arguments that the handler refuses (named reason).
    #[error("{0}")]
    Invalid(&'static str),
    /// A command this renderer deliberately does not support (listed in
    /// guest-driver-notes/unsupported-commands.md).
    #[error("deliberately unsupported: {0}")]
    Unsupported(&'static str),
    /// The host driver lacks the entry point of a command the guest sent (an extension
    /// or core version the host device does not have).
    #[error("the host device lacks {0}")]
    HostLacks(&'static str),
    /// A handle argument belongs to another device of this context.
    #[error("{0:?} belongs to another device")]
    ForeignHandle(vk::ObjectType),
    /// The Vulkan loader could not be loaded.
    #[error("loading the host Vulkan loader failed")]
    Loader(#[source] ash::LoadingError),
    /// A transport operation failed.
    #[error("transport operation failed")]
    Transport(#[from] TransportError),
    /// A nested command stream failed.
    #[error("nested command stream failed")]
    Nested(#[source] ExecError),
    /// A `vkBind*Memory*` the renderer refuses before the driver (see `bind.rs`).
    #[error("refused memory bind")]
    Bind(#[from] bind::BindError),
    /// Creating or mapping host memory for a host-visible allocation failed.
    #[error("host memory for an allocation")]
    HostMemory(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A create command ran into a per-context limit. Commands that return a
    /// `VkResult` answer the guest with [`Limit::result`] instead of failing the
    /// context; others fail it.
    #[error("{0:?} limit reached")]
    LimitReached(Limit),
    /// `VkImportMemoryResourceInfoMESA` named a resource whose fd is not safe to map
    /// (not sealed against shrinking, write-sealed, or smaller than the import).
    #[error("{resource} cannot be imported")]
    UnsafeFd {
        /// The resource.
        resource: ResourceId,
        /// Why.
        #[source]
        source: crate::sys::FdError,
    },
}

type Result<T> = std::result::Result<T, VenusError>;

/// A command failed: the command's name and why.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {reason}")]
struct CommandFailed {
    command: String,
    reason: String,
}

/// Per-stream decode state: the arena and reply encoder reused between commands.
#[derive(Debug)]
struct StreamState {
    arena: Arena,
    reply: Encoder,
}

impl Default for StreamState {
    fn default() -> Self {
        Self {
            arena: Arena::default(),
            reply: Encoder::for_peer(info::VK_EXTENSION_MASK, info::VK_XML_VERSION),
        }
    }
}

/// The Venus executor of one context.
#[derive(Debug)]
pub struct VenusExecutor {
    ctx: ContextId,
    state: Mutex<State>,
    retirer: retire::Retirer,
    /// The VM this context belongs to: its limits and device-memory account.
    account: Arc<VmAccount>,
    /// The VM's QoS submission gate (`None`: no arbiter, submit at once).
    gate: Option<Arc<crate::qos::SubmitGate>>,
}

impl VenusExecutor {
    /// A fresh executor for `ctx`, a VM of its own with the default limits (the Vulkan
    /// loader is loaded on the first command that needs it).
    pub fn new(ctx: ContextId) -> Self {
        let account = Arc::new(VmAccount::new(ctx.to_string(), VenusLimits::default()));
        Self::with_account(ctx, account)
    }

    /// A fresh executor for `ctx` in the VM `account`.
    pub fn with_account(ctx: ContextId, account: Arc<VmAccount>) -> Self {
        Self {
            ctx,
            state: Mutex::new(State::default()),
            retirer: retire::Retirer::default(),
            account,
            gate: None,
        }
    }

    /// Sends every host submission of this context through `gate` (see `crate::qos`).
    pub fn with_gate(mut self, gate: Option<Arc<crate::qos::SubmitGate>>) -> Self {
        if let Some(g) = &gate {
            // Best-effort device time is reported in sums (see `crate::qos`); what
            // is left when this context's work drains goes out then.
            let g = Arc::downgrade(g);
            self.retirer = retire::Retirer::with_quiet_hook(Arc::new(move || {
                if let Some(g) = g.upgrade() {
                    g.flush_unreported();
                }
            }));
        }
        self.gate = gate;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `q`'s submission lock if its device is still live. A destroyer removes
    /// the device from the tables and then takes the same lock, so while the guard is
    /// held the device cannot go away.
    fn lock_live<'q>(&self, q: &'q objects::QueueRef) -> Option<MutexGuard<'q, ()>> {
        let guard = q.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.lock()
            .has_device(q.device.device.handle().as_raw())
            .then_some(guard)
    }
}

impl VenusExecutor {
    /// Ends a command's hold on what it used: recorded commands hand their pins to
    /// the command buffer, memory binds to the buffer or image, creates to the new
    /// object; then the pins and whatever the command took out of the tables drop,
    /// with no lock held (a last drop runs the host destroy call).
    fn after_command(&self, command: Option<CommandType>, ok: bool, pins: Vec<Arc<HostObject>>) {
        let (fresh, graveyard) = {
            let mut st = self.lock();
            (st.take_fresh(), st.take_graveyard())
        };
        if ok {
            let name = command.and_then(CommandType::name).unwrap_or("");
            if name.starts_with("vkCmd") {
                if let Some(cb) = pins.iter().find(|p| p.ty == vk::ObjectType::COMMAND_BUFFER) {
                    cb.hold(pins.iter().cloned());
                }
            } else if name.starts_with("vkBindBufferMemory")
                || name.starts_with("vkBindImageMemory")
            {
                // Pins come in argument order: each memory follows its buffer/image.
                let mut target: Option<&Arc<HostObject>> = None;
                for p in &pins {
                    match p.ty {
                        vk::ObjectType::BUFFER | vk::ObjectType::IMAGE => target = Some(p),
                        vk::ObjectType::DEVICE_MEMORY => {
                            if let Some(t) = target {
                                t.hold([Arc::clone(p)]);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        for f in &fresh {
            f.hold(pins.iter().cloned());
            if matches!(
                f.ty,
                vk::ObjectType::COMMAND_BUFFER | vk::ObjectType::DESCRIPTOR_SET
            ) {
                let pools = pins.iter().filter(|p| {
                    matches!(
                        p.ty,
                        vk::ObjectType::COMMAND_POOL | vk::ObjectType::DESCRIPTOR_POOL
                    )
                });
                for p in pools {
                    p.add_child(f);
                }
            }
        }
        drop(fresh);
        drop(pins);
        drop(graveyard);
    }
}

impl Drop for VenusExecutor {
    fn drop(&mut self) {
        // Ring fences first: they must not outlive their devices.
        self.retirer.stop();
        let state = std::mem::take(&mut *self.lock());
        let objects = state.object_count();
        if objects > 0 {
            log::debug!("venus: {} teardown: {objects} objects left", self.ctx);
        }
        state.teardown();
        // The host driver's objects are gone; without this, glibc would keep their
        // heap in its arenas and the daemon's RSS stay at the client's peak.
        crate::sys::trim_heap();
    }
}

impl StreamExecutor for VenusExecutor {
    fn execute_one(
        &self,
        stream: &mut StreamCtx<'_>,
        cmds: &[u8],
    ) -> std::result::Result<usize, ExecError> {
        let command = cmds
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| CommandType(u32::from_le_bytes(b)));
        let mut local: Box<StreamState> = stream.take_local();
        let mut decoder = Decoder::new(cmds);
        let (result, pins) = {
            let StreamState { arena, reply } = &mut *local;
            let mut dispatcher = Dispatcher(Handler {
                exec: self,
                stream: &mut *stream,
                pins: RefCell::default(),
                looked_up: RefCell::default(),
            });
            let r = dispatch_command(&mut dispatcher, &mut decoder, arena, reply);
            (r, dispatcher.0.pins.into_inner())
        };
        stream.put_local(local);
        self.after_command(command, result.is_ok(), pins);
        if result.is_err() {
            // Every handler error fails the context: counted per VM for the metrics.
            if let Some(g) = &self.gate {
                g.context_failed();
            }
        }
        match result {
            Ok(_) => Ok(decoder.position()),
            Err(e) => Err(ExecError::Failed(Box::new(CommandFailed {
                command: command.map_or_else(|| "truncated command".to_owned(), |c| c.to_string()),
                reason: error_chain(&e),
            }))),
        }
    }

    fn fd_budget(&self) -> Option<Arc<crate::renderer::fds::FdBudget>> {
        Some(Arc::clone(self.account.fds()))
    }

    fn oldest_pending_ns(&self) -> Option<u64> {
        self.retirer.oldest_pending_ns()
    }

    fn export_blob(&self, blob: BlobId, size: u64) -> std::result::Result<ExportedBlob, ExecError> {
        memory::export_blob(self, blob, size).map_err(|e| ExecError::Failed(Box::new(e)))
    }

    fn submit_fence(
        &self,
        ring: RingIdx,
        done: FenceDone,
        stop: &dyn Fn() -> bool,
    ) -> std::result::Result<(), ExecError> {
        let Some(q) = self.lock().timeline_queue(ring.0) else {
            // No queue on this timeline (ring 0, the CPU timeline, or a ring the guest
            // never bound): everything before the fence has run.
            done();
            return Ok(());
        };
        let failed = |what: &'static str, e: vk::Result| {
            ExecError::Failed(Box::new(CommandFailed {
                command: format!("ring fence on {ring}"),
                reason: format!("{what}: {e}"),
            }))
        };
        // Everything on the device happens under the queue lock.
        let Some(guard) = self.lock_live(&q) else {
            // The device was destroyed meanwhile; destroying it waited for its work.
            done();
            return Ok(());
        };
        // SAFETY: live queue of a live device under its submission lock.
        let fence = match unsafe { retire::submit_marker(&q.device.device, q.queue) } {
            Ok(f) => f,
            Err((what, e)) => {
                drop(guard);
                done();
                return Err(failed(what, e));
            }
        };
        let waiting = retire::Waiting {
            device: Arc::clone(&q.device),
            queue: q.queue,
            fence,
            done,
            keep: None,
            // A guest-visible ring fence.
            prompt: true,
        };
        // Queued while the queue lock is held, so a destroyer that takes the lock next
        // finds it when it flushes the device's fences.
        let queued = if self.retirer.has_room() {
            self.retirer.push(self.ctx, waiting)
        } else {
            Err(waiting)
        };
        if let Err(w) = queued {
            // Too many in flight (or no thread): wait here, on the context stream, still
            // holding the queue lock so the device cannot be destroyed under the wait.
            retire::wait_inline(w, stop);
        }
        drop(guard);
        Ok(())
    }
}

/// Creates a [`VenusExecutor`] per context, each in a VM of its own (vtest: one
/// connection, one context) or all in one VM (a vhost-user frontend).
#[derive(Debug, Default, Clone)]
pub struct VenusFactory {
    limits: VenusLimits,
    /// The VM every context joins; `None`: each context is a VM.
    vm: Option<Arc<VmAccount>>,
    /// The QoS arbiter every VM attaches to, if any.
    qos: Option<crate::qos::QosHandle>,
    /// With `vm`: that VM's name and gate.
    vm_name: String,
    vm_gate: Option<Arc<crate::qos::SubmitGate>>,
}

impl VenusFactory {
    /// Every context a VM of its own with `limits` (vtest).
    pub fn per_context(limits: VenusLimits) -> Self {
        Self {
            limits,
            vm: None,
            qos: None,
            vm_name: String::new(),
            vm_gate: None,
        }
    }

    /// Every context in one VM named `name` (log lines) with `limits`: one factory per
    /// vhost-user frontend.
    pub fn per_vm(name: String, limits: VenusLimits) -> Self {
        Self {
            limits,
            vm: Some(Arc::new(VmAccount::new(name.clone(), limits))),
            qos: None,
            vm_name: name,
            vm_gate: None,
        }
    }

    /// Every context in the VM `account` (a worker process: an account whose charges
    /// the daemon grants, [`VmAccount::new_remote`]).
    pub fn for_account(account: Arc<VmAccount>) -> Self {
        Self {
            limits: *account.limits(),
            vm_name: account.name().to_owned(),
            vm: Some(account),
            qos: None,
            vm_gate: None,
        }
    }

    /// This factory's one VM (`per_vm`, `for_account`); `None` for `per_context`.
    pub fn vm_account(&self) -> Option<Arc<VmAccount>> {
        self.vm.clone()
    }

    /// Attaches every VM this factory makes to the QoS arbiter behind `qos`: the
    /// factory's one VM (`per_vm`, attached now with `config`), or one VM per context
    /// (`per_context`, each with [`crate::qos::default_vm_config`]: equal weights).
    pub fn with_qos(
        mut self,
        qos: crate::qos::QosHandle,
        config: vgpu_scheduler::VmConfig,
    ) -> Self {
        if let Some(vm) = &self.vm {
            match qos.attach_with_memory(self.vm_name.clone(), config, Some(memory_probe(vm))) {
                Ok(g) => self.vm_gate = Some(g),
                Err(e) => log::warn!("qos: cannot attach {}: {}", self.vm_name, error_chain(&e)),
            }
        }
        self.qos = Some(qos);
        self
    }

    /// The arbiter's id of this factory's VM, once attached (`per_vm` + `with_qos`).
    pub fn qos_vm(&self) -> Option<vgpu_scheduler::VmId> {
        self.vm_gate.as_ref().and_then(|g| g.vm())
    }

    /// Sends every context's submissions through `gate` (a worker process: the gate
    /// reaches the daemon's arbiter over its socket).
    pub fn with_fixed_gate(mut self, gate: Arc<crate::qos::SubmitGate>) -> Self {
        self.vm_gate = Some(gate);
        self
    }

    /// The gate for a new context `ctx` of the VM `account`.
    fn gate_for(
        &self,
        ctx: ContextId,
        account: &Arc<VmAccount>,
    ) -> Option<Arc<crate::qos::SubmitGate>> {
        if self.vm.is_some() || self.vm_gate.is_some() {
            return self.vm_gate.clone();
        }
        let qos = self.qos.as_ref()?;
        let config = crate::qos::default_vm_config();
        match qos.attach_with_memory(ctx.to_string(), config, Some(memory_probe(account))) {
            Ok(g) => Some(g),
            Err(e) => {
                log::warn!("qos: cannot attach {ctx}: {}", error_chain(&e));
                None
            }
        }
    }

    /// The VM context `ctx` belongs to.
    fn account_for(&self, ctx: ContextId) -> Arc<VmAccount> {
        match &self.vm {
            Some(vm) => Arc::clone(vm),
            None => Arc::new(VmAccount::new(ctx.to_string(), self.limits)),
        }
    }
}

impl ExecutorFactory for VenusFactory {
    fn create(&self, ctx: ContextId) -> std::result::Result<Arc<dyn StreamExecutor>, ExecError> {
        let account = self.account_for(ctx);
        Ok(Arc::new(VenusExecutor::with_gate(
            VenusExecutor::with_account(ctx, Arc::clone(&account)),
            self.gate_for(ctx, &account),
        )))
    }
}

/// Reads `account`'s device memory in use (every heap) for QoS `list` and metrics.
fn memory_probe(account: &Arc<VmAccount>) -> crate::qos::MemoryProbe {
    account.memory_probe()
}

/// What one command's handlers see: the context's executor state and the stream.
pub(crate) struct Handler<'a, 'b> {
    exec: &'a VenusExecutor,
    stream: &'a mut StreamCtx<'b>,
    /// Every object the decoder looked up for this command, held until it ends.
    pins: RefCell<Vec<Arc<HostObject>>>,
    /// Every handle the decoder translated for this command, in decoding order (the
    /// first is the one the command is dispatched on): see `ownership`.
    looked_up: RefCell<Vec<(vk::ObjectType, u64)>>,
}

impl HandleMap for Handler<'_, '_> {
    fn lookup(&self, ty: vk::ObjectType, id: ObjectId) -> Option<u64> {
        let st = self.exec.lock();
        let raw = st.lookup(ty, id.0)?;
        if raw != 0 {
            self.looked_up.borrow_mut().push((ty, raw));
        }
        if let Some(host) = st.host_by_id(ty, id.0) {
            drop(st);
            self.pins.borrow_mut().push(host);
        }
        Some(raw)
    }
}

impl Handler<'_, '_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.exec.lock()
    }

    /// The pinned lifetime handle of `raw` (an argument of this command).
    fn pinned(&self, ty: vk::ObjectType, raw: u64) -> Option<Arc<HostObject>> {
        self.pins
            .borrow()
            .iter()
            .find(|p| p.ty == ty && p.raw == raw)
            .cloned()
    }

    /// Runs the host reset `f` once no submission in flight uses any of `objects`,
    /// with submissions of them held off meanwhile (one from another ring fails). The
    /// host work behind a fence the guest already saw signalled retires a moment
    /// later, when the retire thread sees the fence after it; waiting longer than
    /// [`RETIRE_WAIT`] (or until the context stops) fails with `what`: the guest is
    /// resetting something its pending work still uses.
    fn reset_exclusive<T>(
        &self,
        objects: &[Arc<HostObject>],
        what: &'static str,
        f: impl FnOnce() -> T,
    ) -> Result<T> {
        let start = std::time::Instant::now();
        loop {
            let claimed = objects.iter().take_while(|o| o.try_begin_reset()).count();
            if claimed == objects.len() {
                break;
            }
            for o in objects.iter().take(claimed) {
                o.end_reset();
            }
            if start.elapsed() >= RETIRE_WAIT || self.stream.should_stop() {
                return Err(VenusError::Invalid(what));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let r = f();
        for o in objects {
            o.end_reset();
        }
        Ok(r)
    }

    /// The live device owning pool `raw` of type `ty`.
    fn pool_device(&self, ty: vk::ObjectType, raw: u64) -> Option<Arc<DeviceState>> {
        let st = self.lock();
        let dev = st.owner_device(ty, raw)?;
        st.device(vk::Device::from_raw(dev)).ok()
    }

    /// Takes this command's pins (a submission keeps them until it retires).
    fn take_pins(&self) -> Vec<Arc<HostObject>> {
        std::mem::take(&mut *self.pins.borrow_mut())
    }

    fn instance(&self, h: vk::Instance) -> Result<Arc<InstanceState>> {
        self.lock().instance(h)
    }

    /// The instance that owns a physical device.
    fn physical(&self, h: vk::PhysicalDevice) -> Result<Arc<InstanceState>> {
        self.lock().physical(h)
    }

    fn device(&self, h: vk::Device) -> Result<Arc<DeviceState>> {
        self.lock().device(h)
    }

    /// The device owning a queue or command buffer.
    fn device_of<H: vk::Handle>(&self, h: H) -> Result<Arc<DeviceState>> {
        self.lock().device_of(H::TYPE, h.as_raw())
    }

    /// Refuses work that runs a pipeline (a draw, a dispatch) on a command buffer with
    /// no pipeline bound at `point` since its last begin or reset: the host driver
    /// reads the bound pipeline when the batch executes, and lavapipe dereferences a
    /// NULL one (SIGSEGV; found by `device/fuzz`'s `exec_sequences`).
    fn require_pipeline(&self, cb: vk::CommandBuffer, point: vk::PipelineBindPoint) -> Result<()> {
        if self.lock().has_pipeline(cb.as_raw(), point) {
            Ok(())
        } else {
            Err(VenusError::Invalid(
                "draw or dispatch with no pipeline bound at its bind point",
            ))
        }
    }

    /// The guest id a create command put in its output slot: non-zero and unused.
    fn new_id<H: vk::Handle + Copy>(&self, slot: Option<&H>) -> Result<u64> {
        let slot = slot.ok_or(VenusError::Null {
            what: "output handle",
        })?;
        let id = slot.as_raw();
        if id == 0 {
            return Err(VenusError::ZeroId(H::TYPE));
        }
        let st = self.lock();
        st.check_free(id)?;
        self.check_room(&st, 1)?;
        Ok(id)
    }

    /// Checks that `n` more objects fit in the context's object limit (logging, rate
    /// limited, when they do not).
    fn check_room(&self, st: &State, n: usize) -> Result<()> {
        let max = self.exec.account.limits().max_objects as usize;
        if st.object_count().saturating_add(n) > max {
            return Err(self.limit_reached(Limit::Objects));
        }
        Ok(())
    }

    /// Logs that a per-context limit was reached and returns the error saying so.
    fn limit_reached(&self, limit: Limit) -> VenusError {
        self.exec.account.warn_limit(self.exec.ctx, limit);
        VenusError::LimitReached(limit)
    }

    /// Binds guest `id` to a new host object owned by `parent` (a host handle).
    fn bind(&self, id: u64, ty: vk::ObjectType, raw: u64, parent: u64) -> Result<()> {
        self.lock().bind(id, ty, raw, parent)
    }

    /// Creates one device child: checks the guest id, runs `f`, binds on success.
    fn create_child<H: vk::Handle + Copy>(
        &self,
        device: vk::Device,
        slot: Option<&H>,
        f: impl FnOnce(&DeviceState) -> ash::prelude::VkResult<H>,
    ) -> Result<vk::Result> {
        let id = self.new_id(slot)?;
        let dev = self.device(device)?;
        match f(&dev) {
            Ok(h) => {
                self.bind(id, H::TYPE, h.as_raw(), device.as_raw())?;
                Ok(vk::Result::SUCCESS)
            }
            Err(e) => Ok(e),
        }
    }

    /// The device owning command buffer `cb` and the entry point `pick` selects from
    /// its optional table (`name` names the command if the host lacks it).
    fn cmd_fn<F>(
        &self,
        cb: vk::CommandBuffer,
        pick: impl FnOnce(&fns::DeviceFns) -> Option<F>,
        name: &'static str,
    ) -> Result<(Arc<DeviceState>, F)> {
        let dev = self.device_of(cb)?;
        let f = pick(&dev.fns).ok_or(VenusError::HostLacks(name))?;
        Ok((dev, f))
    }

    /// The device's optional entry point `pick` (`name` names the command if missing).
    fn dev_fn<F>(
        &self,
        device: vk::Device,
        pick: impl FnOnce(&fns::DeviceFns) -> Option<F>,
        name: &'static str,
    ) -> Result<(Arc<DeviceState>, F)> {
        let dev = self.device(device)?;
        let f = pick(&dev.fns).ok_or(VenusError::HostLacks(name))?;
        Ok((dev, f))
    }

    /// Checks that every non-NULL handle in `items` belongs to `dev` (a guest with two
    /// devices must not mix their objects in one host call).
    fn check_owned(&self, dev: &DeviceState, items: &[(vk::ObjectType, u64)]) -> Result<()> {
        let want = dev.device.handle().as_raw();
        let st = self.lock();
        for &(ty, raw) in items {
            if raw != 0 && st.owner_device(ty, raw) != Some(want) {
                return Err(VenusError::ForeignHandle(ty));
            }
        }
        Ok(())
    }

    /// Checks that `len` bytes at `offset` lie inside `buffer` (a host handle with a
    /// recorded size) and that `offset` is 4-byte aligned (indirect arguments).
    fn check_buffer_range(&self, buffer: vk::Buffer, offset: u64, len: u64) -> Result<()> {
        let size = self
            .lock()
            .buffer_size(buffer.as_raw())
            .ok_or(VenusError::Invalid("buffer of unknown size"))?;
        let end = offset
            .checked_add(len)
            .ok_or(VenusError::Invalid("buffer range overflows"))?;
        if !offset.is_multiple_of(4) || end > size {
            return Err(VenusError::Invalid("indirect range outside the buffer"));
        }
        Ok(())
    }

    /// The size of a buffer (host handle) recorded at creation.
    fn buffer_size(&self, buffer: vk::Buffer) -> Result<u64> {
        self.lock()
            .buffer_size(buffer.as_raw())
            .ok_or(VenusError::Invalid("buffer of unknown size"))
    }

    /// The creation info of an image (host handle).
    fn image_info(&self, image: vk::Image) -> Result<bounds::ImageInfo> {
        self.lock()
            .image_info(image.as_raw())
            .ok_or(VenusError::Invalid("image of unknown extent"))
    }

    /// Checks buffer↔image copy regions against both objects' bounds.
    fn check_buffer_image(
        &self,
        buffer: vk::Buffer,
        image: vk::Image,
        regions: impl IntoIterator<Item = vk::BufferImageCopy>,
    ) -> Result<()> {
        let size = self.buffer_size(buffer)?;
        let info = self.image_info(image)?;
        for r in regions {
            bounds::check_buffer_image(&info, size, &r)?;
        }
        Ok(())
    }

    /// Checks `len` bytes at `offset` (`WHOLE_SIZE` allowed when `whole`) inside a
    /// buffer.
    fn check_buffer_bytes(&self, buffer: vk::Buffer, offset: u64, len: u64) -> Result<()> {
        let size = self.buffer_size(buffer)?;
        let len = if len == vk::WHOLE_SIZE {
            size.saturating_sub(offset)
        } else {
            len
        };
        match offset.checked_add(len) {
            Some(end) if end <= size && offset <= size => Ok(()),
            _ => Err(VenusError::Invalid("range outside the buffer")),
        }
    }

    /// Destroys one device child (NULL is a no-op, as in Vulkan): the guest id goes
    /// now, the host call `f` when the last user of the object lets go (at the end of
    /// this command, or when the submissions using it retire).
    fn destroy_child<H: vk::Handle + Copy + Send + 'static>(
        &self,
        device: vk::Device,
        h: H,
        f: impl FnOnce(&DeviceState, H) + Send + 'static,
    ) -> Result<()> {
        let dev = self.device(device)?;
        if h.as_raw() == 0 {
            return Ok(());
        }
        let Some(host) = self.lock().unbind_host(H::TYPE, h.as_raw()) else {
            // Another ring destroyed it meanwhile: its host call is already queued.
            return Ok(());
        };
        host.destroy_on_drop(Box::new(move || f(&dev, h)));
        Ok(())
    }
}

/// Longest wait for pending submissions before a reset of what they use fails.
const RETIRE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `Dispatch` implementation: a thin forwarder to [`Handler`]'s family methods (a
/// separate type, so a missing handler is a compile error rather than recursion).
struct Dispatcher<'a, 'b>(Handler<'a, 'b>);

fn handler_err(e: VenusError) -> DispatchError {
    DispatchError::Handler(Box::new(e))
}

/// What a handler's return type answers when a per-context limit stops a create
/// command: a `VkResult` error for commands that return one, nothing (the context
/// fails) for the rest.
trait LimitAnswer: Sized {
    fn limit_answer(limit: Limit) -> Option<Self>;
}

impl LimitAnswer for vk::Result {
    fn limit_answer(limit: Limit) -> Option<Self> {
        Some(limit.result())
    }
}

impl LimitAnswer for () {
    fn limit_answer(_: Limit) -> Option<Self> {
        None
    }
}

impl LimitAnswer for u64 {
    fn limit_answer(_: Limit) -> Option<Self> {
        None
    }
}

/// A handler's result as the dispatcher returns it (limits answered per [`LimitAnswer`]).
fn answer<T: LimitAnswer>(r: Result<T>) -> std::result::Result<T, DispatchError> {
    match r {
        Err(VenusError::LimitReached(limit)) => {
            T::limit_answer(limit).ok_or_else(|| handler_err(VenusError::LimitReached(limit)))
        }
        r => r.map_err(handler_err),
    }
}

macro_rules! forward {
    ($($name:ident($args:ident) -> $ret:ty;)*) => {
        // SAFETY: the handlers never replace a pointer inside an argument struct with one
        // to shorter-lived memory: outputs are filled in place by the driver, and input
        // chains are only re-linked among nodes of the same command arena
        // (`raw::strip_chain`), so every pointer the reply encoder follows stays valid.
        unsafe impl Dispatch for Dispatcher<'_, '_> {
            fn handles(&self) -> &dyn HandleMap {
                &self.0
            }

            fn write_reply(
                &mut self,
                command: CommandType,
                reply: &[u8],
            ) -> std::result::Result<(), DispatchError> {
                let _ = command;
                self.0
                    .stream
                    .write_reply(reply)
                    .map_err(|e| handler_err(VenusError::Transport(e)))
            }

            fn decoded(&mut self, command: CommandType) -> std::result::Result<(), DispatchError> {
                self.0.check_one_device().map_err(handler_err)?;
                self.0.check_core_version(command).map_err(handler_err)
            }

            $(
                fn $name(
                    &mut self,
                    args: &mut args::$args<'_>,
                ) -> std::result::Result<$ret, DispatchError> {
                    answer(self.0.$name(args))
                }
            )*
        }
    };
}

forward! {
    // instance.rs
    enumerate_instance_version(EnumerateInstanceVersionArgs) -> vk::Result;
    enumerate_instance_extension_properties(EnumerateInstanceExtensionPropertiesArgs) -> vk::Result;
    enumerate_instance_layer_properties(EnumerateInstanceLayerPropertiesArgs) -> vk::Result;
    create_instance(CreateInstanceArgs) -> vk::Result;
    destroy_instance(DestroyInstanceArgs) -> ();
    // physical_device.rs
    enumerate_physical_devices(EnumeratePhysicalDevicesArgs) -> vk::Result;
    enumerate_physical_device_groups(EnumeratePhysicalDeviceGroupsArgs) -> vk::Result;
    get_physical_device_properties(GetPhysicalDevicePropertiesArgs) -> ();
    get_physical_device_properties2(GetPhysicalDeviceProperties2Args) -> ();
    get_physical_device_features(GetPhysicalDeviceFeaturesArgs) -> ();
    get_physical_device_features2(GetPhysicalDeviceFeatures2Args) -> ();
    get_physical_device_queue_family_properties(GetPhysicalDeviceQueueFamilyPropertiesArgs) -> ();
    get_physical_device_queue_family_properties2(GetPhysicalDeviceQueueFamilyProperties2Args) -> ();
    get_physical_device_memory_properties(GetPhysicalDeviceMemoryPropertiesArgs) -> ();
    get_physical_device_memory_properties2(GetPhysicalDeviceMemoryProperties2Args) -> ();
    get_physical_device_format_properties(GetPhysicalDeviceFormatPropertiesArgs) -> ();
    get_physical_device_format_properties2(GetPhysicalDeviceFormatProperties2Args) -> ();
    get_physical_device_image_format_properties(GetPhysicalDeviceImageFormatPropertiesArgs) -> vk::Result;
    get_physical_device_image_format_properties2(GetPhysicalDeviceImageFormatProperties2Args) -> vk::Result;
    get_physical_device_sparse_image_format_properties(GetPhysicalDeviceSparseImageFormatPropertiesArgs) -> ();
    get_physical_device_sparse_image_format_properties2(GetPhysicalDeviceSparseImageFormatProperties2Args) -> ();
    enumerate_device_extension_properties(EnumerateDeviceExtensionPropertiesArgs) -> vk::Result;
    enumerate_device_layer_properties(EnumerateDeviceLayerPropertiesArgs) -> vk::Result;
    get_physical_device_tool_properties(GetPhysicalDeviceToolPropertiesArgs) -> vk::Result;
    get_physical_device_external_buffer_properties(GetPhysicalDeviceExternalBufferPropertiesArgs) -> ();
    get_physical_device_external_fence_properties(GetPhysicalDeviceExternalFencePropertiesArgs) -> ();
    get_physical_device_external_semaphore_properties(GetPhysicalDeviceExternalSemaphorePropertiesArgs) -> ();
    // device.rs
    create_device(CreateDeviceArgs) -> vk::Result;
    destroy_device(DestroyDeviceArgs) -> ();
    device_wait_idle(DeviceWaitIdleArgs) -> vk::Result;
    get_device_queue(GetDeviceQueueArgs) -> ();
    get_device_queue2(GetDeviceQueue2Args) -> ();
    // memory.rs
    allocate_memory(AllocateMemoryArgs) -> vk::Result;
    free_memory(FreeMemoryArgs) -> ();
    unmap_memory(UnmapMemoryArgs) -> ();
    flush_mapped_memory_ranges(FlushMappedMemoryRangesArgs) -> vk::Result;
    invalidate_mapped_memory_ranges(InvalidateMappedMemoryRangesArgs) -> vk::Result;
    get_device_memory_commitment(GetDeviceMemoryCommitmentArgs) -> ();
    get_device_memory_opaque_capture_address(GetDeviceMemoryOpaqueCaptureAddressArgs) -> u64;
    // buffer.rs
    create_buffer(CreateBufferArgs) -> vk::Result;
    destroy_buffer(DestroyBufferArgs) -> ();
    create_buffer_view(CreateBufferViewArgs) -> vk::Result;
    destroy_buffer_view(DestroyBufferViewArgs) -> ();
    get_buffer_memory_requirements(GetBufferMemoryRequirementsArgs) -> ();
    get_buffer_memory_requirements2(GetBufferMemoryRequirements2Args) -> ();
    get_device_buffer_memory_requirements(GetDeviceBufferMemoryRequirementsArgs) -> ();
    bind_buffer_memory(BindBufferMemoryArgs) -> vk::Result;
    bind_buffer_memory2(BindBufferMemory2Args) -> vk::Result;
    get_buffer_device_address(GetBufferDeviceAddressArgs) -> u64;
    get_buffer_opaque_capture_address(GetBufferOpaqueCaptureAddressArgs) -> u64;
    // image.rs
    create_image(CreateImageArgs) -> vk::Result;
    destroy_image(DestroyImageArgs) -> ();
    create_image_view(CreateImageViewArgs) -> vk::Result;
    destroy_image_view(DestroyImageViewArgs) -> ();
    create_sampler(CreateSamplerArgs) -> vk::Result;
    destroy_sampler(DestroySamplerArgs) -> ();
    get_image_memory_requirements(GetImageMemoryRequirementsArgs) -> ();
    get_image_memory_requirements2(GetImageMemoryRequirements2Args) -> ();
    get_device_image_memory_requirements(GetDeviceImageMemoryRequirementsArgs) -> ();
    get_image_sparse_memory_requirements(GetImageSparseMemoryRequirementsArgs) -> ();
    get_image_sparse_memory_requirements2(GetImageSparseMemoryRequirements2Args) -> ();
    get_device_image_sparse_memory_requirements(GetDeviceImageSparseMemoryRequirementsArgs) -> ();
    bind_image_memory(BindImageMemoryArgs) -> vk::Result;
    bind_image_memory2(BindImageMemory2Args) -> vk::Result;
    get_image_subresource_layout(GetImageSubresourceLayoutArgs) -> ();
    // queue.rs
    queue_submit(QueueSubmitArgs) -> vk::Result;
    queue_submit2(QueueSubmit2Args) -> vk::Result;
    queue_wait_idle(QueueWaitIdleArgs) -> vk::Result;
    queue_bind_sparse(QueueBindSparseArgs) -> vk::Result;
    // sync.rs
    create_fence(CreateFenceArgs) -> vk::Result;
    destroy_fence(DestroyFenceArgs) -> ();
    reset_fences(ResetFencesArgs) -> vk::Result;
    get_fence_status(GetFenceStatusArgs) -> vk::Result;
    wait_for_fences(WaitForFencesArgs) -> vk::Result;
    create_semaphore(CreateSemaphoreArgs) -> vk::Result;
    destroy_semaphore(DestroySemaphoreArgs) -> ();
    get_semaphore_counter_value(GetSemaphoreCounterValueArgs) -> vk::Result;
    wait_semaphores(WaitSemaphoresArgs) -> vk::Result;
    signal_semaphore(SignalSemaphoreArgs) -> vk::Result;
    create_event(CreateEventArgs) -> vk::Result;
    destroy_event(DestroyEventArgs) -> ();
    get_event_status(GetEventStatusArgs) -> vk::Result;
    set_event(SetEventArgs) -> vk::Result;
    reset_event(ResetEventArgs) -> vk::Result;
    // pipeline.rs
    create_shader_module(CreateShaderModuleArgs) -> vk::Result;
    destroy_shader_module(DestroyShaderModuleArgs) -> ();
    create_pipeline_layout(CreatePipelineLayoutArgs) -> vk::Result;
    destroy_pipeline_layout(DestroyPipelineLayoutArgs) -> ();
    create_pipeline_cache(CreatePipelineCacheArgs) -> vk::Result;
    destroy_pipeline_cache(DestroyPipelineCacheArgs) -> ();
    get_pipeline_cache_data(GetPipelineCacheDataArgs) -> vk::Result;
    merge_pipeline_caches(MergePipelineCachesArgs) -> vk::Result;
    create_compute_pipelines(CreateComputePipelinesArgs) -> vk::Result;
    create_graphics_pipelines(CreateGraphicsPipelinesArgs) -> vk::Result;
    destroy_pipeline(DestroyPipelineArgs) -> ();
    create_render_pass(CreateRenderPassArgs) -> vk::Result;
    create_render_pass2(CreateRenderPass2Args) -> vk::Result;
    destroy_render_pass(DestroyRenderPassArgs) -> ();
    create_framebuffer(CreateFramebufferArgs) -> vk::Result;
    destroy_framebuffer(DestroyFramebufferArgs) -> ();
    // descriptor.rs
    create_descriptor_set_layout(CreateDescriptorSetLayoutArgs) -> vk::Result;
    destroy_descriptor_set_layout(DestroyDescriptorSetLayoutArgs) -> ();
    get_descriptor_set_layout_support(GetDescriptorSetLayoutSupportArgs) -> ();
    create_descriptor_pool(CreateDescriptorPoolArgs) -> vk::Result;
    destroy_descriptor_pool(DestroyDescriptorPoolArgs) -> ();
    reset_descriptor_pool(ResetDescriptorPoolArgs) -> vk::Result;
    allocate_descriptor_sets(AllocateDescriptorSetsArgs) -> vk::Result;
    free_descriptor_sets(FreeDescriptorSetsArgs) -> vk::Result;
    update_descriptor_sets(UpdateDescriptorSetsArgs) -> ();
    create_descriptor_update_template(CreateDescriptorUpdateTemplateArgs) -> vk::Result;
    destroy_descriptor_update_template(DestroyDescriptorUpdateTemplateArgs) -> ();
    // command_buffer.rs
    create_command_pool(CreateCommandPoolArgs) -> vk::Result;
    destroy_command_pool(DestroyCommandPoolArgs) -> ();
    reset_command_pool(ResetCommandPoolArgs) -> vk::Result;
    trim_command_pool(TrimCommandPoolArgs) -> ();
    allocate_command_buffers(AllocateCommandBuffersArgs) -> vk::Result;
    free_command_buffers(FreeCommandBuffersArgs) -> ();
    begin_command_buffer(BeginCommandBufferArgs) -> vk::Result;
    end_command_buffer(EndCommandBufferArgs) -> vk::Result;
    reset_command_buffer(ResetCommandBufferArgs) -> vk::Result;
    cmd_bind_pipeline(CmdBindPipelineArgs) -> ();
    cmd_bind_descriptor_sets(CmdBindDescriptorSetsArgs) -> ();
    cmd_push_constants(CmdPushConstantsArgs) -> ();
    cmd_dispatch(CmdDispatchArgs) -> ();
    cmd_dispatch_base(CmdDispatchBaseArgs) -> ();
    cmd_dispatch_indirect(CmdDispatchIndirectArgs) -> ();
    cmd_pipeline_barrier(CmdPipelineBarrierArgs) -> ();
    cmd_pipeline_barrier2(CmdPipelineBarrier2Args) -> ();
    cmd_copy_buffer(CmdCopyBufferArgs) -> ();
    cmd_copy_buffer2(CmdCopyBuffer2Args) -> ();
    cmd_fill_buffer(CmdFillBufferArgs) -> ();
    cmd_update_buffer(CmdUpdateBufferArgs) -> ();
    cmd_copy_image(CmdCopyImageArgs) -> ();
    cmd_copy_buffer_to_image(CmdCopyBufferToImageArgs) -> ();
    cmd_copy_image_to_buffer(CmdCopyImageToBufferArgs) -> ();
    cmd_clear_color_image(CmdClearColorImageArgs) -> ();
    cmd_set_event(CmdSetEventArgs) -> ();
    cmd_reset_event(CmdResetEventArgs) -> ();
    cmd_wait_events(CmdWaitEventsArgs) -> ();
    cmd_set_event2(CmdSetEvent2Args) -> ();
    cmd_reset_event2(CmdResetEvent2Args) -> ();
    cmd_wait_events2(CmdWaitEvents2Args) -> ();
    cmd_execute_commands(CmdExecuteCommandsArgs) -> ();
    cmd_begin_render_pass(CmdBeginRenderPassArgs) -> ();
    cmd_end_render_pass(CmdEndRenderPassArgs) -> ();
    cmd_begin_rendering(CmdBeginRenderingArgs) -> ();
    cmd_end_rendering(CmdEndRenderingArgs) -> ();
    cmd_set_viewport(CmdSetViewportArgs) -> ();
    cmd_set_scissor(CmdSetScissorArgs) -> ();
    cmd_bind_vertex_buffers(CmdBindVertexBuffersArgs) -> ();
    cmd_bind_index_buffer(CmdBindIndexBufferArgs) -> ();
    cmd_draw(CmdDrawArgs) -> ();
    cmd_draw_indexed(CmdDrawIndexedArgs) -> ();
    // graphics.rs, transfer.rs and the device-level additions
    cmd_begin_conditional_rendering_ext(CmdBeginConditionalRenderingEXTArgs) -> ();
    cmd_begin_query_indexed_ext(CmdBeginQueryIndexedEXTArgs) -> ();
    cmd_begin_render_pass2(CmdBeginRenderPass2Args) -> ();
    cmd_begin_transform_feedback_ext(CmdBeginTransformFeedbackEXTArgs) -> ();
    cmd_bind_index_buffer2_khr(CmdBindIndexBuffer2KHRArgs) -> ();
    cmd_bind_transform_feedback_buffers_ext(CmdBindTransformFeedbackBuffersEXTArgs) -> ();
    cmd_bind_vertex_buffers2(CmdBindVertexBuffers2Args) -> ();
    cmd_blit_image(CmdBlitImageArgs) -> ();
    cmd_blit_image2(CmdBlitImage2Args) -> ();
    cmd_clear_attachments(CmdClearAttachmentsArgs) -> ();
    cmd_clear_depth_stencil_image(CmdClearDepthStencilImageArgs) -> ();
    cmd_copy_buffer_to_image2(CmdCopyBufferToImage2Args) -> ();
    cmd_copy_image2(CmdCopyImage2Args) -> ();
    cmd_copy_image_to_buffer2(CmdCopyImageToBuffer2Args) -> ();
    cmd_draw_indexed_indirect(CmdDrawIndexedIndirectArgs) -> ();
    cmd_draw_indexed_indirect_count(CmdDrawIndexedIndirectCountArgs) -> ();
    cmd_draw_indirect(CmdDrawIndirectArgs) -> ();
    cmd_draw_indirect_byte_count_ext(CmdDrawIndirectByteCountEXTArgs) -> ();
    cmd_draw_indirect_count(CmdDrawIndirectCountArgs) -> ();
    cmd_draw_multi_ext(CmdDrawMultiEXTArgs) -> ();
    cmd_draw_multi_indexed_ext(CmdDrawMultiIndexedEXTArgs) -> ();
    cmd_end_conditional_rendering_ext(CmdEndConditionalRenderingEXTArgs) -> ();
    cmd_end_query_indexed_ext(CmdEndQueryIndexedEXTArgs) -> ();
    cmd_end_render_pass2(CmdEndRenderPass2Args) -> ();
    cmd_end_transform_feedback_ext(CmdEndTransformFeedbackEXTArgs) -> ();
    cmd_next_subpass(CmdNextSubpassArgs) -> ();
    cmd_next_subpass2(CmdNextSubpass2Args) -> ();
    cmd_push_descriptor_set_khr(CmdPushDescriptorSetKHRArgs) -> ();
    cmd_resolve_image(CmdResolveImageArgs) -> ();
    cmd_resolve_image2(CmdResolveImage2Args) -> ();
    cmd_set_alpha_to_coverage_enable_ext(CmdSetAlphaToCoverageEnableEXTArgs) -> ();
    cmd_set_alpha_to_one_enable_ext(CmdSetAlphaToOneEnableEXTArgs) -> ();
    cmd_set_blend_constants(CmdSetBlendConstantsArgs) -> ();
    cmd_set_color_blend_advanced_ext(CmdSetColorBlendAdvancedEXTArgs) -> ();
    cmd_set_color_blend_enable_ext(CmdSetColorBlendEnableEXTArgs) -> ();
    cmd_set_color_blend_equation_ext(CmdSetColorBlendEquationEXTArgs) -> ();
    cmd_set_color_write_enable_ext(CmdSetColorWriteEnableEXTArgs) -> ();
    cmd_set_color_write_mask_ext(CmdSetColorWriteMaskEXTArgs) -> ();
    cmd_set_conservative_rasterization_mode_ext(CmdSetConservativeRasterizationModeEXTArgs) -> ();
    cmd_set_cull_mode(CmdSetCullModeArgs) -> ();
    cmd_set_depth_bias(CmdSetDepthBiasArgs) -> ();
    cmd_set_depth_bias_enable(CmdSetDepthBiasEnableArgs) -> ();
    cmd_set_depth_bounds(CmdSetDepthBoundsArgs) -> ();
    cmd_set_depth_bounds_test_enable(CmdSetDepthBoundsTestEnableArgs) -> ();
    cmd_set_depth_clamp_enable_ext(CmdSetDepthClampEnableEXTArgs) -> ();
    cmd_set_depth_clip_enable_ext(CmdSetDepthClipEnableEXTArgs) -> ();
    cmd_set_depth_clip_negative_one_to_one_ext(CmdSetDepthClipNegativeOneToOneEXTArgs) -> ();
    cmd_set_depth_compare_op(CmdSetDepthCompareOpArgs) -> ();
    cmd_set_depth_test_enable(CmdSetDepthTestEnableArgs) -> ();
    cmd_set_depth_write_enable(CmdSetDepthWriteEnableArgs) -> ();
    cmd_set_device_mask(CmdSetDeviceMaskArgs) -> ();
    cmd_set_extra_primitive_overestimation_size_ext(CmdSetExtraPrimitiveOverestimationSizeEXTArgs) -> ();
    cmd_set_fragment_shading_rate_khr(CmdSetFragmentShadingRateKHRArgs) -> ();
    cmd_set_front_face(CmdSetFrontFaceArgs) -> ();
    cmd_set_line_rasterization_mode_ext(CmdSetLineRasterizationModeEXTArgs) -> ();
    cmd_set_line_stipple_enable_ext(CmdSetLineStippleEnableEXTArgs) -> ();
    cmd_set_line_stipple_ext(CmdSetLineStippleEXTArgs) -> ();
    cmd_set_line_width(CmdSetLineWidthArgs) -> ();
    cmd_set_logic_op_enable_ext(CmdSetLogicOpEnableEXTArgs) -> ();
    cmd_set_logic_op_ext(CmdSetLogicOpEXTArgs) -> ();
    cmd_set_patch_control_points_ext(CmdSetPatchControlPointsEXTArgs) -> ();
    cmd_set_polygon_mode_ext(CmdSetPolygonModeEXTArgs) -> ();
    cmd_set_primitive_restart_enable(CmdSetPrimitiveRestartEnableArgs) -> ();
    cmd_set_primitive_topology(CmdSetPrimitiveTopologyArgs) -> ();
    cmd_set_provoking_vertex_mode_ext(CmdSetProvokingVertexModeEXTArgs) -> ();
    cmd_set_rasterization_samples_ext(CmdSetRasterizationSamplesEXTArgs) -> ();
    cmd_set_rasterization_stream_ext(CmdSetRasterizationStreamEXTArgs) -> ();
    cmd_set_rasterizer_discard_enable(CmdSetRasterizerDiscardEnableArgs) -> ();
    cmd_set_sample_locations_enable_ext(CmdSetSampleLocationsEnableEXTArgs) -> ();
    cmd_set_sample_mask_ext(CmdSetSampleMaskEXTArgs) -> ();
    cmd_set_scissor_with_count(CmdSetScissorWithCountArgs) -> ();
    cmd_set_stencil_compare_mask(CmdSetStencilCompareMaskArgs) -> ();
    cmd_set_stencil_op(CmdSetStencilOpArgs) -> ();
    cmd_set_stencil_reference(CmdSetStencilReferenceArgs) -> ();
    cmd_set_stencil_test_enable(CmdSetStencilTestEnableArgs) -> ();
    cmd_set_stencil_write_mask(CmdSetStencilWriteMaskArgs) -> ();
    cmd_set_tessellation_domain_origin_ext(CmdSetTessellationDomainOriginEXTArgs) -> ();
    cmd_set_vertex_input_ext(CmdSetVertexInputEXTArgs) -> ();
    cmd_set_viewport_with_count(CmdSetViewportWithCountArgs) -> ();
    create_private_data_slot(CreatePrivateDataSlotArgs) -> vk::Result;
    create_sampler_ycbcr_conversion(CreateSamplerYcbcrConversionArgs) -> vk::Result;
    destroy_private_data_slot(DestroyPrivateDataSlotArgs) -> ();
    destroy_sampler_ycbcr_conversion(DestroySamplerYcbcrConversionArgs) -> ();
    get_calibrated_timestamps_ext(GetCalibratedTimestampsEXTArgs) -> vk::Result;
    get_device_group_peer_memory_features(GetDeviceGroupPeerMemoryFeaturesArgs) -> ();
    get_device_image_subresource_layout_khr(GetDeviceImageSubresourceLayoutKHRArgs) -> ();
    get_image_drm_format_modifier_properties_ext(GetImageDrmFormatModifierPropertiesEXTArgs) -> vk::Result;
    get_image_subresource_layout2_khr(GetImageSubresourceLayout2KHRArgs) -> ();
    get_physical_device_calibrateable_time_domains_ext(GetPhysicalDeviceCalibrateableTimeDomainsEXTArgs) -> vk::Result;
    get_physical_device_fragment_shading_rates_khr(GetPhysicalDeviceFragmentShadingRatesKHRArgs) -> vk::Result;
    get_private_data(GetPrivateDataArgs) -> ();
    get_render_area_granularity(GetRenderAreaGranularityArgs) -> ();
    get_rendering_area_granularity_khr(GetRenderingAreaGranularityKHRArgs) -> ();
    set_private_data(SetPrivateDataArgs) -> vk::Result;
    // query.rs
    create_query_pool(CreateQueryPoolArgs) -> vk::Result;
    destroy_query_pool(DestroyQueryPoolArgs) -> ();
    get_query_pool_results(GetQueryPoolResultsArgs) -> vk::Result;
    reset_query_pool(ResetQueryPoolArgs) -> ();
    cmd_reset_query_pool(CmdResetQueryPoolArgs) -> ();
    cmd_begin_query(CmdBeginQueryArgs) -> ();
    cmd_end_query(CmdEndQueryArgs) -> ();
    cmd_write_timestamp(CmdWriteTimestampArgs) -> ();
    cmd_write_timestamp2(CmdWriteTimestamp2Args) -> ();
    cmd_copy_query_pool_results(CmdCopyQueryPoolResultsArgs) -> ();
    // transport.rs
    set_reply_command_stream_mesa(SetReplyCommandStreamMESAArgs) -> ();
    seek_reply_command_stream_mesa(SeekReplyCommandStreamMESAArgs) -> ();
    execute_command_streams_mesa(ExecuteCommandStreamsMESAArgs) -> ();
    create_ring_mesa(CreateRingMESAArgs) -> ();
    destroy_ring_mesa(DestroyRingMESAArgs) -> ();
    notify_ring_mesa(NotifyRingMESAArgs) -> ();
    write_ring_extra_mesa(WriteRingExtraMESAArgs) -> ();
    submit_virtqueue_seqno_mesa(SubmitVirtqueueSeqnoMESAArgs) -> ();
    wait_virtqueue_seqno_mesa(WaitVirtqueueSeqnoMESAArgs) -> ();
    wait_ring_seqno_mesa(WaitRingSeqnoMESAArgs) -> ();
    get_memory_resource_properties_mesa(GetMemoryResourcePropertiesMESAArgs) -> vk::Result;
    reset_fence_resource_mesa(ResetFenceResourceMESAArgs) -> ();
    wait_semaphore_resource_mesa(WaitSemaphoreResourceMESAArgs) -> ();
    import_semaphore_resource_mesa(ImportSemaphoreResourceMESAArgs) -> ();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_vm_factory_puts_every_context_in_one_vm() {
        let f = VenusFactory::per_vm("frontend 1".into(), VenusLimits::default());
        assert!(Arc::ptr_eq(
            &f.account_for(ContextId(1)),
            &f.account_for(ContextId(2))
        ));
    }

    #[test]
    fn per_context_factory_makes_each_context_a_vm() {
        let f = VenusFactory::per_context(VenusLimits::default());
        assert!(!Arc::ptr_eq(
            &f.account_for(ContextId(1)),
            &f.account_for(ContextId(2))
        ));
    }
}
