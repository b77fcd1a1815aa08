//! The seam between the renderer core and the Venus command executor.
//!
//! The core owns contexts, resources, rings and reply streams; it hands command bytes
//! to a [`StreamExecutor`] one command at a time and publishes ring progress after
//! each one. The executor (the Venus decoder generated in `vulkan-proto` plus the
//! dispatch handlers) decodes a command, runs it, writes its reply through
//! [`StreamCtx::write_reply`], and calls back into the core through [`StreamCtx`] for
//! the `VK_MESA_venus_protocol` transport commands (rings, reply streams, nested
//! command streams, cross-waits).

use std::sync::Arc;

use super::context::ContextShared;
use super::reply::ReplyStream;
use super::resource::{ExportedBlob, Resource};
use super::ring::{RingCreateInfo, RingShared, RingTable};
use crate::ids::{BlobId, ContextId, ResourceId, RingId, RingIdx};
use crate::sys::ShmError;

/// Which stream a command came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// The context stream (vtest SUBMIT_CMD2 / virtio-gpu SUBMIT_3D).
    Context,
    /// A guest ring (`vkCreateRingMESA`).
    Ring(RingId),
}

/// One `VkCommandStreamDescriptionMESA`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandStreamDesc {
    /// Shared-memory resource holding the commands.
    pub resource: ResourceId,
    /// Byte offset in the resource.
    pub offset: u64,
    /// Byte size.
    pub size: u64,
}

/// Errors of transport operations the core performs for the executor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A context-only command arrived on a ring, or the reverse.
    #[error("{command} is not allowed on the {stream:?} stream")]
    WrongStream {
        /// Command name.
        command: &'static str,
        /// Where it arrived.
        stream: StreamKind,
    },
    /// Unknown resource id.
    #[error("{0} does not exist")]
    UnknownResource(ResourceId),
    /// The resource is not shared memory.
    #[error("{0} is not shared memory")]
    NotShmem(ResourceId),
    /// A range is outside its resource.
    #[error("range {offset}+{size} is outside {res}")]
    RangeOutsideResource {
        /// Resource.
        res: ResourceId,
        /// Offset.
        offset: u64,
        /// Size.
        size: u64,
    },
    /// A reply was written with no reply stream set.
    #[error("no reply stream is set")]
    NoReplyStream,
    /// A reply or seek went past the end of the reply range.
    #[error("reply position {position} exceeds the {size}-byte reply range in {res}")]
    ReplyOverflow {
        /// Resource.
        res: ResourceId,
        /// Position reached.
        position: u64,
        /// Range size.
        size: u64,
    },
    /// `vkExecuteCommandStreamsMESA` inside another one.
    #[error("nested vkExecuteCommandStreamsMESA")]
    Nested,
    /// `vkExecuteCommandStreamsMESA` with no streams, or mismatched reply positions.
    #[error("invalid vkExecuteCommandStreamsMESA arguments")]
    BadStreamList,
    /// The ring id is already in use.
    #[error("{0} already exists")]
    DuplicateRing(RingId),
    /// The ring id is unknown.
    #[error("{0} does not exist")]
    UnknownRing(RingId),
    /// Too many rings in one context.
    #[error("ring limit of {0} reached")]
    TooManyRings(usize),
    /// `vkCreateRingMESA` layout rejected.
    #[error("invalid ring layout: {0}")]
    BadRingLayout(&'static str),
    /// The ring monitor period is zero.
    #[error("ring reporting period is zero")]
    BadMonitorPeriod,
    /// `vkWaitRingSeqnoMESA` for a seqno the guest never submitted.
    #[error("wait for seqno {seqno} beyond the tail {tail} of {ring}")]
    WaitBeyondTail {
        /// Ring.
        ring: RingId,
        /// Seqno waited for.
        seqno: u64,
        /// Tail at the time.
        tail: u32,
    },
    /// `vkWriteRingExtraMESA` outside the extra region.
    #[error("extra write at {0} is outside the ring's extra region")]
    ExtraOutOfRange(u64),
    /// A wait ended because the ring or context stopped.
    #[error("the ring or context stopped while waiting")]
    Stopped,
    /// Shared-memory access failed.
    #[error("shared memory access failed")]
    Shm(#[source] ShmError),
    /// Starting a thread failed.
    #[error("spawning a thread failed")]
    Spawn(#[source] std::io::Error),
}

/// Errors an executor returns; any of them makes the context fatal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A command type the executor does not implement.
    #[error("command type {0} is not supported")]
    Unsupported(u32),
    /// The bytes do not decode.
    #[error("malformed command (type {command_type:?}): {reason}")]
    Malformed {
        /// The command type, if it was readable.
        command_type: Option<u32>,
        /// What was wrong.
        reason: &'static str,
    },
    /// A transport operation failed.
    #[error("transport command failed")]
    Transport(#[from] TransportError),
    /// The executor reported a consumed length outside `1..=available`.
    #[error("executor consumed {consumed} of {available} bytes")]
    BadLength {
        /// What it reported.
        consumed: usize,
        /// What was available.
        available: usize,
    },
    /// The context is already fatal.
    #[error("the context is fatal")]
    ContextFatal,
    /// A handler failed.
    #[error("command failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ExecError {
    /// A wait that ended because its ring or context stopped: a consequence, not a
    /// cause (the cause was logged by whoever failed the context, or nothing failed
    /// and the owner is tearing the context down).
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            Self::ContextFatal | Self::Transport(TransportError::Stopped)
        )
    }
}

