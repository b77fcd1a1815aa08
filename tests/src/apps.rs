//! Compute programs written as ordinary Vulkan applications with `ash`. Each case
//! checks its own result against a CPU reference and returns the output bytes; the
//! `compute-app` binary prints a digest so the native and Venus runs can be compared.
//!
//! This is test code driving a real driver: each `unsafe` block is one Vulkan call whose
//! handles were created just above by this harness and are used as the spec requires.

use std::error::Error;
use std::ffi::CStr;

use ash::vk;

pub mod faults;
pub mod graphics;
pub mod memory;

/// Result type of the test programs.
pub type AppResult<T> = Result<T, Box<dyn Error>>;

/// SPIR-V of the test shaders (GLSL beside them in `tests/shaders/`).
pub mod spv {
    /// y = a·x + y (push constants a, n).
    pub const SAXPY: &[u8] = include_bytes!("../shaders/saxpy.spv");
    /// C = A·B, N×N, N a specialization constant.
    pub const MATMUL: &[u8] = include_bytes!("../shaders/matmul.spv");
    /// One Hillis–Steele scan step.
    pub const SCAN_STEP: &[u8] = include_bytes!("../shaders/scan_step.spv");
    /// data = data·mul + add.
    pub const ADD_CONST: &[u8] = include_bytes!("../shaders/add_const.spv");
    /// xorshift spin loop (push constants iters, seed), for saturating clients.
    pub const SPIN: &[u8] = include_bytes!("../shaders/spin.spv");
}

/// Every case, by name.
pub const CASES: &[&str] = &[
    "saxpy",
    "matmul",
    "prefix_sum",
    "timeline",
    "host_writes",
    "fences",
    "pipeline_cache",
    "timestamps",
];

/// Runs a case by name and returns its output bytes (already checked against a CPU
/// reference).
pub fn run_case(g: &Gpu, name: &str) -> AppResult<Vec<u8>> {
    match name {
        "saxpy" => saxpy(g),
        "matmul" => matmul(g),
        "prefix_sum" => prefix_sum(g),
        "timeline" => timeline(g),
        "host_writes" => host_writes(g),
        "fences" => fences(g),
        "pipeline_cache" => pipeline_cache(g),
        "timestamps" => timestamps(g),
        _ => Err(format!("unknown case {name}").into()),
    }
}

/// FNV-1a 64 of `bytes`.
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A device, one queue, and pools for the cases.
pub struct Gpu {
    _entry: ash::Entry,
    instance: ash::Instance,
    /// The device.
    pub device: ash::Device,
    queue: vk::Queue,
    pool: vk::CommandPool,
    desc_pool: vk::DescriptorPool,
    memory: vk::PhysicalDeviceMemoryProperties,
    /// `deviceName`.
    pub name: String,
    /// `apiVersion`.
    pub api_version: u32,
    /// `timestampPeriod`.
    pub timestamp_period: f32,
    /// `VK_EXT_extended_dynamic_state3`, `VK_EXT_vertex_input_dynamic_state`,
    /// `VK_KHR_push_descriptor` and `VK_EXT_multi_draw` are enabled
    /// ([`Gpu::new_graphics`] when the driver has all four).
    pub ext_dynamic: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A host-visible, coherent, persistently mapped storage buffer.
#[derive(Debug)]
pub struct Buf {
    /// The buffer.
    pub buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut u8,
    /// Size in bytes.
    pub size: u64,
}

/// A compute pipeline with its layouts.
#[derive(Debug)]
pub struct Pipe {
    /// The pipeline.
    pub pipeline: vk::Pipeline,
    /// Its layout.
    pub layout: vk::PipelineLayout,
    set_layout: vk::DescriptorSetLayout,
    module: vk::ShaderModule,
}

fn spirv_words(bytes: &[u8]) -> AppResult<Vec<u32>> {
    Ok(ash::util::read_spv(&mut std::io::Cursor::new(bytes))?)
}

impl Gpu {
    /// Instance (API 1.3), first physical device, one queue of the first compute family.
    pub fn new() -> AppResult<Self> {
        Self::create(false)
    }

    /// As [`Gpu::new`], on the first family with graphics and compute, with the
    /// features the graphics cases use (dynamic rendering, descriptor indexing).
    pub fn new_graphics() -> AppResult<Self> {
        Self::create(true)
    }

