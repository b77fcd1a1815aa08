//! Policy tables: every decision the registry XML cannot tell us, each with its reason.
//!
//! These mirror the knobs of the upstream venus-protocol generator (`vn_protocol.py`) for the
//! protocol Mesa 25.0.7 speaks (venus-protocol git-ca1e9220, vk.xml 1.3.269).

/// Wire format version written into the capset (`VN_WIRE_FORMAT_VERSION`).
pub const WIRE_FORMAT_VERSION: u32 = 1;

/// The vk.xml version the protocol is generated from.
pub const VK_XML_VERSION: (u32, u32, u32) = (1, 3, 269);

/// Highest command type Mesa 25.0.7 knows. The serialization XML we read is newer (it goes
/// to 347); numbers above this belong to later protocol revisions and are not generated.
pub const MAX_COMMAND_TYPE: u32 = 282;

/// The Vulkan extensions on the wire, with why each is there. Exactly the list Mesa 25.0.7
/// and virglrenderer 1.1.0 share (`vn_protocol_renderer_info.h`); only core 1.0–1.3 plus
/// these exist on the wire. The capset extension mask is computed from this table.
pub const PROTOCOL_EXTENSIONS: &[(&str, &str)] = &[
    (
        "VK_EXT_4444_formats",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_attachment_feedback_loop_layout",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_border_color_swizzle",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_calibrated_timestamps",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_color_write_enable",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_command_serialization",
        "the command-type numbering itself (always on)",
    ),
    (
        "VK_EXT_conditional_rendering",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_conservative_rasterization",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_custom_border_color",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_depth_clip_control",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_depth_clip_enable",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_descriptor_indexing",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_dynamic_rendering_unused_attachments",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_extended_dynamic_state",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_extended_dynamic_state2",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_extended_dynamic_state3",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_external_memory_acquire_unmodified",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_external_memory_dma_buf",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_fragment_shader_interlock",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_graphics_pipeline_library",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_host_query_reset",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_image_2d_view_of_3d",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_image_drm_format_modifier",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_image_robustness",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_image_view_min_lod",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_index_type_uint8",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_inline_uniform_block",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_line_rasterization",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_load_store_op_none",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_memory_budget",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_multi_draw",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_mutable_descriptor_type",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_non_seamless_cube_map",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_pci_bus_info",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_pipeline_creation_cache_control",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_pipeline_creation_feedback",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_primitive_topology_list_restart",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_primitives_generated_query",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_private_data",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_provoking_vertex",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_queue_family_foreign",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_rasterization_order_attachment_access",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_robustness2",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_sampler_filter_minmax",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_scalar_block_layout",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_separate_stencil_usage",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_shader_demote_to_helper_invocation",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_shader_stencil_export",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_shader_subgroup_ballot",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_shader_viewport_index_layer",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_subgroup_size_control",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_texel_buffer_alignment",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_texture_compression_astc_hdr",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_tooling_info",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_EXT_transform_feedback",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_vertex_attribute_divisor",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_vertex_input_dynamic_state",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_EXT_ycbcr_2plane_444_formats",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_16bit_storage",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_8bit_storage",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_bind_memory2",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_buffer_device_address",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_copy_commands2",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_create_renderpass2",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_dedicated_allocation",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_depth_stencil_resolve",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_descriptor_update_template",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_device_group",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_device_group_creation",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_draw_indirect_count",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_driver_properties",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_dynamic_rendering",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_fence",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_fence_capabilities",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_fence_fd",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_external_memory",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_memory_capabilities",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_memory_fd",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_external_semaphore",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_semaphore_capabilities",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_external_semaphore_fd",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_format_feature_flags2",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_fragment_shading_rate",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_get_memory_requirements2",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_get_physical_device_properties2",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_image_format_list",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_imageless_framebuffer",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_maintenance1",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_maintenance2",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_maintenance3",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_maintenance4",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_maintenance5",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_multiview",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_pipeline_library",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_push_descriptor",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_relaxed_block_layout",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_sampler_mirror_clamp_to_edge",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_sampler_ycbcr_conversion",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_separate_depth_stencil_layouts",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_atomic_int64",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_clock",
        "device extension forwarded by Mesa 25.0.7",
    ),
    (
        "VK_KHR_shader_draw_parameters",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_float16_int8",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_float_controls",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_integer_dot_product",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_non_semantic_info",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_subgroup_extended_types",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_shader_terminate_invocation",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_spirv_1_4",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_storage_buffer_storage_class",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_synchronization2",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_timeline_semaphore",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_uniform_buffer_standard_layout",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_variable_pointers",
        "promoted to VK_VERSION_1_1; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_vulkan_memory_model",
        "promoted to VK_VERSION_1_2; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_KHR_zero_initialize_workgroup_memory",
        "promoted to VK_VERSION_1_3; Mesa 25.0.7 encodes its structs under the extension bit",
    ),
    (
        "VK_MESA_venus_protocol",
        "Venus transport: rings, reply streams, resources (spec 2 via SPEC_VERSION_OVERRIDES)",
    ),
    (
        "VK_VALVE_mutable_descriptor_type",
        "device extension promoted to VK_EXT_mutable_descriptor_type; forwarded by Mesa 25.0.7",
    ),
];

