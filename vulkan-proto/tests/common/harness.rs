//! The fuzz harness, shared by the cargo-fuzz targets in `vulkan-proto/fuzz/` (included
//! there with `#[path]`) and by `tests/fuzz_replay.rs`, which replays the committed seeds
//! and regression inputs on the stable toolchain. One copy of the code, so a crash the
//! fuzzer finds replays the same way under `cargo test`.
//!
//! * [`run_stream`]: arbitrary bytes through `dispatch_command`, command after command,
//!   until an error or the end, with a handler that accepts everything ([`AcceptAll`]),
//!   an id map that knows some ids and not others ([`FuzzIds`]) and a small arena.
//! * [`run_mutated`]: the structure-aware variant: a valid request from
//!   `testgen::sample_request` with mutations applied (truncation, flipped bytes, words set
//!   to 0 / 0xffffffff / 2^63, bad sTypes, odd counts), then [`run_stream`].

use ash::vk;
use vulkan_proto::args::*;
use vulkan_proto::generated::testgen::{sample_request, COMMAND_TYPES};
use vulkan_proto::{
    dispatch_command, Arena, CommandType, Decoder, Dispatch, DispatchError, Encoder, HandleMap,
    ObjectId,
};

/// Arena budget per command in the harness: 1 MiB.
pub const FUZZ_BUDGET: usize = 1 << 20;

/// What one run did (for the replay test's assertions).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Commands dispatched successfully.
    pub commands: usize,
    /// Stream bytes consumed when the run stopped.
    pub consumed: usize,
    /// Length of the input stream.
    pub len: usize,
    /// The error that stopped the run (`None`: the stream ended cleanly).
    pub error: Option<String>,
    /// Most arena bytes held by one command.
    pub peak_arena: usize,
    /// Replies delivered, and their total size.
    pub replies: usize,
    /// Total reply bytes.
    pub reply_bytes: usize,
}

/// An id map that knows every odd id (testgen makes only odd ids) and the small even ids
/// 2..=16, each as a host handle distinct from the id; other even ids (2^63, 0xff..00, ...)
/// are unknown, so both the hit and the miss path get exercised. Types are not checked.
#[derive(Debug, Default, Clone, Copy)]
pub struct FuzzIds;

impl HandleMap for FuzzIds {
    fn lookup(&self, _ty: vk::ObjectType, id: ObjectId) -> Option<u64> {
        let known = id.0 & 1 == 1 || (2..=16).contains(&id.0);
        known.then_some(id.0 ^ 0x5a5a_0000_0000)
    }
}

/// The value an accepting handler returns.
trait Accept {
    fn accept() -> Self;
}

impl Accept for vk::Result {
    fn accept() -> Self {
        vk::Result::SUCCESS
    }
}

impl Accept for () {
    fn accept() {}
}

impl Accept for u64 {
    fn accept() -> Self {
        0x1000
    }
}

/// A handler that accepts every command and leaves the decoded arguments as they are
/// (so the reply encoder reads exactly what the decoder built), and discards replies
/// after counting them.
#[derive(Debug, Default)]
pub struct AcceptAll {
    ids: FuzzIds,
    /// Replies delivered.
    pub replies: usize,
    /// Their total size.
    pub reply_bytes: usize,
}

macro_rules! accept_all {
    ($($name:ident: $args:ident => $ret:ty;)*) => {
        // SAFETY: no handler touches its arguments, so every raw pointer in them still
        // points into the command arena, where the decoder put it.
        unsafe impl Dispatch for AcceptAll {
            fn handles(&self) -> &dyn HandleMap {
                &self.ids
            }

            fn write_reply(
                &mut self,
                _command: CommandType,
                reply: &[u8],
            ) -> Result<(), DispatchError> {
                self.replies += 1;
                self.reply_bytes += reply.len();
                Ok(())
            }

            $(
                fn $name(&mut self, _args: &mut $args<'_>) -> Result<$ret, DispatchError> {
                    Ok(<$ret as Accept>::accept())
                }
            )*
        }

        /// How many handlers [`AcceptAll`] overrides (one per command on the wire).
        pub const ACCEPTED_COMMANDS: usize = [$(stringify!($name)),*].len();
    };
}