    fn create(graphics: bool) -> AppResult<Self> {
        // SAFETY: loads the system Vulkan loader; the Entry keeps it loaded.
        let entry = unsafe { ash::Entry::load()? };
        let app = vk::ApplicationInfo::default()
            .application_name(c"vgpu-compute-app")
            .api_version(vk::API_VERSION_1_3);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: a valid create info.
        let instance = unsafe { entry.create_instance(&info, None)? };
        // SAFETY: live instance.
        let pdevs = unsafe { instance.enumerate_physical_devices()? };
        let pdev = *pdevs.first().ok_or("no physical device")?;
        // SAFETY: live physical device.
        let props = unsafe { instance.get_physical_device_properties(pdev) };
        // SAFETY: live physical device.
        let families = unsafe { instance.get_physical_device_queue_family_properties(pdev) };
        let qfi = families
            .iter()
            .position(|f| {
                let want = if graphics {
                    vk::QueueFlags::COMPUTE | vk::QueueFlags::GRAPHICS
                } else {
                    vk::QueueFlags::COMPUTE
                };
                f.queue_flags.contains(want)
            })
            .ok_or("no compute queue")?;
        let qfi = u32::try_from(qfi)?;
        let prio = [1.0f32];
        let qinfo = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(qfi)
            .queue_priorities(&prio)];
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
        let mut f13 = vk::PhysicalDeviceVulkan13Features::default().synchronization2(true);
        if graphics {
            f12 = f12
                .descriptor_indexing(true)
                .runtime_descriptor_array(true)
                .shader_storage_buffer_array_non_uniform_indexing(true)
                .descriptor_binding_partially_bound(true)
                .descriptor_binding_storage_buffer_update_after_bind(true)
                .descriptor_binding_variable_descriptor_count(true)
                .imageless_framebuffer(true)
                .draw_indirect_count(true);
            f13 = f13.dynamic_rendering(true);
        }
        // The graphics extension case needs all four; they are enabled only together.
        let wanted = [
            vk::EXT_EXTENDED_DYNAMIC_STATE3_NAME,
            vk::EXT_VERTEX_INPUT_DYNAMIC_STATE_NAME,
            vk::KHR_PUSH_DESCRIPTOR_NAME,
            vk::EXT_MULTI_DRAW_NAME,
        ];
        let ext_dynamic = graphics && {
            // SAFETY: live physical device.
            let have = unsafe { instance.enumerate_device_extension_properties(pdev)? };
            wanted.iter().all(|w| {
                have.iter()
                    .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == *w))
            })
        };
        let names: Vec<*const std::ffi::c_char> = if ext_dynamic {
            wanted.iter().map(|n| n.as_ptr()).collect()
        } else {
            Vec::new()
        };
        let mut eds3 = vk::PhysicalDeviceExtendedDynamicState3FeaturesEXT::default()
            .extended_dynamic_state3_polygon_mode(true)
            .extended_dynamic_state3_color_blend_enable(true)
            .extended_dynamic_state3_color_blend_equation(true)
            .extended_dynamic_state3_color_write_mask(true)
            .extended_dynamic_state3_depth_clamp_enable(true)
            .extended_dynamic_state3_sample_mask(true)
            .extended_dynamic_state3_alpha_to_coverage_enable(true)
            .extended_dynamic_state3_rasterization_samples(true);
        let mut vertex_input = vk::PhysicalDeviceVertexInputDynamicStateFeaturesEXT::default()
            .vertex_input_dynamic_state(true);
        let mut multi_draw = vk::PhysicalDeviceMultiDrawFeaturesEXT::default().multi_draw(true);
        let mut dinfo = vk::DeviceCreateInfo::default()
            .queue_create_infos(&qinfo)
            .enabled_extension_names(&names)
            .push_next(&mut f12)
            .push_next(&mut f13);
        if ext_dynamic {
            dinfo = dinfo
                .push_next(&mut eds3)
                .push_next(&mut vertex_input)
                .push_next(&mut multi_draw);
        }
        // SAFETY: live physical device, valid create info.
        let device = unsafe { instance.create_device(pdev, &dinfo, None)? };
        // SAFETY: the queue was requested at creation.
        let queue = unsafe { device.get_device_queue(qfi, 0) };
        let pinfo = vk::CommandPoolCreateInfo::default()
            .queue_family_index(qfi)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: live device.
        let pool = unsafe { device.create_command_pool(&pinfo, None)? };
        let sizes = [vk::DescriptorPoolSize {
            ty: vk::DescriptorType::STORAGE_BUFFER,
            descriptor_count: 256,
        }];
        let dpinfo = vk::DescriptorPoolCreateInfo::default()
            .max_sets(64)
            .pool_sizes(&sizes);
        // SAFETY: live device.
        let desc_pool = unsafe { device.create_descriptor_pool(&dpinfo, None)? };
        // SAFETY: live physical device.
        let memory = unsafe { instance.get_physical_device_memory_properties(pdev) };
        let name = props
            .device_name_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            _entry: entry,
            instance,
            device,
            queue,
            pool,
            desc_pool,
            memory,
            name,
            api_version: props.api_version,
            timestamp_period: props.limits.timestamp_period,
            ext_dynamic,
        })
    }

    /// A mapped storage buffer of `size` bytes, zeroed.
    pub fn buffer(&self, size: u64) -> AppResult<Buf> {
        self.buffer_with_usage(size, vk::BufferUsageFlags::empty())
    }

    /// A mapped buffer of `size` bytes, zeroed, with `usage` on top of storage and
    /// transfer source/destination.
    pub fn buffer_with_usage(&self, size: u64, usage: vk::BufferUsageFlags) -> AppResult<Buf> {
        let info = vk::BufferCreateInfo::default().size(size).usage(
            usage
                | vk::BufferUsageFlags::STORAGE_BUFFER
                | vk::BufferUsageFlags::TRANSFER_SRC
                | vk::BufferUsageFlags::TRANSFER_DST,
        );
        // SAFETY: live device, valid create info.
        let buffer = unsafe { self.device.create_buffer(&info, None)? };
        // SAFETY: live buffer.
        let req = unsafe { self.device.get_buffer_memory_requirements(buffer) };
        let want = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        let ty = self
            .memory
            .memory_types_as_slice()
            .iter()
            .enumerate()
            .position(|(i, t)| {
                req.memory_type_bits & (1 << i) != 0 && t.property_flags.contains(want)
            })
            .ok_or("no host-visible coherent memory type")?;
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(u32::try_from(ty)?);
        // SAFETY: live device, valid allocate info.
        let memory = unsafe { self.device.allocate_memory(&alloc, None)? };
        // SAFETY: fresh buffer and memory of a compatible type.
        unsafe { self.device.bind_buffer_memory(buffer, memory, 0)? };
        // SAFETY: host-visible memory, mapped once for its lifetime.
        let ptr = unsafe {
            self.device
                .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())?
        };
        let buf = Buf {
            buffer,
            memory,
            ptr: ptr.cast(),
            size,
        };
        buf.write(&vec![0u8; usize::try_from(size)?]);
        Ok(buf)
    }

    /// A compute pipeline over `bindings` storage buffers with `push` bytes of push
    /// constants, optional specialization, optional cache.
    pub fn pipeline(
        &self,
        spv: &[u8],
        bindings: u32,
        push: u32,
        spec: Option<&vk::SpecializationInfo<'_>>,
        cache: vk::PipelineCache,
    ) -> AppResult<Pipe> {
        let counts = vec![1; usize::try_from(bindings)?];
        self.pipeline_with_counts(spv, &counts, push, spec, cache)
    }

    /// As [`Gpu::pipeline`], with `counts[i]` storage buffers (an array) at binding i.
    pub fn pipeline_with_counts(
        &self,
        spv: &[u8],
        counts: &[u32],
        push: u32,
        spec: Option<&vk::SpecializationInfo<'_>>,
        cache: vk::PipelineCache,
    ) -> AppResult<Pipe> {
        let words = spirv_words(spv)?;
        let minfo = vk::ShaderModuleCreateInfo::default().code(&words);
        // SAFETY: live device, valid SPIR-V.
        let module = unsafe { self.device.create_shader_module(&minfo, None)? };
        let b: Vec<vk::DescriptorSetLayoutBinding<'_>> = counts
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(u32::try_from(i).unwrap_or(0))
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(count)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let linfo = vk::DescriptorSetLayoutCreateInfo::default().bindings(&b);
        // SAFETY: live device.
        let set_layout = unsafe { self.device.create_descriptor_set_layout(&linfo, None)? };
        let ranges = [vk::PushConstantRange {
            stage_flags: vk::ShaderStageFlags::COMPUTE,
            offset: 0,
            size: push,
        }];
        let layouts = [set_layout];
        let mut plinfo = vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts);
        if push > 0 {
            plinfo = plinfo.push_constant_ranges(&ranges);
        }
        // SAFETY: live device.
        let layout = unsafe { self.device.create_pipeline_layout(&plinfo, None)? };
        let mut stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(c"main");
        if let Some(s) = spec {
            stage = stage.specialization_info(s);
        }
        let cinfo = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(layout)];
        // SAFETY: live device, valid create info.
        let pipeline = unsafe { self.device.create_compute_pipelines(cache, &cinfo, None) }
            .map_err(|(_, e)| e)?[0];
        Ok(Pipe {
            pipeline,
            layout,
            set_layout,
            module,
        })
    }

    /// A descriptor set binding `bufs` to bindings 0.. of `pipe`.
    pub fn set(&self, pipe: &Pipe, bufs: &[&Buf]) -> AppResult<vk::DescriptorSet> {
        let layouts = [pipe.set_layout];
        let ainfo = vk::DescriptorSetAllocateInfo::default()
            .descriptor_pool(self.desc_pool)
            .set_layouts(&layouts);
        // SAFETY: live pool and layout.
        let set = unsafe { self.device.allocate_descriptor_sets(&ainfo)? }[0];
        let infos: Vec<[vk::DescriptorBufferInfo; 1]> = bufs
            .iter()
            .map(|b| {
                [vk::DescriptorBufferInfo {
                    buffer: b.buffer,
                    offset: 0,
                    range: vk::WHOLE_SIZE,
                }]
            })
            .collect();
        let writes: Vec<vk::WriteDescriptorSet<'_>> = infos
            .iter()
            .enumerate()
            .map(|(i, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(u32::try_from(i).unwrap_or(0))
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(info)
            })
            .collect();
        // SAFETY: live set and buffers.
        unsafe { self.device.update_descriptor_sets(&writes, &[]) };
        Ok(set)
    }

    /// A primary command buffer.
    pub fn command_buffer(&self) -> AppResult<vk::CommandBuffer> {
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(self.pool)
            .command_buffer_count(1);
        // SAFETY: live pool.
        Ok(unsafe { self.device.allocate_command_buffers(&info)? }[0])
    }

    /// Records with `f`, submits with a fence and waits for it.
    pub fn run(&self, f: impl FnOnce(vk::CommandBuffer)) -> AppResult<()> {
        let cb = self.record(f)?;
        let fence = self.fence()?;
        self.submit(&[cb], fence)?;
        // SAFETY: live fence.
        unsafe { self.device.wait_for_fences(&[fence], true, u64::MAX)? };
        // SAFETY: the fence is signalled; nothing else uses it or the command buffer.
        unsafe { self.device.destroy_fence(fence, None) };
        // SAFETY: the command buffer finished executing.
        unsafe { self.device.free_command_buffers(self.pool, &[cb]) };
        Ok(())
    }

    /// A recorded one-time command buffer.
    pub fn record(&self, f: impl FnOnce(vk::CommandBuffer)) -> AppResult<vk::CommandBuffer> {
        let cb = self.command_buffer()?;
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: fresh command buffer.
        unsafe { self.device.begin_command_buffer(cb, &begin)? };
        f(cb);
        // SAFETY: recording command buffer.
        unsafe { self.device.end_command_buffer(cb)? };
        Ok(cb)
    }

    /// An unsignalled fence.
    pub fn fence(&self) -> AppResult<vk::Fence> {
        // SAFETY: live device.
        Ok(unsafe {
            self.device
                .create_fence(&vk::FenceCreateInfo::default(), None)?
        })
    }

    /// Submits command buffers with a fence.
    pub fn submit(&self, cbs: &[vk::CommandBuffer], fence: vk::Fence) -> AppResult<()> {
        let submit = [vk::SubmitInfo::default().command_buffers(cbs)];
        // SAFETY: executable command buffers, unsignalled fence.
        unsafe { self.device.queue_submit(self.queue, &submit, fence)? };
        Ok(())
    }

    /// Binds `pipe` and `set`, pushes `push`, dispatches `groups`.
    pub fn dispatch(
        &self,
        cb: vk::CommandBuffer,
        pipe: &Pipe,
        set: vk::DescriptorSet,
        push: &[u8],
        groups: [u32; 3],
    ) {
        // SAFETY: recording command buffer, live pipeline.
        unsafe {
            self.device
                .cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, pipe.pipeline)
        };
        // SAFETY: live set compatible with the layout.
        unsafe {
            self.device.cmd_bind_descriptor_sets(
                cb,
                vk::PipelineBindPoint::COMPUTE,
                pipe.layout,
                0,
                &[set],
                &[],
            );
        }
        if !push.is_empty() {
            // SAFETY: the layout has a push range of at least this size.
            unsafe {
                self.device.cmd_push_constants(
                    cb,
                    pipe.layout,
                    vk::ShaderStageFlags::COMPUTE,
                    0,
                    push,
                );
            }
        }
        // SAFETY: recording command buffer with a bound compute pipeline.
        unsafe {
            self.device
                .cmd_dispatch(cb, groups[0], groups[1], groups[2])
        };
    }

    /// A full compute→compute/host memory barrier.
    pub fn barrier(&self, cb: vk::CommandBuffer) {
        let mb = [vk::MemoryBarrier2::default()
            .src_stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS)
            .src_access_mask(vk::AccessFlags2::MEMORY_WRITE)
            .dst_stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS)
            .dst_access_mask(vk::AccessFlags2::MEMORY_READ | vk::AccessFlags2::MEMORY_WRITE)];
        let dep = vk::DependencyInfo::default().memory_barriers(&mb);
        // SAFETY: recording command buffer (synchronization2 enabled).
        unsafe { self.device.cmd_pipeline_barrier2(cb, &dep) };
    }

    /// Index of the memory type with `flags` allowed by `bits`.
    pub fn memory_type(&self, bits: u32, flags: vk::MemoryPropertyFlags) -> AppResult<u32> {
        let i = self
            .memory
            .memory_types_as_slice()
            .iter()
            .enumerate()
            .position(|(i, t)| bits & (1 << i) != 0 && t.property_flags.contains(flags))
            .ok_or("no suitable memory type")?;
        Ok(u32::try_from(i)?)
    }

    /// The queue.
    pub fn queue(&self) -> vk::Queue {
        self.queue
    }

    /// Frees every descriptor set allocated with [`Gpu::set`] (the pool holds 64;
    /// the guest driver enforces that where lavapipe does not).
    pub fn free_sets(&self) -> AppResult<()> {
        // SAFETY: live pool; callers use none of its sets any more (their work was
        // waited for).
        unsafe {
            self.device
                .reset_descriptor_pool(self.desc_pool, vk::DescriptorPoolResetFlags::empty())?;
        }
        Ok(())
    }

    /// Frees a pipeline and its layouts.
    pub fn destroy_pipe(&self, p: Pipe) {
        // SAFETY: the device is idle for this pipeline (callers wait first).
        unsafe { self.device.destroy_pipeline(p.pipeline, None) };
        // SAFETY: as above.
        unsafe { self.device.destroy_pipeline_layout(p.layout, None) };
        // SAFETY: as above.
        unsafe {
            self.device
                .destroy_descriptor_set_layout(p.set_layout, None)
        };
        // SAFETY: as above.
        unsafe { self.device.destroy_shader_module(p.module, None) };
    }

    /// Frees a buffer and its memory.
    pub fn destroy_buf(&self, b: Buf) {
        // SAFETY: no pending work uses it (callers wait first).
        unsafe { self.device.destroy_buffer(b.buffer, None) };
        // SAFETY: as above; freeing also unmaps.
        unsafe { self.device.free_memory(b.memory, None) };
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: waiting has no precondition beyond a live device.
        let _ = unsafe { self.device.device_wait_idle() };
        // SAFETY: idle device; pools are no longer used.
        unsafe { self.device.destroy_descriptor_pool(self.desc_pool, None) };
        // SAFETY: as above.
        unsafe { self.device.destroy_command_pool(self.pool, None) };
        // SAFETY: every child the harness created was destroyed by its case.
        unsafe { self.device.destroy_device(None) };
        // SAFETY: the device is gone.
        unsafe { self.instance.destroy_instance(None) };
    }
}

