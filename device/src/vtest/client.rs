//! A small vtest client that speaks exactly as Mesa 25.0.7's `vn_renderer_vtest.c`
//! does. Used by the `probe` subcommand and by the tests; also a reference for the
//! byte sequences.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{cmd, BLOB_TYPE_HOST3D, PARAM_MAX_TIMELINE_COUNT, PROTOCOL_VERSION};
use crate::capset::VENUS_CAPSET_SIZE;
use crate::ids::{BlobId, CapsetId, ResourceId, RingId, RingIdx, SyncId};
use crate::renderer::transport::STYPE_RING_MONITOR_INFO;
use crate::renderer::transport::{command_type, GENERATE_REPLY, STYPE_RING_CREATE_INFO};
use crate::renderer::RingCreateInfo;
use crate::sys::{recv_fd, FdError};
use crate::{hi32, lo32};

/// Client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Socket I/O failed.
    #[error("socket I/O failed")]
    Io(#[from] std::io::Error),
    /// Receiving an fd failed.
    #[error("receiving an fd failed")]
    Fd(#[from] FdError),
    /// The server answered with an unexpected header.
    #[error("expected reply to command {expected}, got [{len}, {got}]")]
    UnexpectedReply {
        /// Command we waited for.
        expected: u32,
        /// Command id received.
        got: u32,
        /// LEN received.
        len: u32,
    },
    /// The handshake did not produce a usable renderer.
    #[error("handshake failed: {0}")]
    Handshake(&'static str),
    /// The server refused a blob (resource id 0 with a placeholder fd: the context
    /// failed, see `vtest::conn`).
    #[error("the server refused the blob; the context failed")]
    BlobRefused,
}

/// What the handshake learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Negotiated protocol version.
    pub protocol_version: u32,
    /// MAX_TIMELINE_COUNT.
    pub max_timeline_count: u32,
    /// The Venus capset bytes.
    pub capset: Vec<u8>,
}

/// One SUBMIT_CMD2 batch to send.
#[derive(Clone, Debug, Default)]
pub struct Batch<'a> {
    /// Command stream bytes (padded to 4 by the sender).
    pub cmds: &'a [u8],
    /// Timeline index.
    pub ring_idx: RingIdx,
    /// Syncs to signal.
    pub syncs: &'a [(SyncId, u64)],
}

/// A vtest client connection.
#[derive(Debug)]
pub struct VtestClient {
    stream: UnixStream,
}

