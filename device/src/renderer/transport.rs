//! A bring-up executor that decodes only the `VK_MESA_venus_protocol` transport
//! commands (venus-wire.md §4) and fails every other command, naming its type.
//!
//! It exists so the front door and the ring machinery can be exercised against the
//! real Mesa driver before the generated Venus decoder (`vulkan-proto`) is plugged in:
//! with it, Mesa's `vkCreateRingMESA` creates a real ring, and the first Vulkan command
//! on that ring fails the context cleanly (FATAL bit set). The generated dispatch will
//! replace it, calling the same [`StreamCtx`] operations for these commands.

use super::executor::{CommandStreamDesc, ExecError, StreamCtx, StreamExecutor};
use super::ring::RingCreateInfo;
use crate::ids::{ResourceId, RingId};

/// `VkCommandTypeEXT` values of the transport commands.
pub mod command_type {
    /// vkSetReplyCommandStreamMESA
    pub const SET_REPLY_COMMAND_STREAM: u32 = 178;
    /// vkSeekReplyCommandStreamMESA
    pub const SEEK_REPLY_COMMAND_STREAM: u32 = 179;
    /// vkExecuteCommandStreamsMESA
    pub const EXECUTE_COMMAND_STREAMS: u32 = 180;
    /// vkCreateRingMESA
    pub const CREATE_RING: u32 = 188;
    /// vkDestroyRingMESA
    pub const DESTROY_RING: u32 = 189;
    /// vkNotifyRingMESA
    pub const NOTIFY_RING: u32 = 190;
    /// vkWriteRingExtraMESA
    pub const WRITE_RING_EXTRA: u32 = 191;
    /// vkSubmitVirtqueueSeqnoMESA
    pub const SUBMIT_VIRTQUEUE_SEQNO: u32 = 251;
    /// vkWaitVirtqueueSeqnoMESA
    pub const WAIT_VIRTQUEUE_SEQNO: u32 = 252;
    /// vkWaitRingSeqnoMESA
    pub const WAIT_RING_SEQNO: u32 = 253;
}

/// `VK_COMMAND_GENERATE_REPLY_BIT_EXT`.
pub const GENERATE_REPLY: u32 = 1;

/// `VK_STRUCTURE_TYPE_RING_CREATE_INFO_MESA`.
pub const STYPE_RING_CREATE_INFO: i32 = 1_000_384_000;
/// `VK_STRUCTURE_TYPE_RING_MONITOR_INFO_MESA`.
pub const STYPE_RING_MONITOR_INFO: i32 = 1_000_384_006;
/// `VK_STRUCTURE_TYPE_RING_PRIORITY_INFO_MESA` (spec 2).
pub const STYPE_RING_PRIORITY_INFO: i32 = 1_000_384_007;

/// Longest pNext chain accepted on `VkRingCreateInfoMESA`.
const MAX_PNEXT_DEPTH: usize = 8;

