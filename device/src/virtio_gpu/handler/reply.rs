//! What the transport gets back and when: replies, queued SUBMIT_3D commands
//! (tickets and the bytes in flight per context), and descriptors parked behind fences.

use std::collections::HashMap;

use super::error::CommandError;
use super::GpuHandler;
use crate::ids::{ContextId, RingIdx};
use crate::virtio_gpu::fence::{FenceId, Timeline};
use crate::virtio_gpu::protocol::{CtrlHdr, Response, MAX_RING_IDX};
use crate::virtio_gpu::render::Ticket;

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
pub(super) struct Inflight {
    total: u64,
    by_ctx: HashMap<u32, u64>,
}

impl Inflight {
    pub(super) fn add(&mut self, ctx: u32, bytes: u64) {
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
pub(super) struct Deferred {
    pub(super) hdr: CtrlHdr,
    pub(super) fence: Option<(Timeline, FenceId)>,
    pub(super) bytes: u64,
}

impl GpuHandler {
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

    pub(super) fn timeline(&self, hdr: &CtrlHdr) -> Timeline {
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
}