impl Buf {
    /// Copies `bytes` to the start of the mapping.
    pub fn write(&self, bytes: &[u8]) {
        let n = bytes.len().min(usize::try_from(self.size).unwrap_or(0));
        // SAFETY: the mapping is `size` bytes and live while `self` is.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, n) };
    }

    /// Reads the whole mapping.
    pub fn read(&self) -> Vec<u8> {
        let mut out = vec![0u8; usize::try_from(self.size).unwrap_or(0)];
        // SAFETY: as for `write`.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, out.as_mut_ptr(), out.len()) };
        out
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn as_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn as_u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn check(ok: bool, what: &str) -> AppResult<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("result mismatch: {what}").into())
    }
}

/// saxpy with push constants, 1<<16 elements.
pub fn saxpy(g: &Gpu) -> AppResult<Vec<u8>> {
    let n: u32 = 1 << 16;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 97) as f32).collect();
    let bx = g.buffer(u64::from(n) * 4)?;
    let by = g.buffer(u64::from(n) * 4)?;
    bx.write(&f32s(&x));
    by.write(&f32s(&y));
    let p = g.pipeline(spv::SAXPY, 2, 8, None, vk::PipelineCache::null())?;
    let set = g.set(&p, &[&bx, &by])?;
    let a = 2.5f32;
    let mut push = a.to_le_bytes().to_vec();
    push.extend_from_slice(&n.to_le_bytes());
    g.run(|cb| g.dispatch(cb, &p, set, &push, [n / 64, 1, 1]))?;
    let out = by.read();
    let got = as_f32s(&out);
    check(
        got.iter()
            .zip(x.iter().zip(&y))
            .all(|(g, (x, y))| (g - (a * x + y)).abs() <= 1e-3 * (1.0 + g.abs())),
        "saxpy",
    )?;
    g.destroy_pipe(p);
    g.destroy_buf(bx);
    g.destroy_buf(by);
    Ok(out)
}

