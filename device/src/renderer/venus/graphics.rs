//! Graphics command-buffer commands beyond the basic ones in `command_buffer.rs`: render
//! pass 2, dynamic state that takes arrays or sample counts, vertex/index binding 2,
//! indirect, count and multi draws, transform feedback, conditional rendering, push
//! descriptors. Setters with plain-value arguments are generated (`forward.rs`, from the
//! generator's `policy::FORWARDED`).
//!
//! Handlers check what the host driver indexes with guest values: array lengths
//! against counts and device limits (the driver keeps fixed-size per-attachment,
//! per-viewport and per-binding state), indirect argument ranges against the buffer
//! size, and that direct handle arguments belong to the command buffer's device.

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    CmdBeginConditionalRenderingEXTArgs, CmdBeginQueryIndexedEXTArgs, CmdBeginRenderPass2Args,
    CmdBeginTransformFeedbackEXTArgs, CmdBindTransformFeedbackBuffersEXTArgs,
    CmdBindVertexBuffers2Args, CmdDrawIndexedIndirectArgs, CmdDrawIndexedIndirectCountArgs,
    CmdDrawIndirectArgs, CmdDrawIndirectByteCountEXTArgs, CmdDrawIndirectCountArgs,
    CmdDrawMultiEXTArgs, CmdDrawMultiIndexedEXTArgs, CmdEndQueryIndexedEXTArgs,
    CmdEndRenderPass2Args, CmdEndTransformFeedbackEXTArgs, CmdPushDescriptorSetKHRArgs,
    CmdSetColorBlendAdvancedEXTArgs, CmdSetColorBlendEnableEXTArgs,
    CmdSetColorBlendEquationEXTArgs, CmdSetColorWriteEnableEXTArgs, CmdSetColorWriteMaskEXTArgs,
    CmdSetRasterizationSamplesEXTArgs, CmdSetRasterizationStreamEXTArgs, CmdSetSampleMaskEXTArgs,
    CmdSetScissorWithCountArgs, CmdSetVertexInputEXTArgs, CmdSetViewportWithCountArgs,
};

use super::descriptor::check_write;
use super::physical_device::required;
use super::{Handler, Result, VenusError};

/// `first + count <= max`, without overflow (`what` names the array).
pub(super) fn check_span(first: u32, count: usize, max: u32, what: &'static str) -> Result<()> {
    let count = u64::try_from(count).map_err(|_| VenusError::Invalid(what))?;
    if u64::from(first) + count > u64::from(max) {
        return Err(VenusError::Invalid(what));
    }
    Ok(())
}

/// An optional array that must be absent or exactly `len` long.
fn opt_len<T>(a: Option<&[T]>, len: usize, what: &'static str) -> Result<*const T> {
    match a {
        None => Ok(std::ptr::null()),
        Some(s) if s.len() == len => Ok(s.as_ptr()),
        Some(_) => Err(VenusError::Invalid(what)),
    }
}

/// Bytes an indirect draw reads: `count` records of `size` bytes, `stride` apart.
/// Vulkan requires a 4-byte aligned stride of at least `size` when `count > 1`
/// (always, for the count variants: `always_stride`).
fn indirect_span(count: u32, stride: u32, size: u32, always_stride: bool) -> Result<u64> {
    if (count > 1 || always_stride) && (!stride.is_multiple_of(4) || stride < size) {
        return Err(VenusError::Invalid(
            "indirect stride too small or unaligned",
        ));
    }
    if count == 0 {
        return Ok(0);
    }
    u64::from(count - 1)
        .checked_mul(u64::from(stride))
        .and_then(|v| v.checked_add(u64::from(size)))
        .ok_or(VenusError::Invalid("indirect range overflows"))
}

