//! Shader modules, pipeline layouts, pipeline caches, compute and graphics pipelines,
//! render passes and framebuffers.

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    CreateComputePipelinesArgs, CreateFramebufferArgs, CreateGraphicsPipelinesArgs,
    CreatePipelineLayoutArgs, CreateRenderPass2Args, CreateRenderPassArgs, CreateShaderModuleArgs,
    GetPipelineCacheDataArgs,
};

use super::bounds::{self, PassInfo, RenderState, ViewInfo};
use super::graphics::check_span;
use super::objects::FramebufferInfo;
use super::physical_device::required;
use super::{raw, Handler, Result, VenusError};

impl Handler<'_, '_> {
    /// Binds the guest ids in `slots` to the pipelines a driver call created
    /// (`Err((partial, result))` from ash binds the non-NULL ones).
    fn bind_pipelines(
        &self,
        device: vk::Device,
        ids: &[u64],
        created: std::result::Result<Vec<vk::Pipeline>, (Vec<vk::Pipeline>, vk::Result)>,
    ) -> Result<vk::Result> {
        let (pipelines, ret) = match created {
            Ok(p) => (p, vk::Result::SUCCESS),
            Err((p, r)) => (p, r),
        };
        let mut st = self.lock();
        for (&id, p) in ids.iter().zip(&pipelines) {
            if *p != vk::Pipeline::null() {
                st.bind(id, vk::ObjectType::PIPELINE, p.as_raw(), device.as_raw())?;
            }
        }
        Ok(ret)
    }

    /// The guest ids of a pipeline-creation command's outputs, all new and distinct.
    fn pipeline_ids(&self, slots: Option<&[vk::Pipeline]>, count: usize) -> Result<Vec<u64>> {
        let slots = required(slots, "pPipelines")?;
        if slots.len() != count {
            return Err(VenusError::Invalid(
                "pPipelines length differs from createInfoCount",
            ));
        }
        let st = self.lock();
        let mut ids = Vec::with_capacity(count);
        for p in slots {
            let id = p.as_raw();
            if id == 0 {
                return Err(VenusError::ZeroId(vk::ObjectType::PIPELINE));
            }
            st.check_free(id)?;
            if ids.contains(&id) {
                return Err(VenusError::DuplicateId(id));
            }
            ids.push(id);
        }
        self.check_room(&st, ids.len())?;
        Ok(ids)
    }

    pub(super) fn create_shader_module(
        &mut self,
        args: &mut CreateShaderModuleArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        if info.p_code.is_null() || info.code_size == 0 || info.code_size % 4 != 0 {
            return Err(VenusError::Invalid(
                "shader code missing or not a multiple of 4 bytes",
            ));
        }
        // SAFETY: live device; the decoder sized pCode to codeSize bytes in the arena.
        self.create_child(args.device, args.p_shader_module.as_deref(), |d| unsafe {
            d.device.create_shader_module(info, None)
        })
    }

