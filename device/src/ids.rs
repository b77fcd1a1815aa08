//! Newtypes for every id and index that crosses a wire.
//!
//! Keeping them distinct stops an index being passed where an id is expected (a
//! class of bug virtio-gpu backends have shipped more than once).

use std::fmt;

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_newtype!(
    /// A renderer context (one per vtest connection, one per virtio-gpu context).
    ContextId(u32),
    "ctx"
);
id_newtype!(
    /// A resource id as the guest names it (vtest: server-allocated, small, reused).
    ResourceId(u32),
    "res"
);
/// A ring as `vkCreateRingMESA` names it: the guest's opaque 64-bit ring handle
/// (Mesa passes a pointer). Not a Venus object id; rings live in their own table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RingId(pub u64);

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ring {:#x}", self.0)
    }
}
id_newtype!(
    /// A timeline index (`ring_idx` of SUBMIT_CMD2 / virtio-gpu fences); 0 is the CPU timeline.
    RingIdx(u32),
    "ring_idx"
);
id_newtype!(
    /// A vtest sync object.
    SyncId(u32),
    "sync"
);
id_newtype!(
    /// The blob id of RESOURCE_CREATE_BLOB: 0 for anonymous shared memory, else a Venus
    /// `VkDeviceMemory` object id.
    BlobId(u64),
    "blob"
);
id_newtype!(
    /// A capset id (4 = Venus). Not a capset *index*.
    CapsetId(u32),
    "capset"
);

impl CapsetId {
    /// The Venus capset (`VIRTGPU_DRM_CAPSET_VENUS`).
    pub const VENUS: CapsetId = CapsetId(4);
}

impl BlobId {
    /// Anonymous shared memory (rings, reply and command-stream buffers).
    pub const SHMEM: BlobId = BlobId(0);
}