// One entry per `Dispatch` method (the list was extracted from generated/dispatch.rs;
// `tests/fuzz_replay.rs` checks that every command type dispatches through it).
accept_all! {
        allocate_command_buffers: AllocateCommandBuffersArgs => vk::Result;
        allocate_descriptor_sets: AllocateDescriptorSetsArgs => vk::Result;
        allocate_memory: AllocateMemoryArgs => vk::Result;
        begin_command_buffer: BeginCommandBufferArgs => vk::Result;
        bind_buffer_memory: BindBufferMemoryArgs => vk::Result;
        bind_buffer_memory2: BindBufferMemory2Args => vk::Result;
        bind_image_memory: BindImageMemoryArgs => vk::Result;
        bind_image_memory2: BindImageMemory2Args => vk::Result;
        cmd_begin_conditional_rendering_ext: CmdBeginConditionalRenderingEXTArgs => ();
        cmd_begin_query: CmdBeginQueryArgs => ();
        cmd_begin_query_indexed_ext: CmdBeginQueryIndexedEXTArgs => ();
        cmd_begin_render_pass: CmdBeginRenderPassArgs => ();
        cmd_begin_render_pass2: CmdBeginRenderPass2Args => ();
        cmd_begin_rendering: CmdBeginRenderingArgs => ();
        cmd_begin_transform_feedback_ext: CmdBeginTransformFeedbackEXTArgs => ();
        cmd_bind_descriptor_sets: CmdBindDescriptorSetsArgs => ();
        cmd_bind_index_buffer: CmdBindIndexBufferArgs => ();
        cmd_bind_index_buffer2_khr: CmdBindIndexBuffer2KHRArgs => ();
        cmd_bind_pipeline: CmdBindPipelineArgs => ();
        cmd_bind_transform_feedback_buffers_ext: CmdBindTransformFeedbackBuffersEXTArgs => ();
        cmd_bind_vertex_buffers: CmdBindVertexBuffersArgs => ();
        cmd_bind_vertex_buffers2: CmdBindVertexBuffers2Args => ();
        cmd_blit_image: CmdBlitImageArgs => ();
        cmd_blit_image2: CmdBlitImage2Args => ();
        cmd_clear_attachments: CmdClearAttachmentsArgs => ();
        cmd_clear_color_image: CmdClearColorImageArgs => ();
        cmd_clear_depth_stencil_image: CmdClearDepthStencilImageArgs => ();
        cmd_copy_buffer: CmdCopyBufferArgs => ();
        cmd_copy_buffer2: CmdCopyBuffer2Args => ();
        cmd_copy_buffer_to_image: CmdCopyBufferToImageArgs => ();
        cmd_copy_buffer_to_image2: CmdCopyBufferToImage2Args => ();
        cmd_copy_image: CmdCopyImageArgs => ();
        cmd_copy_image2: CmdCopyImage2Args => ();
        cmd_copy_image_to_buffer: CmdCopyImageToBufferArgs => ();
        cmd_copy_image_to_buffer2: CmdCopyImageToBuffer2Args => ();
        cmd_copy_query_pool_results: CmdCopyQueryPoolResultsArgs => ();
        cmd_dispatch: CmdDispatchArgs => ();
        cmd_dispatch_base: CmdDispatchBaseArgs => ();
        cmd_dispatch_indirect: CmdDispatchIndirectArgs => ();
        cmd_draw: CmdDrawArgs => ();
        cmd_draw_indexed: CmdDrawIndexedArgs => ();
        cmd_draw_indexed_indirect: CmdDrawIndexedIndirectArgs => ();
        cmd_draw_indexed_indirect_count: CmdDrawIndexedIndirectCountArgs => ();
        cmd_draw_indirect: CmdDrawIndirectArgs => ();
        cmd_draw_indirect_byte_count_ext: CmdDrawIndirectByteCountEXTArgs => ();
        cmd_draw_indirect_count: CmdDrawIndirectCountArgs => ();
        cmd_draw_multi_ext: CmdDrawMultiEXTArgs => ();
        cmd_draw_multi_indexed_ext: CmdDrawMultiIndexedEXTArgs => ();
        cmd_end_conditional_rendering_ext: CmdEndConditionalRenderingEXTArgs => ();
        cmd_end_query: CmdEndQueryArgs => ();
        cmd_end_query_indexed_ext: CmdEndQueryIndexedEXTArgs => ();
        cmd_end_render_pass: CmdEndRenderPassArgs => ();
        cmd_end_render_pass2: CmdEndRenderPass2Args => ();
        cmd_end_rendering: CmdEndRenderingArgs => ();
        cmd_end_transform_feedback_ext: CmdEndTransformFeedbackEXTArgs => ();
        cmd_execute_commands: CmdExecuteCommandsArgs => ();
        cmd_fill_buffer: CmdFillBufferArgs => ();
        cmd_next_subpass: CmdNextSubpassArgs => ();
        cmd_next_subpass2: CmdNextSubpass2Args => ();
        cmd_pipeline_barrier: CmdPipelineBarrierArgs => ();
        cmd_pipeline_barrier2: CmdPipelineBarrier2Args => ();
        cmd_push_constants: CmdPushConstantsArgs => ();
        cmd_push_descriptor_set_khr: CmdPushDescriptorSetKHRArgs => ();
        cmd_reset_event: CmdResetEventArgs => ();
        cmd_reset_event2: CmdResetEvent2Args => ();
        cmd_reset_query_pool: CmdResetQueryPoolArgs => ();
        cmd_resolve_image: CmdResolveImageArgs => ();
        cmd_resolve_image2: CmdResolveImage2Args => ();
        cmd_set_alpha_to_coverage_enable_ext: CmdSetAlphaToCoverageEnableEXTArgs => ();
        cmd_set_alpha_to_one_enable_ext: CmdSetAlphaToOneEnableEXTArgs => ();
        cmd_set_blend_constants: CmdSetBlendConstantsArgs => ();
        cmd_set_color_blend_advanced_ext: CmdSetColorBlendAdvancedEXTArgs => ();
        cmd_set_color_blend_enable_ext: CmdSetColorBlendEnableEXTArgs => ();
        cmd_set_color_blend_equation_ext: CmdSetColorBlendEquationEXTArgs => ();
        cmd_set_color_write_enable_ext: CmdSetColorWriteEnableEXTArgs => ();
        cmd_set_color_write_mask_ext: CmdSetColorWriteMaskEXTArgs => ();
        cmd_set_conservative_rasterization_mode_ext: CmdSetConservativeRasterizationModeEXTArgs => ();
        cmd_set_cull_mode: CmdSetCullModeArgs => ();
        cmd_set_depth_bias: CmdSetDepthBiasArgs => ();
        cmd_set_depth_bias_enable: CmdSetDepthBiasEnableArgs => ();
        cmd_set_depth_bounds: CmdSetDepthBoundsArgs => ();
        cmd_set_depth_bounds_test_enable: CmdSetDepthBoundsTestEnableArgs => ();
        cmd_set_depth_clamp_enable_ext: CmdSetDepthClampEnableEXTArgs => ();
        cmd_set_depth_clip_enable_ext: CmdSetDepthClipEnableEXTArgs => ();
        cmd_set_depth_clip_negative_one_to_one_ext: CmdSetDepthClipNegativeOneToOneEXTArgs => ();
        cmd_set_depth_compare_op: CmdSetDepthCompareOpArgs => ();
        cmd_set_depth_test_enable: CmdSetDepthTestEnableArgs => ();
        cmd_set_depth_write_enable: CmdSetDepthWriteEnableArgs => ();
        cmd_set_device_mask: CmdSetDeviceMaskArgs => ();
        cmd_set_event: CmdSetEventArgs => ();
        cmd_set_event2: CmdSetEvent2Args => ();
        cmd_set_extra_primitive_overestimation_size_ext: CmdSetExtraPrimitiveOverestimationSizeEXTArgs => ();
        cmd_set_fragment_shading_rate_khr: CmdSetFragmentShadingRateKHRArgs => ();
        cmd_set_front_face: CmdSetFrontFaceArgs => ();
        cmd_set_line_rasterization_mode_ext: CmdSetLineRasterizationModeEXTArgs => ();
        cmd_set_line_stipple_enable_ext: CmdSetLineStippleEnableEXTArgs => ();
        cmd_set_line_stipple_ext: CmdSetLineStippleEXTArgs => ();
        cmd_set_line_width: CmdSetLineWidthArgs => ();
        cmd_set_logic_op_enable_ext: CmdSetLogicOpEnableEXTArgs => ();
        cmd_set_logic_op_ext: CmdSetLogicOpEXTArgs => ();
        cmd_set_patch_control_points_ext: CmdSetPatchControlPointsEXTArgs => ();
        cmd_set_polygon_mode_ext: CmdSetPolygonModeEXTArgs => ();
        cmd_set_primitive_restart_enable: CmdSetPrimitiveRestartEnableArgs => ();
        cmd_set_primitive_topology: CmdSetPrimitiveTopologyArgs => ();
        cmd_set_provoking_vertex_mode_ext: CmdSetProvokingVertexModeEXTArgs => ();
        cmd_set_rasterization_samples_ext: CmdSetRasterizationSamplesEXTArgs => ();
        cmd_set_rasterization_stream_ext: CmdSetRasterizationStreamEXTArgs => ();
        cmd_set_rasterizer_discard_enable: CmdSetRasterizerDiscardEnableArgs => ();
        cmd_set_sample_locations_enable_ext: CmdSetSampleLocationsEnableEXTArgs => ();
        cmd_set_sample_mask_ext: CmdSetSampleMaskEXTArgs => ();
        cmd_set_scissor: CmdSetScissorArgs => ();
        cmd_set_scissor_with_count: CmdSetScissorWithCountArgs => ();
        cmd_set_stencil_compare_mask: CmdSetStencilCompareMaskArgs => ();
        cmd_set_stencil_op: CmdSetStencilOpArgs => ();
        cmd_set_stencil_reference: CmdSetStencilReferenceArgs => ();
        cmd_set_stencil_test_enable: CmdSetStencilTestEnableArgs => ();
        cmd_set_stencil_write_mask: CmdSetStencilWriteMaskArgs => ();
        cmd_set_tessellation_domain_origin_ext: CmdSetTessellationDomainOriginEXTArgs => ();
        cmd_set_vertex_input_ext: CmdSetVertexInputEXTArgs => ();
        cmd_set_viewport: CmdSetViewportArgs => ();
        cmd_set_viewport_with_count: CmdSetViewportWithCountArgs => ();
        cmd_update_buffer: CmdUpdateBufferArgs => ();
        cmd_wait_events: CmdWaitEventsArgs => ();
        cmd_wait_events2: CmdWaitEvents2Args => ();
        cmd_write_timestamp: CmdWriteTimestampArgs => ();
        cmd_write_timestamp2: CmdWriteTimestamp2Args => ();
        create_buffer: CreateBufferArgs => vk::Result;
        create_buffer_view: CreateBufferViewArgs => vk::Result;
        create_command_pool: CreateCommandPoolArgs => vk::Result;
        create_compute_pipelines: CreateComputePipelinesArgs => vk::Result;
        create_descriptor_pool: CreateDescriptorPoolArgs => vk::Result;
        create_descriptor_set_layout: CreateDescriptorSetLayoutArgs => vk::Result;
        create_descriptor_update_template: CreateDescriptorUpdateTemplateArgs => vk::Result;
        create_device: CreateDeviceArgs => vk::Result;
        create_event: CreateEventArgs => vk::Result;
        create_fence: CreateFenceArgs => vk::Result;
        create_framebuffer: CreateFramebufferArgs => vk::Result;
        create_graphics_pipelines: CreateGraphicsPipelinesArgs => vk::Result;
        create_image: CreateImageArgs => vk::Result;
        create_image_view: CreateImageViewArgs => vk::Result;
        create_instance: CreateInstanceArgs => vk::Result;
        create_pipeline_cache: CreatePipelineCacheArgs => vk::Result;
        create_pipeline_layout: CreatePipelineLayoutArgs => vk::Result;
        create_private_data_slot: CreatePrivateDataSlotArgs => vk::Result;
        create_query_pool: CreateQueryPoolArgs => vk::Result;
        create_render_pass: CreateRenderPassArgs => vk::Result;
        create_render_pass2: CreateRenderPass2Args => vk::Result;
        create_ring_mesa: CreateRingMESAArgs => ();
        create_sampler: CreateSamplerArgs => vk::Result;
        create_sampler_ycbcr_conversion: CreateSamplerYcbcrConversionArgs => vk::Result;
        create_semaphore: CreateSemaphoreArgs => vk::Result;
        create_shader_module: CreateShaderModuleArgs => vk::Result;
        destroy_buffer: DestroyBufferArgs => ();
        destroy_buffer_view: DestroyBufferViewArgs => ();
        destroy_command_pool: DestroyCommandPoolArgs => ();
        destroy_descriptor_pool: DestroyDescriptorPoolArgs => ();
        destroy_descriptor_set_layout: DestroyDescriptorSetLayoutArgs => ();
        destroy_descriptor_update_template: DestroyDescriptorUpdateTemplateArgs => ();
        destroy_device: DestroyDeviceArgs => ();
        destroy_event: DestroyEventArgs => ();
        destroy_fence: DestroyFenceArgs => ();
        destroy_framebuffer: DestroyFramebufferArgs => ();
        destroy_image: DestroyImageArgs => ();
        destroy_image_view: DestroyImageViewArgs => ();
        destroy_instance: DestroyInstanceArgs => ();
        destroy_pipeline: DestroyPipelineArgs => ();
        destroy_pipeline_cache: DestroyPipelineCacheArgs => ();
        destroy_pipeline_layout: DestroyPipelineLayoutArgs => ();
        destroy_private_data_slot: DestroyPrivateDataSlotArgs => ();
        destroy_query_pool: DestroyQueryPoolArgs => ();
        destroy_render_pass: DestroyRenderPassArgs => ();
        destroy_ring_mesa: DestroyRingMESAArgs => ();
        destroy_sampler: DestroySamplerArgs => ();
        destroy_sampler_ycbcr_conversion: DestroySamplerYcbcrConversionArgs => ();
        destroy_semaphore: DestroySemaphoreArgs => ();
        destroy_shader_module: DestroyShaderModuleArgs => ();
        device_wait_idle: DeviceWaitIdleArgs => vk::Result;
        end_command_buffer: EndCommandBufferArgs => vk::Result;
        enumerate_device_extension_properties: EnumerateDeviceExtensionPropertiesArgs => vk::Result;
        enumerate_device_layer_properties: EnumerateDeviceLayerPropertiesArgs => vk::Result;
        enumerate_instance_extension_properties: EnumerateInstanceExtensionPropertiesArgs => vk::Result;
        enumerate_instance_layer_properties: EnumerateInstanceLayerPropertiesArgs => vk::Result;
        enumerate_instance_version: EnumerateInstanceVersionArgs => vk::Result;
        enumerate_physical_device_groups: EnumeratePhysicalDeviceGroupsArgs => vk::Result;
        enumerate_physical_devices: EnumeratePhysicalDevicesArgs => vk::Result;
        execute_command_streams_mesa: ExecuteCommandStreamsMESAArgs => ();
        flush_mapped_memory_ranges: FlushMappedMemoryRangesArgs => vk::Result;
        free_command_buffers: FreeCommandBuffersArgs => ();
        free_descriptor_sets: FreeDescriptorSetsArgs => vk::Result;
        free_memory: FreeMemoryArgs => ();
        get_buffer_device_address: GetBufferDeviceAddressArgs => u64;
        get_buffer_memory_requirements: GetBufferMemoryRequirementsArgs => ();
        get_buffer_memory_requirements2: GetBufferMemoryRequirements2Args => ();
        get_buffer_opaque_capture_address: GetBufferOpaqueCaptureAddressArgs => u64;
        get_calibrated_timestamps_ext: GetCalibratedTimestampsEXTArgs => vk::Result;
        get_descriptor_set_layout_support: GetDescriptorSetLayoutSupportArgs => ();
        get_device_buffer_memory_requirements: GetDeviceBufferMemoryRequirementsArgs => ();
        get_device_group_peer_memory_features: GetDeviceGroupPeerMemoryFeaturesArgs => ();
        get_device_image_memory_requirements: GetDeviceImageMemoryRequirementsArgs => ();
        get_device_image_sparse_memory_requirements: GetDeviceImageSparseMemoryRequirementsArgs => ();
        get_device_image_subresource_layout_khr: GetDeviceImageSubresourceLayoutKHRArgs => ();
        get_device_memory_commitment: GetDeviceMemoryCommitmentArgs => ();
        get_device_memory_opaque_capture_address: GetDeviceMemoryOpaqueCaptureAddressArgs => u64;
        get_device_queue: GetDeviceQueueArgs => ();
        get_device_queue2: GetDeviceQueue2Args => ();
        get_event_status: GetEventStatusArgs => vk::Result;
        get_fence_status: GetFenceStatusArgs => vk::Result;
        get_image_drm_format_modifier_properties_ext: GetImageDrmFormatModifierPropertiesEXTArgs => vk::Result;
        get_image_memory_requirements: GetImageMemoryRequirementsArgs => ();
        get_image_memory_requirements2: GetImageMemoryRequirements2Args => ();
        get_image_sparse_memory_requirements: GetImageSparseMemoryRequirementsArgs => ();
        get_image_sparse_memory_requirements2: GetImageSparseMemoryRequirements2Args => ();
        get_image_subresource_layout: GetImageSubresourceLayoutArgs => ();
        get_image_subresource_layout2_khr: GetImageSubresourceLayout2KHRArgs => ();
        get_memory_resource_properties_mesa: GetMemoryResourcePropertiesMESAArgs => vk::Result;
        get_physical_device_calibrateable_time_domains_ext: GetPhysicalDeviceCalibrateableTimeDomainsEXTArgs => vk::Result;
        get_physical_device_external_buffer_properties: GetPhysicalDeviceExternalBufferPropertiesArgs => ();
        get_physical_device_external_fence_properties: GetPhysicalDeviceExternalFencePropertiesArgs => ();
        get_physical_device_external_semaphore_properties: GetPhysicalDeviceExternalSemaphorePropertiesArgs => ();
        get_physical_device_features: GetPhysicalDeviceFeaturesArgs => ();
        get_physical_device_features2: GetPhysicalDeviceFeatures2Args => ();
        get_physical_device_format_properties: GetPhysicalDeviceFormatPropertiesArgs => ();
        get_physical_device_format_properties2: GetPhysicalDeviceFormatProperties2Args => ();
        get_physical_device_fragment_shading_rates_khr: GetPhysicalDeviceFragmentShadingRatesKHRArgs => vk::Result;
        get_physical_device_image_format_properties: GetPhysicalDeviceImageFormatPropertiesArgs => vk::Result;
        get_physical_device_image_format_properties2: GetPhysicalDeviceImageFormatProperties2Args => vk::Result;
        get_physical_device_memory_properties: GetPhysicalDeviceMemoryPropertiesArgs => ();
        get_physical_device_memory_properties2: GetPhysicalDeviceMemoryProperties2Args => ();
        get_physical_device_properties: GetPhysicalDevicePropertiesArgs => ();
        get_physical_device_properties2: GetPhysicalDeviceProperties2Args => ();
        get_physical_device_queue_family_properties: GetPhysicalDeviceQueueFamilyPropertiesArgs => ();
        get_physical_device_queue_family_properties2: GetPhysicalDeviceQueueFamilyProperties2Args => ();
        get_physical_device_sparse_image_format_properties: GetPhysicalDeviceSparseImageFormatPropertiesArgs => ();
        get_physical_device_sparse_image_format_properties2: GetPhysicalDeviceSparseImageFormatProperties2Args => ();
        get_physical_device_tool_properties: GetPhysicalDeviceToolPropertiesArgs => vk::Result;
        get_pipeline_cache_data: GetPipelineCacheDataArgs => vk::Result;
        get_private_data: GetPrivateDataArgs => ();
        get_query_pool_results: GetQueryPoolResultsArgs => vk::Result;
        get_render_area_granularity: GetRenderAreaGranularityArgs => ();
        get_rendering_area_granularity_khr: GetRenderingAreaGranularityKHRArgs => ();
        get_semaphore_counter_value: GetSemaphoreCounterValueArgs => vk::Result;
        import_semaphore_resource_mesa: ImportSemaphoreResourceMESAArgs => ();
        invalidate_mapped_memory_ranges: InvalidateMappedMemoryRangesArgs => vk::Result;
        merge_pipeline_caches: MergePipelineCachesArgs => vk::Result;
        notify_ring_mesa: NotifyRingMESAArgs => ();
        queue_bind_sparse: QueueBindSparseArgs => vk::Result;
        queue_submit: QueueSubmitArgs => vk::Result;
        queue_submit2: QueueSubmit2Args => vk::Result;
        queue_wait_idle: QueueWaitIdleArgs => vk::Result;
        reset_command_buffer: ResetCommandBufferArgs => vk::Result;
        reset_command_pool: ResetCommandPoolArgs => vk::Result;
        reset_descriptor_pool: ResetDescriptorPoolArgs => vk::Result;
        reset_event: ResetEventArgs => vk::Result;
        reset_fence_resource_mesa: ResetFenceResourceMESAArgs => ();
        reset_fences: ResetFencesArgs => vk::Result;
        reset_query_pool: ResetQueryPoolArgs => ();
        seek_reply_command_stream_mesa: SeekReplyCommandStreamMESAArgs => ();
        set_event: SetEventArgs => vk::Result;
        set_private_data: SetPrivateDataArgs => vk::Result;
        set_reply_command_stream_mesa: SetReplyCommandStreamMESAArgs => ();
        signal_semaphore: SignalSemaphoreArgs => vk::Result;
        submit_virtqueue_seqno_mesa: SubmitVirtqueueSeqnoMESAArgs => ();
        trim_command_pool: TrimCommandPoolArgs => ();
        unmap_memory: UnmapMemoryArgs => ();
        update_descriptor_sets: UpdateDescriptorSetsArgs => ();
        wait_for_fences: WaitForFencesArgs => vk::Result;
        wait_ring_seqno_mesa: WaitRingSeqnoMESAArgs => ();
        wait_semaphore_resource_mesa: WaitSemaphoreResourceMESAArgs => ();
        wait_semaphores: WaitSemaphoresArgs => vk::Result;
        wait_virtqueue_seqno_mesa: WaitVirtqueueSeqnoMESAArgs => ();
        write_ring_extra_mesa: WriteRingExtraMESAArgs => ();
}