/// `sizeof(VkDrawIndirectCommand)`.
const DRAW_SIZE: u32 = 16;
/// `sizeof(VkDrawIndexedIndirectCommand)`.
const DRAW_INDEXED_SIZE: u32 = 20;
/// `sizeof(VkMultiDrawInfoEXT)`.
const MULTI_DRAW_SIZE: u32 = 8;
/// `sizeof(VkMultiDrawIndexedInfoEXT)`.
const MULTI_DRAW_INDEXED_SIZE: u32 = 12;
const _: () = assert!(std::mem::size_of::<vk::DrawIndirectCommand>() == DRAW_SIZE as usize);
const _: () =
    assert!(std::mem::size_of::<vk::DrawIndexedIndirectCommand>() == DRAW_INDEXED_SIZE as usize);
const _: () = assert!(std::mem::size_of::<vk::MultiDrawInfoEXT>() == MULTI_DRAW_SIZE as usize);
const _: () =
    assert!(std::mem::size_of::<vk::MultiDrawIndexedInfoEXT>() == MULTI_DRAW_INDEXED_SIZE as usize);

impl Handler<'_, '_> {
    pub(super) fn cmd_set_rasterization_samples_ext(
        &mut self,
        args: &mut CmdSetRasterizationSamplesEXTArgs<'_>,
    ) -> Result<()> {
        let s = args.rasterization_samples.as_raw();
        if !s.is_power_of_two() || s > 64 {
            return Err(VenusError::Invalid("rasterizationSamples is not one count"));
        }
        let (_dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_rasterization_samples_ext,
            "vkCmdSetRasterizationSamplesEXT",
        )?;
        // SAFETY: live command buffer; a single valid sample count.
        unsafe { f(args.command_buffer, args.rasterization_samples) };
        Ok(())
    }