/// A length or offset as a wire dword (saturating: an impossible size the server rejects).
fn dw(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

impl VtestClient {
    /// Connects to a vtest socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Ok(Self {
            stream: UnixStream::connect(path)?,
        })
    }

    /// The underlying socket.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends `[len, command] + payload`.
    pub fn send(&mut self, command: u32, payload: &[u32]) -> Result<(), ClientError> {
        let mut msg = words_to_bytes(&[dw(payload.len()), command]);
        msg.extend(words_to_bytes(payload));
        self.send_raw(&msg)
    }

    /// Reads one reply header and payload; checks the command id.
    pub fn read_reply(&mut self, expected: u32) -> Result<Vec<u32>, ClientError> {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let got = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if got != expected || len > 1 << 20 {
            return Err(ClientError::UnexpectedReply { expected, got, len });
        }
        let mut payload = vec![0u8; len as usize * 4];
        self.stream.read_exact(&mut payload)?;
        Ok(payload
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Mesa's `vtest_init` sequence, byte for byte (venus-wire.md §1.3): CREATE_RENDERER,
    /// PING + dummy BUSY_WAIT before any read, PROTOCOL_VERSION(3),
    /// GET_PARAM(MAX_TIMELINE_COUNT), GET_CAPSET(4, 0). Does not send CONTEXT_INIT.
    pub fn handshake(&mut self, name: &str) -> Result<Handshake, ClientError> {
        let mut msg = words_to_bytes(&[dw(name.len() + 1), cmd::CREATE_RENDERER]);
        msg.extend_from_slice(name.as_bytes());
        msg.push(0);
        msg.extend(words_to_bytes(&[0, cmd::PING_PROTOCOL_VERSION]));
        msg.extend(words_to_bytes(&[2, cmd::RESOURCE_BUSY_WAIT, 0, 0]));
        self.send_raw(&msg)?;
        if !self.read_reply(cmd::PING_PROTOCOL_VERSION)?.is_empty() {
            return Err(ClientError::Handshake("ping reply has a payload"));
        }
        if self.read_reply(cmd::RESOURCE_BUSY_WAIT)? != [0] {
            return Err(ClientError::Handshake("busy-wait reply is not [0]"));
        }
        self.send(cmd::PROTOCOL_VERSION, &[PROTOCOL_VERSION])?;
        let version = match self.read_reply(cmd::PROTOCOL_VERSION)?.as_slice() {
            [v] => *v,
            _ => return Err(ClientError::Handshake("bad PROTOCOL_VERSION reply")),
        };
        if version < 3 {
            return Err(ClientError::Handshake("protocol version below 3"));
        }
        self.send(cmd::GET_PARAM, &[PARAM_MAX_TIMELINE_COUNT])?;
        let timelines = match self.read_reply(cmd::GET_PARAM)?.as_slice() {
            [1, v] if *v > 0 => *v,
            _ => return Err(ClientError::Handshake("no timeline support")),
        };
        let (valid, capset) = self.get_capset(CapsetId::VENUS, 0)?;
        if !valid {
            return Err(ClientError::Handshake("no venus capset"));
        }
        Ok(Handshake {
            protocol_version: version,
            max_timeline_count: timelines,
            capset,
        })
    }

    /// GET_CAPSET; returns (valid, bytes).
    pub fn get_capset(
        &mut self,
        id: CapsetId,
        version: u32,
    ) -> Result<(bool, Vec<u8>), ClientError> {
        self.send(cmd::GET_CAPSET, &[id.0, version])?;
        let reply = self.read_reply(cmd::GET_CAPSET)?;
        let valid = reply.first() == Some(&1);
        let mut bytes = words_to_bytes(reply.get(1..).unwrap_or(&[]));
        bytes.truncate(VENUS_CAPSET_SIZE);
        Ok((valid, bytes))
    }

    /// CONTEXT_INIT (no reply).
    pub fn context_init(&mut self, capset: CapsetId) -> Result<(), ClientError> {
        self.send(cmd::CONTEXT_INIT, &[capset.0])
    }

    /// RESOURCE_CREATE_BLOB(HOST3D); returns the id and the fd sent separately.
    pub fn create_blob(
        &mut self,
        flags: u32,
        size: u64,
        blob: BlobId,
    ) -> Result<(ResourceId, OwnedFd), ClientError> {
        self.send(
            cmd::RESOURCE_CREATE_BLOB,
            &[
                BLOB_TYPE_HOST3D,
                flags,
                lo32(size),
                hi32(size),
                lo32(blob.0),
                hi32(blob.0),
            ],
        )?;
        let reply = self.read_reply(cmd::RESOURCE_CREATE_BLOB)?;
        let id = match reply.as_slice() {
            [id] => ResourceId(*id),
            _ => return Err(ClientError::Handshake("bad CREATE_BLOB reply")),
        };
        let fd = recv_fd(&self.stream)?;
        if id.0 == 0 {
            return Err(ClientError::BlobRefused);
        }
        Ok((id, fd))
    }

    /// RESOURCE_UNREF (no reply).
    pub fn resource_unref(&mut self, id: ResourceId) -> Result<(), ClientError> {
        self.send(cmd::RESOURCE_UNREF, &[id.0])
    }

    /// SUBMIT_CMD2 with the protocol-3 layout (6-dword batch headers).
    pub fn submit_cmd2(&mut self, batches: &[Batch<'_>]) -> Result<(), ClientError> {
        let mut payload = vec![dw(batches.len())];
        let mut offset = 1 + 6 * batches.len();
        let mut streams = Vec::new();
        let mut sync_words = Vec::new();
        let mut headers = Vec::new();
        for b in batches {
            let mut cmds = b.cmds.to_vec();
            cmds.resize(cmds.len().next_multiple_of(4), 0);
            let cmd_size = cmds.len() / 4;
            headers.push((offset, cmd_size, b));
            offset += cmd_size;
            streams.extend(cmds);
        }
        for (cmd_offset, cmd_size, b) in headers {
            payload.extend_from_slice(&[
                1,
                dw(cmd_offset),
                dw(cmd_size),
                dw(offset + sync_words.len()),
                dw(b.syncs.len()),
                b.ring_idx.0,
            ]);
            for (id, value) in b.syncs {
                sync_words.extend_from_slice(&[id.0, lo32(*value), hi32(*value)]);
            }
        }
        let mut msg = words_to_bytes(&[
            dw(payload.len() + streams.len() / 4 + sync_words.len()),
            cmd::SUBMIT_CMD2,
        ]);
        msg.extend(words_to_bytes(&payload));
        msg.extend(streams);
        msg.extend(words_to_bytes(&sync_words));
        self.send_raw(&msg)
    }

    /// SYNC_CREATE.
    pub fn sync_create(&mut self, value: u64) -> Result<SyncId, ClientError> {
        self.send(cmd::SYNC_CREATE, &[lo32(value), hi32(value)])?;
        match self.read_reply(cmd::SYNC_CREATE)?.as_slice() {
            [id] => Ok(SyncId(*id)),
            _ => Err(ClientError::Handshake("bad SYNC_CREATE reply")),
        }
    }

    /// SYNC_READ.
    pub fn sync_read(&mut self, id: SyncId) -> Result<u64, ClientError> {
        self.send(cmd::SYNC_READ, &[id.0])?;
        match self.read_reply(cmd::SYNC_READ)?.as_slice() {
            [lo, hi] => Ok(u64::from(*lo) | (u64::from(*hi) << 32)),
            _ => Err(ClientError::Handshake("bad SYNC_READ reply")),
        }
    }

    /// SYNC_WRITE.
    pub fn sync_write(&mut self, id: SyncId, value: u64) -> Result<(), ClientError> {
        self.send(cmd::SYNC_WRITE, &[id.0, lo32(value), hi32(value)])
    }

    /// SYNC_WAIT; returns the eventfd.
    pub fn sync_wait(
        &mut self,
        any: bool,
        timeout_ms: u32,
        entries: &[(SyncId, u64)],
    ) -> Result<OwnedFd, ClientError> {
        let mut payload = vec![u32::from(any), timeout_ms];
        for (id, v) in entries {
            payload.extend_from_slice(&[id.0, lo32(*v), hi32(*v)]);
        }
        self.send(cmd::SYNC_WAIT, &payload)?;
        self.read_reply(cmd::SYNC_WAIT)?;
        Ok(recv_fd(&self.stream)?)
    }

    /// True if the server closed the connection within `timeout` (reads until EOF,
    /// discarding anything else).
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<bool, ClientError> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 256];
        let result = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break Ok(true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break Ok(false)
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ok(true),
                Err(e) => break Err(e.into()),
            }
        };
        self.stream.set_read_timeout(None)?;
        result
    }
}

