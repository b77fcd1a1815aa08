//! The handler's configuration: sizes and caps.

/// Device configuration the handler needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerConfig {
    /// Scanouts (1..=16).
    pub num_scanouts: usize,
    /// Preferred mode.
    pub width: u32,
    /// Preferred mode.
    pub height: u32,
    /// Size of host-visible region 1 (0 = none: MAP_BLOB fails).
    pub shm_size: u64,
    /// Host memory for all 2D resources together.
    pub max_2d_bytes: u64,
    /// Largest width or height of a 2D resource.
    pub max_2d_dim: u32,
    /// Largest blob.
    pub max_blob_size: u64,
    /// Largest `nr_entries` of ATTACH_BACKING / CREATE_BLOB.
    pub max_backing_entries: u32,
    /// Largest SUBMIT_3D stream.
    pub max_submit_bytes: u32,
    /// Resources in all.
    pub max_resources: usize,
    /// Contexts in all.
    pub max_contexts: usize,
    /// Responses waiting for fences.
    pub max_parked: usize,
    /// SUBMIT_3D bytes queued to context threads and not yet run; above this the
    /// transport stops taking requests off the queue until some finish.
    pub max_inflight_bytes: u64,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            num_scanouts: 1,
            width: 1280,
            height: 800,
            shm_size: 1 << 30,
            max_2d_bytes: 512 << 20,
            max_2d_dim: 16384,
            max_blob_size: 1 << 30,
            max_backing_entries: 1 << 18,
            max_submit_bytes: 16 << 20,
            max_resources: 65536,
            max_contexts: 256,
            max_parked: 4096,
            max_inflight_bytes: 64 << 20,
        }
    }
}