/// Feeds `data` through `dispatch_command` until an error or the end of the stream.
/// Never panics unless the decoder does (which is what the fuzzer looks for).
pub fn run_stream(data: &[u8]) -> Outcome {
    let mut h = AcceptAll::default();
    let mut d = Decoder::new(data);
    let mut arena = Arena::new(FUZZ_BUDGET);
    let mut reply = Encoder::new();
    let mut out = Outcome {
        len: data.len(),
        ..Outcome::default()
    };
    while d.remaining() > 0 {
        let before = d.position();
        match dispatch_command(&mut h, &mut d, &mut arena, &mut reply) {
            Ok(_) => {
                out.commands += 1;
                out.peak_arena = out.peak_arena.max(arena.allocated_bytes());
                // Every command reads at least its 8-byte header.
                assert!(d.position() > before, "a command consumed nothing");
            }
            Err(e) => {
                out.peak_arena = out.peak_arena.max(arena.allocated_bytes());
                out.error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    out.consumed = d.position();
    out.replies = h.replies;
    out.reply_bytes = h.reply_bytes;
    out
}

/// sTypes that are wrong in interesting ways: unknown, negative, the largest, a Venus
/// struct in the wrong place, core structs that are valid somewhere else.
pub const BAD_STYPES: &[u32] = &[
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000,
    1_000_384_007, // VkRingPriorityInfoMESA
    1_000_384_006, // VkRingMonitorInfoMESA
    1_000_384_000, // VkRingCreateInfoMESA
    0,             // VkApplicationInfo
    1,             // VkInstanceCreateInfo
    3,             // VkDeviceCreateInfo
    4,             // VkSubmitInfo
    59,            // VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO (not on the wire)
    1_000_059_000, // VkPhysicalDeviceFeatures2
];

/// Bytes per mutation in a [`run_mutated`] input.
pub const OP_BYTES: usize = 6;

/// Most mutations applied to one request.
pub const MAX_OPS: usize = 32;

/// Header of a [`run_mutated`] input: command index (u16), seed (u16), options (u8).
pub const MUTATE_HEADER: usize = 5;

fn word_at(buf: &[u8], i: usize) -> usize {
    let words = buf.len() / 4;
    if words == 0 {
        0
    } else {
        (i % words) * 4
    }
}

fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(w) = buf.get_mut(at..at + 4) {
        w.copy_from_slice(&v.to_le_bytes());
    }
}

fn set_u64(buf: &mut [u8], at: usize, v: u64) {
    // Near the end only the bytes that exist are written.
    let dst = buf.get_mut(at..).unwrap_or_default();
    for (x, b) in dst.iter_mut().zip(v.to_le_bytes()) {
        *x = b;
    }
}

/// Applies one mutation, described by `op` (`OP_BYTES` bytes), to `buf`.
pub fn apply_op(buf: &mut Vec<u8>, op: &[u8]) {
    let [kind, a, b, c, e, f] = [0, 1, 2, 3, 4, 5].map(|i| op.get(i).copied().unwrap_or(0));
    let index = usize::from(u16::from_le_bytes([a, b]));
    let value = u32::from_le_bytes([c, e, f, 0]);
    let at = word_at(buf, index);
    match kind % 12 {
        0 => buf.truncate(index % (buf.len() + 1)),
        1 => {
            if let Some(x) = buf.get_mut(at + usize::from(c % 4)) {
                *x ^= e | 1;
            }
        }
        2 => set_u32(buf, at, 0),
        3 => set_u32(buf, at, 0xffff_ffff),
        4 => set_u64(buf, at, 1 << 63),
        5 => set_u64(buf, at, u64::MAX),
        6 => set_u32(buf, at, BAD_STYPES[usize::from(c) % BAD_STYPES.len()]),
        7 => set_u32(buf, at, u32::from(c)), // small counts and sizes
        8 => set_u32(buf, at, value),
        9 => {
            // Off by one, both ways (counts against array sizes, markers 1 -> 2 or 0).
            let w = buf
                .get(at..at + 4)
                .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            set_u32(
                buf,
                at,
                if c & 1 == 0 {
                    w.wrapping_add(1)
                } else {
                    w.wrapping_sub(1)
                },
            );
        }
        10 => {
            // Duplicate a word run (shifts everything after it).
            let end = (at + 4 * (usize::from(c % 8) + 1)).min(buf.len());
            let run = buf.get(at..end).map(<[u8]>::to_vec).unwrap_or_default();
            let pos = at.min(buf.len());
            buf.splice(pos..pos, run);
        }
        _ => {
            // Delete a word run.
            let end = (at + 4 * (usize::from(c % 8) + 1)).min(buf.len());
            if at < end {
                buf.drain(at..end);
            }
        }
    }
}

/// Seeds per command that [`run_mutated`] inputs can pick (the base requests are cached).
pub const MUTATE_SEEDS: u16 = 16;

fn sample(ty: u32, seed: u64) -> Vec<u8> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<(u32, u64), Vec<u8>>> =
            std::cell::RefCell::default();
    }
    CACHE.with(|c| {
        c.borrow_mut()
            .entry((ty, seed))
            .or_insert_with(|| sample_request(ty, seed).unwrap_or_default())
            .clone()
    })
}