/// Encoders for the few Venus commands the client side needs (transport commands),
/// laid out exactly as Mesa's generated encoders write them.
pub mod venus {
    use super::*;

    fn header(out: &mut Vec<u8>, command: u32, flags: u32) {
        out.extend_from_slice(&command.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
    }

    fn u64le(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// `vkCreateRingMESA(ring, &info)` with a `VkRingMonitorInfoMESA` if
    /// `info.monitor_period_us` is set (140 bytes for Mesa's instance ring).
    pub fn create_ring(ring: RingId, info: &RingCreateInfo) -> Vec<u8> {
        let mut out = Vec::with_capacity(140);
        header(&mut out, command_type::CREATE_RING, 0);
        u64le(&mut out, ring.0);
        u64le(&mut out, 1);
        out.extend_from_slice(&STYPE_RING_CREATE_INFO.to_le_bytes());
        if let Some(period) = info.monitor_period_us {
            u64le(&mut out, 1);
            out.extend_from_slice(&STYPE_RING_MONITOR_INFO.to_le_bytes());
            u64le(&mut out, 0);
            out.extend_from_slice(&period.to_le_bytes());
        } else {
            u64le(&mut out, 0);
        }
        out.extend_from_slice(&info.flags.to_le_bytes());
        out.extend_from_slice(&info.resource.0.to_le_bytes());
        for v in [
            info.offset,
            info.size,
            info.idle_timeout_ns,
            info.head_offset,
            info.tail_offset,
            info.status_offset,
            info.buffer_offset,
            info.buffer_size,
            info.extra_offset,
            info.extra_size,
        ] {
            u64le(&mut out, v);
        }
        out
    }

    /// `vkDestroyRingMESA(ring)`.
    pub fn destroy_ring(ring: RingId) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, command_type::DESTROY_RING, 0);
        u64le(&mut out, ring.0);
        out
    }

    /// `vkNotifyRingMESA(ring, seqno, 0)`.
    pub fn notify_ring(ring: RingId, seqno: u32) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, command_type::NOTIFY_RING, 0);
        u64le(&mut out, ring.0);
        out.extend_from_slice(&seqno.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    /// `vkWaitRingSeqnoMESA(ring, seqno)`.
    pub fn wait_ring_seqno(ring: RingId, seqno: u64) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, command_type::WAIT_RING_SEQNO, 0);
        u64le(&mut out, ring.0);
        u64le(&mut out, seqno);
        out
    }

    /// `vkSetReplyCommandStreamMESA(&{res, offset, size})` (36 bytes).
    pub fn set_reply_stream(res: ResourceId, offset: u64, size: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        header(&mut out, command_type::SET_REPLY_COMMAND_STREAM, 0);
        u64le(&mut out, 1);
        out.extend_from_slice(&res.0.to_le_bytes());
        u64le(&mut out, offset);
        u64le(&mut out, size);
        out
    }

    /// `vkSeekReplyCommandStreamMESA(position)`, optionally asking for a reply.
    pub fn seek_reply_stream(position: u64, reply: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let flags = if reply { GENERATE_REPLY } else { 0 };
        header(&mut out, command_type::SEEK_REPLY_COMMAND_STREAM, flags);
        u64le(&mut out, position);
        out
    }

    /// `vkExecuteCommandStreamsMESA(streams, NULL, 0, NULL, 0)`.
    pub fn execute_command_streams(streams: &[(ResourceId, u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, command_type::EXECUTE_COMMAND_STREAMS, 0);
        out.extend_from_slice(&dw(streams.len()).to_le_bytes());
        u64le(&mut out, streams.len() as u64);
        for (res, offset, size) in streams {
            out.extend_from_slice(&res.0.to_le_bytes());
            u64le(&mut out, *offset);
            u64le(&mut out, *size);
        }
        u64le(&mut out, 0);
        out.extend_from_slice(&0u32.to_le_bytes());
        u64le(&mut out, 0);
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    /// `vkEnumerateInstanceVersion` with GENERATE_REPLY (16 bytes, observed).
    pub fn enumerate_instance_version() -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, 137, GENERATE_REPLY);
        u64le(&mut out, 1);
        out
    }
}
