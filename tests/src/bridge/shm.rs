//! The VMM's side of vhost-user shared memory: the host-visible region 1 as a
//! `PROT_NONE` reservation in this process, into which SHMEM_MAP requests map the
//! backend's fds (`MAP_FIXED | MAP_SHARED`) and SHMEM_UNMAP restores `PROT_NONE`.
//!
//! It enforces the spec rules a VMM must (vhost-user-gpu.md §3.3): shmid 1 only, page
//! aligned, inside the region, no mapping over an existing one, and UNMAP covering
//! exactly one earlier mapping. Each mapping keeps a duplicate of the fd it received,
//! so the bridge can hand the same memory to Mesa ([`ShmWindow::fd_at`]).

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{HandlerResult, VhostUserFrontendReqHandler};

/// The shared-memory id of virtio-gpu's host-visible region.
pub const SHM_ID_HOST_VISIBLE: u8 = 1;
/// Page size the region is managed in.
pub const PAGE: u64 = 4096;

/// One live SHMEM_MAP.
#[derive(Debug)]
struct Mapping {
    fd: OwnedFd,
    fd_offset: u64,
    len: u64,
    writable: bool,
}

/// What [`ShmWindow::fd_at`] returns: the mapped fd and where it maps from.
#[derive(Debug)]
pub struct MappedFd {
    /// A duplicate of the fd SHMEM_MAP carried.
    pub fd: OwnedFd,
    /// `fd_offset` of the request.
    pub fd_offset: u64,
    /// `len` of the request.
    pub len: u64,
    /// Whether the mapping is writable.
    pub writable: bool,
}

/// Counters for assertions and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShmStats {
    /// SHMEM_MAP requests accepted.
    pub maps: u64,
    /// SHMEM_UNMAP requests accepted.
    pub unmaps: u64,
    /// Requests refused.
    pub refused: u64,
}

/// Region 1 reserved in this process plus its live mappings.
#[derive(Debug)]
pub struct ShmWindow {
    base: usize,
    size: u64,
    maps: Mutex<(BTreeMap<u64, Mapping>, ShmStats)>,
}