/// Spec versions the protocol encodes that differ from the registry copy we read.
pub const SPEC_VERSION_OVERRIDES: &[(&str, u32, &str)] = &[(
    "VK_MESA_venus_protocol",
    2,
    "the provided MESA XML is spec 1; spec 2 (Mesa 25.0.7) only adds VkRingPriorityInfoMESA",
)];

/// Commands listed in the serialization XML (≤ `MAX_COMMAND_TYPE`) that are never put on
/// the wire. The generator fails if a command it cannot encode is missing from this table.
pub const NOT_SERIALIZED: &[(&str, &str)] = &[
    (
        "vkGetInstanceProcAddr",
        "returns a function pointer; resolved inside the guest driver",
    ),
    (
        "vkGetDeviceProcAddr",
        "returns a function pointer; resolved inside the guest driver",
    ),
    (
        "vkMapMemory",
        "returns a guest pointer; mapping is a blob resource, not a command",
    ),
    (
        "vkGetMemoryFdKHR",
        "returns a host fd; memory export goes through blob resources",
    ),
    (
        "vkGetMemoryFdPropertiesKHR",
        "takes a host fd; import goes through vkGetMemoryResourcePropertiesMESA",
    ),
    (
        "vkGetFenceFdKHR",
        "returns a host fd; sync files go through vkResetFenceResourceMESA",
    ),
    (
        "vkImportFenceFdKHR",
        "takes a host fd; sync files go through the MESA resource commands",
    ),
    (
        "vkGetSemaphoreFdKHR",
        "returns a host fd; sync files go through vkWaitSemaphoreResourceMESA",
    ),
    (
        "vkImportSemaphoreFdKHR",
        "takes a host fd; sync files go through vkImportSemaphoreResourceMESA",
    ),
    (
        "vkUpdateDescriptorSetWithTemplate",
        "raw pData has no length; the guest expands templates",
    ),
    (
        "vkCmdPushDescriptorSetWithTemplateKHR",
        "raw pData has no length; the guest expands templates",
    ),
];

/// Members encoded only under a condition (`IGNORABLE_LIST`): the count is always encoded,
/// the array only when the condition holds, otherwise as a NULL array.
pub const IGNORABLE: &[(&str, &str, Cond, &str)] = &[
    (
        "VkBufferCreateInfo",
        "pQueueFamilyIndices",
        Cond::SharingConcurrent,
        "ignored by Vulkan unless sharingMode is CONCURRENT",
    ),
    (
        "VkImageCreateInfo",
        "pQueueFamilyIndices",
        Cond::SharingConcurrent,
        "ignored by Vulkan unless sharingMode is CONCURRENT",
    ),
    (
        "VkPhysicalDeviceImageDrmFormatModifierInfoEXT",
        "pQueueFamilyIndices",
        Cond::SharingConcurrent,
        "ignored by Vulkan unless sharingMode is CONCURRENT",
    ),
    (
        "VkFramebufferCreateInfo",
        "pAttachments",
        Cond::NotImageless,
        "ignored by Vulkan for IMAGELESS framebuffers",
    ),
];

/// Condition for an [`IGNORABLE`] member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `sharingMode == VK_SHARING_MODE_CONCURRENT`.
    SharingConcurrent,
    /// `!(flags & VK_FRAMEBUFFER_CREATE_IMAGELESS_BIT)`.
    NotImageless,
}

/// The tag Mesa always sends for a union (member index).
pub const UNION_DEFAULT_TAGS: &[(&str, u32, &str)] = &[
    (
        "VkClearColorValue",
        2,
        "uint32[4] carries any value bit-exactly",
    ),
    (
        "VkClearValue",
        0,
        "color; its first word is also the depth value's bits",
    ),
    (
        "VkDeviceOrHostAddressKHR",
        0,
        "device address; host addresses never cross the wire",
    ),
    (
        "VkDeviceOrHostAddressConstKHR",
        0,
        "device address; host addresses never cross the wire",
    ),
    ("VkPipelineExecutableStatisticValueKHR", 2, "u64 statistics"),
];

