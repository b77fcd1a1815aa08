//! Memory-safety programs for the `memory-app` binary: copies with formats past
//! VkFormat 184 (buffer → image → buffer round trips, compared with native), and
//! hostile clients that bind a buffer or image outside its allocation and then write
//! through it. The
//! hostile cases are invalid Vulkan: they are run only through Venus, where the daemon
//! must refuse the bind before the driver (natively they would corrupt memory).
//!
//! This is test code driving a real driver: each `unsafe` block is one Vulkan call whose
//! handles were created just above by this harness and are used as the spec requires
//! (the hostile cases break it on purpose where they say so).

use std::ffi::c_char;

use ash::vk;

use super::AppResult;

/// The valid cases, compared with native.
pub const CASES: &[&str] = &["formats"];

/// The hostile cases (Venus only).
pub const ATTACKS: &[&str] = &["oversized_bind", "offset_past_end", "oversized_image_bind"];

/// The formats the round trip tries: every one the renderer's old hand-written table
/// could not size.
const FORMATS: &[(vk::Format, u64, &str)] = &[
    (vk::Format::A8_UNORM_KHR, 1, "A8_UNORM_KHR"),
    (
        vk::Format::A1B5G5R5_UNORM_PACK16_KHR,
        2,
        "A1B5G5R5_UNORM_PACK16_KHR",
    ),
    (
        vk::Format::A4R4G4B4_UNORM_PACK16,
        2,
        "A4R4G4B4_UNORM_PACK16",
    ),
    (
        vk::Format::A4B4G4R4_UNORM_PACK16,
        2,
        "A4B4G4R4_UNORM_PACK16",
    ),
];

/// Image side, in texels.
const SIDE: u32 = 16;

/// A device with `VK_KHR_maintenance5` when the driver has it (A8 and A1B5G5R5 need it).
pub struct Dev {
    _entry: ash::Entry,
    instance: ash::Instance,
    pdev: vk::PhysicalDevice,
    /// The device.
    pub device: ash::Device,
    queue: vk::Queue,
    pool: vk::CommandPool,
    memory: vk::PhysicalDeviceMemoryProperties,
    /// `VK_KHR_maintenance5` is enabled.
    pub maintenance5: bool,
    /// `deviceName`.
    pub name: String,
}

impl std::fmt::Debug for Dev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dev")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A buffer with its own host-visible memory, mapped.
struct HostBuf {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut u8,
    size: usize,
}

