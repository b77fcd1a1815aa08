//! Raw pNext-chain and string-array helpers: the only pointer walking the Venus handlers
//! do. Every pointer here comes from the per-command decode arena (`vulkan_proto::Arena`),
//! where the generated decoder built the chains; nothing here reads guest memory.

use std::ffi::{c_char, c_void, CStr};

use ash::vk;

/// Longest chain walked (the decoder accepts at most `vulkan_proto::cs::MAX_PNEXT_CHAIN`).
const MAX_WALK: usize = 256;

/// Unlinks every struct whose sType is in `drop` from the chain starting at `head` and
/// returns the new head.
///
/// # Safety
///
/// `head` must be NULL or the start of a pNext chain of structs that begin with
/// `{sType, pNext}`, allocated writable (as the decode arena allocates them), not
/// borrowed elsewhere while this runs.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one pointer walk under one contract
pub(super) unsafe fn strip_chain(head: *const c_void, drop: &[vk::StructureType]) -> *const c_void {
    let mut head = head.cast_mut().cast::<vk::BaseOutStructure<'_>>();
    let mut steps = 0;
    // SAFETY: the caller guarantees every non-NULL node is a live, writable
    // BaseOutStructure-prefixed struct.
    unsafe {
        while !head.is_null() && drop.contains(&(*head).s_type) && steps < MAX_WALK {
            head = (*head).p_next;
            steps += 1;
        }
        let mut cur = head;
        while !cur.is_null() && steps < MAX_WALK {
            let next = (*cur).p_next;
            if !next.is_null() && drop.contains(&(*next).s_type) {
                (*cur).p_next = (*next).p_next;
            } else {
                cur = next;
            }
            steps += 1;
        }
    }
    head.cast_const().cast()
}

/// Finds the first struct of sType `ty` in the chain at `head`.
///
/// # Safety
///
/// As for [`strip_chain`], read-only.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one pointer walk under one contract
pub(super) unsafe fn find_in_chain(head: *const c_void, ty: vk::StructureType) -> *const c_void {
    let mut cur = head.cast::<vk::BaseInStructure<'_>>();
    let mut steps = 0;
    // SAFETY: the caller guarantees every non-NULL node is a live BaseInStructure-prefixed
    // struct.
    unsafe {
        while !cur.is_null() && steps < MAX_WALK {
            if (*cur).s_type == ty {
                return cur.cast();
            }
            cur = (*cur).p_next;
            steps += 1;
        }
    }
    std::ptr::null()
}

/// Whether every struct in the chain at `head` has an sType in `allowed` (true for an
/// empty chain; false for one longer than the decoder accepts).
///
/// # Safety
///
/// As for [`find_in_chain`].
#[allow(clippy::multiple_unsafe_ops_per_block)] // one pointer walk under one contract
pub(super) unsafe fn chain_only(head: *const c_void, allowed: &[vk::StructureType]) -> bool {
    let mut cur = head.cast::<vk::BaseInStructure<'_>>();
    let mut steps = 0;
    // SAFETY: the caller guarantees every non-NULL node is a live BaseInStructure-prefixed
    // struct.
    unsafe {
        while !cur.is_null() {
            if steps >= MAX_WALK || !allowed.contains(&(*cur).s_type) {
                return false;
            }
            cur = (*cur).p_next;
            steps += 1;
        }
    }
    true
}

/// Runs `f` on the first struct of sType `ty` in the chain at `head`; false if there is
/// none.
///
/// # Safety
///
/// As for [`strip_chain`] (every node live and writable, not borrowed elsewhere); a node
/// of sType `ty` must be a `T` (the decoder builds it so).
pub(super) unsafe fn with_chain_node<T>(
    head: *const c_void,
    ty: vk::StructureType,
    f: impl FnOnce(&mut T),
) -> bool {
    // SAFETY: forwarded from the caller.
    let p = unsafe { find_in_chain(head, ty) }.cast_mut().cast::<T>();
    if p.is_null() {
        return false;
    }
    // SAFETY: a live, writable, unborrowed node of sType `ty`, which is a `T`.
    f(unsafe { &mut *p });
    true
}

