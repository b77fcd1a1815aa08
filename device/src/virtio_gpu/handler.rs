//! The virtio-gpu command handler: one request in, one encoded response out, plus
//! fence bookkeeping. It knows nothing of vhost: requests come through
//! [`RequestReader`], guest memory through vm-memory, host-visible mappings through
//! [`ShmMapper`], and 3D work through [`RenderBackend`].
//!
//! Every guest-controlled count or size is checked against the bytes present in the
//! chain (or a documented cap) before anything is allocated; every failure is an
//! `ERR_*` response plus one log line whose level follows [`Severity`]: `debug` for a
//! well-formed request the device refuses, a rate-limited warning for malformed input
//! and host-side failures.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use vm_memory::GuestMemory;

use super::backing::{Backing, BackingError};
use super::display::{Cursor, CursorImage, Display, Frame, ScanoutId};
use super::fence::{FenceId, FenceQueue, Timeline};
use super::protocol::*;
use super::render::{
    BlobMemory, FenceSignals, FenceStatus, RenderBackend, RenderError, SubmitStatus, Ticket,
};
use crate::ids::{BlobId, CapsetId, ContextId, ResourceId, RingIdx};
use crate::ratelimit::RateLimiter;
use crate::renderer::{ContextError, ResourceError};

/// Page size for host-visible mappings.
pub const PAGE_SIZE: u64 = 4096;
/// Log target of the handler's messages (the same as its rate limiter's).
const LOG_TARGET: &str = "vgpu::virtio_gpu";

/// Reads the device-readable part of a descriptor chain.
pub trait RequestReader {
    /// Bytes left to read.
    fn available(&self) -> usize;
    /// Fills `buf` completely, or returns false (and the reader is then undefined).
    fn read_exact_into(&mut self, buf: &mut [u8]) -> bool;
}

/// A [`RequestReader`] over a byte slice (tests, harnesses).
#[derive(Debug)]
pub struct SliceReader<'a> {
    bytes: &'a [u8],
}

impl<'a> SliceReader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

impl RequestReader for SliceReader<'_> {
    fn available(&self) -> usize {
        self.bytes.len()
    }

    fn read_exact_into(&mut self, buf: &mut [u8]) -> bool {
        match self.bytes.split_at_checked(buf.len()) {
            Some((head, tail)) => {
                buf.copy_from_slice(head);
                self.bytes = tail;
                true
            }
            None => false,
        }
    }
}

/// Maps host memory into the guest's host-visible shared-memory region
/// (vhost-user SHMEM_MAP / SHMEM_UNMAP, or anything else a front door uses).
pub trait ShmMapper: Send + Sync {
    /// Maps `len` bytes of `fd` from `fd_offset` at `shm_offset` in region 1.
    fn map(
        &self,
        shm_offset: u64,
        fd: BorrowedFd<'_>,
        fd_offset: u64,
        len: u64,
        writable: bool,
    ) -> std::result::Result<(), String>;
    /// Unmaps exactly a range mapped before.
    fn unmap(&self, shm_offset: u64, len: u64) -> std::result::Result<(), String>;
}

/// Device configuration the handler needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerConfig {
    /// Scanouts (1..=16).
    pub num_scanouts: usize,
    /// Preferred mode.
    pub width: u32,
    /// Preferred mode.
    pub height: u32,
    /// Size of host-visible region 1 (0 = none: MAP_BLOB fails).
    pub shm_size: u64,
    /// Host memory for all 2D resources together.
    pub max_2d_bytes: u64,
    /// Largest width or height of a 2D resource.
    pub max_2d_dim: u32,
    /// Largest blob.
    pub max_blob_size: u64,
    /// Largest `nr_entries` of ATTACH_BACKING / CREATE_BLOB.
    pub max_backing_entries: u32,
    /// Largest SUBMIT_3D stream.
    pub max_submit_bytes: u32,
    /// Resources in all.
    pub max_resources: usize,
    /// Contexts in all.
    pub max_contexts: usize,
    /// Responses waiting for fences.
    pub max_parked: usize,
    /// SUBMIT_3D bytes queued to context threads and not yet run; above this the
    /// transport stops taking requests off the queue until some finish.
    pub max_inflight_bytes: u64,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            num_scanouts: 1,
            width: 1280,
            height: 800,
            shm_size: 1 << 30,
            max_2d_bytes: 512 << 20,
            max_2d_dim: 16384,
            max_blob_size: 1 << 30,
            max_backing_entries: 1 << 18,
            max_submit_bytes: 16 << 20,
            max_resources: 65536,
            max_contexts: 256,
            max_parked: 4096,
            max_inflight_bytes: 64 << 20,
        }
    }
}

