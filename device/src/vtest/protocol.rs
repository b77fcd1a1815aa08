//! vtest wire format (protocol version 3, as Mesa 25.0.7 speaks it): constants and
//! payload parsing. No I/O here.
//!
//! Every message is `[u32 LEN][u32 CMD]` followed by LEN dwords, except
//! CREATE_RENDERER whose LEN counts bytes. All values are little-endian.

use crate::ids::{BlobId, RingIdx, SyncId};

/// The protocol version this server speaks (never 4: it changes SUBMIT_CMD2 batches).
pub const PROTOCOL_VERSION: u32 = 3;

/// Command ids.
pub mod cmd {
    /// RESOURCE_UNREF
    pub const RESOURCE_UNREF: u32 = 3;
    /// RESOURCE_BUSY_WAIT (Mesa sends one dummy during the ping)
    pub const RESOURCE_BUSY_WAIT: u32 = 7;
    /// CREATE_RENDERER (LEN in bytes)
    pub const CREATE_RENDERER: u32 = 8;
    /// PING_PROTOCOL_VERSION
    pub const PING_PROTOCOL_VERSION: u32 = 10;
    /// PROTOCOL_VERSION
    pub const PROTOCOL_VERSION: u32 = 11;
    /// GET_PARAM
    pub const GET_PARAM: u32 = 15;
    /// GET_CAPSET
    pub const GET_CAPSET: u32 = 16;
    /// CONTEXT_INIT
    pub const CONTEXT_INIT: u32 = 17;
    /// RESOURCE_CREATE_BLOB
    pub const RESOURCE_CREATE_BLOB: u32 = 18;
    /// SYNC_CREATE
    pub const SYNC_CREATE: u32 = 19;
    /// SYNC_UNREF
    pub const SYNC_UNREF: u32 = 20;
    /// SYNC_READ
    pub const SYNC_READ: u32 = 21;
    /// SYNC_WRITE
    pub const SYNC_WRITE: u32 = 22;
    /// SYNC_WAIT
    pub const SYNC_WAIT: u32 = 23;
    /// SUBMIT_CMD2
    pub const SUBMIT_CMD2: u32 = 24;
}

/// GET_PARAM: maximum timeline count.
pub const PARAM_MAX_TIMELINE_COUNT: u32 = 1;
/// What we answer for it (ring_idx must be below this).
pub const MAX_TIMELINE_COUNT: u32 = 64;

/// Blob type: guest memory (not supported over vtest).
pub const BLOB_TYPE_GUEST: u32 = 1;
/// Blob type: host memory (the only one Mesa sends).
pub const BLOB_TYPE_HOST3D: u32 = 2;
/// Blob type: host memory backed by guest memory.
pub const BLOB_TYPE_HOST3D_GUEST: u32 = 3;
/// Blob flag: mappable.
pub const BLOB_FLAG_MAPPABLE: u32 = 1;
/// Blob flag: shareable.
pub const BLOB_FLAG_SHAREABLE: u32 = 2;
/// Blob flag: cross-device.
pub const BLOB_FLAG_CROSS_DEVICE: u32 = 4;

/// SUBMIT_CMD2 batch flag: `ring_idx` is valid.
pub const SUBMIT_CMD2_FLAG_RING_IDX: u32 = 1;
/// Dwords per SUBMIT_CMD2 batch header on protocol 3 (not the 8 the C macros imply).
pub const SUBMIT_CMD2_BATCH_DWORDS: usize = 6;
/// SYNC_WAIT flag: any sync suffices.
pub const SYNC_WAIT_FLAG_ANY: u32 = 1;

/// Errors in a message's contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The payload is shorter than the command needs.
    #[error("command {cmd} payload of {len} dwords is too short")]
    TooShort {
        /// Command id.
        cmd: u32,
        /// LEN received.
        len: usize,
    },
    /// A SUBMIT_CMD2 batch points outside the message.
    #[error(
        "SUBMIT_CMD2 batch {batch} {what} range {offset}+{size} is outside the {len}-dword message"
    )]
    BatchOutOfRange {
        /// Batch index.
        batch: usize,
        /// "command" or "sync".
        what: &'static str,
        /// Offset in dwords.
        offset: u32,
        /// Size in dwords.
        size: u64,
        /// Message LEN.
        len: usize,
    },
    /// A SUBMIT_CMD2 ring index is not below the timeline count.
    #[error("SUBMIT_CMD2 batch {batch} ring_idx {ring_idx} is not below {MAX_TIMELINE_COUNT}")]
    BadRingIdx {
        /// Batch index.
        batch: usize,
        /// The index.
        ring_idx: u32,
    },
    /// SUBMIT_CMD2 batch count does not fit the message.
    #[error("SUBMIT_CMD2 batch count {0} does not fit the message")]
    BadBatchCount(u32),
    /// SYNC_WAIT length is not 2 + 3n.
    #[error("SYNC_WAIT length {0} is not 2 + 3n")]
    BadSyncWaitLen(usize),
}

