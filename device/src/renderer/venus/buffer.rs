//! Buffers and buffer views: id-to-handle wrappers.

use ash::vk;
use vulkan_proto::args::{
    BindBufferMemory2Args, BindBufferMemoryArgs, CreateBufferArgs, CreateBufferViewArgs,
    DestroyBufferArgs, DestroyBufferViewArgs, GetBufferDeviceAddressArgs,
    GetBufferMemoryRequirements2Args, GetBufferMemoryRequirementsArgs,
    GetBufferOpaqueCaptureAddressArgs, GetDeviceBufferMemoryRequirementsArgs,
};

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
        Ok(r)
    }

    pub(super) fn destroy_buffer(&mut self, args: &mut DestroyBufferArgs<'_>) -> Result<()> {
        // SAFETY: a live buffer of this device, now out of the tables.
        self.destroy_child(args.device, args.buffer, |d, h| unsafe {
            d.device.destroy_buffer(h, None);
        })
    }

    pub(super) fn create_buffer_view(
        &mut self,
        args: &mut CreateBufferViewArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        // SAFETY: live device; `info` lives in the arena and holds translated handles.
        self.create_child(args.device, args.p_view.as_deref(), |d| unsafe {
            d.device.create_buffer_view(info, None)
        })
    }

    pub(super) fn destroy_buffer_view(
        &mut self,
        args: &mut DestroyBufferViewArgs<'_>,
    ) -> Result<()> {
        // SAFETY: a live buffer view of this device, now out of the tables.
        self.destroy_child(args.device, args.buffer_view, |d, h| unsafe {
            d.device.destroy_buffer_view(h, None);
        })
    }

    pub(super) fn get_buffer_memory_requirements(
        &mut self,
        args: &mut GetBufferMemoryRequirementsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let out = required(
            args.p_memory_requirements.as_deref_mut(),
            "pMemoryRequirements",
        )?;
        // SAFETY: live device and buffer.
        *out = unsafe { dev.device.get_buffer_memory_requirements(args.buffer) };
        Ok(())
    }

    pub(super) fn get_buffer_memory_requirements2(
        &mut self,
        args: &mut GetBufferMemoryRequirements2Args<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        let out = required(
            args.p_memory_requirements.as_deref_mut(),
            "pMemoryRequirements",
        )?;
        // SAFETY: live device; input and output chains live in the arena.
        unsafe { dev.device.get_buffer_memory_requirements2(info, out) };
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
        // SAFETY: live device, buffer and memory (translated handles).
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
        // SAFETY: live device; the infos live in the arena with translated handles.
        Ok(match unsafe { dev.device.bind_buffer_memory2(infos) } {
            Ok(()) => vk::Result::SUCCESS,
            Err(e) => e,
        })
    }

    pub(super) fn get_buffer_device_address(
        &mut self,
        args: &mut GetBufferDeviceAddressArgs<'_>,
    ) -> Result<u64> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        // SAFETY: live device; `info` holds a translated buffer handle.
        Ok(unsafe { dev.device.get_buffer_device_address(info) })
    }

    pub(super) fn get_buffer_opaque_capture_address(
        &mut self,
        args: &mut GetBufferOpaqueCaptureAddressArgs<'_>,
    ) -> Result<u64> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        // SAFETY: live device; `info` holds a translated buffer handle.
        Ok(unsafe { dev.device.get_buffer_opaque_capture_address(info) })
    }
}
