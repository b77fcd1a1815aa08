//! Fences, semaphores (binary and timeline) and events. Blocking waits run without the
//! state lock, in slices, so a context that turns fatal or a ring that stops is not
//! held up by a wait that never ends.

use std::time::{Duration, Instant};

use ash::vk;
use vulkan_proto::args::{
    CreateFenceArgs, CreateSemaphoreArgs, SignalSemaphoreArgs, WaitForFencesArgs,
    WaitSemaphoresArgs,
};

use super::bounds::regions;
use super::ownership::no_null;
use super::physical_device::required;
use super::{raw, Handler, Result};

/// Longest single host wait before re-checking whether to give up.
const WAIT_SLICE: Duration = Duration::from_millis(100);

impl Handler<'_, '_> {
    /// Runs `wait(timeout_ns)` in slices until it returns something other than
    /// TIMEOUT, the guest's timeout passes, or the stream must stop.
    pub(super) fn sliced_wait(
        &self,
        timeout_ns: u64,
        mut wait: impl FnMut(u64) -> vk::Result,
    ) -> vk::Result {
        let start = Instant::now();
        let total = Duration::from_nanos(timeout_ns);
        loop {
            let left = total.saturating_sub(start.elapsed());
            let slice = left.min(WAIT_SLICE);
            let r = wait(u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX));
            if r != vk::Result::TIMEOUT || left <= WAIT_SLICE {
                return r;
            }
            if self.stream.should_stop() {
                // The context is going away; the guest will never see this reply.
                return vk::Result::TIMEOUT;
            }
        }
    }

    pub(super) fn create_fence(&mut self, args: &mut CreateFenceArgs<'_>) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let mut info = *info;
        // SAFETY: the chain was decoded into this command's arena and is not borrowed.
        info.p_next = unsafe {
            raw::strip_chain(info.p_next, &[vk::StructureType::EXPORT_FENCE_CREATE_INFO])
        };
        // SAFETY: live device; `info` lives across the call.
        self.create_child(args.device, args.p_fence.as_deref(), |d| unsafe {
            d.device.create_fence(&info, None)
        })
    }

    pub(super) fn wait_for_fences(
        &mut self,
        args: &mut WaitForFencesArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let fences = args.p_fences.unwrap_or(&[]);
        no_null(fences, "vkWaitForFences: a NULL fence")?;
        let count = u32::try_from(fences.len()).unwrap_or(0);
        let wait_all = args.wait_all;
        Ok(self.sliced_wait(args.timeout, |t| {
            // SAFETY: live device and fences; the slice outlives the call; no lock held.
            unsafe {
                (dev.device.fp_v1_0().wait_for_fences)(
                    dev.device.handle(),
                    count,
                    fences.as_ptr(),
                    wait_all,
                    t,
                )
            }
        }))
    }

    /// `vkSignalSemaphore`: the semaphore inside the info must not be NULL (the
    /// generated forwards check parameters, not struct members).
    pub(super) fn signal_semaphore(
        &mut self,
        args: &mut SignalSemaphoreArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_signal_info, "pSignalInfo")?;
        no_null(
            &[info.semaphore],
            "vkSignalSemaphore: the semaphore is NULL",
        )?;
        let dev = self.device(args.device)?;
        // SAFETY: live device; `info` lives in the arena with a translated, non-NULL
        // semaphore of this device.
        Ok(unsafe { (dev.device.fp_v1_2().signal_semaphore)(dev.device.handle(), info) })
    }

    pub(super) fn create_semaphore(
        &mut self,
        args: &mut CreateSemaphoreArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let mut info = *info;
        // SYNC_FD export is emulated (venus-wire §8); the host driver has none.
        // SAFETY: the chain was decoded into this command's arena and is not borrowed.
        info.p_next = unsafe {
            raw::strip_chain(
                info.p_next,
                &[vk::StructureType::EXPORT_SEMAPHORE_CREATE_INFO],
            )
        };
        // SAFETY: live device; `info` lives across the call.
        self.create_child(args.device, args.p_semaphore.as_deref(), |d| unsafe {
            d.device.create_semaphore(&info, None)
        })
    }

    pub(super) fn wait_semaphores(
        &mut self,
        args: &mut WaitSemaphoresArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let info = required(args.p_wait_info, "pWaitInfo")?;
        // SAFETY: the decoder built the array in the arena with this count.
        let semaphores = unsafe { regions(info.p_semaphores, info.semaphore_count) };
        no_null(semaphores, "vkWaitSemaphores: a NULL semaphore")?;
        Ok(self.sliced_wait(args.timeout, |t| {
            // SAFETY: live device; `info` lives in the arena with translated handles.
            unsafe { (dev.device.fp_v1_2().wait_semaphores)(dev.device.handle(), info, t) }
        }))
    }
}
