//! Image transfer commands beyond the basic copies in `command_buffer.rs`: the `*2`
//! copies, blits, resolves, depth/stencil and attachment clears. Handles in the
//! arguments (and in the `*Info2` structs) must belong to the command buffer's device.

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    CmdBlitImage2Args, CmdBlitImageArgs, CmdClearAttachmentsArgs, CmdClearDepthStencilImageArgs,
    CmdCopyBufferToImage2Args, CmdCopyImage2Args, CmdCopyImageToBuffer2Args, CmdResolveImage2Args,
    CmdResolveImageArgs,
};

use super::bounds;
use super::graphics::check_span;
use super::physical_device::required;
use super::{Handler, Result, VenusError};

fn image(h: vk::Image) -> (vk::ObjectType, u64) {
    (vk::ObjectType::IMAGE, h.as_raw())
}

fn buffer(h: vk::Buffer) -> (vk::ObjectType, u64) {
    (vk::ObjectType::BUFFER, h.as_raw())
}

impl Handler<'_, '_> {
    pub(super) fn cmd_copy_image2(&mut self, args: &mut CmdCopyImage2Args<'_>) -> Result<()> {
        let info = required(args.p_copy_image_info, "pCopyImageInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_copy_image2,
            "vkCmdCopyImage2",
        )?;
        self.check_owned(&dev, &[image(info.src_image), image(info.dst_image)])?;
        let (src, dst) = (
            self.image_info(info.src_image)?,
            self.image_info(info.dst_image)?,
        );
        // SAFETY: the decoder built `pRegions` with `regionCount` entries in the arena.
        for r in unsafe { bounds::regions(info.p_regions, info.region_count) } {
            bounds::check_image_copy(
                &src,
                &dst,
                (&r.src_subresource, r.src_offset),
                (&r.dst_subresource, r.dst_offset),
                r.extent,
            )?;
        }
        // SAFETY: live command buffer and images of this device; the info and its
        // regions live in the arena.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_copy_buffer_to_image2(
        &mut self,
        args: &mut CmdCopyBufferToImage2Args<'_>,
    ) -> Result<()> {
        let info = required(args.p_copy_buffer_to_image_info, "pCopyBufferToImageInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_copy_buffer_to_image2,
            "vkCmdCopyBufferToImage2",
        )?;
        self.check_owned(&dev, &[buffer(info.src_buffer), image(info.dst_image)])?;
        // SAFETY: the decoder built `pRegions` with `regionCount` entries in the arena.
        let regions = unsafe { bounds::regions(info.p_regions, info.region_count) };
        self.check_buffer_image(
            info.src_buffer,
            info.dst_image,
            regions.iter().map(bounds::region_v1),
        )?;
        // SAFETY: live command buffer, buffer and image of this device; the info and
        // its regions live in the arena.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_copy_image_to_buffer2(
        &mut self,
        args: &mut CmdCopyImageToBuffer2Args<'_>,
    ) -> Result<()> {
        let info = required(args.p_copy_image_to_buffer_info, "pCopyImageToBufferInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_copy_image_to_buffer2,
            "vkCmdCopyImageToBuffer2",
        )?;
        self.check_owned(&dev, &[image(info.src_image), buffer(info.dst_buffer)])?;
        // SAFETY: the decoder built `pRegions` with `regionCount` entries in the arena.
        let regions = unsafe { bounds::regions(info.p_regions, info.region_count) };
        self.check_buffer_image(
            info.dst_buffer,
            info.src_image,
            regions.iter().map(bounds::region_v1),
        )?;
        // SAFETY: live command buffer, image and buffer of this device; the info and
        // its regions live in the arena.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_blit_image(&mut self, args: &mut CmdBlitImageArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(&dev, &[image(args.src_image), image(args.dst_image)])?;
        let (src, dst) = (
            self.image_info(args.src_image)?,
            self.image_info(args.dst_image)?,
        );
        for r in args.p_regions.unwrap_or(&[]) {
            src.check_corners(&r.src_subresource, &r.src_offsets)?;
            dst.check_corners(&r.dst_subresource, &r.dst_offsets)?;
        }
        // SAFETY: live command buffer and images of this device; regions from the
        // arena.
        unsafe {
            dev.device.cmd_blit_image(
                args.command_buffer,
                args.src_image,
                args.src_image_layout,
                args.dst_image,
                args.dst_image_layout,
                args.p_regions.unwrap_or(&[]),
                args.filter,
            );
        }
        Ok(())
    }