/// 512×512 f32 matmul, N as a specialization constant.
pub fn matmul(g: &Gpu) -> AppResult<Vec<u8>> {
    const N: usize = 512;
    let a: Vec<f32> = (0..N * N).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..N * N).map(|i| ((i * 5) % 11) as f32 * 0.25).collect();
    let bytes = (N * N * 4) as u64;
    let (ba, bb, bc) = (g.buffer(bytes)?, g.buffer(bytes)?, g.buffer(bytes)?);
    ba.write(&f32s(&a));
    bb.write(&f32s(&b));
    let n = u32::try_from(N)?;
    let entries = [vk::SpecializationMapEntry {
        constant_id: 0,
        offset: 0,
        size: 4,
    }];
    let data = n.to_le_bytes();
    let spec = vk::SpecializationInfo::default()
        .map_entries(&entries)
        .data(&data);
    let p = g.pipeline(spv::MATMUL, 3, 0, Some(&spec), vk::PipelineCache::null())?;
    let set = g.set(&p, &[&ba, &bb, &bc])?;
    g.run(|cb| g.dispatch(cb, &p, set, &[], [n / 16, n / 16, 1]))?;
    let out = bc.read();
    let got = as_f32s(&out);
    // Spot-check rows against the CPU (inputs are small integers and quarters, so the
    // sums are exact in f32).
    for &(r, c) in &[
        (0usize, 0usize),
        (1, 511),
        (255, 256),
        (511, 0),
        (511, 511),
        (100, 37),
    ] {
        let want: f32 = (0..N).map(|k| a[r * N + k] * b[k * N + c]).sum();
        check((got[r * N + c] - want).abs() < 1e-2, "matmul element")?;
    }
    g.destroy_pipe(p);
    for buf in [ba, bb, bc] {
        g.destroy_buf(buf);
    }
    Ok(out)
}

