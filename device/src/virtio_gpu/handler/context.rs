//! Contexts: CTX_CREATE / CTX_DESTROY, resources attached to and detached from a
//! context (shared host blobs), and SUBMIT_3D streams handed to the renderer.

use super::error::{CmdResult, CommandError};
use super::read::{read_exact, RequestReader};
use super::resources::{GpuResource, ResKind};
use super::GpuHandler;
use crate::ids::{CapsetId, ContextId, ResourceId};
use crate::virtio_gpu::protocol::{CommandType, CtxCreate, Response, Submit3d};
use crate::virtio_gpu::render::{SubmitStatus, Ticket};

impl GpuHandler {
    /// CTX_CREATE: a new context on an offered capset (0: the first one).
    pub(super) fn ctx_create(&mut self, ctx: ContextId, c: CtxCreate) -> CmdResult<Response> {
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

    /// CTX_DESTROY: the context, its blobs' memory, and the responses parked on its
    /// rings.
    pub(super) fn ctx_destroy(&mut self, ctx: ContextId) -> CmdResult<Response> {
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

    /// CTX_ATTACH_RESOURCE (`attach`) or CTX_DETACH_RESOURCE.
    pub(super) fn ctx_attach_detach(
        &mut self,
        ctx: ContextId,
        resource_id: u32,
        attach: bool,
    ) -> CmdResult<Response> {
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
        if attach {
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

    /// SUBMIT_3D: the stream goes to the renderer; a queued one finishes later
    /// (see [`GpuHandler::poll`]).
    pub(super) fn submit_3d(
        &mut self,
        req: &mut dyn RequestReader,
        ctx: ContextId,
        s: Submit3d,
        cmd: CommandType,
    ) -> CmdResult<Response> {
        if !self.contexts.contains(&ctx) {
            return Err(CommandError::Context(ctx.0));
        }
        let fences_bytes = usize::try_from(s.num_in_fences)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .ok_or(CommandError::Parameter("num_in_fences overflows"))?;
        let size =
            usize::try_from(s.size).map_err(|_| CommandError::Parameter("size overflows"))?;
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

    pub(super) fn destroy_context_blobs(&mut self, ctx: ContextId) {
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
}
