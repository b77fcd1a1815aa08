//! Venus commands some device tests send on a context stream, encoded with
//! `vulkan_proto` from ordinary `ash` values. No replies are requested, so no reply
//! stream is needed; output ids are the guest's choice (the constants below).
//!
//! `setup(ring)` creates an instance, a device with timeline semaphores, queue 0 bound
//! to `ring` with `VkDeviceQueueTimelineInfoMESA`, a timeline semaphore at 0, and a
//! submission on the queue that waits for the semaphore to reach 1 — so the queue is
//! busy until `signal()` runs.
//!
//! Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use ash::vk::{self, Handle};
use vulkan_proto::args::{
    AllocateMemoryArgs, CreateDeviceArgs, CreateInstanceArgs, CreateSemaphoreArgs,
    DestroyDeviceArgs, DestroyInstanceArgs, DestroySemaphoreArgs, EnumeratePhysicalDevicesArgs,
    GetDeviceQueue2Args, QueueSubmitArgs, QueueWaitIdleArgs, SignalSemaphoreArgs,
};
use vulkan_proto::cs::Encoder;
use vulkan_proto::CommandFlags;

pub const INSTANCE: u64 = 0x10;
pub const PHYSICAL: u64 = 0x11;
pub const DEVICE: u64 = 0x12;
pub const QUEUE: u64 = 0x13;
pub const SEMAPHORE: u64 = 0x14;
/// `VK_STRUCTURE_TYPE_DEVICE_QUEUE_TIMELINE_INFO_MESA`.
const STYPE_QUEUE_TIMELINE: i32 = 1_000_384_005;

/// Encodes vkCreateInstance (Vulkan 1.3), vkEnumeratePhysicalDevices (the first one)
/// and vkCreateDevice with one queue of family 0 (timeline semaphores enabled when
/// asked); returns the device id.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one encode sequence, one contract
fn instance_and_device(e: &mut Encoder, timeline_semaphores: bool) -> vk::Device {
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
    let ici = vk::InstanceCreateInfo::default().application_info(&app);
    let mut instance = vk::Instance::from_raw(INSTANCE);
    let mut count = 1u32;
    let mut physical = [vk::PhysicalDevice::from_raw(PHYSICAL)];
    let priorities = [1.0f32];
    let qci = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(0)
        .queue_priorities(&priorities)];
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
    let mut dci = vk::DeviceCreateInfo::default().queue_create_infos(&qci);
    if timeline_semaphores {
        dci = dci.push_next(&mut f12);
    }
    let mut device = vk::Device::from_raw(DEVICE);
    // SAFETY: every pointer in these arguments refers to the locals above, alive for
    // the whole encode; counts match their arrays.
    unsafe {
        CreateInstanceArgs {
            p_create_info: Some(&ici),
            p_instance: Some(&mut instance),
            _marker: Default::default(),
        }
        .encode(e, CommandFlags::NONE);
        EnumeratePhysicalDevicesArgs {
            instance,
            p_physical_device_count: Some(&mut count),
            p_physical_devices: Some(&mut physical),
            _marker: Default::default(),
        }
        .encode(e, CommandFlags::NONE);
        CreateDeviceArgs {
            physical_device: physical[0],
            p_create_info: Some(&dci),
            p_device: Some(&mut device),
            _marker: Default::default(),
        }
        .encode(e, CommandFlags::NONE);
    }
    device
}

