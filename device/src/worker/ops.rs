//! The context-operations socket between the daemon and a worker that runs one
//! vhost-user (virtio-gpu) context: the [`crate::virtio_gpu::RenderBackend`] calls,
//! one `SOCK_SEQPACKET` message each, little-endian, at most one fd per message
//! (`SCM_RIGHTS`). Internal and unversioned: both ends are the same binary. The
//! daemon checks every message a worker sends (a malformed one ends the context as a
//! dead worker would); the worker trusts the daemon.
//!
//! | op | direction | body | fd |
//! |---|---|---|---|
//! | `CREATE` | daemon → worker | ctx `u32`, capset `u32`, name (UTF-8) | — |
//! | `SUBMIT` | daemon → worker | ctx `u32`, ticket `u64`, len `u64`, the stream inline (no fd) | a sealed memfd with the stream when it is larger than [`INLINE_MAX`] |
//! | `BLOB` | daemon → worker | ctx `u32`, res `u32`, blob id `u64`, size `u64` | — |
//! | `DESTROY_BLOB` | daemon → worker | ctx `u32`, res `u32` | — |
//! | `DETACH` | daemon → worker | res `u32`, ctx `u32` | — |
//! | `FENCE` | daemon → worker | ctx `u32`, timeline (kind `u32`: 0 global, 1 ring; ctx `u32`; ring `u32`), fence `u64` | — |
//! | `ATTACH` | daemon → worker | ctx `u32`, res `u32`, blob id `u64`, size `u64` | another context's blob memfd |
//! | `CREATED` | worker → daemon | status `u32` (0 ok), reason (UTF-8) | — |
//! | `BLOB_MADE` | worker → daemon | res `u32`, size `u64` | the blob's memfd |
//! | `BLOB_FAILED` | worker → daemon | res `u32`, reason | — |
//! | `SUBMITTED` | worker → daemon | ticket `u64`, status `u32`, reason | — |
//! | `FENCE_DONE` | worker → daemon | timeline (as in `FENCE`), fence `u64` | — |
//! | `ATTACHED` | worker → daemon | res `u32`, status `u32`, reason | — |
//!
//! `CREATE`, `BLOB` and `ATTACH` are answered in order (`CREATED`,
//! `BLOB_MADE`/`BLOB_FAILED`, `ATTACHED`);
//! `SUBMITTED` and `FENCE_DONE` arrive whenever the work is done.

use std::os::fd::{AsFd, OwnedFd};

use super::protocol::{recv_raw, send_raw};
use super::WorkerError;
use crate::ids::{BlobId, CapsetId, ContextId, ResourceId, RingIdx};
use crate::virtio_gpu::{FenceId, Ticket, Timeline};

/// Largest stream sent inline; larger ones go in a memfd.
pub(crate) const INLINE_MAX: usize = 48 * 1024;
/// Largest message.
const MAX_MESSAGE: usize = 64 * 1024;
/// Longest reason text kept from a worker.
const MAX_REASON: usize = 512;

const CREATE: u32 = 1;
const SUBMIT: u32 = 2;
const BLOB: u32 = 3;
const DESTROY_BLOB: u32 = 4;
const DETACH: u32 = 5;
const FENCE: u32 = 6;
const ATTACH: u32 = 7;
const CREATED: u32 = 101;
const BLOB_MADE: u32 = 102;
const BLOB_FAILED: u32 = 103;
const SUBMITTED: u32 = 104;
const FENCE_DONE: u32 = 105;
const ATTACHED: u32 = 106;

/// A request from the daemon.
#[derive(Debug)]
pub(crate) enum Request {
    Create {
        ctx: ContextId,
        capset: CapsetId,
        name: String,
    },
    Submit {
        ctx: ContextId,
        ticket: Ticket,
        cmds: Vec<u8>,
    },
    Blob {
        ctx: ContextId,
        res: ResourceId,
        blob: BlobId,
        size: u64,
    },
    DestroyBlob {
        ctx: ContextId,
        res: ResourceId,
    },
    Detach {
        res: ResourceId,
        ctx: ContextId,
    },
    Fence {
        ctx: ContextId,
        timeline: Timeline,
        fence: FenceId,
    },
    Attach {
        ctx: ContextId,
        res: ResourceId,
        blob: BlobId,
        size: u64,
        fd: OwnedFd,
    },
}