impl Dev {
    /// Instance (API 1.3), first physical device, one queue of the first family with
    /// transfer support (every graphics or compute family has it).
    pub fn new() -> AppResult<Self> {
        // SAFETY: loads the system Vulkan loader; the Entry keeps it loaded.
        let entry = unsafe { ash::Entry::load()? };
        let app = vk::ApplicationInfo::default()
            .application_name(c"vgpu-memory-app")
            .api_version(vk::API_VERSION_1_3);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: a valid create info.
        let instance = unsafe { entry.create_instance(&info, None)? };
        // SAFETY: live instance.
        let pdev = *unsafe { instance.enumerate_physical_devices()? }
            .first()
            .ok_or("no physical device")?;
        // SAFETY: live physical device.
        let props = unsafe { instance.get_physical_device_properties(pdev) };
        // SAFETY: live physical device.
        let families = unsafe { instance.get_physical_device_queue_family_properties(pdev) };
        let qfi = families
            .iter()
            .position(|f| {
                f.queue_flags
                    .intersects(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE)
            })
            .ok_or("no queue family")?;
        let qfi = u32::try_from(qfi)?;
        // SAFETY: live physical device.
        let have = unsafe { instance.enumerate_device_extension_properties(pdev)? };
        let maintenance5 = have.iter().any(|e| {
            e.extension_name_as_c_str()
                .is_ok_and(|n| n == vk::KHR_MAINTENANCE5_NAME)
        });
        let names: Vec<*const c_char> = if maintenance5 {
            vec![vk::KHR_MAINTENANCE5_NAME.as_ptr()]
        } else {
            Vec::new()
        };
        let prio = [1.0f32];
        let qinfo = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(qfi)
            .queue_priorities(&prio)];
        let mut m5 = vk::PhysicalDeviceMaintenance5FeaturesKHR::default().maintenance5(true);
        let mut dinfo = vk::DeviceCreateInfo::default()
            .queue_create_infos(&qinfo)
            .enabled_extension_names(&names);
        if maintenance5 {
            dinfo = dinfo.push_next(&mut m5);
        }
        // SAFETY: live physical device, valid create info.
        let device = unsafe { instance.create_device(pdev, &dinfo, None)? };
        // SAFETY: the queue was requested at creation.
        let queue = unsafe { device.get_device_queue(qfi, 0) };
        let pinfo = vk::CommandPoolCreateInfo::default().queue_family_index(qfi);
        // SAFETY: live device.
        let pool = unsafe { device.create_command_pool(&pinfo, None)? };
        // SAFETY: live physical device.
        let memory = unsafe { instance.get_physical_device_memory_properties(pdev) };
        let name = props
            .device_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            _entry: entry,
            instance,
            pdev,
            device,
            queue,
            pool,
            memory,
            maintenance5,
            name,
        })
    }

    fn memory_type(&self, bits: u32, flags: vk::MemoryPropertyFlags) -> AppResult<u32> {
        let i = self
            .memory
            .memory_types_as_slice()
            .iter()
            .enumerate()
            .position(|(i, t)| bits & (1 << i) != 0 && t.property_flags.contains(flags))
            .ok_or("no suitable memory type")?;
        Ok(u32::try_from(i)?)
    }

    fn host_visible() -> vk::MemoryPropertyFlags {
        vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT
    }

    /// A transfer buffer of `size` bytes in its own host-visible memory, mapped.
    fn host_buffer(&self, size: usize) -> AppResult<HostBuf> {
        let info = vk::BufferCreateInfo::default()
            .size(u64::try_from(size)?)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST);
        // SAFETY: live device, valid create info.
        let buffer = unsafe { self.device.create_buffer(&info, None)? };
        // SAFETY: live buffer.
        let req = unsafe { self.device.get_buffer_memory_requirements(buffer) };
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(self.memory_type(req.memory_type_bits, Self::host_visible())?);
        // SAFETY: live device, valid allocate info.
        let memory = unsafe { self.device.allocate_memory(&alloc, None)? };
        // SAFETY: fresh buffer and memory of a compatible type, large enough.
        unsafe { self.device.bind_buffer_memory(buffer, memory, 0)? };
        // SAFETY: host-visible memory, mapped once for its lifetime.
        let ptr = unsafe {
            self.device
                .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())?
        };
        Ok(HostBuf {
            buffer,
            memory,
            ptr: ptr.cast(),
            size,
        })
    }

    fn destroy_host_buffer(&self, b: HostBuf) {
        // SAFETY: no pending work uses it (callers wait first).
        unsafe { self.device.destroy_buffer(b.buffer, None) };
        // SAFETY: as above; freeing also unmaps.
        unsafe { self.device.free_memory(b.memory, None) };
    }

    /// Records with `f`, submits with a fence and waits up to 20 s for it.
    fn run(&self, f: impl FnOnce(vk::CommandBuffer)) -> AppResult<()> {
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(self.pool)
            .command_buffer_count(1);
        // SAFETY: live pool.
        let cb = unsafe { self.device.allocate_command_buffers(&info)? }[0];
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: fresh command buffer.
        unsafe { self.device.begin_command_buffer(cb, &begin)? };
        f(cb);
        // SAFETY: recording command buffer.
        unsafe { self.device.end_command_buffer(cb)? };
        // SAFETY: live device.
        let fence = unsafe {
            self.device
                .create_fence(&vk::FenceCreateInfo::default(), None)?
        };
        let cbs = [cb];
        let submit = [vk::SubmitInfo::default().command_buffers(&cbs)];
        // SAFETY: executable command buffer, unsignalled fence.
        unsafe { self.device.queue_submit(self.queue, &submit, fence)? };
        // SAFETY: live fence.
        unsafe {
            self.device
                .wait_for_fences(&[fence], true, 20_000_000_000)?
        };
        // SAFETY: the fence is signalled; nothing else uses it or the command buffer.
        unsafe { self.device.destroy_fence(fence, None) };
        // SAFETY: the command buffer finished executing.
        unsafe { self.device.free_command_buffers(self.pool, &cbs) };
        Ok(())
    }

    /// Whether `format` can be copied to and from an optimal-tiling image.
    fn transfer_supported(&self, format: vk::Format) -> bool {
        let needs_m5 = matches!(
            format,
            vk::Format::A8_UNORM_KHR | vk::Format::A1B5G5R5_UNORM_PACK16_KHR
        );
        if needs_m5 && !self.maintenance5 {
            return false;
        }
        // SAFETY: live physical device.
        let props = unsafe {
            self.instance
                .get_physical_device_format_properties(self.pdev, format)
        };
        props
            .optimal_tiling_features
            .contains(vk::FormatFeatureFlags::TRANSFER_SRC | vk::FormatFeatureFlags::TRANSFER_DST)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: waiting has no precondition beyond a live device.
        let _ = unsafe { self.device.device_wait_idle() };
        // SAFETY: idle device; the pool is no longer used.
        unsafe { self.device.destroy_command_pool(self.pool, None) };
        // SAFETY: every child was destroyed by its case.
        unsafe { self.device.destroy_device(None) };
        // SAFETY: the device is gone.
        unsafe { self.instance.destroy_instance(None) };
    }
}

