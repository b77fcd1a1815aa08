//! The vtest half of the bridge: serves protocol v3 to Mesa's Venus ICD exactly as
//! `vhost-user-vgpu vtest` does (same handshake answers, same message limits) and
//! turns each context-level message into the virtio-gpu commands a Linux guest kernel
//! would send for the equivalent DRM ioctl.
//!
//! | vtest | virtio-gpu |
//! |---|---|
//! | GET_CAPSET(4, v) | GET_CAPSET(4, v) (capset found through GET_CAPSET_INFO at start) |
//! | CONTEXT_INIT(4) | CTX_CREATE(new ctx_id, context_init = 4, debug name = process name) |
//! | RESOURCE_CREATE_BLOB | RESOURCE_CREATE_BLOB(HOST3D) + CTX_ATTACH_RESOURCE + RESOURCE_MAP_BLOB; the SHMEM_MAP fd goes to Mesa |
//! | RESOURCE_UNREF | CTX_DETACH_RESOURCE + RESOURCE_UNMAP_BLOB + RESOURCE_UNREF |
//! | SUBMIT_CMD2 | SUBMIT_3D per batch, FLAG_FENCE \| INFO_RING_IDX on the batch's ring_idx |
//!
//! vtest has no error replies: when the device refuses something, the connection is
//! closed (Mesa aborts, which makes the failure visible) and its context destroyed.