/// Executes Venus commands for one context.
///
/// One executor serves one context; it is called concurrently from the context thread
/// and from every ring thread of that context, so its object tables must be
/// thread-safe. All state lives in the executor or the context: no globals.
pub trait StreamExecutor: Send + Sync {
    /// Decodes and executes exactly one command at the start of `cmds` (a private
    /// linear copy, never guest memory) and returns how many bytes it consumed
    /// (`1..=cmds.len()`). Replies go through [`StreamCtx::write_reply`]. Any error makes
    /// the context fatal.
    fn execute_one(&self, stream: &mut StreamCtx<'_>, cmds: &[u8]) -> Result<usize, ExecError>;

    /// The fd budget of the VM this executor's context belongs to; blobs and pending
    /// sync waits of the context are charged to it. The default: none (no limit).
    fn fd_budget(&self) -> Option<Arc<super::fds::FdBudget>> {
        None
    }

    /// When the oldest host fence of this context that has not signalled yet was
    /// queued (`CLOCK_MONOTONIC` ns), for the GPU-hang watchdog; `None` when nothing
    /// is pending (the default: no host queues).
    fn oldest_pending_ns(&self) -> Option<u64> {
        None
    }

    /// Exports device memory for RESOURCE_CREATE_BLOB with a non-zero blob id (a
    /// `VkDeviceMemory` object id). The default refuses.
    fn export_blob(&self, blob: BlobId, size: u64) -> Result<ExportedBlob, ExecError> {
        let _ = size;
        Err(ExecError::Failed(
            format!("{blob}: device-memory blobs are not supported by this executor").into(),
        ))
    }

    /// Calls `done` once all work submitted so far to the host queue bound to `ring`
    /// has retired. Called from the context stream's thread, after every context
    /// command submitted before the fence has executed. The default (no queues) calls
    /// `done` at once: the context stream is the only timeline. `done` must be called
    /// exactly once, even when this returns an error. If the executor has to wait
    /// itself (too much in flight), it gives up when `stop` turns true (the context is
    /// being destroyed).
    fn submit_fence(
        &self,
        ring: RingIdx,
        done: FenceDone,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), ExecError> {
        let _ = (ring, stop);
        done();
        Ok(())
    }
}

/// Called once when a fence retires (see [`StreamExecutor::submit_fence`]).
pub type FenceDone = Box<dyn FnOnce() + Send>;

/// Creates the executor for a new context.
pub trait ExecutorFactory: Send + Sync {
    /// Called once per context, on context creation.
    fn create(&self, ctx: ContextId) -> Result<Arc<dyn StreamExecutor>, ExecError>;
}

impl<F> ExecutorFactory for F
where
    F: Fn(ContextId) -> Result<Arc<dyn StreamExecutor>, ExecError> + Send + Sync,
{
    fn create(&self, ctx: ContextId) -> Result<Arc<dyn StreamExecutor>, ExecError> {
        self(ctx)
    }
}

/// Per-stream state the executor keeps between commands (e.g. its decode arena and
/// reply encoder), owned by the stream's thread so no lock is needed.
pub(crate) type StreamLocal = Option<Box<dyn std::any::Any + Send>>;

pub(crate) enum Origin<'a> {
    Context { rings: &'a mut RingTable },
    Ring { ring: &'a RingShared },
}

/// What a command sees of the context while it executes: its stream, the reply
/// stream, resources, and the transport operations.
pub struct StreamCtx<'a> {
    pub(crate) ctx: &'a Arc<ContextShared>,
    pub(crate) reply: &'a mut ReplyStream,
    pub(crate) local: &'a mut StreamLocal,
    pub(crate) origin: Origin<'a>,
    pub(crate) nested: bool,
}

impl std::fmt::Debug for StreamCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCtx")
            .field("context", &self.ctx.id)
            .field("stream", &self.kind())
            .field("nested", &self.nested)
            .finish_non_exhaustive()
    }
}