/// A message payload: LEN little-endian dwords.
#[derive(Debug)]
pub struct Payload {
    cmd: u32,
    bytes: Vec<u8>,
}

impl Payload {
    /// Wraps raw payload bytes (a multiple of 4).
    pub fn new(cmd: u32, bytes: Vec<u8>) -> Self {
        Self { cmd, bytes }
    }

    /// The command id.
    pub fn command(&self) -> u32 {
        self.cmd
    }

    /// Payload length in dwords.
    pub fn len_dwords(&self) -> usize {
        self.bytes.len() / 4
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks the payload has at least `n` dwords.
    pub fn require(&self, n: usize) -> Result<(), ProtocolError> {
        if self.len_dwords() < n {
            return Err(ProtocolError::TooShort {
                cmd: self.cmd,
                len: self.len_dwords(),
            });
        }
        Ok(())
    }

    /// Dword `i`, or a TooShort error.
    pub fn dword(&self, i: usize) -> Result<u32, ProtocolError> {
        self.require(i + 1)?;
        let b = &self.bytes[i * 4..i * 4 + 4];
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Dwords `i` (low) and `i + 1` (high) as a u64.
    pub fn qword(&self, i: usize) -> Result<u64, ProtocolError> {
        Ok(u64::from(self.dword(i)?) | (u64::from(self.dword(i + 1)?) << 32))
    }

    /// Bytes of dwords `offset..offset+size` (already validated).
    pub fn dword_range(&self, offset: u32, size: u32) -> &[u8] {
        let start = offset as usize * 4;
        &self.bytes[start..start + size as usize * 4]
    }
}

/// RESOURCE_CREATE_BLOB request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateBlob {
    /// Blob type (HOST3D = 2).
    pub blob_type: u32,
    /// Blob flags.
    pub flags: u32,
    /// Size in bytes (not page-aligned).
    pub size: u64,
    /// Blob id (0 = shared memory).
    pub blob_id: BlobId,
}

impl CreateBlob {
    /// Parses the 6-dword payload.
    pub fn parse(p: &Payload) -> Result<Self, ProtocolError> {
        p.require(6)?;
        Ok(Self {
            blob_type: p.dword(0)?,
            flags: p.dword(1)?,
            size: p.qword(2)?,
            blob_id: BlobId(p.qword(4)?),
        })
    }
}

/// One SUBMIT_CMD2 batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submit2Batch {
    /// Flags (RING_IDX = 1).
    pub flags: u32,
    /// Command stream offset in dwords from payload dword 0.
    pub cmd_offset: u32,
    /// Command stream size in dwords.
    pub cmd_size: u32,
    /// Sync list offset in dwords.
    pub sync_offset: u32,
    /// Number of `{id, lo, hi}` sync entries.
    pub sync_count: u32,
    /// Timeline index (0 = CPU).
    pub ring_idx: RingIdx,
}

/// Parses and validates every batch header of a SUBMIT_CMD2 payload (stride 6).
pub fn parse_submit_cmd2(p: &Payload) -> Result<Vec<Submit2Batch>, ProtocolError> {
    let len = p.len_dwords();
    let count = p.dword(0)?;
    let headers = (count as usize)
        .checked_mul(SUBMIT_CMD2_BATCH_DWORDS)
        .and_then(|n| n.checked_add(1))
        .filter(|&n| n <= len)
        .ok_or(ProtocolError::BadBatchCount(count))?;
    debug_assert!(headers <= len);
    let mut batches = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let base = 1 + i * SUBMIT_CMD2_BATCH_DWORDS;
        let flags = p.dword(base)?;
        let batch = Submit2Batch {
            flags,
            cmd_offset: p.dword(base + 1)?,
            cmd_size: p.dword(base + 2)?,
            sync_offset: p.dword(base + 3)?,
            sync_count: p.dword(base + 4)?,
            ring_idx: RingIdx(if flags & SUBMIT_CMD2_FLAG_RING_IDX != 0 {
                p.dword(base + 5)?
            } else {
                0
            }),
        };
        let within = |offset: u32, size: u64| {
            u64::from(offset)
                .checked_add(size)
                .is_some_and(|end| end <= len as u64)
        };
        if !within(batch.cmd_offset, u64::from(batch.cmd_size)) {
            return Err(ProtocolError::BatchOutOfRange {
                batch: i,
                what: "command",
                offset: batch.cmd_offset,
                size: u64::from(batch.cmd_size),
                len,
            });
        }
        let sync_dwords = u64::from(batch.sync_count) * 3;
        if !within(batch.sync_offset, sync_dwords) {
            return Err(ProtocolError::BatchOutOfRange {
                batch: i,
                what: "sync",
                offset: batch.sync_offset,
                size: sync_dwords,
                len,
            });
        }
        if batch.ring_idx.0 >= MAX_TIMELINE_COUNT {
            return Err(ProtocolError::BadRingIdx {
                batch: i,
                ring_idx: batch.ring_idx.0,
            });
        }
        batches.push(batch);
    }
    Ok(batches)
}