/// Why a command failed; each maps to one `ERR_*` response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The request could not be decoded.
    #[error("malformed request")]
    Protocol(#[from] ProtocolError),
    /// The chain has no full header.
    #[error("chain holds {0} bytes, less than a header")]
    NoHeader(usize),
    /// Unknown or already-used resource id.
    #[error("invalid resource id {0}")]
    Resource(u32),
    /// Unknown scanout.
    #[error("invalid scanout id {0}")]
    Scanout(u32),
    /// Unknown or duplicate context.
    #[error("invalid context id {0}")]
    Context(u32),
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(&'static str),
    /// A guest-memory problem.
    #[error("bad guest backing")]
    Backing(#[from] BackingError),
    /// A cap was reached.
    #[error("out of memory: {0}")]
    OutOfMemory(&'static str),
    /// The command needs something this device does not have (virgl 3D resources).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The renderer failed.
    #[error("renderer failed")]
    Render(#[from] RenderError),
    /// The host-visible mapping failed.
    #[error("shared-memory mapping failed: {0}")]
    Map(String),
}

impl CommandError {
    /// The response code the guest gets.
    pub fn resp(&self) -> RespType {
        match self {
            CommandError::Protocol(ProtocolError::UnknownCommand(_))
            | CommandError::NoHeader(_)
            | CommandError::Unsupported(_)
            | CommandError::Map(_) => RespType::ErrUnspec,
            CommandError::Protocol(_) | CommandError::Parameter(_) | CommandError::Backing(_) => {
                RespType::ErrInvalidParameter
            }
            CommandError::Resource(_) => RespType::ErrInvalidResourceId,
            CommandError::Scanout(_) => RespType::ErrInvalidScanoutId,
            CommandError::Context(_) => RespType::ErrInvalidContextId,
            CommandError::OutOfMemory(_) => RespType::ErrOutOfMemory,
            CommandError::Render(RenderError::NoContext(_)) => RespType::ErrInvalidContextId,
            CommandError::Render(RenderError::UnsupportedCapset(_)) => {
                RespType::ErrInvalidParameter
            }
            // The VM's blob (fd) limit: out of memory, as a driver out of room says.
            CommandError::Render(RenderError::Core(ContextError::Resource(
                ResourceError::FdLimit(_),
            ))) => RespType::ErrOutOfMemory,
            CommandError::Render(_) => RespType::ErrUnspec,
        }
    }

    /// How the failure is logged.
    pub fn severity(&self) -> Severity {
        match self {
            CommandError::Resource(_)
            | CommandError::Scanout(_)
            | CommandError::Context(_)
            | CommandError::Parameter(_)
            | CommandError::Unsupported(_)
            | CommandError::Render(
                RenderError::NoContext(_)
                | RenderError::UnsupportedCapset(_)
                | RenderError::Core(
                    // A fatal context was reported once, when it turned fatal (a
                    // failed stream makes it fatal; the core logs that reason).
                    ContextError::Fatal(_)
                    | ContextError::Exec(_)
                    | ContextError::Resource(
                        ResourceError::BadSize { .. }
                        | ResourceError::Duplicate(_)
                        | ResourceError::Unknown(_)
                        // The fd budget logs its own rate-limited line naming the VM.
                        | ResourceError::FdLimit(_),
                    ),
                ),
            ) => Severity::Refused,
            CommandError::Protocol(_)
            | CommandError::NoHeader(_)
            | CommandError::Backing(
                BackingError::OutOfRange { .. }
                | BackingError::Overflow
                | BackingError::Short { .. },
            ) => Severity::Malformed,
            // A read of validated backing fails only if the memory table changed.
            CommandError::Backing(BackingError::Read(_))
            | CommandError::OutOfMemory(_)
            | CommandError::Map(_)
            | CommandError::Render(_) => Severity::Host,
        }
    }
}

/// How a failed command is logged (the house logging policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A well-formed request the device refuses: an unknown or taken id, an
    /// unsupported feature, a parameter out of range. Normal protocol traffic: `debug`.
    Refused,
    /// Input no correct driver sends: a short or garbled request, a value the spec
    /// forbids, a guest range outside guest memory or its backing. Rate-limited `warn`.
    Malformed,
    /// The host failed (renderer, mapping, guest memory), or a configured cap was
    /// reached. Rate-limited `warn`.
    Host,
}

type CmdResult<T> = std::result::Result<T, CommandError>;

/// One used-ring entry to return once its fence has signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedToken {
    /// Queue index.
    pub queue: u16,
    /// Descriptor head.
    pub head: u16,
    /// Bytes written.
    pub len: u32,
}

/// The encoded response and, for fenced commands, the fence to wait for.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// Response header and body (empty while `pending`).
    pub bytes: Vec<u8>,
    /// Fence to wait for before returning the descriptor.
    pub fence: Option<(Timeline, FenceId)>,
    /// The command runs later: keep the descriptor until [`GpuHandler::poll`] returns
    /// a [`Finished`] with this ticket, then write its bytes.
    pub pending: Option<Ticket>,
}

/// A queued command that has run: its response, and the fence it still waits for.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    /// The ticket [`Reply::pending`] named.
    pub ticket: Ticket,
    /// Response header and body.
    pub bytes: Vec<u8>,
    /// Fence to park the descriptor behind (as [`Reply::fence`]).
    pub fence: Option<(Timeline, FenceId)>,
}

/// What [`GpuHandler::poll`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Queued commands that finished, in the order they finished.
    pub finished: Vec<Finished>,
    /// Descriptors whose fences have signalled, in release order.
    pub released: Vec<UsedToken>,
}

/// Queued SUBMIT_3D bytes: per context id, and the total (kept, not summed, since it
/// is read for every SUBMIT_3D).
#[derive(Debug, Default)]
struct Inflight {
    total: u64,
    by_ctx: HashMap<u32, u64>,
}

impl Inflight {
    fn add(&mut self, ctx: u32, bytes: u64) {
        self.total = self.total.saturating_add(bytes);
        let mine = self.by_ctx.entry(ctx).or_default();
        *mine = mine.saturating_add(bytes);
    }

    fn sub(&mut self, ctx: u32, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
        if let Some(mine) = self.by_ctx.get_mut(&ctx) {
            *mine = mine.saturating_sub(bytes);
            if *mine == 0 {
                self.by_ctx.remove(&ctx);
            }
        }
    }

    /// `ctx` is under `max` and all contexts together under four times that.
    fn allows(&self, ctx: u32, max: u64) -> bool {
        let mine = self.by_ctx.get(&ctx).copied().unwrap_or(0);
        mine < max && self.total < max.saturating_mul(4)
    }
}

/// A SUBMIT_3D queued to its context's thread.
#[derive(Debug)]
struct Deferred {
    hdr: CtrlHdr,
    fence: Option<(Timeline, FenceId)>,
    bytes: u64,
}

#[derive(Debug)]
struct Resource2d {
    format: Format,
    width: u32,
    height: u32,
    /// Host copy, `width * height * 4` bytes (bounded by `max_2d_bytes`).
    pixels: Vec<u8>,
}

#[derive(Debug)]
enum ResKind {
    TwoD(Resource2d),
    Blob {
        mem: BlobMem,
        flags: u32,
        size: u64,
        /// HOST3D memory and the context that created it.
        host: Option<(ContextId, Arc<dyn BlobMemory>)>,
        /// Mapped at this offset of region 1, with this length.
        mapped: Option<(u64, u64)>,
    },
}

#[derive(Debug)]
struct GpuResource {
    kind: ResKind,
    backing: Option<Backing>,
    uuid: Option<[u8; 16]>,
    contexts: BTreeSet<ContextId>,
}

#[derive(Clone, Copy, Debug)]
enum ScanoutSource {
    Resource2d,
    Blob {
        format: Format,
        stride: u32,
        offset: u32,
    },
}

/// The virtio-gpu device state and command processor.
pub struct GpuHandler {
    config: HandlerConfig,
    render: Box<dyn RenderBackend>,
    mapper: Option<Arc<dyn ShmMapper>>,
    signals: FenceSignals,
    fences: FenceQueue<UsedToken>,
    display: Display,
    sources: Vec<Option<ScanoutSource>>,
    resources: HashMap<u32, GpuResource>,
    contexts: BTreeSet<ContextId>,
    bytes_2d: u64,
    uuid_seed: u64,
    /// Last [`Cursor::generation`] handed out (kept across resets).
    cursor_generation: u64,
    warn: RateLimiter,
    deferred: HashMap<Ticket, Deferred>,
    next_ticket: u64,
    /// Set by the SUBMIT_3D arm when the renderer queued the stream.
    queued: Option<(Ticket, u64)>,
    inflight: Inflight,
    /// Descriptors released while processing a request (not yet handed out).
    ready: Vec<UsedToken>,
}

