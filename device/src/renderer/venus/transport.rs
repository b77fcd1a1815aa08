//! The `VK_MESA_venus_protocol` transport commands (venus-wire §4), decoded by the
//! generated decoder and routed to the renderer core's [`StreamCtx`] operations, plus
//! the SYNC_FD emulation behind vkImport/WaitSemaphoreResourceMESA (§8).
//!
//! [`StreamCtx`]: crate::renderer::StreamCtx

use ash::vk;
use vulkan_proto::args::{
    CreateRingMESAArgs, DestroyRingMESAArgs, ExecuteCommandStreamsMESAArgs,
    GetMemoryResourcePropertiesMESAArgs, ImportSemaphoreResourceMESAArgs, NotifyRingMESAArgs,
    ResetFenceResourceMESAArgs, SeekReplyCommandStreamMESAArgs, SetReplyCommandStreamMESAArgs,
    SubmitVirtqueueSeqnoMESAArgs, WaitRingSeqnoMESAArgs, WaitSemaphoreResourceMESAArgs,
    WaitVirtqueueSeqnoMESAArgs, WriteRingExtraMESAArgs,
};
use vulkan_proto::generated::types::{RingMonitorInfoMESA, RingPriorityInfoMESA};

use super::physical_device::required;
use super::{raw, Handler, Result, VenusError};
use crate::ids::{ResourceId, RingId};
use crate::renderer::executor::CommandStreamDesc;
use crate::renderer::ring::RingCreateInfo;

const STYPE_RING_MONITOR_INFO: vk::StructureType = vk::StructureType::from_raw(1_000_384_006);
const STYPE_RING_PRIORITY_INFO: vk::StructureType = vk::StructureType::from_raw(1_000_384_007);

fn to_u64(v: usize) -> u64 {
    v as u64
}

impl Handler<'_, '_> {
    pub(super) fn set_reply_command_stream_mesa(
        &mut self,
        args: &mut SetReplyCommandStreamMESAArgs<'_>,
    ) -> Result<()> {
        let s = required(args.p_stream, "pStream")?;
        self.stream.set_reply_stream(
            ResourceId(s.resource_id),
            to_u64(s.offset),
            to_u64(s.size),
        )?;
        Ok(())
    }

    pub(super) fn seek_reply_command_stream_mesa(
        &mut self,
        args: &mut SeekReplyCommandStreamMESAArgs<'_>,
    ) -> Result<()> {
        self.stream.seek_reply_stream(to_u64(args.position))?;
        Ok(())
    }

    pub(super) fn execute_command_streams_mesa(
        &mut self,
        args: &mut ExecuteCommandStreamsMESAArgs<'_>,
    ) -> Result<()> {
        let streams: Vec<CommandStreamDesc> = args
            .p_streams
            .unwrap_or(&[])
            .iter()
            .map(|s| CommandStreamDesc {
                resource: ResourceId(s.resource_id),
                offset: to_u64(s.offset),
                size: to_u64(s.size),
            })
            .collect();
        let positions: Option<Vec<u64>> = args
            .p_reply_positions
            .map(|p| p.iter().map(|&x| to_u64(x)).collect());
        if args.p_dependencies.is_some_and(|d| !d.is_empty()) {
            return Err(VenusError::Unsupported(
                "vkExecuteCommandStreamsMESA dependencies",
            ));
        }
        self.stream
            .execute_command_streams(&streams, positions.as_deref())
            .map_err(VenusError::Nested)
    }