impl HostBuf {
    fn write(&self, bytes: &[u8]) {
        let n = bytes.len().min(self.size);
        // SAFETY: the mapping is `size` bytes and live while `self` is.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, n) };
    }

    fn read(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.size];
        // SAFETY: as for `write`.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, out.as_mut_ptr(), out.len()) };
        out
    }
}

/// Runs a case by name (valid or hostile) and returns its output bytes.
pub fn run_case(d: &Dev, name: &str) -> AppResult<Vec<u8>> {
    match name {
        "formats" => formats(d),
        "oversized_bind" => hostile_fill(d, 64 << 10, 0),
        "offset_past_end" => hostile_fill(d, 4 << 10, 64 << 10),
        "oversized_image_bind" => hostile_image(d),
        _ => Err(format!("unknown case {name}").into()),
    }
}

/// The formats [`formats`] round-tripped (those the driver supports for transfers).
pub fn supported_formats(d: &Dev) -> Vec<&'static str> {
    FORMATS
        .iter()
        .filter(|(f, _, _)| d.transfer_supported(*f))
        .map(|(_, _, n)| *n)
        .collect()
}

/// For every format of [`FORMATS`] the driver supports: a pattern uploaded to a 16×16
/// image with vkCmdCopyBufferToImage (buffer rows 20 texels long, at a 256-byte
/// offset) and read back with vkCmdCopyImageToBuffer must come back unchanged. Returns
/// (format, read-back bytes) for each, so native and Venus runs can be compared.
pub fn formats(d: &Dev) -> AppResult<Vec<u8>> {
    let mut out = Vec::new();
    for &(format, texel, name) in FORMATS {
        if !d.transfer_supported(format) {
            continue;
        }
        let back = round_trip(d, format, texel)?;
        out.extend_from_slice(&format.as_raw().to_le_bytes());
        out.extend_from_slice(&back);
        let _ = name;
    }
    Ok(out)
}

