//! Checks before the driver binds memory to a buffer or image (`vkBind*Memory*`).
//!
//! A driver such as lavapipe binds by storing `memory base + memoryOffset` and later
//! copies, fills and shader accesses trust the buffer's or image's size, so a bind
//! outside the allocation lets a guest read and write other clients' memory and the
//! daemon heap. Before every bind the handlers check, against what the host driver
//! itself reported: that the memory belongs to the same device (the object table is
//! per context, so it belongs to this context), that `memoryOffset + size` fits the
//! allocation (checked arithmetic; the size is the one the host allocation really
//! has), the offset alignment, the memory type, and that the object is not bound yet.
//!
//! A violation fails the context rather than returning a `VkResult`: Mesa's Venus
//! driver sends binds asynchronously and never reads the result, and a host object
//! left unbound after a refused bind would reach the driver unbound in the next copy.

use ash::vk;

/// What the bind checks know about one device memory object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemoryInfo {
    /// Bytes a bind may use: the guest's `allocationSize`, never more than the host
    /// allocation really has (host-visible memory is a memfd rounded up to the import
    /// alignment, so the host side is at least this large).
    pub(crate) size: u64,
    /// `memoryTypeIndex`.
    pub(crate) type_index: u32,
}

/// The memory requirements the host driver reported for a buffer or image (one entry,
/// or one per plane of a disjoint multi-planar image), and which are bound already.
#[derive(Clone, Debug, Default)]
pub(crate) struct BindTarget {
    reqs: Vec<vk::MemoryRequirements>,
    bound: Vec<bool>,
}

/// The object a bind names, for messages: type and guest id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Object {
    pub(crate) ty: vk::ObjectType,
    pub(crate) id: u64,
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:#x}", self.ty, self.id)
    }
}

/// Why a bind was refused. The message names the object (guest id) and the reason; the
/// executor prefixes the command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindError {
    /// The object has no recorded memory requirements (not created by this context).
    #[error("{0} has no recorded memory requirements")]
    UnknownObject(String),
    /// The memory handle is NULL or not device memory this context allocated.
    #[error("{object}: memory is not device memory of this context")]
    UnknownMemory {
        /// The object being bound.
        object: String,
    },
    /// The object or memory belongs to another device of the context.
    #[error("{object}: memory belongs to another device")]
    ForeignDevice {
        /// The object being bound.
        object: String,
    },
    /// The bind names a plane of an object that is not a disjoint image, names none of
    /// a disjoint image, or names one the image lacks.
    #[error("{object}: the bind's plane does not match the object's planes")]
    Plane {
        /// The object being bound.
        object: String,
    },
    /// The object (or plane) is bound already.
    #[error("{object} is already bound to memory")]
    AlreadyBound {
        /// The object being bound.
        object: String,
    },
    /// The offset is not a multiple of the required alignment.
    #[error(
        "{object}: memoryOffset {offset} is not a multiple of the required alignment {alignment}"
    )]
    Misaligned {
        /// The object being bound.
        object: String,
        /// `memoryOffset`.
        offset: u64,
        /// `VkMemoryRequirements::alignment`.
        alignment: u64,
    },
    /// The memory type is not one the object accepts.
    #[error("{object}: memory type {type_index} is not in memoryTypeBits {bits:#x}")]
    MemoryType {
        /// The object being bound.
        object: String,
        /// The memory's type index.
        type_index: u32,
        /// `VkMemoryRequirements::memoryTypeBits`.
        bits: u32,
    },
    /// `memoryOffset + size` is past the end of the allocation (or overflows).
    #[error(
        "{object}: memoryOffset {offset} + size {size} exceeds the allocation's {allocation} bytes"
    )]
    OutOfRange {
        /// The object being bound.
        object: String,
        /// `memoryOffset`.
        offset: u64,
        /// `VkMemoryRequirements::size`.
        size: u64,
        /// The allocation's size.
        allocation: u64,
    },
}

impl BindTarget {
    /// One set of requirements (a buffer or a non-disjoint image), or one per plane.
    pub(crate) fn new(reqs: Vec<vk::MemoryRequirements>) -> Self {
        let bound = vec![false; reqs.len()];
        Self { reqs, bound }
    }

