//! Offscreen graphics and descriptor indexing, as ordinary `ash` programs: an indexed,
//! textured quad drawn into a 64×64 RGBA8 image (render pass 1, render pass 2 with an
//! imageless framebuffer, dynamic rendering) and read back through a buffer, and a
//! compute shader indexing a partially bound, update-after-bind, runtime-sized array
//! of storage buffers non-uniformly. Each case checks a few values against the CPU and
//! returns all output bytes, so native and Venus runs compare pixel by pixel.
//!
//! As in the parent module, each `unsafe` block is one Vulkan call on handles created
//! just above by this harness, used as the spec requires.

use ash::vk;

use super::{as_u32s, check, f32s, spirv_words, u32s, AppResult, Buf, Gpu};

/// SPIR-V of the graphics test shaders (GLSL beside them in `tests/shaders/`).
pub mod spv {
    /// Passes position and texture coordinate through.
    pub const QUAD_VERT: &[u8] = include_bytes!("../../shaders/quad_vert.spv");
    /// Samples the texture, tinted by a push constant.
    pub const QUAD_FRAG: &[u8] = include_bytes!("../../shaders/quad_frag.spv");
    /// Non-uniform indexing into a runtime array of storage buffers.
    pub const DESC_INDEX: &[u8] = include_bytes!("../../shaders/desc_index.spv");
}

/// Every graphics case, by name.
pub const CASES: &[&str] = &[
    "quad_render_pass",
    "quad_render_pass2",
    "quad_dynamic_rendering",
    "msaa_depth_transfer",
    "ext_dynamic_state",
    "descriptor_indexing",
];

/// Runs a graphics case by name (on a [`Gpu::new_graphics`] device).
pub fn run_case(g: &Gpu, name: &str) -> AppResult<Vec<u8>> {
    match name {
        "quad_render_pass" => quad(g, Path::RenderPass),
        "quad_render_pass2" => quad(g, Path::RenderPass2),
        "quad_dynamic_rendering" => quad(g, Path::DynamicRendering),
        "msaa_depth_transfer" => msaa_depth_transfer(g),
        "ext_dynamic_state" => ext_dynamic_state(g),
        "descriptor_indexing" => descriptor_indexing(g),
        "hostile_indirect" => hostile_indirect(g),
        "hostile_copy" => hostile_copy(g),
        "hostile_descriptor" => hostile_descriptor(g),
        "hostile_render_area" => hostile_render_area(g),
        _ => Err(format!("unknown case {name}").into()),
    }
}

/// Color target size.
const SIZE: u32 = 64;
/// Texture size.
const TEX: u32 = 16;
const FORMAT: vk::Format = vk::Format::R8G8B8A8_UNORM;
const DEPTH: vk::Format = vk::Format::D32_SFLOAT;
/// Exactly representable in UNORM8: (51, 102, 153, 255).
const CLEAR: [f32; 4] = [0.2, 0.4, 0.6, 1.0];
const TINT: [f32; 4] = [1.0, 0.75, 0.5, 1.0];

/// How the quad is rendered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    /// vkCreateRenderPass, a framebuffer with its view, vkCmdBeginRenderPass,
    /// vkCmdDrawIndexed, v1 copies and barriers.
    RenderPass,
    /// vkCreateRenderPass2, an imageless framebuffer, vkCmdBeginRenderPass2,
    /// vkCmdDrawIndexed.
    RenderPass2,
    /// vkCmdBeginRendering, vkCmdBindVertexBuffers2, vkCmdDrawIndexedIndirect,
    /// vkCmdPipelineBarrier2, the `*2` copies.
    DynamicRendering,
}

/// A device-local image with its memory and a 2D color view.
struct Image {
    image: vk::Image,
    memory: vk::DeviceMemory,
    view: vk::ImageView,
}

fn image(g: &Gpu, w: u32, h: u32, usage: vk::ImageUsageFlags) -> AppResult<Image> {
    image_ex(g, FORMAT, (w, h), vk::SampleCountFlags::TYPE_1, usage)
}

/// An image of any format and sample count (its view covers the format's aspects).
fn image_ex(
    g: &Gpu,
    format: vk::Format,
    (w, h): (u32, u32),
    samples: vk::SampleCountFlags,
    usage: vk::ImageUsageFlags,
) -> AppResult<Image> {
    let info = vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(format)
        .extent(vk::Extent3D {
            width: w,
            height: h,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(samples)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(usage)
        .initial_layout(vk::ImageLayout::UNDEFINED);
    // SAFETY: live device, valid create info.
    let image = unsafe { g.device.create_image(&info, None)? };
    // SAFETY: live image.
    let req = unsafe { g.device.get_image_memory_requirements(image) };
    let ty = g
        .memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::DEVICE_LOCAL)
        .or_else(|_| g.memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::empty()))?;
    let alloc = vk::MemoryAllocateInfo::default()
        .allocation_size(req.size)
        .memory_type_index(ty);
    // SAFETY: live device, valid allocate info.
    let memory = unsafe { g.device.allocate_memory(&alloc, None)? };
    // SAFETY: fresh image and memory of an allowed type.
    unsafe { g.device.bind_image_memory(image, memory, 0)? };
    let vinfo = vk::ImageViewCreateInfo::default()
        .image(image)
        .view_type(vk::ImageViewType::TYPE_2D)
        .format(format)
        .subresource_range(range_of(format));
    // SAFETY: live image with bound memory.
    let view = unsafe { g.device.create_image_view(&vinfo, None)? };
    Ok(Image {
        image,
        memory,
        view,
    })
}

