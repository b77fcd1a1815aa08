//! memfds, eventfds and `SCM_RIGHTS` fd passing, through `rustix`'s safe wrappers.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::EventfdFlags;
use rustix::fs::MemfdFlags;
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
}

/// Creates a close-on-exec memfd of exactly `size` bytes (not rounded to pages).
pub fn create_memfd(name: &str, size: u64) -> Result<OwnedFd, FdError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| FdError::Memfd {
            size,
            source: e.into(),
        })?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| FdError::Memfd {
        size,
        source: e.into(),
    })?;
    Ok(fd)
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
