//! A hostile Vulkan application for `tests/tests/lifetimes.rs`: it submits long GPU
//! work and, before waiting for it, destroys what that work uses — the invalid usage
//! that made the daemon free host objects under a running queue (SIGSEGV, every client
//! lost). Run through Venus only: natively the host driver would crash this process.
//!
//! Scenarios (the command line names some; all if none):
//! - `buffers`: a long buffer copy, then vkDestroyBuffer + vkFreeMemory on both ends;
//! - `command_pool`: the same copy from its own command pool, then vkDestroyCommandPool
//!   (and the buffers);
//! - `descriptors`: a long compute dispatch through a descriptor set of its own pool,
//!   then vkFreeDescriptorSets, vkDestroyDescriptorPool, the pipeline, its layouts and
//!   the buffers the set points to;
//! - `resets`: the same dispatch, then vkResetCommandBuffer, vkResetDescriptorPool and
//!   vkBeginCommandBuffer on what it uses (the daemon holds those until the work
//!   retires).
//!
//! Each waits for its fence afterwards and prints `<scenario> done`; the work's
//! results are undefined and not checked. Exits 1 on any Vulkan error.

use std::io::Write;
use std::process::ExitCode;

use ash::vk;
use vgpu_tests::apps::{spv, AppResult, Buf, Gpu, Pipe};

const ALL: &[&str] = &["buffers", "command_pool", "descriptors", "resets"];
/// Bytes per copy and copies per submission (about 2 GiB copied: long on lavapipe).
const COPY_BYTES: u64 = 32 << 20;
const COPIES: u32 = 64;
/// saxpy elements per dispatch and dispatches per submission.
const ELEMENTS: u32 = 1 << 22;
const DISPATCHES: u32 = 48;

fn copy_regions(cb: vk::CommandBuffer, g: &Gpu, src: vk::Buffer, dst: vk::Buffer) {
    let region = [vk::BufferCopy {
        src_offset: 0,
        dst_offset: 0,
        size: COPY_BYTES,
    }];
    for _ in 0..COPIES {
        // SAFETY: recording command buffer; both buffers live and COPY_BYTES long.
        unsafe { g.device.cmd_copy_buffer(cb, src, dst, &region) };
    }
}

/// Submits `cb` with a new fence.
fn submit(g: &Gpu, cb: vk::CommandBuffer) -> AppResult<vk::Fence> {
    let fence = g.fence()?;
    g.submit(&[cb], fence)?;
    Ok(fence)
}

/// Waits for and destroys `fence`.
fn wait(g: &Gpu, fence: vk::Fence) -> AppResult<()> {
    // SAFETY: live fence.
    unsafe { g.device.wait_for_fences(&[fence], true, u64::MAX)? };
    // SAFETY: signalled.
    unsafe { g.device.destroy_fence(fence, None) };
    Ok(())
}

fn buffers(g: &Gpu) -> AppResult<()> {
    let src = g.buffer(COPY_BYTES)?;
    let dst = g.buffer(COPY_BYTES)?;
    let cb = g.record(|cb| copy_regions(cb, g, src.buffer, dst.buffer))?;
    let fence = submit(g, cb)?;
    // The attack: both buffers and their memory go while the copy runs.
    g.destroy_buf(src);
    g.destroy_buf(dst);
    wait(g, fence)
}

fn command_pool(g: &Gpu) -> AppResult<()> {
    let info = vk::CommandPoolCreateInfo::default().queue_family_index(0);
    // SAFETY: live device.
    let pool = unsafe { g.device.create_command_pool(&info, None)? };
    let ainfo = vk::CommandBufferAllocateInfo::default()
        .command_pool(pool)
        .command_buffer_count(1);
    // SAFETY: live pool.
    let cb = unsafe { g.device.allocate_command_buffers(&ainfo)? }[0];
    let src = g.buffer(COPY_BYTES)?;
    let dst = g.buffer(COPY_BYTES)?;
    let begin = vk::CommandBufferBeginInfo::default();
    // SAFETY: fresh command buffer.
    unsafe { g.device.begin_command_buffer(cb, &begin)? };
    copy_regions(cb, g, src.buffer, dst.buffer);
    // SAFETY: recording.
    unsafe { g.device.end_command_buffer(cb)? };
    let fence = submit(g, cb)?;
    // The attack: the pool (freeing the pending command buffer), then the buffers.
    // SAFETY: none (deliberately invalid: the command buffer is pending).
    unsafe { g.device.destroy_command_pool(pool, None) };
    g.destroy_buf(src);
    g.destroy_buf(dst);
    wait(g, fence)
}

/// What a submitted dispatch uses.
struct Dispatch {
    x: Buf,
    y: Buf,
    p: Pipe,
    set_layout: vk::DescriptorSetLayout,
    pool: vk::DescriptorPool,
    set: vk::DescriptorSet,
    cb: vk::CommandBuffer,
    fence: vk::Fence,
}