impl std::fmt::Debug for GpuHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuHandler")
            .field("resources", &self.resources.len())
            .field("contexts", &self.contexts.len())
            .field("parked", &self.fences.parked())
            .finish_non_exhaustive()
    }
}

fn read_exact(req: &mut dyn RequestReader, n: usize, cmd: CommandType) -> CmdResult<Vec<u8>> {
    let have = req.available();
    if have < n {
        return Err(ProtocolError::Short { cmd, need: n, have }.into());
    }
    // `n` is bounded by the bytes present in the chain.
    let mut buf = vec![0u8; n];
    if !req.read_exact_into(&mut buf) {
        return Err(ProtocolError::Short { cmd, need: n, have }.into());
    }
    Ok(buf)
}

impl GpuHandler {
    /// A device with `render` for 3D work; `signals` is where it reports late fences.
    pub fn new(
        config: HandlerConfig,
        render: Box<dyn RenderBackend>,
        signals: FenceSignals,
    ) -> Self {
        let display = Display::new(config.num_scanouts, config.width, config.height);
        let sources = vec![None; display.len()];
        let uuid_seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(u64::from(std::process::id()));
            h.finish()
        };
        Self {
            fences: FenceQueue::new(config.max_parked),
            config,
            render,
            mapper: None,
            signals,
            display,
            sources,
            resources: HashMap::new(),
            contexts: BTreeSet::new(),
            bytes_2d: 0,
            uuid_seed,
            cursor_generation: 0,
            warn: RateLimiter::new("vgpu::virtio_gpu", Duration::from_secs(5), 10),
            deferred: HashMap::new(),
            next_ticket: 1,
            queued: None,
            inflight: Inflight::default(),
            ready: Vec::new(),
        }
    }

    /// Installs (or replaces) the host-visible mapper.
    pub fn set_mapper(&mut self, mapper: Arc<dyn ShmMapper>) {
        self.mapper = Some(mapper);
    }

    /// Number of capsets (config space `num_capsets`).
    pub fn num_capsets(&self) -> usize {
        self.render.capsets().len()
    }

    /// Number of scanouts.
    pub fn num_scanouts(&self) -> usize {
        self.display.len()
    }

    /// The display (last frames, cursor, PNG output).
    pub fn display(&self) -> &Display {
        &self.display
    }

    /// Processes one request and encodes its response.
    pub fn process<M: GuestMemory>(&mut self, mem: &M, req: &mut dyn RequestReader) -> Reply {
        let mut hdr_bytes = [0u8; CTRL_HDR_SIZE];
        if req.available() < CTRL_HDR_SIZE || !req.read_exact_into(&mut hdr_bytes) {
            let err = CommandError::NoHeader(req.available());
            self.log_failure(format_args!(""), &err);
            return Reply {
                bytes: Response::Err(err.resp()).encode(&CtrlHdr::default()),
                fence: None,
                pending: None,
            };
        }
        let hdr = CtrlHdr::parse(&hdr_bytes);
        self.queued = None;
        let result = self.dispatch(mem, &hdr, req);
        // Set only when the SUBMIT_3D arm succeeded.
        let queued = self.queued.take();
        let response = result.unwrap_or_else(|err| {
            self.log_failure(
                format_args!("command {:#x} (ctx {}): ", hdr.type_, hdr.ctx_id),
                &err,
            );
            Response::Err(err.resp())
        });
        let fence = if hdr.is_fenced() {
            let timeline = self.timeline(&hdr);
            let id = FenceId(hdr.fence_id);
            // Registered before the renderer can report it (reports are only read in
            // `poll`, on this thread), as done when the renderer says it already is.
            let status = self
                .render
                .create_fence(ContextId(hdr.ctx_id), timeline, id);
            let released = self
                .fences
                .create(timeline, id, status == FenceStatus::Signalled);
            self.ready.extend(released);
            Some((timeline, id))
        } else {
            None
        };
        if let Some((ticket, bytes)) = queued {
            self.deferred.insert(ticket, Deferred { hdr, fence, bytes });
            self.inflight.add(hdr.ctx_id, bytes);
            return Reply {
                bytes: Vec::new(),
                fence,
                pending: Some(ticket),
            };
        }
        Reply {
            bytes: response.encode(&hdr),
            fence,
            pending: None,
        }
    }

    /// Descriptors that became returnable while requests were processed (an earlier
    /// fence completed by a later one on the same ring). The transport returns them
    /// after each request.
    pub fn take_ready(&mut self) -> Vec<UsedToken> {
        std::mem::take(&mut self.ready)
    }

    /// Whether context `ctx` may queue another SUBMIT_3D now: its queued streams are
    /// under `max_inflight_bytes`, and all contexts' together under four times that.
    /// The transport holds a context's further SUBMIT_3D requests back (in order)
    /// while this is false, and keeps taking every other request.
    pub fn accepting(&self, ctx: u32) -> bool {
        self.inflight.allows(ctx, self.config.max_inflight_bytes)
    }

    /// Number of queued commands not yet finished.
    pub fn in_flight(&self) -> usize {
        self.deferred.len()
    }

    /// Logs a failed command (`what` prefixes the error) at its [`Severity`].
    fn log_failure(&self, what: std::fmt::Arguments<'_>, err: &CommandError) {
        match err.severity() {
            Severity::Refused => {
                log::debug!(target: LOG_TARGET, "virtio-gpu: {what}{}", crate::error_chain(err));
            }
            Severity::Malformed | Severity::Host => self.warn.warn(format_args!(
                "virtio-gpu: {what}{}",
                crate::error_chain(err)
            )),
        }
    }

    fn timeline(&self, hdr: &CtrlHdr) -> Timeline {
        let ctx = ContextId(hdr.ctx_id);
        if hdr.has_ring_idx() && hdr.ring_idx <= MAX_RING_IDX && self.contexts.contains(&ctx) {
            Timeline::Ring(ctx, RingIdx(u32::from(hdr.ring_idx)))
        } else {
            Timeline::Global
        }
    }

    /// Parks `token` behind `fence` (from [`Reply::fence`]); returns every token that
    /// may be returned to the guest now, in order (this one included if its fence has
    /// already signalled).
    pub fn complete(
        &mut self,
        fence: Option<(Timeline, FenceId)>,
        token: UsedToken,
    ) -> Vec<UsedToken> {
        let Some((timeline, id)) = fence else {
            return vec![token];
        };
        match self.fences.park(timeline, id, token) {
            Ok(Some(t)) => vec![t],
            Ok(None) => Vec::new(),
            Err((err, t)) => {
                self.warn.warn(format_args!(
                    "virtio-gpu: {err}; returning {timeline} {id} early"
                ));
                vec![t]
            }
        }
    }

    /// Collects what the renderer reported since the last call: queued commands that
    /// finished (write their bytes, then [`GpuHandler::complete`] them) and parked
    /// descriptors whose fences signalled.
    pub fn poll(&mut self) -> Polled {
        let mut out = Polled {
            released: self.take_ready(),
            ..Polled::default()
        };
        for (ticket, result) in self.signals.take_submitted() {
            let Some(d) = self.deferred.remove(&ticket) else {
                continue; // from before a reset
            };
            self.inflight.sub(d.hdr.ctx_id, d.bytes);
            let response = match result {
                Ok(()) => Response::OkNodata,
                Err(e) => {
                    let err = CommandError::Render(e);
                    self.log_failure(format_args!("SUBMIT_3D (ctx {}): ", d.hdr.ctx_id), &err);
                    Response::Err(err.resp())
                }
            };
            out.finished.push(Finished {
                ticket,
                bytes: response.encode(&d.hdr),
                fence: d.fence,
            });
        }
        for (timeline, id) in self.signals.take() {
            out.released.extend(self.fences.signal(timeline, id));
        }
        out
    }

    /// Device reset: drops every resource, context, mapping and parked response
    /// (the returned tokens are stale after a reset; callers drop them).
    pub fn reset(&mut self) -> Vec<UsedToken> {
        let ids: Vec<u32> = self.resources.keys().copied().collect();
        for id in ids {
            self.unref(id);
        }
        for ctx in std::mem::take(&mut self.contexts) {
            self.render.destroy_context(ctx);
        }
        self.display = Display::new(
            self.config.num_scanouts,
            self.config.width,
            self.config.height,
        );
        self.sources = vec![None; self.display.len()];
        self.bytes_2d = 0;
        self.deferred.clear();
        self.inflight = Inflight::default();
        let mut released = std::mem::take(&mut self.ready);
        // Reports of the old contexts are stale.
        let _ = self.signals.take_submitted();
        let _ = self.signals.take();
        released.extend(self.fences.drain_all());
        released
    }

    fn dispatch<M: GuestMemory>(
        &mut self,
        mem: &M,
        hdr: &CtrlHdr,
        req: &mut dyn RequestReader,
    ) -> CmdResult<Response> {
        let cmd =
            CommandType::from_u32(hdr.type_).ok_or(ProtocolError::UnknownCommand(hdr.type_))?;
        if hdr.has_ring_idx() && hdr.ring_idx > MAX_RING_IDX {
            return Err(CommandError::Parameter("ring_idx above 63"));
        }
        let body = read_exact(req, fixed_size(cmd), cmd)?;
        let request = Request::decode(cmd, &body)?;
        let ctx = ContextId(hdr.ctx_id);
        match request {
            Request::GetDisplayInfo => Ok(Response::DisplayInfo(self.display.info())),
            Request::GetEdid { scanout } => self
                .display
                .edid(ScanoutId(scanout))
                .map(|e| Response::Edid(e.to_vec()))
                .ok_or(CommandError::Scanout(scanout)),
            Request::GetCapsetInfo { capset_index } => {
                let c = usize::try_from(capset_index)
                    .ok()
                    .and_then(|i| self.render.capsets().get(i))
                    .ok_or(CommandError::Parameter("capset index out of range"))?;
                Ok(Response::CapsetInfo {
                    capset_id: c.id.0,
                    max_version: c.max_version,
                    max_size: u32::try_from(c.bytes.len()).unwrap_or(u32::MAX),
                })
            }
            Request::GetCapset(g) => {
                let c = self
                    .render
                    .capsets()
                    .iter()
                    .find(|c| c.id == CapsetId(g.capset_id))
                    .ok_or(CommandError::Parameter("unknown capset id"))?;
                if g.capset_version > c.max_version {
                    return Err(CommandError::Parameter("capset version too high"));
                }
                Ok(Response::Capset(c.bytes.clone()))
            }
            Request::ResourceCreate2d(c) => self.create_2d(c),
            Request::ResourceUnref { resource_id } => {
                self.resources
                    .get(&resource_id)
                    .ok_or(CommandError::Resource(resource_id))?;
                self.unref(resource_id);
                Ok(Response::OkNodata)
            }
            Request::AttachBacking(a) => {
                let res = self
                    .resources
                    .get(&a.resource_id)
                    .ok_or(CommandError::Resource(a.resource_id))?;
                if res.backing.is_some() {
                    return Err(CommandError::Parameter("backing already attached"));
                }
                if !matches!(res.kind, ResKind::TwoD(_)) {
                    return Err(CommandError::Parameter("attach backing to a blob"));
                }
                let backing = self.read_backing(mem, req, a.nr_entries, cmd)?;
                if let Some(res) = self.resources.get_mut(&a.resource_id) {
                    res.backing = Some(backing);
                }
                Ok(Response::OkNodata)
            }
            Request::DetachBacking { resource_id } => {
                let res = self
                    .resources
                    .get_mut(&resource_id)
                    .ok_or(CommandError::Resource(resource_id))?;
                if !matches!(res.kind, ResKind::TwoD(_)) || res.backing.take().is_none() {
                    return Err(CommandError::Parameter("no backing attached"));
                }
                Ok(Response::OkNodata)
            }
            Request::TransferToHost2d(t) => self.transfer_to_host_2d(mem, t),
            Request::SetScanout(s) => self.set_scanout(mem, s),
            Request::SetScanoutBlob(s) => self.set_scanout_blob(mem, s),
            Request::ResourceFlush(f) => self.flush(mem, f),
            Request::AssignUuid { resource_id } => {
                let seed = self.uuid_seed;
                let res = self
                    .resources
                    .get_mut(&resource_id)
                    .ok_or(CommandError::Resource(resource_id))?;
                let uuid = *res.uuid.get_or_insert_with(|| {
                    let mut u = [0u8; 16];
                    u[..8].copy_from_slice(&seed.to_le_bytes());
                    u[8..12].copy_from_slice(&resource_id.to_le_bytes());
                    u[6] = (u[6] & 0x0f) | 0x40;
                    u[8] = (u[8] & 0x3f) | 0x80;
                    u
                });
                Ok(Response::ResourceUuid(uuid))
            }
            Request::CtxCreate(c) => {
                if ctx.0 == 0 || self.contexts.contains(&ctx) {
                    return Err(CommandError::Context(ctx.0));
                }
                if self.contexts.len() >= self.config.max_contexts {
                    return Err(CommandError::OutOfMemory("context limit"));
                }
                let capset = match c.capset_id() {
                    0 => self
                        .render
                        .capsets()
                        .first()
                        .map(|c| c.id)
                        .ok_or(CommandError::Unsupported("no capsets"))?,
                    id => CapsetId(id),
                };
                if !self.render.capsets().iter().any(|c| c.id == capset) {
                    return Err(CommandError::Parameter("capset not offered"));
                }
                self.render.create_context(ctx, capset, &c.name())?;
                self.contexts.insert(ctx);
                Ok(Response::OkNodata)
            }
            Request::CtxDestroy => {
                if !self.contexts.remove(&ctx) {
                    return Err(CommandError::Context(ctx.0));
                }
                self.destroy_context_blobs(ctx);
                self.render.destroy_context(ctx);
                // Responses parked on the context's rings go back now: every
                // descriptor is answered, and the renderer has nothing left of it.
                let parked = self.fences.drop_context(ctx);
                self.ready.extend(parked);
                Ok(Response::OkNodata)
            }
            Request::CtxAttachResource { resource_id }
            | Request::CtxDetachResource { resource_id } => {
                if !self.contexts.contains(&ctx) {
                    return Err(CommandError::Context(ctx.0));
                }
                let res = self
                    .resources
                    .get_mut(&resource_id)
                    .ok_or(CommandError::Resource(resource_id))?;
                // Host memory another context created becomes visible in this one's
                // resource table (shared blobs; Linux attaches on PRIME import).
                let owner = match &res.kind {
                    ResKind::Blob {
                        host: Some((owner, _)),
                        ..
                    } if *owner != ctx => Some(*owner),
                    _ => None,
                };
                let id = ResourceId(resource_id);
                if matches!(request, Request::CtxAttachResource { .. }) {
                    if let Some(owner) = owner {
                        if !res.contexts.contains(&ctx) {
                            self.render.attach_blob(owner, id, ctx)?;
                        }
                    }
                    res.contexts.insert(ctx);
                } else {
                    if owner.is_some() && res.contexts.contains(&ctx) {
                        self.render.detach_blob(id, ctx);
                    }
                    res.contexts.remove(&ctx);
                }
                Ok(Response::OkNodata)
            }
            Request::ResourceCreate3d(_)
            | Request::TransferToHost3d(_)
            | Request::TransferFromHost3d(_) => Err(CommandError::Unsupported(
                "virgl 3D resources (no virgl capset is offered)",
            )),
            Request::Submit3d(s) => {
                if !self.contexts.contains(&ctx) {
                    return Err(CommandError::Context(ctx.0));
                }
                let fences_bytes = usize::try_from(s.num_in_fences)
                    .ok()
                    .and_then(|n| n.checked_mul(8))
                    .ok_or(CommandError::Parameter("num_in_fences overflows"))?;
                let size = usize::try_from(s.size)
                    .map_err(|_| CommandError::Parameter("size overflows"))?;
                if s.size > self.config.max_submit_bytes {
                    return Err(CommandError::Parameter(
                        "stream larger than max_submit_bytes",
                    ));
                }
                match fences_bytes.checked_add(size) {
                    Some(total) if total <= req.available() => {}
                    _ => return Err(CommandError::Parameter("stream larger than the chain")),
                }
                if fences_bytes > 0 {
                    // In-fence ids (crosvm's extension) order work we already run in
                    // order; skip them.
                    read_exact(req, fences_bytes, cmd)?;
                }
                let stream = read_exact(req, size, cmd)?;
                let ticket = Ticket(self.next_ticket);
                self.next_ticket = self.next_ticket.wrapping_add(1);
                if self.render.submit(ctx, ticket, stream)? == SubmitStatus::Queued {
                    self.queued = Some((ticket, u64::from(s.size)));
                }
                Ok(Response::OkNodata)
            }
            Request::CreateBlob(b) => self.create_blob(mem, req, ctx, b, cmd),
            Request::MapBlob(m) => self.map_blob(m),
            Request::UnmapBlob { resource_id } => {
                let res = self
                    .resources
                    .get_mut(&resource_id)
                    .ok_or(CommandError::Resource(resource_id))?;
                let ResKind::Blob { mapped, .. } = &mut res.kind else {
                    return Err(CommandError::Parameter("not a blob"));
                };
                let (offset, len) = mapped.ok_or(CommandError::Parameter("blob not mapped"))?;
                let mapper = self
                    .mapper
                    .as_ref()
                    .ok_or(CommandError::Map("no mapper".into()))?;
                mapper.unmap(offset, len).map_err(CommandError::Map)?;
                *mapped = None;
                Ok(Response::OkNodata)
            }
            Request::UpdateCursor(u) => self.update_cursor(u),
            Request::MoveCursor(u) => {
                let s = self
                    .display
                    .get_mut(ScanoutId(u.scanout_id))
                    .ok_or(CommandError::Scanout(u.scanout_id))?;
                s.cursor.x = u.x;
                s.cursor.y = u.y;
                Ok(Response::OkNodata)
            }
        }
    }

    /// UPDATE_CURSOR: position, hot spot, and a copy of the image as it is now (the
    /// guest transfers the image before this command and may reuse the resource).
    fn update_cursor(&mut self, u: UpdateCursor) -> CmdResult<Response> {
        if u.resource_id != 0 && !self.resources.contains_key(&u.resource_id) {
            return Err(CommandError::Resource(u.resource_id));
        }
        if self.display.get(ScanoutId(u.scanout_id)).is_none() {
            return Err(CommandError::Scanout(u.scanout_id));
        }
        let image = self.cursor_image(u.resource_id);
        // Wrapping: a serial only compared for equality; it outlives resets so a
        // display consumer never mistakes a new image for the one it already has.
        self.cursor_generation = self.cursor_generation.wrapping_add(1);
        let generation = self.cursor_generation;
        let s = self
            .display
            .get_mut(ScanoutId(u.scanout_id))
            .ok_or(CommandError::Scanout(u.scanout_id))?;
        s.cursor = Cursor {
            resource_id: u.resource_id,
            x: u.x,
            y: u.y,
            hot_x: u.hot_x,
            hot_y: u.hot_y,
            image,
            generation,
        };
        Ok(Response::OkNodata)
    }

    /// The 64 × 64 image of cursor resource `id`: `None` for 0 (hidden) and for
    /// blobs, whose pixels the device does not keep (a GUEST blob could be read from
    /// guest memory, but the Linux driver's cursors are 2D resources).
    fn cursor_image(&self, id: u32) -> Option<CursorImage> {
        match &self.resources.get(&id)?.kind {
            ResKind::TwoD(r) => Some(CursorImage::capture(r.format, r.width, r.height, &r.pixels)),
            ResKind::Blob { .. } => {
                log::debug!("virtio-gpu: cursor res{id} is a blob; its image is not forwarded");
                None
            }
        }
    }

    fn read_backing<M: GuestMemory>(
        &self,
        mem: &M,
        req: &mut dyn RequestReader,
        nr_entries: u32,
        cmd: CommandType,
    ) -> CmdResult<Backing> {
        if nr_entries > self.config.max_backing_entries {
            return Err(CommandError::Parameter(
                "nr_entries above max_backing_entries",
            ));
        }
        let n = usize::try_from(nr_entries)
            .ok()
            .and_then(|n| n.checked_mul(MEM_ENTRY_SIZE))
            .ok_or(CommandError::Parameter("nr_entries overflows"))?;
        // Bounded by the bytes present (read_exact checks before allocating).
        let raw = read_exact(req, n, cmd)?;
        let entries: Vec<MemEntry> = raw
            .chunks_exact(MEM_ENTRY_SIZE)
            .filter_map(|c| <&[u8; MEM_ENTRY_SIZE]>::try_from(c).ok())
            .map(MemEntry::parse)
            .collect();
        Ok(Backing::new(mem, &entries)?)
    }

    fn check_new_id(&self, id: u32) -> CmdResult<()> {
        if id == 0 || self.resources.contains_key(&id) {
            return Err(CommandError::Resource(id));
        }
        if self.resources.len() >= self.config.max_resources {
            return Err(CommandError::OutOfMemory("resource limit"));
        }
        Ok(())
    }

    fn create_2d(&mut self, c: ResourceCreate2d) -> CmdResult<Response> {
        self.check_new_id(c.resource_id)?;
        if c.width == 0
            || c.height == 0
            || c.width > self.config.max_2d_dim
            || c.height > self.config.max_2d_dim
        {
            return Err(CommandError::Parameter("2D size out of range"));
        }
        let bytes = u64::from(c.width)
            .checked_mul(u64::from(c.height))
            .and_then(|p| p.checked_mul(u64::from(Format::BYTES_PER_PIXEL)))
            .ok_or(CommandError::Parameter("2D size overflows"))?;
        let total = self
            .bytes_2d
            .checked_add(bytes)
            .filter(|t| *t <= self.config.max_2d_bytes)
            .ok_or(CommandError::OutOfMemory("2D memory budget"))?;
        let len = usize::try_from(bytes).map_err(|_| CommandError::OutOfMemory("2D size"))?;
        self.bytes_2d = total;
        self.resources.insert(
            c.resource_id,
            GpuResource {
                kind: ResKind::TwoD(Resource2d {
                    format: c.format,
                    width: c.width,
                    height: c.height,
                    pixels: vec![0; len],
                }),
                backing: None,
                uuid: None,
                contexts: BTreeSet::new(),
            },
        );
        Ok(Response::OkNodata)
    }

    fn unref(&mut self, id: u32) {
        let Some(res) = self.resources.remove(&id) else {
            return;
        };
        self.display.forget_resource(id);
        for (i, src) in self.sources.iter_mut().enumerate() {
            if self
                .display
                .get(ScanoutId(u32::try_from(i).unwrap_or(u32::MAX)))
                .is_some_and(|s| s.resource_id == 0)
            {
                *src = None;
            }
        }
        match res.kind {
            ResKind::TwoD(r) => {
                self.bytes_2d = self.bytes_2d.saturating_sub(r.pixels.len() as u64);
            }
            ResKind::Blob { host, mapped, .. } => {
                if let (Some((offset, len)), Some(m)) = (mapped, &self.mapper) {
                    if let Err(e) = m.unmap(offset, len) {
                        log::debug!("virtio-gpu: unmapping res{id} on unref failed: {e}");
                    }
                }
                if let Some((owner, _)) = host {
                    for &ctx in res.contexts.iter().filter(|&&c| c != owner) {
                        self.render.detach_blob(ResourceId(id), ctx);
                    }
                    self.render.destroy_blob(owner, ResourceId(id));
                }
            }
        }
    }

    fn destroy_context_blobs(&mut self, ctx: ContextId) {
        let ids: Vec<u32> = self
            .resources
            .iter()
            .filter(
                |(_, r)| matches!(&r.kind, ResKind::Blob { host: Some((c, _)), .. } if *c == ctx),
            )
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            // The blob's memory dies with its context; the resource id stays valid
            // for UNREF, which then has nothing left to release.
            if let Some(GpuResource {
                kind: ResKind::Blob { host, mapped, .. },
                contexts,
                ..
            }) = self.resources.get_mut(&id)
            {
                if let (Some((offset, len)), Some(m)) = (mapped.take(), &self.mapper) {
                    let _ = m.unmap(offset, len);
                }
                *host = None;
                // Contexts it was shared with let go of it too.
                for &other in contexts.iter().filter(|&&c| c != ctx) {
                    self.render.detach_blob(ResourceId(id), other);
                }
                contexts.clear();
            }
            self.render.destroy_blob(ctx, ResourceId(id));
        }
        for res in self.resources.values_mut() {
            res.contexts.remove(&ctx);
        }
    }

    fn transfer_to_host_2d<M: GuestMemory>(
        &mut self,
        mem: &M,
        t: TransferToHost2d,
    ) -> CmdResult<Response> {
        let res = self
            .resources
            .get_mut(&t.resource_id)
            .ok_or(CommandError::Resource(t.resource_id))?;
        let ResKind::TwoD(r) = &mut res.kind else {
            return Err(CommandError::Parameter("transfer to a blob"));
        };
        let backing = res
            .backing
            .as_ref()
            .ok_or(CommandError::Parameter("no backing attached"))?;
        if !t.r.fits_in(r.width, r.height) {
            return Err(CommandError::Parameter("rectangle outside resource"));
        }
        if t.r.is_empty() {
            return Ok(Response::OkNodata);
        }
        let bpp = u64::from(Format::BYTES_PER_PIXEL);
        let stride = u64::from(r.width) * bpp;
        let row = usize::try_from(u64::from(t.r.width) * bpp)
            .map_err(|_| CommandError::Parameter("row too long"))?;
        // The whole source range must be inside the backing before anything is copied.
        let last = t
            .offset
            .checked_add(stride * u64::from(t.r.height - 1))
            .and_then(|o| o.checked_add(row as u64))
            .ok_or(CommandError::Parameter("transfer offset overflows"))?;
        if last > backing.len() {
            return Err(CommandError::Parameter("transfer reads past the backing"));
        }
        for h in 0..u64::from(t.r.height) {
            let src = t.offset + stride * h;
            let dst = usize::try_from((u64::from(t.r.y) + h) * stride + u64::from(t.r.x) * bpp)
                .map_err(|_| CommandError::Parameter("offset overflows"))?;
            let out = r
                .pixels
                .get_mut(dst..dst + row)
                .ok_or(CommandError::Parameter("rectangle outside resource"))?;
            backing.read(mem, src, out)?;
        }
        Ok(Response::OkNodata)
    }

    fn scanout_index(&self, id: u32) -> CmdResult<usize> {
        usize::try_from(id)
            .ok()
            .filter(|i| *i < self.display.len())
            .ok_or(CommandError::Scanout(id))
    }

    fn disable_scanout(&mut self, i: usize) {
        if let Some(s) = self
            .display
            .get_mut(ScanoutId(u32::try_from(i).unwrap_or(u32::MAX)))
        {
            s.resource_id = 0;
            s.frame = None;
        }
        if let Some(src) = self.sources.get_mut(i) {
            *src = None;
        }
    }

    fn set_scanout<M: GuestMemory>(&mut self, mem: &M, s: SetScanout) -> CmdResult<Response> {
        let i = self.scanout_index(s.scanout_id)?;
        if s.resource_id == 0 || s.r.is_empty() {
            self.disable_scanout(i);
            return Ok(Response::OkNodata);
        }
        let res = self
            .resources
            .get(&s.resource_id)
            .ok_or(CommandError::Resource(s.resource_id))?;
        let ResKind::TwoD(r) = &res.kind else {
            return Err(CommandError::Parameter("SET_SCANOUT of a blob"));
        };
        if !s.r.fits_in(r.width, r.height) {
            return Err(CommandError::Parameter(
                "scanout rectangle outside resource",
            ));
        }
        self.show(i, s.resource_id, s.r, ScanoutSource::Resource2d);
        self.refresh(mem, i);
        Ok(Response::OkNodata)
    }

    fn set_scanout_blob<M: GuestMemory>(
        &mut self,
        mem: &M,
        s: SetScanoutBlob,
    ) -> CmdResult<Response> {
        let i = self.scanout_index(s.scanout_id)?;
        if s.resource_id == 0 || s.r.is_empty() {
            self.disable_scanout(i);
            return Ok(Response::OkNodata);
        }
        let res = self
            .resources
            .get(&s.resource_id)
            .ok_or(CommandError::Resource(s.resource_id))?;
        let ResKind::Blob { size, .. } = &res.kind else {
            return Err(CommandError::Parameter("SET_SCANOUT_BLOB of a 2D resource"));
        };
        let format = Format::from_u32(s.format).ok_or(CommandError::Parameter("format"))?;
        if s.width == 0 || s.height == 0 || !s.r.fits_in(s.width, s.height) {
            return Err(CommandError::Parameter("scanout rectangle outside surface"));
        }
        let row = u64::from(s.width) * u64::from(Format::BYTES_PER_PIXEL);
        if u64::from(s.strides[0]) < row {
            return Err(CommandError::Parameter("stride below width"));
        }
        let end = u64::from(s.strides[0])
            .checked_mul(u64::from(s.height - 1))
            .and_then(|v| v.checked_add(u64::from(s.offsets[0])))
            .and_then(|v| v.checked_add(row));
        if end.is_none_or(|e| e > *size) {
            return Err(CommandError::Parameter("surface larger than blob"));
        }
        self.show(
            i,
            s.resource_id,
            s.r,
            ScanoutSource::Blob {
                format,
                stride: s.strides[0],
                offset: s.offsets[0],
            },
        );
        self.refresh(mem, i);
        Ok(Response::OkNodata)
    }

    fn show(&mut self, i: usize, resource_id: u32, rect: Rect, src: ScanoutSource) {
        if let Some(sc) = self
            .display
            .get_mut(ScanoutId(u32::try_from(i).unwrap_or(u32::MAX)))
        {
            sc.resource_id = resource_id;
            sc.rect = rect;
        }
        if let Some(slot) = self.sources.get_mut(i) {
            *slot = Some(src);
        }
    }

    fn flush<M: GuestMemory>(&mut self, mem: &M, f: ResourceFlush) -> CmdResult<Response> {
        let res = self
            .resources
            .get(&f.resource_id)
            .ok_or(CommandError::Resource(f.resource_id))?;
        let fits = match &res.kind {
            ResKind::TwoD(r) => f.r.fits_in(r.width, r.height),
            ResKind::Blob { .. } => true,
        };
        if !fits {
            return Err(CommandError::Parameter("flush rectangle outside resource"));
        }
        let showing: Vec<ScanoutId> = self.display.showing(f.resource_id).collect();
        for s in showing {
            if let Ok(i) = usize::try_from(s.0) {
                self.refresh_region(mem, i, Some(f.r));
            }
        }
        Ok(Response::OkNodata)
    }

    /// Re-reads a scanout's visible rectangle into its frame.
    fn refresh<M: GuestMemory>(&mut self, mem: &M, i: usize) {
        self.refresh_region(mem, i, None);
    }

    /// Re-reads the part of scanout `i` that `damage` (resource coordinates) covers;
    /// all of it when `damage` is `None` or the frame is missing or of another size.
    /// A RESOURCE_FLUSH re-reads only its rectangle: a console that flushes one line of
    /// text must not cost a whole-frame conversion per flush (that made each flush
    /// take up to a second on a loaded host, and queued the guest's other requests
    /// behind them).
    fn refresh_region<M: GuestMemory>(&mut self, mem: &M, i: usize, damage: Option<Rect>) {
        let id = ScanoutId(u32::try_from(i).unwrap_or(u32::MAX));
        let (Some(sc), Some(Some(src))) = (self.display.get(id), self.sources.get(i)) else {
            return;
        };
        let (rect, res_id, src) = (sc.rect, sc.resource_id, *src);
        let Some(res) = self.resources.get(&res_id) else {
            return;
        };
        let px = |w: u32| usize::try_from(w).unwrap_or(0);
        // The frame to update and the area of it to re-read (frame coordinates).
        let reuse = damage.and_then(|d| {
            let frame = sc.frame.as_ref()?;
            (frame.width == rect.width && frame.height == rect.height)
                .then(|| intersect_in(rect, d))
        });
        let (mut rgba, area) = match reuse {
            Some(None) => return, // the damage is outside what the scanout shows
            Some(Some(area)) => match self.display.get_mut(id).and_then(|sc| sc.frame.take()) {
                Some(f) => (f.rgba, area),
                None => return,
            },
            None => (
                vec![0u8; px(rect.width) * px(rect.height) * 4],
                Rect {
                    x: 0,
                    y: 0,
                    width: rect.width,
                    height: rect.height,
                },
            ),
        };
        // Bounded: the rectangle was checked against the resource or blob at
        // SET_SCANOUT*, the resource exists, and `area` lies inside the rectangle.
        let frame_row = px(rect.width) * 4;
        let (ax, aw) = (px(area.x) * 4, px(area.width) * 4);
        let ok = match (&res.kind, src) {
            (ResKind::TwoD(r), ScanoutSource::Resource2d) => {
                let stride = px(r.width) * 4;
                let mut ok = true;
                for y in px(area.y)..px(area.y) + px(area.height) {
                    let row_start = (px(rect.y) + y) * stride + px(rect.x) * 4 + ax;
                    let out_start = y * frame_row + ax;
                    match (
                        r.pixels.get(row_start..row_start + aw),
                        rgba.get_mut(out_start..out_start + aw),
                    ) {
                        (Some(row), Some(out)) => convert_row(r.format, row, out),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                ok
            }
            (
                ResKind::Blob { host, .. },
                ScanoutSource::Blob {
                    format,
                    stride,
                    offset,
                    ..
                },
            ) => {
                let mut row = vec![0u8; aw];
                let mut ok = true;
                for y in px(area.y)..px(area.y) + px(area.height) {
                    let off = u64::from(offset)
                        + (u64::from(rect.y) + y as u64) * u64::from(stride)
                        + (u64::from(rect.x) + u64::from(area.x)) * 4;
                    let read = match (host, &res.backing) {
                        (Some((_, m)), _) => m.read(off, &mut row),
                        (None, Some(b)) => b.read(mem, off, &mut row).is_ok(),
                        (None, None) => false,
                    };
                    let out_start = y * frame_row + ax;
                    match rgba.get_mut(out_start..out_start + aw) {
                        Some(out) if read => convert_row(format, &row, out),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                ok
            }
            _ => false,
        };
        if !ok {
            self.warn
                .warn(format_args!("virtio-gpu: {id} cannot read res{res_id}"));
            if reuse.is_none() {
                return;
            }
        }
        if let Some(sc) = self.display.get_mut(id) {
            sc.frame = Some(Frame {
                width: rect.width,
                height: rect.height,
                rgba,
            });
        }
    }

    fn create_blob<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &mut dyn RequestReader,
        ctx: ContextId,
        b: ResourceCreateBlob,
        cmd: CommandType,
    ) -> CmdResult<Response> {
        self.check_new_id(b.resource_id)?;
        if b.size == 0 || b.size > self.config.max_blob_size {
            return Err(CommandError::Parameter("blob size out of range"));
        }
        // GUEST: guest pages only; HOST3D: context memory only; HOST3D_GUEST: context
        // memory plus guest pages kept with it, as virglrenderer does (Venus never
        // transfers between them).
        let host_side = matches!(b.blob_mem, BlobMem::Host3d | BlobMem::Host3dGuest);
        let guest_side = matches!(b.blob_mem, BlobMem::Guest | BlobMem::Host3dGuest);
        if host_side && !self.contexts.contains(&ctx) {
            return Err(CommandError::Context(ctx.0));
        }
        let backing = if guest_side {
            if b.nr_entries == 0 {
                return Err(CommandError::Parameter("blob without guest entries"));
            }
            let backing = self.read_backing(mem, req, b.nr_entries, cmd)?;
            if backing.len() < b.size {
                return Err(CommandError::Parameter("blob backing smaller than size"));
            }
            Some(backing)
        } else {
            if b.nr_entries != 0 {
                return Err(CommandError::Parameter("HOST3D blob with guest entries"));
            }
            None
        };
        let host = if host_side {
            let m = self.render.create_blob(
                ctx,
                ResourceId(b.resource_id),
                BlobId(b.blob_id),
                b.size,
            )?;
            Some((ctx, m))
        } else {
            None
        };
        self.resources.insert(
            b.resource_id,
            GpuResource {
                kind: ResKind::Blob {
                    mem: b.blob_mem,
                    flags: b.blob_flags,
                    size: b.size,
                    host,
                    mapped: None,
                },
                backing,
                uuid: None,
                contexts: if b.blob_mem == BlobMem::Guest {
                    BTreeSet::new()
                } else {
                    BTreeSet::from([ctx])
                },
            },
        );
        Ok(Response::OkNodata)
    }

    fn map_blob(&mut self, m: MapBlob) -> CmdResult<Response> {
        let shm_size = self.config.shm_size;
        // Existing mappings, to refuse overlaps (the spec forbids mapping over one).
        let taken: Vec<(u64, u64)> = self
            .resources
            .values()
            .filter_map(|r| match &r.kind {
                ResKind::Blob { mapped, .. } => *mapped,
                ResKind::TwoD(_) => None,
            })
            .collect();
        let mapper = self.mapper.clone();
        let res = self
            .resources
            .get_mut(&m.resource_id)
            .ok_or(CommandError::Resource(m.resource_id))?;
        let ResKind::Blob {
            flags,
            size,
            host,
            mapped,
            mem,
        } = &mut res.kind
        else {
            return Err(CommandError::Parameter("not a blob"));
        };
        if *flags & BLOB_FLAG_USE_MAPPABLE == 0 {
            return Err(CommandError::Parameter("blob not MAPPABLE"));
        }
        let Some((_, memory)) = host else {
            return Err(CommandError::Parameter(if *mem == BlobMem::Guest {
                "guest blobs are already in guest memory"
            } else {
                "blob has no host memory"
            }));
        };
        if mapped.is_some() {
            return Err(CommandError::Parameter("blob already mapped"));
        }
        let len = size
            .checked_add(PAGE_SIZE - 1)
            .map(|s| s & !(PAGE_SIZE - 1))
            .ok_or(CommandError::Parameter("size overflows"))?;
        if !m.offset.is_multiple_of(PAGE_SIZE)
            || m.offset.checked_add(len).is_none_or(|end| end > shm_size)
        {
            return Err(CommandError::Parameter(
                "offset outside host-visible region",
            ));
        }
        if taken
            .iter()
            .any(|(o, l)| m.offset < o.saturating_add(*l) && *o < m.offset + len)
        {
            return Err(CommandError::Parameter("mapping overlaps another"));
        }
        let mapper = mapper.ok_or(CommandError::Map("no host-visible region".into()))?;
        mapper
            .map(m.offset, memory.fd(), 0, len, true)
            .map_err(CommandError::Map)?;
        *mapped = Some((m.offset, len));
        Ok(Response::MapInfo(MAP_CACHE_CACHED))
    }
}

/// The part of `damage` (resource coordinates) inside `shown` (the scanout's
/// rectangle in the same coordinates), relative to `shown`; `None` if they do not
/// overlap.
fn intersect_in(shown: Rect, damage: Rect) -> Option<Rect> {
    let end = |o: u32, len: u32| u64::from(o) + u64::from(len);
    let x0 = shown.x.max(damage.x);
    let y0 = shown.y.max(damage.y);
    let x1 = end(shown.x, shown.width).min(end(damage.x, damage.width));
    let y1 = end(shown.y, shown.height).min(end(damage.y, damage.height));
    let width = u32::try_from(x1.checked_sub(u64::from(x0))?).ok()?;
    let height = u32::try_from(y1.checked_sub(u64::from(y0))?).ok()?;
    (width > 0 && height > 0).then_some(Rect {
        x: x0 - shown.x,
        y: y0 - shown.y,
        width,
        height,
    })
}

fn convert_row(format: Format, src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(4)) {
        let p = format.to_rgba([s[0], s[1], s[2], s[3]]);
        d.copy_from_slice(&p);
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