/// Parameters whose direction the registry gets wrong for the wire (`_fixup_registry`).
pub const INOUT_FIXUPS: &[(&str, &str, &str)] = &[(
    "vkRegisterCustomBorderColorEXT",
    "pIndex",
    "the guest proposes an index the host may keep (applies once the command exists)",
)];

/// Struct added by hand because the provided MESA XML predates it (venus protocol spec 2).
pub struct ExtraStruct {
    /// Struct name.
    pub name: &'static str,
    /// sType value name and number.
    pub stype: (&'static str, i64),
    /// Parent it extends.
    pub extends: &'static str,
    /// Plain members after sType/pNext: (C type, name).
    pub members: &'static [(&'static str, &'static str)],
    /// Why it is here.
    pub reason: &'static str,
}

/// See [`ExtraStruct`].
pub const EXTRA_STRUCTS: &[ExtraStruct] = &[ExtraStruct {
    name: "VkRingPriorityInfoMESA",
    stype: ("VK_STRUCTURE_TYPE_RING_PRIORITY_INFO_MESA", 1_000_384_007),
    extends: "VkRingCreateInfoMESA",
    members: &[("int32_t", "priority")],
    reason: "venus protocol spec 2 struct missing from the provided spec-1 MESA XML",
}];

/// Structs of protocol extensions that never go on the wire (they carry host-only values).
/// They are left out of every pNext chain the decoder accepts.
pub const STRUCTS_NOT_SERIALIZED: &[(&str, &str)] = &[(
    "VkImportMemoryFdInfoKHR",
    "carries a host fd; the guest imports through VkImportMemoryResourceInfoMESA",
)];

// ---------------------------------------------------------------------------------------------
// The device crate's Venus handlers (`device/src/renderer/venus/`): which are generated.
//
// A command is listed here only if its handler does nothing beyond what every command gets
// anyway: decoding (NULL checks on required pointers, array sizes equal to their counts, enum
// ranges), the generated `Dispatch::decoded` ownership hook (every handle belongs to the
// command's device), the device lookup and, for optional entry points, `HostLacks` when the
// host driver lacks the command. Anything that checks a value against a device limit or an
// object's recorded size, records state for later checks, charges a quota, strips or rewrites
// a pNext chain, or touches object lifetimes beyond the common create/destroy helpers stays
// hand-written (see `device/src/renderer/venus/forward.rs`'s module docs for the list).

/// Forwarded commands that record work running a pipeline, with the bind point whose
/// pipeline it runs: the generated handler first calls `Handler::require_pipeline`, as
/// the host driver reads the bound pipeline when the batch executes and lavapipe
/// dereferences a NULL one (found by `device/fuzz`'s `exec_sequences`). The indirect,
/// count and multi draws are hand-written and make the same call.
pub const NEEDS_PIPELINE: &[(&str, &str)] = &[
    ("vkCmdDraw", "GRAPHICS"),
    ("vkCmdDrawIndexed", "GRAPHICS"),
    ("vkCmdDispatch", "COMPUTE"),
    ("vkCmdDispatchBase", "COMPUTE"),
];

/// Commands whose handler is generated as a pure forward to the host driver: find the
/// device (of the `VkDevice` or `VkCommandBuffer`) or the instance (of the
/// `VkPhysicalDevice`), take the entry point (ash's core table for the version the registry
/// puts the command in, or [`DEVICE_FNS`]),
/// pass every argument through. Adding a command here is the whole change, as long as its
/// parameters are plain values, handles, fixed arrays, single input/output pointers and
/// input arrays whose count parameter counts only them (the emitter refuses anything else).
pub const FORWARDED: &[&str] = &[
    // Core 1.0 dynamic state with plain-value arguments.
    "vkCmdSetLineWidth",
    "vkCmdSetDepthBias",
    "vkCmdSetBlendConstants",
    "vkCmdSetDepthBounds",
    "vkCmdSetStencilCompareMask",
    "vkCmdSetStencilWriteMask",
    "vkCmdSetStencilReference",
    // Core 1.1–1.3 and extended dynamic state (1, 2, 3) with plain-value arguments. Setters
    // taking arrays or sample counts are hand-written: the driver indexes fixed-size state
    // with them (graphics.rs).
    "vkCmdSetDeviceMask",
    "vkCmdSetCullMode",
    "vkCmdSetFrontFace",
    "vkCmdSetPrimitiveTopology",
    "vkCmdSetDepthTestEnable",
    "vkCmdSetDepthWriteEnable",
    "vkCmdSetDepthCompareOp",
    "vkCmdSetDepthBoundsTestEnable",
    "vkCmdSetStencilTestEnable",
    "vkCmdSetStencilOp",
    "vkCmdSetRasterizerDiscardEnable",
    "vkCmdSetDepthBiasEnable",
    "vkCmdSetPrimitiveRestartEnable",
    "vkCmdSetPatchControlPointsEXT",
    "vkCmdSetLogicOpEXT",
    "vkCmdSetTessellationDomainOriginEXT",
    "vkCmdSetDepthClampEnableEXT",
    "vkCmdSetPolygonModeEXT",
    "vkCmdSetAlphaToCoverageEnableEXT",
    "vkCmdSetAlphaToOneEnableEXT",
    "vkCmdSetLogicOpEnableEXT",
    "vkCmdSetConservativeRasterizationModeEXT",
    "vkCmdSetExtraPrimitiveOverestimationSizeEXT",
    "vkCmdSetDepthClipEnableEXT",
    "vkCmdSetSampleLocationsEnableEXT",
    "vkCmdSetProvokingVertexModeEXT",
    "vkCmdSetLineRasterizationModeEXT",
    "vkCmdSetLineStippleEnableEXT",
    "vkCmdSetDepthClipNegativeOneToOneEXT",
    "vkCmdSetLineStippleEXT",
    "vkCmdSetFragmentShadingRateKHR",
    // Recording without bounds: the draw/dispatch sizes are the driver's to check, the
    // handles are checked by the ownership hook.
    "vkCmdBindIndexBuffer",
    "vkCmdBindIndexBuffer2KHR",
    "vkCmdDraw",
    "vkCmdDrawIndexed",
    "vkCmdDispatch",
    "vkCmdDispatchBase",
    "vkCmdSetEvent",
    "vkCmdResetEvent",
    "vkCmdResetEvent2",
    "vkCmdExecuteCommands",
    "vkCmdNextSubpass",
    "vkCmdNextSubpass2",
    "vkCmdEndConditionalRenderingEXT",
    // Device-level queries and host operations on one object.
    "vkResetFences",
    "vkGetFenceStatus",
    "vkGetSemaphoreCounterValue",
    "vkGetEventStatus",
    "vkSetEvent",
    "vkResetEvent",
    "vkMergePipelineCaches",
    "vkGetDescriptorSetLayoutSupport",
    "vkGetRenderAreaGranularity",
    "vkGetRenderingAreaGranularityKHR",
    "vkGetBufferMemoryRequirements",
    "vkGetBufferMemoryRequirements2",
    "vkGetBufferDeviceAddress",
    "vkGetBufferOpaqueCaptureAddress",
    "vkGetImageMemoryRequirements",
    "vkGetImageMemoryRequirements2",
    "vkGetImageSubresourceLayout2KHR",
    "vkGetImageDrmFormatModifierPropertiesEXT",
    "vkGetDeviceMemoryCommitment",
    "vkGetDeviceMemoryOpaqueCaptureAddress",
    // Instance-level queries answered by the host as they are (the semaphore one is
    // hand-written: SYNC_FD is emulated).
    "vkGetPhysicalDeviceExternalBufferProperties",
    "vkGetPhysicalDeviceExternalFenceProperties",
];

/// Create commands of the same shape, generated: `(device, pCreateInfo, pAllocator,
/// pObject)`, the create info passed through unchanged, the new object bound to the guest
/// id through `Handler::create_child` (id checks, object limit). Creates that check or
/// record anything about the object (images, buffers, views, layouts, render passes,
/// framebuffers, query pools, shader modules) or strip chains (fences, semaphores) are
/// hand-written.
pub const CREATED: &[&str] = &[
    "vkCreateBufferView",
    "vkCreateSampler",
    "vkCreateSamplerYcbcrConversion",
    "vkCreatePipelineCache",
    "vkCreateDescriptorPool",
    "vkCreateDescriptorUpdateTemplate",
    "vkCreateCommandPool",
    "vkCreateEvent",
    "vkCreatePrivateDataSlot",
];

/// Destroy commands of the same shape, generated: `(device, object, pAllocator)` through
/// `Handler::destroy_child` (the guest id goes now, the host call when the last user lets
/// go). Pools whose children leave the tables with them (command and descriptor pools),
/// memory (its charge) and dispatchable objects are hand-written.
pub const DESTROYED: &[&str] = &[
    "vkDestroyFence",
    "vkDestroySemaphore",
    "vkDestroyEvent",
    "vkDestroyQueryPool",
    "vkDestroyBuffer",
    "vkDestroyBufferView",
    "vkDestroyImage",
    "vkDestroyImageView",
    "vkDestroySampler",
    "vkDestroySamplerYcbcrConversion",
    "vkDestroyShaderModule",
    "vkDestroyPipelineCache",
    "vkDestroyPipelineLayout",
    "vkDestroyPipeline",
    "vkDestroyRenderPass",
    "vkDestroyFramebuffer",
    "vkDestroyDescriptorSetLayout",
    "vkDestroyDescriptorUpdateTemplate",
    "vkDestroyPrivateDataSlot",
];

/// Device entry points loaded by name into the optional table (`DeviceFns`), instead of
/// through `ash::Device`'s tables: ash replaces a missing entry point with a stub that
/// panics, which a guest could reach by calling a command of an extension the host lacks.
/// Each is looked up under the names in [`NEWER_NAMES`], its own name, then its registry
/// aliases (KHR, EXT, then vendor). Core 1.0 commands and the core 1.1–1.3 commands every
/// host device the renderer accepts has are called through ash's tables instead.
pub const DEVICE_FNS: &[&str] = &[
    // Core 1.1, also reachable through device-group and ycbcr extensions.
    "vkCreateSamplerYcbcrConversion",
    "vkDestroySamplerYcbcrConversion",
    "vkGetDeviceGroupPeerMemoryFeatures",
    "vkCmdSetDeviceMask",
    // Core 1.2.
    "vkCmdDrawIndirectCount",
    "vkCmdDrawIndexedIndirectCount",
    "vkCmdBeginRenderPass2",
    "vkCmdNextSubpass2",
    "vkCmdEndRenderPass2",
    // VK_EXT_external_memory_host (host-side imports; not a wire command).
    "vkGetMemoryHostPointerPropertiesEXT",
    // Core 1.3.
    "vkCreatePrivateDataSlot",
    "vkDestroyPrivateDataSlot",
    "vkSetPrivateData",
    "vkGetPrivateData",
    "vkCmdCopyImage2",
    "vkCmdCopyBufferToImage2",
    "vkCmdCopyImageToBuffer2",
    "vkCmdBlitImage2",
    "vkCmdResolveImage2",
    "vkCmdBeginRendering",
    "vkCmdEndRendering",
    "vkCmdSetCullMode",
    "vkCmdSetFrontFace",
    "vkCmdSetPrimitiveTopology",
    "vkCmdSetViewportWithCount",
    "vkCmdSetScissorWithCount",
    "vkCmdBindVertexBuffers2",
    "vkCmdSetDepthTestEnable",
    "vkCmdSetDepthWriteEnable",
    "vkCmdSetDepthCompareOp",
    "vkCmdSetDepthBoundsTestEnable",
    "vkCmdSetStencilTestEnable",
    "vkCmdSetStencilOp",
    "vkCmdSetRasterizerDiscardEnable",
    "vkCmdSetDepthBiasEnable",
    "vkCmdSetPrimitiveRestartEnable",
    // VK_EXT_extended_dynamic_state2.
    "vkCmdSetPatchControlPointsEXT",
    "vkCmdSetLogicOpEXT",
    // VK_EXT_extended_dynamic_state3.
    "vkCmdSetTessellationDomainOriginEXT",
    "vkCmdSetDepthClampEnableEXT",
    "vkCmdSetPolygonModeEXT",
    "vkCmdSetRasterizationSamplesEXT",
    "vkCmdSetSampleMaskEXT",
    "vkCmdSetAlphaToCoverageEnableEXT",
    "vkCmdSetAlphaToOneEnableEXT",
    "vkCmdSetLogicOpEnableEXT",
    "vkCmdSetColorBlendEnableEXT",
    "vkCmdSetColorBlendEquationEXT",
    "vkCmdSetColorWriteMaskEXT",
    "vkCmdSetRasterizationStreamEXT",
    "vkCmdSetConservativeRasterizationModeEXT",
    "vkCmdSetExtraPrimitiveOverestimationSizeEXT",
    "vkCmdSetDepthClipEnableEXT",
    "vkCmdSetSampleLocationsEnableEXT",
    "vkCmdSetColorBlendAdvancedEXT",
    "vkCmdSetProvokingVertexModeEXT",
    "vkCmdSetLineRasterizationModeEXT",
    "vkCmdSetLineStippleEnableEXT",
    "vkCmdSetDepthClipNegativeOneToOneEXT",
    // VK_EXT_color_write_enable, VK_EXT_vertex_input_dynamic_state,
    // VK_EXT_line_rasterization.
    "vkCmdSetColorWriteEnableEXT",
    "vkCmdSetVertexInputEXT",
    "vkCmdSetLineStippleEXT",
    // VK_EXT_conditional_rendering.
    "vkCmdBeginConditionalRenderingEXT",
    "vkCmdEndConditionalRenderingEXT",
    // VK_EXT_transform_feedback.
    "vkCmdBindTransformFeedbackBuffersEXT",
    "vkCmdBeginTransformFeedbackEXT",
    "vkCmdEndTransformFeedbackEXT",
    "vkCmdBeginQueryIndexedEXT",
    "vkCmdEndQueryIndexedEXT",
    "vkCmdDrawIndirectByteCountEXT",
    // VK_EXT_multi_draw.
    "vkCmdDrawMultiEXT",
    "vkCmdDrawMultiIndexedEXT",
    // VK_KHR_push_descriptor, VK_KHR_fragment_shading_rate.
    "vkCmdPushDescriptorSetKHR",
    "vkCmdSetFragmentShadingRateKHR",
    // VK_KHR_maintenance5.
    "vkCmdBindIndexBuffer2KHR",
    "vkGetRenderingAreaGranularityKHR",
    "vkGetDeviceImageSubresourceLayoutKHR",
    "vkGetImageSubresourceLayout2KHR",
    // VK_EXT_calibrated_timestamps, VK_EXT_image_drm_format_modifier.
    "vkGetCalibratedTimestampsEXT",
    "vkGetImageDrmFormatModifierPropertiesEXT",
];

/// Names newer than our vk.xml (1.3.269) that ash 0.38 (vk.xml 1.3.281) uses for a
/// command: the `PFN_` type ash has, and a name looked up first (a host driver of a newer
/// Vulkan may export the promoted name).
pub const NEWER_NAMES: &[(&str, &str, &str)] = &[
    (
        "vkCmdSetLineStippleEXT",
        "vkCmdSetLineStippleKHR",
        "promoted to VK_KHR_line_rasterization after vk.xml 1.3.269; ash 0.38 has only the KHR type",
    ),
    (
        "vkGetCalibratedTimestampsEXT",
        "vkGetCalibratedTimestampsKHR",
        "promoted to VK_KHR_calibrated_timestamps after vk.xml 1.3.269; ash 0.38 has only the KHR type",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_entry_has_a_reason() {
        assert_eq!(PROTOCOL_EXTENSIONS.len(), 118);
        assert!(PROTOCOL_EXTENSIONS
            .iter()
            .all(|(n, why)| n.starts_with("VK_") && !why.is_empty()));
        assert!(NOT_SERIALIZED
            .iter()
            .all(|(n, why)| n.starts_with("vk") && !why.is_empty()));
        assert!(IGNORABLE.iter().all(|i| !i.3.is_empty()));
        assert!(UNION_DEFAULT_TAGS.iter().all(|u| !u.2.is_empty()));
        assert!(STRUCTS_NOT_SERIALIZED.iter().all(|s| !s.1.is_empty()));
        assert!(EXTRA_STRUCTS.iter().all(|s| !s.reason.is_empty()));
        assert!(NEWER_NAMES.iter().all(|n| !n.2.is_empty()));
    }

    #[test]
    fn handler_lists_are_unique_and_shaped() {
        for list in [FORWARDED, CREATED, DESTROYED, DEVICE_FNS] {
            let mut seen = std::collections::BTreeSet::new();
            assert!(list.iter().all(|n| n.starts_with("vk") && seen.insert(*n)));
        }
        assert!(CREATED.iter().all(|n| n.starts_with("vkCreate")));
        assert!(DESTROYED.iter().all(|n| n.starts_with("vkDestroy")));
        assert!(FORWARDED
            .iter()
            .all(|n| !CREATED.contains(n) && !DESTROYED.contains(n)));
    }

    #[test]
    fn extension_list_is_sorted_and_unique() {
        assert!(PROTOCOL_EXTENSIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
