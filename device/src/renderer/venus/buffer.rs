//! Buffers and buffer views: id-to-handle wrappers, and memory binds checked before the
//! driver (`bind.rs`).

use ash::vk;
use vulkan_proto::args::{
    BindBufferMemory2Args, BindBufferMemoryArgs, CreateBufferArgs,
    GetDeviceBufferMemoryRequirementsArgs,
};

use ash::vk::Handle;

use super::bind::BindTarget;
use super::objects::DeviceState;
use super::physical_device::required;
use super::{Handler, Result};

impl Handler<'_, '_> {
    pub(super) fn create_buffer(&mut self, args: &mut CreateBufferArgs<'_>) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_buffer.as_deref())?;
        // SAFETY: live device; `info` and its chain live in the arena across the call.
        let r = self.create_child(args.device, args.p_buffer.as_deref(), |d| unsafe {
            d.device.create_buffer(info, None)
        })?;
        self.lock().set_buffer_size(id, info.size);
        if r == vk::Result::SUCCESS {
            self.record_buffer_requirements(args.device, id)?;
        }
        Ok(r)
    }

    /// Asks the host driver for the memory requirements of the buffer just bound to
    /// guest `id` and records them for the bind checks.
    fn record_buffer_requirements(&self, device: vk::Device, id: u64) -> Result<()> {
        let dev = self.device(device)?;
        let Some(raw) = self.lock().lookup(vk::ObjectType::BUFFER, id) else {
            return Ok(());
        };
        // SAFETY: a live buffer of this live device, created just now.
        let req = unsafe {
            dev.device
                .get_buffer_memory_requirements(vk::Buffer::from_raw(raw))
        };
        self.lock().set_bind_target(id, BindTarget::new(vec![req]));
        Ok(())
    }

    /// Checks binds of (buffer, memory, offset) before the driver (see `bind.rs`).
    fn check_buffer_binds(
        &self,
        dev: &DeviceState,
        binds: impl IntoIterator<Item = (vk::Buffer, vk::DeviceMemory, u64)>,
    ) -> Result<()> {
        let device = dev.device.handle().as_raw();
        let mut st = self.lock();
        for (buffer, memory, offset) in binds {
            st.bind_memory(
                (vk::ObjectType::BUFFER, buffer.as_raw()),
                0,
                memory.as_raw(),
                offset,
                device,
            )?;
        }
        Ok(())
    }

    pub(super) fn get_device_buffer_memory_requirements(
        &mut self,
        args: &mut GetDeviceBufferMemoryRequirementsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        if info.p_create_info.is_null() {
            return Err(super::VenusError::Null {
                what: "pCreateInfo",
            });
        }
        let out = required(
            args.p_memory_requirements.as_deref_mut(),
            "pMemoryRequirements",
        )?;
        // SAFETY: live device; input and output chains live in the arena.
        unsafe { dev.device.get_device_buffer_memory_requirements(info, out) };
        Ok(())
    }

    pub(super) fn bind_buffer_memory(
        &mut self,
        args: &mut BindBufferMemoryArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        self.check_buffer_binds(&dev, [(args.buffer, args.memory, args.memory_offset)])?;
        // SAFETY: live device, buffer and memory (translated handles); the range lies
        // inside the allocation (checked above).
        Ok(unsafe {
            (dev.device.fp_v1_0().bind_buffer_memory)(
                dev.device.handle(),
                args.buffer,
                args.memory,
                args.memory_offset,
            )
        })
    }

    pub(super) fn bind_buffer_memory2(
        &mut self,
        args: &mut BindBufferMemory2Args<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let infos = args.p_bind_infos.unwrap_or(&[]);
        self.check_buffer_binds(
            &dev,
            infos.iter().map(|i| (i.buffer, i.memory, i.memory_offset)),
        )?;
        // SAFETY: live device; the infos live in the arena with translated handles;
        // every range lies inside its allocation (checked above).
        Ok(match unsafe { dev.device.bind_buffer_memory2(infos) } {
            Ok(()) => vk::Result::SUCCESS,
            Err(e) => e,
        })
    }
}
