//! Error policy: why a command failed, the `ERR_*` response it gets, and how the
//! failure is logged ([`Severity`]).

use super::{GpuHandler, LOG_TARGET};
use crate::renderer::{ContextError, ResourceError};
use crate::virtio_gpu::backing::BackingError;
use crate::virtio_gpu::protocol::{ProtocolError, RespType};
use crate::virtio_gpu::render::RenderError;

/// Why a command failed; each maps to one `ERR_*` response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The request could not be decoded.
    #[error("malformed request")]
    Protocol(#[from] ProtocolError),
    /// The chain has no full header.
    #[error("chain holds {0} bytes, less than a header")]
    NoHeader(usize),
    /// Unknown or already-used resource id.
    #[error("invalid resource id {0}")]
    Resource(u32),
    /// Unknown scanout.
    #[error("invalid scanout id {0}")]
    Scanout(u32),
    /// Unknown or duplicate context.
    #[error("invalid context id {0}")]
    Context(u32),
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(&'static str),
    /// A guest-memory problem.
    #[error("bad guest backing")]
    Backing(#[from] BackingError),
    /// A cap was reached.
    #[error("out of memory: {0}")]
    OutOfMemory(&'static str),
    /// The command needs something this device does not have (virgl 3D resources).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The renderer failed.
    #[error("renderer failed")]
    Render(#[from] RenderError),
    /// The host-visible mapping failed.
    #[error("shared-memory mapping failed: {0}")]
    Map(String),
}

impl CommandError {
    /// The response code the guest gets.
    pub fn resp(&self) -> RespType {
        match self {
            CommandError::Protocol(ProtocolError::UnknownCommand(_))
            | CommandError::NoHeader(_)
            | CommandError::Unsupported(_)
            | CommandError::Map(_) => RespType::ErrUnspec,
            CommandError::Protocol(_) | CommandError::Parameter(_) | CommandError::Backing(_) => {
                RespType::ErrInvalidParameter
            }
            CommandError::Resource(_) => RespType::ErrInvalidResourceId,
            CommandError::Scanout(_) => RespType::ErrInvalidScanoutId,
            CommandError::Context(_) => RespType::ErrInvalidContextId,
            CommandError::OutOfMemory(_) => RespType::ErrOutOfMemory,
            CommandError::Render(RenderError::NoContext(_)) => RespType::ErrInvalidContextId,
            CommandError::Render(RenderError::UnsupportedCapset(_)) => {
                RespType::ErrInvalidParameter
            }
            // The VM's blob (fd) limit: out of memory, as a driver out of room says.
            CommandError::Render(RenderError::Core(ContextError::Resource(
                ResourceError::FdLimit(_),
            ))) => RespType::ErrOutOfMemory,
            CommandError::Render(_) => RespType::ErrUnspec,
        }
    }

    /// How the failure is logged.
    pub fn severity(&self) -> Severity {
        match self {
            CommandError::Resource(_)
            | CommandError::Scanout(_)
            | CommandError::Context(_)
            | CommandError::Parameter(_)
            | CommandError::Unsupported(_)
            | CommandError::Render(
                RenderError::NoContext(_)
                | RenderError::UnsupportedCapset(_)
                | RenderError::Core(
                    // A fatal context was reported once, when it turned fatal (a
                    // failed stream makes it fatal; the core logs that reason).
                    ContextError::Fatal(_)
                    | ContextError::Exec(_)
                    | ContextError::Resource(
                        ResourceError::BadSize { .. }
                        | ResourceError::Duplicate(_)
                        | ResourceError::Unknown(_)
                        // The fd budget logs its own rate-limited line naming the VM.
                        | ResourceError::FdLimit(_),
                    ),
                ),
            ) => Severity::Refused,
            CommandError::Protocol(_)
            | CommandError::NoHeader(_)
            | CommandError::Backing(
                BackingError::OutOfRange { .. }
                | BackingError::Overflow
                | BackingError::Short { .. },
            ) => Severity::Malformed,
            // A read of validated backing fails only if the memory table changed.
            CommandError::Backing(BackingError::Read(_))
            | CommandError::OutOfMemory(_)
            | CommandError::Map(_)
            | CommandError::Render(_) => Severity::Host,
        }
    }
}

/// How a failed command is logged (the house logging policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A well-formed request the device refuses: an unknown or taken id, an
    /// unsupported feature, a parameter out of range. Normal protocol traffic: `debug`.
    Refused,
    /// Input no correct driver sends: a short or garbled request, a value the spec
    /// forbids, a guest range outside guest memory or its backing. Rate-limited `warn`.
    Malformed,
    /// The host failed (renderer, mapping, guest memory), or a configured cap was
    /// reached. Rate-limited `warn`.
    Host,
}

pub(super) type CmdResult<T> = std::result::Result<T, CommandError>;

impl GpuHandler {
    /// Logs a failed command (`what` prefixes the error) at its [`Severity`].
    pub(super) fn log_failure(&self, what: std::fmt::Arguments<'_>, err: &CommandError) {
        match err.severity() {
            Severity::Refused => {
                log::debug!(target: LOG_TARGET, "virtio-gpu: {what}{}", crate::error_chain(err));
            }
            Severity::Malformed | Severity::Host => self.warn.warn(format_args!(
                "virtio-gpu: {what}{}",
                crate::error_chain(err)
            )),
        }
    }
}