/// The `planeAspect` of the first `VkBindImagePlaneMemoryInfo` in the chain at `head`.
///
/// # Safety
///
/// As for [`find_in_chain`]; a node with that sType must be a
/// `VkBindImagePlaneMemoryInfo` (the decoder builds it so).
pub(super) unsafe fn bind_plane_aspect(head: *const c_void) -> Option<vk::ImageAspectFlags> {
    // SAFETY: forwarded from the caller.
    let p = unsafe { find_in_chain(head, vk::StructureType::BIND_IMAGE_PLANE_MEMORY_INFO) };
    // SAFETY: a node of this sType is a live VkBindImagePlaneMemoryInfo.
    (!p.is_null()).then(|| unsafe { (*p.cast::<vk::BindImagePlaneMemoryInfo<'_>>()).plane_aspect })
}

/// The `ringIdx` of the first `VkDeviceQueueTimelineInfoMESA` in the chain at `head`.
///
/// # Safety
///
/// As for [`find_in_chain`]; a node with that sType must be a
/// `VkDeviceQueueTimelineInfoMESA` (the decoder builds it so).
pub(super) unsafe fn queue_timeline_ring(head: *const c_void) -> Option<u32> {
    // SAFETY: forwarded from the caller.
    let node = unsafe { find_in_chain(head, super::device::STYPE_DEVICE_QUEUE_TIMELINE_INFO_MESA) };
    // SAFETY: the caller guarantees a node of this sType has this layout; NULL gives None.
    unsafe {
        node.cast::<vulkan_proto::generated::types::DeviceQueueTimelineInfoMESA<'_>>()
            .as_ref()
    }
    .map(|t| t.ring_idx)
}

/// `VK_STRUCTURE_TYPE_IMPORT_MEMORY_RESOURCE_INFO_MESA`.
pub(super) const STYPE_IMPORT_MEMORY_RESOURCE_INFO_MESA: vk::StructureType =
    vk::StructureType::from_raw(1_000_384_002);

/// The `resourceId` of the first `VkImportMemoryResourceInfoMESA` in the chain at
/// `head`.
///
/// # Safety
///
/// As for [`find_in_chain`]; a node with that sType must be a
/// `VkImportMemoryResourceInfoMESA` (the decoder builds it so).
pub(super) unsafe fn import_resource_id(head: *const c_void) -> Option<u32> {
    // SAFETY: forwarded from the caller.
    let node = unsafe { find_in_chain(head, STYPE_IMPORT_MEMORY_RESOURCE_INFO_MESA) };
    // SAFETY: the caller guarantees a node of this sType has this layout; NULL gives None.
    unsafe {
        node.cast::<vulkan_proto::generated::types::ImportMemoryResourceInfoMESA<'_>>()
            .as_ref()
    }
    .map(|t| t.resource_id)
}

/// The first `VkPhysicalDeviceMemoryBudgetPropertiesEXT` in the output chain at `head`.
///
/// # Safety
///
/// As for [`strip_chain`]: every node is writable and not borrowed elsewhere while the
/// returned reference (`'a`) lives; a node with that sType must be a
/// `VkPhysicalDeviceMemoryBudgetPropertiesEXT` (the decoder builds it so).
pub(super) unsafe fn memory_budget_mut<'a>(
    head: *mut c_void,
) -> Option<&'a mut vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'a>> {
    // SAFETY: forwarded from the caller (read-only walk).
    let node = unsafe {
        find_in_chain(
            head.cast_const(),
            vk::StructureType::PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT,
        )
    };
    // SAFETY: the caller guarantees a node of this sType has this layout, is writable
    // and unaliased for 'a; NULL gives None.
    unsafe {
        node.cast_mut()
            .cast::<vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'a>>()
            .as_mut()
    }
}

/// The strings of a `ppEnabled*Names` array.
///
/// # Safety
///
/// `names` must be NULL or point to `count` pointers, each NULL or a NUL-terminated
/// string, all living for `'a`.
pub(super) unsafe fn cstr_array<'a>(names: *const *const c_char, count: u32) -> Vec<&'a CStr> {
    if names.is_null() {
        return Vec::new();
    }
    let Ok(n) = usize::try_from(count) else {
        return Vec::new();
    };
    // SAFETY: the caller guarantees `names` points to `count` readable pointers.
    let ptrs = unsafe { std::slice::from_raw_parts(names, n) };
    ptrs.iter()
        .filter(|p| !p.is_null())
        // SAFETY: each non-NULL entry is a NUL-terminated string living for 'a.
        .map(|&p| unsafe { CStr::from_ptr(p) })
        .collect()
}
