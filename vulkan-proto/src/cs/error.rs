//! Decoder and dispatch errors.

use ash::vk;

use crate::generated::types::CommandType;

/// Why a stream could not be decoded. Every variant is fatal for the stream: commands carry
/// no length, so nothing after a bad command can be found again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stream ended inside a value.
    #[error("stream truncated at byte {at}: {need} more bytes needed")]
    Truncated {
        /// Offset of the read.
        at: usize,
        /// Bytes the read needed.
        need: usize,
    },
    /// A pointer presence marker other than 0 or 1.
    #[error("bad pointer marker {value} at byte {at}")]
    BadPointerMarker {
        /// Offset.
        at: usize,
        /// The value read.
        value: u64,
    },
    /// An array size that disagrees with its count member.
    #[error("array size {found} at byte {at}, expected {expected}")]
    ArraySize {
        /// Offset.
        at: usize,
        /// What the count member says.
        expected: u64,
        /// What the stream says.
        found: u64,
    },
    /// A NULL array whose count is not zero, where the member may not be NULL.
    #[error("NULL array with count {count} at byte {at}")]
    NullArray {
        /// Offset.
        at: usize,
        /// The count member.
        count: u64,
    },
    /// Wrong sType for a struct.
    #[error("sType {found} at byte {at}, expected {expected}")]
    BadSType {
        /// Offset.
        at: usize,
        /// Required value.
        expected: i32,
        /// Value read.
        found: i32,
    },
    /// An sType that may not be chained into this parent (or is unknown).
    #[error("sType {found} at byte {at} may not extend {parent}")]
    UnexpectedSType {
        /// Offset.
        at: usize,
        /// The parent struct.
        parent: &'static str,
        /// Value read.
        found: i32,
    },
    /// A pNext chain longer than the decoder accepts.
    #[error("pNext chain of {parent} longer than {max} at byte {at}")]
    ChainTooLong {
        /// Offset.
        at: usize,
        /// The parent struct.
        parent: &'static str,
        /// The limit.
        max: usize,
    },
    /// A value that is not one of the enum's values.
    #[error("value {value} at byte {at} is not a {ty}")]
    BadEnum {
        /// Offset.
        at: usize,
        /// Enum name.
        ty: &'static str,
        /// Value read.
        value: i32,
    },
    /// A union tag out of range.
    #[error("union tag {tag} at byte {at} out of range for {ty}")]
    BadUnionTag {
        /// Offset.
        at: usize,
        /// Union name.
        ty: &'static str,
        /// Tag read.
        tag: u32,
    },
    /// A non-NULL `pAllocator`.
    #[error("non-NULL pAllocator at byte {at}")]
    NonNullAllocator {
        /// Offset.
        at: usize,
    },
    /// A required pointer or handle was NULL: a command's parameter, or a handle member
    /// of a structure, that vk.xml does not mark optional.
    #[error("{command}: {param} must not be NULL (byte {at})")]
    NullRequired {
        /// Offset.
        at: usize,
        /// Command name (or structure name, for a member).
        command: &'static str,
        /// Parameter name (or member name).
        param: &'static str,
    },
    /// A string without bytes (a string always holds at least its NUL).
    #[error("empty string at byte {at}")]
    EmptyString {
        /// Offset.
        at: usize,
    },
    /// An object id the lookup does not know, or knows with another type.
    #[error("unknown object id {id} of type {ty:?} at byte {at}")]
    UnknownObject {
        /// Offset.
        at: usize,
        /// Expected object type.
        ty: vk::ObjectType,
        /// The id.
        id: u64,
    },
    /// More elements than the remaining bytes could hold.
    #[error("array of {count} elements at byte {at} cannot fit in {remaining} remaining bytes")]
    TooManyElements {
        /// Offset.
        at: usize,
        /// Count read.
        count: u64,
        /// Bytes left in the stream.
        remaining: usize,
    },
    /// The per-command allocation budget is exhausted.
    #[error("allocation of {bytes} bytes at byte {at} exceeds the command budget")]
    Budget {
        /// Offset.
        at: usize,
        /// Requested bytes.
        bytes: usize,
    },
    /// A size that does not fit this host's `usize`.
    #[error("size {value} at byte {at} overflows")]
    Overflow {
        /// Offset.
        at: usize,
        /// Value read.
        value: u64,
    },
    /// Command flags other than GENERATE_REPLY.
    #[error("bad command flags {flags:#x} at byte {at}")]
    BadCommandFlags {
        /// Offset.
        at: usize,
        /// Flags read.
        flags: u32,
    },
    /// A command type that is not on the wire.
    #[error("unknown command type {ty} at byte {at}")]
    UnknownCommand {
        /// Offset.
        at: usize,
        /// Type read.
        ty: u32,
    },
    /// A reply for another command than the one expected.
    #[error("reply for command type {found} at byte {at}, expected {expected}")]
    WrongReply {
        /// Offset.
        at: usize,
        /// Expected type.
        expected: u32,
        /// Type read.
        found: u32,
    },
    /// The decoder already failed; nothing more is read (the sticky fatal state).
    #[error("decoder is in the fatal state")]
    Fatal,
}

/// Why a command could not be dispatched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The stream could not be decoded.
    #[error("decode error")]
    Decode(#[from] DecodeError),
    /// The handler does not implement the command.
    #[error("unsupported command {0}")]
    Unsupported(CommandType),
    /// A reply was requested but no reply stream is set.
    #[error("{0} wants a reply but no reply stream is set")]
    NoReplyStream(CommandType),
    /// The handler failed in a way that is fatal for the stream.
    #[error("handler failed")]
    Handler(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result alias for decoding.
pub type Result<T> = core::result::Result<T, DecodeError>;