fn destroy_image(g: &Gpu, i: Image) {
    // SAFETY: no pending work uses it (callers wait first).
    unsafe { g.device.destroy_image_view(i.view, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_image(i.image, None) };
    // SAFETY: as above.
    unsafe { g.device.free_memory(i.memory, None) };
}

fn range_of(format: vk::Format) -> vk::ImageSubresourceRange {
    let aspect_mask = if format == DEPTH {
        vk::ImageAspectFlags::DEPTH
    } else {
        vk::ImageAspectFlags::COLOR
    };
    vk::ImageSubresourceRange {
        aspect_mask,
        ..color_range()
    }
}

fn color_range() -> vk::ImageSubresourceRange {
    vk::ImageSubresourceRange {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        base_mip_level: 0,
        level_count: 1,
        base_array_layer: 0,
        layer_count: 1,
    }
}

fn color_layers() -> vk::ImageSubresourceLayers {
    vk::ImageSubresourceLayers {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        mip_level: 0,
        base_array_layer: 0,
        layer_count: 1,
    }
}

/// A v1 image layout barrier.
#[allow(clippy::too_many_arguments)]
fn layout_barrier(
    g: &Gpu,
    cb: vk::CommandBuffer,
    image: vk::Image,
    (old, new): (vk::ImageLayout, vk::ImageLayout),
    (src_stage, src_access): (vk::PipelineStageFlags, vk::AccessFlags),
    (dst_stage, dst_access): (vk::PipelineStageFlags, vk::AccessFlags),
) {
    let b = [vk::ImageMemoryBarrier::default()
        .old_layout(old)
        .new_layout(new)
        .src_access_mask(src_access)
        .dst_access_mask(dst_access)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .image(image)
        .subresource_range(color_range())];
    // SAFETY: recording command buffer, live image.
    unsafe {
        g.device.cmd_pipeline_barrier(
            cb,
            src_stage,
            dst_stage,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &b,
        );
    }
}

/// A synchronization2 image layout barrier (color aspect).
fn layout_barrier2(
    g: &Gpu,
    cb: vk::CommandBuffer,
    image: vk::Image,
    layouts: (vk::ImageLayout, vk::ImageLayout),
    src: (vk::PipelineStageFlags2, vk::AccessFlags2),
    dst: (vk::PipelineStageFlags2, vk::AccessFlags2),
) {
    layout_barrier2_range(g, cb, image, color_range(), layouts, src, dst);
}

/// A synchronization2 image layout barrier over `range`.
fn layout_barrier2_range(
    g: &Gpu,
    cb: vk::CommandBuffer,
    image: vk::Image,
    range: vk::ImageSubresourceRange,
    (old, new): (vk::ImageLayout, vk::ImageLayout),
    (src_stage, src_access): (vk::PipelineStageFlags2, vk::AccessFlags2),
    (dst_stage, dst_access): (vk::PipelineStageFlags2, vk::AccessFlags2),
) {
    let b = [vk::ImageMemoryBarrier2::default()
        .old_layout(old)
        .new_layout(new)
        .src_stage_mask(src_stage)
        .src_access_mask(src_access)
        .dst_stage_mask(dst_stage)
        .dst_access_mask(dst_access)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .image(image)
        .subresource_range(range)];
    let dep = vk::DependencyInfo::default().image_memory_barriers(&b);
    // SAFETY: recording command buffer, live image, synchronization2 enabled.
    unsafe { g.device.cmd_pipeline_barrier2(cb, &dep) };
}

/// Everything the quad cases share: the uploaded texture, sampler, descriptor set,
/// layouts, shaders, vertex/index/indirect buffers and the readback buffer.
struct Scene {
    texture: Image,
    sampler: vk::Sampler,
    set_layout: vk::DescriptorSetLayout,
    pool: vk::DescriptorPool,
    set: vk::DescriptorSet,
    layout: vk::PipelineLayout,
    vert: vk::ShaderModule,
    frag: vk::ShaderModule,
    vertices: Buf,
    indices: Buf,
    indirect: Buf,
    staging: Buf,
    readback: Buf,
}

/// Texel (x, y) of the test texture.
fn texel(x: u32, y: u32) -> [u8; 4] {
    let c = |v: u32| u8::try_from(v * 16).unwrap_or(255);
    [c(x), c(y), if (x ^ y) & 1 == 0 { 0 } else { 255 }, 255]
}

fn scene(g: &Gpu) -> AppResult<Scene> {
    let pixels: Vec<u8> = (0..TEX)
        .flat_map(|y| (0..TEX).flat_map(move |x| texel(x, y)))
        .collect();
    let staging = g.buffer(u64::from(TEX * TEX * 4))?;
    staging.write(&pixels);
    let texture = image(
        g,
        TEX,
        TEX,
        vk::ImageUsageFlags::SAMPLED | vk::ImageUsageFlags::TRANSFER_DST,
    )?;
    let sinfo = vk::SamplerCreateInfo::default()
        .mag_filter(vk::Filter::NEAREST)
        .min_filter(vk::Filter::NEAREST)
        .mipmap_mode(vk::SamplerMipmapMode::NEAREST)
        .address_mode_u(vk::SamplerAddressMode::CLAMP_TO_EDGE)
        .address_mode_v(vk::SamplerAddressMode::CLAMP_TO_EDGE)
        .address_mode_w(vk::SamplerAddressMode::CLAMP_TO_EDGE)
        .max_lod(0.0);
    // SAFETY: live device.
    let sampler = unsafe { g.device.create_sampler(&sinfo, None)? };
    let bindings = [vk::DescriptorSetLayoutBinding::default()
        .binding(0)
        .descriptor_type(vk::DescriptorType::COMBINED_IMAGE_SAMPLER)
        .descriptor_count(1)
        .stage_flags(vk::ShaderStageFlags::FRAGMENT)];
    let linfo = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
    // SAFETY: live device.
    let set_layout = unsafe { g.device.create_descriptor_set_layout(&linfo, None)? };
    let sizes = [vk::DescriptorPoolSize {
        ty: vk::DescriptorType::COMBINED_IMAGE_SAMPLER,
        descriptor_count: 1,
    }];
    let pinfo = vk::DescriptorPoolCreateInfo::default()
        .max_sets(1)
        .pool_sizes(&sizes);
    // SAFETY: live device.
    let pool = unsafe { g.device.create_descriptor_pool(&pinfo, None)? };
    let layouts = [set_layout];
    let ainfo = vk::DescriptorSetAllocateInfo::default()
        .descriptor_pool(pool)
        .set_layouts(&layouts);
    // SAFETY: live pool and layout.
    let set = unsafe { g.device.allocate_descriptor_sets(&ainfo)? }[0];
    let iinfo = [vk::DescriptorImageInfo {
        sampler,
        image_view: texture.view,
        image_layout: vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL,
    }];
    let write = [vk::WriteDescriptorSet::default()
        .dst_set(set)
        .dst_binding(0)
        .descriptor_type(vk::DescriptorType::COMBINED_IMAGE_SAMPLER)
        .image_info(&iinfo)];
    // SAFETY: live set, view and sampler.
    unsafe { g.device.update_descriptor_sets(&write, &[]) };
    let ranges = [vk::PushConstantRange {
        stage_flags: vk::ShaderStageFlags::FRAGMENT,
        offset: 0,
        size: 16,
    }];
    let plinfo = vk::PipelineLayoutCreateInfo::default()
        .set_layouts(&layouts)
        .push_constant_ranges(&ranges);
    // SAFETY: live device and set layout.
    let layout = unsafe { g.device.create_pipeline_layout(&plinfo, None)? };
    let module = |code: &[u8]| -> AppResult<vk::ShaderModule> {
        let words = spirv_words(code)?;
        let info = vk::ShaderModuleCreateInfo::default().code(&words);
        // SAFETY: live device, valid SPIR-V.
        Ok(unsafe { g.device.create_shader_module(&info, None)? })
    };
    let vert = module(spv::QUAD_VERT)?;
    let frag = module(spv::QUAD_FRAG)?;
    // pos.xy, uv.xy; clockwise in framebuffer space (y down).
    let quad: [f32; 16] = [
        -0.75, -0.75, 0.0, 0.0, //
        0.75, -0.75, 1.0, 0.0, //
        0.75, 0.75, 1.0, 1.0, //
        -0.75, 0.75, 0.0, 1.0,
    ];
    let vertices = g.buffer_with_usage(64, vk::BufferUsageFlags::VERTEX_BUFFER)?;
    vertices.write(&f32s(&quad));
    let indices = g.buffer_with_usage(16, vk::BufferUsageFlags::INDEX_BUFFER)?;
    let idx: Vec<u8> = [0u16, 1, 2, 2, 3, 0]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    indices.write(&idx);
    // One VkDrawIndexedIndirectCommand at offset 16: 6 indices, 1 instance.
    let indirect = g.buffer_with_usage(64, vk::BufferUsageFlags::INDIRECT_BUFFER)?;
    indirect.write(&u32s(&[0, 0, 0, 0, 6, 1, 0, 0, 0]));
    let readback = g.buffer(u64::from(SIZE * SIZE * 4))?;
    g.run(|cb| {
        layout_barrier(
            g,
            cb,
            texture.image,
            (
                vk::ImageLayout::UNDEFINED,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            ),
            (
                vk::PipelineStageFlags::TOP_OF_PIPE,
                vk::AccessFlags::empty(),
            ),
            (
                vk::PipelineStageFlags::TRANSFER,
                vk::AccessFlags::TRANSFER_WRITE,
            ),
        );
        let region = [vk::BufferImageCopy {
            buffer_offset: 0,
            buffer_row_length: 0,
            buffer_image_height: 0,
            image_subresource: color_layers(),
            image_offset: vk::Offset3D::default(),
            image_extent: vk::Extent3D {
                width: TEX,
                height: TEX,
                depth: 1,
            },
        }];
        // SAFETY: recording command buffer; the image is in TRANSFER_DST_OPTIMAL.
        unsafe {
            g.device.cmd_copy_buffer_to_image(
                cb,
                staging.buffer,
                texture.image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &region,
            );
        }
        layout_barrier(
            g,
            cb,
            texture.image,
            (
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL,
            ),
            (
                vk::PipelineStageFlags::TRANSFER,
                vk::AccessFlags::TRANSFER_WRITE,
            ),
            (
                vk::PipelineStageFlags::FRAGMENT_SHADER,
                vk::AccessFlags::SHADER_READ,
            ),
        );
    })?;
    Ok(Scene {
        texture,
        sampler,
        set_layout,
        pool,
        set,
        layout,
        vert,
        frag,
        vertices,
        indices,
        indirect,
        staging,
        readback,
    })
}

fn destroy_scene(g: &Gpu, s: Scene) {
    // SAFETY: the device is idle for these objects (callers wait first).
    unsafe { g.device.destroy_pipeline_layout(s.layout, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_descriptor_pool(s.pool, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_descriptor_set_layout(s.set_layout, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_sampler(s.sampler, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_shader_module(s.vert, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_shader_module(s.frag, None) };
    destroy_image(g, s.texture);
    for b in [s.vertices, s.indices, s.indirect, s.staging, s.readback] {
        g.destroy_buf(b);
    }
}

/// The quad pipeline: full fixed-function state, with viewport, scissor, cull mode,
/// front face, topology, line width, blend constants and a few enables dynamic.
fn quad_pipeline(
    g: &Gpu,
    s: &Scene,
    render_pass: vk::RenderPass,
    dynamic_rendering: bool,
) -> AppResult<vk::Pipeline> {
    quad_pipeline_ex(
        g,
        s,
        render_pass,
        dynamic_rendering,
        vk::SampleCountFlags::TYPE_1,
        vk::Format::UNDEFINED,
    )
}

/// The quad pipeline with a sample count and (dynamic rendering) a depth format.
fn quad_pipeline_ex(
    g: &Gpu,
    s: &Scene,
    render_pass: vk::RenderPass,
    dynamic_rendering: bool,
    samples: vk::SampleCountFlags,
    depth_format: vk::Format,
) -> AppResult<vk::Pipeline> {
    let stages = [
        vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::VERTEX)
            .module(s.vert)
            .name(c"main"),
        vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::FRAGMENT)
            .module(s.frag)
            .name(c"main"),
    ];
    let bindings = [vk::VertexInputBindingDescription {
        binding: 0,
        stride: 16,
        input_rate: vk::VertexInputRate::VERTEX,
    }];
    let attributes = [
        vk::VertexInputAttributeDescription {
            location: 0,
            binding: 0,
            format: vk::Format::R32G32_SFLOAT,
            offset: 0,
        },
        vk::VertexInputAttributeDescription {
            location: 1,
            binding: 0,
            format: vk::Format::R32G32_SFLOAT,
            offset: 8,
        },
    ];
    let vertex = vk::PipelineVertexInputStateCreateInfo::default()
        .vertex_binding_descriptions(&bindings)
        .vertex_attribute_descriptions(&attributes);
    let assembly = vk::PipelineInputAssemblyStateCreateInfo::default()
        .topology(vk::PrimitiveTopology::POINT_LIST);
    let viewport = vk::PipelineViewportStateCreateInfo::default()
        .viewport_count(1)
        .scissor_count(1);
    let raster = vk::PipelineRasterizationStateCreateInfo::default()
        .polygon_mode(vk::PolygonMode::FILL)
        .cull_mode(vk::CullModeFlags::FRONT_AND_BACK)
        .front_face(vk::FrontFace::COUNTER_CLOCKWISE)
        .line_width(1.0);
    let multisample =
        vk::PipelineMultisampleStateCreateInfo::default().rasterization_samples(samples);
    let depth = vk::PipelineDepthStencilStateCreateInfo::default()
        .depth_compare_op(vk::CompareOp::ALWAYS)
        .max_depth_bounds(1.0);
    let attachments = [vk::PipelineColorBlendAttachmentState::default()
        .blend_enable(false)
        .color_write_mask(vk::ColorComponentFlags::RGBA)];
    let blend = vk::PipelineColorBlendStateCreateInfo::default().attachments(&attachments);
    let dynamic_states = [
        vk::DynamicState::VIEWPORT,
        vk::DynamicState::SCISSOR,
        vk::DynamicState::LINE_WIDTH,
        vk::DynamicState::BLEND_CONSTANTS,
        vk::DynamicState::CULL_MODE,
        vk::DynamicState::FRONT_FACE,
        vk::DynamicState::PRIMITIVE_TOPOLOGY,
        vk::DynamicState::DEPTH_TEST_ENABLE,
        vk::DynamicState::DEPTH_COMPARE_OP,
        vk::DynamicState::DEPTH_WRITE_ENABLE,
        vk::DynamicState::STENCIL_TEST_ENABLE,
        vk::DynamicState::RASTERIZER_DISCARD_ENABLE,
        vk::DynamicState::PRIMITIVE_RESTART_ENABLE,
        vk::DynamicState::DEPTH_BIAS_ENABLE,
    ];
    let dynamic = vk::PipelineDynamicStateCreateInfo::default().dynamic_states(&dynamic_states);
    let formats = [FORMAT];
    let mut rendering = vk::PipelineRenderingCreateInfo::default()
        .color_attachment_formats(&formats)
        .depth_attachment_format(depth_format);
    let mut info = vk::GraphicsPipelineCreateInfo::default()
        .stages(&stages)
        .vertex_input_state(&vertex)
        .input_assembly_state(&assembly)
        .viewport_state(&viewport)
        .rasterization_state(&raster)
        .multisample_state(&multisample)
        .depth_stencil_state(&depth)
        .color_blend_state(&blend)
        .dynamic_state(&dynamic)
        .layout(s.layout)
        .render_pass(render_pass)
        .subpass(0);
    if dynamic_rendering {
        info = info.push_next(&mut rendering);
    }
    // SAFETY: live device; every referenced object is live.
    let p = unsafe {
        g.device
            .create_graphics_pipelines(vk::PipelineCache::null(), &[info], None)
    }
    .map_err(|(_, e)| e)?;
    Ok(p[0])
}

/// Binds and draws the quad with the dynamic state set (inside a render pass or
/// dynamic rendering).
fn draw_quad(g: &Gpu, cb: vk::CommandBuffer, s: &Scene, pipeline: vk::Pipeline, path: Path) {
    bind_quad(g, cb, s, pipeline, path);
    let d = &g.device;
    if path == Path::DynamicRendering {
        // SAFETY: as in `bind_quad`; one 20-byte record at offset 16 of a 64-byte buffer.
        unsafe { d.cmd_draw_indexed_indirect(cb, s.indirect.buffer, 16, 1, 20) };
    } else {
        // SAFETY: as in `bind_quad`.
        unsafe { d.cmd_draw_indexed(cb, 6, 1, 0, 0, 0) };
    }
}

/// Binds the quad's pipeline, buffers, set, push constants and dynamic state.
fn bind_quad(g: &Gpu, cb: vk::CommandBuffer, s: &Scene, pipeline: vk::Pipeline, path: Path) {
    let d = &g.device;
    let extent = vk::Extent2D {
        width: SIZE,
        height: SIZE,
    };
    let viewport = [vk::Viewport {
        x: 0.0,
        y: 0.0,
        width: SIZE as f32,
        height: SIZE as f32,
        min_depth: 0.0,
        max_depth: 1.0,
    }];
    let scissor = [vk::Rect2D {
        offset: vk::Offset2D::default(),
        extent,
    }];
    let tint: Vec<u8> = f32s(&TINT);
    // SAFETY: recording command buffer inside a render pass instance, with live
    // pipeline, layout, set and buffers created by this harness (so for every call
    // below).
    unsafe { d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::GRAPHICS, pipeline) };
    // SAFETY: as above.
    unsafe { d.cmd_set_viewport(cb, 0, &viewport) };
    // SAFETY: as above.
    unsafe { d.cmd_set_scissor(cb, 0, &scissor) };
    // SAFETY: as above.
    unsafe { d.cmd_set_line_width(cb, 1.0) };
    // SAFETY: as above.
    unsafe { d.cmd_set_blend_constants(cb, &[0.0, 0.0, 0.0, 0.0]) };
    // SAFETY: as above (extended dynamic state is core 1.3).
    unsafe { d.cmd_set_cull_mode(cb, vk::CullModeFlags::BACK) };
    // SAFETY: as above.
    unsafe { d.cmd_set_front_face(cb, vk::FrontFace::CLOCKWISE) };
    // SAFETY: as above.
    unsafe { d.cmd_set_primitive_topology(cb, vk::PrimitiveTopology::TRIANGLE_LIST) };
    // SAFETY: as above.
    unsafe { d.cmd_set_depth_test_enable(cb, false) };
    // SAFETY: as above.
    unsafe { d.cmd_set_depth_compare_op(cb, vk::CompareOp::ALWAYS) };
    // SAFETY: as above.
    unsafe { d.cmd_set_depth_write_enable(cb, false) };
    // SAFETY: as above.
    unsafe { d.cmd_set_stencil_test_enable(cb, false) };
    // SAFETY: as above.
    unsafe { d.cmd_set_rasterizer_discard_enable(cb, false) };
    // SAFETY: as above.
    unsafe { d.cmd_set_primitive_restart_enable(cb, false) };
    // SAFETY: as above.
    unsafe { d.cmd_set_depth_bias_enable(cb, false) };
    if path == Path::DynamicRendering {
        // SAFETY: as above; one binding with size and stride.
        unsafe {
            d.cmd_bind_vertex_buffers2(cb, 0, &[s.vertices.buffer], &[0], Some(&[64]), Some(&[16]));
        }
    } else {
        // SAFETY: as above.
        unsafe { d.cmd_bind_vertex_buffers(cb, 0, &[s.vertices.buffer], &[0]) };
    }
    // SAFETY: as above.
    unsafe { d.cmd_bind_index_buffer(cb, s.indices.buffer, 0, vk::IndexType::UINT16) };
    // SAFETY: as above.
    unsafe {
        d.cmd_bind_descriptor_sets(
            cb,
            vk::PipelineBindPoint::GRAPHICS,
            s.layout,
            0,
            &[s.set],
            &[],
        );
    }
    // SAFETY: as above; 16 bytes in the fragment push range.
    unsafe { d.cmd_push_constants(cb, s.layout, vk::ShaderStageFlags::FRAGMENT, 0, &tint) };
}

/// One render pass, v1 or v2 (the v2 one with an imageless framebuffer).
fn render_pass(g: &Gpu, v2: bool) -> AppResult<vk::RenderPass> {
    if !v2 {
        let attachments = [vk::AttachmentDescription::default()
            .format(FORMAT)
            .samples(vk::SampleCountFlags::TYPE_1)
            .load_op(vk::AttachmentLoadOp::CLEAR)
            .store_op(vk::AttachmentStoreOp::STORE)
            .stencil_load_op(vk::AttachmentLoadOp::DONT_CARE)
            .stencil_store_op(vk::AttachmentStoreOp::DONT_CARE)
            .initial_layout(vk::ImageLayout::UNDEFINED)
            .final_layout(vk::ImageLayout::TRANSFER_SRC_OPTIMAL)];
        let refs = [vk::AttachmentReference {
            attachment: 0,
            layout: vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL,
        }];
        let subpasses = [vk::SubpassDescription::default()
            .pipeline_bind_point(vk::PipelineBindPoint::GRAPHICS)
            .color_attachments(&refs)];
        let deps = [vk::SubpassDependency {
            src_subpass: 0,
            dst_subpass: vk::SUBPASS_EXTERNAL,
            src_stage_mask: vk::PipelineStageFlags::COLOR_ATTACHMENT_OUTPUT,
            dst_stage_mask: vk::PipelineStageFlags::TRANSFER,
            src_access_mask: vk::AccessFlags::COLOR_ATTACHMENT_WRITE,
            dst_access_mask: vk::AccessFlags::TRANSFER_READ,
            dependency_flags: vk::DependencyFlags::empty(),
        }];
        let info = vk::RenderPassCreateInfo::default()
            .attachments(&attachments)
            .subpasses(&subpasses)
            .dependencies(&deps);
        // SAFETY: live device, valid create info.
        return Ok(unsafe { g.device.create_render_pass(&info, None)? });
    }
    let attachments = [vk::AttachmentDescription2::default()
        .format(FORMAT)
        .samples(vk::SampleCountFlags::TYPE_1)
        .load_op(vk::AttachmentLoadOp::CLEAR)
        .store_op(vk::AttachmentStoreOp::STORE)
        .stencil_load_op(vk::AttachmentLoadOp::DONT_CARE)
        .stencil_store_op(vk::AttachmentStoreOp::DONT_CARE)
        .initial_layout(vk::ImageLayout::UNDEFINED)
        .final_layout(vk::ImageLayout::TRANSFER_SRC_OPTIMAL)];
    let refs = [vk::AttachmentReference2::default()
        .attachment(0)
        .layout(vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL)
        .aspect_mask(vk::ImageAspectFlags::COLOR)];
    let subpasses = [vk::SubpassDescription2::default()
        .pipeline_bind_point(vk::PipelineBindPoint::GRAPHICS)
        .color_attachments(&refs)];
    let deps = [vk::SubpassDependency2::default()
        .src_subpass(0)
        .dst_subpass(vk::SUBPASS_EXTERNAL)
        .src_stage_mask(vk::PipelineStageFlags::COLOR_ATTACHMENT_OUTPUT)
        .dst_stage_mask(vk::PipelineStageFlags::TRANSFER)
        .src_access_mask(vk::AccessFlags::COLOR_ATTACHMENT_WRITE)
        .dst_access_mask(vk::AccessFlags::TRANSFER_READ)];
    let info = vk::RenderPassCreateInfo2::default()
        .attachments(&attachments)
        .subpasses(&subpasses)
        .dependencies(&deps);
    // SAFETY: live device, valid create info.
    Ok(unsafe { g.device.create_render_pass2(&info, None)? })
}

/// The textured quad along `path`; returns the 64×64 RGBA8 pixels.
fn quad(g: &Gpu, path: Path) -> AppResult<Vec<u8>> {
    let s = scene(g)?;
    let target = image(
        g,
        SIZE,
        SIZE,
        vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::TRANSFER_SRC,
    )?;
    let clear = [vk::ClearValue {
        color: vk::ClearColorValue { float32: CLEAR },
    }];
    let area = vk::Rect2D {
        offset: vk::Offset2D::default(),
        extent: vk::Extent2D {
            width: SIZE,
            height: SIZE,
        },
    };
    let copy = vk::BufferImageCopy {
        buffer_offset: 0,
        buffer_row_length: 0,
        buffer_image_height: 0,
        image_subresource: color_layers(),
        image_offset: vk::Offset3D::default(),
        image_extent: vk::Extent3D {
            width: SIZE,
            height: SIZE,
            depth: 1,
        },
    };
    let mut pass = vk::RenderPass::null();
    let mut framebuffer = vk::Framebuffer::null();
    let pipeline;
    match path {
        Path::RenderPass | Path::RenderPass2 => {
            let v2 = path == Path::RenderPass2;
            pass = render_pass(g, v2)?;
            pipeline = quad_pipeline(g, &s, pass, false)?;
            let views = [target.view];
            let formats = [FORMAT];
            let att_info = [vk::FramebufferAttachmentImageInfo::default()
                .usage(vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::TRANSFER_SRC)
                .width(SIZE)
                .height(SIZE)
                .layer_count(1)
                .view_formats(&formats)];
            let mut imageless =
                vk::FramebufferAttachmentsCreateInfo::default().attachment_image_infos(&att_info);
            let mut finfo = vk::FramebufferCreateInfo::default()
                .render_pass(pass)
                .width(SIZE)
                .height(SIZE)
                .layers(1);
            if v2 {
                finfo = finfo
                    .flags(vk::FramebufferCreateFlags::IMAGELESS)
                    .attachment_count(1)
                    .push_next(&mut imageless);
            } else {
                finfo = finfo.attachments(&views);
            }
            // SAFETY: live device, render pass and view.
            framebuffer = unsafe { g.device.create_framebuffer(&finfo, None)? };
            g.run(|cb| {
                let mut begin_views =
                    vk::RenderPassAttachmentBeginInfo::default().attachments(&views);
                let mut begin = vk::RenderPassBeginInfo::default()
                    .render_pass(pass)
                    .framebuffer(framebuffer)
                    .render_area(area)
                    .clear_values(&clear);
                if v2 {
                    begin = begin.push_next(&mut begin_views);
                    let sub = vk::SubpassBeginInfo::default().contents(vk::SubpassContents::INLINE);
                    // SAFETY: recording command buffer; live pass, framebuffer and view.
                    unsafe { g.device.cmd_begin_render_pass2(cb, &begin, &sub) };
                } else {
                    // SAFETY: as above.
                    unsafe {
                        g.device
                            .cmd_begin_render_pass(cb, &begin, vk::SubpassContents::INLINE)
                    };
                }
                draw_quad(g, cb, &s, pipeline, path);
                if v2 {
                    // SAFETY: inside the render pass begun above.
                    unsafe {
                        g.device
                            .cmd_end_render_pass2(cb, &vk::SubpassEndInfo::default())
                    };
                } else {
                    // SAFETY: inside the render pass begun above.
                    unsafe { g.device.cmd_end_render_pass(cb) };
                }
                // SAFETY: the pass left the image in TRANSFER_SRC_OPTIMAL, its external
                // dependency orders the copy after the color writes.
                unsafe {
                    g.device.cmd_copy_image_to_buffer(
                        cb,
                        target.image,
                        vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                        s.readback.buffer,
                        &[copy],
                    );
                }
            })?;
        }
        Path::DynamicRendering => {
            pipeline = quad_pipeline(g, &s, vk::RenderPass::null(), true)?;
            g.run(|cb| {
                layout_barrier2(
                    g,
                    cb,
                    target.image,
                    (
                        vk::ImageLayout::UNDEFINED,
                        vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL,
                    ),
                    (vk::PipelineStageFlags2::NONE, vk::AccessFlags2::NONE),
                    (
                        vk::PipelineStageFlags2::COLOR_ATTACHMENT_OUTPUT,
                        vk::AccessFlags2::COLOR_ATTACHMENT_WRITE,
                    ),
                );
                let color = [vk::RenderingAttachmentInfo::default()
                    .image_view(target.view)
                    .image_layout(vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL)
                    .load_op(vk::AttachmentLoadOp::CLEAR)
                    .store_op(vk::AttachmentStoreOp::STORE)
                    .clear_value(clear[0])];
                let info = vk::RenderingInfo::default()
                    .render_area(area)
                    .layer_count(1)
                    .color_attachments(&color);
                // SAFETY: recording command buffer; the view is in the attachment layout.
                unsafe { g.device.cmd_begin_rendering(cb, &info) };
                draw_quad(g, cb, &s, pipeline, path);
                // SAFETY: inside the rendering begun above.
                unsafe { g.device.cmd_end_rendering(cb) };
                layout_barrier2(
                    g,
                    cb,
                    target.image,
                    (
                        vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL,
                        vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                    ),
                    (
                        vk::PipelineStageFlags2::COLOR_ATTACHMENT_OUTPUT,
                        vk::AccessFlags2::COLOR_ATTACHMENT_WRITE,
                    ),
                    (
                        vk::PipelineStageFlags2::COPY,
                        vk::AccessFlags2::TRANSFER_READ,
                    ),
                );
                let regions = [vk::BufferImageCopy2::default()
                    .image_subresource(copy.image_subresource)
                    .image_extent(copy.image_extent)];
                let cinfo = vk::CopyImageToBufferInfo2::default()
                    .src_image(target.image)
                    .src_image_layout(vk::ImageLayout::TRANSFER_SRC_OPTIMAL)
                    .dst_buffer(s.readback.buffer)
                    .regions(&regions);
                // SAFETY: the image is in TRANSFER_SRC_OPTIMAL after the barrier.
                unsafe { g.device.cmd_copy_image_to_buffer2(cb, &cinfo) };
            })?;
        }
    }
    let out = s.readback.read();
    let px = |x: u32, y: u32| -> [u8; 4] {
        let i = ((y * SIZE + x) * 4) as usize;
        [out[i], out[i + 1], out[i + 2], out[i + 3]]
    };
    check(px(0, 0) == [51, 102, 153, 255], "clear color at the corner")?;
    check(
        px(63, 63) == [51, 102, 153, 255],
        "clear color at the far corner",
    )?;
    // Pixel (32, 32) samples texel (8, 8) = (128, 128, 0, 255), tinted.
    let c = px(32, 32);
    let near = |a: u8, b: u8| a.abs_diff(b) <= 1;
    check(
        near(c[0], 128) && near(c[1], 96) && c[2] == 0 && c[3] == 255,
        "textured, tinted center",
    )?;
    // Top-left inside the quad: pixel (9, 9) samples texel (0, 0).
    check(px(9, 9) == [0, 0, 0, 255], "texel (0, 0)")?;
    // SAFETY: the work finished (g.run waited); nothing uses these objects.
    unsafe { g.device.destroy_pipeline(pipeline, None) };
    if framebuffer != vk::Framebuffer::null() {
        // SAFETY: as above.
        unsafe { g.device.destroy_framebuffer(framebuffer, None) };
    }
    if pass != vk::RenderPass::null() {
        // SAFETY: as above.
        unsafe { g.device.destroy_render_pass(pass, None) };
    }
    destroy_image(g, target);
    destroy_scene(g, s);
    Ok(out)
}

/// Non-uniform indexing into a partially bound, variable-count, update-after-bind array
/// of storage buffers; the array is written after the command buffer was recorded.
pub fn descriptor_indexing(g: &Gpu) -> AppResult<Vec<u8>> {
    const INPUTS: u32 = 5;
    const ALLOCATED: u32 = 6;
    const MAX: u32 = 8;
    let n: u32 = 1000;
    let per = n.div_ceil(INPUTS);
    let out = g.buffer(u64::from(n) * 4)?;
    let mut inputs = Vec::new();
    for k in 0..INPUTS {
        let b = g.buffer(u64::from(per) * 4)?;
        b.write(&u32s(
            &(0..per).map(|j| j * 7 + k * 1000).collect::<Vec<_>>(),
        ));
        inputs.push(b);
    }
    let bindings = [
        vk::DescriptorSetLayoutBinding::default()
            .binding(0)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(1)
            .stage_flags(vk::ShaderStageFlags::COMPUTE),
        vk::DescriptorSetLayoutBinding::default()
            .binding(1)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(MAX)
            .stage_flags(vk::ShaderStageFlags::COMPUTE),
    ];
    let flags = [
        vk::DescriptorBindingFlags::empty(),
        vk::DescriptorBindingFlags::PARTIALLY_BOUND
            | vk::DescriptorBindingFlags::UPDATE_AFTER_BIND
            | vk::DescriptorBindingFlags::VARIABLE_DESCRIPTOR_COUNT,
    ];
    let mut binding_flags =
        vk::DescriptorSetLayoutBindingFlagsCreateInfo::default().binding_flags(&flags);
    let linfo = vk::DescriptorSetLayoutCreateInfo::default()
        .flags(vk::DescriptorSetLayoutCreateFlags::UPDATE_AFTER_BIND_POOL)
        .bindings(&bindings)
        .push_next(&mut binding_flags);
    // SAFETY: live device; descriptor indexing features enabled.
    let set_layout = unsafe { g.device.create_descriptor_set_layout(&linfo, None)? };
    let sizes = [vk::DescriptorPoolSize {
        ty: vk::DescriptorType::STORAGE_BUFFER,
        descriptor_count: 1 + MAX,
    }];
    let pinfo = vk::DescriptorPoolCreateInfo::default()
        .flags(vk::DescriptorPoolCreateFlags::UPDATE_AFTER_BIND)
        .max_sets(1)
        .pool_sizes(&sizes);
    // SAFETY: live device.
    let pool = unsafe { g.device.create_descriptor_pool(&pinfo, None)? };
    let layouts = [set_layout];
    let counts = [ALLOCATED];
    let mut variable =
        vk::DescriptorSetVariableDescriptorCountAllocateInfo::default().descriptor_counts(&counts);
    let ainfo = vk::DescriptorSetAllocateInfo::default()
        .descriptor_pool(pool)
        .set_layouts(&layouts)
        .push_next(&mut variable);
    // SAFETY: live pool and layout.
    let set = unsafe { g.device.allocate_descriptor_sets(&ainfo)? }[0];
    let out_info = [vk::DescriptorBufferInfo {
        buffer: out.buffer,
        offset: 0,
        range: vk::WHOLE_SIZE,
    }];
    let w0 = [vk::WriteDescriptorSet::default()
        .dst_set(set)
        .dst_binding(0)
        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
        .buffer_info(&out_info)];
    // SAFETY: live set and buffer.
    unsafe { g.device.update_descriptor_sets(&w0, &[]) };
    let ranges = [vk::PushConstantRange {
        stage_flags: vk::ShaderStageFlags::COMPUTE,
        offset: 0,
        size: 4,
    }];
    let plinfo = vk::PipelineLayoutCreateInfo::default()
        .set_layouts(&layouts)
        .push_constant_ranges(&ranges);
    // SAFETY: live device and layout.
    let layout = unsafe { g.device.create_pipeline_layout(&plinfo, None)? };
    let words = spirv_words(spv::DESC_INDEX)?;
    let minfo = vk::ShaderModuleCreateInfo::default().code(&words);
    // SAFETY: live device, valid SPIR-V.
    let module = unsafe { g.device.create_shader_module(&minfo, None)? };
    let stage = vk::PipelineShaderStageCreateInfo::default()
        .stage(vk::ShaderStageFlags::COMPUTE)
        .module(module)
        .name(c"main");
    let cinfo = [vk::ComputePipelineCreateInfo::default()
        .stage(stage)
        .layout(layout)];
    // SAFETY: live device, valid create info.
    let pipeline = unsafe {
        g.device
            .create_compute_pipelines(vk::PipelineCache::null(), &cinfo, None)
    }
    .map_err(|(_, e)| e)?[0];
    let cb = g.record(|cb| {
        // SAFETY: recording command buffer, live pipeline.
        unsafe {
            g.device
                .cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, pipeline)
        };
        // SAFETY: live set compatible with the layout.
        unsafe {
            g.device.cmd_bind_descriptor_sets(
                cb,
                vk::PipelineBindPoint::COMPUTE,
                layout,
                0,
                &[set],
                &[],
            );
        }
        // SAFETY: 4 bytes in the compute push range.
        unsafe {
            g.device.cmd_push_constants(
                cb,
                layout,
                vk::ShaderStageFlags::COMPUTE,
                0,
                &n.to_le_bytes(),
            )
        };
        // SAFETY: recording command buffer with a bound compute pipeline.
        unsafe { g.device.cmd_dispatch(cb, n.div_ceil(64), 1, 1) };
    })?;
    // Update after bind: the inputs are written only now, in reverse order, leaving
    // element 5 (allocated) and 6..8 (beyond the variable count) unwritten.
    let infos: Vec<[vk::DescriptorBufferInfo; 1]> = inputs
        .iter()
        .map(|b| {
            [vk::DescriptorBufferInfo {
                buffer: b.buffer,
                offset: 0,
                range: vk::WHOLE_SIZE,
            }]
        })
        .collect();
    let writes: Vec<vk::WriteDescriptorSet<'_>> = (0..INPUTS)
        .rev()
        .map(|k| {
            vk::WriteDescriptorSet::default()
                .dst_set(set)
                .dst_binding(1)
                .dst_array_element(k)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&infos[k as usize])
        })
        .collect();
    // SAFETY: live set and buffers; the binding is UPDATE_AFTER_BIND and the command
    // buffer is not pending yet.
    unsafe { g.device.update_descriptor_sets(&writes, &[]) };
    let fence = g.fence()?;
    g.submit(&[cb], fence)?;
    // SAFETY: live fence.
    unsafe { g.device.wait_for_fences(&[fence], true, u64::MAX)? };
    let bytes = out.read();
    let got = as_u32s(&bytes);
    let want: Vec<u32> = (0..n)
        .map(|i| ((i / INPUTS) * 7 + (i % INPUTS) * 1000) * (i % INPUTS + 1))
        .collect();
    check(got == want, "descriptor indexing")?;
    // SAFETY: the fence signalled; nothing uses these objects any more.
    unsafe { g.device.destroy_fence(fence, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_pipeline(pipeline, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_shader_module(module, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_pipeline_layout(layout, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_descriptor_pool(pool, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_descriptor_set_layout(set_layout, None) };
    g.destroy_buf(out);
    for b in inputs {
        g.destroy_buf(b);
    }
    Ok(bytes)
}

/// 4× MSAA color and depth with dynamic rendering: the depth image cleared with
/// vkCmdClearDepthStencilImage, the quad drawn with a depth test (dynamic compare op),
/// part of the target cleared with vkCmdClearAttachments, a second quad rejected by the
/// depth test through vkCmdDrawIndexedIndirectCount, the color resolved with
/// vkCmdResolveImage2, then blitted (linear, 64×64 → 32×16) into a 32×32 image first
/// cleared with vkCmdClearColorImage, and both read back (v1 and v2 copies).
fn msaa_depth_transfer(g: &Gpu) -> AppResult<Vec<u8>> {
    let s = scene(g)?;
    let samples = vk::SampleCountFlags::TYPE_4;
    let color = image_ex(
        g,
        FORMAT,
        (SIZE, SIZE),
        samples,
        vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::TRANSFER_SRC,
    )?;
    let depth = image_ex(
        g,
        DEPTH,
        (SIZE, SIZE),
        samples,
        vk::ImageUsageFlags::DEPTH_STENCIL_ATTACHMENT | vk::ImageUsageFlags::TRANSFER_DST,
    )?;
    let resolved = image(
        g,
        SIZE,
        SIZE,
        vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST,
    )?;
    let small = image(
        g,
        32,
        32,
        vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST,
    )?;
    let small_readback = g.buffer(32 * 32 * 4)?;
    let count = g.buffer_with_usage(16, vk::BufferUsageFlags::INDIRECT_BUFFER)?;
    count.write(&u32s(&[0, 0, 1, 0]));
    let pipeline = quad_pipeline_ex(g, &s, vk::RenderPass::null(), true, samples, DEPTH)?;
    let depth_range = range_of(DEPTH);
    let d = &g.device;
    let none = (vk::PipelineStageFlags2::NONE, vk::AccessFlags2::NONE);
    let copy_w = (
        vk::PipelineStageFlags2::ALL_TRANSFER,
        vk::AccessFlags2::TRANSFER_WRITE,
    );
    let copy_r = (
        vk::PipelineStageFlags2::ALL_TRANSFER,
        vk::AccessFlags2::TRANSFER_READ,
    );
    let color_w = (
        vk::PipelineStageFlags2::COLOR_ATTACHMENT_OUTPUT,
        vk::AccessFlags2::COLOR_ATTACHMENT_WRITE,
    );
    let depth_rw = (
        vk::PipelineStageFlags2::EARLY_FRAGMENT_TESTS
            | vk::PipelineStageFlags2::LATE_FRAGMENT_TESTS,
        vk::AccessFlags2::DEPTH_STENCIL_ATTACHMENT_READ
            | vk::AccessFlags2::DEPTH_STENCIL_ATTACHMENT_WRITE,
    );
    use vk::ImageLayout as L;
    g.run(|cb| {
        layout_barrier2(
            g,
            cb,
            color.image,
            (L::UNDEFINED, L::COLOR_ATTACHMENT_OPTIMAL),
            none,
            color_w,
        );
        layout_barrier2_range(
            g,
            cb,
            depth.image,
            depth_range,
            (L::UNDEFINED, L::TRANSFER_DST_OPTIMAL),
            none,
            copy_w,
        );
        let one = vk::ClearDepthStencilValue {
            depth: 1.0,
            stencil: 0,
        };
        // SAFETY: recording command buffer; the depth image is in TRANSFER_DST_OPTIMAL.
        unsafe {
            d.cmd_clear_depth_stencil_image(
                cb,
                depth.image,
                L::TRANSFER_DST_OPTIMAL,
                &one,
                &[depth_range],
            )
        };
        layout_barrier2_range(
            g,
            cb,
            depth.image,
            depth_range,
            (L::TRANSFER_DST_OPTIMAL, L::DEPTH_ATTACHMENT_OPTIMAL),
            copy_w,
            depth_rw,
        );
        let color_att = [vk::RenderingAttachmentInfo::default()
            .image_view(color.view)
            .image_layout(L::COLOR_ATTACHMENT_OPTIMAL)
            .load_op(vk::AttachmentLoadOp::CLEAR)
            .store_op(vk::AttachmentStoreOp::STORE)
            .clear_value(vk::ClearValue {
                color: vk::ClearColorValue { float32: CLEAR },
            })];
        let depth_att = vk::RenderingAttachmentInfo::default()
            .image_view(depth.view)
            .image_layout(L::DEPTH_ATTACHMENT_OPTIMAL)
            .load_op(vk::AttachmentLoadOp::LOAD)
            .store_op(vk::AttachmentStoreOp::STORE);
        let info = vk::RenderingInfo::default()
            .render_area(vk::Rect2D {
                offset: vk::Offset2D::default(),
                extent: vk::Extent2D {
                    width: SIZE,
                    height: SIZE,
                },
            })
            .layer_count(1)
            .color_attachments(&color_att)
            .depth_attachment(&depth_att);
        // SAFETY: recording command buffer; attachments in their layouts.
        unsafe { d.cmd_begin_rendering(cb, &info) };
        bind_quad(g, cb, &s, pipeline, Path::RenderPass);
        // SAFETY: as in `bind_quad` (depth attachment present).
        unsafe { d.cmd_set_depth_test_enable(cb, true) };
        // SAFETY: as above.
        unsafe { d.cmd_set_depth_write_enable(cb, true) };
        // SAFETY: as above.
        unsafe { d.cmd_set_depth_compare_op(cb, vk::CompareOp::LESS) };
        // SAFETY: as above; z = 0 passes LESS against 1.
        unsafe { d.cmd_draw_indexed(cb, 6, 1, 0, 0, 0) };
        let clear = [vk::ClearAttachment {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            color_attachment: 0,
            clear_value: vk::ClearValue {
                color: vk::ClearColorValue {
                    float32: [1.0, 0.0, 0.0, 1.0],
                },
            },
        }];
        let rect = [vk::ClearRect {
            rect: vk::Rect2D {
                offset: vk::Offset2D { x: 4, y: 4 },
                extent: vk::Extent2D {
                    width: 12,
                    height: 8,
                },
            },
            base_array_layer: 0,
            layer_count: 1,
        }];
        // SAFETY: inside the rendering; attachment 0 exists.
        unsafe { d.cmd_clear_attachments(cb, &clear, &rect) };
        // SAFETY: as above.
        unsafe { d.cmd_set_depth_compare_op(cb, vk::CompareOp::GREATER) };
        let green = f32s(&[0.0, 1.0, 0.0, 1.0]);
        // SAFETY: as above.
        unsafe { d.cmd_push_constants(cb, s.layout, vk::ShaderStageFlags::FRAGMENT, 0, &green) };
        // SAFETY: as above; the count (1) at offset 8 of `count`, one 20-byte record.
        unsafe {
            d.cmd_draw_indexed_indirect_count(cb, s.indirect.buffer, 16, count.buffer, 8, 1, 20)
        };
        // SAFETY: inside the rendering begun above.
        unsafe { d.cmd_end_rendering(cb) };
        layout_barrier2(
            g,
            cb,
            color.image,
            (L::COLOR_ATTACHMENT_OPTIMAL, L::TRANSFER_SRC_OPTIMAL),
            color_w,
            copy_r,
        );
        layout_barrier2(
            g,
            cb,
            resolved.image,
            (L::UNDEFINED, L::TRANSFER_DST_OPTIMAL),
            none,
            copy_w,
        );
        let whole = vk::Extent3D {
            width: SIZE,
            height: SIZE,
            depth: 1,
        };
        let regions = [vk::ImageResolve2::default()
            .src_subresource(color_layers())
            .dst_subresource(color_layers())
            .extent(whole)];
        let rinfo = vk::ResolveImageInfo2::default()
            .src_image(color.image)
            .src_image_layout(L::TRANSFER_SRC_OPTIMAL)
            .dst_image(resolved.image)
            .dst_image_layout(L::TRANSFER_DST_OPTIMAL)
            .regions(&regions);
        // SAFETY: both images in their transfer layouts.
        unsafe { d.cmd_resolve_image2(cb, &rinfo) };
        layout_barrier2(
            g,
            cb,
            resolved.image,
            (L::TRANSFER_DST_OPTIMAL, L::TRANSFER_SRC_OPTIMAL),
            copy_w,
            copy_r,
        );
        layout_barrier2(
            g,
            cb,
            small.image,
            (L::UNDEFINED, L::TRANSFER_DST_OPTIMAL),
            none,
            copy_w,
        );
        let gray = vk::ClearColorValue {
            float32: [0.4, 0.4, 0.4, 1.0],
        };
        // SAFETY: the small image is in TRANSFER_DST_OPTIMAL.
        unsafe {
            d.cmd_clear_color_image(
                cb,
                small.image,
                L::TRANSFER_DST_OPTIMAL,
                &gray,
                &[color_range()],
            )
        };
        layout_barrier2(
            g,
            cb,
            small.image,
            (L::TRANSFER_DST_OPTIMAL, L::TRANSFER_DST_OPTIMAL),
            copy_w,
            copy_w,
        );
        let corner = |x, y| vk::Offset3D { x, y, z: 1 };
        let origin = vk::Offset3D::default();
        let blit = [vk::ImageBlit {
            src_subresource: color_layers(),
            src_offsets: [origin, corner(64, 64)],
            dst_subresource: color_layers(),
            dst_offsets: [origin, corner(32, 16)],
        }];
        // SAFETY: source in TRANSFER_SRC, destination in TRANSFER_DST; regions inside.
        unsafe {
            d.cmd_blit_image(
                cb,
                resolved.image,
                L::TRANSFER_SRC_OPTIMAL,
                small.image,
                L::TRANSFER_DST_OPTIMAL,
                &blit,
                vk::Filter::LINEAR,
            );
        }
        layout_barrier2(
            g,
            cb,
            small.image,
            (L::TRANSFER_DST_OPTIMAL, L::TRANSFER_SRC_OPTIMAL),
            copy_w,
            copy_r,
        );
        let big = [vk::BufferImageCopy2::default()
            .image_subresource(color_layers())
            .image_extent(whole)];
        let cinfo = vk::CopyImageToBufferInfo2::default()
            .src_image(resolved.image)
            .src_image_layout(L::TRANSFER_SRC_OPTIMAL)
            .dst_buffer(s.readback.buffer)
            .regions(&big);
        // SAFETY: the resolved image is in TRANSFER_SRC_OPTIMAL.
        unsafe { d.cmd_copy_image_to_buffer2(cb, &cinfo) };
        let little = [vk::BufferImageCopy {
            buffer_offset: 0,
            buffer_row_length: 0,
            buffer_image_height: 0,
            image_subresource: color_layers(),
            image_offset: origin,
            image_extent: vk::Extent3D {
                width: 32,
                height: 32,
                depth: 1,
            },
        }];
        // SAFETY: the small image is in TRANSFER_SRC_OPTIMAL.
        unsafe {
            d.cmd_copy_image_to_buffer(
                cb,
                small.image,
                L::TRANSFER_SRC_OPTIMAL,
                small_readback.buffer,
                &little,
            )
        };
    })?;
    let mut out = s.readback.read();
    let px = |b: &[u8], w: u32, x: u32, y: u32| -> [u8; 4] {
        let i = ((y * w + x) * 4) as usize;
        [b[i], b[i + 1], b[i + 2], b[i + 3]]
    };
    let near = |a: u8, b: u8| a.abs_diff(b) <= 1;
    check(
        px(&out, SIZE, 0, 0) == [51, 102, 153, 255],
        "resolved clear color",
    )?;
    check(
        px(&out, SIZE, 6, 6) == [255, 0, 0, 255],
        "vkCmdClearAttachments rect",
    )?;
    let c = px(&out, SIZE, 32, 32);
    check(
        near(c[0], 128) && near(c[1], 96) && c[2] == 0 && c[3] == 255,
        "depth-tested quad kept, rejected quad absent",
    )?;
    let small_px = small_readback.read();
    check(
        px(&small_px, 32, 31, 31) == [102, 102, 102, 255],
        "clear color image",
    )?;
    check(
        px(&small_px, 32, 0, 0) == [51, 102, 153, 255],
        "blit corner",
    )?;
    out.extend_from_slice(&small_px);
    // SAFETY: the work finished (g.run waited); nothing uses these objects.
    unsafe { d.destroy_pipeline(pipeline, None) };
    for i in [color, depth, resolved, small] {
        destroy_image(g, i);
    }
    g.destroy_buf(small_readback);
    g.destroy_buf(count);
    destroy_scene(g, s);
    Ok(out)
}

/// The quad through extension state: push descriptors (`VK_KHR_push_descriptor`),
/// vertex input set at record time (`VK_EXT_vertex_input_dynamic_state`), viewport and
/// scissor with count, polygon mode, depth clamp, rasterization samples, sample mask,
/// alpha to coverage, color blend enable/equation and write mask
/// (`VK_EXT_extended_dynamic_state3`), constant-color blending over the clear color
/// with blue masked off, and the two triangles drawn with vkCmdDrawMultiIndexedEXT.
fn ext_dynamic_state(g: &Gpu) -> AppResult<Vec<u8>> {
    if !g.ext_dynamic {
        return Err("the driver lacks a dynamic-state extension this case needs".into());
    }
    let s = scene(g)?;
    let d = &g.device;
    let eds3 = ash::ext::extended_dynamic_state3::Device::new(&g.instance, d);
    let vertex_input = ash::ext::vertex_input_dynamic_state::Device::new(&g.instance, d);
    let push = ash::khr::push_descriptor::Device::new(&g.instance, d);
    let multi = ash::ext::multi_draw::Device::new(&g.instance, d);
    let bindings = [vk::DescriptorSetLayoutBinding::default()
        .binding(0)
        .descriptor_type(vk::DescriptorType::COMBINED_IMAGE_SAMPLER)
        .descriptor_count(1)
        .stage_flags(vk::ShaderStageFlags::FRAGMENT)];
    let linfo = vk::DescriptorSetLayoutCreateInfo::default()
        .flags(vk::DescriptorSetLayoutCreateFlags::PUSH_DESCRIPTOR_KHR)
        .bindings(&bindings);
    // SAFETY: live device, push descriptors enabled.
    let set_layout = unsafe { d.create_descriptor_set_layout(&linfo, None)? };
    let layouts = [set_layout];
    let ranges = [vk::PushConstantRange {
        stage_flags: vk::ShaderStageFlags::FRAGMENT,
        offset: 0,
        size: 16,
    }];
    let plinfo = vk::PipelineLayoutCreateInfo::default()
        .set_layouts(&layouts)
        .push_constant_ranges(&ranges);
    // SAFETY: live device and set layout.
    let layout = unsafe { d.create_pipeline_layout(&plinfo, None)? };
    let stages = [
        vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::VERTEX)
            .module(s.vert)
            .name(c"main"),
        vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::FRAGMENT)
            .module(s.frag)
            .name(c"main"),
    ];
    let assembly = vk::PipelineInputAssemblyStateCreateInfo::default()
        .topology(vk::PrimitiveTopology::TRIANGLE_LIST);
    let viewport = vk::PipelineViewportStateCreateInfo::default();
    let raster = vk::PipelineRasterizationStateCreateInfo::default().line_width(1.0);
    let multisample = vk::PipelineMultisampleStateCreateInfo::default();
    let attachments = [vk::PipelineColorBlendAttachmentState::default()];
    let blend = vk::PipelineColorBlendStateCreateInfo::default().attachments(&attachments);
    let dynamic_states = [
        vk::DynamicState::VIEWPORT_WITH_COUNT,
        vk::DynamicState::SCISSOR_WITH_COUNT,
        vk::DynamicState::CULL_MODE,
        vk::DynamicState::FRONT_FACE,
        vk::DynamicState::PRIMITIVE_TOPOLOGY,
        vk::DynamicState::BLEND_CONSTANTS,
        vk::DynamicState::VERTEX_INPUT_EXT,
        vk::DynamicState::POLYGON_MODE_EXT,
        vk::DynamicState::DEPTH_CLAMP_ENABLE_EXT,
        vk::DynamicState::RASTERIZATION_SAMPLES_EXT,
        vk::DynamicState::SAMPLE_MASK_EXT,
        vk::DynamicState::ALPHA_TO_COVERAGE_ENABLE_EXT,
        vk::DynamicState::COLOR_BLEND_ENABLE_EXT,
        vk::DynamicState::COLOR_BLEND_EQUATION_EXT,
        vk::DynamicState::COLOR_WRITE_MASK_EXT,
    ];
    let dynamic = vk::PipelineDynamicStateCreateInfo::default().dynamic_states(&dynamic_states);
    let formats = [FORMAT];
    let mut rendering =
        vk::PipelineRenderingCreateInfo::default().color_attachment_formats(&formats);
    let info = vk::GraphicsPipelineCreateInfo::default()
        .stages(&stages)
        .input_assembly_state(&assembly)
        .viewport_state(&viewport)
        .rasterization_state(&raster)
        .multisample_state(&multisample)
        .color_blend_state(&blend)
        .dynamic_state(&dynamic)
        .layout(layout)
        .push_next(&mut rendering);
    // SAFETY: live device; every referenced object is live; the extensions are enabled.
    let pipeline = unsafe { d.create_graphics_pipelines(vk::PipelineCache::null(), &[info], None) }
        .map_err(|(_, e)| e)?[0];
    let target = image(
        g,
        SIZE,
        SIZE,
        vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::TRANSFER_SRC,
    )?;
    let extent = vk::Extent2D {
        width: SIZE,
        height: SIZE,
    };
    let area = vk::Rect2D {
        offset: vk::Offset2D::default(),
        extent,
    };
    use vk::ImageLayout as L;
    g.run(|cb| {
        layout_barrier2(
            g,
            cb,
            target.image,
            (L::UNDEFINED, L::COLOR_ATTACHMENT_OPTIMAL),
            (vk::PipelineStageFlags2::NONE, vk::AccessFlags2::NONE),
            (
                vk::PipelineStageFlags2::COLOR_ATTACHMENT_OUTPUT,
                vk::AccessFlags2::COLOR_ATTACHMENT_WRITE,
            ),
        );
        let color = [vk::RenderingAttachmentInfo::default()
            .image_view(target.view)
            .image_layout(L::COLOR_ATTACHMENT_OPTIMAL)
            .load_op(vk::AttachmentLoadOp::CLEAR)
            .store_op(vk::AttachmentStoreOp::STORE)
            .clear_value(vk::ClearValue {
                color: vk::ClearColorValue { float32: CLEAR },
            })];
        let rinfo = vk::RenderingInfo::default()
            .render_area(area)
            .layer_count(1)
            .color_attachments(&color);
        // Every call in this closure: recording command buffer, live objects created
        // above, the extensions enabled, inside the rendering begun here.
        // SAFETY: as just said.
        unsafe { d.cmd_begin_rendering(cb, &rinfo) };
        // SAFETY: as above.
        unsafe { d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::GRAPHICS, pipeline) };
        let vp = [vk::Viewport {
            x: 0.0,
            y: 0.0,
            width: SIZE as f32,
            height: SIZE as f32,
            min_depth: 0.0,
            max_depth: 1.0,
        }];
        // SAFETY: as above.
        unsafe { d.cmd_set_viewport_with_count(cb, &vp) };
        // SAFETY: as above.
        unsafe { d.cmd_set_scissor_with_count(cb, &[area]) };
        // SAFETY: as above.
        unsafe { d.cmd_set_cull_mode(cb, vk::CullModeFlags::NONE) };
        // SAFETY: as above.
        unsafe { d.cmd_set_front_face(cb, vk::FrontFace::COUNTER_CLOCKWISE) };
        // SAFETY: as above.
        unsafe { d.cmd_set_primitive_topology(cb, vk::PrimitiveTopology::TRIANGLE_LIST) };
        // SAFETY: as above.
        unsafe { d.cmd_set_blend_constants(cb, &[0.5, 0.5, 0.5, 0.5]) };
        let vb = [vk::VertexInputBindingDescription2EXT::default()
            .binding(0)
            .stride(16)
            .input_rate(vk::VertexInputRate::VERTEX)
            .divisor(1)];
        let va = [
            vk::VertexInputAttributeDescription2EXT::default()
                .location(0)
                .binding(0)
                .format(vk::Format::R32G32_SFLOAT)
                .offset(0),
            vk::VertexInputAttributeDescription2EXT::default()
                .location(1)
                .binding(0)
                .format(vk::Format::R32G32_SFLOAT)
                .offset(8),
        ];
        // SAFETY: as above.
        unsafe { vertex_input.cmd_set_vertex_input(cb, &vb, &va) };
        // SAFETY: as above.
        unsafe { eds3.cmd_set_polygon_mode(cb, vk::PolygonMode::FILL) };
        // SAFETY: as above.
        unsafe { eds3.cmd_set_depth_clamp_enable(cb, false) };
        // SAFETY: as above.
        unsafe { eds3.cmd_set_rasterization_samples(cb, vk::SampleCountFlags::TYPE_1) };
        // SAFETY: as above.
        unsafe { eds3.cmd_set_sample_mask(cb, vk::SampleCountFlags::TYPE_1, &[u32::MAX]) };
        // SAFETY: as above.
        unsafe { eds3.cmd_set_alpha_to_coverage_enable(cb, false) };
        // SAFETY: as above.
        unsafe { eds3.cmd_set_color_blend_enable(cb, 0, &[vk::TRUE]) };
        let eq = [vk::ColorBlendEquationEXT {
            src_color_blend_factor: vk::BlendFactor::CONSTANT_COLOR,
            dst_color_blend_factor: vk::BlendFactor::ONE_MINUS_CONSTANT_COLOR,
            color_blend_op: vk::BlendOp::ADD,
            src_alpha_blend_factor: vk::BlendFactor::ONE,
            dst_alpha_blend_factor: vk::BlendFactor::ZERO,
            alpha_blend_op: vk::BlendOp::ADD,
        }];
        // SAFETY: as above.
        unsafe { eds3.cmd_set_color_blend_equation(cb, 0, &eq) };
        let mask =
            vk::ColorComponentFlags::R | vk::ColorComponentFlags::G | vk::ColorComponentFlags::A;
        // SAFETY: as above.
        unsafe { eds3.cmd_set_color_write_mask(cb, 0, &[mask]) };
        // SAFETY: as above.
        unsafe { d.cmd_bind_vertex_buffers(cb, 0, &[s.vertices.buffer], &[0]) };
        // SAFETY: as above.
        unsafe { d.cmd_bind_index_buffer(cb, s.indices.buffer, 0, vk::IndexType::UINT16) };
        let iinfo = [vk::DescriptorImageInfo {
            sampler: s.sampler,
            image_view: s.texture.view,
            image_layout: L::SHADER_READ_ONLY_OPTIMAL,
        }];
        let write = [vk::WriteDescriptorSet::default()
            .dst_binding(0)
            .descriptor_type(vk::DescriptorType::COMBINED_IMAGE_SAMPLER)
            .image_info(&iinfo)];
        // SAFETY: as above.
        unsafe {
            push.cmd_push_descriptor_set(cb, vk::PipelineBindPoint::GRAPHICS, layout, 0, &write)
        };
        // SAFETY: as above.
        unsafe {
            d.cmd_push_constants(cb, layout, vk::ShaderStageFlags::FRAGMENT, 0, &f32s(&TINT))
        };
        let draws = [
            vk::MultiDrawIndexedInfoEXT {
                first_index: 0,
                index_count: 3,
                vertex_offset: 0,
            },
            vk::MultiDrawIndexedInfoEXT {
                first_index: 3,
                index_count: 3,
                vertex_offset: 0,
            },
        ];
        // SAFETY: as above; two packed 12-byte records.
        unsafe {
            (multi.fp().cmd_draw_multi_indexed_ext)(
                cb,
                2,
                draws.as_ptr(),
                1,
                0,
                12,
                std::ptr::null(),
            )
        };
        // SAFETY: as above.
        unsafe { d.cmd_end_rendering(cb) };
        layout_barrier2(
            g,
            cb,
            target.image,
            (L::COLOR_ATTACHMENT_OPTIMAL, L::TRANSFER_SRC_OPTIMAL),
            (
                vk::PipelineStageFlags2::COLOR_ATTACHMENT_OUTPUT,
                vk::AccessFlags2::COLOR_ATTACHMENT_WRITE,
            ),
            (
                vk::PipelineStageFlags2::COPY,
                vk::AccessFlags2::TRANSFER_READ,
            ),
        );
        let region = [vk::BufferImageCopy {
            buffer_offset: 0,
            buffer_row_length: 0,
            buffer_image_height: 0,
            image_subresource: color_layers(),
            image_offset: vk::Offset3D::default(),
            image_extent: vk::Extent3D {
                width: SIZE,
                height: SIZE,
                depth: 1,
            },
        }];
        // SAFETY: the image is in TRANSFER_SRC_OPTIMAL.
        unsafe {
            d.cmd_copy_image_to_buffer(
                cb,
                target.image,
                L::TRANSFER_SRC_OPTIMAL,
                s.readback.buffer,
                &region,
            )
        };
    })?;
    let out = s.readback.read();
    let px = |x: u32, y: u32| -> [u8; 4] {
        let i = ((y * SIZE + x) * 4) as usize;
        [out[i], out[i + 1], out[i + 2], out[i + 3]]
    };
    check(px(0, 0) == [51, 102, 153, 255], "clear color at the corner")?;
    // (128, 96, ·) blended half and half over (51, 102, 153); blue masked off.
    let c = px(32, 32);
    let near = |a: u8, b: u8| a.abs_diff(b) <= 1;
    check(
        near(c[0], 90) && near(c[1], 99) && c[2] == 153 && c[3] == 255,
        "blended center with blue masked",
    )?;
    // SAFETY: the work finished (g.run waited); nothing uses these objects.
    unsafe { d.destroy_pipeline(pipeline, None) };
    // SAFETY: as above.
    unsafe { d.destroy_pipeline_layout(layout, None) };
    // SAFETY: as above.
    unsafe { d.destroy_descriptor_set_layout(set_layout, None) };
    destroy_image(g, target);
    destroy_scene(g, s);
    Ok(out)
}

/// Hostile cases: Vulkan misuse that Mesa's Venus driver encodes without checking and
/// the renderer must reject (failing only this client's context). Never run natively:
/// the host driver would read or write out of bounds.
pub const HOSTILE_CASES: &[&str] = &[
    "hostile_indirect",
    "hostile_copy",
    "hostile_descriptor",
    "hostile_render_area",
];

/// vkCmdDrawIndirect reading past the end of a 64-byte buffer.
fn hostile_indirect(g: &Gpu) -> AppResult<Vec<u8>> {
    let buf = g.buffer_with_usage(64, vk::BufferUsageFlags::INDIRECT_BUFFER)?;
    g.run(|cb| {
        // SAFETY: deliberately invalid (offset 4096 of a 64-byte buffer); only ever
        // recorded through Venus, whose renderer must reject it.
        unsafe { g.device.cmd_draw_indirect(cb, buf.buffer, 4096, 1, 16) };
    })?;
    Err("the renderer accepted an out-of-bounds indirect draw".into())
}

/// vkCmdCopyBufferToImage writing 64 rows into a 16×16 image from a 1 KiB buffer.
fn hostile_copy(g: &Gpu) -> AppResult<Vec<u8>> {
    let buf = g.buffer(1024)?;
    let img = image(g, TEX, TEX, vk::ImageUsageFlags::TRANSFER_DST)?;
    g.run(|cb| {
        layout_barrier(
            g,
            cb,
            img.image,
            (
                vk::ImageLayout::UNDEFINED,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            ),
            (
                vk::PipelineStageFlags::TOP_OF_PIPE,
                vk::AccessFlags::empty(),
            ),
            (
                vk::PipelineStageFlags::TRANSFER,
                vk::AccessFlags::TRANSFER_WRITE,
            ),
        );
        let region = [vk::BufferImageCopy {
            buffer_offset: 0,
            buffer_row_length: 0,
            buffer_image_height: 0,
            image_subresource: color_layers(),
            image_offset: vk::Offset3D::default(),
            image_extent: vk::Extent3D {
                width: TEX,
                height: 64,
                depth: 1,
            },
        }];
        // SAFETY: deliberately invalid (region outside both objects); only ever
        // recorded through Venus, whose renderer must reject it.
        unsafe {
            g.device.cmd_copy_buffer_to_image(
                cb,
                buf.buffer,
                img.image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &region,
            );
        }
    })?;
    Err("the renderer accepted an out-of-bounds buffer-to-image copy".into())
}

/// vkUpdateDescriptorSets writing array element 4 of a one-descriptor binding.
fn hostile_descriptor(g: &Gpu) -> AppResult<Vec<u8>> {
    let buf = g.buffer(64)?;
    let p = g.pipeline(
        super::spv::ADD_CONST,
        1,
        12,
        None,
        vk::PipelineCache::null(),
    )?;
    let set = g.set(&p, &[&buf])?;
    let info = [vk::DescriptorBufferInfo {
        buffer: buf.buffer,
        offset: 0,
        range: vk::WHOLE_SIZE,
    }];
    let write = [vk::WriteDescriptorSet::default()
        .dst_set(set)
        .dst_binding(0)
        .dst_array_element(4)
        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
        .buffer_info(&info)];
    // SAFETY: deliberately invalid (element 4 of a one-element binding); only ever
    // sent through Venus, whose renderer must reject it.
    unsafe { g.device.update_descriptor_sets(&write, &[]) };
    // The update has no reply; a round trip makes the renderer see it.
    // SAFETY: live device.
    unsafe { g.device.device_wait_idle()? };
    g.run(|_| {})?;
    Err("the renderer accepted an out-of-range descriptor write".into())
}

/// Dynamic rendering with a 256×256 render area on a 64×64 attachment (the driver would
/// clear and draw past the image).
fn hostile_render_area(g: &Gpu) -> AppResult<Vec<u8>> {
    let target = image(g, SIZE, SIZE, vk::ImageUsageFlags::COLOR_ATTACHMENT)?;
    g.run(|cb| {
        let color = [vk::RenderingAttachmentInfo::default()
            .image_view(target.view)
            .image_layout(vk::ImageLayout::COLOR_ATTACHMENT_OPTIMAL)
            .load_op(vk::AttachmentLoadOp::CLEAR)
            .store_op(vk::AttachmentStoreOp::STORE)];
        let info = vk::RenderingInfo::default()
            .render_area(vk::Rect2D {
                offset: vk::Offset2D::default(),
                extent: vk::Extent2D {
                    width: 256,
                    height: 256,
                },
            })
            .layer_count(1)
            .color_attachments(&color);
        // SAFETY: deliberately invalid (render area beyond the attachment); only ever
        // recorded through Venus, whose renderer must reject it.
        unsafe { g.device.cmd_begin_rendering(cb, &info) };
        // SAFETY: ends the rendering begun above.
        unsafe { g.device.cmd_end_rendering(cb) };
    })?;
    Err("the renderer accepted a render area larger than its attachment".into())
}
