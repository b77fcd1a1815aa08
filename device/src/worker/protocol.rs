//! The daemon ↔ worker control protocol on a `SOCK_SEQPACKET` socket pair: one
//! message per packet, `[kind: u32 LE][body]`, at most one fd per message in
//! `SCM_RIGHTS` (received close-on-exec). Internal and unversioned: both ends are the
//! same binary. Every length is checked; a malformed message from a worker is
//! treated like a dead worker.
//!
//! | kind | direction | body | fd |
//! |---|---|---|---|
//! | `READY` | worker → daemon | — (driver loaded, sandbox on) | — |
//! | `SERVE` | daemon → worker | conn id `u64`, then the worker settings as TOML (`worker::wire`) | the client socket |
//! | `LABEL` | worker → daemon | the connection's label (UTF-8) | — |
//! | `RING` | worker → daemon | ring id `u64`, status offset `u64` | the ring's memfd |
//! | `RING_GONE` | worker → daemon | ring id `u64` | — |
//! | `GATE` | daemon → worker, before `SERVE` | — | the worker's end of its QoS gate socket |
//! | `ACCOUNT` | daemon → worker, before `SERVE` | — | the worker's end of its VM-account socket (`worker::account`) |
//! | `SERVE_GPU` | daemon → worker (instead of `SERVE`) | the worker settings as TOML | the worker's end of its context-operations socket (`worker::ops`): serve one virtio-gpu context |

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::WorkerError;
use crate::ids::RingId;

/// Largest control message.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

const READY: u32 = 1;
const SERVE: u32 = 2;
const LABEL: u32 = 3;
const RING: u32 = 4;
const RING_GONE: u32 = 5;
const GATE: u32 = 6;
const ACCOUNT: u32 = 7;
const SERVE_GPU: u32 = 8;

/// One control message.
#[derive(Debug)]
pub(crate) enum Msg {
    /// The worker loaded the driver and is sandboxed.
    Ready,
    /// Serve this client with this configuration.
    Serve {
        /// The daemon's connection number.
        conn: u64,
        /// The worker settings as TOML text (`worker::wire`).
        config: String,
        /// The client socket.
        client: OwnedFd,
    },
    /// The connection's label for log lines.
    Label(String),
    /// A ring's status word lives at `status_offset` in `fd`.
    Ring {
        /// The ring.
        ring: RingId,
        /// Byte offset of its status word.
        status_offset: u64,
        /// The memfd it lives in.
        fd: OwnedFd,
    },
    /// The ring is gone.
    RingGone(RingId),
    /// The worker's end of its QoS gate socket (`crate::qos::GateClient`).
    Gate(OwnedFd),
    /// The worker's end of its VM-account socket (`super::account::AccountClient`).
    Account(OwnedFd),
    /// Serve one virtio-gpu context on this context-operations socket.
    ServeGpu {
        /// The worker settings as TOML text (`worker::wire`).
        config: String,
        /// The worker's end of the context-operations socket (`worker::ops`).
        ops: OwnedFd,
    },
}

fn u64_at(body: &[u8], at: usize) -> Result<u64, WorkerError> {
    body.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(WorkerError::Malformed("short message"))
}

/// A close-on-exec `SOCK_SEQPACKET` pair (control, gate, account and
/// context-operations sockets): (daemon's end, worker's end).
pub(crate) fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), WorkerError> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| WorkerError::Control(e.into()))
}

/// Sends `msg` on `socket`.
pub(crate) fn send(socket: impl AsFd, msg: &Msg) -> Result<(), WorkerError> {
    let mut bytes = Vec::with_capacity(32);
    let mut fd: Option<BorrowedFd<'_>> = None;
    match msg {
        Msg::Ready => bytes.extend(READY.to_le_bytes()),
        Msg::Serve {
            conn,
            config,
            client,
        } => {
            bytes.extend(SERVE.to_le_bytes());
            bytes.extend(conn.to_le_bytes());
            bytes.extend(config.as_bytes());
            fd = Some(client.as_fd());
        }
        Msg::Label(label) => {
            bytes.extend(LABEL.to_le_bytes());
            bytes.extend(label.as_bytes());
        }
        Msg::Ring {
            ring,
            status_offset,
            fd: ring_fd,
        } => {
            bytes.extend(RING.to_le_bytes());
            bytes.extend(ring.0.to_le_bytes());
            bytes.extend(status_offset.to_le_bytes());
            fd = Some(ring_fd.as_fd());
        }
        Msg::RingGone(ring) => {
            bytes.extend(RING_GONE.to_le_bytes());
            bytes.extend(ring.0.to_le_bytes());
        }
        Msg::Gate(gate) => {
            bytes.extend(GATE.to_le_bytes());
            fd = Some(gate.as_fd());
        }
        Msg::Account(account) => {
            bytes.extend(ACCOUNT.to_le_bytes());
            fd = Some(account.as_fd());
        }
        Msg::ServeGpu { config, ops } => {
            bytes.extend(SERVE_GPU.to_le_bytes());
            bytes.extend(config.as_bytes());
            fd = Some(ops.as_fd());
        }
    }
    if bytes.len() > MAX_MESSAGE {
        return Err(WorkerError::Malformed("message too long"));
    }
    send_raw(socket, &bytes, fd)
}