    pub(super) fn cmd_set_rasterization_stream_ext(
        &mut self,
        args: &mut CmdSetRasterizationStreamEXTArgs<'_>,
    ) -> Result<()> {
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_rasterization_stream_ext,
            "vkCmdSetRasterizationStreamEXT",
        )?;
        check_span(
            args.rasterization_stream,
            1,
            dev.max_xfb_buffers.max(1),
            "rasterizationStream out of range",
        )?;
        // SAFETY: live command buffer; a stream index in range.
        unsafe { f(args.command_buffer, args.rasterization_stream) };
        Ok(())
    }

    pub(super) fn cmd_set_sample_mask_ext(
        &mut self,
        args: &mut CmdSetSampleMaskEXTArgs<'_>,
    ) -> Result<()> {
        let s = args.samples.as_raw();
        if !s.is_power_of_two() || s > 64 {
            return Err(VenusError::Invalid("samples is not one count"));
        }
        let mask = required(args.p_sample_mask, "pSampleMask")?;
        if mask.len() < s.div_ceil(32) as usize {
            return Err(VenusError::Invalid("pSampleMask shorter than samples"));
        }
        let (_dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_sample_mask_ext,
            "vkCmdSetSampleMaskEXT",
        )?;
        // SAFETY: live command buffer; the mask holds ceil(samples/32) words.
        unsafe { f(args.command_buffer, args.samples, mask.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_color_blend_enable_ext(
        &mut self,
        args: &mut CmdSetColorBlendEnableEXTArgs<'_>,
    ) -> Result<()> {
        let a = args.p_color_blend_enables.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_color_blend_enable_ext,
            "vkCmdSetColorBlendEnableEXT",
        )?;
        let n = attachment_span(&dev, args.first_attachment, a.len())?;
        // SAFETY: live command buffer; `n` elements in range of the attachment limit.
        unsafe { f(args.command_buffer, args.first_attachment, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_color_blend_equation_ext(
        &mut self,
        args: &mut CmdSetColorBlendEquationEXTArgs<'_>,
    ) -> Result<()> {
        let a = args.p_color_blend_equations.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_color_blend_equation_ext,
            "vkCmdSetColorBlendEquationEXT",
        )?;
        let n = attachment_span(&dev, args.first_attachment, a.len())?;
        // SAFETY: as for the blend enables.
        unsafe { f(args.command_buffer, args.first_attachment, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_color_write_mask_ext(
        &mut self,
        args: &mut CmdSetColorWriteMaskEXTArgs<'_>,
    ) -> Result<()> {
        let a = args.p_color_write_masks.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_color_write_mask_ext,
            "vkCmdSetColorWriteMaskEXT",
        )?;
        let n = attachment_span(&dev, args.first_attachment, a.len())?;
        // SAFETY: as for the blend enables.
        unsafe { f(args.command_buffer, args.first_attachment, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_color_blend_advanced_ext(
        &mut self,
        args: &mut CmdSetColorBlendAdvancedEXTArgs<'_>,
    ) -> Result<()> {
        let a = args.p_color_blend_advanced.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_color_blend_advanced_ext,
            "vkCmdSetColorBlendAdvancedEXT",
        )?;
        let n = attachment_span(&dev, args.first_attachment, a.len())?;
        // SAFETY: as for the blend enables.
        unsafe { f(args.command_buffer, args.first_attachment, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_color_write_enable_ext(
        &mut self,
        args: &mut CmdSetColorWriteEnableEXTArgs<'_>,
    ) -> Result<()> {
        let a = args.p_color_write_enables.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_color_write_enable_ext,
            "vkCmdSetColorWriteEnableEXT",
        )?;
        let n = attachment_span(&dev, 0, a.len())?;
        // SAFETY: as for the blend enables.
        unsafe { f(args.command_buffer, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_viewport_with_count(
        &mut self,
        args: &mut CmdSetViewportWithCountArgs<'_>,
    ) -> Result<()> {
        let a = args.p_viewports.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_viewport_with_count,
            "vkCmdSetViewportWithCount",
        )?;
        check_span(0, a.len(), dev.limits.max_viewports, "too many viewports")?;
        let n = u32::try_from(a.len()).map_err(|_| VenusError::Invalid("too many viewports"))?;
        // SAFETY: live command buffer; `n` viewports within the device limit.
        unsafe { f(args.command_buffer, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_scissor_with_count(
        &mut self,
        args: &mut CmdSetScissorWithCountArgs<'_>,
    ) -> Result<()> {
        let a = args.p_scissors.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_scissor_with_count,
            "vkCmdSetScissorWithCount",
        )?;
        check_span(0, a.len(), dev.limits.max_viewports, "too many scissors")?;
        let n = u32::try_from(a.len()).map_err(|_| VenusError::Invalid("too many scissors"))?;
        // SAFETY: live command buffer; `n` scissors within the device limit.
        unsafe { f(args.command_buffer, n, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_set_vertex_input_ext(
        &mut self,
        args: &mut CmdSetVertexInputEXTArgs<'_>,
    ) -> Result<()> {
        let b = args.p_vertex_binding_descriptions.unwrap_or(&[]);
        let a = args.p_vertex_attribute_descriptions.unwrap_or(&[]);
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_set_vertex_input_ext,
            "vkCmdSetVertexInputEXT",
        )?;
        let l = &dev.limits;
        check_span(0, b.len(), l.max_vertex_input_bindings, "too many bindings")?;
        check_span(
            0,
            a.len(),
            l.max_vertex_input_attributes,
            "too many attributes",
        )?;
        if b.iter().any(|d| d.binding >= l.max_vertex_input_bindings)
            || a.iter().any(|d| {
                d.location >= l.max_vertex_input_attributes
                    || d.binding >= l.max_vertex_input_bindings
            })
        {
            return Err(VenusError::Invalid(
                "vertex binding or location out of range",
            ));
        }
        let (nb, na) = (
            u32::try_from(b.len()).unwrap_or(u32::MAX),
            u32::try_from(a.len()).unwrap_or(u32::MAX),
        );
        // SAFETY: live command buffer; both arrays within the device limits, with
        // in-range binding numbers and locations.
        unsafe { f(args.command_buffer, nb, b.as_ptr(), na, a.as_ptr()) };
        Ok(())
    }

    pub(super) fn cmd_begin_render_pass2(
        &mut self,
        args: &mut CmdBeginRenderPass2Args<'_>,
    ) -> Result<()> {
        let begin = required(args.p_render_pass_begin, "pRenderPassBegin")?;
        let sub = required(args.p_subpass_begin_info, "pSubpassBeginInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_begin_render_pass2,
            "vkCmdBeginRenderPass2",
        )?;
        let state = self.check_render_pass_begin(&dev, begin)?;
        self.lock()
            .set_render_state(args.command_buffer.as_raw(), Some(state));
        // SAFETY: live command buffer, render pass and framebuffer of this device; the
        // infos live in the arena.
        unsafe { f(args.command_buffer, begin, sub) };
        Ok(())
    }

    pub(super) fn cmd_end_render_pass2(
        &mut self,
        args: &mut CmdEndRenderPass2Args<'_>,
    ) -> Result<()> {
        let end = required(args.p_subpass_end_info, "pSubpassEndInfo")?;
        let (_dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_end_render_pass2,
            "vkCmdEndRenderPass2",
        )?;
        self.lock()
            .set_render_state(args.command_buffer.as_raw(), None);
        // SAFETY: live command buffer; the info lives in the arena.
        unsafe { f(args.command_buffer, end) };
        Ok(())
    }

    pub(super) fn cmd_bind_vertex_buffers2(
        &mut self,
        args: &mut CmdBindVertexBuffers2Args<'_>,
    ) -> Result<()> {
        let buffers = args.p_buffers.unwrap_or(&[]);
        let n = buffers.len();
        let offsets = args.p_offsets.unwrap_or(&[]);
        if offsets.len() != n {
            return Err(VenusError::Invalid(
                "pOffsets length differs from bindingCount",
            ));
        }
        let sizes = opt_len(args.p_sizes, n, "pSizes length differs from bindingCount")?;
        let strides = opt_len(
            args.p_strides,
            n,
            "pStrides length differs from bindingCount",
        )?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_bind_vertex_buffers2,
            "vkCmdBindVertexBuffers2",
        )?;
        check_span(
            args.first_binding,
            n,
            dev.limits.max_vertex_input_bindings,
            "vertex bindings out of range",
        )?;
        let owned: Vec<_> = buffers
            .iter()
            .map(|b| (vk::ObjectType::BUFFER, b.as_raw()))
            .collect();
        self.check_owned(&dev, &owned)?;
        let count = u32::try_from(n).map_err(|_| VenusError::Invalid("bindingCount"))?;
        // SAFETY: live command buffer and buffers of this device; every array is NULL
        // or `count` long, bindings within the device limit.
        unsafe {
            f(
                args.command_buffer,
                args.first_binding,
                count,
                buffers.as_ptr(),
                offsets.as_ptr(),
                sizes,
                strides,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_draw_indirect(&mut self, args: &mut CmdDrawIndirectArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(&dev, &[(vk::ObjectType::BUFFER, args.buffer.as_raw())])?;
        let span = indirect_span(args.draw_count, args.stride, DRAW_SIZE, false)?;
        self.check_buffer_range(args.buffer, args.offset, span)?;
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        // SAFETY: live command buffer and buffer of this device; every record the
        // driver reads lies inside the buffer.
        unsafe {
            dev.device.cmd_draw_indirect(
                args.command_buffer,
                args.buffer,
                args.offset,
                args.draw_count,
                args.stride,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_draw_indexed_indirect(
        &mut self,
        args: &mut CmdDrawIndexedIndirectArgs<'_>,
    ) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(&dev, &[(vk::ObjectType::BUFFER, args.buffer.as_raw())])?;
        let span = indirect_span(args.draw_count, args.stride, DRAW_INDEXED_SIZE, false)?;
        self.check_buffer_range(args.buffer, args.offset, span)?;
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        // SAFETY: as for vkCmdDrawIndirect.
        unsafe {
            dev.device.cmd_draw_indexed_indirect(
                args.command_buffer,
                args.buffer,
                args.offset,
                args.draw_count,
                args.stride,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_draw_indirect_count(
        &mut self,
        args: &mut CmdDrawIndirectCountArgs<'_>,
    ) -> Result<()> {
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_draw_indirect_count,
            "vkCmdDrawIndirectCount",
        )?;
        self.check_owned(
            &dev,
            &[
                (vk::ObjectType::BUFFER, args.buffer.as_raw()),
                (vk::ObjectType::BUFFER, args.count_buffer.as_raw()),
            ],
        )?;
        let span = indirect_span(args.max_draw_count, args.stride, DRAW_SIZE, true)?;
        self.check_buffer_range(args.buffer, args.offset, span)?;
        self.check_buffer_range(args.count_buffer, args.count_buffer_offset, 4)?;
        // SAFETY: live command buffer and buffers of this device; up to maxDrawCount
        // records and the count lie inside their buffers.
        unsafe {
            f(
                args.command_buffer,
                args.buffer,
                args.offset,
                args.count_buffer,
                args.count_buffer_offset,
                args.max_draw_count,
                args.stride,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_draw_indexed_indirect_count(
        &mut self,
        args: &mut CmdDrawIndexedIndirectCountArgs<'_>,
    ) -> Result<()> {
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_draw_indexed_indirect_count,
            "vkCmdDrawIndexedIndirectCount",
        )?;
        self.check_owned(
            &dev,
            &[
                (vk::ObjectType::BUFFER, args.buffer.as_raw()),
                (vk::ObjectType::BUFFER, args.count_buffer.as_raw()),
            ],
        )?;
        let span = indirect_span(args.max_draw_count, args.stride, DRAW_INDEXED_SIZE, true)?;
        self.check_buffer_range(args.buffer, args.offset, span)?;
        self.check_buffer_range(args.count_buffer, args.count_buffer_offset, 4)?;
        // SAFETY: as for vkCmdDrawIndirectCount.
        unsafe {
            f(
                args.command_buffer,
                args.buffer,
                args.offset,
                args.count_buffer,
                args.count_buffer_offset,
                args.max_draw_count,
                args.stride,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_draw_multi_ext(&mut self, args: &mut CmdDrawMultiEXTArgs<'_>) -> Result<()> {
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        let infos = args.p_vertex_info.unwrap_or(&[]);
        let n = u32::try_from(infos.len()).map_err(|_| VenusError::Invalid("drawCount"))?;
        if n != args.draw_count {
            return Err(VenusError::Invalid(
                "pVertexInfo length differs from drawCount",
            ));
        }
        let (_dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_draw_multi_ext,
            "vkCmdDrawMultiEXT",
        )?;
        // The decoder packs the records; the guest's stride described its own memory.
        let stride = MULTI_DRAW_SIZE;
        // SAFETY: live command buffer; `n` packed records with their own stride.
        unsafe {
            f(
                args.command_buffer,
                n,
                infos.as_ptr(),
                args.instance_count,
                args.first_instance,
                stride,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_draw_multi_indexed_ext(
        &mut self,
        args: &mut CmdDrawMultiIndexedEXTArgs<'_>,
    ) -> Result<()> {
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        let infos = args.p_index_info.unwrap_or(&[]);
        let n = u32::try_from(infos.len()).map_err(|_| VenusError::Invalid("drawCount"))?;
        if n != args.draw_count {
            return Err(VenusError::Invalid(
                "pIndexInfo length differs from drawCount",
            ));
        }
        let (_dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_draw_multi_indexed_ext,
            "vkCmdDrawMultiIndexedEXT",
        )?;
        let stride = MULTI_DRAW_INDEXED_SIZE;
        let vertex_offset = args
            .p_vertex_offset
            .map_or(std::ptr::null(), |v| v as *const i32);
        // SAFETY: live command buffer; `n` packed records; the offset is NULL or a
        // value in the arena.
        unsafe {
            f(
                args.command_buffer,
                n,
                infos.as_ptr(),
                args.instance_count,
                args.first_instance,
                stride,
                vertex_offset,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_bind_transform_feedback_buffers_ext(
        &mut self,
        args: &mut CmdBindTransformFeedbackBuffersEXTArgs<'_>,
    ) -> Result<()> {
        let buffers = args.p_buffers.unwrap_or(&[]);
        let n = buffers.len();
        let offsets = args.p_offsets.unwrap_or(&[]);
        if offsets.len() != n {
            return Err(VenusError::Invalid(
                "pOffsets length differs from bindingCount",
            ));
        }
        let sizes = opt_len(args.p_sizes, n, "pSizes length differs from bindingCount")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_bind_transform_feedback_buffers_ext,
            "vkCmdBindTransformFeedbackBuffersEXT",
        )?;
        check_span(
            args.first_binding,
            n,
            dev.max_xfb_buffers,
            "transform feedback bindings out of range",
        )?;
        let owned: Vec<_> = buffers
            .iter()
            .map(|b| (vk::ObjectType::BUFFER, b.as_raw()))
            .collect();
        self.check_owned(&dev, &owned)?;
        let count = u32::try_from(n).map_err(|_| VenusError::Invalid("bindingCount"))?;
        // SAFETY: live command buffer and buffers of this device; arrays NULL or
        // `count` long, bindings within the device limit.
        unsafe {
            f(
                args.command_buffer,
                args.first_binding,
                count,
                buffers.as_ptr(),
                offsets.as_ptr(),
                sizes,
            );
        }
        Ok(())
    }

    /// Shared checks of vkCmdBegin/EndTransformFeedbackEXT: the counter arrays are NULL
    /// or `counterBufferCount` long, within the device limit.
    fn xfb_counters(
        &self,
        dev: &super::DeviceState,
        first: u32,
        count: u32,
        buffers: Option<&[vk::Buffer]>,
        offsets: Option<&[u64]>,
    ) -> Result<(*const vk::Buffer, *const u64)> {
        let n = count as usize;
        check_span(
            first,
            n,
            dev.max_xfb_buffers,
            "counter buffers out of range",
        )?;
        let b = opt_len(buffers, n, "pCounterBuffers length differs from its count")?;
        let o = opt_len(
            offsets,
            n,
            "pCounterBufferOffsets length differs from its count",
        )?;
        let owned: Vec<_> = buffers
            .unwrap_or(&[])
            .iter()
            .map(|b| (vk::ObjectType::BUFFER, b.as_raw()))
            .collect();
        self.check_owned(dev, &owned)?;
        Ok((b, o))
    }

    pub(super) fn cmd_begin_transform_feedback_ext(
        &mut self,
        args: &mut CmdBeginTransformFeedbackEXTArgs<'_>,
    ) -> Result<()> {
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_begin_transform_feedback_ext,
            "vkCmdBeginTransformFeedbackEXT",
        )?;
        let (b, o) = self.xfb_counters(
            &dev,
            args.first_counter_buffer,
            args.counter_buffer_count,
            args.p_counter_buffers,
            args.p_counter_buffer_offsets,
        )?;
        // SAFETY: live command buffer; arrays checked by `xfb_counters`.
        unsafe {
            f(
                args.command_buffer,
                args.first_counter_buffer,
                args.counter_buffer_count,
                b,
                o,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_end_transform_feedback_ext(
        &mut self,
        args: &mut CmdEndTransformFeedbackEXTArgs<'_>,
    ) -> Result<()> {
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_end_transform_feedback_ext,
            "vkCmdEndTransformFeedbackEXT",
        )?;
        let (b, o) = self.xfb_counters(
            &dev,
            args.first_counter_buffer,
            args.counter_buffer_count,
            args.p_counter_buffers,
            args.p_counter_buffer_offsets,
        )?;
        // SAFETY: live command buffer; arrays checked by `xfb_counters`.
        unsafe {
            f(
                args.command_buffer,
                args.first_counter_buffer,
                args.counter_buffer_count,
                b,
                o,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_begin_query_indexed_ext(
        &mut self,
        args: &mut CmdBeginQueryIndexedEXTArgs<'_>,
    ) -> Result<()> {
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_begin_query_indexed_ext,
            "vkCmdBeginQueryIndexedEXT",
        )?;
        self.check_queries(&dev, args.query_pool, args.query, 1)?;
        check_span(args.index, 1, dev.max_xfb_buffers.max(1), "query index")?;
        // SAFETY: live command buffer and query pool of this device.
        unsafe {
            f(
                args.command_buffer,
                args.query_pool,
                args.query,
                args.flags,
                args.index,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_end_query_indexed_ext(
        &mut self,
        args: &mut CmdEndQueryIndexedEXTArgs<'_>,
    ) -> Result<()> {
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_end_query_indexed_ext,
            "vkCmdEndQueryIndexedEXT",
        )?;
        self.check_queries(&dev, args.query_pool, args.query, 1)?;
        check_span(args.index, 1, dev.max_xfb_buffers.max(1), "query index")?;
        // SAFETY: live command buffer and query pool of this device.
        unsafe { f(args.command_buffer, args.query_pool, args.query, args.index) };
        Ok(())
    }

    pub(super) fn cmd_draw_indirect_byte_count_ext(
        &mut self,
        args: &mut CmdDrawIndirectByteCountEXTArgs<'_>,
    ) -> Result<()> {
        self.require_pipeline(args.command_buffer, vk::PipelineBindPoint::GRAPHICS)?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_draw_indirect_byte_count_ext,
            "vkCmdDrawIndirectByteCountEXT",
        )?;
        self.check_owned(
            &dev,
            &[(vk::ObjectType::BUFFER, args.counter_buffer.as_raw())],
        )?;
        if args.vertex_stride == 0 {
            // The driver divides the byte count by it.
            return Err(VenusError::Invalid("vertexStride is 0"));
        }
        self.check_buffer_range(args.counter_buffer, args.counter_buffer_offset, 4)?;
        // SAFETY: live command buffer and counter buffer of this device; the counter
        // lies inside it; a non-zero stride.
        unsafe {
            f(
                args.command_buffer,
                args.instance_count,
                args.first_instance,
                args.counter_buffer,
                args.counter_buffer_offset,
                args.counter_offset,
                args.vertex_stride,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_begin_conditional_rendering_ext(
        &mut self,
        args: &mut CmdBeginConditionalRenderingEXTArgs<'_>,
    ) -> Result<()> {
        let info = required(
            args.p_conditional_rendering_begin,
            "pConditionalRenderingBegin",
        )?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_begin_conditional_rendering_ext,
            "vkCmdBeginConditionalRenderingEXT",
        )?;
        self.check_owned(&dev, &[(vk::ObjectType::BUFFER, info.buffer.as_raw())])?;
        self.check_buffer_range(info.buffer, info.offset, 4)?;
        // SAFETY: live command buffer and buffer of this device; the predicate lies
        // inside the buffer; the info lives in the arena.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_push_descriptor_set_khr(
        &mut self,
        args: &mut CmdPushDescriptorSetKHRArgs<'_>,
    ) -> Result<()> {
        let writes = args.p_descriptor_writes.unwrap_or(&[]);
        {
            let layout = self
                .lock()
                .pipeline_layout_info(args.layout.as_raw())
                .ok_or(VenusError::Invalid("unknown pipeline layout"))?;
            let set = usize::try_from(args.set)
                .ok()
                .and_then(|i| layout.get(i))
                .and_then(Option::as_ref)
                .ok_or(VenusError::Invalid("push descriptor set beyond the layout"))?;
            for w in writes {
                check_write(w)?;
                set.check_span(
                    w.dst_binding,
                    w.dst_array_element,
                    w.descriptor_count,
                    Some(w.descriptor_type),
                    0,
                )?;
            }
        }
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_push_descriptor_set_khr,
            "vkCmdPushDescriptorSetKHR",
        )?;
        self.check_owned(
            &dev,
            &[(vk::ObjectType::PIPELINE_LAYOUT, args.layout.as_raw())],
        )?;
        let n = u32::try_from(writes.len()).map_err(|_| VenusError::Invalid("writes"))?;
        // SAFETY: live command buffer and layout of this device; every write has the
        // array its type needs (checked above); the writes live in the arena.
        unsafe {
            f(
                args.command_buffer,
                args.pipeline_bind_point,
                args.layout,
                args.set,
                n,
                writes.as_ptr(),
            );
        }
        Ok(())
    }
}

/// `first + len` color attachments within `maxColorAttachments`; returns `len` as u32.
fn attachment_span(dev: &super::DeviceState, first: u32, len: usize) -> Result<u32> {
    check_span(
        first,
        len,
        dev.limits.max_color_attachments,
        "color attachments out of range",
    )?;
    u32::try_from(len).map_err(|_| VenusError::Invalid("attachmentCount"))
}