/// Instance, device with timeline semaphores, queue 0 bound to `ring`, timeline
/// semaphore at 0, and a submission on the queue that waits for it to reach 1.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one encode sequence, one contract
pub fn setup(ring: u32) -> Vec<u8> {
    let mut e = Encoder::new();
    let device = instance_and_device(&mut e, true);
    let timeline = vulkan_proto::generated::types::DeviceQueueTimelineInfoMESA {
        s_type: vk::StructureType::from_raw(STYPE_QUEUE_TIMELINE),
        ring_idx: ring,
        ..Default::default()
    };
    let mut qi = vk::DeviceQueueInfo2::default().queue_family_index(0);
    qi.p_next = std::ptr::from_ref(&timeline).cast();
    let queue = get_queue(&mut e, device, &qi);
    let mut tci = vk::SemaphoreTypeCreateInfo::default()
        .semaphore_type(vk::SemaphoreType::TIMELINE)
        .initial_value(0);
    let sci = vk::SemaphoreCreateInfo::default().push_next(&mut tci);
    let mut semaphore = vk::Semaphore::from_raw(SEMAPHORE);
    let waits = [vk::Semaphore::from_raw(SEMAPHORE)];
    let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
    let values = [1u64];
    let mut tsi = vk::TimelineSemaphoreSubmitInfo::default().wait_semaphore_values(&values);
    let submit = [vk::SubmitInfo::default()
        .wait_semaphores(&waits)
        .wait_dst_stage_mask(&stages)
        .push_next(&mut tsi)];
    // SAFETY: every pointer in these arguments refers to the locals above, alive
    // for the whole encode; counts match their arrays.
    unsafe {
        CreateSemaphoreArgs {
            device,
            p_create_info: Some(&sci),
            p_semaphore: Some(&mut semaphore),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    submit_one(&mut e, queue, &submit[0]);
    e.into_bytes()
}

/// `vkGetDeviceQueue2(device, qi)` into queue id [`QUEUE`].
fn get_queue(e: &mut Encoder, device: vk::Device, qi: &vk::DeviceQueueInfo2<'_>) -> vk::Queue {
    let mut queue = vk::Queue::from_raw(QUEUE);
    // SAFETY: `qi` (and its chain, the caller's) and `queue` outlive the encode.
    unsafe {
        GetDeviceQueue2Args {
            device,
            p_queue_info: Some(qi),
            p_queue: Some(&mut queue),
            _marker: Default::default(),
        }
        .encode(e, CommandFlags::NONE);
    }
    queue
}

/// `vkQueueSubmit(queue, 1, submit, VK_NULL_HANDLE)`.
fn submit_one(e: &mut Encoder, queue: vk::Queue, submit: &vk::SubmitInfo<'_>) {
    // SAFETY: `submit` and the arrays it points to (the caller's) outlive the encode.
    unsafe {
        QueueSubmitArgs {
            queue,
            submit_count: 1,
            p_submits: Some(std::slice::from_ref(submit)),
            fence: vk::Fence::null(),
            _marker: Default::default(),
        }
        .encode(e, CommandFlags::NONE);
    }
}

/// `vkSignalSemaphore(semaphore, 1)`: lets the queued submission run.
pub fn signal() -> Vec<u8> {
    let mut e = Encoder::new();
    let info = vk::SemaphoreSignalInfo::default()
        .semaphore(vk::Semaphore::from_raw(SEMAPHORE))
        .value(1);
    // SAFETY: `info` lives across the encode.
    unsafe {
        SignalSemaphoreArgs {
            device: vk::Device::from_raw(DEVICE),
            p_signal_info: Some(&info),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    e.into_bytes()
}

/// Destroys what `setup` created (after the queue went idle).
#[allow(clippy::multiple_unsafe_ops_per_block)] // one encode sequence, one contract
pub fn teardown() -> Vec<u8> {
    let mut e = Encoder::new();
    let device = vk::Device::from_raw(DEVICE);
    // SAFETY: no pointers besides NULL allocators.
    unsafe {
        DestroySemaphoreArgs {
            device,
            semaphore: vk::Semaphore::from_raw(SEMAPHORE),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
        DestroyDeviceArgs {
            device,
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
        DestroyInstanceArgs {
            instance: vk::Instance::from_raw(INSTANCE),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    e.into_bytes()
}

/// Points the Vulkan loader at lavapipe unless the caller chose a driver. Call before
/// the first Vulkan use in the process; the other tests of a binary that calls it must
/// not load the Vulkan loader themselves.
pub fn use_lavapipe() {
    if std::env::var_os("VK_DRIVER_FILES").is_none() {
        std::env::set_var("VK_DRIVER_FILES", "/usr/share/vulkan/icd.d/lvp_icd.json");
    }
}

/// An instance and a device (no queue use), then `vkAllocateMemory(mem, size)` of
/// memory type 0 (host-visible on lavapipe), importing resource `import` with
/// `VkImportMemoryResourceInfoMESA` when given.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one encode sequence, one contract
pub fn device_with_memory(mem: u64, size: u64, import: Option<u32>) -> Vec<u8> {
    let mut e = Encoder::new();
    let device = instance_and_device(&mut e, false);
    let resource = vulkan_proto::generated::types::ImportMemoryResourceInfoMESA {
        resource_id: import.unwrap_or(0),
        ..Default::default()
    };
    let mut mai = vk::MemoryAllocateInfo::default()
        .allocation_size(size)
        .memory_type_index(0);
    if import.is_some() {
        mai.p_next = std::ptr::from_ref(&resource).cast();
    }
    let mut memory = vk::DeviceMemory::from_raw(mem);
    // SAFETY: every pointer in these arguments refers to the locals above, alive for
    // the whole encode.
    unsafe {
        AllocateMemoryArgs {
            device,
            p_allocate_info: Some(&mai),
            p_memory: Some(&mut memory),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    e.into_bytes()
}

/// `vkQueueWaitIdle` on `setup`'s queue.
pub fn queue_wait_idle() -> Vec<u8> {
    let mut e = Encoder::new();
    // SAFETY: no pointers.
    unsafe {
        QueueWaitIdleArgs {
            queue: vk::Queue::from_raw(QUEUE),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    e.into_bytes()
}

/// Command pool and command buffer ids of [`dispatch_without_pipeline`].
pub const POOL: u64 = 0x30;
pub const COMMAND_BUFFER: u64 = 0x31;

/// A device, a command buffer with a vkCmdDispatch recorded while no compute pipeline
/// is bound (invalid usage: lavapipe dereferences the NULL pipeline when the batch
/// runs), submitted, then vkQueueWaitIdle.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one encode sequence, one contract
pub fn dispatch_without_pipeline() -> Vec<u8> {
    use vulkan_proto::args::{
        AllocateCommandBuffersArgs, BeginCommandBufferArgs, CmdDispatchArgs, CreateCommandPoolArgs,
        EndCommandBufferArgs,
    };
    let mut e = Encoder::new();
    let device = instance_and_device(&mut e, false);
    let qi = vk::DeviceQueueInfo2::default().queue_family_index(0);
    let queue = get_queue(&mut e, device, &qi);
    let pci = vk::CommandPoolCreateInfo::default().queue_family_index(0);
    let mut pool = vk::CommandPool::from_raw(POOL);
    let aci = vk::CommandBufferAllocateInfo::default()
        .command_pool(vk::CommandPool::from_raw(POOL))
        .level(vk::CommandBufferLevel::PRIMARY)
        .command_buffer_count(1);
    let mut cbs = [vk::CommandBuffer::from_raw(COMMAND_BUFFER)];
    let cb = vk::CommandBuffer::from_raw(COMMAND_BUFFER);
    let bi = vk::CommandBufferBeginInfo::default();
    let cb_list = [cb];
    let submit = [vk::SubmitInfo::default().command_buffers(&cb_list)];
    // SAFETY: every pointer in these arguments refers to the locals above, alive for
    // the whole encode; counts match their arrays.
    unsafe {
        CreateCommandPoolArgs {
            device,
            p_create_info: Some(&pci),
            p_command_pool: Some(&mut pool),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
        AllocateCommandBuffersArgs {
            device,
            p_allocate_info: Some(&aci),
            p_command_buffers: Some(&mut cbs),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
        BeginCommandBufferArgs {
            command_buffer: cb,
            p_begin_info: Some(&bi),
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
        CmdDispatchArgs {
            command_buffer: cb,
            group_count_x: 1,
            group_count_y: 1,
            group_count_z: 1,
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
        EndCommandBufferArgs {
            command_buffer: cb,
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    submit_one(&mut e, queue, &submit[0]);
    // SAFETY: no pointers.
    unsafe {
        QueueWaitIdleArgs {
            queue,
            _marker: Default::default(),
        }
        .encode(&mut e, CommandFlags::NONE);
    }
    e.into_bytes()
}
