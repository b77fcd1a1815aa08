//! Queue submission and idle waits. Command buffers arrive as guest ids already
//! translated to the host command buffers their commands were replayed into.

use ash::vk;
use vulkan_proto::args::{
    QueueBindSparseArgs, QueueSubmit2Args, QueueSubmitArgs, QueueWaitIdleArgs,
};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ash::vk::Handle as _;

use super::bounds::regions;
use super::lifetime::InFlight;
use super::objects::{DeviceState, QueueRef};
use super::ownership::no_null;
use super::retire::{self, Waiting};
use super::split::{self, Batches, Chain, PartRef};
use super::stamps::Slot;
use super::{Handler, Result, VenusError};

/// The submission's context or ring stopped while it waited for its grant.
struct QosStopped;

/// Reads a completed submission's timestamp pair when dropped (with the rest of what
/// the submission kept alive, once its retire fence signalled) into `into`, for the
/// retire callback that runs right after.
struct StampRead {
    device: Arc<DeviceState>,
    slot: Slot,
    into: Arc<AtomicU64>,
}

impl Drop for StampRead {
    fn drop(&mut self) {
        // SAFETY: dropped only when the submission's retire fence signalled (a
        // submission given up on is leaked with its `keep`), on the device it used.
        if let Some(ns) = unsafe { self.device.stamps.finish(&self.device.device, self.slot) } {
            self.into.store(ns.max(1), Ordering::Release);
        }
    }
}