/// Inclusive prefix sum over 4096 u32 with log2(n) dispatches, ping-ponging between two
/// buffers with a barrier between steps.
pub fn prefix_sum(g: &Gpu) -> AppResult<Vec<u8>> {
    let n: u32 = 4096;
    let input: Vec<u32> = (0..n).map(|i| (i * 31 + 7) % 101).collect();
    let (b0, b1) = (g.buffer(u64::from(n) * 4)?, g.buffer(u64::from(n) * 4)?);
    b0.write(&u32s(&input));
    let p = g.pipeline(spv::SCAN_STEP, 2, 8, None, vk::PipelineCache::null())?;
    let fwd = g.set(&p, &[&b0, &b1])?;
    let back = g.set(&p, &[&b1, &b0])?;
    let mut steps = 0;
    g.run(|cb| {
        let mut offset = 1u32;
        while offset < n {
            let set = if steps % 2 == 0 { fwd } else { back };
            let mut push = offset.to_le_bytes().to_vec();
            push.extend_from_slice(&n.to_le_bytes());
            g.dispatch(cb, &p, set, &push, [n / 64, 1, 1]);
            g.barrier(cb);
            offset *= 2;
            steps += 1;
        }
    })?;
    let out = if steps % 2 == 0 { b0.read() } else { b1.read() };
    let got = as_u32s(&out);
    let mut acc = 0u32;
    let want: Vec<u32> = input
        .iter()
        .map(|v| {
            acc += v;
            acc
        })
        .collect();
    check(got == want, "prefix sum")?;
    g.destroy_pipe(p);
    g.destroy_buf(b0);
    g.destroy_buf(b1);
    Ok(out)
}