/// Decodes and executes only the transport commands.
#[derive(Debug, Default)]
pub struct TransportOnlyExecutor;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    command_type: u32,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &'static str) -> ExecError {
        ExecError::Malformed {
            command_type: Some(self.command_type),
            reason,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ExecError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.malformed("truncated"))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, ExecError> {
        self.take::<4>().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Result<i32, ExecError> {
        self.take::<4>().map(i32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, ExecError> {
        self.take::<8>().map(u64::from_le_bytes)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// A dynamic-array count that must be `expected` (or 0 for NULL); bounded by the
    /// bytes left so no allocation exceeds the input.
    fn array_count(&mut self, expected: u32, elem_size: usize) -> Result<Option<usize>, ExecError> {
        let count = self.u64()?;
        if count == 0 {
            return Ok(None);
        }
        if count != u64::from(expected) {
            return Err(self.malformed("array size mismatch"));
        }
        let count = usize::try_from(count).map_err(|_| self.malformed("array too large"))?;
        match count.checked_mul(elem_size) {
            Some(bytes) if bytes <= self.remaining() => Ok(Some(count)),
            _ => Err(self.malformed("array larger than the command")),
        }
    }

    fn stream_desc(&mut self) -> Result<CommandStreamDesc, ExecError> {
        Ok(CommandStreamDesc {
            resource: ResourceId(self.u32()?),
            offset: self.u64()?,
            size: self.u64()?,
        })
    }

    fn ring_pnext(&mut self, info: &mut RingCreateInfo, depth: usize) -> Result<(), ExecError> {
        if self.u64()? == 0 {
            return Ok(());
        }
        if depth >= MAX_PNEXT_DEPTH {
            return Err(self.malformed("pNext chain too long"));
        }
        let stype = self.i32()?;
        // Nested encoding: the extension struct's own chain precedes its fields.
        self.ring_pnext(info, depth + 1)?;
        match stype {
            STYPE_RING_MONITOR_INFO => info.monitor_period_us = Some(self.u32()?),
            STYPE_RING_PRIORITY_INFO => info.priority = Some(self.i32()?),
            _ => return Err(self.malformed("unknown sType in VkRingCreateInfoMESA chain")),
        }
        Ok(())
    }

    fn ring_create_info(&mut self) -> Result<RingCreateInfo, ExecError> {
        if self.u64()? == 0 {
            return Err(self.malformed("NULL pCreateInfo"));
        }
        if self.i32()? != STYPE_RING_CREATE_INFO {
            return Err(self.malformed("bad sType"));
        }
        let mut info = RingCreateInfo::default();
        self.ring_pnext(&mut info, 0)?;
        info.flags = self.u32()?;
        info.resource = ResourceId(self.u32()?);
        info.offset = self.u64()?;
        info.size = self.u64()?;
        info.idle_timeout_ns = self.u64()?;
        info.head_offset = self.u64()?;
        info.tail_offset = self.u64()?;
        info.status_offset = self.u64()?;
        info.buffer_offset = self.u64()?;
        info.buffer_size = self.u64()?;
        info.extra_offset = self.u64()?;
        info.extra_size = self.u64()?;
        Ok(info)
    }
}

impl StreamExecutor for TransportOnlyExecutor {
    fn execute_one(&self, stream: &mut StreamCtx<'_>, cmds: &[u8]) -> Result<usize, ExecError> {
        use command_type as ct;
        let mut r = Reader {
            bytes: cmds,
            pos: 0,
            command_type: 0,
        };
        r.command_type = r.u32().map_err(|_| ExecError::Malformed {
            command_type: None,
            reason: "truncated command header",
        })?;
        let flags = r.u32()?;
        match r.command_type {
            ct::SET_REPLY_COMMAND_STREAM => {
                if r.u64()? == 0 {
                    return Err(r.malformed("NULL pStream"));
                }
                let desc = r.stream_desc()?;
                stream.set_reply_stream(desc.resource, desc.offset, desc.size)?;
            }
            ct::SEEK_REPLY_COMMAND_STREAM => {
                let position = r.u64()?;
                stream.seek_reply_stream(position)?;
            }
            ct::EXECUTE_COMMAND_STREAMS => {
                let count = r.u32()?;
                let n = r.array_count(count, 20)?.unwrap_or(0);
                let mut streams = Vec::with_capacity(n);
                for _ in 0..n {
                    streams.push(r.stream_desc()?);
                }
                let positions = match r.array_count(count, 8)? {
                    Some(n) => {
                        let mut p = Vec::with_capacity(n);
                        for _ in 0..n {
                            p.push(r.u64()?);
                        }
                        Some(p)
                    }
                    None => None,
                };
                let dep_count = r.u32()?;
                if let Some(n) = r.array_count(dep_count, 8)? {
                    for _ in 0..n {
                        let _src = r.u32()?;
                        let _dst = r.u32()?;
                    }
                }
                let _exec_flags = r.u32()?;
                // The nested commands' replies go before this command's own.
                stream.execute_command_streams(&streams, positions.as_deref())?;
            }
            ct::CREATE_RING => {
                let ring = RingId(r.u64()?);
                let info = r.ring_create_info()?;
                stream.create_ring(ring, &info)?;
            }
            ct::DESTROY_RING => {
                let ring = RingId(r.u64()?);
                stream.destroy_ring(ring)?;
            }
            ct::NOTIFY_RING => {
                let ring = RingId(r.u64()?);
                let _seqno = r.u32()?;
                let _flags = r.u32()?;
                stream.notify_ring(ring)?;
            }
            ct::WRITE_RING_EXTRA => {
                let ring = RingId(r.u64()?);
                let offset = r.u64()?;
                let value = r.u32()?;
                stream.write_ring_extra(ring, offset, value)?;
            }
            ct::SUBMIT_VIRTQUEUE_SEQNO => {
                let ring = RingId(r.u64()?);
                let seqno = r.u64()?;
                stream.submit_virtqueue_seqno(ring, seqno)?;
            }
            ct::WAIT_VIRTQUEUE_SEQNO => {
                let seqno = r.u64()?;
                stream.wait_virtqueue_seqno(seqno)?;
            }
            ct::WAIT_RING_SEQNO => {
                let ring = RingId(r.u64()?);
                let seqno = r.u64()?;
                stream.wait_ring_seqno(ring, seqno)?;
            }
            other => return Err(ExecError::Unsupported(other)),
        }
        if flags & GENERATE_REPLY != 0 {
            // Every transport command returns void: the reply is the type alone.
            stream.write_reply(&r.command_type.to_le_bytes())?;
        }
        Ok(r.pos)
    }
}