    /// Checks a bind of `plane` (0 unless the image is disjoint; out of range when the
    /// bind's plane does not match the object) at `offset` in `mem`, then records the
    /// plane as bound.
    pub(crate) fn bind(
        &mut self,
        object: Object,
        plane: usize,
        mem: &MemoryInfo,
        offset: u64,
    ) -> Result<(), BindError> {
        let name = || object.to_string();
        let req = *self
            .reqs
            .get(plane)
            .ok_or_else(|| BindError::Plane { object: name() })?;
        if self.bound.get(plane).copied().unwrap_or(true) {
            return Err(BindError::AlreadyBound { object: name() });
        }
        if req.alignment != 0 && !offset.is_multiple_of(req.alignment) {
            return Err(BindError::Misaligned {
                object: name(),
                offset,
                alignment: req.alignment,
            });
        }
        let type_ok = mem.type_index < 32 && req.memory_type_bits & (1 << mem.type_index) != 0;
        if !type_ok {
            return Err(BindError::MemoryType {
                object: name(),
                type_index: mem.type_index,
                bits: req.memory_type_bits,
            });
        }
        let fits = offset
            .checked_add(req.size)
            .is_some_and(|end| end <= mem.size);
        if !fits {
            return Err(BindError::OutOfRange {
                object: name(),
                offset,
                size: req.size,
                allocation: mem.size,
            });
        }
        if let Some(b) = self.bound.get_mut(plane) {
            *b = true;
        }
        Ok(())
    }

    /// How many planes are bound separately (1 unless the image is disjoint).
    pub(crate) fn planes(&self) -> usize {
        self.reqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUF: Object = Object {
        ty: vk::ObjectType::BUFFER,
        id: 7,
    };

    fn req(size: u64, alignment: u64, bits: u32) -> vk::MemoryRequirements {
        vk::MemoryRequirements {
            size,
            alignment,
            memory_type_bits: bits,
        }
    }

    fn mem(size: u64, type_index: u32) -> MemoryInfo {
        MemoryInfo { size, type_index }
    }

    #[test]
    fn bind_inside_the_allocation_succeeds_once() {
        let mut t = BindTarget::new(vec![req(4096, 64, 0b11)]);
        t.bind(BUF, 0, &mem(8192, 1), 4096).expect("fits exactly");
        assert!(matches!(
            t.bind(BUF, 0, &mem(8192, 1), 0),
            Err(BindError::AlreadyBound { .. })
        ));
    }

    #[test]
    fn buffer_larger_than_its_allocation_is_refused() {
        let mut t = BindTarget::new(vec![req(65536, 64, 1)]);
        let e = t
            .bind(BUF, 0, &mem(4096, 0), 0)
            .expect_err("64 KiB in 4 KiB");
        assert!(
            matches!(
                e,
                BindError::OutOfRange {
                    allocation: 4096,
                    ..
                }
            ),
            "{e}"
        );
        t.bind(BUF, 0, &mem(65536, 0), 0)
            .expect("a refused bind leaves the object unbound");
    }

    #[test]
    fn offset_past_the_end_and_overflow_are_refused() {
        let mut t = BindTarget::new(vec![req(256, 256, 1)]);
        for offset in [4096, 3840 + 256, u64::MAX - 255] {
            assert!(matches!(
                t.bind(BUF, 0, &mem(4096, 0), offset),
                Err(BindError::OutOfRange { .. })
            ));
        }
        t.bind(BUF, 0, &mem(4096, 0), 3840).expect("last 256 bytes");
    }

    #[test]
    fn misaligned_offset_and_wrong_memory_type_are_refused() {
        let mut t = BindTarget::new(vec![req(16, 64, 0b10)]);
        assert!(matches!(
            t.bind(BUF, 0, &mem(4096, 1), 32),
            Err(BindError::Misaligned { .. })
        ));
        assert!(matches!(
            t.bind(BUF, 0, &mem(4096, 0), 0),
            Err(BindError::MemoryType { .. })
        ));
        assert!(matches!(
            t.bind(BUF, 0, &mem(4096, 40), 0),
            Err(BindError::MemoryType { .. })
        ));
    }

    #[test]
    fn planes_bind_separately_and_only_those_that_exist() {
        let img = Object {
            ty: vk::ObjectType::IMAGE,
            id: 9,
        };
        let mut t = BindTarget::new(vec![req(256, 16, 1), req(128, 16, 1)]);
        assert_eq!(t.planes(), 2);
        t.bind(img, 1, &mem(4096, 0), 0).expect("plane 1");
        t.bind(img, 0, &mem(4096, 0), 256).expect("plane 0");
        assert!(matches!(
            t.bind(img, 2, &mem(4096, 0), 0),
            Err(BindError::Plane { .. })
        ));
    }
}