/// Three submits chained by a timeline semaphore (1 → 2 → 3), host waits for 3 and
/// signals from the host to release a fourth.
pub fn timeline(g: &Gpu) -> AppResult<Vec<u8>> {
    let n: u32 = 1024;
    let buf = g.buffer(u64::from(n) * 4)?;
    buf.write(&u32s(&(0..n).collect::<Vec<_>>()));
    let p = g.pipeline(spv::ADD_CONST, 1, 12, None, vk::PipelineCache::null())?;
    let set = g.set(&p, &[&buf])?;
    let mut ty = vk::SemaphoreTypeCreateInfo::default()
        .semaphore_type(vk::SemaphoreType::TIMELINE)
        .initial_value(0);
    let sinfo = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
    // SAFETY: live device, timeline semaphores enabled.
    let sem = unsafe { g.device.create_semaphore(&sinfo, None)? };
    let ops: [(u32, u32); 4] = [(2, 1), (3, 0), (1, 5), (2, 2)];
    let mut cbs = Vec::new();
    for (i, (mul, add)) in ops.iter().enumerate() {
        let mut push = mul.to_le_bytes().to_vec();
        push.extend_from_slice(&add.to_le_bytes());
        push.extend_from_slice(&n.to_le_bytes());
        let cb = g.record(|cb| {
            g.dispatch(cb, &p, set, &push, [n / 64, 1, 1]);
            g.barrier(cb);
        })?;
        cbs.push(cb);
        let wait_value = [i as u64];
        let signal_value = [i as u64 + 1];
        let sems = [sem];
        let stages = [vk::PipelineStageFlags::COMPUTE_SHADER];
        let mut tl = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&wait_value)
            .signal_semaphore_values(&signal_value);
        let one = [cb];
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&sems)
            .wait_dst_stage_mask(&stages)
            .command_buffers(&one)
            .signal_semaphores(&sems)
            .push_next(&mut tl);
        if i == 3 {
            // Released by a host signal of value 3 after the host saw 3.
            let values = [3u64];
            let winfo = vk::SemaphoreWaitInfo::default()
                .semaphores(&sems)
                .values(&values);
            // SAFETY: live semaphore; submits 0..3 reach 3.
            unsafe { g.device.wait_semaphores(&winfo, u64::MAX)? };
            // SAFETY: live semaphore.
            let v = unsafe { g.device.get_semaphore_counter_value(sem)? };
            check(v == 3, "timeline counter")?;
        }
        // SAFETY: recorded command buffer; wait values precede signal values.
        unsafe {
            g.device
                .queue_submit(g.queue(), &[submit], vk::Fence::null())?
        };
    }
    let values = [4u64];
    let sems = [sem];
    let winfo = vk::SemaphoreWaitInfo::default()
        .semaphores(&sems)
        .values(&values);
    // SAFETY: live semaphore.
    unsafe { g.device.wait_semaphores(&winfo, u64::MAX)? };
    let out = buf.read();
    let want: Vec<u32> = (0..n)
        .map(|mut v| {
            for (mul, add) in ops {
                v = v * mul + add;
            }
            v
        })
        .collect();
    check(as_u32s(&out) == want, "timeline chain")?;
    // SAFETY: the queue is idle after the final wait.
    unsafe { g.device.queue_wait_idle(g.queue())? };
    // SAFETY: idle; nothing uses the semaphore.
    unsafe { g.device.destroy_semaphore(sem, None) };
    g.destroy_pipe(p);
    g.destroy_buf(buf);
    Ok(out)
}

