//! The virtio-gpu device (VIRTIO 1.3 §5.7), independent of any transport.
//!
//! - [`protocol`]: wire structs, decoding, validators (no I/O).
//! - [`handler`]: the command handler ([`GpuHandler`]): resources, scanouts, contexts,
//!   blobs, fences. It knows nothing of vhost.
//! - [`render`]: the 3D seam ([`RenderBackend`]) and [`CoreBackend`], which routes
//!   contexts to the renderer core shared with the vtest front door.
//! - [`fence`]: per-timeline parking of fenced responses.
//! - [`display`]: headless scanouts (last frame, PNG), cursor (position, 64 × 64
//!   ARGB image), EDID.
//! - [`backing`]: guest backing read through vm-memory.

pub mod backing;
pub mod display;
pub mod fence;
pub mod handler;
pub mod protocol;
pub mod render;

pub use display::{Cursor, CursorImage, Display, Frame, ScanoutId};
pub use fence::{FenceId, Timeline};
pub use handler::{
    GpuHandler, HandlerConfig, Reply, RequestReader, ShmMapper, SliceReader, UsedToken,
};
pub use render::{
    BlobMemory, Capset, CoreBackend, FenceSignals, FenceStatus, RenderBackend, RenderError,
    SubmitStatus, Ticket,
};
