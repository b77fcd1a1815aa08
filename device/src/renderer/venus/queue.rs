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
use super::raw;
use super::retire::{self, Waiting};
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

/// The first and last of `n` batches with command buffers (`has_cbs`), where the
/// begin and end stamp go, if both are `plain` (chain nothing whose meaning depends on
/// their command buffers). `None`: nothing to time, or not stampable.
fn stamp_span(
    n: usize,
    has_cbs: impl Fn(usize) -> bool,
    plain: impl Fn(usize) -> bool,
) -> Option<(usize, usize)> {
    let first = (0..n).find(|&i| has_cbs(i))?;
    let last = (0..n).rev().find(|&i| has_cbs(i))?;
    (plain(first) && plain(last)).then_some((first, last))
}

/// [`stamp_span`] of a `vkQueueSubmit`: only timeline values may be chained.
fn stamp_targets(submits: &[vk::SubmitInfo<'_>]) -> Option<(usize, usize)> {
    stamp_span(
        submits.len(),
        |i| submits[i].command_buffer_count > 0,
        |i| {
            // SAFETY: the decoder built each chain in the arena.
            unsafe {
                raw::chain_only(
                    submits[i].p_next,
                    &[vk::StructureType::TIMELINE_SEMAPHORE_SUBMIT_INFO],
                )
            }
        },
    )
}

/// [`stamp_span`] of a `vkQueueSubmit2`: no `pNext` at all and not protected.
fn stamp_targets2(submits: &[vk::SubmitInfo2<'_>]) -> Option<(usize, usize)> {
    stamp_span(
        submits.len(),
        |i| submits[i].command_buffer_info_count > 0,
        |i| submits[i].p_next.is_null() && !submits[i].flags.contains(vk::SubmitFlags::PROTECTED),
    )
}

/// The command-buffer lists of the first and last stamped batch: `begin` in front of
/// the first's, `end` after the last's (both in the first list when `first == last`;
/// the second list is then empty and unused).
fn bracket<T: Copy>(first: &[T], last: &[T], same: bool, begin: T, end: T) -> (Vec<T>, Vec<T>) {
    let mut head: Vec<T> = std::iter::once(begin)
        .chain(first.iter().copied())
        .collect();
    if same {
        head.push(end);
        return (head, Vec::new());
    }
    let tail = last.iter().copied().chain(std::iter::once(end)).collect();
    (head, tail)
}

/// `vkQueueSubmit` of `submits` with `slot`'s begin command buffer in front of the
/// first command buffer and its end command buffer after the last.
fn submit_stamped(
    dev: &DeviceState,
    queue: vk::Queue,
    submits: &[vk::SubmitInfo<'_>],
    fence: vk::Fence,
    slot: Slot,
) -> ash::prelude::VkResult<()> {
    let Some((first, last)) = stamp_targets(submits) else {
        // SAFETY: as in `queue_submit`.
        return unsafe { dev.device.queue_submit(queue, submits, fence) };
    };
    let cbs = |i: usize| {
        // SAFETY: the decoder built the array in the arena with the count beside it.
        unsafe {
            regions(
                submits[i].p_command_buffers,
                submits[i].command_buffer_count,
            )
        }
    };
    let (head, tail) = bracket(cbs(first), cbs(last), first == last, slot.begin, slot.end);
    let mut infos = submits.to_vec();
    infos[first] = infos[first].command_buffers(&head);
    if first != last {
        infos[last] = infos[last].command_buffers(&tail);
    }
    // SAFETY: as in `queue_submit`; the two rebuilt arrays live until the call
    // returns, and the stamp command buffers belong to this queue's family and are in
    // no other pending submission (a slot is taken until its submission retires).
    unsafe { dev.device.queue_submit(queue, &infos, fence) }
}

/// As [`submit_stamped`] for `vkQueueSubmit2`.
fn submit2_stamped(
    dev: &DeviceState,
    queue: vk::Queue,
    submits: &[vk::SubmitInfo2<'_>],
    fence: vk::Fence,
    slot: Slot,
) -> ash::prelude::VkResult<()> {
    let Some((first, last)) = stamp_targets2(submits) else {
        // SAFETY: as in `queue_submit2`.
        return unsafe { dev.device.queue_submit2(queue, submits, fence) };
    };
    let cbs = |i: usize| {
        // SAFETY: the decoder built the array in the arena with the count beside it.
        unsafe {
            regions(
                submits[i].p_command_buffer_infos,
                submits[i].command_buffer_info_count,
            )
        }
    };
    let ours = |cb| vk::CommandBufferSubmitInfo::default().command_buffer(cb);
    let (head, tail) = bracket(
        cbs(first),
        cbs(last),
        first == last,
        ours(slot.begin),
        ours(slot.end),
    );
    let mut infos = submits.to_vec();
    infos[first] = infos[first].command_buffer_infos(&head);
    if first != last {
        infos[last] = infos[last].command_buffer_infos(&tail);
    }
    // SAFETY: as in `submit_stamped`.
    unsafe { dev.device.queue_submit2(queue, &infos, fence) }
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
        let fence = args.fence;
        let stampable = stamp_targets(submits).is_some();
        self.submit_holding(args.queue, stampable, |dev, queue, slot| match slot {
            Some(slot) => submit_stamped(dev, queue, submits, fence, slot),
            // SAFETY: live queue of a live device, externally synchronized by its lock;
            // every handle in the submits was translated by the decoder (and is pinned
            // until the submission retires) and the infos live in the arena.
            None => unsafe { dev.device.queue_submit(queue, submits, fence) },
        })
    }

    pub(super) fn queue_submit2(&mut self, args: &mut QueueSubmit2Args<'_>) -> Result<vk::Result> {
        let submits = args.p_submits.unwrap_or(&[]);
        check_submits2(submits)?;
        let fence = args.fence;
        let stampable = stamp_targets2(submits).is_some();
        self.submit_holding(args.queue, stampable, |dev, queue, slot| match slot {
            Some(slot) => submit2_stamped(dev, queue, submits, fence, slot),
            // SAFETY: as for queue_submit.
            None => unsafe { dev.device.queue_submit2(queue, submits, fence) },
        })
    }

    /// Runs the submission `f` under `queue`'s lock, then keeps every object it uses
    /// (this command's pins: command buffers, semaphores, fence; and what the command
    /// buffers recorded) alive until a host fence submitted right after it retires.
    /// Where the QoS gate accounts for the submission and it is `stampable`, `f` gets
    /// a timestamp pair to put around the guest's command buffers, and the gate is
    /// told the device time between them (`stamps.rs`).
    fn submit_holding(
        &self,
        queue: vk::Queue,
        stampable: bool,
        f: impl FnOnce(&DeviceState, vk::Queue, Option<Slot>) -> ash::prelude::VkResult<()>,
    ) -> Result<vk::Result> {
        let q = self.queue_ref(queue)?;
        // QoS: wait for the arbiter's grant before the batch reaches the host queue
        // (no lock held while waiting; see `crate::qos`).
        let mut ticket = match self.qos_grant() {
            Ok(t) => t,
            Err(QosStopped) => return Ok(vk::Result::ERROR_DEVICE_LOST),
        };
        let guard = self.exec.lock_live(&q).ok_or(VenusError::NoState {
            ty: vk::ObjectType::DEVICE,
            raw: q.device.device.handle().as_raw(),
        })?;
        // Marked pending before the driver sees it, so a reset cannot slip in between.
        let in_flight = InFlight::new(self.take_pins()).ok_or(VenusError::Invalid(
            "submission of a command buffer or descriptor set being reset",
        ))?;
        // Stamped where the arbiter charges the device time (granted submissions):
        // on lavapipe the two extra command buffers cost about a third of the
        // throughput of 0.2 ms batches at depth 1 (issue 15), too much for figures
        // that best-effort only reports.
        let slot = if ticket.as_ref().is_some_and(|t| t.is_arbitrated()) && stampable {
            // SAFETY: live device (checked under the queue lock, which is held).
            unsafe { q.device.stamps.take(&q.device.device, queue.as_raw()) }
        } else {
            None
        };
        if let Some(t) = ticket.as_mut() {
            t.submitted();
        }
        if let Err(e) = f(&q.device, queue, slot) {
            if let Some(s) = slot {
                // Not submitted: the pair is free again at once.
                q.device.stamps.give_back(s);
            }
            return Ok(e);
        }
        if in_flight.is_empty() && ticket.is_none() {
            return Ok(vk::Result::SUCCESS);
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
                std::mem::forget(in_flight);
                return Ok(vk::Result::SUCCESS);
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
            keep: Some(Box::new((in_flight, stamp))),
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
        drop(guard);
        Ok(vk::Result::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::{bracket, stamp_span};

    #[test]
    fn stamps_bracket_the_first_and_last_batch_with_command_buffers() {
        // Batches 0 and 3 have none: the stamps go around 1..=2.
        let cbs = [0, 2, 1, 0];
        assert_eq!(stamp_span(4, |i| cbs[i] > 0, |_| true), Some((1, 2)));
        assert_eq!(stamp_span(4, |_| false, |_| true), None);
        assert_eq!(stamp_span(0, |_| true, |_| true), None);
        // A batch there that is not plain: no stamps at all.
        assert_eq!(stamp_span(4, |i| cbs[i] > 0, |i| i != 2), None);
        // A batch between them that is not plain does not matter.
        assert_eq!(stamp_span(4, |_| true, |i| i != 1), Some((0, 3)));
    }

    #[test]
    fn bracket_puts_begin_first_and_end_last() {
        assert_eq!(
            bracket(&[5, 6], &[5, 6], true, 1, 9),
            (vec![1, 5, 6, 9], vec![])
        );
        assert_eq!(
            bracket(&[5], &[7, 8], false, 1, 9),
            (vec![1, 5], vec![7, 8, 9])
        );
    }
}
