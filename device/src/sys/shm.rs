//! A shared mapping of guest-visible memory (a memfd), accessed only through volatile
//! copies and atomics.
//!
//! The guest (another process) may write this memory at any time, so no `&[u8]` or
//! `&mut [u8]` is ever formed over it: that would let the compiler assume the bytes do
//! not change underneath it (see rust-vmm/vm-memory#45). Data moves in and out with
//! volatile reads/writes into private buffers; control words (ring head/tail/status)
//! are accessed as `AtomicU32`, which has interior mutability and so tolerates
//! concurrent modification by design.
//!
//! This is the crate's only module with `unsafe` code. The invariant every block relies
//! on: `ptr..ptr+len` is a live `MAP_SHARED` mapping owned by the [`SharedMemory`] value
//! and unmapped only in its `Drop`, and every access is bounds-checked against `len`
//! before a pointer is formed.

use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

/// Errors from mapping or accessing shared memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A mapping of zero bytes was requested.
    #[error("cannot map zero bytes")]
    Empty,
    /// The size does not fit the address space.
    #[error("size {0} does not fit the address space")]
    TooLarge(u64),
    /// `mmap` failed.
    #[error("mmap failed")]
    Map(#[source] std::io::Error),
    /// An access fell outside the mapping.
    #[error("access at {offset} of {len} bytes is outside the {size}-byte mapping")]
    OutOfBounds {
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the mapping.
        size: usize,
    },
    /// An atomic access was not 4-byte aligned.
    #[error("atomic access at {0} is not 4-byte aligned")]
    Misaligned(u64),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ShmError>;

/// A read/write `MAP_SHARED` mapping of a file (a memfd) from offset 0.
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `SharedMemory` owns its mapping exclusively (no aliasing Rust references are
// ever created over it) and all accesses are volatile copies or atomics, which are
// sound from any thread; the raw pointer is only an address.
unsafe impl Send for SharedMemory {}
// SAFETY: as for `Send`: every method takes `&self` and only performs volatile or
// atomic accesses, so concurrent use from several threads cannot cause a data race in
// the Rust memory model beyond what the guest can already do to the memory.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Maps `len` bytes of `fd` from offset 0, shared and read/write.
    pub fn map(fd: impl AsFd, len: u64) -> Result<Self> {
        if len == 0 {
            return Err(ShmError::Empty);
        }
        let len_usize = usize::try_from(len).map_err(|_| ShmError::TooLarge(len))?;
        // SAFETY: a fresh mapping at an address the kernel chooses (null hint) cannot
        // overlap any existing Rust object; `fd` is a valid open descriptor borrowed for
        // the call; the result is checked before use.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len_usize,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| ShmError::Map(e.into()))?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ShmError::Map(std::io::Error::other(
            "mmap returned a null mapping",
        )))?;
        Ok(Self {
            ptr,
            len: len_usize,
        })
    }

    /// The start of the mapping, for handing to a driver that imports host memory
    /// (`VK_EXT_external_memory_host`). The mapping lives as long as `self`.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true for a mapped region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that `offset..offset+len` lies inside the mapping and returns the start
    /// pointer. The pointer is computed with `wrapping_add`, which is safe; it is only
    /// dereferenced by the accessors below.
    fn range_ptr(&self, offset: u64, len: usize) -> Result<*mut u8> {
        let oob = || ShmError::OutOfBounds {
            offset,
            len: len as u64,
            size: self.len,
        };
        let start = usize::try_from(offset).map_err(|_| oob())?;
        let end = start.checked_add(len).ok_or_else(oob)?;
        if end > self.len {
            return Err(oob());
        }
        Ok(self.ptr.as_ptr().wrapping_add(start))
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the mapping.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()> {
        let src = self.range_ptr(offset, dst.len())?;
        let mut i = 0;
        while i < dst.len() && !(src.wrapping_add(i) as usize).is_multiple_of(8) {
            // SAFETY: `src + i` lies inside the bounds-checked range of the live mapping
            // (i < dst.len()); a u8 read has no alignment requirement.
            dst[i] = unsafe { src.wrapping_add(i).read_volatile() };
            i += 1;
        }
        while i + 8 <= dst.len() {
            // SAFETY: `src + i .. src + i + 8` lies inside the bounds-checked range, and
            // the loop above made `src + i` 8-byte aligned, as a u64 read requires.
            let word = unsafe { src.wrapping_add(i).cast::<u64>().read_volatile() };
            dst[i..i + 8].copy_from_slice(&word.to_ne_bytes());
            i += 8;
        }
        while i < dst.len() {
            // SAFETY: as in the first loop: in bounds, byte-sized.
            dst[i] = unsafe { src.wrapping_add(i).read_volatile() };
            i += 1;
        }
        Ok(())
    }

    /// Copies `src` into the mapping at `offset`.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<()> {
        let dst = self.range_ptr(offset, src.len())?;
        let mut i = 0;
        while i < src.len() && !(dst.wrapping_add(i) as usize).is_multiple_of(8) {
            // SAFETY: `dst + i` lies inside the bounds-checked range of the live, writable
            // mapping; a u8 write has no alignment requirement.
            unsafe { dst.wrapping_add(i).write_volatile(src[i]) };
            i += 1;
        }
        while i + 8 <= src.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&src[i..i + 8]);
            // SAFETY: `dst + i .. dst + i + 8` is inside the bounds-checked range and the
            // loop above made `dst + i` 8-byte aligned.
            unsafe {
                dst.wrapping_add(i)
                    .cast::<u64>()
                    .write_volatile(u64::from_ne_bytes(word))
            };
            i += 8;
        }
        while i < src.len() {
            // SAFETY: as in the first loop.
            unsafe { dst.wrapping_add(i).write_volatile(src[i]) };
            i += 1;
        }
        Ok(())
    }

    /// Returns the `u32` at `offset` as an atomic.
    fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        if !offset.is_multiple_of(4) {
            return Err(ShmError::Misaligned(offset));
        }
        let ptr = self.range_ptr(offset, 4)?;
        // SAFETY: `ptr..ptr+4` is inside the live mapping; the mapping is page-aligned and
        // `offset` is a multiple of 4, so `ptr` is 4-byte aligned as `AtomicU32`
        // requires. The returned reference borrows `self`, so it cannot outlive the
        // mapping. Other processes touching the word concurrently is what atomics allow;
        // this module never creates a non-atomic Rust reference to it.
        Ok(unsafe { AtomicU32::from_ptr(ptr.cast::<u32>()) })
    }

    /// Returns the `u64` at `offset` (a multiple of 8) as an atomic.
    fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        if !offset.is_multiple_of(8) {
            return Err(ShmError::Misaligned(offset));
        }
        let ptr = self.range_ptr(offset, 8)?;
        // SAFETY: as in `atomic_u32`, with 8 bytes: `ptr..ptr+8` is inside the live
        // mapping, which is page-aligned, and `offset` is a multiple of 8, so `ptr`
        // is 8-byte aligned as `AtomicU64` requires; the reference borrows `self`.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) })
    }

    /// Atomically loads the `u64` at `offset` (a multiple of 8).
    pub fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64> {
        Ok(self.atomic_u64(offset)?.load(order))
    }

    /// Atomically stores the `u64` at `offset` (a multiple of 8).
    pub fn store_u64(&self, offset: u64, value: u64, order: Ordering) -> Result<()> {
        self.atomic_u64(offset)?.store(value, order);
        Ok(())
    }

    /// Atomically loads the `u32` at `offset`.
    pub fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32> {
        Ok(self.atomic_u32(offset)?.load(order))
    }

    /// Atomically stores `value` at `offset`.
    pub fn store_u32(&self, offset: u64, value: u32, order: Ordering) -> Result<()> {
        self.atomic_u32(offset)?.store(value, order);
        Ok(())
    }

    /// Atomically ORs `bits` into the `u32` at `offset`; returns the previous value.
    pub fn fetch_or_u32(&self, offset: u64, bits: u32, order: Ordering) -> Result<u32> {
        Ok(self.atomic_u32(offset)?.fetch_or(bits, order))
    }

    /// Atomically ANDs `bits` into the `u32` at `offset`; returns the previous value.
    pub fn fetch_and_u32(&self, offset: u64, bits: u32, order: Ordering) -> Result<u32> {
        Ok(self.atomic_u32(offset)?.fetch_and(bits, order))
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in `map`, which is
        // unmapped only here; every reference handed out borrows `self`, so none can be
        // alive now.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            log::warn!("shm: munmap of {} bytes failed: {e}", self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::memfd::create_memfd;

    fn mapping(len: u64) -> SharedMemory {
        let fd = create_memfd("shm-test", len).expect("memfd");
        SharedMemory::map(&fd, len).expect("map")
    }

    #[test]
    fn read_back_what_was_written_at_odd_offsets() {
        let shm = mapping(4096 + 17);
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        shm.write(4000, &data[..113]).expect("write");
        let mut out = vec![0u8; 113];
        shm.read(4000, &mut out).expect("read");
        assert_eq!(out, &data[..113]);
    }

    #[test]
    fn two_mappings_of_one_memfd_share_bytes() {
        let fd = create_memfd("shm-test", 8192).expect("memfd");
        let a = SharedMemory::map(&fd, 8192).expect("map a");
        let b = SharedMemory::map(&fd, 8192).expect("map b");
        a.store_u32(64, 0xdead_beef, Ordering::Release)
            .expect("store");
        assert_eq!(
            b.load_u32(64, Ordering::Acquire).expect("load"),
            0xdead_beef
        );
    }

    #[test]
    fn out_of_bounds_access_is_an_error() {
        let shm = mapping(100);
        let mut out = [0u8; 8];
        assert!(matches!(
            shm.read(96, &mut out),
            Err(ShmError::OutOfBounds { .. })
        ));
        assert!(matches!(
            shm.read(u64::MAX, &mut out),
            Err(ShmError::OutOfBounds { .. })
        ));
        assert!(matches!(
            shm.load_u32(98, Ordering::Relaxed),
            Err(ShmError::Misaligned(98))
        ));
    }
}