impl ShmWindow {
    /// Reserves `size` bytes (a page multiple, non-zero) of address space as `PROT_NONE`.
    pub fn reserve(size: u64) -> io::Result<Self> {
        if size == 0 || !size.is_multiple_of(PAGE) {
            return Err(io::Error::other(format!(
                "shared-memory region size {size:#x} is not a non-zero page multiple"
            )));
        }
        let len = usize::try_from(size).map_err(io::Error::other)?;
        // SAFETY: a fresh anonymous PROT_NONE mapping at an address the kernel picks;
        // it aliases nothing and is only changed through this struct.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )
        }?;
        Ok(Self {
            base: ptr as usize,
            size,
            maps: Mutex::new((BTreeMap::new(), ShmStats::default())),
        })
    }

    /// Region size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Counters so far.
    pub fn stats(&self) -> ShmStats {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Whether a mapping starts at `shm_offset`.
    pub fn is_mapped(&self, shm_offset: u64) -> bool {
        self.maps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .contains_key(&shm_offset)
    }

    /// A duplicate of the fd mapped at `shm_offset`, if a mapping starts there.
    pub fn fd_at(&self, shm_offset: u64) -> io::Result<Option<MappedFd>> {
        let maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(m) = maps.0.get(&shm_offset) else {
            return Ok(None);
        };
        Ok(Some(MappedFd {
            fd: m.fd.try_clone()?,
            fd_offset: m.fd_offset,
            len: m.len,
            writable: m.writable,
        }))
    }

    /// Validates a request's range: page-aligned, non-empty, inside the region.
    fn check_range(&self, req: &VhostUserMMap) -> io::Result<(u64, u64)> {
        let (shmid, off, len) = (req.shmid, req.shm_offset, req.len);
        if shmid != SHM_ID_HOST_VISIBLE {
            return Err(io::Error::other(format!("unknown shmid {shmid}")));
        }
        if len == 0 || !off.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(io::Error::other(format!(
                "range {off:#x}+{len:#x} is empty or not page-aligned"
            )));
        }
        if off.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(io::Error::other(format!(
                "range {off:#x}+{len:#x} is outside the {:#x}-byte region",
                self.size
            )));
        }
        Ok((off, len))
    }

    fn map(&self, req: &VhostUserMMap, fd: BorrowedFd<'_>) -> io::Result<()> {
        let (off, len) = self.check_range(req)?;
        let (fd_offset, flags) = (req.fd_offset, req.flags);
        let writable = match VhostUserMMapFlags::from_bits(flags) {
            Some(f) => f.contains(VhostUserMMapFlags::WRITABLE),
            None => return Err(io::Error::other(format!("unknown flags {flags:#x}"))),
        };
        if !fd_offset.is_multiple_of(PAGE) {
            return Err(io::Error::other(format!(
                "fd_offset {fd_offset:#x} is not page-aligned"
            )));
        }
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let overlaps = maps
            .0
            .range(..off.saturating_add(len))
            .next_back()
            .is_some_and(|(o, m)| o.saturating_add(m.len) > off);
        if overlaps {
            return Err(io::Error::other(format!(
                "range {off:#x}+{len:#x} overlaps a live mapping"
            )));
        }
        let owned = fd.try_clone_to_owned()?;
        let mut prot = rustix::mm::ProtFlags::READ;
        if writable {
            prot |= rustix::mm::ProtFlags::WRITE;
        }
        let addr = self.addr(off);
        // SAFETY: `addr..addr+len` lies inside this struct's own reservation (checked
        // above) and overlaps no live mapping, so MAP_FIXED replaces only PROT_NONE
        // pages nobody references; the fd is valid (just duplicated).
        unsafe {
            rustix::mm::mmap(
                addr,
                to_usize(len)?,
                prot,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::FIXED,
                owned.as_fd(),
                fd_offset,
            )
        }?;
        maps.0.insert(
            off,
            Mapping {
                fd: owned,
                fd_offset,
                len,
                writable,
            },
        );
        maps.1.maps += 1;
        Ok(())
    }

    fn unmap(&self, req: &VhostUserMMap) -> io::Result<()> {
        let (off, len) = self.check_range(req)?;
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        match maps.0.get(&off) {
            Some(m) if m.len == len => {}
            _ => {
                return Err(io::Error::other(format!(
                    "SHMEM_UNMAP {off:#x}+{len:#x} does not match one mapping"
                )))
            }
        }
        self.reset_range(off, len)?;
        maps.0.remove(&off);
        maps.1.unmaps += 1;
        Ok(())
    }

    /// Puts `PROT_NONE` back over a range of the reservation.
    fn reset_range(&self, off: u64, len: u64) -> io::Result<()> {
        // SAFETY: the range is inside this struct's reservation (callers checked) and
        // held a mapping only this struct created; MAP_FIXED swaps it for PROT_NONE.
        unsafe {
            rustix::mm::mmap_anonymous(
                self.addr(off),
                to_usize(len)?,
                rustix::mm::ProtFlags::empty(),
                rustix::mm::MapFlags::PRIVATE
                    | rustix::mm::MapFlags::NORESERVE
                    | rustix::mm::MapFlags::FIXED,
            )
        }?;
        Ok(())
    }

    /// Drops every mapping (device reset: the frontend unmaps everything).
    pub fn unmap_all(&self) {
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        for (off, m) in std::mem::take(&mut maps.0) {
            if let Err(e) = self.reset_range(off, m.len) {
                log::warn!("bridge: resetting shm {off:#x}: {e}");
            }
        }
    }

    fn addr(&self, off: u64) -> *mut c_void {
        // In range: off < size, and base..base+size is one mapping.
        self.base
            .wrapping_add(usize::try_from(off).unwrap_or(usize::MAX)) as *mut c_void
    }

    fn refused(&self, what: &str, e: &io::Error) {
        log::warn!("bridge: refusing {what}: {e}");
        self.maps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .refused += 1;
    }
}

fn to_usize(v: u64) -> io::Result<usize> {
    usize::try_from(v).map_err(io::Error::other)
}

impl Drop for ShmWindow {
    fn drop(&mut self) {
        if let Ok(len) = usize::try_from(self.size) {
            // SAFETY: the reservation (and every mapping in it) belongs to this struct
            // alone and nothing refers to it after drop.
            let _ = unsafe { rustix::mm::munmap(self.base as *mut c_void, len) };
        }
    }
}

