//! Device memory. Host-visible allocations are backed by a memfd the renderer maps and
//! imports with `VK_EXT_external_memory_host` (venus-wire §6.3), so a
//! RESOURCE_CREATE_BLOB for the memory's id can hand the guest the same pages at
//! offset 0.

use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    AllocateMemoryArgs, FlushMappedMemoryRangesArgs, FreeMemoryArgs,
    InvalidateMappedMemoryRangesArgs, UnmapMemoryArgs,
};

use super::bind::MemoryInfo;
use super::limits::MemoryCharge;
use super::objects::{DeviceState, HostMemory};
use super::physical_device::required;
use super::{raw, Handler, Result, VenusError, VenusExecutor};
use crate::ids::{BlobId, ResourceId};
use crate::renderer::fds::FdKind;
use crate::renderer::resource::ExportedBlob;
use crate::sys::{check_sealed, create_memfd, SharedMemory};

/// Largest single host-visible allocation backed by a memfd (guards the host against a
/// guest asking for absurd sizes before the driver can refuse).
const MAX_HOST_VISIBLE_ALLOCATION: u64 = 16 << 30;

/// RESOURCE_CREATE_BLOB with `blob_id` = a memory object id: a duplicate of its memfd.
pub(super) fn export_blob(exec: &VenusExecutor, blob: BlobId, size: u64) -> Result<ExportedBlob> {
    let mem = exec
        .lock()
        .memories
        .get(&blob.0)
        .cloned()
        .ok_or(VenusError::Invalid(
            "blob id is not host-visible device memory of this context",
        ))?;
    if size > mem.size {
        return Err(VenusError::Invalid("blob larger than its device memory"));
    }
    let fd = mem
        .fd
        .try_clone()
        .map_err(|e| VenusError::HostMemory(Box::new(e)))?;
    Ok(ExportedBlob { fd, size })
}

