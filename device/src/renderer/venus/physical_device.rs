//! Physical-device queries: enumeration (guest ids bound in order), properties with the
//! API version capped to the protocol's, extension filtering, and the SYNC_FD semaphore
//! answer that lets the guest report Vulkan 1.3 (venus-wire §8).

use std::ffi::CStr;

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    EnumerateDeviceExtensionPropertiesArgs, EnumerateDeviceLayerPropertiesArgs,
    EnumeratePhysicalDeviceGroupsArgs, EnumeratePhysicalDevicesArgs,
    GetPhysicalDeviceExternalSemaphorePropertiesArgs, GetPhysicalDeviceFeatures2Args,
    GetPhysicalDeviceFeaturesArgs, GetPhysicalDeviceFormatProperties2Args,
    GetPhysicalDeviceFormatPropertiesArgs, GetPhysicalDeviceImageFormatProperties2Args,
    GetPhysicalDeviceImageFormatPropertiesArgs, GetPhysicalDeviceMemoryProperties2Args,
    GetPhysicalDeviceMemoryPropertiesArgs, GetPhysicalDeviceProperties2Args,
    GetPhysicalDevicePropertiesArgs, GetPhysicalDeviceQueueFamilyProperties2Args,
    GetPhysicalDeviceQueueFamilyPropertiesArgs, GetPhysicalDeviceSparseImageFormatProperties2Args,
    GetPhysicalDeviceSparseImageFormatPropertiesArgs, GetPhysicalDeviceToolPropertiesArgs,
};
use vulkan_proto::args::{
    GetPhysicalDeviceCalibrateableTimeDomainsEXTArgs, GetPhysicalDeviceFragmentShadingRatesKHRArgs,
};
use vulkan_proto::info;

use super::instance::{cap_api_version, fill_array, filter_extensions, has_extension};
use super::{raw, Handler, InstanceState, Result, VenusError};

/// Whether the renderer's bounds checks can size copies of `format` (it is in the
/// generated format table). Formats it cannot size are reported unsupported rather than
/// failing the context at the first copy; today that is only `VK_FORMAT_UNDEFINED`.
fn renderer_sizes(format: vk::Format) -> bool {
    vulkan_proto::format_info(format).is_some()
}

/// Device extensions listed to the guest although the host lacks them, because the
/// renderer emulates them (venus-wire §8): the guest needs SYNC_FD semaphores to
/// expose synchronization2 and so Vulkan 1.3.
pub(super) const EMULATED_DEVICE_EXTENSIONS: &[&CStr] = &[c"VK_KHR_external_semaphore_fd"];

/// Device extensions the renderer enables on the host for itself when available.
pub(super) const HOST_DEVICE_EXTENSIONS: &[&CStr] = &[c"VK_EXT_external_memory_host"];

pub(super) fn required<T>(v: Option<T>, what: &'static str) -> Result<T> {
    v.ok_or(VenusError::Null { what })
}

/// A guest count/array pair as raw driver arguments; the array (if any) must hold at
/// least `*count` elements (the decoder sizes it from the count).
pub(super) fn count_array<'x, T>(
    count: Option<&'x mut u32>,
    array: Option<&'x mut [T]>,
) -> Result<(&'x mut u32, *mut T)> {
    let count = required(count, "count")?;
    match array {
        None => Ok((count, std::ptr::null_mut())),
        Some(a) => {
            if (*count as usize) > a.len() {
                return Err(VenusError::Invalid("array shorter than its count"));
            }
            Ok((count, a.as_mut_ptr()))
        }
    }
}

fn cap_properties(p: &mut vk::PhysicalDeviceProperties) {
    p.api_version = cap_api_version(p.api_version);
}

