//! A plain Vulkan application that probes the device-memory quota:
//! `quota-app <chunk MiB> [hold]`.
//!
//! Prints `heap <bytes>` (heap 0 of the first physical device), then allocates
//! host-visible chunks of `<chunk MiB>` until one fails (at most 64), writing and reading
//! back each through a mapping, printing `allocated <n>` and `failed <VkResult>`. With
//! `hold` it prints `holding` and keeps the memory until stdin closes. Then it frees one
//! chunk, allocates it again and prints `realloc <VkResult>`. Exits 1 on a setup failure.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use ash::vk;

type AppResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Most chunks tried.
const MAX_CHUNKS: usize = 64;

/// Allocates `size` bytes of `type_index` and checks a word written through a mapping
/// reads back; errors name the `VkResult`.
fn allocate(device: &ash::Device, type_index: u32, size: u64) -> AppResult<vk::DeviceMemory> {
    let info = vk::MemoryAllocateInfo::default()
        .allocation_size(size)
        .memory_type_index(type_index);
    // SAFETY: live device, valid allocate info.
    let mem = unsafe { device.allocate_memory(&info, None) }.map_err(|r| format!("{r:?}"))?;
    // SAFETY: host-visible memory of `size` bytes, not mapped yet.
    let ptr = unsafe { device.map_memory(mem, 0, size, vk::MemoryMapFlags::empty()) }
        .map_err(|r| format!("vkMapMemory {r:?}"))?;
    let last = usize::try_from(size / 4 - 1)?;
    // SAFETY: the mapping covers `size` bytes, is at least 4-byte aligned and nothing
    // else (no GPU work) uses the memory while the slice lives.
    let words = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u32>(), last + 1) };
    words[0] = 0x5eed;
    words[last] = 0xf00d;
    let back = (words[0], words[last]);
    // SAFETY: mapped above.
    unsafe { device.unmap_memory(mem) };
    if back != (0x5eed, 0xf00d) {
        return Err("mapped memory did not read back".into());
    }
    Ok(mem)
}

fn run(chunk_mib: u64, hold: bool) -> AppResult<()> {
    let mut out = std::io::stdout().lock();
    // SAFETY: loads the system Vulkan loader; the Entry keeps it loaded.
    let entry = unsafe { ash::Entry::load()? };
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a valid create info.
    let instance = unsafe { entry.create_instance(&info, None)? };
    // SAFETY: live instance.
    let pdev = *unsafe { instance.enumerate_physical_devices()? }
        .first()
        .ok_or("no physical device")?;
    // SAFETY: live physical device.
    let memory = unsafe { instance.get_physical_device_memory_properties(pdev) };
    writeln!(out, "heap {}", memory.memory_heaps[0].size)?;
    let want = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
    let type_index = memory
        .memory_types_as_slice()
        .iter()
        .position(|t| t.property_flags.contains(want))
        .ok_or("no host-visible coherent memory type")?;
    let type_index = u32::try_from(type_index)?;
    let prio = [1.0f32];
    let qinfo = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(0)
        .queue_priorities(&prio)];
    let dinfo = vk::DeviceCreateInfo::default().queue_create_infos(&qinfo);
    // SAFETY: live physical device, valid create info.
    let device = unsafe { instance.create_device(pdev, &dinfo, None)? };
    let size = chunk_mib << 20;
    let mut held = Vec::new();
    let mut failure = None;
    while held.len() < MAX_CHUNKS {
        match allocate(&device, type_index, size) {
            Ok(m) => held.push(m),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    writeln!(out, "allocated {}", held.len())?;
    writeln!(out, "failed {}", failure.as_deref().unwrap_or("none"))?;
    if hold {
        writeln!(out, "holding")?;
        out.flush()?;
        for line in std::io::stdin().lock().lines() {
            line?;
        }
    }
    let realloc = match held.pop() {
        Some(m) => {
            // SAFETY: live, unmapped memory nothing uses.
            unsafe { device.free_memory(m, None) };
            match allocate(&device, type_index, size) {
                Ok(m) => {
                    held.push(m);
                    "SUCCESS".to_owned()
                }
                Err(e) => e.to_string(),
            }
        }
        None => "none".to_owned(),
    };
    writeln!(out, "realloc {realloc}")?;
    for m in held {
        // SAFETY: live, unmapped memory nothing uses.
        unsafe { device.free_memory(m, None) };
    }
    // SAFETY: every child is gone; nothing uses the device any more.
    unsafe { device.destroy_device(None) };
    // SAFETY: its only device is destroyed; nothing uses the instance any more.
    unsafe { instance.destroy_instance(None) };
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let chunk = args.next().and_then(|a| a.parse::<u64>().ok());
    let hold = args.next().as_deref() == Some("hold");
    let Some(chunk) = chunk.filter(|&c| c > 0) else {
        let _ = writeln!(std::io::stderr(), "usage: quota-app <chunk MiB> [hold]");
        return ExitCode::FAILURE;
    };
    match run(chunk, hold) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "quota-app: {e}");
            ExitCode::FAILURE
        }
    }
}