use std::collections::{BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vgpu_device::sys::send_fd;
use vgpu_device::virtio_gpu::protocol::{
    encode, CommandType, RespType, FLAG_FENCE, FLAG_INFO_RING_IDX,
};
use vgpu_device::vtest::protocol::{
    self as vp, cmd, encode_reply, parse_submit_cmd2, CreateBlob, Payload,
};

use super::frontend::{GuestDriver, Response, MAX_DATA, MAX_RESP};
use super::shm::RangeAlloc;

/// The Venus capset id.
const CAPSET_VENUS: u32 = 4;
/// Largest vtest message accepted (what the daemon's vtest front door accepts).
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Resource ids handed out (Mesa indexes a sparse array by res_id: keep them small).
const MAX_RESOURCES: u32 = 65536;

/// Why a connection was closed.
#[derive(Debug)]
pub struct BridgeError(String);

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BridgeError {}

impl From<std::io::Error> for BridgeError {
    fn from(e: std::io::Error) -> Self {
        Self(format!("I/O: {e}"))
    }
}

impl From<vp::ProtocolError> for BridgeError {
    fn from(e: vp::ProtocolError) -> Self {
        Self(format!("malformed vtest message: {e}"))
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, BridgeError> {
    Err(BridgeError(msg.into()))
}

/// Small, reused ids shared by every connection (the guest kernel's resource ids are
/// device-global).
#[derive(Debug, Default)]
struct Ids {
    free: BTreeSet<u32>,
    next: u32,
}

impl Ids {
    fn alloc(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        if self.next >= MAX_RESOURCES {
            return None;
        }
        self.next += 1;
        Some(self.next)
    }

    fn release(&mut self, id: u32) {
        self.free.insert(id);
    }
}

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// vtest connections accepted.
    pub connections: u64,
    /// Blobs created and handed to Mesa.
    pub blobs: u64,
    /// Blobs whose SHMEM_MAP fd was passed through unchanged.
    pub passthrough_fds: u64,
    /// SUBMIT_3D commands sent.
    pub submits: u64,
}

/// State shared by all connections: the one virtio-gpu device.
#[derive(Debug)]
pub struct Bridge {
    gpu: Mutex<GuestDriver>,
    ids: Mutex<Ids>,
    shm_alloc: Mutex<RangeAlloc>,
    next_ctx: AtomicU32,
    next_fence: AtomicU64,
    stats: Mutex<BridgeStats>,
    venus_max_version: u32,
}

impl Bridge {
    /// Wraps a connected device; finds the Venus capset through GET_CAPSET_INFO.
    pub fn new(mut gpu: GuestDriver) -> Result<Self, BridgeError> {
        let info = gpu.info();
        let mut venus = None;
        for index in 0..info.num_capsets {
            let r = gpu.command(
                &encode::simple(CommandType::GetCapsetInfo, &[index, 0]),
                &[],
                40,
            )?;
            if !r.is(RespType::OkCapsetInfo) {
                return fail(format!("GET_CAPSET_INFO({index}) answered {:#x}", r.resp));
            }
            let (id, max_version, max_size) = (r.le32(24), r.le32(28), r.le32(32));
            log::info!("bridge: capset index {index}: id {id} v{max_version}, {max_size} bytes");
            if id == CAPSET_VENUS {
                venus = Some(max_version);
            }
        }
        let Some(venus_max_version) = venus else {
            return fail("the device offers no Venus capset");
        };
        Ok(Self {
            shm_alloc: Mutex::new(RangeAlloc::new(info.shm_size)),
            gpu: Mutex::new(gpu),
            ids: Mutex::default(),
            next_ctx: AtomicU32::new(1),
            next_fence: AtomicU64::new(1),
            stats: Mutex::default(),
            venus_max_version,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> BridgeStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut BridgeStats)) {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn command(&self, cmd: &[u8], data: &[u8], resp_len: u32) -> Result<Response, BridgeError> {
        let mut gpu = self.gpu.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(gpu.command(cmd, data, resp_len)?)
    }

    /// Sends a command that must answer OK_NODATA.
    fn ok(&self, what: &str, cmd: &[u8], data: &[u8]) -> Result<(), BridgeError> {
        let r = self.command(cmd, data, 24)?;
        if !r.is(RespType::OkNodata) {
            return fail(format!("{what} answered {:#x}", r.resp));
        }
        Ok(())
    }

    /// Accepts vtest connections forever, one thread each.
    pub fn serve(self: &Arc<Self>, listener: &UnixListener) {
        let mut conn_id = 0u64;
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("bridge: accept failed: {e}");
                    continue;
                }
            };
            conn_id += 1;
            self.count(|s| s.connections += 1);
            let bridge = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name(format!("bridge-conn-{conn_id}"))
                .spawn(move || {
                    let mut conn = Connection::new(stream, bridge, conn_id);
                    let result = conn.run();
                    let label = conn.label();
                    if let Err(e) = result {
                        log::warn!("bridge: {label} dropped: {e}");
                    }
                    conn.teardown();
                    let c = conn.counts;
                    log::info!(
                        "bridge: {label} closed: {} blobs passed through ({} device memory), \
                         {} unmapped, {} SUBMIT_3D",
                        c.blobs,
                        c.device_blobs,
                        c.unmapped,
                        c.submits
                    );
                });
            if let Err(e) = spawned {
                log::warn!("bridge: spawning a connection thread failed: {e}");
            }
        }
    }
}

/// A blob as both sides know it.
#[derive(Debug)]
struct Blob {
    shm_offset: u64,
}

/// One vtest connection = one VkInstance = one virtio-gpu context.
struct Connection {
    stream: UnixStream,
    bridge: Arc<Bridge>,
    conn_id: u64,
    name: Option<String>,
    ctx: Option<u32>,
    blobs: HashMap<u32, Blob>,
    counts: ConnCounts,
}

/// What one connection did (logged when it closes; the tests read it).
#[derive(Clone, Copy, Debug, Default)]
struct ConnCounts {
    blobs: u64,
    device_blobs: u64,
    unmapped: u64,
    submits: u64,
}

impl Connection {
    fn new(stream: UnixStream, bridge: Arc<Bridge>, conn_id: u64) -> Self {
        Self {
            stream,
            bridge,
            conn_id,
            name: None,
            ctx: None,
            blobs: HashMap::new(),
            counts: ConnCounts::default(),
        }
    }

    fn label(&self) -> String {
        let name = self.name.as_deref().unwrap_or("?");
        match self.ctx {
            Some(c) => format!("client '{name}' (conn {}, ctx {c})", self.conn_id),
            None => format!("client '{name}' (conn {})", self.conn_id),
        }
    }

    fn run(&mut self) -> Result<(), BridgeError> {
        loop {
            let Some((len, command)) = self.read_header()? else {
                return Ok(());
            };
            if self.name.is_none() && command != cmd::CREATE_RENDERER {
                return fail(format!("first command {command} is not CREATE_RENDERER"));
            }
            if command == cmd::CREATE_RENDERER {
                self.create_renderer(len)?;
                continue;
            }
            let bytes = usize::try_from(len)
                .ok()
                .and_then(|l| l.checked_mul(4))
                .filter(|&b| b <= MAX_MESSAGE_BYTES)
                .ok_or_else(|| {
                    BridgeError(format!("command {command} with {len} dwords is too large"))
                })?;
            let mut payload = vec![0u8; bytes];
            self.stream.read_exact(&mut payload)?;
            self.handle(&Payload::new(command, payload))?;
        }
    }

    fn read_header(&mut self) -> Result<Option<(u32, u32)>, BridgeError> {
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match self.stream.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return fail("hang-up mid-header"),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let command = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        Ok(Some((len, command)))
    }

    fn reply(&mut self, command: u32, words: &[u32]) -> Result<(), BridgeError> {
        self.stream.write_all(&encode_reply(command, words))?;
        Ok(())
    }

    fn create_renderer(&mut self, len: u32) -> Result<(), BridgeError> {
        if self.name.is_some() {
            return fail("CREATE_RENDERER sent twice");
        }
        if len == 0 || len > 4096 {
            return fail(format!("CREATE_RENDERER name length {len}"));
        }
        let mut name = vec![0u8; len as usize];
        self.stream.read_exact(&mut name)?;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let name: String = String::from_utf8_lossy(&name[..end])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(64)
            .collect();
        self.name = Some(name);
        Ok(())
    }

    fn ctx(&self, command: u32) -> Result<u32, BridgeError> {
        self.ctx
            .ok_or_else(|| BridgeError(format!("command {command} before CONTEXT_INIT")))
    }

    fn handle(&mut self, p: &Payload) -> Result<(), BridgeError> {
        match p.command() {
            // Answered locally, as the daemon's vtest front door answers them.
            cmd::PING_PROTOCOL_VERSION => self.reply(cmd::PING_PROTOCOL_VERSION, &[]),
            cmd::RESOURCE_BUSY_WAIT => {
                p.require(2)?;
                self.reply(cmd::RESOURCE_BUSY_WAIT, &[0])
            }
            cmd::PROTOCOL_VERSION => {
                let client = p.dword(0)?;
                self.reply(cmd::PROTOCOL_VERSION, &[client.min(vp::PROTOCOL_VERSION)])
            }
            cmd::GET_PARAM => {
                // ring_idx < 64 on both sides (virtio-gpu's MAX_RING_IDX is 63).
                let reply = match p.dword(0)? {
                    vp::PARAM_MAX_TIMELINE_COUNT => [1, vp::MAX_TIMELINE_COUNT],
                    _ => [0, 0],
                };
                self.reply(cmd::GET_PARAM, &reply)
            }
            cmd::GET_CAPSET => self.get_capset(p.dword(0)?, p.dword(1)?),
            cmd::CONTEXT_INIT => self.context_init(p.dword(0)?),
            cmd::RESOURCE_CREATE_BLOB => self.create_blob(p),
            cmd::RESOURCE_UNREF => {
                let res = p.dword(0)?;
                if self.blobs.contains_key(&res) {
                    self.unref(res)
                } else {
                    fail(format!("RESOURCE_UNREF of unknown resource {res}"))
                }
            }
            cmd::SUBMIT_CMD2 => self.submit_cmd2(p),
            other => fail(format!(
                "command {other} is not bridged (Mesa does not send it over vtest)"
            )),
        }
    }

    fn get_capset(&mut self, id: u32, version: u32) -> Result<(), BridgeError> {
        if id != CAPSET_VENUS || version > self.bridge.venus_max_version {
            return self.reply(cmd::GET_CAPSET, &[0]);
        }
        let r = self.bridge.command(
            &encode::simple(CommandType::GetCapset, &[id, version]),
            &[],
            MAX_RESP,
        )?;
        if !r.is(RespType::OkCapset) {
            log::warn!("bridge: GET_CAPSET({id}, {version}) answered {:#x}", r.resp);
            return self.reply(cmd::GET_CAPSET, &[0]);
        }
        let body = r.bytes.get(24..).unwrap_or_default();
        let mut words = vec![1u32];
        words.extend(body.chunks(4).map(|c| {
            c.iter()
                .rev()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
        }));
        self.reply(cmd::GET_CAPSET, &words)
    }

    fn context_init(&mut self, capset: u32) -> Result<(), BridgeError> {
        if capset != CAPSET_VENUS {
            return fail(format!("CONTEXT_INIT with capset {capset}"));
        }
        if self.ctx.is_some() {
            return Ok(());
        }
        let ctx = self.bridge.next_ctx.fetch_add(1, Ordering::Relaxed);
        let name = self.name.clone().unwrap_or_default();
        let mut debug_name = [0u8; 64];
        let n = name.len().min(64);
        debug_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let mut c = encode::hdr(CommandType::CtxCreate, 0, 0, ctx, 0);
        encode::words(&mut c, &[u32::try_from(n).unwrap_or(0), CAPSET_VENUS]);
        c.extend_from_slice(&debug_name);
        self.bridge.ok("CTX_CREATE", &c, &[])?;
        log::debug!("bridge: conn {} is ctx {ctx}", self.conn_id);
        self.ctx = Some(ctx);
        Ok(())
    }

    fn create_blob(&mut self, p: &Payload) -> Result<(), BridgeError> {
        let req = CreateBlob::parse(p)?;
        let ctx = self.ctx(cmd::RESOURCE_CREATE_BLOB)?;
        let known = vp::BLOB_FLAG_MAPPABLE | vp::BLOB_FLAG_SHAREABLE | vp::BLOB_FLAG_CROSS_DEVICE;
        if req.blob_type != vp::BLOB_TYPE_HOST3D || req.flags & !known != 0 || req.size == 0 {
            return fail(format!(
                "RESOURCE_CREATE_BLOB type {} flags {:#x} size {} is not bridged",
                req.blob_type, req.flags, req.size
            ));
        }
        // Over vtest every blob comes with an fd; over virtio-gpu only a mapped blob
        // has one (from SHMEM_MAP). Export-only blobs (no MAPPABLE) are mapped too.
        let flags = req.flags | vp::BLOB_FLAG_MAPPABLE;
        if req.flags & vp::BLOB_FLAG_MAPPABLE == 0 {
            log::debug!(
                "bridge: blob {} without MAPPABLE: mapping it anyway for its fd",
                req.blob_id
            );
        }
        let res = self
            .bridge
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .alloc()
            .ok_or_else(|| BridgeError("no free resource id".into()))?;
        let mut c = encode::hdr(CommandType::ResourceCreateBlob, 0, 0, ctx, 0);
        encode::words(&mut c, &[res, vp::BLOB_TYPE_HOST3D, flags, 0]);
        c.extend_from_slice(&req.blob_id.0.to_le_bytes());
        c.extend_from_slice(&req.size.to_le_bytes());
        if let Err(e) = self.bridge.ok("RESOURCE_CREATE_BLOB", &c, &[]) {
            self.release_id(res);
            return Err(e);
        }
        // From here on the resource exists on the device: teardown cleans it up.
        let Some((shm_offset, len)) = self
            .bridge
            .shm_alloc
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .alloc(req.size)
        else {
            self.destroy_unmapped(ctx, res);
            return fail(format!(
                "no room for {} bytes in the host-visible region",
                req.size
            ));
        };
        self.blobs.insert(res, Blob { shm_offset });
        let mut c = encode::hdr(CommandType::CtxAttachResource, 0, 0, ctx, 0);
        encode::words(&mut c, &[res, 0]);
        self.bridge.ok("CTX_ATTACH_RESOURCE", &c, &[])?;
        let mut c = encode::hdr(CommandType::ResourceMapBlob, 0, 0, ctx, 0);
        encode::words(&mut c, &[res, 0]);
        c.extend_from_slice(&shm_offset.to_le_bytes());
        let r = self.bridge.command(&c, &[], 32)?;
        if !r.is(RespType::OkMapInfo) {
            return fail(format!("RESOURCE_MAP_BLOB answered {:#x}", r.resp));
        }
        let mapped = self
            .bridge
            .gpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shm()
            .fd_at(shm_offset)?
            .ok_or_else(|| {
                BridgeError(format!(
                    "MAP_BLOB succeeded without a SHMEM_MAP at {shm_offset:#x}"
                ))
            })?;
        // Mesa mmaps the fd from offset 0 for the blob size: pass SHMEM_MAP's fd
        // through when it is exactly that (one fd per blob, fd_offset 0).
        let file_size = rustix::fs::fstat(&mapped.fd)
            .map_err(std::io::Error::from)?
            .st_size;
        let covers = u64::try_from(file_size).is_ok_and(|s| s >= req.size);
        if mapped.fd_offset != 0 || mapped.len != len || !covers || !mapped.writable {
            return fail(format!(
                "SHMEM_MAP for blob {res} maps fd_offset {:#x} len {:#x} (writable {}) of a \
                 {file_size}-byte file; Mesa needs offset 0 covering {} bytes",
                mapped.fd_offset, mapped.len, mapped.writable, req.size
            ));
        }
        self.counts.blobs += 1;
        if req.blob_id.0 != 0 {
            self.counts.device_blobs += 1;
        }
        self.bridge.count(|s| {
            s.blobs += 1;
            s.passthrough_fds += 1;
        });
        self.reply(cmd::RESOURCE_CREATE_BLOB, &[res])?;
        send_fd(&self.stream, mapped.fd.as_fd())
            .map_err(|e| BridgeError(format!("sending the fd: {e}")))?;
        Ok(())
    }

    fn release_id(&self, res: u32) {
        self.bridge
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(res);
    }

    /// RESOURCE_UNREF of a blob that was never mapped (best effort).
    fn destroy_unmapped(&self, ctx: u32, res: u32) {
        let mut c = encode::hdr(CommandType::ResourceUnref, 0, 0, ctx, 0);
        encode::words(&mut c, &[res, 0]);
        if self.bridge.ok("RESOURCE_UNREF", &c, &[]).is_ok() {
            self.release_id(res);
        }
    }

    /// What the guest kernel does when the last GEM reference goes: detach from the
    /// context, unmap from the host-visible region, unref.
    fn unref(&mut self, res: u32) -> Result<(), BridgeError> {
        let ctx = self.ctx(cmd::RESOURCE_UNREF)?;
        let Some(blob) = self.blobs.remove(&res) else {
            return Ok(());
        };
        // Every step runs even if an earlier one failed; the first failure is
        // reported. The region range and the id are reused only once freed.
        let mut first_err = None;
        let mut c = encode::hdr(CommandType::CtxDetachResource, 0, 0, ctx, 0);
        encode::words(&mut c, &[res, 0]);
        if let Err(e) = self.bridge.ok("CTX_DETACH_RESOURCE", &c, &[]) {
            first_err.get_or_insert(e);
        }
        if self.is_mapped(blob.shm_offset) {
            let mut c = encode::hdr(CommandType::ResourceUnmapBlob, 0, 0, ctx, 0);
            encode::words(&mut c, &[res, 0]);
            match self.bridge.ok("RESOURCE_UNMAP_BLOB", &c, &[]) {
                Ok(()) if self.is_mapped(blob.shm_offset) => {
                    first_err.get_or_insert(BridgeError(format!(
                        "UNMAP_BLOB of {res} sent no SHMEM_UNMAP"
                    )));
                }
                Ok(()) => self.counts.unmapped += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let mut c = encode::hdr(CommandType::ResourceUnref, 0, 0, ctx, 0);
        encode::words(&mut c, &[res, 0]);
        match self.bridge.ok("RESOURCE_UNREF", &c, &[]) {
            Ok(()) => self.release_id(res),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        // UNREF unmaps a still-mapped blob on the device, so the range is usually free
        // by now even after a failed UNMAP_BLOB.
        if !self.is_mapped(blob.shm_offset) {
            self.bridge
                .shm_alloc
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .free(blob.shm_offset);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn is_mapped(&self, shm_offset: u64) -> bool {
        self.bridge
            .gpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shm()
            .is_mapped(shm_offset)
    }

    fn submit_cmd2(&mut self, p: &Payload) -> Result<(), BridgeError> {
        let ctx = self.ctx(cmd::SUBMIT_CMD2)?;
        let batches = parse_submit_cmd2(p)?;
        for batch in &batches {
            if batch.sync_count > 0 {
                // Mesa never sends syncs over vtest (it has no SYNC_CREATE to make them).
                return fail("SUBMIT_CMD2 with syncs is not bridged");
            }
            if batch.cmd_size == 0 {
                continue;
            }
            let stream = p.dword_range(batch.cmd_offset, batch.cmd_size);
            if stream.len() > MAX_DATA {
                return fail(format!("stream of {} bytes", stream.len()));
            }
            // The Linux driver fences every execbuffer on its ring.
            let fence = self.bridge.next_fence.fetch_add(1, Ordering::Relaxed);
            let ring = u8::try_from(batch.ring_idx.0)
                .map_err(|_| BridgeError(format!("ring_idx {}", batch.ring_idx.0)))?;
            let mut c = encode::hdr(
                CommandType::Submit3d,
                FLAG_FENCE | FLAG_INFO_RING_IDX,
                fence,
                ctx,
                ring,
            );
            let size =
                u32::try_from(stream.len()).map_err(|_| BridgeError("stream size".into()))?;
            encode::words(&mut c, &[size, 0]);
            let r = self.bridge.command(&c, stream, 24)?;
            self.bridge.count(|s| s.submits += 1);
            self.counts.submits += 1;
            if !r.is(RespType::OkNodata) {
                return fail(format!("SUBMIT_3D answered {:#x}", r.resp));
            }
            // The response echoes the fence: it was held until the fence signalled.
            let echoed = r.le32(4) & FLAG_FENCE != 0
                && u64::from(r.le32(8)) | (u64::from(r.le32(12)) << 32) == fence;
            if !echoed {
                return fail(format!("SUBMIT_3D response does not carry fence {fence}"));
            }
        }
        Ok(())
    }

    /// Cleans up what the client left: blobs, then the context (like closing the DRM
    /// file in the guest).
    fn teardown(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let Some(ctx) = self.ctx else {
            return;
        };
        let left: Vec<u32> = self.blobs.keys().copied().collect();
        if !left.is_empty() {
            log::debug!("bridge: {} left {} blobs", self.label(), left.len());
        }
        for res in left {
            if let Err(e) = self.unref(res) {
                log::warn!("bridge: {}: cleaning up resource {res}: {e}", self.label());
            }
        }
        let c = encode::hdr(CommandType::CtxDestroy, 0, 0, ctx, 0);
        if let Err(e) = self.bridge.ok("CTX_DESTROY", &c, &[]) {
            log::warn!("bridge: {}: {e}", self.label());
        }
        self.ctx = None;
    }
}