/// Host writes through the mapping are seen by the GPU, GPU writes by the host, across
/// several rounds on the same buffers (copy + fill + update).
pub fn host_writes(g: &Gpu) -> AppResult<Vec<u8>> {
    let n = 4096usize;
    let src = g.buffer((n * 4) as u64)?;
    let dst = g.buffer((n * 4) as u64)?;
    let mut all = Vec::new();
    for round in 0..4u32 {
        let data: Vec<u32> = (0..u32::try_from(n)?)
            .map(|i| i ^ (round * 0x9e37))
            .collect();
        src.write(&u32s(&data));
        g.run(|cb| {
            let region = [vk::BufferCopy {
                src_offset: 0,
                dst_offset: 0,
                size: (n * 4) as u64,
            }];
            // SAFETY: recording command buffer, live buffers.
            unsafe {
                g.device
                    .cmd_copy_buffer(cb, src.buffer, dst.buffer, &region)
            };
            g.barrier(cb);
            // SAFETY: as above; 256-byte aligned range inside the buffer.
            unsafe {
                g.device
                    .cmd_fill_buffer(cb, dst.buffer, 256, 256, 0xdead_0000 | round)
            };
            g.barrier(cb);
            // SAFETY: as above; 4-byte aligned update.
            unsafe {
                g.device
                    .cmd_update_buffer(cb, dst.buffer, 1024, &u32s(&[round, round + 1]))
            };
        })?;
        let got = as_u32s(&dst.read());
        let mut want = data.clone();
        for w in &mut want[64..128] {
            *w = 0xdead_0000 | round;
        }
        want[256] = round;
        want[257] = round + 1;
        check(got == want, "host writes round")?;
        all.extend_from_slice(&u32s(&got));
    }
    g.destroy_buf(src);
    g.destroy_buf(dst);
    Ok(all)
}

/// 300 submits, each with its own fence; waits on all of them, checks status, resets
/// and reuses a few.
pub fn fences(g: &Gpu) -> AppResult<Vec<u8>> {
    let count = 300u32;
    let buf = g.buffer(u64::from(count) * 4)?;
    let mut fences = Vec::new();
    let mut cbs = Vec::new();
    for i in 0..count {
        let cb = g.record(|cb| {
            // SAFETY: recording command buffer; 4-byte slot inside the buffer.
            unsafe {
                g.device
                    .cmd_fill_buffer(cb, buf.buffer, u64::from(i) * 4, 4, i * 3 + 1)
            };
        })?;
        let f = g.fence()?;
        g.submit(&[cb], f)?;
        fences.push(f);
        cbs.push(cb);
    }
    // SAFETY: live fences.
    unsafe { g.device.wait_for_fences(&fences, true, u64::MAX)? };
    for f in &fences {
        // SAFETY: live fence.
        check(unsafe { g.device.get_fence_status(*f)? }, "fence signalled")?;
    }
    // SAFETY: signalled fences, not in use.
    unsafe { g.device.reset_fences(&fences[..10])? };
    // SAFETY: live fence.
    let signalled = unsafe { g.device.get_fence_status(fences[0])? };
    check(!signalled, "fence reset")?;
    let out = buf.read();
    check(
        as_u32s(&out) == (0..count).map(|i| i * 3 + 1).collect::<Vec<_>>(),
        "fence fills",
    )?;
    for f in fences {
        // SAFETY: no pending work uses it.
        unsafe { g.device.destroy_fence(f, None) };
    }
    // SAFETY: all command buffers completed.
    unsafe { g.device.free_command_buffers(g.pool, &cbs) };
    g.destroy_buf(buf);
    Ok(out)
}