fn round_trip(d: &Dev, format: vk::Format, texel: u64) -> AppResult<Vec<u8>> {
    const OFFSET: u64 = 256;
    const ROW: u32 = 20;
    let texel_us = usize::try_from(texel)?;
    let staged = usize::try_from(OFFSET)? + (ROW * SIDE) as usize * texel_us;
    let pattern: Vec<u8> = (0..staged)
        .map(|i| u8::try_from((i * 37 + 11) % 251).unwrap_or(0))
        .collect();
    let src = d.host_buffer(staged)?;
    src.write(&pattern);
    let packed = (SIDE * SIDE) as usize * texel_us;
    let dst = d.host_buffer(packed)?;
    let info = vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(format)
        .extent(vk::Extent3D {
            width: SIDE,
            height: SIDE,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST);
    // SAFETY: live device; the format supports transfers (checked by the caller).
    let image = unsafe { d.device.create_image(&info, None)? };
    // SAFETY: live image.
    let req = unsafe { d.device.get_image_memory_requirements(image) };
    let alloc = vk::MemoryAllocateInfo::default()
        .allocation_size(req.size)
        .memory_type_index(d.memory_type(req.memory_type_bits, vk::MemoryPropertyFlags::empty())?);
    // SAFETY: live device, valid allocate info.
    let memory = unsafe { d.device.allocate_memory(&alloc, None)? };
    // SAFETY: fresh image and memory of a compatible type, large enough.
    unsafe { d.device.bind_image_memory(image, memory, 0)? };
    let range = vk::ImageSubresourceRange {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        base_mip_level: 0,
        level_count: 1,
        base_array_layer: 0,
        layer_count: 1,
    };
    let layers = vk::ImageSubresourceLayers {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        mip_level: 0,
        base_array_layer: 0,
        layer_count: 1,
    };
    let extent = vk::Extent3D {
        width: SIDE,
        height: SIDE,
        depth: 1,
    };
    let upload = vk::BufferImageCopy {
        buffer_offset: OFFSET,
        buffer_row_length: ROW,
        buffer_image_height: SIDE,
        image_subresource: layers,
        image_offset: vk::Offset3D::default(),
        image_extent: extent,
    };
    let download = vk::BufferImageCopy {
        buffer_offset: 0,
        buffer_row_length: 0,
        buffer_image_height: 0,
        ..upload
    };
    let barrier = |old, new, src_access, dst_access| {
        vk::ImageMemoryBarrier::default()
            .old_layout(old)
            .new_layout(new)
            .src_access_mask(src_access)
            .dst_access_mask(dst_access)
            .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .image(image)
            .subresource_range(range)
    };
    d.run(|cb| {
        let to_dst = [barrier(
            vk::ImageLayout::UNDEFINED,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            vk::AccessFlags::empty(),
            vk::AccessFlags::TRANSFER_WRITE,
        )];
        let to_src = [barrier(
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            vk::AccessFlags::TRANSFER_WRITE,
            vk::AccessFlags::TRANSFER_READ,
        )];
        let stage = vk::PipelineStageFlags::TRANSFER;
        let top = vk::PipelineStageFlags::TOP_OF_PIPE;
        let dep = vk::DependencyFlags::empty();
        // SAFETY: recording command buffer; live image.
        unsafe {
            d.device
                .cmd_pipeline_barrier(cb, top, stage, dep, &[], &[], &to_dst);
        }
        // SAFETY: live image and buffer; the region lies inside both (16×16 texels; the
        // staging rows are 20 texels at offset 256).
        unsafe {
            d.device.cmd_copy_buffer_to_image(
                cb,
                src.buffer,
                image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &[upload],
            );
        }
        // SAFETY: recording command buffer; live image.
        unsafe {
            d.device
                .cmd_pipeline_barrier(cb, stage, stage, dep, &[], &[], &to_src);
        }
        // SAFETY: live image and buffer; the region lies inside both.
        unsafe {
            d.device.cmd_copy_image_to_buffer(
                cb,
                image,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                dst.buffer,
                &[download],
            );
        }
    })?;
    let back = dst.read();
    let row_bytes = SIDE as usize * texel_us;
    let stride = ROW as usize * texel_us;
    let base = usize::try_from(OFFSET)?;
    for y in 0..SIDE as usize {
        let want = &pattern[base + y * stride..base + y * stride + row_bytes];
        let got = &back[y * row_bytes..(y + 1) * row_bytes];
        if want != got {
            return Err(format!("{format:?}: row {y} differs after the round trip").into());
        }
    }
    // SAFETY: the device waited for the copies above.
    unsafe { d.device.destroy_image(image, None) };
    // SAFETY: as above.
    unsafe { d.device.free_memory(memory, None) };
    d.destroy_host_buffer(src);
    d.destroy_host_buffer(dst);
    Ok(back)
}

/// **Invalid Vulkan on purpose**: a `buffer_size` buffer bound at `offset` into a 4 KiB
/// allocation that cannot hold it, then filled and copied. A renderer that forwards the
/// bind lets the fill write past the allocation into the host's memory.
fn hostile_fill(d: &Dev, buffer_size: u64, offset: u64) -> AppResult<Vec<u8>> {
    let info = vk::BufferCreateInfo::default()
        .size(buffer_size)
        .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST);
    // SAFETY: live device, valid create info.
    let buffer = unsafe { d.device.create_buffer(&info, None)? };
    // SAFETY: live buffer.
    let req = unsafe { d.device.get_buffer_memory_requirements(buffer) };
    let alloc = vk::MemoryAllocateInfo::default()
        .allocation_size(4 << 10)
        .memory_type_index(d.memory_type(req.memory_type_bits, Dev::host_visible())?);
    // SAFETY: live device, valid allocate info.
    let memory = unsafe { d.device.allocate_memory(&alloc, None)? };
    // SAFETY: NOT valid usage, on purpose: the range [offset, offset + req.size) is
    // outside the 4 KiB allocation. Only run through Venus, whose renderer must refuse
    // it (or fail this client's context).
    unsafe { d.device.bind_buffer_memory(buffer, memory, offset)? };
    let sink = d.host_buffer(64 << 10)?;
    d.run(|cb| {
        // SAFETY: as above: the fill reaches past the allocation (Venus only).
        unsafe {
            d.device
                .cmd_fill_buffer(cb, buffer, 0, vk::WHOLE_SIZE, 0xdead_beef);
        }
        let region = [vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: buffer_size.min(64 << 10),
        }];
        // SAFETY: as above: the copy reads past the allocation (Venus only).
        unsafe { d.device.cmd_copy_buffer(cb, buffer, sink.buffer, &region) };
    })?;
    let out = sink.read();
    // SAFETY: the device waited for the work above.
    unsafe { d.device.destroy_buffer(buffer, None) };
    // SAFETY: as above.
    unsafe { d.device.free_memory(memory, None) };
    d.destroy_host_buffer(sink);
    Ok(out)
}