/// Allocates `info` (its `allocationSize` = the mapping's length, a multiple of the
/// import alignment) over `map` with `VK_EXT_external_memory_host`, after checking the
/// guest's memory type can import host pointers.
fn import_host_pointer(
    dev: &DeviceState,
    info: &vk::MemoryAllocateInfo<'_>,
    map: &SharedMemory,
) -> std::result::Result<vk::DeviceMemory, vk::Result> {
    let ptr = map.as_mut_ptr().cast::<std::ffi::c_void>();
    if let Some(props) = dev.fns.get_memory_host_pointer_properties_ext {
        let mut out = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: live device with the extension enabled; `ptr` is a live mapping.
        let r = unsafe {
            props(
                dev.device.handle(),
                vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT,
                ptr,
                &mut out,
            )
        };
        let importable = r == vk::Result::SUCCESS
            && info.memory_type_index < 32
            && out.memory_type_bits & (1 << info.memory_type_index) != 0;
        if !importable {
            return Err(vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
        }
    }
    let import = vk::ImportMemoryHostPointerInfoEXT {
        p_next: info.p_next,
        handle_type: vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT,
        p_host_pointer: ptr,
        ..Default::default()
    };
    let mut info = *info;
    info.p_next = std::ptr::from_ref(&import).cast();
    // SAFETY: live device with VK_EXT_external_memory_host enabled and a memory type
    // that accepts this pointer (checked above when the driver exposes the query); the
    // pointer is a MAP_SHARED mapping of `allocationSize` bytes aligned to the import
    // alignment (mmap is page aligned; the alignment is a page multiple on lavapipe),
    // which the caller keeps alive in `HostMemory` until after vkFreeMemory.
    unsafe { dev.device.allocate_memory(&info, None) }
}

impl Handler<'_, '_> {
    pub(super) fn allocate_memory(
        &mut self,
        args: &mut AllocateMemoryArgs<'_>,
    ) -> Result<vk::Result> {
        let id = self.new_id(args.p_memory.as_deref())?;
        let dev = self.device(args.device)?;
        let guest = required(args.p_allocate_info, "pAllocateInfo")?;
        let ty = dev
            .memory
            .memory_types_as_slice()
            .get(guest.memory_type_index as usize)
            .ok_or(VenusError::Invalid("memory type index out of range"))?;
        let host_visible = ty
            .property_flags
            .contains(vk::MemoryPropertyFlags::HOST_VISIBLE);
        let mut info = *guest;
        // SAFETY: the chain was decoded into this command's arena and is not borrowed.
        let import = unsafe { raw::import_resource_id(info.p_next) };
        // The renderer decides how memory is shared; a guest export request would
        // conflict with the host-pointer import below, and the MESA import struct is
        // the renderer's to act on.
        // SAFETY: as above.
        info.p_next = unsafe {
            raw::strip_chain(
                info.p_next,
                &[
                    vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO,
                    raw::STYPE_IMPORT_MEMORY_RESOURCE_INFO_MESA,
                ],
            )
        };
        if let Some(res) = import {
            return self.import_resource_memory(args, id, &dev, info, ResourceId(res));
        }
        let heap = ty.heap_index;
        if !(host_visible && dev.host_pointer_import) {
            let Some(charge) = self.charge(&dev, heap, guest.allocation_size) else {
                return Ok(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY);
            };
            // SAFETY: live device; `info` and its chain live across the call.
            return Ok(match unsafe { dev.device.allocate_memory(&info, None) } {
                Ok(mem) => {
                    let mut st = self.lock();
                    st.bind(
                        id,
                        vk::ObjectType::DEVICE_MEMORY,
                        mem.as_raw(),
                        args.device.as_raw(),
                    )?;
                    st.set_memory_charge(id, charge);
                    // The driver allocated exactly this many bytes.
                    st.set_memory_info(
                        id,
                        MemoryInfo {
                            size: info.allocation_size,
                            type_index: info.memory_type_index,
                        },
                    );
                    vk::Result::SUCCESS
                }
                Err(e) => e,
            });
        }
        let align = dev.min_import_alignment;
        let size = match guest
            .allocation_size
            .checked_add(align - 1)
            .map(|s| s / align * align)
        {
            Some(s) if s > 0 && s <= MAX_HOST_VISIBLE_ALLOCATION => s,
            _ => return Ok(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY),
        };
        // The memfd counts as device memory, in the bytes the host holds, and as one
        // of the VM's blobs (fds), leaving room for the blob that will export it (Mesa
        // exports every host-visible allocation it maps; a failed export would be a
        // lost connection, a failed allocation is an error the app can handle).
        let Some(charge) = self.charge(&dev, heap, size) else {
            return Ok(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY);
        };
        let Some(fd_charge) = self.exec.account.fds().try_charge_leaving(FdKind::Blob, 1) else {
            return Ok(vk::Result::ERROR_OUT_OF_HOST_MEMORY);
        };
        let fd = match create_memfd("vgpu-device-memory", size) {
            Ok(fd) => fd,
            Err(_) => return Ok(vk::Result::ERROR_OUT_OF_HOST_MEMORY),
        };
        let map = match SharedMemory::map(&fd, size) {
            Ok(m) => m,
            Err(_) => return Ok(vk::Result::ERROR_OUT_OF_HOST_MEMORY),
        };
        // Binds may use the guest's size; the host allocation (rounded up) is larger.
        let bindable = MemoryInfo {
            size: guest.allocation_size,
            type_index: guest.memory_type_index,
        };
        info.allocation_size = size;
        self.allocate_over(
            (args.device, id),
            &dev,
            &info,
            HostMemory {
                fd,
                _map: map,
                size,
                _fd_charge: Some(fd_charge),
            },
            bindable,
            Some(charge),
        )
    }

    /// Charges `bytes` on host heap `heap` to this context's VM, or logs (rate
    /// limited) that its quota is reached.
    fn charge(&self, dev: &DeviceState, heap: u32, bytes: u64) -> Option<MemoryCharge> {
        let account = &self.exec.account;
        let charge = account.try_charge(&dev.memory, heap, bytes);
        if charge.is_none() {
            account.warn_quota(self.exec.ctx, &dev.memory, bytes);
        }
        charge
    }

    /// `VkImportMemoryResourceInfoMESA`: device memory over the pages of a resource
    /// attached to this context (a blob another context exported, attached with
    /// CTX_ATTACH_RESOURCE; or shared memory), imported with
    /// `VK_EXT_external_memory_host`. The memory can be exported again as a blob. Not
    /// charged to the quota: the pages belong to a resource already paid for.
    fn import_resource_memory(
        &mut self,
        args: &AllocateMemoryArgs<'_>,
        id: u64,
        dev: &DeviceState,
        mut info: vk::MemoryAllocateInfo<'_>,
        res: ResourceId,
    ) -> Result<vk::Result> {
        let Some(resource) = self.stream.resource(res) else {
            return Ok(vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
        };
        if !dev.host_pointer_import {
            return Ok(vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
        }
        let align = dev.min_import_alignment;
        let size = match info
            .allocation_size
            .checked_add(align - 1)
            .map(|s| s / align * align)
        {
            // The mapping covers the resource only; a larger import would read past it.
            Some(s) if s > 0 && s <= resource.size() => s,
            _ => return Ok(vk::Result::ERROR_INVALID_EXTERNAL_HANDLE),
        };
        // The duplicate fd counts as one of the VM's blobs.
        let Some(fd_charge) = self.exec.account.fds().try_charge(FdKind::Blob) else {
            return Ok(vk::Result::ERROR_OUT_OF_HOST_MEMORY);
        };
        let Ok(fd) = resource.fd().try_clone() else {
            return Ok(vk::Result::ERROR_OUT_OF_HOST_MEMORY);
        };
        // The resource's fd is shared with clients (and, for blobs another context
        // exported, came through the executor seam): map it only if nobody can
        // truncate it under the mapping. A refusal fails the context with one line.
        check_sealed(&fd, size).map_err(|e| VenusError::UnsafeFd {
            resource: res,
            source: e,
        })?;
        let Ok(map) = SharedMemory::map(&fd, size) else {
            return Ok(vk::Result::ERROR_OUT_OF_HOST_MEMORY);
        };
        // Binds may use the guest's size, which the rounded-up import (no larger than
        // the resource) covers.
        let bindable = MemoryInfo {
            size: info.allocation_size,
            type_index: info.memory_type_index,
        };
        info.allocation_size = size;
        self.allocate_over(
            (args.device, id),
            dev,
            &info,
            HostMemory {
                fd,
                _map: map,
                size,
                _fd_charge: Some(fd_charge),
            },
            bindable,
            None,
        )
    }

    /// Allocates `info` over `host`'s mapping and records it as guest memory `id`
    /// (exportable as a blob) whose binds may use `bindable` (never more than `host`),
    /// with what it costs its VM (`None` for imports, which cost nothing).
    fn allocate_over(
        &self,
        (device, id): (vk::Device, u64),
        dev: &DeviceState,
        info: &vk::MemoryAllocateInfo<'_>,
        host: HostMemory,
        bindable: MemoryInfo,
        charge: Option<MemoryCharge>,
    ) -> Result<vk::Result> {
        let bindable = MemoryInfo {
            size: bindable.size.min(host.size),
            ..bindable
        };
        match import_host_pointer(dev, info, &host._map) {
            Ok(mem) => {
                let mut st = self.lock();
                st.bind(
                    id,
                    vk::ObjectType::DEVICE_MEMORY,
                    mem.as_raw(),
                    device.as_raw(),
                )?;
                st.memories.insert(id, Arc::new(host));
                st.set_memory_info(id, bindable);
                if let Some(charge) = charge {
                    st.set_memory_charge(id, charge);
                }
                Ok(vk::Result::SUCCESS)
            }
            Err(e) => Ok(e),
        }
    }

    pub(super) fn free_memory(&mut self, args: &mut FreeMemoryArgs<'_>) -> Result<()> {
        let dev = self.device(args.device)?;
        let raw_mem = args.memory.as_raw();
        if raw_mem == 0 {
            return Ok(());
        }
        // Keep the mapping alive until the driver has let go of the memory.
        let (backing, charge, host) = {
            let mut st = self.lock();
            let id = st.guest_id(vk::ObjectType::DEVICE_MEMORY, raw_mem);
            let backing = id.and_then(|id| st.memories.get(&id).cloned());
            // The VM's quota gets the memory back when the host frees it, not when
            // the guest id goes (a buffer or a submission may hold it longer).
            let charge = id.and_then(|id| st.take_memory_charge(id));
            let host = st.unbind_host(vk::ObjectType::DEVICE_MEMORY, raw_mem);
            (backing, charge, host)
        };
        let Some(host) = host else {
            // Freed by another ring meanwhile.
            return Ok(());
        };
        let memory = args.memory;
        // The host free runs when the last user lets go: buffers and images bound to
        // it, submissions in flight, commands on other rings.
        host.destroy_on_drop(Box::new(move || {
            // SAFETY: live memory of a live device (`dev` holds it), out of the
            // tables, and no buffer, image or submission uses it any more.
            unsafe { dev.device.free_memory(memory, None) };
            drop(backing);
            drop(charge);
        }));
        Ok(())
    }

    pub(super) fn unmap_memory(&mut self, args: &mut UnmapMemoryArgs<'_>) -> Result<()> {
        // Guests map blobs, never host mappings: nothing to do.
        self.device(args.device)?;
        Ok(())
    }

    pub(super) fn flush_mapped_memory_ranges(
        &mut self,
        args: &mut FlushMappedMemoryRangesArgs<'_>,
    ) -> Result<vk::Result> {
        // Every host-visible type the guest can map is coherent here.
        self.device(args.device)?;
        Ok(vk::Result::SUCCESS)
    }

    pub(super) fn invalidate_mapped_memory_ranges(
        &mut self,
        args: &mut InvalidateMappedMemoryRangesArgs<'_>,
    ) -> Result<vk::Result> {
        self.device(args.device)?;
        Ok(vk::Result::SUCCESS)
    }
}
