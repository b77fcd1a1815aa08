//! Images, image views and samplers: id-to-handle wrappers, and memory binds checked
//! before the driver (`bind.rs`).

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::GetDeviceImageSubresourceLayoutKHRArgs;
use vulkan_proto::args::{
    BindImageMemory2Args, BindImageMemoryArgs, CreateImageArgs, CreateImageViewArgs,
    GetDeviceImageMemoryRequirementsArgs, GetDeviceImageSparseMemoryRequirementsArgs,
    GetImageSparseMemoryRequirements2Args, GetImageSparseMemoryRequirementsArgs,
    GetImageSubresourceLayoutArgs,
};

use super::bind::BindTarget;
use super::bounds::ImageInfo;
use super::objects::DeviceState;
use super::physical_device::{count_array, required};
use super::{raw, Handler, Result, VenusError};

/// The plane aspects, by plane index.
const PLANE_ASPECTS: [vk::ImageAspectFlags; 3] = [
    vk::ImageAspectFlags::PLANE_0,
    vk::ImageAspectFlags::PLANE_1,
    vk::ImageAspectFlags::PLANE_2,
];

impl Handler<'_, '_> {
    pub(super) fn create_image(&mut self, args: &mut CreateImageArgs<'_>) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_image.as_deref())?;
        // SAFETY: live device; `info` and its chain live in the arena across the call.
        let r = self.create_child(args.device, args.p_image.as_deref(), |d| unsafe {
            d.device.create_image(info, None)
        })?;
        self.lock().set_image_info(id, ImageInfo::new(info));
        if r == vk::Result::SUCCESS {
            self.record_image_requirements(args.device, id, info)?;
        }
        Ok(r)
    }

    /// Asks the host driver for the memory requirements of the image just bound to guest
    /// `id` (per plane if it is disjoint) and records them for the bind checks.
    fn record_image_requirements(
        &self,
        device: vk::Device,
        id: u64,
        info: &vk::ImageCreateInfo<'_>,
    ) -> Result<()> {
        let dev = self.device(device)?;
        let Some(raw) = self.lock().lookup(vk::ObjectType::IMAGE, id) else {
            return Ok(());
        };
        let image = vk::Image::from_raw(raw);
        let planes = vulkan_proto::format_info(info.format).map_or(0, |f| f.planes.len());
        let reqs = if info.flags.contains(vk::ImageCreateFlags::DISJOINT) && planes > 1 {
            PLANE_ASPECTS
                .iter()
                .take(planes)
                .map(|aspect| {
                    let mut plane =
                        vk::ImagePlaneMemoryRequirementsInfo::default().plane_aspect(*aspect);
                    let query = vk::ImageMemoryRequirementsInfo2::default()
                        .image(image)
                        .push_next(&mut plane);
                    let mut out = vk::MemoryRequirements2::default();
                    // SAFETY: a live disjoint multi-planar image of this live device; the
                    // chains are local and well formed.
                    unsafe { dev.device.get_image_memory_requirements2(&query, &mut out) };
                    out.memory_requirements
                })
                .collect()
        } else {
            // SAFETY: a live, non-disjoint image of this live device, created just now.
            vec![unsafe { dev.device.get_image_memory_requirements(image) }]
        };
        self.lock().set_bind_target(id, BindTarget::new(reqs));
        Ok(())
    }

    /// Checks binds of (image, plane aspect, memory, offset) before the driver (see
    /// `bind.rs`): a disjoint image binds each plane on its own and names it.
    fn check_image_binds(
        &self,
        dev: &DeviceState,
        binds: impl IntoIterator<
            Item = (
                vk::Image,
                Option<vk::ImageAspectFlags>,
                vk::DeviceMemory,
                u64,
            ),
        >,
    ) -> Result<()> {
        let device = dev.device.handle().as_raw();
        let mut st = self.lock();
        for (image, aspect, memory, offset) in binds {
            let disjoint = st.bind_planes(image.as_raw()) > 1;
            let plane = match (disjoint, aspect) {
                (false, None) => 0,
                (true, Some(a)) => PLANE_ASPECTS
                    .iter()
                    .position(|p| *p == a)
                    .unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            st.bind_memory(
                (vk::ObjectType::IMAGE, image.as_raw()),
                plane,
                memory.as_raw(),
                offset,
                device,
            )?;
        }
        Ok(())
    }

    pub(super) fn create_image_view(
        &mut self,
        args: &mut CreateImageViewArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_view.as_deref())?;
        let dev = self.device(args.device)?;
        self.check_owned(&dev, &[(vk::ObjectType::IMAGE, info.image.as_raw())])?;
        let view = self.image_info(info.image)?.view(&info.subresource_range)?;
        // SAFETY: live device; `info` lives in the arena and holds translated handles;
        // its range lies inside the image.
        let r = self.create_child(args.device, args.p_view.as_deref(), |d| unsafe {
            d.device.create_image_view(info, None)
        })?;
        self.lock().set_view_info(id, view);
        Ok(r)
    }