    pub(super) fn create_ring_mesa(&mut self, args: &mut CreateRingMESAArgs<'_>) -> Result<()> {
        let ci = required(args.p_create_info, "pCreateInfo")?;
        let mut info = RingCreateInfo {
            flags: ci.flags,
            resource: ResourceId(ci.resource_id),
            offset: to_u64(ci.offset),
            size: to_u64(ci.size),
            idle_timeout_ns: ci.idle_timeout,
            head_offset: to_u64(ci.head_offset),
            tail_offset: to_u64(ci.tail_offset),
            status_offset: to_u64(ci.status_offset),
            buffer_offset: to_u64(ci.buffer_offset),
            buffer_size: to_u64(ci.buffer_size),
            extra_offset: to_u64(ci.extra_offset),
            extra_size: to_u64(ci.extra_size),
            ..Default::default()
        };
        // SAFETY: the chain was decoded into the arena.
        let m = unsafe { raw::find_in_chain(ci.p_next, STYPE_RING_MONITOR_INFO) }
            .cast::<RingMonitorInfoMESA<'_>>();
        // SAFETY: a non-NULL result is a struct of the sType searched for, as the
        // decoder built it in the arena.
        info.monitor_period_us = unsafe { m.as_ref() }.map(|m| m.max_reporting_period_microseconds);
        // SAFETY: as above.
        let p = unsafe { raw::find_in_chain(ci.p_next, STYPE_RING_PRIORITY_INFO) }
            .cast::<RingPriorityInfoMESA<'_>>();
        // SAFETY: as above.
        info.priority = unsafe { p.as_ref() }.map(|p| p.priority);
        self.stream.create_ring(RingId(args.ring), &info)?;
        Ok(())
    }

    pub(super) fn destroy_ring_mesa(&mut self, args: &mut DestroyRingMESAArgs<'_>) -> Result<()> {
        self.stream.destroy_ring(RingId(args.ring))?;
        Ok(())
    }

    pub(super) fn notify_ring_mesa(&mut self, args: &mut NotifyRingMESAArgs<'_>) -> Result<()> {
        self.stream.notify_ring(RingId(args.ring))?;
        Ok(())
    }

    pub(super) fn write_ring_extra_mesa(
        &mut self,
        args: &mut WriteRingExtraMESAArgs<'_>,
    ) -> Result<()> {
        self.stream
            .write_ring_extra(RingId(args.ring), to_u64(args.offset), args.value)?;
        Ok(())
    }

    pub(super) fn submit_virtqueue_seqno_mesa(
        &mut self,
        args: &mut SubmitVirtqueueSeqnoMESAArgs<'_>,
    ) -> Result<()> {
        self.stream
            .submit_virtqueue_seqno(RingId(args.ring), args.seqno)?;
        Ok(())
    }

    pub(super) fn wait_virtqueue_seqno_mesa(
        &mut self,
        args: &mut WaitVirtqueueSeqnoMESAArgs<'_>,
    ) -> Result<()> {
        self.stream.wait_virtqueue_seqno(args.seqno)?;
        Ok(())
    }

    pub(super) fn wait_ring_seqno_mesa(
        &mut self,
        args: &mut WaitRingSeqnoMESAArgs<'_>,
    ) -> Result<()> {
        self.stream.wait_ring_seqno(RingId(args.ring), args.seqno)?;
        Ok(())
    }

    pub(super) fn get_memory_resource_properties_mesa(
        &mut self,
        _args: &mut GetMemoryResourcePropertiesMESAArgs<'_>,
    ) -> Result<vk::Result> {
        Err(VenusError::Unsupported(
            "vkGetMemoryResourcePropertiesMESA (dma-buf resource import is not offered)",
        ))
    }

    pub(super) fn reset_fence_resource_mesa(
        &mut self,
        args: &mut ResetFenceResourceMESAArgs<'_>,
    ) -> Result<()> {
        // vkr exports (and so resets) a sync fd; without host sync fds, reset directly.
        let dev = self.device(args.device)?;
        // SAFETY: live device and fence.
        unsafe { dev.device.reset_fences(&[args.fence]) }
            .map_err(|_| VenusError::Invalid("vkResetFences failed"))
    }

    pub(super) fn wait_semaphore_resource_mesa(
        &mut self,
        args: &mut WaitSemaphoreResourceMESAArgs<'_>,
    ) -> Result<()> {
        // Emulated SYNC_FD export: consume the payload with a queue wait.
        self.submit_empty(args.device, &[args.semaphore], &[])
    }

    pub(super) fn import_semaphore_resource_mesa(
        &mut self,
        args: &mut ImportSemaphoreResourceMESAArgs<'_>,
    ) -> Result<()> {
        let info = required(
            args.p_import_semaphore_resource_info,
            "pImportSemaphoreResourceInfo",
        )?;
        if info.resource_id != 0 {
            return Err(VenusError::Invalid(
                "semaphore import from a resource other than 0",
            ));
        }
        // Emulated SYNC_FD import of an already-signalled fd: signal the semaphore.
        self.submit_empty(args.device, &[], &[info.semaphore])
    }
}
