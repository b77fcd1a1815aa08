//! Command pools and command buffers. Recorded commands are replayed as they arrive on
//! the host command buffer bound to the guest's id (the guest batches a whole
//! recording and sends it at vkEndCommandBuffer).

use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    AllocateCommandBuffersArgs, BeginCommandBufferArgs, CmdBeginRenderPassArgs,
    CmdBeginRenderingArgs, CmdBindDescriptorSetsArgs, CmdBindPipelineArgs,
    CmdBindVertexBuffersArgs, CmdClearColorImageArgs, CmdCopyBuffer2Args, CmdCopyBufferArgs,
    CmdCopyBufferToImageArgs, CmdCopyImageArgs, CmdCopyImageToBufferArgs, CmdDispatchIndirectArgs,
    CmdEndRenderPassArgs, CmdEndRenderingArgs, CmdFillBufferArgs, CmdPipelineBarrier2Args,
    CmdPipelineBarrierArgs, CmdPushConstantsArgs, CmdSetEvent2Args, CmdSetScissorArgs,
    CmdSetViewportArgs, CmdUpdateBufferArgs, CmdWaitEvents2Args, CmdWaitEventsArgs,
    DestroyCommandPoolArgs, EndCommandBufferArgs, FreeCommandBuffersArgs, ResetCommandBufferArgs,
    ResetCommandPoolArgs, TrimCommandPoolArgs,
};

use super::bounds;
use super::graphics::check_span;
use super::physical_device::required;
use super::{Handler, Result, VenusError};

fn vk_result(r: ash::prelude::VkResult<()>) -> vk::Result {
    match r {
        Ok(()) => vk::Result::SUCCESS,
        Err(e) => e,
    }
}

impl Handler<'_, '_> {
    pub(super) fn destroy_command_pool(
        &mut self,
        args: &mut DestroyCommandPoolArgs<'_>,
    ) -> Result<()> {
        // The buffers leave the tables with no host call of their own (destroying the
        // pool frees them); each holds the pool, so a pending one keeps it alive.
        self.lock()
            .unbind_children(vk::ObjectType::COMMAND_BUFFER, args.command_pool.as_raw());
        // SAFETY: a live pool of this device, now out of the tables with its buffers,
        // none of which is used any more when the last reference drops.
        self.destroy_child(args.device, args.command_pool, |d, h| unsafe {
            d.device.destroy_command_pool(h, None);
        })
    }

    pub(super) fn reset_command_pool(
        &mut self,
        args: &mut ResetCommandPoolArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        // Every command buffer of the pool still alive on the host, freed ones a
        // submission still holds included.
        let cbs = self
            .pinned(vk::ObjectType::COMMAND_POOL, args.command_pool.as_raw())
            .map(|p| p.children())
            .unwrap_or_default();
        self.free_deferred_command_buffers(args.command_pool);
        let (r, released) = self.reset_exclusive(
            &cbs,
            "command pool reset while a command buffer of it is pending",
            || {
                let released: Vec<_> = cbs.iter().flat_map(|cb| cb.release_recorded()).collect();
                // SAFETY: live device and pool; none of its command buffers is pending
                // or can be submitted during the call (claimed for the reset).
                let r = unsafe { dev.device.reset_command_pool(args.command_pool, args.flags) };
                (r, released)
            },
        )?;
        drop(released);
        {
            let mut s = self.lock();
            for cb in &cbs {
                s.clear_pipelines(cb.raw);
            }
        }
        Ok(vk_result(r))
    }

    /// `vkCmdBindPipeline`: a NULL pipeline is refused; the bind point is recorded for
    /// the draw and dispatch checks ([`Handler::require_pipeline`]).
    pub(super) fn cmd_bind_pipeline(&mut self, args: &mut CmdBindPipelineArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        if args.pipeline == vk::Pipeline::null() {
            return Err(VenusError::Invalid("vkCmdBindPipeline of a NULL pipeline"));
        }
        // SAFETY: live command buffer and pipeline of this device (held against it by
        // `Dispatch::decoded`, pinned until the command ends).
        unsafe {
            dev.device.cmd_bind_pipeline(
                args.command_buffer,
                args.pipeline_bind_point,
                args.pipeline,
            )
        };
        self.lock()
            .bind_pipeline(args.command_buffer.as_raw(), args.pipeline_bind_point);
        Ok(())
    }