/// Submits a long saxpy through a descriptor set of its own pool.
fn submit_dispatch(g: &Gpu) -> AppResult<Dispatch> {
    let bytes = u64::from(ELEMENTS) * 4;
    let x = g.buffer(bytes)?;
    let y = g.buffer(bytes)?;
    let p = g.pipeline(spv::SAXPY, 2, 8, None, vk::PipelineCache::null())?;
    // A set layout identical to the pipeline's (so compatible), in a pool of our own.
    let bindings: Vec<_> = (0..2)
        .map(|i| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(i)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
        })
        .collect();
    let linfo = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
    // SAFETY: live device.
    let set_layout = unsafe { g.device.create_descriptor_set_layout(&linfo, None)? };
    let sizes = [vk::DescriptorPoolSize {
        ty: vk::DescriptorType::STORAGE_BUFFER,
        descriptor_count: 2,
    }];
    let pinfo = vk::DescriptorPoolCreateInfo::default()
        .flags(vk::DescriptorPoolCreateFlags::FREE_DESCRIPTOR_SET)
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
    let infos = [x.buffer, y.buffer].map(|b| {
        [vk::DescriptorBufferInfo {
            buffer: b,
            offset: 0,
            range: vk::WHOLE_SIZE,
        }]
    });
    let writes: Vec<_> = infos
        .iter()
        .zip(0u32..)
        .map(|(info, i)| {
            vk::WriteDescriptorSet::default()
                .dst_set(set)
                .dst_binding(i)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(info)
        })
        .collect();
    // SAFETY: live set and buffers.
    unsafe { g.device.update_descriptor_sets(&writes, &[]) };
    let mut push = 1.5f32.to_le_bytes().to_vec();
    push.extend_from_slice(&ELEMENTS.to_le_bytes());
    let cb = g.record(|cb| {
        for _ in 0..DISPATCHES {
            g.dispatch(cb, &p, set, &push, [ELEMENTS / 64, 1, 1]);
            g.barrier(cb);
        }
    })?;
    let fence = submit(g, cb)?;
    Ok(Dispatch {
        x,
        y,
        p,
        set_layout,
        pool,
        set,
        cb,
        fence,
    })
}

fn descriptors(g: &Gpu) -> AppResult<()> {
    let Dispatch {
        x,
        y,
        p,
        set_layout,
        pool,
        set,
        cb: _,
        fence,
    } = submit_dispatch(g)?;
    // The attack: the set, its pool and layout, the pipeline and the buffers.
    // SAFETY: none (deliberately invalid: a pending submission uses the set).
    unsafe { g.device.free_descriptor_sets(pool, &[set])? };
    // SAFETY: none (deliberately invalid, as above).
    unsafe { g.device.destroy_descriptor_pool(pool, None) };
    // SAFETY: layouts may go once the set and pipeline exist; valid.
    unsafe { g.device.destroy_descriptor_set_layout(set_layout, None) };
    g.destroy_pipe(p);
    g.destroy_buf(x);
    g.destroy_buf(y);
    wait(g, fence)
}

fn resets(g: &Gpu) -> AppResult<()> {
    let d = submit_dispatch(g)?;
    // The attack: reset the pending command buffer (freeing its commands) and the
    // descriptor pool (freeing the bound set), then re-record the command buffer.
    // SAFETY: none (deliberately invalid: the command buffer is pending).
    unsafe {
        g.device
            .reset_command_buffer(d.cb, vk::CommandBufferResetFlags::empty())?;
    }
    // SAFETY: none (deliberately invalid: a pending submission uses the set).
    unsafe {
        g.device
            .reset_descriptor_pool(d.pool, vk::DescriptorPoolResetFlags::empty())?;
    }
    let begin = vk::CommandBufferBeginInfo::default();
    // SAFETY: none (the command buffer may still be pending).
    unsafe { g.device.begin_command_buffer(d.cb, &begin)? };
    // SAFETY: recording.
    unsafe { g.device.end_command_buffer(d.cb)? };
    wait(g, d.fence)?;
    // SAFETY: idle now.
    unsafe { g.device.destroy_descriptor_pool(d.pool, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_descriptor_set_layout(d.set_layout, None) };
    g.destroy_pipe(d.p);
    g.destroy_buf(d.x);
    g.destroy_buf(d.y);
    Ok(())
}

fn run() -> AppResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = if args.is_empty() {
        ALL.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let g = Gpu::new()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "device {}", g.name)?;
    for name in names {
        match name {
            "buffers" => buffers(&g)?,
            "command_pool" => command_pool(&g)?,
            "descriptors" => descriptors(&g)?,
            "resets" => resets(&g)?,
            other => return Err(format!("unknown scenario {other}").into()),
        }
        writeln!(out, "{name} done")?;
        out.flush()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "lifetime-attacker: {e}");
            ExitCode::FAILURE
        }
    }
}
