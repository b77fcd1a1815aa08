//! memfds shared with clients, and the check every foreign memory fd passes before the
//! daemon maps or imports it.
//!
//! A process holding a memfd can `ftruncate` it; touching a `MAP_SHARED` mapping past
//! the new end raises SIGBUS, which would kill the daemon and every client with it.
//! So every memfd the daemon creates is sealed `F_SEAL_SHRINK | F_SEAL_GROW |
//! F_SEAL_SEAL` (size fixed, seal set frozen) before anyone else can hold it, and a
//! memory fd from elsewhere is refused unless it carries `F_SEAL_SHRINK` and is at
//! least as large as what will be mapped ([`check_sealed`]). Seals live on the inode,
//! so every holder of the file sees them. No `unsafe` here: `rustix` wraps the calls.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

use super::fd::FdError;

/// The seals on every memfd the daemon creates: its size is fixed, and nobody (the
/// daemon included) can add or remove seals afterwards. In particular a client cannot
/// add `F_SEAL_FUTURE_WRITE`, which would make the daemon's later writable mappings of
/// the file (a `VkImportMemoryResourceInfoMESA` import) fail.
pub const DAEMON_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Creates a close-on-exec memfd of exactly `size` bytes (not rounded to pages), sealed
/// with [`DAEMON_SEALS`] before it is returned, so no holder can resize it.
pub fn create_memfd(name: &str, size: u64) -> Result<OwnedFd, FdError> {
    sealed_memfd(name, size, DAEMON_SEALS)
}

/// A close-on-exec memfd of exactly `size` bytes carrying `seals`.
fn sealed_memfd(name: &str, size: u64, seals: SealFlags) -> Result<OwnedFd, FdError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| FdError::Memfd {
            size,
            source: e.into(),
        })?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| FdError::Memfd {
        size,
        source: e.into(),
    })?;
    rustix::fs::fcntl_add_seals(&fd, seals).map_err(|e| FdError::Seal(e.into()))?;
    Ok(fd)
}

/// A memfd of `size` bytes that can never hold data: sealed against writes as well as
/// resizing, so it costs no memory whatever its holder does (a writable shared mapping
/// of it fails; a read-only one reads zeros). Answers a request whose protocol has no
/// way to say "no" (vtest's RESOURCE_CREATE_BLOB) while the context is failed.
pub fn placeholder_memfd(size: u64) -> Result<OwnedFd, FdError> {
    sealed_memfd(
        "vgpu-placeholder",
        size,
        DAEMON_SEALS.union(SealFlags::WRITE),
    )
}

