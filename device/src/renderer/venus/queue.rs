//! Queue submission and idle waits. Command buffers arrive as guest ids already
//! translated to the host command buffers their commands were replayed into.

use ash::vk;
use vulkan_proto::args::{
    QueueBindSparseArgs, QueueSubmit2Args, QueueSubmitArgs, QueueWaitIdleArgs,
};

use super::{Handler, Result, VenusError};

impl Handler<'_, '_> {
    pub(super) fn queue_submit(&mut self, args: &mut QueueSubmitArgs<'_>) -> Result<vk::Result> {
        let dev = self.device_of(args.queue)?;
        let submits = args.p_submits.unwrap_or(&[]);
        // SAFETY: live queue of a live device; every handle in the submits was
        // translated by the decoder and the infos live in the arena.
        Ok(
            match unsafe { dev.device.queue_submit(args.queue, submits, args.fence) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            },
        )
    }

    pub(super) fn queue_submit2(&mut self, args: &mut QueueSubmit2Args<'_>) -> Result<vk::Result> {
        let dev = self.device_of(args.queue)?;
        let submits = args.p_submits.unwrap_or(&[]);
        // SAFETY: as for queue_submit.
        Ok(
            match unsafe { dev.device.queue_submit2(args.queue, submits, args.fence) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            },
        )
    }

    pub(super) fn queue_wait_idle(
        &mut self,
        args: &mut QueueWaitIdleArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device_of(args.queue)?;
        // SAFETY: live queue; no lock is held across this blocking call.
        Ok(unsafe { (dev.device.fp_v1_0().queue_wait_idle)(args.queue) })
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
        let dev = self.device(device)?;
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
        // SAFETY: a live queue of this device; the semaphores are live translated handles.
        unsafe {
            dev.device.queue_submit(
                <vk::Queue as vk::Handle>::from_raw(queue),
                &[submit],
                vk::Fence::null(),
            )
        }
        .map_err(|_| VenusError::Invalid("semaphore emulation submit failed"))
    }
}
