//! Giving freed heap memory back to the OS.
//!
//! A context's teardown frees what its host driver objects held (a lavapipe instance
//! is about 1.6 MiB of heap), but glibc keeps freed memory in its arenas: after a
//! client that created thousands of objects leaves, the daemon's RSS would stay at its
//! peak although nothing is leaked. [`trim_heap`] asks glibc to return it.

/// Returns free heap memory of every malloc arena to the OS (glibc `malloc_trim(0)`);
/// a no-op on other C libraries. Returns whether any memory was released.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and has no preconditions; glibc
        // serializes it with every other allocator call through the arena locks, so it
        // is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
