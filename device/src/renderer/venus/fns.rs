//! Device entry points beyond what `ash::Device` loads safely: core 1.2/1.3 commands
//! and extension commands, each looked up once at device creation under its core name
//! and then its extension aliases.
//!
//! `ash`'s own loaders replace a missing entry point with a stub that panics, which a
//! guest could reach by calling a command of an extension the host lacks. Here a
//! missing entry point is `None`, and the handler fails the context with
//! [`VenusError::HostLacks`](super::VenusError::HostLacks) instead.

use std::ffi::CStr;

use ash::vk;

macro_rules! device_fns {
    ($($field:ident: $pfn:ident = [$($name:literal),+];)*) => {
        /// Optional device entry points (see the module docs).
        #[allow(non_snake_case)]
        #[derive(Clone, Copy, Default)]
        pub(crate) struct DeviceFns {
            $(pub(crate) $field: Option<vk::$pfn>,)*
        }

        impl DeviceFns {
            /// Looks every entry point up on `device` (created from `instance`).
            pub(crate) fn load(instance: &ash::Instance, device: vk::Device) -> Self {
                let get = instance.fp_v1_0().get_device_proc_addr;
                let find = |names: &[&CStr]| {
                    names.iter().find_map(|n| {
                        // SAFETY: a live device of this instance and a NUL-terminated
                        // name; the call has no other precondition.
                        unsafe { get(device, n.as_ptr()) }
                    })
                };
                Self {
                    $($field: find(&[$($name),+]).map(|f| {
                        // SAFETY: the driver returned the entry point for this command
                        // name (or an alias of it, which has the same signature), and
                        // `vk::$pfn` is that command's signature.
                        unsafe {
                            std::mem::transmute::<unsafe extern "system" fn(), vk::$pfn>(f)
                        }
                    }),)*
                }
            }
        }

        impl std::fmt::Debug for DeviceFns {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let loaded = [$(self.$field.is_some()),*].iter().filter(|&&b| b).count();
                f.debug_struct("DeviceFns").field("loaded", &loaded).finish()
            }
        }
    };
}

