//! Robustness features forced on every host device the renderer creates, whatever the
//! guest asked for: `robustBufferAccess` (core), `robustImageAccess` (Vulkan 1.3 /
//! `VK_EXT_image_robustness`) and `robustBufferAccess2`, `robustImageAccess2` and
//! `nullDescriptor` (`VK_EXT_robustness2`) where the host supports them. Out-of-bounds
//! shader accesses the handlers cannot see (descriptor ranges indexed at run time,
//! texel fetches) then stay inside the resource on the host instead of reaching other
//! clients' memory. What the guest sees reported (features, properties) is unchanged.

use std::ffi::CStr;

use ash::vk;

use super::instance::has_extension;
use super::raw;
use super::InstanceState;

/// The robustness features the host device supports.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HostRobustness {
    robust_buffer_access: bool,
    robust_image_access: bool,
    /// `VK_EXT_robustness2` is available.
    robustness2: bool,
    robust_buffer_access2: bool,
    robust_image_access2: bool,
    null_descriptor: bool,
}

/// `VK_EXT_robustness2`.
pub(super) const ROBUSTNESS2: &CStr = c"VK_EXT_robustness2";

impl HostRobustness {
    /// Asks the host what `pd` supports (`host_exts`: its device extensions).
    pub(super) fn query(
        inst: &InstanceState,
        pd: vk::PhysicalDevice,
        host_exts: &[vk::ExtensionProperties],
    ) -> Self {
        let robustness2 = has_extension(host_exts, ROBUSTNESS2);
        let mut image = vk::PhysicalDeviceImageRobustnessFeatures::default();
        let mut r2 = vk::PhysicalDeviceRobustness2FeaturesEXT::default();
        let mut f2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut image);
        if robustness2 {
            f2 = f2.push_next(&mut r2);
        }
        // SAFETY: live physical device; the chain is local and well formed (the image
        // robustness struct is core 1.3, which the renderer requires of the host).
        unsafe { inst.instance.get_physical_device_features2(pd, &mut f2) };
        let robust_buffer_access = f2.features.robust_buffer_access == vk::TRUE;
        Self {
            robust_buffer_access,
            robust_image_access: image.robust_image_access == vk::TRUE,
            robustness2,
            // robustBufferAccess2 requires robustBufferAccess.
            robust_buffer_access2: robust_buffer_access && r2.robust_buffer_access2 == vk::TRUE,
            robust_image_access2: r2.robust_image_access2 == vk::TRUE,
            null_descriptor: r2.null_descriptor == vk::TRUE,
        }
    }

    /// Whether `VK_EXT_robustness2` must be enabled for what [`Self::force`] turns on.
    pub(super) fn needs_robustness2(&self) -> bool {
        self.robustness2
            && (self.robust_buffer_access2 || self.robust_image_access2 || self.null_descriptor)
    }
}

/// The feature structs the renderer adds to a device create info; they must outlive the
/// vkCreateDevice call (the info points into them).
#[derive(Default)]
pub(super) struct Forced {
    features: vk::PhysicalDeviceFeatures,
    image: vk::PhysicalDeviceImageRobustnessFeatures<'static>,
    r2: vk::PhysicalDeviceRobustness2FeaturesEXT<'static>,
}

impl std::fmt::Debug for Forced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forced").finish_non_exhaustive()
    }
}

/// Turns on every robustness feature `host` supports in `info` (the guest's create info,
/// whose chain lives in this command's arena): features already in the guest's chain are
/// set in place, missing structs are added from `forced`. The caller enables
/// `VK_EXT_robustness2` when [`HostRobustness::needs_robustness2`].
///
/// # Safety
///
/// `info.p_next` must be a writable chain decoded into this command's arena (not
/// borrowed elsewhere), `info.p_enabled_features` NULL or a live struct, and `forced`
/// must stay in place until the driver call that uses `info` returns.
pub(super) unsafe fn force<'a>(
    info: &mut vk::DeviceCreateInfo<'a>,
    host: &HostRobustness,
    forced: &'a mut Forced,
) {
    let head = info.p_next;
    let on = |b: bool, cur: vk::Bool32| if b { vk::TRUE } else { cur };
    // robustBufferAccess: in VkPhysicalDeviceFeatures2, pEnabledFeatures, or added.
    if host.robust_buffer_access {
        let set =
            |f: &mut vk::PhysicalDeviceFeatures2<'_>| f.features.robust_buffer_access = vk::TRUE;
        // SAFETY: the caller's chain contract; a FEATURES_2 node is that struct.
        let in_chain = unsafe {
            raw::with_chain_node(head, vk::StructureType::PHYSICAL_DEVICE_FEATURES_2, set)
        };
        if !in_chain {
            if !info.p_enabled_features.is_null() {
                // SAFETY: the caller guarantees a live struct when non-NULL.
                forced.features = unsafe { *info.p_enabled_features };
            }
            forced.features.robust_buffer_access = vk::TRUE;
            info.p_enabled_features = &forced.features;
        }
    }
    let mut head = head;
    // robustImageAccess: in VkPhysicalDeviceVulkan13Features or the image robustness
    // struct (never both in one chain), or added.
    if host.robust_image_access {
        // SAFETY: as above; a VULKAN_1_3_FEATURES node is that struct.
        let in_13 = unsafe {
            raw::with_chain_node(
                head,
                vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_3_FEATURES,
                |f: &mut vk::PhysicalDeviceVulkan13Features<'_>| f.robust_image_access = vk::TRUE,
            )
        };
        // SAFETY: as above; an IMAGE_ROBUSTNESS_FEATURES node is that struct.
        let in_ext = unsafe {
            raw::with_chain_node(
                head,
                vk::StructureType::PHYSICAL_DEVICE_IMAGE_ROBUSTNESS_FEATURES,
                |f: &mut vk::PhysicalDeviceImageRobustnessFeatures<'_>| {
                    f.robust_image_access = vk::TRUE;
                },
            )
        };
        let in_chain = in_13 || in_ext;
        if !in_chain {
            forced.image.robust_image_access = vk::TRUE;
            forced.image.p_next = head.cast_mut();
            head = std::ptr::from_ref(&forced.image).cast();
        }
    }
    if host.needs_robustness2() {
        let set = |f: &mut vk::PhysicalDeviceRobustness2FeaturesEXT<'_>| {
            f.robust_buffer_access2 = on(host.robust_buffer_access2, f.robust_buffer_access2);
            f.robust_image_access2 = on(host.robust_image_access2, f.robust_image_access2);
            f.null_descriptor = on(host.null_descriptor, f.null_descriptor);
        };
        // SAFETY: as above; a ROBUSTNESS_2 node is that struct.
        let in_chain = unsafe {
            raw::with_chain_node(
                head,
                vk::StructureType::PHYSICAL_DEVICE_ROBUSTNESS_2_FEATURES_EXT,
                set,
            )
        };
        if !in_chain {
            set(&mut forced.r2);
            forced.r2.p_next = head.cast_mut();
            head = std::ptr::from_ref(&forced.r2).cast();
        }
    }
    info.p_next = head;
}
