//! The renderer core: contexts, resources, rings, reply streams, and the seam
//! ([`StreamExecutor`]) where the Venus decoder and dispatch handlers plug in.
//!
//! It knows nothing of vtest or vhost-user: front doors create a [`Context`] per guest
//! context, attach blobs, and feed it context command streams.

mod context;
mod executor;
pub mod fds;
pub mod ledger;
mod monitor;
mod registry;
mod reply;
mod resource;
mod ring;
pub mod transport;
pub mod venus;
pub mod watchdog;

pub use context::{
    Context, ContextConfig, ContextError, ContextHandle, FatalHook, RingEvent, RingHook,
};
pub use executor::{
    CommandStreamDesc, ExecError, ExecutorFactory, FenceDone, StreamCtx, StreamExecutor,
    StreamKind, TransportError,
};
pub use fds::{FdBudget, FdCharge, FdKind, FdLimits};
pub use registry::ContextRegistry;
pub use resource::{ExportedBlob, Resource, ResourceError, ResourceKind, ResourceLimits};
pub use ring::{
    seqno_reached, Region, RingCreateInfo, RingLayout, RING_BUFFER_MAX_SIZE, STATUS_ALIVE,
    STATUS_FATAL, STATUS_IDLE,
};
