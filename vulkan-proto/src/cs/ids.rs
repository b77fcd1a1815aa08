//! Newtypes for the ids that cross the wire, and the typed object-id lookup.

use ash::vk;

/// A guest-chosen Venus object id (the u64 that stands for a Vulkan handle on the wire).
/// Id 0 is the NULL handle.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ObjectId(pub u64);

impl ObjectId {
    /// The id a guest-side handle carries (ash handles hold the id as their raw value).
    pub fn of<H: vk::Handle>(h: H) -> Self {
        Self(h.as_raw())
    }
}

/// A virtio-gpu / vtest resource id (blob or shmem), as used by the MESA transport commands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ResourceId(pub u32);

/// Translates guest object ids into host handles, checking the object type. The decoder
/// calls it for every input handle; an unknown id or one of another type is an error.
pub trait HandleMap {
    /// The host handle (raw) for `id` if it names a live object of type `ty`.
    fn lookup(&self, ty: vk::ObjectType, id: ObjectId) -> Option<u64>;
}

/// The identity map: handles are the ids themselves. Used on the driver side, where a
/// handle *is* its object id, and in tests.
#[derive(Copy, Clone, Debug, Default)]
pub struct RawIds;

impl HandleMap for RawIds {
    fn lookup(&self, _ty: vk::ObjectType, id: ObjectId) -> Option<u64> {
        Some(id.0)
    }
}