impl StreamCtx<'_> {
    /// The stream this command came from.
    pub fn kind(&self) -> StreamKind {
        match &self.origin {
            Origin::Context { .. } => StreamKind::Context,
            Origin::Ring { ring } => StreamKind::Ring(ring.id),
        }
    }

    /// Whether a long blocking call in the executor should give up: the context is
    /// fatal or this stream's ring is being stopped. Executors poll it between slices
    /// of host waits so teardown is not held up by a wait that never ends.
    pub fn should_stop(&self) -> bool {
        self.ctx.should_stop() || matches!(&self.origin, Origin::Ring { ring } if ring.is_stopped())
    }

    /// The context.
    pub fn context_id(&self) -> ContextId {
        self.ctx.id
    }

    /// Looks up a resource of this context.
    pub fn resource(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.ctx.resource(id)
    }

    /// Takes this stream's executor-local state (created with `T::default()` the first
    /// time, or if a different type was stored). Give it back with
    /// [`StreamCtx::put_local`] so the next command on this stream reuses it.
    pub fn take_local<T: Default + Send + 'static>(&mut self) -> Box<T> {
        self.local
            .take()
            .and_then(|b| b.downcast::<T>().ok())
            .unwrap_or_default()
    }

    /// Stores this stream's executor-local state.
    pub fn put_local<T: Send + 'static>(&mut self, state: Box<T>) {
        *self.local = Some(state);
    }

    /// `vkSetReplyCommandStreamMESA`: replies of this stream go to `offset..+size` of
    /// shared-memory resource `res`, cursor at 0.
    pub fn set_reply_stream(
        &mut self,
        res: ResourceId,
        offset: u64,
        size: u64,
    ) -> Result<(), TransportError> {
        let resource = self
            .ctx
            .resource(res)
            .ok_or(TransportError::UnknownResource(res))?;
        self.reply.set(res, &resource, offset, size)
    }

    /// `vkSeekReplyCommandStreamMESA`.
    pub fn seek_reply_stream(&mut self, position: u64) -> Result<(), TransportError> {
        self.reply.seek(position)
    }

    /// Appends reply bytes at this stream's reply cursor. Rings publish `head` only
    /// after the command returns, so a reply written here is complete before the
    /// guest can see the command as done.
    pub fn write_reply(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.reply.write(bytes)
    }

    /// The reply target resource and cursor, if a reply stream is set.
    pub fn reply_position(&self) -> Option<(ResourceId, u64)> {
        self.reply.position()
    }

    /// `vkExecuteCommandStreamsMESA`: executes the commands in each shared-memory range
    /// in order, as if inline, on this stream. Nesting is an error.
    pub fn execute_command_streams(
        &mut self,
        streams: &[CommandStreamDesc],
        reply_positions: Option<&[u64]>,
    ) -> Result<(), ExecError> {
        if self.nested {
            return Err(TransportError::Nested.into());
        }
        if streams.is_empty() || reply_positions.is_some_and(|p| p.len() != streams.len()) {
            return Err(TransportError::BadStreamList.into());
        }
        self.nested = true;
        let result = self.execute_streams_inner(streams, reply_positions);
        self.nested = false;
        result
    }

    fn execute_streams_inner(
        &mut self,
        streams: &[CommandStreamDesc],
        reply_positions: Option<&[u64]>,
    ) -> Result<(), ExecError> {
        let executor = Arc::clone(&self.ctx.executor);
        for (i, desc) in streams.iter().enumerate() {
            if let Some(positions) = reply_positions {
                self.reply.seek(positions[i])?;
            }
            if desc.size == 0 {
                continue;
            }
            let bytes = self.ctx.copy_shmem_range(desc)?;
            run_commands(&*executor, self, &bytes, |_| {})?;
        }
        Ok(())
    }

    /// `vkCreateRingMESA` (context stream only): validates the layout and starts the
    /// ring's consumer thread (and the context's ALIVE monitor if requested).
    pub fn create_ring(
        &mut self,
        ring: RingId,
        info: &RingCreateInfo,
    ) -> Result<(), TransportError> {
        let ctx = Arc::clone(self.ctx);
        let rings = self.context_rings("vkCreateRingMESA")?;
        rings.create(&ctx, ring, info)
    }

    /// `vkDestroyRingMESA` (context stream only): stops and joins the ring thread.
    pub fn destroy_ring(&mut self, ring: RingId) -> Result<(), TransportError> {
        self.context_rings("vkDestroyRingMESA")?.destroy(ring)
    }

    /// `vkNotifyRingMESA` (context stream only): wakes an idle ring.
    pub fn notify_ring(&mut self, ring: RingId) -> Result<(), TransportError> {
        self.context_rings("vkNotifyRingMESA")?.get(ring)?.notify();
        Ok(())
    }

    /// `vkWriteRingExtraMESA` (context stream only): store-release into the ring's
    /// extra region.
    pub fn write_ring_extra(
        &mut self,
        ring: RingId,
        offset: u64,
        value: u32,
    ) -> Result<(), TransportError> {
        self.context_rings("vkWriteRingExtraMESA")?
            .get(ring)?
            .shared()
            .write_extra(offset, value)
    }

    /// `vkSubmitVirtqueueSeqnoMESA` (context stream only): records the ring's virtqueue
    /// seqno and wakes its waiters.
    pub fn submit_virtqueue_seqno(
        &mut self,
        ring: RingId,
        seqno: u64,
    ) -> Result<(), TransportError> {
        let handle = self
            .context_rings("vkSubmitVirtqueueSeqnoMESA")?
            .get(ring)?;
        handle.shared().submit_virtqueue_seqno(seqno);
        handle.notify();
        Ok(())
    }

    /// `vkWaitRingSeqnoMESA` (context stream only): blocks until the ring's head
    /// reaches `seqno` (wrap-aware).
    pub fn wait_ring_seqno(&mut self, ring: RingId, seqno: u64) -> Result<(), TransportError> {
        let ctx = Arc::clone(self.ctx);
        let shared = Arc::clone(
            self.context_rings("vkWaitRingSeqnoMESA")?
                .get(ring)?
                .shared(),
        );
        shared.wait_head(&ctx, seqno)
    }

    /// `vkWaitVirtqueueSeqnoMESA` (ring streams only): blocks this ring until the
    /// context stream has submitted virtqueue seqno `seqno` for it.
    pub fn wait_virtqueue_seqno(&mut self, seqno: u64) -> Result<(), TransportError> {
        match &self.origin {
            Origin::Ring { ring } => ring.wait_virtqueue_seqno(self.ctx, seqno),
            Origin::Context { .. } => Err(TransportError::WrongStream {
                command: "vkWaitVirtqueueSeqnoMESA",
                stream: StreamKind::Context,
            }),
        }
    }

    fn context_rings(&mut self, command: &'static str) -> Result<&mut RingTable, TransportError> {
        let stream = self.kind();
        match &mut self.origin {
            Origin::Context { rings } => Ok(rings),
            Origin::Ring { .. } => Err(TransportError::WrongStream { command, stream }),
        }
    }
}

/// Runs every command in `bytes` through `executor`, calling `after_each(end_offset)`
/// after each command. Stops at the first error or when the context turns fatal.
pub(crate) fn run_commands(
    executor: &dyn StreamExecutor,
    stream: &mut StreamCtx<'_>,
    bytes: &[u8],
    mut after_each: impl FnMut(usize),
) -> Result<(), ExecError> {
    let mut pos = 0;
    while pos < bytes.len() {
        if stream.ctx.should_stop() {
            return Err(ExecError::ContextFatal);
        }
        let available = bytes.len() - pos;
        let consumed = executor.execute_one(stream, &bytes[pos..])?;
        if consumed == 0 || consumed > available {
            return Err(ExecError::BadLength {
                consumed,
                available,
            });
        }
        pos += consumed;
        after_each(pos);
    }
    Ok(())
}