/// Checks a memory fd the daemon did not create (or no longer trusts) before it is
/// mapped or imported: it must carry `F_SEAL_SHRINK` (so nobody can truncate it under
/// the mapping), must not be write-sealed (every mapping here is writable), and must
/// hold at least `min_len` bytes.
pub fn check_sealed(fd: impl AsFd, min_len: u64) -> Result<(), FdError> {
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|e| FdError::NotSealable(e.into()))?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(FdError::Unsealed {
            seals: seals.bits(),
        });
    }
    if seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE) {
        return Err(FdError::WriteSealed {
            seals: seals.bits(),
        });
    }
    let stat = rustix::fs::fstat(&fd).map_err(|e| FdError::Stat(e.into()))?;
    // A negative st_size cannot happen for a memfd; treat it as empty.
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size < min_len {
        return Err(FdError::TooSmall {
            size,
            needed: min_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::SharedMemory;

    fn size_of(fd: &OwnedFd) -> i64 {
        rustix::fs::fstat(fd).expect("fstat").st_size
    }

    /// A memfd created the way a careless peer would: sealable but unsealed.
    fn unsealed_memfd(size: u64) -> OwnedFd {
        let fd =
            rustix::fs::memfd_create("unsealed", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .expect("memfd");
        rustix::fs::ftruncate(&fd, size).expect("ftruncate");
        fd
    }

    #[test]
    fn created_memfd_refuses_shrinking_with_eperm() {
        let fd = create_memfd("seal-test", 8192).expect("memfd");
        let err = rustix::fs::ftruncate(&fd, 0).expect_err("shrink must fail");
        assert_eq!(err, rustix::io::Errno::PERM);
        assert_eq!(size_of(&fd), 8192);
    }

    #[test]
    fn created_memfd_refuses_growing_with_eperm() {
        let fd = create_memfd("seal-test", 8192).expect("memfd");
        let err = rustix::fs::ftruncate(&fd, 1 << 20).expect_err("grow must fail");
        assert_eq!(err, rustix::io::Errno::PERM);
        assert_eq!(size_of(&fd), 8192);
    }

    #[test]
    fn created_memfd_seal_set_is_frozen() {
        let fd = create_memfd("seal-test", 4096).expect("memfd");
        let seals = rustix::fs::fcntl_get_seals(&fd).expect("get seals");
        assert_eq!(seals, DAEMON_SEALS);
        let err = rustix::fs::fcntl_add_seals(&fd, SealFlags::FUTURE_WRITE)
            .expect_err("adding a seal must fail");
        assert_eq!(err, rustix::io::Errno::PERM);
    }

    #[test]
    fn a_dup_shares_the_seals() {
        let fd = create_memfd("seal-test", 4096).expect("memfd");
        let dup = fd.try_clone().expect("dup");
        let err = rustix::fs::ftruncate(&dup, 0).expect_err("shrink through a dup");
        assert_eq!(err, rustix::io::Errno::PERM);
    }

    #[test]
    fn mapping_stays_readable_after_a_refused_truncate() {
        let fd = create_memfd("seal-test", 3 * 4096).expect("memfd");
        let map = SharedMemory::map(&fd, 3 * 4096).expect("map");
        map.write(2 * 4096 + 100, b"still here").expect("write");
        let _ = rustix::fs::ftruncate(&fd, 0);
        let mut out = [0u8; 10];
        // Without the seal this read would raise SIGBUS and kill the test process.
        map.read(2 * 4096 + 100, &mut out).expect("read");
        assert_eq!(&out, b"still here");
    }

    #[test]
    fn check_sealed_accepts_a_daemon_memfd() {
        let fd = create_memfd("seal-test", 4096).expect("memfd");
        check_sealed(&fd, 4096).expect("sealed memfd accepted");
    }

    #[test]
    fn check_sealed_refuses_an_unsealed_memfd() {
        let fd = unsealed_memfd(4096);
        let err = check_sealed(&fd, 4096).expect_err("unsealed memfd refused");
        assert!(matches!(err, FdError::Unsealed { seals: 0 }), "{err:?}");
    }

    #[test]
    fn check_sealed_refuses_a_memfd_that_cannot_be_sealed() {
        // Without MFD_ALLOW_SEALING a memfd starts with F_SEAL_SEAL and nothing else.
        let fd = rustix::fs::memfd_create("no-sealing", MemfdFlags::CLOEXEC).expect("memfd");
        rustix::fs::ftruncate(&fd, 4096).expect("ftruncate");
        let err = check_sealed(&fd, 4096).expect_err("unsealed memfd refused");
        assert!(matches!(err, FdError::Unsealed { .. }), "{err:?}");
    }

    #[test]
    fn check_sealed_refuses_a_memfd_smaller_than_the_mapping() {
        let fd = create_memfd("seal-test", 4096).expect("memfd");
        let err = check_sealed(&fd, 8192).expect_err("short memfd refused");
        assert!(
            matches!(
                err,
                FdError::TooSmall {
                    size: 4096,
                    needed: 8192
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn check_sealed_refuses_a_write_sealed_memfd() {
        let fd = unsealed_memfd(4096);
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::WRITE).expect("seal");
        let err = check_sealed(&fd, 4096).expect_err("write-sealed memfd refused");
        assert!(matches!(err, FdError::WriteSealed { .. }), "{err:?}");
    }

    #[test]
    fn check_sealed_refuses_an_fd_that_is_not_a_memfd() {
        let fd = crate::sys::create_eventfd().expect("eventfd");
        let err = check_sealed(&fd, 0).expect_err("eventfd refused");
        assert!(matches!(err, FdError::NotSealable(_)), "{err:?}");
    }
}
