//! The GPU-hang watchdog page: one `u64` in a sealed memfd the daemon creates and
//! maps, and the worker maps too. The worker's fence thread publishes the
//! `CLOCK_MONOTONIC` time (ns) since which its oldest pending work has been running
//! (`renderer/venus/busy.rs`: since the fence before it on its queue signalled, or
//! since it was queued), or 0 when none is pending; the daemon's supervisor reads it
//! every [`super::supervisor::POLL`] and kills the worker once that work has run
//! longer than the GPU timeout. Because the daemon reads a time stamp rather than waiting for a
//! message, a worker with every thread stuck is still killed.
//!
//! A worker process holds one context, so the page is process-wide: it is installed
//! once ([`install`]) and the context's fence thread publishes to it. Without a page
//! (the in-thread path) publishing does nothing.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::WorkerError;
use crate::sys::{create_memfd, SharedMemory, ShmError};

/// Size of the page's memfd.
pub(crate) const PAGE_BYTES: u64 = 4096;

/// The worker's page, once installed.
static PAGE: OnceLock<SharedMemory> = OnceLock::new();

/// Now on `CLOCK_MONOTONIC`, in ns (the clock both processes share).
pub(crate) fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// Publishes since when the oldest pending work has been running (`None`: none
/// pending).
pub(crate) fn publish_oldest(submitted_ns: Option<u64>) {
    if let Some(page) = PAGE.get() {
        let value = submitted_ns.map_or(0, |t| t.max(1));
        let _ = page.store_u64(0, value, Ordering::Release);
    }
}

/// Maps the page the daemon passed (worker side); later calls keep the first.
pub(crate) fn install(fd: impl AsFd) -> Result<(), ShmError> {
    let map = SharedMemory::map(fd, PAGE_BYTES)?;
    let _ = PAGE.set(map);
    Ok(())
}

/// The daemon's side of one worker's page.
#[derive(Debug)]
pub(crate) struct HangPage {
    map: SharedMemory,
}

impl HangPage {
    /// Creates the memfd (sealed against resizing) and maps it; returns the fd to
    /// hand to the worker.
    pub(crate) fn create() -> Result<(Self, OwnedFd), WorkerError> {
        let fd = create_memfd("vgpu-hang", PAGE_BYTES)?;
        let map = SharedMemory::map(&fd, PAGE_BYTES)?;
        Ok((Self { map }, fd))
    }

    /// How long the oldest pending work has been running, in ns (`None`: none
    /// pending; see `renderer/venus/busy.rs`).
    pub(crate) fn pending_for_ns(&self) -> Option<u64> {
        let at = self.map.load_u64(0, Ordering::Acquire).ok()?;
        (at != 0).then(|| now_ns().saturating_sub(at))
    }
}