    pub(super) fn create_pipeline_layout(
        &mut self,
        args: &mut CreatePipelineLayoutArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_pipeline_layout.as_deref())?;
        // SAFETY: the decoder built `pSetLayouts` with `setLayoutCount` entries.
        let layouts = unsafe { bounds::regions(info.p_set_layouts, info.set_layout_count) };
        let sets: Vec<_> = {
            let st = self.lock();
            layouts
                .iter()
                .map(|l| st.set_layout_info(l.as_raw()))
                .collect()
        };
        // SAFETY: live device; `info` lives in the arena with translated set layouts.
        let r = self.create_child(args.device, args.p_pipeline_layout.as_deref(), |d| unsafe {
            d.device.create_pipeline_layout(info, None)
        })?;
        self.lock().set_pipeline_layout_info(id, sets);
        Ok(r)
    }

    pub(super) fn get_pipeline_cache_data(
        &mut self,
        args: &mut GetPipelineCacheDataArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let size = required(args.p_data_size.as_deref_mut(), "pDataSize")?;
        let ptr = match args.p_data.as_deref_mut() {
            None => std::ptr::null_mut(),
            Some(buf) => {
                if *size > buf.len() {
                    return Err(VenusError::Invalid("pData shorter than pDataSize"));
                }
                buf.as_mut_ptr()
            }
        };
        // SAFETY: live device and cache; `ptr` is NULL or holds `*size` bytes.
        Ok(unsafe {
            (dev.device.fp_v1_0().get_pipeline_cache_data)(
                dev.device.handle(),
                args.pipeline_cache,
                size,
                ptr.cast(),
            )
        })
    }

    pub(super) fn create_compute_pipelines(
        &mut self,
        args: &mut CreateComputePipelinesArgs<'_>,
    ) -> Result<vk::Result> {
        let infos = args.p_create_infos.unwrap_or(&[]);
        let ids = self.pipeline_ids(args.p_pipelines.as_deref(), infos.len())?;
        let dev = self.device(args.device)?;
        // SAFETY: live device; the infos live in the arena with translated handles.
        let created = unsafe {
            dev.device
                .create_compute_pipelines(args.pipeline_cache, infos, None)
        };
        self.bind_pipelines(args.device, &ids, created)
    }

    pub(super) fn create_graphics_pipelines(
        &mut self,
        args: &mut CreateGraphicsPipelinesArgs<'_>,
    ) -> Result<vk::Result> {
        let infos = args.p_create_infos.unwrap_or(&[]);
        let ids = self.pipeline_ids(args.p_pipelines.as_deref(), infos.len())?;
        let dev = self.device(args.device)?;
        for info in infos {
            self.check_graphics_pipeline(&dev, info)?;
        }
        // SAFETY: live device; the infos live in the arena with translated handles,
        // their counts within the device limits.
        let created = unsafe {
            dev.device
                .create_graphics_pipelines(args.pipeline_cache, infos, None)
        };
        self.bind_pipelines(args.device, &ids, created)
    }

    pub(super) fn create_render_pass(
        &mut self,
        args: &mut CreateRenderPassArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_render_pass.as_deref())?;
        // SAFETY: the decoder built the attachments with `attachmentCount` entries.
        let atts = unsafe { bounds::regions(info.p_attachments, info.attachment_count) };
        let pass = PassInfo::new(
            atts.iter().map(|a| (a.load_op, a.stencil_load_op)),
            info.subpass_count,
        );
        // SAFETY: live device; `info` lives in the arena.
        let r = self.create_child(args.device, args.p_render_pass.as_deref(), |d| unsafe {
            d.device.create_render_pass(info, None)
        })?;
        self.lock().set_pass_info(id, pass);
        Ok(r)
    }

    pub(super) fn create_render_pass2(
        &mut self,
        args: &mut CreateRenderPass2Args<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_render_pass.as_deref())?;
        // SAFETY: the decoder built the attachments with `attachmentCount` entries.
        let atts = unsafe { bounds::regions(info.p_attachments, info.attachment_count) };
        let pass = PassInfo::new(
            atts.iter().map(|a| (a.load_op, a.stencil_load_op)),
            info.subpass_count,
        );
        // SAFETY: live device; `info` lives in the arena.
        let r = self.create_child(args.device, args.p_render_pass.as_deref(), |d| unsafe {
            d.device.create_render_pass2(info, None)
        })?;
        self.lock().set_pass_info(id, pass);
        Ok(r)
    }

    pub(super) fn create_framebuffer(
        &mut self,
        args: &mut CreateFramebufferArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_framebuffer.as_deref())?;
        let dev = self.device(args.device)?;
        self.check_owned(
            &dev,
            &[(vk::ObjectType::RENDER_PASS, info.render_pass.as_raw())],
        )?;
        let pass = self
            .lock()
            .pass_info(info.render_pass.as_raw())
            .ok_or(VenusError::Invalid("framebuffer without a render pass"))?;
        if info.attachment_count != pass.attachments {
            return Err(VenusError::Invalid(
                "framebuffer attachmentCount differs from the render pass",
            ));
        }
        let imageless = info.flags.contains(vk::FramebufferCreateFlags::IMAGELESS);
        if !imageless && info.attachment_count > 0 && info.p_attachments.is_null() {
            return Err(VenusError::Null {
                what: "pAttachments",
            });
        }
        let fb = FramebufferInfo {
            attachments: info.attachment_count,
            imageless,
            width: info.width,
            height: info.height,
            layers: info.layers,
        };
        if !imageless {
            // SAFETY: the decoder built `pAttachments` with `attachmentCount` entries.
            let views = unsafe { bounds::regions(info.p_attachments, info.attachment_count) };
            self.check_views_cover(&dev, views, &fb.area(), fb.layers)?;
        }
        // SAFETY: live device; `info` lives in the arena with translated handles.
        let r = self.create_child(args.device, args.p_framebuffer.as_deref(), |d| unsafe {
            d.device.create_framebuffer(info, None)
        })?;
        self.lock().set_framebuffer_info(id, fb);
        Ok(r)
    }

    /// Checks that every view (of this device) covers `area` and `layers`.
    pub(super) fn check_views_cover(
        &self,
        dev: &super::DeviceState,
        views: &[vk::ImageView],
        area: &vk::Rect2D,
        layers: u32,
    ) -> Result<()> {
        let owned: Vec<_> = views
            .iter()
            .map(|v| (vk::ObjectType::IMAGE_VIEW, v.as_raw()))
            .collect();
        self.check_owned(dev, &owned)?;
        let st = self.lock();
        for v in views {
            st.view_info(v.as_raw())
                .ok_or(VenusError::Invalid("unknown image view"))?
                .covers(area, layers)?;
        }
        Ok(())
    }

    /// Checks what the driver indexes at a render pass begin: enough clear values for
    /// the attachments that clear, a framebuffer with the pass's attachment count, a
    /// render area inside it, and for an imageless framebuffer the views in
    /// `VkRenderPassAttachmentBeginInfo`. Returns the render state for clears.
    pub(super) fn check_render_pass_begin(
        &self,
        dev: &super::DeviceState,
        info: &vk::RenderPassBeginInfo<'_>,
    ) -> Result<RenderState> {
        self.check_owned(
            dev,
            &[
                (vk::ObjectType::RENDER_PASS, info.render_pass.as_raw()),
                (vk::ObjectType::FRAMEBUFFER, info.framebuffer.as_raw()),
            ],
        )?;
        let (pass, fb) = {
            let st = self.lock();
            (
                st.pass_info(info.render_pass.as_raw()),
                st.framebuffer_info(info.framebuffer.as_raw()),
            )
        };
        let pass = pass.ok_or(VenusError::Invalid(
            "render pass begin without a render pass",
        ))?;
        let fb = fb.ok_or(VenusError::Invalid(
            "render pass begin without a framebuffer",
        ))?;
        let (fb_attachments, imageless) = (fb.attachments, fb.imageless);
        let whole = ViewInfo {
            width: fb.width,
            height: fb.height,
            layers: fb.layers,
        };
        whole.covers(&info.render_area, 0)?;
        if info.clear_value_count < pass.clears
            || (pass.clears > 0 && info.p_clear_values.is_null())
        {
            return Err(VenusError::Invalid("too few clear values"));
        }
        if fb_attachments != pass.attachments {
            return Err(VenusError::Invalid(
                "framebuffer and render pass attachment counts differ",
            ));
        }
        if imageless {
            // SAFETY: the chain was decoded into this command's arena.
            let views = unsafe {
                raw::find_in_chain(
                    info.p_next,
                    vk::StructureType::RENDER_PASS_ATTACHMENT_BEGIN_INFO,
                )
            }
            .cast::<vk::RenderPassAttachmentBeginInfo<'_>>();
            // SAFETY: NULL or a RenderPassAttachmentBeginInfo in the arena (its sType).
            let views = unsafe { views.as_ref() }.ok_or(VenusError::Invalid(
                "imageless framebuffer begun without attachments",
            ))?;
            if views.attachment_count != fb_attachments
                || (fb_attachments > 0 && views.p_attachments.is_null())
            {
                return Err(VenusError::Invalid(
                    "attachment views differ from the framebuffer",
                ));
            }
            // SAFETY: the decoder built `pAttachments` with `attachmentCount` entries.
            let list = unsafe { bounds::regions(views.p_attachments, views.attachment_count) };
            self.check_views_cover(dev, list, &fb.area(), fb.layers)?;
        }
        Ok(RenderState::Inside(info.render_area, fb.layers))
    }

    /// Checks what the driver copies into fixed-size state from a graphics pipeline
    /// create info: attachment, viewport and vertex input counts within the device
    /// limits, and the subpass index within the render pass.
    fn check_graphics_pipeline(
        &self,
        dev: &super::DeviceState,
        info: &vk::GraphicsPipelineCreateInfo<'_>,
    ) -> Result<()> {
        let l = &dev.limits;
        self.check_owned(
            dev,
            &[
                (vk::ObjectType::RENDER_PASS, info.render_pass.as_raw()),
                (vk::ObjectType::PIPELINE_LAYOUT, info.layout.as_raw()),
            ],
        )?;
        if info.render_pass != vk::RenderPass::null() {
            let pass = self
                .lock()
                .pass_info(info.render_pass.as_raw())
                .ok_or(VenusError::Invalid("pipeline with an unknown render pass"))?;
            if info.subpass >= pass.subpasses {
                return Err(VenusError::Invalid("subpass index out of range"));
            }
        }
        // Every state pointer below is NULL or points at a struct the decoder built in
        // this command's arena, with arrays of their counts.
        // SAFETY: as just said.
        let blend = unsafe { info.p_color_blend_state.as_ref() };
        if let Some(b) = blend {
            check_span(
                0,
                b.attachment_count as usize,
                l.max_color_attachments,
                "blend attachments",
            )?;
        }
        // SAFETY: as above.
        let vertex = unsafe { info.p_vertex_input_state.as_ref() };
        if let Some(v) = vertex {
            // SAFETY: as above.
            let bindings = unsafe {
                bounds::regions(
                    v.p_vertex_binding_descriptions,
                    v.vertex_binding_description_count,
                )
            };
            // SAFETY: as above.
            let attributes = unsafe {
                bounds::regions(
                    v.p_vertex_attribute_descriptions,
                    v.vertex_attribute_description_count,
                )
            };
            check_span(
                0,
                bindings.len(),
                l.max_vertex_input_bindings,
                "vertex bindings",
            )?;
            check_span(
                0,
                attributes.len(),
                l.max_vertex_input_attributes,
                "vertex attributes",
            )?;
            if bindings
                .iter()
                .any(|b| b.binding >= l.max_vertex_input_bindings)
                || attributes.iter().any(|a| {
                    a.location >= l.max_vertex_input_attributes
                        || a.binding >= l.max_vertex_input_bindings
                })
            {
                return Err(VenusError::Invalid(
                    "vertex binding or location out of range",
                ));
            }
        }
        // SAFETY: as above.
        let viewport = unsafe { info.p_viewport_state.as_ref() };
        if let Some(v) = viewport {
            check_span(0, v.viewport_count as usize, l.max_viewports, "viewports")?;
            check_span(0, v.scissor_count as usize, l.max_viewports, "scissors")?;
        }
        // SAFETY: the chain was decoded into this command's arena.
        let rendering = unsafe {
            raw::find_in_chain(
                info.p_next,
                vk::StructureType::PIPELINE_RENDERING_CREATE_INFO,
            )
        }
        .cast::<vk::PipelineRenderingCreateInfo<'_>>();
        // SAFETY: NULL or a PipelineRenderingCreateInfo in the arena (its sType).
        if let Some(r) = unsafe { rendering.as_ref() } {
            check_span(
                0,
                r.color_attachment_count as usize,
                l.max_color_attachments,
                "rendering color attachments",
            )?;
        }
        Ok(())
    }
}

impl Handler<'_, '_> {}