impl VhostUserFrontendReqHandler for ShmWindow {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        // SAFETY: the request handler owns the received fd for the whole call; it is
        // only borrowed here (and duplicated if kept).
        let fd = unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) };
        let (off, len, fd_offset) = (req.shm_offset, req.len, req.fd_offset);
        match self.map(req, fd) {
            Ok(()) => {
                log::debug!("bridge: SHMEM_MAP {off:#x}+{len:#x} (fd_offset {fd_offset:#x})");
                Ok(0)
            }
            Err(e) => {
                self.refused("SHMEM_MAP", &e);
                Err(e)
            }
        }
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        let (off, len) = (req.shm_offset, req.len);
        match self.unmap(req) {
            Ok(()) => {
                log::debug!("bridge: SHMEM_UNMAP {off:#x}+{len:#x}");
                Ok(0)
            }
            Err(e) => {
                self.refused("SHMEM_UNMAP", &e);
                Err(e)
            }
        }
    }
}

/// First-fit allocator of page-aligned ranges in the region (the guest kernel's job:
/// it places each MAP_BLOB in the host-visible BAR).
#[derive(Debug)]
pub struct RangeAlloc {
    size: u64,
    used: BTreeMap<u64, u64>,
}

impl RangeAlloc {
    /// An allocator over `0..size`.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            used: BTreeMap::new(),
        }
    }

    /// A free page-aligned range of `len` bytes (rounded up to pages).
    pub fn alloc(&mut self, len: u64) -> Option<(u64, u64)> {
        let len = len.checked_add(PAGE - 1)? & !(PAGE - 1);
        if len == 0 {
            return None;
        }
        let mut start = 0u64;
        for (&o, &l) in &self.used {
            if o.checked_sub(start)? >= len {
                break;
            }
            start = o.checked_add(l)?;
        }
        if start.checked_add(len)? > self.size {
            return None;
        }
        self.used.insert(start, len);
        Some((start, len))
    }

    /// Frees a range from [`RangeAlloc::alloc`].
    pub fn free(&mut self, offset: u64) {
        self.used.remove(&offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_reuses_holes_and_respects_the_end() {
        let mut a = RangeAlloc::new(4 * PAGE);
        assert_eq!(a.alloc(1), Some((0, PAGE)));
        assert_eq!(a.alloc(PAGE + 1), Some((PAGE, 2 * PAGE)));
        assert_eq!(a.alloc(2 * PAGE), None);
        a.free(0);
        assert_eq!(a.alloc(PAGE), Some((0, PAGE)));
        assert_eq!(a.alloc(PAGE), Some((3 * PAGE, PAGE)));
        assert_eq!(a.alloc(u64::MAX), None);
    }

    fn req(off: u64, len: u64, fd_offset: u64) -> VhostUserMMap {
        VhostUserMMap {
            shmid: SHM_ID_HOST_VISIBLE,
            padding: [0; 7],
            fd_offset,
            shm_offset: off,
            len,
            flags: VhostUserMMapFlags::WRITABLE.bits(),
        }
    }

    #[test]
    fn window_maps_refuses_overlaps_and_unmaps_exactly() {
        let w = ShmWindow::reserve(8 * PAGE).expect("reserve");
        let fd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
        rustix::fs::ftruncate(&fd, 2 * PAGE).expect("size");
        let file = std::fs::File::from(fd);
        w.shmem_map(&req(PAGE, 2 * PAGE, 0), &file)
            .expect("accepted");
        w.shmem_map(&req(2 * PAGE, PAGE, 0), &file)
            .expect_err("refused");
        w.shmem_map(&req(0, 2 * PAGE, 0), &file)
            .expect_err("refused");
        w.shmem_map(&req(7 * PAGE, 2 * PAGE, 0), &file)
            .expect_err("refused");
        w.shmem_map(&req(3 * PAGE, PAGE, 0), &file)
            .expect("accepted");
        let got = w.fd_at(PAGE).expect("dup").expect("mapped");
        assert_eq!((got.fd_offset, got.len, got.writable), (0, 2 * PAGE, true));
        w.shmem_unmap(&req(PAGE, PAGE, 0)).expect_err("refused");
        w.shmem_unmap(&req(PAGE, 2 * PAGE, 0)).expect("accepted");
        assert!(!w.is_mapped(PAGE));
        let s = w.stats();
        assert_eq!((s.maps, s.unmaps, s.refused), (2, 1, 4));
        w.unmap_all();
        assert!(!w.is_mapped(3 * PAGE));
    }
}