    pub(super) fn trim_command_pool(&mut self, args: &mut TrimCommandPoolArgs<'_>) -> Result<()> {
        let dev = self.device(args.device)?;
        self.free_deferred_command_buffers(args.command_pool);
        // SAFETY: live device and pool.
        unsafe { dev.device.trim_command_pool(args.command_pool, args.flags) };
        Ok(())
    }

    pub(super) fn allocate_command_buffers(
        &mut self,
        args: &mut AllocateCommandBuffersArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_allocate_info, "pAllocateInfo")?;
        self.free_deferred_command_buffers(info.command_pool);
        let slots = required(args.p_command_buffers.as_deref(), "pCommandBuffers")?;
        if slots.len() != info.command_buffer_count as usize {
            return Err(VenusError::Invalid(
                "pCommandBuffers length differs from commandBufferCount",
            ));
        }
        let ids: Vec<u64> = slots.iter().map(|c| c.as_raw()).collect();
        {
            let st = self.lock();
            for (i, &id) in ids.iter().enumerate() {
                if id == 0 {
                    return Err(VenusError::ZeroId(vk::ObjectType::COMMAND_BUFFER));
                }
                if ids[..i].contains(&id) {
                    return Err(VenusError::DuplicateId(id));
                }
                st.check_free(id)?;
            }
            self.check_room(&st, ids.len())?;
        }
        let dev = self.device(args.device)?;
        // SAFETY: live device; `info` holds a translated pool handle.
        match unsafe { dev.device.allocate_command_buffers(info) } {
            Ok(cbs) => {
                let mut st = self.lock();
                for (&id, cb) in ids.iter().zip(&cbs) {
                    st.bind(
                        id,
                        vk::ObjectType::COMMAND_BUFFER,
                        cb.as_raw(),
                        info.command_pool.as_raw(),
                    )?;
                    st.add_dispatchable(cb.as_raw(), std::sync::Arc::clone(&dev));
                }
                Ok(vk::Result::SUCCESS)
            }
            Err(e) => Ok(e),
        }
    }

    pub(super) fn free_command_buffers(
        &mut self,
        args: &mut FreeCommandBuffersArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let cbs = args.p_command_buffers.unwrap_or(&[]);
        let pool = args.command_pool;
        let hosts: Vec<_> = {
            let mut st = self.lock();
            cbs.iter()
                .filter_map(|cb| st.unbind_host(vk::ObjectType::COMMAND_BUFFER, cb.as_raw()))
                .collect()
        };
        // Each is freed when its last user lets go (a pending submission, a primary
        // that executes it) and the guest next uses the pool: the pool is externally
        // synchronized, so the free runs on a command that uses it, not on the thread
        // that dropped the last reference. A child holds its pool, so the pool
        // outlives it.
        if let Some(pool_host) = self.pinned(vk::ObjectType::COMMAND_POOL, pool.as_raw()) {
            for host in hosts {
                let pool_host = Arc::clone(&pool_host);
                let raw = host.raw;
                host.destroy_on_drop(Box::new(move || pool_host.defer_child_free(raw)));
            }
        }
        drop(dev);
        self.free_deferred_command_buffers(pool);
        Ok(())
    }

    /// Frees on the host the command buffers of `pool` the guest freed and nothing
    /// holds any more (called by commands that use the pool).
    pub(super) fn free_deferred_command_buffers(&self, pool: vk::CommandPool) {
        let Some(host) = self.pinned(vk::ObjectType::COMMAND_POOL, pool.as_raw()) else {
            return;
        };
        let due: Vec<vk::CommandBuffer> = host
            .take_freed()
            .into_iter()
            .map(vk::CommandBuffer::from_raw)
            .collect();
        if due.is_empty() {
            return;
        }
        let Some(dev) = self.pool_device(vk::ObjectType::COMMAND_POOL, pool.as_raw()) else {
            return;
        };
        // SAFETY: command buffers of this live pool (pinned for this command, which
        // uses the pool under the guest's external synchronization), out of the
        // tables, and no submission or command holds them any more.
        unsafe { dev.device.free_command_buffers(pool, &due) };
    }

    pub(super) fn begin_command_buffer(
        &mut self,
        args: &mut BeginCommandBufferArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device_of(args.command_buffer)?;
        let info = required(args.p_begin_info, "pBeginInfo")?;
        let state = if info
            .flags
            .contains(vk::CommandBufferUsageFlags::RENDER_PASS_CONTINUE)
        {
            // SAFETY: NULL or the inheritance info the decoder built in the arena.
            let inherit = unsafe { info.p_inheritance_info.as_ref() };
            let fb = inherit.and_then(|i| self.lock().framebuffer_info(i.framebuffer.as_raw()));
            Some(fb.map_or(bounds::RenderState::Inherited, |f| {
                bounds::RenderState::Inside(f.area(), f.layers)
            }))
        } else {
            None
        };
        {
            let mut s = self.lock();
            s.set_render_state(args.command_buffer.as_raw(), state);
            s.clear_pipelines(args.command_buffer.as_raw());
        }
        let r = self.reset_recording(args.command_buffer, || {
            // SAFETY: live command buffer, not pending (claimed for the implicit reset);
            // `info` (and inheritance info) live in the arena.
            unsafe { dev.device.begin_command_buffer(args.command_buffer, info) }
        })?;
        Ok(vk_result(r))
    }

    pub(super) fn end_command_buffer(
        &mut self,
        args: &mut EndCommandBufferArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device_of(args.command_buffer)?;
        // SAFETY: live command buffer.
        Ok(vk_result(unsafe {
            dev.device.end_command_buffer(args.command_buffer)
        }))
    }

    pub(super) fn reset_command_buffer(
        &mut self,
        args: &mut ResetCommandBufferArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device_of(args.command_buffer)?;
        self.lock().clear_pipelines(args.command_buffer.as_raw());
        let r = self.reset_recording(args.command_buffer, || {
            // SAFETY: live command buffer, not pending (claimed for the reset).
            unsafe {
                dev.device
                    .reset_command_buffer(args.command_buffer, args.flags)
            }
        })?;
        Ok(vk_result(r))
    }

    /// Runs `reset`, a host call that resets command buffer `cb` (explicitly or by
    /// vkBeginCommandBuffer), once no submission of it is pending (resetting it would
    /// free host memory the queue is reading) and with submissions of it held off;
    /// then lets go of what its old commands used.
    fn reset_recording<T>(&self, cb: vk::CommandBuffer, reset: impl FnOnce() -> T) -> Result<T> {
        let host: Vec<_> = self
            .pinned(vk::ObjectType::COMMAND_BUFFER, cb.as_raw())
            .into_iter()
            .collect();
        let (r, released) = self.reset_exclusive(
            &host,
            "command buffer reset while a submission of it is pending",
            || {
                let released: Vec<_> = host.iter().flat_map(|h| h.release_recorded()).collect();
                (reset(), released)
            },
        )?;
        drop(released);
        Ok(r)
    }

    pub(super) fn cmd_bind_descriptor_sets(
        &mut self,
        args: &mut CmdBindDescriptorSetsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let sets = args.p_descriptor_sets.unwrap_or(&[]);
        let offsets = args.p_dynamic_offsets.unwrap_or(&[]);
        {
            let st = self.lock();
            let layout = st
                .pipeline_layout_info(args.layout.as_raw())
                .ok_or(VenusError::Invalid("unknown pipeline layout"))?;
            check_span(
                args.first_set,
                sets.len(),
                u32::try_from(layout.len()).unwrap_or(u32::MAX),
                "descriptor sets beyond the layout",
            )?;
            let mut dynamic = 0u64;
            for set in sets.iter().filter(|s| !s.is_null()) {
                let (info, _) = st
                    .descriptor_set_info(set.as_raw())
                    .ok_or(VenusError::Invalid("unknown descriptor set"))?;
                dynamic += info.dynamic_count();
            }
            if (offsets.len() as u64) < dynamic {
                return Err(VenusError::Invalid("too few dynamic offsets"));
            }
        }
        // SAFETY: live command buffer; sets and layout are translated handles; the
        // counts come from the slices, within the layout, with an offset per dynamic
        // descriptor.
        unsafe {
            dev.device.cmd_bind_descriptor_sets(
                args.command_buffer,
                args.pipeline_bind_point,
                args.layout,
                args.first_set,
                sets,
                offsets,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_push_constants(&mut self, args: &mut CmdPushConstantsArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let values = args.p_values.unwrap_or(&[]);
        if values.len() != args.size as usize {
            return Err(VenusError::Invalid("pValues length differs from size"));
        }
        check_span(
            args.offset,
            values.len(),
            dev.limits.max_push_constants_size,
            "push constants out of range",
        )?;
        // SAFETY: live command buffer and layout; the size is the slice length.
        unsafe {
            dev.device.cmd_push_constants(
                args.command_buffer,
                args.layout,
                args.stage_flags,
                args.offset,
                values,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_dispatch_indirect(
        &mut self,
        args: &mut CmdDispatchIndirectArgs<'_>,
    ) -> Result<()> {
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::COMPUTE)?;
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(&dev, &[(vk::ObjectType::BUFFER, args.buffer.as_raw())])?;
        self.check_buffer_range(args.buffer, args.offset, 12)?;
        // SAFETY: live command buffer and buffer; the arguments lie inside the buffer.
        unsafe {
            dev.device
                .cmd_dispatch_indirect(args.command_buffer, args.buffer, args.offset)
        };
        Ok(())
    }

    pub(super) fn cmd_pipeline_barrier(
        &mut self,
        args: &mut CmdPipelineBarrierArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_barriers(
            &dev,
            args.p_image_memory_barriers
                .unwrap_or(&[])
                .iter()
                .map(|b| (b.image, b.subresource_range)),
            args.p_buffer_memory_barriers
                .unwrap_or(&[])
                .iter()
                .map(|b| (b.buffer, b.offset, b.size)),
        )?;
        // SAFETY: live command buffer; barriers live in the arena with translated handles,
        // their ranges inside their objects.
        unsafe {
            dev.device.cmd_pipeline_barrier(
                args.command_buffer,
                args.src_stage_mask,
                args.dst_stage_mask,
                args.dependency_flags,
                args.p_memory_barriers.unwrap_or(&[]),
                args.p_buffer_memory_barriers.unwrap_or(&[]),
                args.p_image_memory_barriers.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_pipeline_barrier2(
        &mut self,
        args: &mut CmdPipelineBarrier2Args<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let info = required(args.p_dependency_info, "pDependencyInfo")?;
        self.check_dependency(&dev, info)?;
        // SAFETY: live command buffer; the dependency info lives in the arena, its
        // barrier ranges inside their objects.
        unsafe { dev.device.cmd_pipeline_barrier2(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_copy_buffer(&mut self, args: &mut CmdCopyBufferArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(
            &dev,
            &[
                (vk::ObjectType::BUFFER, args.src_buffer.as_raw()),
                (vk::ObjectType::BUFFER, args.dst_buffer.as_raw()),
            ],
        )?;
        for r in args.p_regions.unwrap_or(&[]) {
            self.check_buffer_bytes(args.src_buffer, r.src_offset, r.size)?;
            self.check_buffer_bytes(args.dst_buffer, r.dst_offset, r.size)?;
        }
        // SAFETY: live command buffer and buffers; regions from the arena, inside both
        // buffers.
        unsafe {
            dev.device.cmd_copy_buffer(
                args.command_buffer,
                args.src_buffer,
                args.dst_buffer,
                args.p_regions.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_copy_buffer2(&mut self, args: &mut CmdCopyBuffer2Args<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let info = required(args.p_copy_buffer_info, "pCopyBufferInfo")?;
        // SAFETY: the decoder built `pRegions` with `regionCount` entries in the arena.
        let regions = unsafe { bounds::regions(info.p_regions, info.region_count) };
        for r in regions {
            self.check_buffer_bytes(info.src_buffer, r.src_offset, r.size)?;
            self.check_buffer_bytes(info.dst_buffer, r.dst_offset, r.size)?;
        }
        // SAFETY: live command buffer; `info` lives in the arena.
        unsafe { dev.device.cmd_copy_buffer2(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_fill_buffer(&mut self, args: &mut CmdFillBufferArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_buffer_bytes(args.dst_buffer, args.dst_offset, args.size)?;
        // SAFETY: live command buffer and buffer; the range lies inside it.
        unsafe {
            dev.device.cmd_fill_buffer(
                args.command_buffer,
                args.dst_buffer,
                args.dst_offset,
                args.size,
                args.data,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_update_buffer(&mut self, args: &mut CmdUpdateBufferArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let data = args.p_data.unwrap_or(&[]);
        if data.len() as u64 != args.data_size {
            return Err(VenusError::Invalid("pData length differs from dataSize"));
        }
        self.check_buffer_bytes(args.dst_buffer, args.dst_offset, args.data_size)?;
        // SAFETY: live command buffer and buffer; the size is the slice length.
        unsafe {
            dev.device.cmd_update_buffer(
                args.command_buffer,
                args.dst_buffer,
                args.dst_offset,
                data,
            )
        };
        Ok(())
    }

    pub(super) fn cmd_copy_image(&mut self, args: &mut CmdCopyImageArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(
            &dev,
            &[
                (vk::ObjectType::IMAGE, args.src_image.as_raw()),
                (vk::ObjectType::IMAGE, args.dst_image.as_raw()),
            ],
        )?;
        let (src, dst) = (
            self.image_info(args.src_image)?,
            self.image_info(args.dst_image)?,
        );
        for r in args.p_regions.unwrap_or(&[]) {
            bounds::check_image_copy(
                &src,
                &dst,
                (&r.src_subresource, r.src_offset),
                (&r.dst_subresource, r.dst_offset),
                r.extent,
            )?;
        }
        // SAFETY: live command buffer and images; regions from the arena, inside both
        // images.
        unsafe {
            dev.device.cmd_copy_image(
                args.command_buffer,
                args.src_image,
                args.src_image_layout,
                args.dst_image,
                args.dst_image_layout,
                args.p_regions.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_copy_buffer_to_image(
        &mut self,
        args: &mut CmdCopyBufferToImageArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(
            &dev,
            &[
                (vk::ObjectType::BUFFER, args.src_buffer.as_raw()),
                (vk::ObjectType::IMAGE, args.dst_image.as_raw()),
            ],
        )?;
        self.check_buffer_image(
            args.src_buffer,
            args.dst_image,
            args.p_regions.unwrap_or(&[]).iter().copied(),
        )?;
        // SAFETY: live command buffer, buffer and image; regions from the arena, inside
        // both.
        unsafe {
            dev.device.cmd_copy_buffer_to_image(
                args.command_buffer,
                args.src_buffer,
                args.dst_image,
                args.dst_image_layout,
                args.p_regions.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_copy_image_to_buffer(
        &mut self,
        args: &mut CmdCopyImageToBufferArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(
            &dev,
            &[
                (vk::ObjectType::IMAGE, args.src_image.as_raw()),
                (vk::ObjectType::BUFFER, args.dst_buffer.as_raw()),
            ],
        )?;
        self.check_buffer_image(
            args.dst_buffer,
            args.src_image,
            args.p_regions.unwrap_or(&[]).iter().copied(),
        )?;
        // SAFETY: live command buffer, image and buffer; regions from the arena, inside
        // both.
        unsafe {
            dev.device.cmd_copy_image_to_buffer(
                args.command_buffer,
                args.src_image,
                args.src_image_layout,
                args.dst_buffer,
                args.p_regions.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_clear_color_image(
        &mut self,
        args: &mut CmdClearColorImageArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let color = required(args.p_color, "pColor")?;
        self.check_owned(&dev, &[(vk::ObjectType::IMAGE, args.image.as_raw())])?;
        let info = self.image_info(args.image)?;
        for r in args.p_ranges.unwrap_or(&[]) {
            info.check_range(r)?;
        }
        // SAFETY: live command buffer and image; ranges from the arena.
        unsafe {
            dev.device.cmd_clear_color_image(
                args.command_buffer,
                args.image,
                args.image_layout,
                color,
                args.p_ranges.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_wait_events(&mut self, args: &mut CmdWaitEventsArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_barriers(
            &dev,
            args.p_image_memory_barriers
                .unwrap_or(&[])
                .iter()
                .map(|b| (b.image, b.subresource_range)),
            args.p_buffer_memory_barriers
                .unwrap_or(&[])
                .iter()
                .map(|b| (b.buffer, b.offset, b.size)),
        )?;
        // SAFETY: live command buffer; events and barriers from the arena, barrier
        // ranges inside their objects.
        unsafe {
            dev.device.cmd_wait_events(
                args.command_buffer,
                args.p_events.unwrap_or(&[]),
                args.src_stage_mask,
                args.dst_stage_mask,
                args.p_memory_barriers.unwrap_or(&[]),
                args.p_buffer_memory_barriers.unwrap_or(&[]),
                args.p_image_memory_barriers.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_set_event2(&mut self, args: &mut CmdSetEvent2Args<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let info = required(args.p_dependency_info, "pDependencyInfo")?;
        self.check_dependency(&dev, info)?;
        // SAFETY: live command buffer and event; `info` from the arena, its barrier
        // ranges inside their objects.
        unsafe {
            dev.device
                .cmd_set_event2(args.command_buffer, args.event, info)
        };
        Ok(())
    }

    pub(super) fn cmd_wait_events2(&mut self, args: &mut CmdWaitEvents2Args<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let events = args.p_events.unwrap_or(&[]);
        let infos = args.p_dependency_infos.unwrap_or(&[]);
        if events.len() != infos.len() {
            return Err(VenusError::Invalid(
                "pDependencyInfos length differs from eventCount",
            ));
        }
        for info in infos {
            self.check_dependency(&dev, info)?;
        }
        // SAFETY: live command buffer; events and infos from the arena, equal lengths,
        // barrier ranges inside their objects.
        unsafe {
            dev.device
                .cmd_wait_events2(args.command_buffer, events, infos)
        };
        Ok(())
    }

    pub(super) fn cmd_begin_render_pass(
        &mut self,
        args: &mut CmdBeginRenderPassArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let info = required(args.p_render_pass_begin, "pRenderPassBegin")?;
        let state = self.check_render_pass_begin(&dev, info)?;
        self.lock()
            .set_render_state(args.command_buffer.as_raw(), Some(state));
        // SAFETY: live command buffer; `info` from the arena with translated handles.
        unsafe {
            dev.device
                .cmd_begin_render_pass(args.command_buffer, info, args.contents)
        };
        Ok(())
    }

    pub(super) fn cmd_end_render_pass(
        &mut self,
        args: &mut CmdEndRenderPassArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.lock()
            .set_render_state(args.command_buffer.as_raw(), None);
        // SAFETY: live command buffer.
        unsafe { dev.device.cmd_end_render_pass(args.command_buffer) };
        Ok(())
    }

    pub(super) fn cmd_begin_rendering(
        &mut self,
        args: &mut CmdBeginRenderingArgs<'_>,
    ) -> Result<()> {
        let info = required(args.p_rendering_info, "pRenderingInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_begin_rendering,
            "vkCmdBeginRendering",
        )?;
        if info.color_attachment_count > dev.limits.max_color_attachments {
            return Err(VenusError::Invalid("too many color attachments"));
        }
        let layers = if info.view_mask != 0 {
            32 - info.view_mask.leading_zeros()
        } else {
            info.layer_count
        };
        // SAFETY: the decoder built the attachment arrays (and optional depth/stencil
        // infos) in the arena with their counts.
        let color =
            unsafe { bounds::regions(info.p_color_attachments, info.color_attachment_count) };
        // SAFETY: as above.
        let depth = unsafe { info.p_depth_attachment.as_ref() };
        // SAFETY: as above.
        let stencil = unsafe { info.p_stencil_attachment.as_ref() };
        let views: Vec<vk::ImageView> = color
            .iter()
            .chain(depth)
            .chain(stencil)
            .flat_map(|a| {
                // The resolve view is ignored (and may be anything) without a mode.
                let resolve = if a.resolve_mode == vk::ResolveModeFlags::NONE {
                    vk::ImageView::null()
                } else {
                    a.resolve_image_view
                };
                [a.image_view, resolve]
            })
            .filter(|v| *v != vk::ImageView::null())
            .collect();
        self.check_views_cover(&dev, &views, &info.render_area, layers)?;
        self.lock().set_render_state(
            args.command_buffer.as_raw(),
            Some(bounds::RenderState::Inside(info.render_area, layers.max(1))),
        );
        // SAFETY: live command buffer; `info` from the arena with translated handles.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_end_rendering(&mut self, args: &mut CmdEndRenderingArgs<'_>) -> Result<()> {
        let (_dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_end_rendering,
            "vkCmdEndRendering",
        )?;
        self.lock()
            .set_render_state(args.command_buffer.as_raw(), None);
        // SAFETY: live command buffer.
        unsafe { f(args.command_buffer) };
        Ok(())
    }

    pub(super) fn cmd_set_viewport(&mut self, args: &mut CmdSetViewportArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        check_span(
            args.first_viewport,
            args.p_viewports.unwrap_or(&[]).len(),
            dev.limits.max_viewports,
            "viewports out of range",
        )?;
        // SAFETY: live command buffer; viewports from the arena.
        unsafe {
            dev.device.cmd_set_viewport(
                args.command_buffer,
                args.first_viewport,
                args.p_viewports.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_set_scissor(&mut self, args: &mut CmdSetScissorArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        check_span(
            args.first_scissor,
            args.p_scissors.unwrap_or(&[]).len(),
            dev.limits.max_viewports,
            "scissors out of range",
        )?;
        // SAFETY: live command buffer; scissors from the arena.
        unsafe {
            dev.device.cmd_set_scissor(
                args.command_buffer,
                args.first_scissor,
                args.p_scissors.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_bind_vertex_buffers(
        &mut self,
        args: &mut CmdBindVertexBuffersArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        let buffers = args.p_buffers.unwrap_or(&[]);
        let offsets = args.p_offsets.unwrap_or(&[]);
        if buffers.len() != offsets.len() {
            return Err(VenusError::Invalid(
                "pOffsets length differs from bindingCount",
            ));
        }
        check_span(
            args.first_binding,
            buffers.len(),
            dev.limits.max_vertex_input_bindings,
            "vertex bindings out of range",
        )?;
        let owned: Vec<_> = buffers
            .iter()
            .map(|b| (vk::ObjectType::BUFFER, b.as_raw()))
            .collect();
        self.check_owned(&dev, &owned)?;
        // SAFETY: live command buffer and buffers; equal-length arrays from the arena.
        unsafe {
            dev.device.cmd_bind_vertex_buffers(
                args.command_buffer,
                args.first_binding,
                buffers,
                offsets,
            )
        };
        Ok(())
    }
}

impl Handler<'_, '_> {
    /// Checks barrier ranges: image subresource ranges inside their images, buffer
    /// ranges inside their buffers, both of this device.
    fn check_barriers(
        &self,
        dev: &super::DeviceState,
        images: impl IntoIterator<Item = (vk::Image, vk::ImageSubresourceRange)>,
        buffers: impl IntoIterator<Item = (vk::Buffer, u64, u64)>,
    ) -> Result<()> {
        for (image, range) in images {
            self.check_owned(dev, &[(vk::ObjectType::IMAGE, image.as_raw())])?;
            self.image_info(image)?.check_range(&range)?;
        }
        for (buffer, offset, size) in buffers {
            self.check_owned(dev, &[(vk::ObjectType::BUFFER, buffer.as_raw())])?;
            self.check_buffer_bytes(buffer, offset, size)?;
        }
        Ok(())
    }

    /// [`Self::check_barriers`] over a `VkDependencyInfo`.
    fn check_dependency(
        &self,
        dev: &super::DeviceState,
        info: &vk::DependencyInfo<'_>,
    ) -> Result<()> {
        // SAFETY: the decoder built both barrier arrays in the arena with their counts.
        let images = unsafe {
            bounds::regions(
                info.p_image_memory_barriers,
                info.image_memory_barrier_count,
            )
        };
        // SAFETY: as above.
        let buffers = unsafe {
            bounds::regions(
                info.p_buffer_memory_barriers,
                info.buffer_memory_barrier_count,
            )
        };
        self.check_barriers(
            dev,
            images.iter().map(|b| (b.image, b.subresource_range)),
            buffers.iter().map(|b| (b.buffer, b.offset, b.size)),
        )
    }
}
