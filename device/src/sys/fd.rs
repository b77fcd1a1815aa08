//! eventfds and `SCM_RIGHTS` fd passing, through `rustix`'s safe wrappers, and the
//! error type of the fd layer (shared with [`super::memfd`]).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::EventfdFlags;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Errors from fd operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FdError {
    /// `memfd_create` or `ftruncate` failed.
    #[error("creating a {size}-byte memfd failed")]
    Memfd {
        /// Requested size.
        size: u64,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `eventfd` failed.
    #[error("creating an eventfd failed")]
    Eventfd(#[source] std::io::Error),
    /// Writing to an eventfd failed.
    #[error("signalling an eventfd failed")]
    Signal(#[source] std::io::Error),
    /// `sendmsg` failed.
    #[error("sending an fd failed")]
    Send(#[source] std::io::Error),
    /// `recvmsg` failed.
    #[error("receiving an fd failed")]
    Recv(#[source] std::io::Error),
    /// The peer's message carried no fd.
    #[error("the message carried no fd")]
    NoFd,
    /// Adding seals to a memfd the daemon created failed.
    #[error("sealing a memfd failed")]
    Seal(#[source] std::io::Error),
    /// A foreign fd cannot carry seals (`F_GET_SEALS` failed: not a memfd).
    #[error("the fd cannot carry seals (not a memfd)")]
    NotSealable(#[source] std::io::Error),
    /// A foreign fd lacks `F_SEAL_SHRINK`: its owner could truncate it under a
    /// mapping and kill the daemon with SIGBUS.
    #[error("the fd is not sealed against shrinking (seals {seals:#x})")]
    Unsealed {
        /// The seals it carries (`F_SEAL_*` bits).
        seals: u32,
    },
    /// A foreign fd is write-sealed, so it cannot be mapped writable.
    #[error("the fd is write-sealed (seals {seals:#x})")]
    WriteSealed {
        /// The seals it carries (`F_SEAL_*` bits).
        seals: u32,
    },
    /// `fstat` of a foreign fd failed.
    #[error("fstat of the fd failed")]
    Stat(#[source] std::io::Error),
    /// A foreign fd is smaller than what would be mapped.
    #[error("the fd holds {size} bytes but {needed} would be mapped")]
    TooSmall {
        /// Its size (`st_size`).
        size: u64,
        /// Bytes the caller maps.
        needed: u64,
    },
}

/// Creates a close-on-exec eventfd with counter 0.
pub fn create_eventfd() -> Result<OwnedFd, FdError> {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| FdError::Eventfd(e.into()))
}

/// Adds 1 to an eventfd's counter, making it readable.
pub fn signal_eventfd(fd: impl AsFd) -> Result<(), FdError> {
    rustix::io::write(fd, &1u64.to_ne_bytes())
        .map(|_| ())
        .map_err(|e| FdError::Signal(e.into()))
}

/// Sends one fd in its own `sendmsg` carrying exactly one dummy byte, as Mesa's vtest
/// client expects (venus-wire.md §1.5). Never mix payload into this message.
pub fn send_fd(socket: impl AsFd, fd: impl AsFd) -> Result<(), FdError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(FdError::Send(std::io::Error::other(
            "control buffer too small",
        )));
    }
    let byte = [0u8];
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(&byte)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| FdError::Send(e.into()))?;
    if sent != 1 {
        return Err(FdError::Send(std::io::Error::other("short sendmsg")));
    }
    Ok(())
}

/// Receives one fd sent by [`send_fd`] (one byte + `SCM_RIGHTS`).
pub fn recv_fd(socket: impl AsFd) -> Result<OwnedFd, FdError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8];
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| FdError::Recv(e.into()))?;
    if msg.bytes != 1 {
        return Err(FdError::Recv(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed while an fd was expected",
        )));
    }
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                // Keep the first; any extra fds are closed when dropped.
                if received.is_none() {
                    received = Some(fd);
                }
            }
        }
    }
    received.ok_or(FdError::NoFd)
}
