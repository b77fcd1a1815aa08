//! The hand-written codec runtime the generated code stands on: bounds-checked reads with a
//! sticky fatal state ([`Decoder`]), writes ([`Encoder`]), the per-command [`Arena`] with its
//! allocation budget, the decode context [`Cx`] (typed object-id lookup), id newtypes, and
//! the one leaf module that reads through raw pointers ([`raw`]).

mod arena;
mod decoder;
mod encoder;
mod error;
mod ids;
pub mod raw;
#[cfg(feature = "testgen")]
pub mod testgen;

pub use arena::{slice_ptr, Arena, Cx, DEFAULT_BUDGET};
pub use decoder::Decoder;
pub use encoder::{Encoder, Gate};
pub use error::{DecodeError, DispatchError, Result};
pub use ids::{HandleMap, ObjectId, RawIds, ResourceId};

/// Longest pNext chain the decoders accept.
pub const MAX_PNEXT_CHAIN: usize = 128;
