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
//!
//! The handler is split by concern: [`GpuHandler`] and command dispatch here; request
//! reading in `read`, configuration in `config`, error policy in `error`, replies,
//! queued commands and fence parking in `reply`, the resource table in `resources`,
//! 2D resources and transfers in `resources2d`, scanouts in `scanout`, frame
//! conversion in `pixels`, the cursor in `cursor`, blobs and host-visible mappings in
//! `blob`, and contexts and SUBMIT_3D in `context`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use vm_memory::GuestMemory;

use super::display::{Display, ScanoutId};
use super::fence::{FenceId, FenceQueue};
use super::protocol::*;
use super::render::{FenceSignals, FenceStatus, RenderBackend, Ticket};
use crate::ids::{CapsetId, ContextId};
use crate::ratelimit::RateLimiter;

mod blob;
mod config;
mod context;
mod cursor;
mod error;
mod pixels;
mod read;
mod reply;
mod resources;
mod resources2d;
mod scanout;

pub use blob::{ShmMapper, PAGE_SIZE};
pub use config::HandlerConfig;
pub use error::{CommandError, Severity};
pub use read::{RequestReader, SliceReader};
pub use reply::{Finished, Polled, Reply, UsedToken};

use error::CmdResult;
use read::read_exact;
use reply::{Deferred, Inflight};
use resources::GpuResource;
use scanout::ScanoutSource;

/// Log target of the handler's messages (the same as its rate limiter's).
const LOG_TARGET: &str = "vgpu::virtio_gpu";

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
    /// Last [`Cursor::generation`](super::display::Cursor::generation) handed out (kept across resets).
    cursor_generation: u64,
    warn: RateLimiter,
    deferred: HashMap<Ticket, Deferred>,
    next_ticket: u64,
    /// Set by SUBMIT_3D (`submit_3d`) when the renderer queued the stream.
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
        // Set only when SUBMIT_3D (`submit_3d`) succeeded.
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
            Request::AttachBacking(a) => self.attach_backing(mem, req, a, cmd),
            Request::DetachBacking { resource_id } => self.detach_backing(resource_id),
            Request::TransferToHost2d(t) => self.transfer_to_host_2d(mem, t),
            Request::SetScanout(s) => self.set_scanout(mem, s),
            Request::SetScanoutBlob(s) => self.set_scanout_blob(mem, s),
            Request::ResourceFlush(f) => self.flush(mem, f),
            Request::AssignUuid { resource_id } => self.assign_uuid(resource_id),
            Request::CtxCreate(c) => self.ctx_create(ctx, c),
            Request::CtxDestroy => self.ctx_destroy(ctx),
            Request::CtxAttachResource { resource_id } => {
                self.ctx_attach_detach(ctx, resource_id, true)
            }
            Request::CtxDetachResource { resource_id } => {
                self.ctx_attach_detach(ctx, resource_id, false)
            }
            Request::ResourceCreate3d(_)
            | Request::TransferToHost3d(_)
            | Request::TransferFromHost3d(_) => Err(CommandError::Unsupported(
                "virgl 3D resources (no virgl capset is offered)",
            )),
            Request::Submit3d(s) => self.submit_3d(req, ctx, s, cmd),
            Request::CreateBlob(b) => self.create_blob(mem, req, ctx, b, cmd),
            Request::MapBlob(m) => self.map_blob(m),
            Request::UnmapBlob { resource_id } => self.unmap_blob(resource_id),
            Request::UpdateCursor(u) => self.update_cursor(u),
            Request::MoveCursor(u) => self.move_cursor(u),
        }
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