/// **Invalid Vulkan on purpose**: a 128×128 RGBA8 image (64 KiB) bound to a 4 KiB
/// allocation, then filled from a buffer. A renderer that forwards the bind lets the
/// copy write past the allocation into the host's memory.
fn hostile_image(d: &Dev) -> AppResult<Vec<u8>> {
    const SIDE: u32 = 128;
    let info = vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(vk::Format::R8G8B8A8_UNORM)
        .extent(vk::Extent3D {
            width: SIDE,
            height: SIDE,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::TRANSFER_DST);
    // SAFETY: live device, valid create info.
    let image = unsafe { d.device.create_image(&info, None)? };
    // SAFETY: live image.
    let req = unsafe { d.device.get_image_memory_requirements(image) };
    let alloc = vk::MemoryAllocateInfo::default()
        .allocation_size(4 << 10)
        .memory_type_index(d.memory_type(req.memory_type_bits, Dev::host_visible())?);
    // SAFETY: live device, valid allocate info.
    let memory = unsafe { d.device.allocate_memory(&alloc, None)? };
    // SAFETY: NOT valid usage, on purpose: the image needs more than the 4 KiB
    // allocation. Only run through Venus, whose renderer must refuse it.
    unsafe { d.device.bind_image_memory(image, memory, 0)? };
    let src = d.host_buffer((SIDE * SIDE * 4) as usize)?;
    src.write(&vec![0xa5; src.size]);
    let range = vk::ImageSubresourceRange {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        base_mip_level: 0,
        level_count: 1,
        base_array_layer: 0,
        layer_count: 1,
    };
    let to_dst = [vk::ImageMemoryBarrier::default()
        .old_layout(vk::ImageLayout::UNDEFINED)
        .new_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
        .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .image(image)
        .subresource_range(range)];
    let region = vk::BufferImageCopy {
        buffer_offset: 0,
        buffer_row_length: 0,
        buffer_image_height: 0,
        image_subresource: vk::ImageSubresourceLayers {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            mip_level: 0,
            base_array_layer: 0,
            layer_count: 1,
        },
        image_offset: vk::Offset3D::default(),
        image_extent: vk::Extent3D {
            width: SIDE,
            height: SIDE,
            depth: 1,
        },
    };
    d.run(|cb| {
        // SAFETY: recording command buffer; live image.
        unsafe {
            d.device.cmd_pipeline_barrier(
                cb,
                vk::PipelineStageFlags::TOP_OF_PIPE,
                vk::PipelineStageFlags::TRANSFER,
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &to_dst,
            );
        }
        // SAFETY: as above: the copy writes past the allocation (Venus only).
        unsafe {
            d.device.cmd_copy_buffer_to_image(
                cb,
                src.buffer,
                image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &[region],
            );
        }
    })?;
    // SAFETY: the device waited for the work above.
    unsafe { d.device.destroy_image(image, None) };
    // SAFETY: as above.
    unsafe { d.device.free_memory(memory, None) };
    let out = src.read();
    d.destroy_host_buffer(src);
    Ok(out)
}