/// [`no_null`] over every array of `vkQueueSubmit`'s batches.
#[allow(clippy::multiple_unsafe_ops_per_block)] // three arrays of one batch, one contract
fn check_submits(submits: &[vk::SubmitInfo<'_>]) -> Result<()> {
    for s in submits {
        // SAFETY: the decoder built each array in the arena with the count beside it.
        let (cbs, waits, signals) = unsafe {
            (
                regions(s.p_command_buffers, s.command_buffer_count),
                regions(s.p_wait_semaphores, s.wait_semaphore_count),
                regions(s.p_signal_semaphores, s.signal_semaphore_count),
            )
        };
        no_null(cbs, "vkQueueSubmit: a NULL command buffer")?;
        no_null(waits, "vkQueueSubmit: a NULL wait semaphore")?;
        no_null(signals, "vkQueueSubmit: a NULL signal semaphore")?;
    }
    Ok(())
}

/// [`no_null`] over every array of `vkQueueSubmit2`'s batches.
#[allow(clippy::multiple_unsafe_ops_per_block)] // three arrays of one batch, one contract
fn check_submits2(submits: &[vk::SubmitInfo2<'_>]) -> Result<()> {
    for s in submits {
        // SAFETY: the decoder built each array in the arena with the count beside it.
        let (cbs, waits, signals) = unsafe {
            (
                regions(s.p_command_buffer_infos, s.command_buffer_info_count),
                regions(s.p_wait_semaphore_infos, s.wait_semaphore_info_count),
                regions(s.p_signal_semaphore_infos, s.signal_semaphore_info_count),
            )
        };
        if cbs.iter().any(|c| c.command_buffer.as_raw() == 0) {
            return Err(VenusError::Invalid("vkQueueSubmit2: a NULL command buffer"));
        }
        if waits
            .iter()
            .chain(signals)
            .any(|w| w.semaphore.as_raw() == 0)
        {
            return Err(VenusError::Invalid("vkQueueSubmit2: a NULL semaphore"));
        }
    }
    Ok(())
}

impl Handler<'_, '_> {
    /// Runs `f` on `queue`'s device with the queue's submission lock held, once the
    /// device is known to be still live (destroyers take the same lock first).
    fn with_queue<T>(&self, queue: vk::Queue, f: impl FnOnce(&DeviceState) -> T) -> Result<T> {
        let q = self.queue_ref(queue)?;
        let _guard = self.exec.lock_live(&q).ok_or(VenusError::NoState {
            ty: vk::ObjectType::DEVICE,
            raw: q.device.device.handle().as_raw(),
        })?;
        Ok(f(&q.device))
    }

    /// A registered queue and its lock.
    fn queue_ref(&self, queue: vk::Queue) -> Result<QueueRef> {
        self.lock()
            .queue(queue.as_raw())
            .ok_or(VenusError::NoState {
                ty: vk::ObjectType::QUEUE,
                raw: queue.as_raw(),
            })
    }

    pub(super) fn queue_submit(&mut self, args: &mut QueueSubmitArgs<'_>) -> Result<vk::Result> {
        let submits = args.p_submits.unwrap_or(&[]);
        check_submits(submits)?;
        self.submit_holding(args.queue, submits, args.fence)
    }

    pub(super) fn queue_submit2(&mut self, args: &mut QueueSubmit2Args<'_>) -> Result<vk::Result> {
        let submits = args.p_submits.unwrap_or(&[]);
        check_submits2(submits)?;
        self.submit_holding(args.queue, submits, args.fence)
    }

    /// Submits `batches` (with the guest's `fence`) under `queue`'s lock, then keeps
    /// every object they use (this command's pins: command buffers, semaphores,
    /// fence; and what the command buffers recorded) alive until a host fence
    /// submitted right after them retires. Where the QoS gate grants the submission
    /// it gets a timestamp pair around the guest's command buffers where they may be
    /// bracketed, and the gate is told the device time between them (`stamps.rs`);
    /// where the gate's estimate says it would hold the device longer than a slice,
    /// it goes in parts, each granted on its own (`split.rs`).
    fn submit_holding<B: Batches + ?Sized>(
        &self,
        queue: vk::Queue,
        batches: &B,
        fence: vk::Fence,
    ) -> Result<vk::Result> {
        let q = self.queue_ref(queue)?;
        // QoS: wait for the arbiter's grant before the batch reaches the host queue
        // (no lock held while waiting; see `crate::qos`).
        let mut ticket = match self.qos_grant() {
            Ok(t) => t,
            Err(QosStopped) => return Ok(vk::Result::ERROR_DEVICE_LOST),
        };
        // Split what the arbiter grants one by one, and what goes under a lease (a
        // VM alone now, but one that arrives must not wait out a whole long batch:
        // each further part is taken under the lease only while it holds, then
        // asks the arbiter); never under best-effort (no one to make room for). By
        // the gate's estimate of each command buffer. The submission's last command
        // buffer counts as free until it has run alone: Mesa's Venus driver puts its
        // fence feedback there, and cutting that off costs a grant for nothing and
        // holds the guest's fence behind another VM (`split.rs`).
        let costs = ticket
            .as_ref()
            .filter(|t| (t.is_arbitrated() || t.is_leased()) && batches.may_split())
            .and_then(|t| {
                let last_cb = (0..batches.batches())
                    .rev()
                    .find_map(|i| batches.command_buffers(i).checked_sub(1).map(|j| (i, j)));
                (0..batches.batches())
                    .map(|i| {
                        (0..batches.command_buffers(i))
                            .map(|j| {
                                let cb = batches.command_buffer(i, j);
                                if Some((i, j)) == last_cb {
                                    Some(t.known_command_buffer_ns(cb).unwrap_or(0))
                                } else {
                                    t.command_buffer_ns(cb)
                                }
                            })
                            .collect::<Option<Vec<u64>>>()
                    })
                    .collect::<Option<Vec<Vec<u64>>>>()
            });
        let slice = costs.as_ref().and_then(|c| {
            split::slice_for(c.iter().flatten().fold(0u64, |a, &x| a.saturating_add(x)))
        });
        let parts = match (&costs, slice) {
            (Some(c), Some(slice)) => split::plan(c, |i| batches.cuttable(i), slice),
            _ => split::whole((0..batches.batches()).map(|i| batches.command_buffers(i))),
        };
        let (links, chain_count) = split::links(&parts);
        let mut links = links.as_slice();
        let guard = self.exec.lock_live(&q).ok_or(VenusError::NoState {
            ty: vk::ObjectType::DEVICE,
            raw: q.device.device.handle().as_raw(),
        })?;
        // Marked pending before the driver sees it, so a reset cannot slip in between.
        let in_flight = InFlight::new(self.take_pins()).ok_or(VenusError::Invalid(
            "submission of a command buffer or descriptor set being reset",
        ))?;
        // SAFETY: live device (checked under the queue lock, which is held).
        let chain = match unsafe { Chain::create(&q.device, chain_count) } {
            Ok(c) => c,
            Err(e) => return Ok(e),
        };
        let chain_sems: Vec<vk::Semaphore> = chain.semaphores().to_vec();
        let chain_sems = chain_sems.as_slice();
        let mut keep = Some((in_flight, chain));
        let mut guard = Some(guard);
        let mut result = vk::Result::SUCCESS;
        let last = parts.len().saturating_sub(1);
        for (k, part) in parts.iter().enumerate() {
            let (part_links, rest) = links.split_at(part.len().min(links.len()));
            links = rest;
            if k > 0 {
                // The next part waits for its own grant, without the queue lock.
                drop(guard.take());
                ticket = match self.qos_grant() {
                    Ok(t) => t,
                    Err(QosStopped) => {
                        result = vk::Result::ERROR_DEVICE_LOST;
                        break;
                    }
                };
                match self.exec.lock_live(&q) {
                    Some(g) => guard = Some(g),
                    None => {
                        // The device was destroyed meanwhile (which waited for the
                        // parts already submitted).
                        result = vk::Result::ERROR_DEVICE_LOST;
                        break;
                    }
                }
            }
            let cbs: usize = part.iter().map(|p| p.cbs.len()).sum();
            // Stamped where the arbiter charges the device time (granted
            // submissions): on lavapipe the two extra command buffers cost about a
            // third of the throughput of 0.2 ms batches at depth 1 (issue 15), too
            // much for figures that best-effort only reports.
            let slot = if ticket.as_ref().is_some_and(|t| t.is_arbitrated())
                && split::stamp_pieces(part, |b| batches.stampable(b)).is_some()
            {
                // SAFETY: live device (checked under the queue lock, which is held).
                unsafe { q.device.stamps.take(&q.device.device, queue.as_raw()) }
            } else {
                None
            };
            if let Some(t) = ticket.as_mut() {
                t.submitted();
                let single = part
                    .iter()
                    .find(|p| !p.cbs.is_empty())
                    .map(|p| batches.command_buffer(p.batch, p.cbs.start));
                t.set_command_buffers(cbs, single);
            }
            let part_fence = if k == last { fence } else { vk::Fence::null() };
            // SAFETY: live queue of a live device under its submission lock; every
            // handle in the batches was translated by the decoder and is pinned
            // until the submission retires (`keep`), the infos live in the arena,
            // the chain semaphores are ours alone, and a stamp slot is taken until
            // its submission retires.
            let submitted = unsafe {
                batches.submit_part(
                    &q.device.device,
                    queue,
                    PartRef {
                        pieces: part,
                        links: part_links,
                        chain: chain_sems,
                    },
                    part_fence,
                    slot.map(|s| (s.begin, s.end)),
                )
            };
            if let Err(e) = submitted {
                if let Some(s) = slot {
                    // Not submitted: the pair is free again at once.
                    q.device.stamps.give_back(s);
                }
                if k == 0 {
                    // Nothing submitted: our chain semaphores go now, under the
                    // queue lock (so the device is still live).
                    drop(keep.take());
                    return Ok(e);
                }
                result = e;
                break;
            }
            let keep_now = if k == last { keep.take() } else { None };
            self.retire_after(&q, queue, ticket.take(), slot, keep_now);
        }
        if let Some(rest) = keep {
            // Parts already submitted when the rest could not be: keep what they
            // use until they retire (a marker under the queue lock).
            if guard.is_none() {
                guard = self.exec.lock_live(&q);
            }
            if guard.is_some() {
                self.retire_after(&q, queue, None, None, Some(rest));
            } else {
                // The device was destroyed meanwhile (its destroyer waited for its
                // work): nothing may be called on it any more, so our chain
                // semaphores are leaked with the pins.
                std::mem::forget(rest);
            }
        }
        drop(guard);
        Ok(result)
    }

    /// Puts a marker fence after what was just submitted on `queue` (the caller holds
    /// its lock) and hands the retire thread what to do when it signals: report
    /// `ticket`'s device time (the stamps of `slot` where it has one) and drop `keep`.
    fn retire_after(
        &self,
        q: &QueueRef,
        queue: vk::Queue,
        ticket: Option<crate::qos::Ticket>,
        slot: Option<Slot>,
        keep: Option<(InFlight, Chain)>,
    ) {
        if keep
            .as_ref()
            .is_none_or(|(f, c)| f.is_empty() && c.is_empty())
            && ticket.is_none()
        {
            return;
        }
        // SAFETY: live queue of a live device under its submission lock.
        let fence = match unsafe { retire::submit_marker(&q.device.device, queue) } {
            Ok(f) => f,
            Err((what, e)) => {
                // No fence to tell when the work ends: leak what it uses rather than
                // destroy it under running work (the stamp pair included).
                log::warn!(
                    "venus: {}: {what} for a submission's retire fence failed ({e}); \
                     its objects are never destroyed",
                    self.exec.ctx
                );
                std::mem::forget(keep);
                return;
            }
        };
        // The stamp pair is read and freed when the fence has signalled; if the
        // context gives up on the fence first, `keep` is leaked and the pair with it
        // (never reused under running work), and the gate gets completion timing.
        // Seen at once wherever a gate accounts for the batch (the arbiter waits for
        // the slot, or the device time is completion timing); a batch no gate
        // accounts for can wait for a poll.
        let prompt = ticket.is_some();
        let measured = Arc::new(AtomicU64::new(0));
        let stamp = slot.map(|slot| StampRead {
            device: Arc::clone(&q.device),
            slot,
            into: Arc::clone(&measured),
        });
        let waiting = Waiting {
            device: Arc::clone(&q.device),
            queue,
            fence,
            // The fence after the batch signalled: report its device time.
            done: Box::new(move || {
                if let Some(mut t) = ticket {
                    let ns = measured.load(Ordering::Acquire);
                    if ns > 0 {
                        t.measured(ns);
                    }
                    drop(t);
                }
            }),
            keep: Some(Box::new((keep, stamp))),
            prompt,
        };
        // Queued under the queue lock, so a device destroyer flushes it (see
        // `submit_fence`).
        let queued = if self.exec.retirer.has_room() {
            self.exec.retirer.push(self.exec.ctx, waiting)
        } else {
            Err(waiting)
        };
        if let Err(w) = queued {
            // Too many in flight: wait here (leaking what it holds if the context
            // stops first).
            retire::wait_inline(w, &|| self.stream.should_stop());
        }
    }

    /// Blocks until the VM's QoS gate grants the next submission (`None`: no gate,
    /// or the arbiter is gone and submissions go through ungated).
    fn qos_grant(&self) -> std::result::Result<Option<crate::qos::Ticket>, QosStopped> {
        let Some(gate) = &self.exec.gate else {
            return Ok(None);
        };
        match gate.acquire(&|| self.stream.should_stop()) {
            Ok(t) => Ok(Some(t)),
            // The context or ring is going away: the batch never reaches the host,
            // which the guest (stopping) sees as a lost device, not a context failure.
            Err(crate::qos::QosError::Stopped) => Err(QosStopped),
            Err(e) => {
                log::debug!(
                    "venus: {}: QoS gate unavailable ({e}); submitting ungated",
                    self.exec.ctx
                );
                Ok(None)
            }
        }
    }

    pub(super) fn queue_wait_idle(
        &mut self,
        args: &mut QueueWaitIdleArgs<'_>,
    ) -> Result<vk::Result> {
        let q = self.queue_ref(args.queue)?;
        Ok(self.wait_queue_idle(&q))
    }

    /// `vkQueueWaitIdle` as an empty submission with a host fence, waited for in
    /// slices so a context being destroyed is not held up by a queue that never
    /// drains (e.g. blocked on a semaphore the guest never signals). The queue lock is
    /// held throughout: the queue is externally synchronized during the wait anyway,
    /// and a device destroyer waits for it. A wait abandoned that way leaves its fence
    /// to the retire thread, which outlives it only until the device goes.
    pub(super) fn wait_queue_idle(&self, q: &QueueRef) -> vk::Result {
        let dev = &q.device.device;
        let Some(_guard) = self.exec.lock_live(q) else {
            // Destroyed meanwhile; destroying it waited for its work.
            return vk::Result::SUCCESS;
        };
        // SAFETY: live queue of a live device under its submission lock.
        let fence = match unsafe { retire::submit_marker(dev, q.queue) } {
            Ok(f) => f,
            Err((_, e)) => return e,
        };
        let r = self.sliced_wait(u64::MAX, |t| {
            // SAFETY: live device and fence; no table lock held.
            unsafe { (dev.fp_v1_0().wait_for_fences)(dev.handle(), 1, &fence, vk::TRUE, t) }
        });
        if r == vk::Result::TIMEOUT {
            // Given up because the context is stopping: the fence may still be pending.
            let waiting = Waiting {
                device: Arc::clone(&q.device),
                queue: q.queue,
                fence,
                done: Box::new(|| {}),
                keep: None,
                prompt: false,
            };
            if let Err(w) = self.exec.retirer.push(self.exec.ctx, waiting) {
                // No retire thread: the context is stopping, so leak it.
                retire::wait_inline(w, &|| true);
            }
            return vk::Result::TIMEOUT;
        }
        // SAFETY: signalled (or the device is lost), so no queue uses it.
        unsafe { dev.destroy_fence(fence, None) };
        r
    }

    pub(super) fn queue_bind_sparse(
        &mut self,
        _args: &mut QueueBindSparseArgs<'_>,
    ) -> Result<vk::Result> {
        Err(VenusError::Unsupported(
            "vkQueueBindSparse (sparse resources are not forwarded)",
        ))
    }

    /// Submits an empty batch on some queue of `device` (semaphore emulation).
    pub(super) fn submit_empty(
        &self,
        device: vk::Device,
        wait: &[vk::Semaphore],
        signal: &[vk::Semaphore],
    ) -> Result<()> {
        let queue = self
            .lock()
            .children(vk::ObjectType::QUEUE, vk::Handle::as_raw(device))
            .first()
            .copied()
            .ok_or(VenusError::Invalid(
                "semaphore emulation needs a queue of the device",
            ))?;
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; wait.len()];
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(wait)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(signal);
        let queue = <vk::Queue as vk::Handle>::from_raw(queue);
        self.with_queue(queue, |dev| {
            // SAFETY: a live queue of this device under its lock; the semaphores are
            // live translated handles.
            unsafe { dev.device.queue_submit(queue, &[submit], vk::Fence::null()) }
        })?
        .map_err(|_| VenusError::Invalid("semaphore emulation submit failed"))
    }
}
