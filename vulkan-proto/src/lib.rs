//! The Venus wire format (Vulkan command serialization, as Mesa's Venus driver speaks it).
//!
//! * [`generated`]: encoders, decoders, argument structs and the [`Dispatch`] trait for
//!   every command on the wire, generated from the registry XML by `vulkan-proto-gen`.
//! * [`cs`]: the hand-written runtime they stand on (bounds checks, sticky fatal state,
//!   allocation budget, typed object-id lookup).
//! * [`info`]: protocol versions and the extension table the capset is built from.
//! * [`format`]: texel-block sizes, extents, depth/stencil bits and planes of every
//!   `VkFormat` on the wire (generated from vk.xml's `<formats>`).
//!
//! The crate does no I/O, owns no threads and calls no driver.

#![warn(missing_docs)]
#[cfg(not(target_endian = "little"))]
compile_error!("vulkan-proto reads the wire with little-endian conversions only on little-endian hosts; the Venus wire is host-endian in practice and only little-endian hosts are supported");

pub mod cs;
pub mod format;
pub mod generated;

pub use cs::{
    Arena, Cx, DecodeError, Decoder, DispatchError, Encoder, HandleMap, ObjectId, RawIds,
    ResourceId,
};
pub use format::{format_info, FormatInfo, PlaneInfo};
pub use generated::args;
pub use generated::dispatch::{dispatch_command, Dispatch};
pub use generated::info;
pub use generated::types::{CommandFlags, CommandType};