device_fns! {
    // Core 1.1.
    create_sampler_ycbcr_conversion: PFN_vkCreateSamplerYcbcrConversion =
        [c"vkCreateSamplerYcbcrConversion", c"vkCreateSamplerYcbcrConversionKHR"];
    destroy_sampler_ycbcr_conversion: PFN_vkDestroySamplerYcbcrConversion =
        [c"vkDestroySamplerYcbcrConversion", c"vkDestroySamplerYcbcrConversionKHR"];
    get_device_group_peer_memory_features: PFN_vkGetDeviceGroupPeerMemoryFeatures =
        [c"vkGetDeviceGroupPeerMemoryFeatures", c"vkGetDeviceGroupPeerMemoryFeaturesKHR"];
    cmd_set_device_mask: PFN_vkCmdSetDeviceMask =
        [c"vkCmdSetDeviceMask", c"vkCmdSetDeviceMaskKHR"];
    // Core 1.2.
    cmd_draw_indirect_count: PFN_vkCmdDrawIndirectCount =
        [c"vkCmdDrawIndirectCount", c"vkCmdDrawIndirectCountKHR", c"vkCmdDrawIndirectCountAMD"];
    cmd_draw_indexed_indirect_count: PFN_vkCmdDrawIndexedIndirectCount = [
        c"vkCmdDrawIndexedIndirectCount",
        c"vkCmdDrawIndexedIndirectCountKHR",
        c"vkCmdDrawIndexedIndirectCountAMD"
    ];
    cmd_begin_render_pass2: PFN_vkCmdBeginRenderPass2 =
        [c"vkCmdBeginRenderPass2", c"vkCmdBeginRenderPass2KHR"];
    cmd_next_subpass2: PFN_vkCmdNextSubpass2 = [c"vkCmdNextSubpass2", c"vkCmdNextSubpass2KHR"];
    cmd_end_render_pass2: PFN_vkCmdEndRenderPass2 =
        [c"vkCmdEndRenderPass2", c"vkCmdEndRenderPass2KHR"];
    // VK_EXT_external_memory_host.
    get_memory_host_pointer_properties: PFN_vkGetMemoryHostPointerPropertiesEXT =
        [c"vkGetMemoryHostPointerPropertiesEXT"];
    // Core 1.3.
    create_private_data_slot: PFN_vkCreatePrivateDataSlot =
        [c"vkCreatePrivateDataSlot", c"vkCreatePrivateDataSlotEXT"];
    destroy_private_data_slot: PFN_vkDestroyPrivateDataSlot =
        [c"vkDestroyPrivateDataSlot", c"vkDestroyPrivateDataSlotEXT"];
    set_private_data: PFN_vkSetPrivateData = [c"vkSetPrivateData", c"vkSetPrivateDataEXT"];
    get_private_data: PFN_vkGetPrivateData = [c"vkGetPrivateData", c"vkGetPrivateDataEXT"];
    cmd_copy_image2: PFN_vkCmdCopyImage2 = [c"vkCmdCopyImage2", c"vkCmdCopyImage2KHR"];
    cmd_copy_buffer_to_image2: PFN_vkCmdCopyBufferToImage2 =
        [c"vkCmdCopyBufferToImage2", c"vkCmdCopyBufferToImage2KHR"];
    cmd_copy_image_to_buffer2: PFN_vkCmdCopyImageToBuffer2 =
        [c"vkCmdCopyImageToBuffer2", c"vkCmdCopyImageToBuffer2KHR"];
    cmd_blit_image2: PFN_vkCmdBlitImage2 = [c"vkCmdBlitImage2", c"vkCmdBlitImage2KHR"];
    cmd_resolve_image2: PFN_vkCmdResolveImage2 =
        [c"vkCmdResolveImage2", c"vkCmdResolveImage2KHR"];
    cmd_begin_rendering: PFN_vkCmdBeginRendering =
        [c"vkCmdBeginRendering", c"vkCmdBeginRenderingKHR"];
    cmd_end_rendering: PFN_vkCmdEndRendering = [c"vkCmdEndRendering", c"vkCmdEndRenderingKHR"];
    cmd_set_cull_mode: PFN_vkCmdSetCullMode = [c"vkCmdSetCullMode", c"vkCmdSetCullModeEXT"];
    cmd_set_front_face: PFN_vkCmdSetFrontFace = [c"vkCmdSetFrontFace", c"vkCmdSetFrontFaceEXT"];
    cmd_set_primitive_topology: PFN_vkCmdSetPrimitiveTopology =
        [c"vkCmdSetPrimitiveTopology", c"vkCmdSetPrimitiveTopologyEXT"];
    cmd_set_viewport_with_count: PFN_vkCmdSetViewportWithCount =
        [c"vkCmdSetViewportWithCount", c"vkCmdSetViewportWithCountEXT"];
    cmd_set_scissor_with_count: PFN_vkCmdSetScissorWithCount =
        [c"vkCmdSetScissorWithCount", c"vkCmdSetScissorWithCountEXT"];
    cmd_bind_vertex_buffers2: PFN_vkCmdBindVertexBuffers2 =
        [c"vkCmdBindVertexBuffers2", c"vkCmdBindVertexBuffers2EXT"];
    cmd_set_depth_test_enable: PFN_vkCmdSetDepthTestEnable =
        [c"vkCmdSetDepthTestEnable", c"vkCmdSetDepthTestEnableEXT"];
    cmd_set_depth_write_enable: PFN_vkCmdSetDepthWriteEnable =
        [c"vkCmdSetDepthWriteEnable", c"vkCmdSetDepthWriteEnableEXT"];
    cmd_set_depth_compare_op: PFN_vkCmdSetDepthCompareOp =
        [c"vkCmdSetDepthCompareOp", c"vkCmdSetDepthCompareOpEXT"];
    cmd_set_depth_bounds_test_enable: PFN_vkCmdSetDepthBoundsTestEnable =
        [c"vkCmdSetDepthBoundsTestEnable", c"vkCmdSetDepthBoundsTestEnableEXT"];
    cmd_set_stencil_test_enable: PFN_vkCmdSetStencilTestEnable =
        [c"vkCmdSetStencilTestEnable", c"vkCmdSetStencilTestEnableEXT"];
    cmd_set_stencil_op: PFN_vkCmdSetStencilOp = [c"vkCmdSetStencilOp", c"vkCmdSetStencilOpEXT"];
    cmd_set_rasterizer_discard_enable: PFN_vkCmdSetRasterizerDiscardEnable =
        [c"vkCmdSetRasterizerDiscardEnable", c"vkCmdSetRasterizerDiscardEnableEXT"];
    cmd_set_depth_bias_enable: PFN_vkCmdSetDepthBiasEnable =
        [c"vkCmdSetDepthBiasEnable", c"vkCmdSetDepthBiasEnableEXT"];
    cmd_set_primitive_restart_enable: PFN_vkCmdSetPrimitiveRestartEnable =
        [c"vkCmdSetPrimitiveRestartEnable", c"vkCmdSetPrimitiveRestartEnableEXT"];
    // VK_EXT_extended_dynamic_state2.
    cmd_set_patch_control_points_ext: PFN_vkCmdSetPatchControlPointsEXT =
        [c"vkCmdSetPatchControlPointsEXT"];
    cmd_set_logic_op_ext: PFN_vkCmdSetLogicOpEXT = [c"vkCmdSetLogicOpEXT"];
    // VK_EXT_extended_dynamic_state3.
    cmd_set_tessellation_domain_origin_ext: PFN_vkCmdSetTessellationDomainOriginEXT =
        [c"vkCmdSetTessellationDomainOriginEXT"];
    cmd_set_depth_clamp_enable_ext: PFN_vkCmdSetDepthClampEnableEXT =
        [c"vkCmdSetDepthClampEnableEXT"];
    cmd_set_polygon_mode_ext: PFN_vkCmdSetPolygonModeEXT = [c"vkCmdSetPolygonModeEXT"];
    cmd_set_rasterization_samples_ext: PFN_vkCmdSetRasterizationSamplesEXT =
        [c"vkCmdSetRasterizationSamplesEXT"];
    cmd_set_sample_mask_ext: PFN_vkCmdSetSampleMaskEXT = [c"vkCmdSetSampleMaskEXT"];
    cmd_set_alpha_to_coverage_enable_ext: PFN_vkCmdSetAlphaToCoverageEnableEXT =
        [c"vkCmdSetAlphaToCoverageEnableEXT"];
    cmd_set_alpha_to_one_enable_ext: PFN_vkCmdSetAlphaToOneEnableEXT =
        [c"vkCmdSetAlphaToOneEnableEXT"];
    cmd_set_logic_op_enable_ext: PFN_vkCmdSetLogicOpEnableEXT = [c"vkCmdSetLogicOpEnableEXT"];
    cmd_set_color_blend_enable_ext: PFN_vkCmdSetColorBlendEnableEXT =
        [c"vkCmdSetColorBlendEnableEXT"];
    cmd_set_color_blend_equation_ext: PFN_vkCmdSetColorBlendEquationEXT =
        [c"vkCmdSetColorBlendEquationEXT"];
    cmd_set_color_write_mask_ext: PFN_vkCmdSetColorWriteMaskEXT =
        [c"vkCmdSetColorWriteMaskEXT"];
    cmd_set_rasterization_stream_ext: PFN_vkCmdSetRasterizationStreamEXT =
        [c"vkCmdSetRasterizationStreamEXT"];
    cmd_set_conservative_rasterization_mode_ext: PFN_vkCmdSetConservativeRasterizationModeEXT =
        [c"vkCmdSetConservativeRasterizationModeEXT"];
    cmd_set_extra_primitive_overestimation_size_ext:
        PFN_vkCmdSetExtraPrimitiveOverestimationSizeEXT =
        [c"vkCmdSetExtraPrimitiveOverestimationSizeEXT"];
    cmd_set_depth_clip_enable_ext: PFN_vkCmdSetDepthClipEnableEXT =
        [c"vkCmdSetDepthClipEnableEXT"];
    cmd_set_sample_locations_enable_ext: PFN_vkCmdSetSampleLocationsEnableEXT =
        [c"vkCmdSetSampleLocationsEnableEXT"];
    cmd_set_color_blend_advanced_ext: PFN_vkCmdSetColorBlendAdvancedEXT =
        [c"vkCmdSetColorBlendAdvancedEXT"];
    cmd_set_provoking_vertex_mode_ext: PFN_vkCmdSetProvokingVertexModeEXT =
        [c"vkCmdSetProvokingVertexModeEXT"];
    cmd_set_line_rasterization_mode_ext: PFN_vkCmdSetLineRasterizationModeEXT =
        [c"vkCmdSetLineRasterizationModeEXT"];
    cmd_set_line_stipple_enable_ext: PFN_vkCmdSetLineStippleEnableEXT =
        [c"vkCmdSetLineStippleEnableEXT"];
    cmd_set_depth_clip_negative_one_to_one_ext: PFN_vkCmdSetDepthClipNegativeOneToOneEXT =
        [c"vkCmdSetDepthClipNegativeOneToOneEXT"];
    // VK_EXT_color_write_enable, VK_EXT_vertex_input_dynamic_state,
    // VK_EXT_line_rasterization.
    cmd_set_color_write_enable_ext: PFN_vkCmdSetColorWriteEnableEXT =
        [c"vkCmdSetColorWriteEnableEXT"];
    cmd_set_vertex_input_ext: PFN_vkCmdSetVertexInputEXT = [c"vkCmdSetVertexInputEXT"];
    cmd_set_line_stipple: PFN_vkCmdSetLineStippleKHR =
        [c"vkCmdSetLineStippleKHR", c"vkCmdSetLineStippleEXT"];
    // VK_EXT_conditional_rendering.
    cmd_begin_conditional_rendering_ext: PFN_vkCmdBeginConditionalRenderingEXT =
        [c"vkCmdBeginConditionalRenderingEXT"];
    cmd_end_conditional_rendering_ext: PFN_vkCmdEndConditionalRenderingEXT =
        [c"vkCmdEndConditionalRenderingEXT"];
    // VK_EXT_transform_feedback.
    cmd_bind_transform_feedback_buffers_ext: PFN_vkCmdBindTransformFeedbackBuffersEXT =
        [c"vkCmdBindTransformFeedbackBuffersEXT"];
    cmd_begin_transform_feedback_ext: PFN_vkCmdBeginTransformFeedbackEXT =
        [c"vkCmdBeginTransformFeedbackEXT"];
    cmd_end_transform_feedback_ext: PFN_vkCmdEndTransformFeedbackEXT =
        [c"vkCmdEndTransformFeedbackEXT"];
    cmd_begin_query_indexed_ext: PFN_vkCmdBeginQueryIndexedEXT =
        [c"vkCmdBeginQueryIndexedEXT"];
    cmd_end_query_indexed_ext: PFN_vkCmdEndQueryIndexedEXT = [c"vkCmdEndQueryIndexedEXT"];
    cmd_draw_indirect_byte_count_ext: PFN_vkCmdDrawIndirectByteCountEXT =
        [c"vkCmdDrawIndirectByteCountEXT"];
    // VK_EXT_multi_draw.
    cmd_draw_multi_ext: PFN_vkCmdDrawMultiEXT = [c"vkCmdDrawMultiEXT"];
    cmd_draw_multi_indexed_ext: PFN_vkCmdDrawMultiIndexedEXT = [c"vkCmdDrawMultiIndexedEXT"];
    // VK_KHR_push_descriptor, VK_KHR_fragment_shading_rate.
    cmd_push_descriptor_set_khr: PFN_vkCmdPushDescriptorSetKHR =
        [c"vkCmdPushDescriptorSetKHR"];
    cmd_set_fragment_shading_rate_khr: PFN_vkCmdSetFragmentShadingRateKHR =
        [c"vkCmdSetFragmentShadingRateKHR"];
    // VK_KHR_maintenance5.
    cmd_bind_index_buffer2_khr: PFN_vkCmdBindIndexBuffer2KHR = [c"vkCmdBindIndexBuffer2KHR"];
    get_rendering_area_granularity_khr: PFN_vkGetRenderingAreaGranularityKHR =
        [c"vkGetRenderingAreaGranularityKHR"];
    get_device_image_subresource_layout_khr: PFN_vkGetDeviceImageSubresourceLayoutKHR =
        [c"vkGetDeviceImageSubresourceLayoutKHR"];
    get_image_subresource_layout2_khr: PFN_vkGetImageSubresourceLayout2KHR =
        [c"vkGetImageSubresourceLayout2KHR", c"vkGetImageSubresourceLayout2EXT"];
    // VK_EXT_calibrated_timestamps, VK_EXT_image_drm_format_modifier.
    get_calibrated_timestamps: PFN_vkGetCalibratedTimestampsKHR =
        [c"vkGetCalibratedTimestampsKHR", c"vkGetCalibratedTimestampsEXT"];
    get_image_drm_format_modifier_properties_ext: PFN_vkGetImageDrmFormatModifierPropertiesEXT =
        [c"vkGetImageDrmFormatModifierPropertiesEXT"];
}
