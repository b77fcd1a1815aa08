//! The `probe` demo client: Mesa's handshake, the capset, a ring round trip.
//!
//! It returns a report instead of printing, so the binary decides where output goes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::client::{venus, Batch, ClientError, VtestClient};
use super::protocol::BLOB_FLAG_MAPPABLE;
use crate::ids::{BlobId, CapsetId, ResourceId, RingId};
use crate::renderer::{RingCreateInfo, STATUS_ALIVE, STATUS_FATAL};
use crate::sys::SharedMemory;

/// Probe errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The vtest exchange failed.
    #[error("vtest exchange failed")]
    Client(#[from] ClientError),
    /// Mapping a blob failed.
    #[error("mapping a blob failed")]
    Map(#[from] crate::sys::ShmError),
    /// The ring did not make progress.
    #[error("ring check failed: {0}")]
    Ring(&'static str),
}

/// What the probe saw, one line per step.
#[derive(Debug, Default)]
pub struct ProbeReport {
    /// Step descriptions.
    pub lines: Vec<String>,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

fn word(bytes: &[u8], offset: usize) -> u32 {
    bytes
        .get(offset..offset + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Mesa's instance ring layout (venus-wire.md §5.1).
pub fn mesa_instance_ring(resource: ResourceId) -> RingCreateInfo {
    RingCreateInfo {
        resource,
        size: 131_268,
        idle_timeout_ns: 1_000_000,
        tail_offset: 64,
        status_offset: 128,
        buffer_offset: 192,
        buffer_size: 131_072,
        extra_offset: 131_264,
        extra_size: 4,
        monitor_period_us: Some(3_000_000),
        ..RingCreateInfo::default()
    }
}

/// Connects to `socket` and exercises the transport like Mesa's instance setup.
pub fn probe(socket: &std::path::Path) -> Result<ProbeReport, ProbeError> {
    let mut r = ProbeReport::default();
    let mut c = VtestClient::connect(socket)?;
    let hs = c.handshake("vgpu-probe")?;
    r.lines.push(format!(
        "handshake: protocol version {}, max timeline count {}",
        hs.protocol_version, hs.max_timeline_count
    ));
    let xml = word(&hs.capset, 4);
    let ext_bits: u32 = (0..32)
        .map(|i| word(&hs.capset, 20 + i * 4).count_ones())
        .sum();
    r.lines.push(format!(
        "capset 4 ({} bytes): wire format {}, vk.xml {}.{}.{}, serialization spec {}, venus protocol spec {}, blob_id_0 {}, {} extension bits incl. the valid bit, wait_syncs {}, multiple timelines {}",
        hs.capset.len(),
        word(&hs.capset, 0),
        xml >> 22,
        (xml >> 12) & 0x3ff,
        xml & 0xfff,
        word(&hs.capset, 8),
        word(&hs.capset, 12),
        word(&hs.capset, 16),
        ext_bits,
        word(&hs.capset, 148),
        word(&hs.capset, 152),
    ));
    c.context_init(CapsetId::VENUS)?;

    let (ring_res, ring_fd) = c.create_blob(BLOB_FLAG_MAPPABLE, 131_268, BlobId::SHMEM)?;
    let ring_mem = SharedMemory::map(&ring_fd, 131_268)?;
    drop(ring_fd);
    let (reply_res, reply_fd) = c.create_blob(BLOB_FLAG_MAPPABLE, 1 << 20, BlobId::SHMEM)?;
    let reply_mem = SharedMemory::map(&reply_fd, 1 << 20)?;
    drop(reply_fd);
    r.lines.push(format!(
        "blobs: ring shmem {ring_res} (131268 bytes), reply shmem {reply_res} (1 MiB), fds received and mapped"
    ));

    let ring = RingId(0x5642_dca8_fa00);
    let info = mesa_instance_ring(ring_res);
    let create = venus::create_ring(ring, &info);
    c.submit_cmd2(&[Batch {
        cmds: &create,
        ..Batch::default()
    }])?;
    r.lines.push(format!(
        "SUBMIT_CMD2: vkCreateRingMESA ({} bytes) on the context stream",
        create.len()
    ));

    // Guest side of a ring submission: copy commands in, publish tail (release).
    let mut cmds = venus::set_reply_stream(reply_res, 0, 64);
    cmds.extend(venus::seek_reply_stream(0, true));
    ring_mem.write(192, &cmds)?;
    let tail = u32::try_from(cmds.len()).unwrap_or(u32::MAX);
    ring_mem.store_u32(64, tail, Ordering::Release)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let head = ring_mem.load_u32(0, Ordering::Acquire)?;
        let status = ring_mem.load_u32(128, Ordering::SeqCst)?;
        if status & STATUS_FATAL != 0 {
            return Err(ProbeError::Ring("the server set FATAL"));
        }
        if head == tail {
            let mut reply = [0u8; 4];
            reply_mem.read(0, &mut reply)?;
            r.lines.push(format!(
                "ring: head reached tail {tail}; reply stream holds command type {} (vkSeekReplyCommandStreamMESA); status {status:#x}{}",
                u32::from_le_bytes(reply),
                if status & STATUS_ALIVE != 0 { " (ALIVE)" } else { "" },
            ));
            break;
        }
        if Instant::now() > deadline {
            return Err(ProbeError::Ring("head did not reach tail within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    c.submit_cmd2(&[Batch {
        cmds: &venus::destroy_ring(ring),
        ..Batch::default()
    }])?;
    c.resource_unref(reply_res)?;
    c.resource_unref(ring_res)?;
    r.lines
        .push("teardown: vkDestroyRingMESA, RESOURCE_UNREF x2, disconnect".into());
    Ok(r)
}