/// An answer or report from the worker.
#[derive(Debug)]
pub(crate) enum Event {
    Created(Result<(), String>),
    BlobMade {
        res: ResourceId,
        size: u64,
        fd: OwnedFd,
    },
    BlobFailed {
        res: ResourceId,
        reason: String,
    },
    Submitted {
        ticket: Ticket,
        result: Result<(), String>,
    },
    FenceDone {
        timeline: Timeline,
        fence: FenceId,
    },
    Attached {
        res: ResourceId,
        result: Result<(), String>,
    },
}

/// Little-endian fields read in order; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WorkerError> {
        if self.bytes.len() < n {
            return Err(WorkerError::Malformed("short context-operations message"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WorkerError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WorkerError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// The rest as text, control characters replaced (it goes into log lines).
    fn text(&mut self) -> String {
        let rest = std::mem::take(&mut self.bytes);
        String::from_utf8_lossy(rest)
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(MAX_REASON)
            .collect()
    }

    fn timeline(&mut self) -> Result<Timeline, WorkerError> {
        let (kind, ctx, ring) = (self.u32()?, self.u32()?, self.u32()?);
        match kind {
            0 => Ok(Timeline::Global),
            1 => Ok(Timeline::Ring(ContextId(ctx), RingIdx(ring))),
            _ => Err(WorkerError::Malformed("unknown timeline kind")),
        }
    }

    fn status(&mut self) -> Result<Result<(), String>, WorkerError> {
        let status = self.u32()?;
        let reason = self.text();
        Ok(if status == 0 { Ok(()) } else { Err(reason) })
    }
}

fn put_timeline(b: &mut Vec<u8>, t: Timeline) {
    let (kind, ctx, ring) = match t {
        Timeline::Global => (0u32, 0u32, 0u32),
        Timeline::Ring(c, r) => (1, c.0, r.0),
    };
    b.extend(kind.to_le_bytes());
    b.extend(ctx.to_le_bytes());
    b.extend(ring.to_le_bytes());
}

fn put_status(b: &mut Vec<u8>, r: &Result<(), String>) {
    match r {
        Ok(()) => b.extend(0u32.to_le_bytes()),
        Err(reason) => {
            b.extend(1u32.to_le_bytes());
            b.extend(reason.bytes().take(MAX_REASON));
        }
    }
}

/// Sends `req` on `socket` (daemon side).
pub(crate) fn send_request(socket: impl AsFd, req: &Request) -> Result<(), WorkerError> {
    let mut b = Vec::with_capacity(64);
    let mut memfd = None;
    match req {
        Request::Create { ctx, capset, name } => {
            b.extend(CREATE.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
            b.extend(capset.0.to_le_bytes());
            b.extend(name.bytes().take(256));
        }
        Request::Submit { ctx, ticket, cmds } => {
            b.extend(SUBMIT.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
            b.extend(ticket.0.to_le_bytes());
            b.extend(u64::try_from(cmds.len()).unwrap_or(u64::MAX).to_le_bytes());
            if cmds.len() <= INLINE_MAX {
                b.extend(cmds);
            } else {
                memfd = Some(stream_memfd(cmds)?);
            }
        }
        Request::Blob {
            ctx,
            res,
            blob,
            size,
        } => {
            b.extend(BLOB.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
            b.extend(res.0.to_le_bytes());
            b.extend(blob.0.to_le_bytes());
            b.extend(size.to_le_bytes());
        }
        Request::DestroyBlob { ctx, res } => {
            b.extend(DESTROY_BLOB.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
            b.extend(res.0.to_le_bytes());
        }
        Request::Detach { res, ctx } => {
            b.extend(DETACH.to_le_bytes());
            b.extend(res.0.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
        }
        Request::Fence {
            ctx,
            timeline,
            fence,
        } => {
            b.extend(FENCE.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
            put_timeline(&mut b, *timeline);
            b.extend(fence.0.to_le_bytes());
        }
        Request::Attach {
            ctx,
            res,
            blob,
            size,
            fd,
        } => {
            b.extend(ATTACH.to_le_bytes());
            b.extend(ctx.0.to_le_bytes());
            b.extend(res.0.to_le_bytes());
            b.extend(blob.0.to_le_bytes());
            b.extend(size.to_le_bytes());
            return send_raw(socket, &b, Some(fd.as_fd()));
        }
    }
    send_raw(socket, &b, memfd.as_ref().map(AsFd::as_fd))
}

/// A sealed memfd holding `cmds`.
fn stream_memfd(cmds: &[u8]) -> Result<OwnedFd, WorkerError> {
    let len = u64::try_from(cmds.len()).map_err(|_| WorkerError::Malformed("stream too long"))?;
    let fd = crate::sys::create_memfd("vgpu-stream", len)?;
    let map = crate::sys::SharedMemory::map(&fd, len)?;
    map.write(0, cmds)?;
    Ok(fd)
}

/// Receives a request (worker side); `None` at the end of the stream.
pub(crate) fn recv_request(
    socket: impl AsFd,
    max_stream: usize,
) -> Result<Option<Request>, WorkerError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let Some((len, fd)) = recv_raw(socket, &mut buf)? else {
        return Ok(None);
    };
    let mut r = Reader {
        bytes: buf.get(..len).unwrap_or(&[]),
    };
    Ok(Some(match r.u32()? {
        CREATE => Request::Create {
            ctx: ContextId(r.u32()?),
            capset: CapsetId(r.u32()?),
            name: r.text(),
        },
        SUBMIT => {
            let ctx = ContextId(r.u32()?);
            let ticket = Ticket(r.u64()?);
            let n = usize::try_from(r.u64()?)
                .ok()
                .filter(|&n| n <= max_stream)
                .ok_or(WorkerError::Malformed("stream too long"))?;
            let cmds = match fd {
                None => r.take(n)?.to_vec(),
                Some(fd) => {
                    let map = crate::sys::SharedMemory::map(&fd, u64::try_from(n).unwrap_or(0))?;
                    let mut cmds = vec![0u8; n];
                    map.read(0, &mut cmds)?;
                    cmds
                }
            };
            Request::Submit { ctx, ticket, cmds }
        }
        BLOB => Request::Blob {
            ctx: ContextId(r.u32()?),
            res: ResourceId(r.u32()?),
            blob: BlobId(r.u64()?),
            size: r.u64()?,
        },
        DESTROY_BLOB => Request::DestroyBlob {
            ctx: ContextId(r.u32()?),
            res: ResourceId(r.u32()?),
        },
        DETACH => Request::Detach {
            res: ResourceId(r.u32()?),
            ctx: ContextId(r.u32()?),
        },
        FENCE => Request::Fence {
            ctx: ContextId(r.u32()?),
            timeline: r.timeline()?,
            fence: FenceId(r.u64()?),
        },
        ATTACH => Request::Attach {
            ctx: ContextId(r.u32()?),
            res: ResourceId(r.u32()?),
            blob: BlobId(r.u64()?),
            size: r.u64()?,
            fd: fd.ok_or(WorkerError::Malformed("attach without its fd"))?,
        },
        _ => return Err(WorkerError::Malformed("unknown context operation")),
    }))
}

/// Sends `ev` on `socket` (worker side).
pub(crate) fn send_event(socket: impl AsFd, ev: &Event) -> Result<(), WorkerError> {
    let mut b = Vec::with_capacity(64);
    let mut fd = None;
    match ev {
        Event::Created(r) => {
            b.extend(CREATED.to_le_bytes());
            put_status(&mut b, r);
        }
        Event::BlobMade {
            res,
            size,
            fd: blob,
        } => {
            b.extend(BLOB_MADE.to_le_bytes());
            b.extend(res.0.to_le_bytes());
            b.extend(size.to_le_bytes());
            fd = Some(blob.as_fd());
        }
        Event::BlobFailed { res, reason } => {
            b.extend(BLOB_FAILED.to_le_bytes());
            b.extend(res.0.to_le_bytes());
            b.extend(reason.bytes().take(MAX_REASON));
        }
        Event::Submitted { ticket, result } => {
            b.extend(SUBMITTED.to_le_bytes());
            b.extend(ticket.0.to_le_bytes());
            put_status(&mut b, result);
        }
        Event::FenceDone { timeline, fence } => {
            b.extend(FENCE_DONE.to_le_bytes());
            put_timeline(&mut b, *timeline);
            b.extend(fence.0.to_le_bytes());
        }
        Event::Attached { res, result } => {
            b.extend(ATTACHED.to_le_bytes());
            b.extend(res.0.to_le_bytes());
            put_status(&mut b, result);
        }
    }
    send_raw(socket, &b, fd)
}

/// Receives an event (daemon side); `None` at the end of the stream (the worker
/// closed its end or died).
pub(crate) fn recv_event(socket: impl AsFd) -> Result<Option<Event>, WorkerError> {
    let mut buf = vec![0u8; 4096];
    let Some((len, fd)) = recv_raw(socket, &mut buf)? else {
        return Ok(None);
    };
    let mut r = Reader {
        bytes: buf.get(..len).unwrap_or(&[]),
    };
    Ok(Some(match r.u32()? {
        CREATED => Event::Created(r.status()?),
        BLOB_MADE => Event::BlobMade {
            res: ResourceId(r.u32()?),
            size: r.u64()?,
            fd: fd.ok_or(WorkerError::Malformed("blob without its fd"))?,
        },
        BLOB_FAILED => Event::BlobFailed {
            res: ResourceId(r.u32()?),
            reason: r.text(),
        },
        SUBMITTED => Event::Submitted {
            ticket: Ticket(r.u64()?),
            result: r.status()?,
        },
        FENCE_DONE => Event::FenceDone {
            timeline: r.timeline()?,
            fence: FenceId(r.u64()?),
        },
        ATTACHED => Event::Attached {
            res: ResourceId(r.u32()?),
            result: r.status()?,
        },
        _ => return Err(WorkerError::Malformed("unknown context-operations event")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        super::super::protocol::seqpacket_pair().expect("socketpair")
    }

    #[test]
    fn a_large_stream_goes_through_a_memfd_and_comes_back_whole() {
        let (a, b) = pair();
        let cmds: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        send_request(
            &a,
            &Request::Submit {
                ctx: ContextId(3),
                ticket: Ticket(9),
                cmds: cmds.clone(),
            },
        )
        .expect("send");
        match recv_request(&b, 1 << 20).expect("recv") {
            Some(Request::Submit {
                ctx,
                ticket,
                cmds: got,
            }) => {
                assert_eq!((ctx, ticket), (ContextId(3), Ticket(9)));
                assert_eq!(got, cmds);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn events_round_trip_and_reasons_lose_control_characters() {
        let (a, b) = pair();
        let t = Timeline::Ring(ContextId(2), RingIdx(1));
        send_event(
            &a,
            &Event::FenceDone {
                timeline: t,
                fence: FenceId(77),
            },
        )
        .expect("send");
        send_event(
            &a,
            &Event::Submitted {
                ticket: Ticket(4),
                result: Err("bad\nline".into()),
            },
        )
        .expect("send");
        match recv_event(&b).expect("recv") {
            Some(Event::FenceDone { timeline, fence }) => {
                assert_eq!((timeline, fence), (t, FenceId(77)));
            }
            other => panic!("unexpected {other:?}"),
        }
        match recv_event(&b).expect("recv") {
            Some(Event::Submitted { ticket, result }) => {
                assert_eq!(ticket, Ticket(4));
                assert_eq!(result, Err("bad?line".to_owned()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_events_are_errors_not_panics() {
        let (a, b) = pair();
        for bad in [
            vec![1u8, 2],
            BLOB_MADE.to_le_bytes().to_vec(),
            [FENCE_DONE.to_le_bytes(), 7u32.to_le_bytes()].concat(),
            99u32.to_le_bytes().to_vec(),
            {
                // BLOB_MADE without its fd.
                let mut m = BLOB_MADE.to_le_bytes().to_vec();
                m.extend(1u32.to_le_bytes());
                m.extend(4096u64.to_le_bytes());
                m
            },
        ] {
            send_raw(&a, &bad, None).expect("send");
            assert!(recv_event(&b).is_err(), "accepted {bad:?}");
        }
    }
}