impl Handler<'_, '_> {
    pub(super) fn enumerate_physical_devices(
        &mut self,
        args: &mut EnumeratePhysicalDevicesArgs<'_>,
    ) -> Result<vk::Result> {
        let inst = self.instance(args.instance)?;
        let count = required(
            args.p_physical_device_count.as_deref_mut(),
            "pPhysicalDeviceCount",
        )?;
        // SAFETY: the instance is live (looked up in this context's tables).
        let host = match unsafe { inst.instance.enumerate_physical_devices() } {
            Ok(v) => v,
            Err(e) => return Ok(e),
        };
        let inst_raw = inst.instance.handle().as_raw();
        let mut st = self.lock();
        for p in &host {
            st.add_physical(p.as_raw(), std::sync::Arc::clone(&inst));
        }
        let Some(out) = args.p_physical_devices.as_deref_mut() else {
            *count = u32::try_from(host.len()).unwrap_or(u32::MAX);
            return Ok(vk::Result::SUCCESS);
        };
        let n = out.len().min(*count as usize).min(host.len());
        for (slot, h) in out.iter().zip(&host).take(n) {
            let id = slot.as_raw();
            match st.lookup(vk::ObjectType::PHYSICAL_DEVICE, id) {
                Some(existing) if id != 0 && existing == h.as_raw() => {}
                Some(_) if id != 0 => {
                    return Err(VenusError::Invalid(
                        "physical device id rebound to another device",
                    ))
                }
                _ => match st.guest_id(vk::ObjectType::PHYSICAL_DEVICE, h.as_raw()) {
                    Some(_) => {
                        return Err(VenusError::Invalid(
                            "physical device already bound to another id",
                        ))
                    }
                    None => st.bind(id, vk::ObjectType::PHYSICAL_DEVICE, h.as_raw(), inst_raw)?,
                },
            }
        }
        *count = u32::try_from(n).unwrap_or(u32::MAX);
        Ok(if n < host.len() {
            vk::Result::INCOMPLETE
        } else {
            vk::Result::SUCCESS
        })
    }

    pub(super) fn enumerate_physical_device_groups(
        &mut self,
        args: &mut EnumeratePhysicalDeviceGroupsArgs<'_>,
    ) -> Result<vk::Result> {
        let inst = self.instance(args.instance)?;
        let (count, ptr) = count_array(
            args.p_physical_device_group_count.as_deref_mut(),
            args.p_physical_device_group_properties.as_deref_mut(),
        )?;
        // SAFETY: live instance; `ptr` is NULL or holds `*count` guest-shaped structs
        // (sType and pNext skeleton from the arena) the driver fills in.
        let ret = unsafe {
            (inst.instance.fp_v1_1().enumerate_physical_device_groups)(
                inst.instance.handle(),
                count,
                ptr,
            )
        };
        let n = *count as usize;
        if let Some(groups) = args.p_physical_device_group_properties.as_deref_mut() {
            let st = self.lock();
            // The guest sent id-0 temporaries: answer with the ids it bound.
            for g in groups.iter_mut().take(n) {
                let k = (g.physical_device_count as usize).min(vk::MAX_DEVICE_GROUP_SIZE);
                for p in g.physical_devices.iter_mut().take(k) {
                    let id = st
                        .guest_id(vk::ObjectType::PHYSICAL_DEVICE, p.as_raw())
                        .ok_or(VenusError::Invalid(
                            "physical device groups queried before vkEnumeratePhysicalDevices",
                        ))?;
                    *p = vk::PhysicalDevice::from_raw(id);
                }
            }
        }
        Ok(ret)
    }