    pub(super) fn cmd_blit_image2(&mut self, args: &mut CmdBlitImage2Args<'_>) -> Result<()> {
        let info = required(args.p_blit_image_info, "pBlitImageInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_blit_image2,
            "vkCmdBlitImage2",
        )?;
        self.check_owned(&dev, &[image(info.src_image), image(info.dst_image)])?;
        let (src, dst) = (
            self.image_info(info.src_image)?,
            self.image_info(info.dst_image)?,
        );
        // SAFETY: the decoder built `pRegions` with `regionCount` entries in the arena.
        for r in unsafe { bounds::regions(info.p_regions, info.region_count) } {
            src.check_corners(&r.src_subresource, &r.src_offsets)?;
            dst.check_corners(&r.dst_subresource, &r.dst_offsets)?;
        }
        // SAFETY: live command buffer and images of this device; the info and its
        // regions live in the arena.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_resolve_image(&mut self, args: &mut CmdResolveImageArgs<'_>) -> Result<()> {
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(&dev, &[image(args.src_image), image(args.dst_image)])?;
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
        // SAFETY: live command buffer and images of this device; regions from the
        // arena.
        unsafe {
            dev.device.cmd_resolve_image(
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

    pub(super) fn cmd_resolve_image2(&mut self, args: &mut CmdResolveImage2Args<'_>) -> Result<()> {
        let info = required(args.p_resolve_image_info, "pResolveImageInfo")?;
        let (dev, f) = self.cmd_fn(
            args.command_buffer,
            |t| t.cmd_resolve_image2,
            "vkCmdResolveImage2",
        )?;
        self.check_owned(&dev, &[image(info.src_image), image(info.dst_image)])?;
        let (src, dst) = (
            self.image_info(info.src_image)?,
            self.image_info(info.dst_image)?,
        );
        // SAFETY: the decoder built `pRegions` with `regionCount` entries in the arena.
        for r in unsafe { bounds::regions(info.p_regions, info.region_count) } {
            bounds::check_image_copy(
                &src,
                &dst,
                (&r.src_subresource, r.src_offset),
                (&r.dst_subresource, r.dst_offset),
                r.extent,
            )?;
        }
        // SAFETY: live command buffer and images of this device; the info and its
        // regions live in the arena.
        unsafe { f(args.command_buffer, info) };
        Ok(())
    }

    pub(super) fn cmd_clear_depth_stencil_image(
        &mut self,
        args: &mut CmdClearDepthStencilImageArgs<'_>,
    ) -> Result<()> {
        let value = required(args.p_depth_stencil, "pDepthStencil")?;
        let dev = self.device_of(args.command_buffer)?;
        self.check_owned(&dev, &[image(args.image)])?;
        let info = self.image_info(args.image)?;
        for r in args.p_ranges.unwrap_or(&[]) {
            info.check_range(r)?;
        }
        // SAFETY: live command buffer and image of this device; ranges from the arena.
        unsafe {
            dev.device.cmd_clear_depth_stencil_image(
                args.command_buffer,
                args.image,
                args.image_layout,
                value,
                args.p_ranges.unwrap_or(&[]),
            );
        }
        Ok(())
    }

    pub(super) fn cmd_clear_attachments(
        &mut self,
        args: &mut CmdClearAttachmentsArgs<'_>,
    ) -> Result<()> {
        let atts = args.p_attachments.unwrap_or(&[]);
        let dev = self.device_of(args.command_buffer)?;
        let max = dev.limits.max_color_attachments;
        for a in atts {
            if a.aspect_mask.contains(vk::ImageAspectFlags::COLOR) {
                check_span(a.color_attachment, 1, max, "colorAttachment out of range")?;
            }
        }
        if atts.len() != args.attachment_count as usize {
            return Err(VenusError::Invalid(
                "pAttachments length differs from attachmentCount",
            ));
        }
        let rects = args.p_rects.unwrap_or(&[]);
        let state = self.lock().render_state(args.command_buffer.as_raw());
        match state {
            Some(bounds::RenderState::Inside(area, layers)) => {
                bounds::check_clear_rects(&area, layers, rects)?;
            }
            // A secondary continuing a pass it cannot see: the area is unknown.
            Some(bounds::RenderState::Inherited) => {}
            None => {
                return Err(VenusError::Invalid(
                    "vkCmdClearAttachments outside a render pass",
                ))
            }
        }
        // SAFETY: live command buffer; attachments (color indices within the device
        // limit) and rects from the arena.
        unsafe {
            dev.device
                .cmd_clear_attachments(args.command_buffer, atts, rects);
        }
        Ok(())
    }
}
