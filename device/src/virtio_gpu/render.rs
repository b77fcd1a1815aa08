//! The 3D seam: what the command handler needs from a renderer, and the
//! implementation that routes virtio-gpu contexts to the renderer core
//! ([`crate::renderer::Context`]) — the same core the vtest front door uses.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, PoisonError};

use super::fence::{FenceId, Timeline};
use crate::ids::{BlobId, CapsetId, ContextId, ResourceId};
use crate::renderer::{Context, ContextConfig, ContextError, ExecutorFactory, Resource};

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

/// Where renderers report fences that complete later. The notifier wakes the
/// thread that drains them (the vhost-user glue registers an eventfd).
#[derive(Clone)]
pub struct FenceSignals {
    done: Arc<Mutex<Vec<(Timeline, FenceId)>>>,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for FenceSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FenceSignals").finish_non_exhaustive()
    }
}

impl FenceSignals {
    /// A sink that calls `notify` after each signal.
    pub fn new(notify: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self {
            done: Arc::default(),
            notify,
        }
    }

    /// Reports `fence` done on `timeline` (any thread).
    pub fn signal(&self, timeline: Timeline, fence: FenceId) {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((timeline, fence));
        (self.notify)();
    }

    /// Takes every reported signal.
    pub fn take(&self) -> Vec<(Timeline, FenceId)> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(PoisonError::into_inner))
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
    /// Destroys a context (unknown ids are ignored).
    fn destroy_context(&mut self, ctx: ContextId);
    /// Executes a SUBMIT_3D stream.
    fn submit(&mut self, ctx: ContextId, cmds: &[u8]) -> Result<(), RenderError>;
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
    /// Creates a fence after all work submitted so far on `timeline`.
    fn create_fence(&mut self, timeline: Timeline, fence: FenceId) -> FenceStatus;
}

/// Routes contexts to the renderer core. `Context::submit` runs the context stream
/// to completion on the calling thread, so a fence created after it is already
/// signalled; work the executor defers to ring threads is not tracked by fences yet
/// (the same rule the vtest front door applies to SUBMIT_CMD2 syncs).
pub struct CoreBackend {
    capsets: Vec<Capset>,
    factory: Arc<dyn ExecutorFactory>,
    config: ContextConfig,
    contexts: HashMap<ContextId, Context>,
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
    /// A backend offering the Venus capset `venus` (160 bytes from [`crate::capset`]).
    pub fn new(
        venus: &crate::capset::VenusCapset,
        factory: Arc<dyn ExecutorFactory>,
        config: ContextConfig,
    ) -> Self {
        Self {
            capsets: vec![Capset {
                id: CapsetId::VENUS,
                max_version: 1,
                bytes: venus.to_bytes().to_vec(),
            }],
            factory,
            config,
            contexts: HashMap::new(),
        }
    }

    fn ctx(&mut self, ctx: ContextId) -> Result<&mut Context, RenderError> {
        self.contexts
            .get_mut(&ctx)
            .ok_or(RenderError::NoContext(ctx))
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
        self.contexts
            .insert(ctx, Context::new(ctx, self.config, executor));
        Ok(())
    }

    fn destroy_context(&mut self, ctx: ContextId) {
        self.contexts.remove(&ctx);
    }

    fn submit(&mut self, ctx: ContextId, cmds: &[u8]) -> Result<(), RenderError> {
        self.ctx(ctx)?.submit(cmds)?;
        Ok(())
    }

    fn create_blob(
        &mut self,
        ctx: ContextId,
        res: ResourceId,
        blob: BlobId,
        size: u64,
    ) -> Result<Arc<dyn BlobMemory>, RenderError> {
        let r = self.ctx(ctx)?.create_blob(res, blob, size)?;
        Ok(r)
    }

    fn destroy_blob(&mut self, ctx: ContextId, res: ResourceId) {
        if let Some(c) = self.contexts.get(&ctx) {
            // The handler only destroys blobs it created; a missing id is harmless.
            let _ = c.destroy_resource(res);
        }
    }

    fn create_fence(&mut self, _timeline: Timeline, _fence: FenceId) -> FenceStatus {
        FenceStatus::Signalled
    }
}