/// The request a [`run_mutated`] input starts from: command index, seed (modulo
/// [`MUTATE_SEEDS`]), options. Option bit 0 appends a second valid request (so a mutation
/// can make the first command swallow or misframe the next); bit 1 clears GENERATE_REPLY
/// on the first.
pub fn base_request(data: &[u8]) -> Vec<u8> {
    let [i0, i1, s0, s1, opts] = [0, 1, 2, 3, 4].map(|i| data.get(i).copied().unwrap_or(0));
    let idx = usize::from(u16::from_le_bytes([i0, i1])) % COMMAND_TYPES.len();
    let seed = u64::from(u16::from_le_bytes([s0, s1]) % MUTATE_SEEDS);
    let ty = COMMAND_TYPES[idx];
    let mut buf = sample(ty, seed);
    if opts & 2 != 0 {
        set_u32(&mut buf, 4, 0);
    }
    if opts & 1 != 0 {
        let next = COMMAND_TYPES[(idx + 1) % COMMAND_TYPES.len()];
        buf.extend(sample(next, (seed + 1) % u64::from(MUTATE_SEEDS)));
    }
    buf
}

/// Builds the mutated request for a [`run_mutated`] input (header, then ops).
pub fn mutated_request(data: &[u8]) -> Vec<u8> {
    let mut buf = base_request(data);
    let ops = data.get(MUTATE_HEADER..).unwrap_or_default();
    for op in ops.chunks(OP_BYTES).take(MAX_OPS) {
        apply_op(&mut buf, op);
    }
    buf
}

