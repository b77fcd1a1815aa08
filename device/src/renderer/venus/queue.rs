//! Queue submission and idle waits. Command buffers arrive as guest ids already
//! translated to the host command buffers their commands were replayed into.

use ash::vk;
use vulkan_proto::args::{
    QueueBindSparseArgs, QueueSubmit2Args, QueueSubmitArgs, QueueWaitIdleArgs,
};

use std::sync::PoisonError;

use ash::vk::Handle as _;

use super::objects::DeviceState;
use super::{Handler, Result, VenusError};

impl Handler<'_, '_> {
    /// Runs `f` on `queue`'s device with the queue's submission lock held, once the
    /// device is known to be still live (destroyers take the same lock first).
    fn with_queue<T>(&self, queue: vk::Queue, f: impl FnOnce(&DeviceState) -> T) -> Result<T> {
        let q = self
            .lock()
            .queue(queue.as_raw())
            .ok_or(VenusError::NoState {
                ty: vk::ObjectType::QUEUE,
                raw: queue.as_raw(),
            })?;
        let _guard = q.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.lock().has_device(q.device.device.handle().as_raw()) {
            return Err(VenusError::NoState {
                ty: vk::ObjectType::DEVICE,
                raw: q.device.device.handle().as_raw(),
            });
        }
        Ok(f(&q.device))
    }

    pub(super) fn queue_submit(&mut self, args: &mut QueueSubmitArgs<'_>) -> Result<vk::Result> {
        let submits = args.p_submits.unwrap_or(&[]);
        self.with_queue(args.queue, |dev| {
            // SAFETY: live queue of a live device, externally synchronized by its lock;
            // every handle in the submits was translated by the decoder and the infos
            // live in the arena.
            match unsafe { dev.device.queue_submit(args.queue, submits, args.fence) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            }
        })
    }

    pub(super) fn queue_submit2(&mut self, args: &mut QueueSubmit2Args<'_>) -> Result<vk::Result> {
        let submits = args.p_submits.unwrap_or(&[]);
        self.with_queue(args.queue, |dev| {
            // SAFETY: as for queue_submit.
            match unsafe { dev.device.queue_submit2(args.queue, submits, args.fence) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            }
        })
    }

    pub(super) fn queue_wait_idle(
        &mut self,
        args: &mut QueueWaitIdleArgs<'_>,
    ) -> Result<vk::Result> {
        self.with_queue(args.queue, |dev| {
            // SAFETY: live queue, externally synchronized by its lock (held across the
            // wait: the queue may take no other submission meanwhile anyway).
            unsafe { (dev.device.fp_v1_0().queue_wait_idle)(args.queue) }
        })
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