/// Creates a pipeline with a cache, reads the cache data, seeds a new cache with it and
/// builds the pipeline again; the data must be non-empty and both pipelines work.
pub fn pipeline_cache(g: &Gpu) -> AppResult<Vec<u8>> {
    // SAFETY: live device.
    let c1 = unsafe {
        g.device
            .create_pipeline_cache(&vk::PipelineCacheCreateInfo::default(), None)?
    };
    let p1 = g.pipeline(spv::ADD_CONST, 1, 12, None, c1)?;
    // SAFETY: live cache.
    let data = unsafe { g.device.get_pipeline_cache_data(c1)? };
    check(data.len() >= 32, "pipeline cache header")?;
    let info = vk::PipelineCacheCreateInfo::default().initial_data(&data);
    // SAFETY: data came from the same device.
    let c2 = unsafe { g.device.create_pipeline_cache(&info, None)? };
    // SAFETY: live caches.
    unsafe { g.device.merge_pipeline_caches(c2, &[c1])? };
    let p2 = g.pipeline(spv::ADD_CONST, 1, 12, None, c2)?;
    let n = 256u32;
    let buf = g.buffer(u64::from(n) * 4)?;
    buf.write(&u32s(&vec![1; n as usize]));
    let s1 = g.set(&p1, &[&buf])?;
    let s2 = g.set(&p2, &[&buf])?;
    let push = |m: u32, a: u32| [m.to_le_bytes(), a.to_le_bytes(), n.to_le_bytes()].concat();
    g.run(|cb| {
        g.dispatch(cb, &p1, s1, &push(3, 1), [n / 64, 1, 1]);
        g.barrier(cb);
        g.dispatch(cb, &p2, s2, &push(2, 0), [n / 64, 1, 1]);
    })?;
    let out = buf.read();
    check(as_u32s(&out).iter().all(|&v| v == 8), "cached pipelines")?;
    g.destroy_pipe(p1);
    g.destroy_pipe(p2);
    // SAFETY: no pipeline creation in flight.
    unsafe { g.device.destroy_pipeline_cache(c1, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_pipeline_cache(c2, None) };
    g.destroy_buf(buf);
    Ok(out)
}

/// Timestamps around a dispatch (query pool, reset, write, results with availability,
/// and a copy to a buffer). The values differ run to run, so the output is only the
/// checks' outcome.
pub fn timestamps(g: &Gpu) -> AppResult<Vec<u8>> {
    let qinfo = vk::QueryPoolCreateInfo::default()
        .query_type(vk::QueryType::TIMESTAMP)
        .query_count(4);
    // SAFETY: live device.
    let pool = unsafe { g.device.create_query_pool(&qinfo, None)? };
    // SAFETY: live pool (hostQueryReset is core 1.2; lavapipe supports it).
    unsafe { g.device.reset_query_pool(pool, 0, 4) };
    let n = 1u32 << 14;
    let buf = g.buffer(u64::from(n) * 4)?;
    let copy = g.buffer(64)?;
    let p = g.pipeline(spv::ADD_CONST, 1, 12, None, vk::PipelineCache::null())?;
    let set = g.set(&p, &[&buf])?;
    let push = [3u32.to_le_bytes(), 1u32.to_le_bytes(), n.to_le_bytes()].concat();
    g.run(|cb| {
        // SAFETY: recording command buffer, reset pool.
        unsafe {
            g.device
                .cmd_write_timestamp(cb, vk::PipelineStageFlags::TOP_OF_PIPE, pool, 0)
        };
        g.dispatch(cb, &p, set, &push, [n / 64, 1, 1]);
        // SAFETY: as above.
        unsafe {
            g.device
                .cmd_write_timestamp2(cb, vk::PipelineStageFlags2::COMPUTE_SHADER, pool, 1)
        };
        // SAFETY: as above; 64 bytes fit two 64-bit results with availability.
        unsafe {
            g.device.cmd_copy_query_pool_results(
                cb,
                pool,
                0,
                2,
                copy.buffer,
                0,
                16,
                vk::QueryResultFlags::TYPE_64
                    | vk::QueryResultFlags::WAIT
                    | vk::QueryResultFlags::WITH_AVAILABILITY,
            );
        }
    })?;
    let mut results = [[0u64; 2]; 2];
    // SAFETY: live pool; `results` holds two (value, availability) pairs.
    unsafe {
        g.device.get_query_pool_results(
            pool,
            0,
            &mut results,
            vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WITH_AVAILABILITY,
        )?;
    }
    check(
        results[0][1] != 0 && results[1][1] != 0,
        "timestamps available",
    )?;
    check(results[1][0] >= results[0][0], "timestamps ordered")?;
    let copied = copy.read();
    let word = |i: usize| u64::from_le_bytes(copied[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    check(
        word(0) == results[0][0] && word(2) == results[1][0],
        "copied timestamps",
    )?;
    check(g.timestamp_period > 0.0, "timestamp period")?;
    g.destroy_pipe(p);
    g.destroy_buf(buf);
    g.destroy_buf(copy);
    // SAFETY: no pending work uses the pool.
    unsafe { g.device.destroy_query_pool(pool, None) };
    Ok(b"timestamps ok".to_vec())
}

/// The name as a C string (for logs).
pub fn cstr_lossy(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}