/// Sends a ring's memfd without taking ownership of it (worker side).
pub(crate) fn send_ring(
    socket: impl AsFd,
    ring: RingId,
    status_offset: u64,
    fd: BorrowedFd<'_>,
) -> Result<(), WorkerError> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend(RING.to_le_bytes());
    bytes.extend(ring.0.to_le_bytes());
    bytes.extend(status_offset.to_le_bytes());
    send_raw(socket, &bytes, Some(fd))
}

pub(crate) fn send_raw(
    socket: impl AsFd,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), WorkerError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(WorkerError::Malformed("control buffer too small"));
        }
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| WorkerError::Control(e.into()))?;
    if sent != bytes.len() {
        return Err(WorkerError::Malformed("short send"));
    }
    Ok(())
}

/// Receives one packet into `buf` (at most `buf.len()` bytes) with at most one fd;
/// `None` when the peer closed its end. A packet longer than `buf` is an error.
pub(crate) fn recv_raw(
    socket: impl AsFd,
    buf: &mut [u8],
) -> Result<Option<(usize, Option<OwnedFd>)>, WorkerError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            &socket,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(WorkerError::Control(e.into())),
        }
    };
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for f in fds {
                // The first is kept; extra fds are closed when dropped.
                if fd.is_none() {
                    fd = Some(f);
                }
            }
        }
    }
    if msg.bytes == 0 {
        return Ok(None);
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(WorkerError::Malformed("message too long"));
    }
    Ok(Some((msg.bytes, fd)))
}

/// Receives one message; `None` when the peer closed its end.
pub(crate) fn recv(socket: impl AsFd) -> Result<Option<Msg>, WorkerError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let Some((len, fd)) = recv_raw(socket, &mut buf)? else {
        return Ok(None);
    };
    let bytes = buf.get(..len).unwrap_or(&[]);
    let kind = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(WorkerError::Malformed("no message kind"))?;
    let body = &bytes[4..];
    let need_fd = |fd: Option<OwnedFd>| fd.ok_or(WorkerError::Malformed("missing fd"));
    Ok(Some(match kind {
        READY => Msg::Ready,
        SERVE => Msg::Serve {
            conn: u64_at(body, 0)?,
            config: String::from_utf8(body[8..].to_vec())
                .map_err(|_| WorkerError::Malformed("config is not UTF-8"))?,
            client: need_fd(fd)?,
        },
        // The worker may be compromised: the label goes into log lines.
        LABEL => Msg::Label(
            String::from_utf8_lossy(body)
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .take(200)
                .collect(),
        ),
        RING => Msg::Ring {
            ring: RingId(u64_at(body, 0)?),
            status_offset: u64_at(body, 8)?,
            fd: need_fd(fd)?,
        },
        RING_GONE => Msg::RingGone(RingId(u64_at(body, 0)?)),
        GATE => Msg::Gate(need_fd(fd)?),
        ACCOUNT => Msg::Account(need_fd(fd)?),
        SERVE_GPU => Msg::ServeGpu {
            config: String::from_utf8(body.to_vec())
                .map_err(|_| WorkerError::Malformed("config is not UTF-8"))?,
            ops: need_fd(fd)?,
        },
        _ => return Err(WorkerError::Malformed("unknown message kind")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair")
    }

    #[test]
    fn serve_round_trips_with_its_fd() {
        let (a, b) = pair();
        let client = crate::sys::create_eventfd().expect("eventfd");
        send(
            &a,
            &Msg::Serve {
                conn: 7,
                config: "max_rings = 4\n".into(),
                client,
            },
        )
        .expect("send");
        match recv(&b).expect("recv") {
            Some(Msg::Serve { conn, config, .. }) => {
                assert_eq!((conn, config.as_str()), (7, "max_rings = 4\n"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ring_without_fd_is_malformed() {
        let (a, b) = pair();
        let mut bytes = RING.to_le_bytes().to_vec();
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(64u64.to_le_bytes());
        send_raw(&a, &bytes, None).expect("send");
        assert!(matches!(
            recv(&b),
            Err(WorkerError::Malformed("missing fd"))
        ));
    }

    #[test]
    fn short_ring_gone_is_malformed() {
        let (a, b) = pair();
        send_raw(&a, &RING_GONE.to_le_bytes(), None).expect("send");
        assert!(matches!(recv(&b), Err(WorkerError::Malformed(_))));
    }

    #[test]
    fn labels_lose_control_characters() {
        let (a, b) = pair();
        send(&a, &Msg::Label("evil\n[ERROR] forged".into())).expect("send");
        match recv(&b).expect("recv") {
            Some(Msg::Label(l)) => assert_eq!(l, "evil?[ERROR] forged"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn closed_peer_reads_as_none() {
        let (a, b) = pair();
        drop(a);
        assert!(matches!(recv(&b), Ok(None)));
    }
}