    pub(super) fn get_physical_device_properties(
        &mut self,
        args: &mut GetPhysicalDevicePropertiesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_properties.as_deref_mut(), "pProperties")?;
        // SAFETY: live physical device of a live instance.
        *out = unsafe {
            inst.instance
                .get_physical_device_properties(args.physical_device)
        };
        cap_properties(out);
        Ok(())
    }

    pub(super) fn get_physical_device_properties2(
        &mut self,
        args: &mut GetPhysicalDeviceProperties2Args<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_properties.as_deref_mut(), "pProperties")?;
        // SAFETY: live physical device; `out` and its pNext skeleton live in the arena.
        unsafe {
            inst.instance
                .get_physical_device_properties2(args.physical_device, out)
        };
        cap_properties(&mut out.properties);
        Ok(())
    }

    pub(super) fn get_physical_device_features(
        &mut self,
        args: &mut GetPhysicalDeviceFeaturesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_features.as_deref_mut(), "pFeatures")?;
        // SAFETY: live physical device.
        *out = unsafe {
            inst.instance
                .get_physical_device_features(args.physical_device)
        };
        Ok(())
    }

    pub(super) fn get_physical_device_features2(
        &mut self,
        args: &mut GetPhysicalDeviceFeatures2Args<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_features.as_deref_mut(), "pFeatures")?;
        // SAFETY: live physical device; `out` and its chain live in the arena.
        unsafe {
            inst.instance
                .get_physical_device_features2(args.physical_device, out)
        };
        Ok(())
    }

    pub(super) fn get_physical_device_queue_family_properties(
        &mut self,
        args: &mut GetPhysicalDeviceQueueFamilyPropertiesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let (count, ptr) = count_array(
            args.p_queue_family_property_count.as_deref_mut(),
            args.p_queue_family_properties.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements.
        unsafe {
            (inst
                .instance
                .fp_v1_0()
                .get_physical_device_queue_family_properties)(
                args.physical_device, count, ptr
            );
        }
        Ok(())
    }

    pub(super) fn get_physical_device_queue_family_properties2(
        &mut self,
        args: &mut GetPhysicalDeviceQueueFamilyProperties2Args<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let (count, ptr) = count_array(
            args.p_queue_family_property_count.as_deref_mut(),
            args.p_queue_family_properties.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements with
        // their sType/pNext skeletons from the arena.
        unsafe {
            (inst
                .instance
                .fp_v1_1()
                .get_physical_device_queue_family_properties2)(
                args.physical_device, count, ptr
            );
        }
        Ok(())
    }

    pub(super) fn get_physical_device_memory_properties(
        &mut self,
        args: &mut GetPhysicalDeviceMemoryPropertiesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_memory_properties.as_deref_mut(), "pMemoryProperties")?;
        // SAFETY: live physical device.
        *out = unsafe {
            inst.instance
                .get_physical_device_memory_properties(args.physical_device)
        };
        // The guest sees heaps no larger than its VM's quota.
        self.exec.account.patch_heaps(out);
        Ok(())
    }

    pub(super) fn get_physical_device_memory_properties2(
        &mut self,
        args: &mut GetPhysicalDeviceMemoryProperties2Args<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_memory_properties.as_deref_mut(), "pMemoryProperties")?;
        // SAFETY: live physical device; `out` and its chain live in the arena.
        unsafe {
            inst.instance
                .get_physical_device_memory_properties2(args.physical_device, out);
        }
        // The guest sees heaps no larger than its VM's quota, and its own usage and
        // budget rather than the daemon's (VK_EXT_memory_budget).
        let host = out.memory_properties;
        // SAFETY: the output chain was decoded into this command's arena (writable, not
        // borrowed elsewhere) and the decoder built any node of the budget sType as that
        // struct.
        if let Some(budget) = unsafe { raw::memory_budget_mut(out.p_next) } {
            self.exec.account.patch_budget(&host, budget);
        }
        self.exec.account.patch_heaps(&mut out.memory_properties);
        Ok(())
    }

    pub(super) fn get_physical_device_format_properties(
        &mut self,
        args: &mut GetPhysicalDeviceFormatPropertiesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_format_properties.as_deref_mut(), "pFormatProperties")?;
        if !renderer_sizes(args.format) {
            *out = vk::FormatProperties::default();
            return Ok(());
        }
        // SAFETY: live physical device; the format is a validated enum value.
        *out = unsafe {
            inst.instance
                .get_physical_device_format_properties(args.physical_device, args.format)
        };
        Ok(())
    }

    pub(super) fn get_physical_device_format_properties2(
        &mut self,
        args: &mut GetPhysicalDeviceFormatProperties2Args<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let out = required(args.p_format_properties.as_deref_mut(), "pFormatProperties")?;
        // SAFETY: live physical device; `out` and its chain live in the arena.
        unsafe {
            inst.instance.get_physical_device_format_properties2(
                args.physical_device,
                args.format,
                out,
            );
        }
        if !renderer_sizes(args.format) {
            out.format_properties = vk::FormatProperties::default();
            let clear = |p: &mut vk::FormatProperties3<'_>| {
                p.linear_tiling_features = vk::FormatFeatureFlags2::empty();
                p.optimal_tiling_features = vk::FormatFeatureFlags2::empty();
                p.buffer_features = vk::FormatFeatureFlags2::empty();
            };
            // SAFETY: the output chain was decoded into this command's arena (writable,
            // not borrowed); a FORMAT_PROPERTIES_3 node is that struct.
            unsafe {
                raw::with_chain_node(out.p_next, vk::StructureType::FORMAT_PROPERTIES_3, clear)
            };
        }
        Ok(())
    }

    pub(super) fn get_physical_device_image_format_properties(
        &mut self,
        args: &mut GetPhysicalDeviceImageFormatPropertiesArgs<'_>,
    ) -> Result<vk::Result> {
        let inst = self.physical(args.physical_device)?;
        let out = required(
            args.p_image_format_properties.as_deref_mut(),
            "pImageFormatProperties",
        )?;
        if !renderer_sizes(args.format) {
            return Ok(vk::Result::ERROR_FORMAT_NOT_SUPPORTED);
        }
        // SAFETY: live physical device; `out` is a valid output struct.
        Ok(unsafe {
            (inst
                .instance
                .fp_v1_0()
                .get_physical_device_image_format_properties)(
                args.physical_device,
                args.format,
                args.ty,
                args.tiling,
                args.usage,
                args.flags,
                out,
            )
        })
    }

    pub(super) fn get_physical_device_image_format_properties2(
        &mut self,
        args: &mut GetPhysicalDeviceImageFormatProperties2Args<'_>,
    ) -> Result<vk::Result> {
        let inst = self.physical(args.physical_device)?;
        let info = required(args.p_image_format_info, "pImageFormatInfo")?;
        let out = required(
            args.p_image_format_properties.as_deref_mut(),
            "pImageFormatProperties",
        )?;
        if !renderer_sizes(info.format) {
            return Ok(vk::Result::ERROR_FORMAT_NOT_SUPPORTED);
        }
        // SAFETY: live physical device; input and output chains live in the arena.
        Ok(unsafe {
            (inst
                .instance
                .fp_v1_1()
                .get_physical_device_image_format_properties2)(
                args.physical_device, info, out
            )
        })
    }

    pub(super) fn get_physical_device_sparse_image_format_properties(
        &mut self,
        args: &mut GetPhysicalDeviceSparseImageFormatPropertiesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let (count, ptr) = count_array(
            args.p_property_count.as_deref_mut(),
            args.p_properties.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements.
        unsafe {
            (inst
                .instance
                .fp_v1_0()
                .get_physical_device_sparse_image_format_properties)(
                args.physical_device,
                args.format,
                args.ty,
                args.samples,
                args.usage,
                args.tiling,
                count,
                ptr,
            );
        }
        Ok(())
    }

    pub(super) fn get_physical_device_sparse_image_format_properties2(
        &mut self,
        args: &mut GetPhysicalDeviceSparseImageFormatProperties2Args<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let info = required(args.p_format_info, "pFormatInfo")?;
        let (count, ptr) = count_array(
            args.p_property_count.as_deref_mut(),
            args.p_properties.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements.
        unsafe {
            (inst
                .instance
                .fp_v1_1()
                .get_physical_device_sparse_image_format_properties2)(
                args.physical_device,
                info,
                count,
                ptr,
            );
        }
        Ok(())
    }

    /// The extension list the guest sees for a physical device.
    pub(super) fn guest_device_extensions(
        &self,
        physical_device: vk::PhysicalDevice,
    ) -> Result<std::result::Result<Vec<vk::ExtensionProperties>, vk::Result>> {
        let inst = self.physical(physical_device)?;
        // SAFETY: live physical device.
        let host = match unsafe {
            inst.instance
                .enumerate_device_extension_properties(physical_device)
        } {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut list = filter_extensions(&host);
        for name in EMULATED_DEVICE_EXTENSIONS {
            if has_extension(&list, name) {
                continue;
            }
            let Some(known) = name.to_str().ok().and_then(info::extension) else {
                continue;
            };
            let mut e = vk::ExtensionProperties {
                spec_version: known.spec_version,
                ..Default::default()
            };
            for (dst, src) in e.extension_name.iter_mut().zip(name.to_bytes()) {
                *dst = std::ffi::c_char::from_ne_bytes([*src]);
            }
            list.push(e);
        }
        Ok(Ok(list))
    }

    pub(super) fn enumerate_device_extension_properties(
        &mut self,
        args: &mut EnumerateDeviceExtensionPropertiesArgs<'_>,
    ) -> Result<vk::Result> {
        let count = required(args.p_property_count.as_deref_mut(), "pPropertyCount")?;
        if args.p_layer_name.is_some() {
            *count = 0;
            return Ok(vk::Result::ERROR_LAYER_NOT_PRESENT);
        }
        match self.guest_device_extensions(args.physical_device)? {
            Ok(list) => Ok(fill_array(count, args.p_properties.as_deref_mut(), &list)),
            Err(e) => Ok(e),
        }
    }

    pub(super) fn enumerate_device_layer_properties(
        &mut self,
        args: &mut EnumerateDeviceLayerPropertiesArgs<'_>,
    ) -> Result<vk::Result> {
        self.physical(args.physical_device)?;
        let count = required(args.p_property_count.as_deref_mut(), "pPropertyCount")?;
        *count = 0;
        Ok(vk::Result::SUCCESS)
    }

    pub(super) fn get_physical_device_tool_properties(
        &mut self,
        args: &mut GetPhysicalDeviceToolPropertiesArgs<'_>,
    ) -> Result<vk::Result> {
        let inst = self.physical(args.physical_device)?;
        let (count, ptr) = count_array(
            args.p_tool_count.as_deref_mut(),
            args.p_tool_properties.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements.
        Ok(unsafe {
            (inst.instance.fp_v1_3().get_physical_device_tool_properties)(
                args.physical_device,
                count,
                ptr,
            )
        })
    }

    pub(super) fn get_physical_device_external_semaphore_properties(
        &mut self,
        args: &mut GetPhysicalDeviceExternalSemaphorePropertiesArgs<'_>,
    ) -> Result<()> {
        let inst = self.physical(args.physical_device)?;
        let info = required(args.p_external_semaphore_info, "pExternalSemaphoreInfo")?;
        let out = required(
            args.p_external_semaphore_properties.as_deref_mut(),
            "pExternalSemaphoreProperties",
        )?;
        if info.handle_type == vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD {
            // SAFETY: the chain was decoded into the arena.
            let ty = unsafe {
                raw::find_in_chain(info.p_next, vk::StructureType::SEMAPHORE_TYPE_CREATE_INFO)
            }
            .cast::<vk::SemaphoreTypeCreateInfo<'_>>();
            // SAFETY: a non-NULL result points at a decoded SemaphoreTypeCreateInfo.
            let timeline = unsafe { ty.as_ref() }
                .is_some_and(|t| t.semaphore_type == vk::SemaphoreType::TIMELINE);
            // Emulated (venus-wire §8): binary SYNC_FD semaphores are importable and
            // exportable; the MESA resource commands signal and consume them.
            let (types, features) = if timeline {
                (
                    vk::ExternalSemaphoreHandleTypeFlags::empty(),
                    vk::ExternalSemaphoreFeatureFlags::empty(),
                )
            } else {
                (
                    vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD,
                    vk::ExternalSemaphoreFeatureFlags::EXPORTABLE
                        | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE,
                )
            };
            out.export_from_imported_handle_types = types;
            out.compatible_handle_types = types;
            out.external_semaphore_features = features;
            return Ok(());
        }
        // SAFETY: live physical device; chains live in the arena.
        unsafe {
            (inst
                .instance
                .fp_v1_1()
                .get_physical_device_external_semaphore_properties)(
                args.physical_device,
                info,
                out,
            );
        }
        Ok(())
    }
}

/// An instance-level entry point of `inst` by name (`None` if the host lacks it).
fn instance_fn(inst: &InstanceState, name: &CStr) -> vk::PFN_vkVoidFunction {
    // SAFETY: a live instance and a NUL-terminated name.
    unsafe {
        inst._entry
            .get_instance_proc_addr(inst.instance.handle(), name.as_ptr())
    }
}

impl Handler<'_, '_> {
    pub(super) fn get_physical_device_calibrateable_time_domains_ext(
        &mut self,
        args: &mut GetPhysicalDeviceCalibrateableTimeDomainsEXTArgs<'_>,
    ) -> Result<vk::Result> {
        let inst = self.physical(args.physical_device)?;
        let f = instance_fn(&inst, c"vkGetPhysicalDeviceCalibrateableTimeDomainsKHR")
            .or_else(|| instance_fn(&inst, c"vkGetPhysicalDeviceCalibrateableTimeDomainsEXT"))
            .ok_or(VenusError::HostLacks(
                "vkGetPhysicalDeviceCalibrateableTimeDomainsEXT",
            ))?;
        // SAFETY: the loader returned this command's entry point (the KHR and EXT
        // names are aliases with one signature).
        let f = unsafe {
            std::mem::transmute::<
                unsafe extern "system" fn(),
                vk::PFN_vkGetPhysicalDeviceCalibrateableTimeDomainsKHR,
            >(f)
        };
        let (count, ptr) = count_array(
            args.p_time_domain_count.as_deref_mut(),
            args.p_time_domains.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements.
        Ok(unsafe { f(args.physical_device, count, ptr) })
    }

    pub(super) fn get_physical_device_fragment_shading_rates_khr(
        &mut self,
        args: &mut GetPhysicalDeviceFragmentShadingRatesKHRArgs<'_>,
    ) -> Result<vk::Result> {
        let inst = self.physical(args.physical_device)?;
        let f = instance_fn(&inst, c"vkGetPhysicalDeviceFragmentShadingRatesKHR").ok_or(
            VenusError::HostLacks("vkGetPhysicalDeviceFragmentShadingRatesKHR"),
        )?;
        // SAFETY: the loader returned this command's entry point.
        let f = unsafe {
            std::mem::transmute::<
                unsafe extern "system" fn(),
                vk::PFN_vkGetPhysicalDeviceFragmentShadingRatesKHR,
            >(f)
        };
        let (count, ptr) = count_array(
            args.p_fragment_shading_rate_count.as_deref_mut(),
            args.p_fragment_shading_rates.as_deref_mut(),
        )?;
        // SAFETY: live physical device; `ptr` is NULL or holds `*count` elements (their
        // sType/pNext were decoded into the arena).
        Ok(unsafe { f(args.physical_device, count, ptr) })
    }
}