/// The `{id, value}` sync entries of a validated batch.
pub fn batch_syncs(p: &Payload, batch: &Submit2Batch) -> Result<Vec<(SyncId, u64)>, ProtocolError> {
    let base = batch.sync_offset as usize;
    (0..batch.sync_count as usize)
        .map(|i| Ok((SyncId(p.dword(base + i * 3)?), p.qword(base + i * 3 + 1)?)))
        .collect()
}

/// SYNC_WAIT request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncWait {
    /// Flags (ANY = 1).
    pub flags: u32,
    /// Timeout in ms (`u32::MAX` = forever).
    pub timeout_ms: u32,
    /// `{id, value}` entries.
    pub entries: Vec<(SyncId, u64)>,
}

impl SyncWait {
    /// Parses LEN = 2 + 3n.
    pub fn parse(p: &Payload) -> Result<Self, ProtocolError> {
        let len = p.len_dwords();
        if len < 2 || !(len - 2).is_multiple_of(3) {
            return Err(ProtocolError::BadSyncWaitLen(len));
        }
        let entries = (0..(len - 2) / 3)
            .map(|i| Ok((SyncId(p.dword(2 + i * 3)?), p.qword(3 + i * 3)?)))
            .collect::<Result<_, ProtocolError>>()?;
        Ok(Self {
            flags: p.dword(0)?,
            timeout_ms: p.dword(1)?,
            entries,
        })
    }
}

/// Encodes a reply: header `[len, cmd]` followed by `words`.
pub fn encode_reply(cmd: u32, words: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + words.len() * 4);
    out.extend_from_slice(&u32::try_from(words.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&cmd.to_le_bytes());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(cmd: u32, words: &[u32]) -> Payload {
        Payload::new(cmd, words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    #[test]
    fn observed_mesa_submit_parses_with_stride_six() {
        let mut words = vec![1, 1, 7, 35, 42, 0, 0];
        words.extend(std::iter::repeat_n(0u32, 35));
        let p = payload(cmd::SUBMIT_CMD2, &words);
        let batches = parse_submit_cmd2(&p).expect("valid");
        assert_eq!(
            batches,
            vec![Submit2Batch {
                flags: 1,
                cmd_offset: 7,
                cmd_size: 35,
                sync_offset: 42,
                sync_count: 0,
                ring_idx: RingIdx(0),
            }]
        );
    }

    #[test]
    fn submit_with_stream_past_the_end_is_rejected() {
        let p = payload(cmd::SUBMIT_CMD2, &[1, 1, 7, 36, 42, 0, 0, 0]);
        assert!(matches!(
            parse_submit_cmd2(&p),
            Err(ProtocolError::BatchOutOfRange {
                what: "command",
                ..
            })
        ));
    }

    #[test]
    fn submit_with_ring_idx_64_is_rejected() {
        let p = payload(cmd::SUBMIT_CMD2, &[1, 1, 7, 0, 7, 0, 64]);
        assert!(matches!(
            parse_submit_cmd2(&p),
            Err(ProtocolError::BadRingIdx { ring_idx: 64, .. })
        ));
    }

    #[test]
    fn submit_with_huge_batch_count_is_rejected() {
        let p = payload(cmd::SUBMIT_CMD2, &[u32::MAX, 1, 7, 0, 7, 0, 0]);
        assert_eq!(
            parse_submit_cmd2(&p),
            Err(ProtocolError::BadBatchCount(u32::MAX))
        );
    }

    #[test]
    fn sync_wait_length_must_be_two_plus_three_n() {
        assert!(matches!(
            SyncWait::parse(&payload(cmd::SYNC_WAIT, &[0, 0, 1, 2])),
            Err(ProtocolError::BadSyncWaitLen(4))
        ));
        let w = SyncWait::parse(&payload(cmd::SYNC_WAIT, &[1, 5, 9, 2, 1])).expect("valid");
        assert_eq!(w.entries, vec![(SyncId(9), (1u64 << 32) | 2)]);
    }
}
