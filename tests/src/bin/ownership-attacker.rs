//! A hostile Vulkan application for `tests/tests/ownership.rs`: one instance, two
//! devices, and a command of device A that names an object of device B — invalid
//! usage the host driver does not check (on lavapipe it silently writes B's memory
//! from A's queue; on a real GPU it is a fault). Run through Venus only.
//!
//! Scenarios (one on the command line):
//! - `fill`: a command buffer of device A records `vkCmdFillBuffer` into a buffer of
//!   device B, and is submitted on A's queue;
//! - `copy`: `vkCmdCopyBuffer` from A's buffer into B's buffer, submitted on A's queue;
//! - `bind`: `vkBindBufferMemory` of A's buffer to memory allocated on device B.
//!
//! Prints `<scenario> submitted` once the invalid command was sent, then waits for the
//! work; the daemon is expected to fail the context (Mesa then aborts this process).
//! Exits 0 if the wait returns (the attack went through), 1 on a Vulkan error.

use std::io::Write;
use std::process::ExitCode;

use ash::vk;

type AppResult<T> = Result<T, Box<dyn std::error::Error>>;

const SIZE: u64 = 1 << 16;

struct Dev {
    device: ash::Device,
    queue: vk::Queue,
    pool: vk::CommandPool,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
}

fn make_device(
    instance: &ash::Instance,
    pdev: vk::PhysicalDevice,
    qfi: u32,
    mem_type: u32,
) -> AppResult<Dev> {
    let prio = [1.0f32];
    let qinfo = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(qfi)
        .queue_priorities(&prio)];
    let dinfo = vk::DeviceCreateInfo::default().queue_create_infos(&qinfo);
    // SAFETY: live physical device, valid create info.
    let device = unsafe { instance.create_device(pdev, &dinfo, None)? };
    // SAFETY: the queue was requested at creation.
    let queue = unsafe { device.get_device_queue(qfi, 0) };
    let pinfo = vk::CommandPoolCreateInfo::default().queue_family_index(qfi);
    // SAFETY: live device.
    let pool = unsafe { device.create_command_pool(&pinfo, None)? };
    let binfo = vk::BufferCreateInfo::default()
        .size(SIZE)
        .usage(vk::BufferUsageFlags::TRANSFER_DST | vk::BufferUsageFlags::TRANSFER_SRC);
    // SAFETY: live device.
    let buffer = unsafe { device.create_buffer(&binfo, None)? };
    let minfo = vk::MemoryAllocateInfo::default()
        .allocation_size(SIZE)
        .memory_type_index(mem_type);
    // SAFETY: live device.
    let memory = unsafe { device.allocate_memory(&minfo, None)? };
    Ok(Dev {
        device,
        queue,
        pool,
        buffer,
        memory,
    })
}

fn record_and_submit(a: &Dev, f: impl FnOnce(vk::CommandBuffer)) -> AppResult<vk::Fence> {
    let ainfo = vk::CommandBufferAllocateInfo::default()
        .command_pool(a.pool)
        .command_buffer_count(1);
    // SAFETY: live device and pool.
    let cb = unsafe { a.device.allocate_command_buffers(&ainfo)? }[0];
    // SAFETY: fresh command buffer.
    unsafe {
        a.device
            .begin_command_buffer(cb, &vk::CommandBufferBeginInfo::default())?
    };
    f(cb);
    // SAFETY: recording.
    unsafe { a.device.end_command_buffer(cb)? };
    // SAFETY: live device.
    let fence = unsafe {
        a.device
            .create_fence(&vk::FenceCreateInfo::default(), None)?
    };
    let cbs = [cb];
    let submit = [vk::SubmitInfo::default().command_buffers(&cbs)];
    // SAFETY: live queue; the command buffer is executable.
    unsafe { a.device.queue_submit(a.queue, &submit, fence)? };
    Ok(fence)
}

fn run(scenario: &str) -> AppResult<()> {
    // SAFETY: loads the system Vulkan loader; the Entry outlives every object below.
    let entry = unsafe { ash::Entry::load()? };
    let app = vk::ApplicationInfo::default()
        .application_name(c"vgpu-ownership-attacker")
        .api_version(vk::API_VERSION_1_1);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: valid create info.
    let instance = unsafe { entry.create_instance(&info, None)? };
    // SAFETY: live instance.
    let pdev = *unsafe { instance.enumerate_physical_devices()? }
        .first()
        .ok_or("no physical device")?;
    // SAFETY: live physical device.
    let families = unsafe { instance.get_physical_device_queue_family_properties(pdev) };
    let qfi = families
        .iter()
        .position(|f| f.queue_flags.contains(vk::QueueFlags::TRANSFER))
        .or_else(|| families.iter().position(|f| f.queue_count > 0))
        .ok_or("no queue family")?;
    let qfi = u32::try_from(qfi)?;
    // SAFETY: live physical device.
    let mem = unsafe { instance.get_physical_device_memory_properties(pdev) };
    let mem_type = mem.memory_types[..mem.memory_type_count as usize]
        .iter()
        .position(|t| {
            t.property_flags
                .contains(vk::MemoryPropertyFlags::DEVICE_LOCAL)
        })
        .ok_or("no device-local memory type")?;
    let mem_type = u32::try_from(mem_type)?;
    let a = make_device(&instance, pdev, qfi, mem_type)?;
    let b = make_device(&instance, pdev, qfi, mem_type)?;
    // SAFETY: live buffer and memory of device A.
    unsafe { a.device.bind_buffer_memory(a.buffer, a.memory, 0)? };
    // SAFETY: live buffer and memory of device B.
    unsafe { b.device.bind_buffer_memory(b.buffer, b.memory, 0)? };
    let fence = match scenario {
        "fill" => Some(record_and_submit(&a, |cb| {
            // SAFETY: recording command buffer of A; B's buffer is invalid on purpose
            // (only ever run through Venus, whose host refuses it).
            unsafe { a.device.cmd_fill_buffer(cb, b.buffer, 0, SIZE, 0xdead_beef) };
        })?),
        "copy" => Some(record_and_submit(&a, |cb| {
            let region = [vk::BufferCopy {
                src_offset: 0,
                dst_offset: 0,
                size: SIZE,
            }];
            // SAFETY: recording command buffer of A; B's buffer as the destination is
            // invalid on purpose (only ever run through Venus).
            unsafe { a.device.cmd_copy_buffer(cb, a.buffer, b.buffer, &region) };
        })?),
        "bind" => {
            let binfo = vk::BufferCreateInfo::default()
                .size(SIZE)
                .usage(vk::BufferUsageFlags::TRANSFER_DST);
            // SAFETY: live device.
            let extra = unsafe { a.device.create_buffer(&binfo, None)? };
            // SAFETY: live buffer of A; memory of device B is invalid on purpose (only
            // ever run through Venus).
            unsafe { a.device.bind_buffer_memory(extra, b.memory, 0)? };
            // A round trip so the bind has been executed before this returns.
            // SAFETY: live device.
            unsafe { a.device.device_wait_idle()? };
            None
        }
        other => return Err(format!("unknown scenario {other}").into()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{scenario} submitted")?;
    out.flush()?;
    if let Some(fence) = fence {
        // SAFETY: live fence of device A.
        unsafe { a.device.wait_for_fences(&[fence], true, 10_000_000_000)? };
    }
    writeln!(out, "{scenario} went through")?;
    Ok(())
}

fn main() -> ExitCode {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match run(&scenario) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ownership-attacker: {e}");
            ExitCode::FAILURE
        }
    }
}