/// The structure-aware harness: a valid request, mutated as `data` says, dispatched.
pub fn run_mutated(data: &[u8]) -> Outcome {
    run_stream(&mutated_request(data))
}

/// A [`run_mutated`] input that replays request `idx` (into `COMMAND_TYPES`) with `seed`
/// unmutated.
pub fn mutate_seed(idx: u16, seed: u16, opts: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(MUTATE_HEADER);
    v.extend(idx.to_le_bytes());
    v.extend(seed.to_le_bytes());
    v.push(opts);
    v
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn u64w(v: u64) -> [u32; 2] {
    let b = v.to_le_bytes();
    [
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    ]
}

/// The request streams of `tests/golden.rs` (observed from Mesa 25.0.7), by name.
pub fn golden_streams() -> Vec<(&'static str, Vec<u8>)> {
    // vkCreateInstance as vulkaninfo sends it (140 bytes).
    let mut w = vec![0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 11, 0];
    let mut create_instance = words(&w);
    create_instance.extend(b"vulkaninfo\0\0");
    w = vec![1, 0, 0, 0, 0x0040_30ef, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0];
    create_instance.extend(words(&w));

    // vkCreateRingMESA with its monitor pNext (140 bytes).
    let mut w = vec![188, 0];
    w.extend(u64w(0x5642_dca8_fa00));
    w.extend([
        1,
        0,
        1_000_384_000,
        1,
        0,
        1_000_384_006,
        0,
        0,
        3_000_000,
        0,
        1,
    ]);
    for v in [
        0u64, 131_268, 1_000_000, 0, 64, 128, 192, 131_072, 131_264, 4,
    ] {
        w.extend(u64w(v));
    }
    let create_ring = words(&w);

    // vkSetReplyCommandStreamMESA (36 bytes).
    let mut w = vec![178, 0, 1, 0, 2];
    w.extend(u64w(20));
    w.extend(u64w(24));
    let set_reply = words(&w);

    let enumerate_version = words(&[137, 1, 1, 0]);
    let enumerate_devices = words(&[2, 1, 1, 0, 1, 0, 0, 0, 0]);
    let destroy_instance = words(&[1, 1, 1, 0, 0, 0]);

    // What vulkaninfo's start-up looks like on one stream, back to back.
    let mut startup = Vec::new();
    for s in [
        &create_ring,
        &set_reply,
        &enumerate_version,
        &create_instance,
        &enumerate_devices,
        &destroy_instance,
    ] {
        startup.extend_from_slice(s);
    }

    vec![
        ("golden-create-instance", create_instance),
        ("golden-create-ring-mesa", create_ring),
        ("golden-set-reply-command-stream-mesa", set_reply),
        ("golden-enumerate-instance-version", enumerate_version),
        ("golden-enumerate-physical-devices", enumerate_devices),
        ("golden-destroy-instance", destroy_instance),
        ("golden-startup-sequence", startup),
    ]
}