    pub(super) fn get_device_image_memory_requirements(
        &mut self,
        args: &mut GetDeviceImageMemoryRequirementsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        if info.p_create_info.is_null() {
            return Err(VenusError::Null {
                what: "pCreateInfo",
            });
        }
        let out = required(
            args.p_memory_requirements.as_deref_mut(),
            "pMemoryRequirements",
        )?;
        // SAFETY: live device; chains live in the arena.
        unsafe { dev.device.get_device_image_memory_requirements(info, out) };
        Ok(())
    }

    pub(super) fn get_image_sparse_memory_requirements(
        &mut self,
        args: &mut GetImageSparseMemoryRequirementsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let (count, ptr) = count_array(
            args.p_sparse_memory_requirement_count.as_deref_mut(),
            args.p_sparse_memory_requirements.as_deref_mut(),
        )?;
        // SAFETY: live device and image; `ptr` is NULL or holds `*count` elements.
        unsafe {
            (dev.device.fp_v1_0().get_image_sparse_memory_requirements)(
                dev.device.handle(),
                args.image,
                count,
                ptr,
            );
        }
        Ok(())
    }

    pub(super) fn get_image_sparse_memory_requirements2(
        &mut self,
        args: &mut GetImageSparseMemoryRequirements2Args<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        let (count, ptr) = count_array(
            args.p_sparse_memory_requirement_count.as_deref_mut(),
            args.p_sparse_memory_requirements.as_deref_mut(),
        )?;
        // SAFETY: live device; `ptr` is NULL or holds `*count` elements.
        unsafe {
            (dev.device.fp_v1_1().get_image_sparse_memory_requirements2)(
                dev.device.handle(),
                info,
                count,
                ptr,
            );
        }
        Ok(())
    }

    pub(super) fn get_device_image_sparse_memory_requirements(
        &mut self,
        args: &mut GetDeviceImageSparseMemoryRequirementsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let info = required(args.p_info, "pInfo")?;
        if info.p_create_info.is_null() {
            return Err(VenusError::Null {
                what: "pCreateInfo",
            });
        }
        let (count, ptr) = count_array(
            args.p_sparse_memory_requirement_count.as_deref_mut(),
            args.p_sparse_memory_requirements.as_deref_mut(),
        )?;
        // SAFETY: live device; `ptr` is NULL or holds `*count` elements.
        unsafe {
            (dev.device
                .fp_v1_3()
                .get_device_image_sparse_memory_requirements)(
                dev.device.handle(),
                info,
                count,
                ptr,
            );
        }
        Ok(())
    }

    pub(super) fn bind_image_memory(
        &mut self,
        args: &mut BindImageMemoryArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        self.check_image_binds(&dev, [(args.image, None, args.memory, args.memory_offset)])?;
        // SAFETY: live device, image and memory (translated handles); the range lies
        // inside the allocation (checked above).
        Ok(unsafe {
            (dev.device.fp_v1_0().bind_image_memory)(
                dev.device.handle(),
                args.image,
                args.memory,
                args.memory_offset,
            )
        })
    }

    pub(super) fn bind_image_memory2(
        &mut self,
        args: &mut BindImageMemory2Args<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let infos = args.p_bind_infos.unwrap_or(&[]);
        self.check_image_binds(
            &dev,
            infos.iter().map(|i| {
                // SAFETY: the chain was decoded into this command's arena.
                let aspect = unsafe { raw::bind_plane_aspect(i.p_next) };
                (i.image, aspect, i.memory, i.memory_offset)
            }),
        )?;
        // SAFETY: live device; the infos live in the arena with translated handles;
        // every range lies inside its allocation (checked above).
        Ok(match unsafe { dev.device.bind_image_memory2(infos) } {
            Ok(()) => vk::Result::SUCCESS,
            Err(e) => e,
        })
    }

    pub(super) fn get_image_subresource_layout(
        &mut self,
        args: &mut GetImageSubresourceLayoutArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let sub = required(args.p_subresource, "pSubresource")?;
        self.check_owned(&dev, &[(vk::ObjectType::IMAGE, args.image.as_raw())])?;
        self.image_info(args.image)?
            .check_subresource(sub.mip_level, sub.array_layer)?;
        let out = required(args.p_layout.as_deref_mut(), "pLayout")?;
        // SAFETY: live device and image; the subresource exists.
        *out = unsafe { dev.device.get_image_subresource_layout(args.image, *sub) };
        Ok(())
    }
}

impl Handler<'_, '_> {
    pub(super) fn get_device_image_subresource_layout_khr(
        &mut self,
        args: &mut GetDeviceImageSubresourceLayoutKHRArgs<'_>,
    ) -> Result<()> {
        let info = required(args.p_info, "pInfo")?;
        if info.p_create_info.is_null() || info.p_subresource.is_null() {
            return Err(VenusError::Null {
                what: "pCreateInfo or pSubresource",
            });
        }
        let out = required(args.p_layout.as_deref_mut(), "pLayout")?;
        let (dev, f) = self.dev_fn(
            args.device,
            |t| t.get_device_image_subresource_layout_khr,
            "vkGetDeviceImageSubresourceLayoutKHR",
        )?;
        // SAFETY: live device; input and output chains live in the arena.
        unsafe { f(dev.device.handle(), info, out) };
        Ok(())
    }
}
