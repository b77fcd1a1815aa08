//! vhost-user integration tests: an in-process frontend (the `vhost` crate's
//! `Frontend`) plays VMM and guest driver against the daemon's `VgpuBackend`.
//!
//! Guest memory is a memfd shared through SET_MEM_TABLE; split virtqueues are laid out
//! in it by a small descriptor writer below; the frontend kicks eventfds and polls the
//! used ring. A backend-channel handler records SHMEM_MAP / SHMEM_UNMAP.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::ids::{BlobId, CapsetId, ContextId, ResourceId, RingIdx};
use vgpu_device::renderer::transport::TransportOnlyExecutor;
use vgpu_device::renderer::{ContextConfig, ExecError, StreamExecutor};
use vgpu_device::vhost_user::{ServeConfig, VgpuBackend};
use vgpu_device::virtio_gpu::protocol::{
    encode, CommandType, MemEntry, RespType, FLAG_FENCE, FLAG_INFO_RING_IDX,
};
use vgpu_device::virtio_gpu::{
    BlobMemory, Capset, CoreBackend, FenceId, FenceSignals, FenceStatus, RenderBackend,
    RenderError, ScanoutId, SubmitStatus, Ticket, Timeline,
};
use vhost::vhost_user::message::{VhostUserMMap, VhostUserProtocolFeatures};
use vhost::vhost_user::{
    Frontend, FrontendReqHandler, GpuBackend, HandlerResult, Listener, VhostUserFrontend,
    VhostUserFrontendReqHandler,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryAtomic, GuestMemoryBackend, GuestMemoryMmap,
};
use vmm_sys_util::eventfd::EventFd;

const MEM_SIZE: usize = 8 << 20;
const QSIZE: u16 = 64;
const DATA_START: u64 = 0x10_0000;
const SHM_SIZE: u64 = 1 << 20;

// Feature bits.
const F_VERSION_1: u64 = 1 << 32;
const F_INDIRECT: u64 = 1 << 28;
const F_EVENT_IDX: u64 = 1 << 29;
const F_RING_RESET: u64 = 1 << 40;
const F_PROTOCOL: u64 = 1 << 30;

const OK: u32 = RespType::OkNodata as u32;

/// One split virtqueue laid out in guest memory.
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
    kick: EventFd,
    _call: EventFd,
}

struct Harness {
    mem: GuestMemoryMmap,
    frontend: Frontend,
    rings: Vec<Ring>,
    data_next: u64,
    /// The device, when this harness runs the daemon itself ([`Harness::start`]).
    backend: Option<Arc<VgpuBackend>>,
    shm_log: Arc<ShmLog>,
    /// Removed on drop, when this harness made it ([`Harness::start`]).
    dir: Option<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records SHMEM_MAP / SHMEM_UNMAP (shmid, shm_offset, len), and the inode of each
/// mapped fd by shm_offset (which file the guest would see).
#[derive(Default)]
struct ShmLog {
    calls: Mutex<Vec<(&'static str, u8, u64, u64)>>,
    inodes: Mutex<std::collections::HashMap<u64, u64>>,
}

impl VhostUserFrontendReqHandler for ShmLog {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        let (id, off, len) = (req.shmid, req.shm_offset, req.len);
        self.calls.lock().expect("lock").push(("map", id, off, len));
        // The fd is open for this call; /proc resolves it to the file itself.
        if let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
            use std::os::unix::fs::MetadataExt;
            self.inodes.lock().expect("lock").insert(off, meta.ino());
        }
        Ok(0)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        let (id, off, len) = (req.shmid, req.shm_offset, req.len);
        self.calls
            .lock()
            .expect("lock")
            .push(("unmap", id, off, len));
        Ok(0)
    }
}

fn venus_capset() -> VenusCapset {
    VenusCapset::new(&VenusProtocolInfo::generated()).expect("generated capset")
}

fn core_render(signals: FenceSignals) -> Box<dyn RenderBackend> {
    let factory = |_ctx| -> Result<Arc<dyn StreamExecutor>, ExecError> {
        Ok(Arc::new(TransportOnlyExecutor))
    };
    Box::new(CoreBackend::new(
        &venus_capset(),
        Arc::new(factory),
        ContextConfig::default(),
        signals,
    ))
}

/// A fresh scratch directory for this test thread.
fn test_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "vgpu-vhost-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// The device settings every harness daemon uses.
fn test_config(socket: PathBuf) -> ServeConfig {
    let mut config = ServeConfig::new(socket);
    config.handler.shm_size = SHM_SIZE;
    config.handler.max_2d_bytes = 4 << 20;
    config
}

/// Waits until a daemon has bound `socket`.
fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Harness {
    /// Runs a daemon on `render` in this process and connects to it.
    fn start(render: impl FnOnce(FenceSignals) -> Box<dyn RenderBackend>) -> Self {
        Self::start_with(render, |_| {})
    }

    /// As [`Harness::start`], with `tune` applied to the daemon's configuration.
    fn start_with(
        render: impl FnOnce(FenceSignals) -> Box<dyn RenderBackend>,
        tune: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let dir = test_dir("harness");
        let socket = dir.0.join("gpu.sock");
        let mut config = test_config(socket.clone());
        tune(&mut config);
        let backend = VgpuBackend::new(&config, render).expect("backend");
        let mut daemon = VhostUserDaemon::new(
            "vgpu-test".to_owned(),
            Arc::clone(&backend),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .expect("daemon");
        backend.register(&daemon).expect("fence event");
        let mut listener = Listener::new(&socket, true).expect("listen");
        std::thread::spawn(move || {
            if daemon.start(&mut listener).is_ok() {
                let _ = daemon.wait();
            }
        });
        let mut h = Self::connect(&socket);
        h.backend = Some(backend);
        h.dir = Some(dir);
        h
    }

    /// Connects to the daemon on `socket` as VMM and guest driver: negotiation,
    /// backend channel, guest memory, both queues enabled.
    fn connect(socket: &Path) -> Self {
        // Guest memory: a memfd, mapped here and sent to the backend.
        let fd = rustix::fs::memfd_create("guest", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
        let file = std::fs::File::from(fd);
        file.set_len(MEM_SIZE as u64).expect("size");
        let mem = GuestMemoryMmap::from_ranges_with_files(&[(
            GuestAddress(0),
            MEM_SIZE,
            Some(FileOffset::new(file.try_clone().expect("dup"), 0)),
        )])
        .expect("guest memory");
        let host = mem.get_host_address(GuestAddress(0)).expect("host address") as u64;

        let mut frontend = Frontend::connect(socket, 2).expect("connect");
        frontend.set_owner().expect("set_owner");
        let offered = frontend.get_features().expect("features");
        // Ack what QEMU forces, plus the GPU bits.
        let acked =
            offered & (F_VERSION_1 | F_INDIRECT | F_EVENT_IDX | F_RING_RESET | F_PROTOCOL | 0x1f);
        assert_eq!(
            acked & (F_VERSION_1 | F_INDIRECT | F_EVENT_IDX | F_RING_RESET),
            F_VERSION_1 | F_INDIRECT | F_EVENT_IDX | F_RING_RESET
        );
        let pf = frontend.get_protocol_features().expect("protocol features");
        let want = VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD
            | VhostUserProtocolFeatures::SHMEM;
        assert!(pf.contains(want), "protocol features {pf:?}");
        frontend
            .set_protocol_features(want)
            .expect("ack protocol features");
        frontend
            .set_features(acked)
            .expect("set_features with QEMU's bits");

        let shm_log = Arc::new(ShmLog::default());
        let mut req_handler =
            FrontendReqHandler::new(Arc::clone(&shm_log)).expect("backend channel");
        req_handler.set_reply_ack_flag(true);
        frontend
            .set_backend_request_fd(&req_handler.get_tx_raw_fd())
            .expect("set backend fd");
        std::thread::spawn(move || while req_handler.handle_request().is_ok() {});

        frontend
            .set_mem_table(&[VhostUserMemoryRegionInfo {
                guest_phys_addr: 0,
                memory_size: MEM_SIZE as u64,
                userspace_addr: host,
                mmap_offset: 0,
                mmap_handle: file.as_raw_fd(),
            }])
            .expect("mem table");

        let mut rings = Vec::new();
        for q in 0..2u64 {
            let base = q * 0x8000;
            let ring = Ring {
                desc: base,
                avail: base + 0x4000,
                used: base + 0x5000,
                next_desc: 0,
                avail_idx: 0,
                used_seen: 0,
                kick: EventFd::new(0).expect("kick"),
                _call: EventFd::new(0).expect("call"),
            };
            let qi = usize::try_from(q).expect("small");
            frontend.set_vring_num(qi, QSIZE).expect("num");
            frontend
                .set_vring_addr(
                    qi,
                    &VringConfigData {
                        queue_max_size: QSIZE,
                        queue_size: QSIZE,
                        flags: 0,
                        desc_table_addr: host + ring.desc,
                        used_ring_addr: host + ring.used,
                        avail_ring_addr: host + ring.avail,
                        log_addr: None,
                    },
                )
                .expect("addr");
            frontend.set_vring_base(qi, 0).expect("base");
            frontend.set_vring_call(qi, &ring._call).expect("call");
            frontend.set_vring_kick(qi, &ring.kick).expect("kick");
            frontend.set_vring_enable(qi, true).expect("enable");
            rings.push(ring);
        }
        Harness {
            mem,
            frontend,
            rings,
            data_next: DATA_START,
            backend: None,
            shm_log,
            dir: None,
        }
    }

    /// The in-process device ([`Harness::start`] only).
    fn backend(&self) -> &VgpuBackend {
        self.backend
            .as_deref()
            .expect("a harness with its own daemon")
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let addr = self.data_next;
        self.data_next += (len + 63) & !63;
        assert!(
            self.data_next < MEM_SIZE as u64,
            "harness data area exhausted"
        );
        addr
    }

    /// Posts a chain of readable `(addr, len)` then writable `(addr, len)` buffers;
    /// returns the head.
    fn post(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.post_no_kick(q, bufs);
        self.rings[q].kick.write(1).expect("kick");
        head
    }

    /// As [`Harness::post`], without the kick (several chains, then one kick).
    fn post_no_kick(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let n = u16::try_from(bufs.len()).expect("small");
        let ring = &mut self.rings[q];
        if ring.next_desc + n > QSIZE {
            ring.next_desc = 0;
        }
        let head = ring.next_desc;
        for (i, (addr, len, writable)) in bufs.iter().enumerate() {
            let idx = head + u16::try_from(i).expect("small");
            let last = i + 1 == bufs.len();
            let flags: u16 = if last { 0 } else { 1 } | if *writable { 2 } else { 0 };
            let d = ring.desc + u64::from(idx) * 16;
            self.mem
                .write_obj(*addr, GuestAddress(d))
                .expect("desc addr");
            self.mem
                .write_obj(*len, GuestAddress(d + 8))
                .expect("desc len");
            self.mem
                .write_obj(flags, GuestAddress(d + 12))
                .expect("desc flags");
            self.mem
                .write_obj(if last { 0u16 } else { idx + 1 }, GuestAddress(d + 14))
                .expect("desc next");
        }
        ring.next_desc = head + n;
        let slot = ring.avail + 4 + u64::from(ring.avail_idx % QSIZE) * 2;
        self.mem
            .write_obj(head, GuestAddress(slot))
            .expect("avail slot");
        fence(Ordering::SeqCst);
        ring.avail_idx = ring.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(ring.avail_idx, GuestAddress(ring.avail + 2))
            .expect("avail idx");
        fence(Ordering::SeqCst);
        head
    }

    /// Waits for the next used entry of queue `q`: (head, len).
    fn next_used(&mut self, q: usize, timeout: Duration) -> Option<(u16, u32)> {
        let ring = &mut self.rings[q];
        let deadline = Instant::now() + timeout;
        loop {
            fence(Ordering::SeqCst);
            let idx: u16 = self
                .mem
                .read_obj(GuestAddress(ring.used + 2))
                .expect("used idx");
            if idx != ring.used_seen {
                let e = ring.used + 4 + u64::from(ring.used_seen % QSIZE) * 8;
                let id: u32 = self.mem.read_obj(GuestAddress(e)).expect("used id");
                let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).expect("used len");
                ring.used_seen = ring.used_seen.wrapping_add(1);
                return Some((u16::try_from(id).expect("head"), len));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `req` (split into readable descriptors of at most `chunk` bytes) with a
    /// `resp_len`-byte writable buffer; returns the response bytes written.
    fn request_split(&mut self, q: usize, req: &[u8], chunk: usize, resp_len: u32) -> Vec<u8> {
        let mut bufs = Vec::new();
        for part in req.chunks(chunk.max(1)) {
            let a = self.alloc(part.len() as u64);
            self.mem
                .write_slice(part, GuestAddress(a))
                .expect("write request");
            bufs.push((a, u32::try_from(part.len()).expect("small"), false));
        }
        let resp = self.alloc(u64::from(resp_len));
        if resp_len > 0 {
            bufs.push((resp, resp_len, true));
        }
        let head = self.post(q, &bufs);
        let (used, len) = self
            .next_used(q, Duration::from_secs(5))
            .expect("response in time");
        assert_eq!(used, head, "responses in order");
        let mut out = vec![0u8; usize::try_from(len).expect("len")];
        self.mem
            .read_slice(&mut out, GuestAddress(resp))
            .expect("read response");
        out
    }

    /// Waits for exactly the control-queue heads in `want` to be returned, in any
    /// order, each within `timeout`.
    fn expect_used(&mut self, want: &[u16], timeout: Duration, what: &str) {
        let mut seen = Vec::new();
        while seen.len() < want.len() {
            let (head, _) = self
                .next_used(0, timeout)
                .unwrap_or_else(|| panic!("{what}: got {seen:?} of {want:?}"));
            seen.push(head);
        }
        seen.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(seen, want, "{what}");
    }

    /// GET_VRING_BASE on queue `q` (the VMM stopping it); returns where it stopped.
    fn stop_queue(&mut self, q: usize) -> u16 {
        let base = self.frontend.get_vring_base(q).expect("get_vring_base");
        u16::try_from(base).expect("16-bit ring index")
    }

    /// Restarts queue `q` at `base`; `fresh` lays out a new driver's empty ring first
    /// (what a guest does after resetting the device).
    fn restart_queue(&mut self, q: usize, base: u16, fresh: bool) {
        let host = self
            .mem
            .get_host_address(GuestAddress(0))
            .expect("host address") as u64;
        let ring = &mut self.rings[q];
        if fresh {
            self.mem
                .write_slice(&[0u8; 0x6000], GuestAddress(ring.desc))
                .expect("clear ring");
            ring.next_desc = 0;
            ring.avail_idx = 0;
            ring.used_seen = 0;
        }
        let f = &mut self.frontend;
        f.set_vring_num(q, QSIZE).expect("num");
        f.set_vring_addr(
            q,
            &VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: host + ring.desc,
                used_ring_addr: host + ring.used,
                avail_ring_addr: host + ring.avail,
                log_addr: None,
            },
        )
        .expect("addr");
        f.set_vring_base(q, base).expect("base");
        f.set_vring_call(q, &ring._call).expect("call");
        f.set_vring_kick(q, &ring.kick).expect("kick");
        f.set_vring_enable(q, true).expect("enable");
    }

    /// Posts `req` on the control queue with a 64-byte response buffer, without
    /// waiting; returns the head.
    fn post_request(&mut self, req: &[u8]) -> u16 {
        let bufs = self.request_bufs(req, 64);
        self.post(0, &bufs)
    }

    /// Writes `req` and reserves a `resp_len`-byte response; returns the chain's
    /// buffers for [`Harness::post`] or [`Harness::post_no_kick`].
    fn request_bufs(&mut self, req: &[u8], resp_len: u32) -> [(u64, u32, bool); 2] {
        let a = self.alloc(req.len() as u64);
        self.mem.write_slice(req, GuestAddress(a)).expect("write");
        let resp = self.alloc(u64::from(resp_len));
        let len = u32::try_from(req.len()).expect("small");
        [(a, len, false), (resp, resp_len, true)]
    }

    fn request(&mut self, req: &[u8]) -> Vec<u8> {
        self.request_split(0, req, usize::MAX, 4096)
    }

    fn resp_type(&mut self, req: &[u8]) -> u32 {
        let r = self.request(req);
        le32(&r, 0)
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn cmd(c: CommandType, words: &[u32]) -> Vec<u8> {
    encode::simple(c, words)
}

fn ctx_cmd(c: CommandType, ctx: u32, words: &[u32]) -> Vec<u8> {
    let mut v = encode::hdr(c, 0, 0, ctx, 0);
    encode::words(&mut v, words);
    v
}

fn ctx_create(ctx: u32, capset: u32) -> Vec<u8> {
    let mut v = ctx_cmd(CommandType::CtxCreate, ctx, &[0, capset]);
    v.extend_from_slice(&[0u8; 64]);
    v
}

#[test]
fn negotiation_config_space_and_shmem_region() {
    let mut h = Harness::start(core_render);
    let cfg = h
        .frontend
        .get_config(
            0,
            16,
            vhost::vhost_user::message::VhostUserConfigFlags::WRITABLE,
            &[0u8; 16],
        )
        .expect("config");
    let bytes = cfg.1;
    assert_eq!(
        (le32(&bytes, 0), le32(&bytes, 8), le32(&bytes, 12)),
        (0, 1, 1),
        "events, scanouts, capsets"
    );
    let shm = h.frontend.get_shmem_config().expect("shmem config");
    let (n, sizes) = (shm.nregions, shm.memory_sizes);
    assert_eq!(n, 1);
    assert_eq!(
        (sizes[0], sizes[1], sizes[2]),
        (0, SHM_SIZE, 0),
        "region 1 only"
    );
}

#[test]
fn display_info_and_edid_over_vhost_user() {
    let mut h = Harness::start(core_render);
    let r = h.request(&cmd(CommandType::GetDisplayInfo, &[]));
    assert_eq!(r.len(), 408);
    assert_eq!(le32(&r, 0), RespType::OkDisplayInfo as u32);
    assert_eq!((le32(&r, 32), le32(&r, 36), le32(&r, 40)), (1280, 800, 1));
    let e = h.request(&cmd(CommandType::GetEdid, &[0, 0]));
    assert_eq!(le32(&e, 0), RespType::OkEdid as u32);
    assert_eq!(le32(&e, 24), 128);
    assert_eq!(e[32..40], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
}

#[test]
fn two_d_frame_equals_the_pattern_written_by_the_guest() {
    let mut h = Harness::start(core_render);
    let (w, hgt) = (16u32, 8u32);
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceCreate2d, &[1, 2, w, hgt])),
        OK
    );
    // Pattern in guest memory, split over two backing entries.
    let pattern: Vec<u8> = (0..w * hgt * 4).map(|i| (i * 7 % 251) as u8).collect();
    let a = h.alloc(256);
    let b = h.alloc(pattern.len() as u64);
    h.mem
        .write_slice(&pattern[..256], GuestAddress(a))
        .expect("write");
    h.mem
        .write_slice(&pattern[256..], GuestAddress(b))
        .expect("write");
    let mut attach = cmd(CommandType::ResourceAttachBacking, &[1, 2]);
    attach.extend_from_slice(
        &MemEntry {
            addr: a,
            length: 256,
        }
        .encode(),
    );
    attach.extend_from_slice(
        &MemEntry {
            addr: b,
            length: u32::try_from(pattern.len() - 256).expect("len"),
        }
        .encode(),
    );
    assert_eq!(h.resp_type(&attach), OK);
    assert_eq!(
        h.resp_type(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, w, hgt, 0, 0, 1, 0]
        )),
        OK
    );
    assert_eq!(
        h.resp_type(&cmd(CommandType::SetScanout, &[0, 0, w, hgt, 0, 1])),
        OK
    );
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceFlush, &[0, 0, w, hgt, 1, 0])),
        OK
    );
    let expected: Vec<u8> = pattern
        .chunks(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect();
    let handler = h.backend().handler();
    let frame = handler.display().frame(ScanoutId(0)).expect("frame");
    assert_eq!((frame.width, frame.height), (w, hgt));
    assert_eq!(frame.rgba, expected);
    let png = h.dir.as_ref().expect("own dir").0.join("scanout0.png");
    handler
        .display()
        .write_png(ScanoutId(0), &png)
        .expect("png");
    assert!(std::fs::metadata(&png).expect("png exists").len() > 0);
}

#[test]
fn capset_info_and_bytes_equal_crate_capset() {
    let mut h = Harness::start(core_render);
    let info = h.request(&cmd(CommandType::GetCapsetInfo, &[0, 0]));
    assert_eq!(le32(&info, 0), RespType::OkCapsetInfo as u32);
    assert_eq!(
        (le32(&info, 24), le32(&info, 28), le32(&info, 32)),
        (4, 1, 160)
    );
    let caps = h.request(&cmd(CommandType::GetCapset, &[4, 1]));
    assert_eq!(le32(&caps, 0), RespType::OkCapset as u32);
    assert_eq!(caps[24..], venus_capset().to_bytes()[..]);
    assert_eq!(
        h.resp_type(&cmd(CommandType::GetCapsetInfo, &[1, 0])),
        RespType::ErrInvalidParameter as u32
    );
}

#[test]
fn context_create_submit_destroy() {
    let mut h = Harness::start(core_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    assert_eq!(
        h.resp_type(&ctx_create(1, 4)),
        RespType::ErrInvalidContextId as u32
    );
    // An empty stream executes nothing and succeeds.
    assert_eq!(h.resp_type(&ctx_cmd(CommandType::Submit3d, 1, &[0, 0])), OK);
    // blob_id 0 shmem blob, mapped through SHMEM_MAP, then unmapped.
    assert_eq!(
        h.resp_type(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[7, 2, 1, 0, 0, 0, 4096, 0]
        )),
        OK
    );
    let mut map = cmd(CommandType::ResourceMapBlob, &[7, 0]);
    map.extend_from_slice(&0x2000u64.to_le_bytes());
    let r = h.request(&map);
    assert_eq!(le32(&r, 0), RespType::OkMapInfo as u32);
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceUnmapBlob, &[7, 0])),
        OK
    );
    assert_eq!(
        *h.shm_log.calls.lock().expect("lock"),
        vec![("map", 1, 0x2000, 4096), ("unmap", 1, 0x2000, 4096)]
    );
    assert_eq!(h.resp_type(&ctx_cmd(CommandType::CtxDestroy, 1, &[])), OK);
    assert_eq!(
        h.resp_type(&ctx_cmd(CommandType::Submit3d, 1, &[0, 0])),
        RespType::ErrInvalidContextId as u32
    );
}

#[test]
fn error_paths_get_the_right_codes_and_the_daemon_survives() {
    let mut h = Harness::start(core_render);
    let p = RespType::ErrInvalidParameter as u32;
    // Unknown resource.
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceFlush, &[0, 0, 1, 1, 42, 0])),
        RespType::ErrInvalidResourceId as u32
    );
    // Out-of-range guest address.
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceCreate2d, &[1, 2, 4, 4])),
        OK
    );
    let mut attach = cmd(CommandType::ResourceAttachBacking, &[1, 1]);
    attach.extend_from_slice(
        &MemEntry {
            addr: MEM_SIZE as u64 - 8,
            length: 64,
        }
        .encode(),
    );
    assert_eq!(h.resp_type(&attach), p);
    // Short descriptor: the request ends inside the body.
    let mut short = cmd(CommandType::ResourceCreate2d, &[2, 2, 4, 4]);
    short.truncate(30);
    assert_eq!(h.resp_type(&short), p);
    // Short header.
    assert_eq!(h.resp_type(&[1, 1, 0, 0]), RespType::ErrUnspec as u32);
    // Overflowing sizes.
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceAttachBacking, &[1, u32::MAX])),
        p
    );
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceCreate2d, &[3, 2, 16384, 16384])),
        RespType::ErrOutOfMemory as u32
    );
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    assert_eq!(
        h.resp_type(&ctx_cmd(CommandType::Submit3d, 1, &[u32::MAX, 0])),
        p
    );
    // Bad command type.
    let mut bad = cmd(CommandType::GetDisplayInfo, &[]);
    bad[0..4].copy_from_slice(&0x1234u32.to_le_bytes());
    assert_eq!(h.resp_type(&bad), RespType::ErrUnspec as u32);
    // virgl 3D resources are refused.
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceCreate3d, &[0; 12])),
        RespType::ErrUnspec as u32
    );
    // A request split over many small descriptors still decodes.
    let split = h.request_split(0, &cmd(CommandType::GetCapsetInfo, &[0, 0]), 5, 64);
    assert_eq!(le32(&split, 0), RespType::OkCapsetInfo as u32);
    // A response buffer too small is truncated, not a crash; the next request works.
    let tiny = h.request_split(0, &cmd(CommandType::GetDisplayInfo, &[]), usize::MAX, 8);
    assert_eq!(tiny.len(), 8);
    assert_eq!(
        h.resp_type(&cmd(CommandType::GetDisplayInfo, &[])),
        RespType::OkDisplayInfo as u32
    );
    // Cursor queue commands are handled too.
    let r = h.request_split(
        1,
        &cmd(CommandType::MoveCursor, &[0, 5, 6, 0, 0, 0, 0, 0]),
        usize::MAX,
        24,
    );
    assert_eq!(le32(&r, 0), OK);
}

/// QEMU's end of the vhost-user-gpu socket: reads one message, returns (request, body).
fn gpu_socket_read(s: &mut UnixStream) -> (u32, Vec<u8>) {
    let mut hdr = [0u8; 12];
    s.read_exact(&mut hdr).expect("gpu socket header");
    let mut body = vec![0u8; usize::try_from(le32(&hdr, 8)).expect("size")];
    s.read_exact(&mut body).expect("gpu socket body");
    (le32(&hdr, 0), body)
}

/// Answers `request` with `body` and the REPLY flag.
fn gpu_socket_reply(s: &mut UnixStream, request: u32, body: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(&request.to_le_bytes());
    m.extend_from_slice(&4u32.to_le_bytes());
    m.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).expect("gpu socket reply");
}

/// Hands the daemon a GPU socket, as QEMU does at DRIVER_OK with GPU_SET_SOCKET (the
/// `vhost` crate's `Frontend` cannot send that request, so the test calls the
/// backend's handler directly), and answers the handshake without EDID. Returns
/// QEMU's end.
fn attach_gpu_socket(h: &Harness) -> UnixStream {
    let (daemon_end, mut qemu) = UnixStream::pair().expect("socket pair");
    qemu.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    h.backend()
        .set_gpu_socket(GpuBackend::from_stream(daemon_end))
        .expect("set_gpu_socket");
    assert_eq!(gpu_socket_read(&mut qemu).0, 1, "GET_PROTOCOL_FEATURES");
    gpu_socket_reply(&mut qemu, 1, &0u64.to_le_bytes());
    assert_eq!(
        gpu_socket_read(&mut qemu),
        (2, 0u64.to_le_bytes().to_vec()),
        "SET_PROTOCOL_FEATURES"
    );
    assert_eq!(gpu_socket_read(&mut qemu).0, 3, "GET_DISPLAY_INFO");
    let mut info = vec![0u8; 24 + 16 * 24];
    info[24 + 8..24 + 12].copy_from_slice(&1280u32.to_le_bytes());
    info[24 + 12..24 + 16].copy_from_slice(&800u32.to_le_bytes());
    info[24 + 16..24 + 20].copy_from_slice(&1u32.to_le_bytes());
    gpu_socket_reply(&mut qemu, 3, &info);
    qemu
}

#[test]
fn guest_cursor_image_reaches_the_gpu_socket_as_cursor_update() {
    let mut h = Harness::start(core_render);
    let mut qemu = attach_gpu_socket(&h);

    // The guest's cursor: a 64 × 64 B8G8R8A8 resource (DRM ARGB8888) with a pattern.
    let byte = |v: u32| u8::try_from(v).expect("below 256");
    let pattern: Vec<u8> = (0..64u32 * 64)
        .flat_map(|i| [byte(i % 251), byte(i / 64), byte(i % 64), 0xc0])
        .collect();
    let backing = h.alloc(pattern.len() as u64);
    h.mem
        .write_slice(&pattern, GuestAddress(backing))
        .expect("write cursor");
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceCreate2d, &[4, 1, 64, 64])),
        OK
    );
    let mut attach = cmd(CommandType::ResourceAttachBacking, &[4, 1]);
    attach.extend_from_slice(
        &MemEntry {
            addr: backing,
            length: u32::try_from(pattern.len()).expect("len"),
        }
        .encode(),
    );
    assert_eq!(h.resp_type(&attach), OK);
    assert_eq!(
        h.resp_type(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, 64, 64, 0, 0, 4, 0]
        )),
        OK
    );

    // UPDATE_CURSOR on the cursor queue: scanout 0 at (300, 400), hot spot (6, 9).
    let r = h.request_split(
        1,
        &cmd(CommandType::UpdateCursor, &[0, 300, 400, 0, 4, 6, 9, 0]),
        usize::MAX,
        24,
    );
    assert_eq!(le32(&r, 0), OK);
    let (request, body) = gpu_socket_read(&mut qemu);
    assert_eq!(request, 6, "VHOST_USER_GPU_CURSOR_UPDATE");
    assert_eq!(body.len(), 12 + 8 + 64 * 64 * 4);
    let fields: Vec<u32> = (0..5).map(|i| le32(&body, i * 4)).collect();
    assert_eq!(fields, [0, 300, 400, 6, 9], "scanout, x, y, hot_x, hot_y");
    // QEMU reads u32 ARGB in host order; B8G8R8A8 bytes are that integer in
    // little-endian order.
    let expected: Vec<u8> = pattern
        .chunks_exact(4)
        .flat_map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]).to_ne_bytes())
        .collect();
    assert_eq!(&body[20..], expected.as_slice());

    // A move is CURSOR_POS only; resource 0 hides.
    let r = h.request_split(
        1,
        &cmd(CommandType::MoveCursor, &[0, 310, 420, 0, 4, 6, 9, 0]),
        usize::MAX,
        24,
    );
    assert_eq!(le32(&r, 0), OK);
    let (request, body) = gpu_socket_read(&mut qemu);
    assert_eq!((request, body.len()), (4, 12), "VHOST_USER_GPU_CURSOR_POS");
    assert_eq!(
        [le32(&body, 0), le32(&body, 4), le32(&body, 8)],
        [0, 310, 420]
    );
    let r = h.request_split(
        1,
        &cmd(CommandType::UpdateCursor, &[0, 0, 0, 0, 0, 0, 0, 0]),
        usize::MAX,
        24,
    );
    assert_eq!(le32(&r, 0), OK);
    assert_eq!(gpu_socket_read(&mut qemu), (5, vec![0; 12]));
}

/// Fences stay pending until the stream `[ring, fence_lo, fence_hi]` signals one.
struct FenceRender {
    capsets: Vec<Capset>,
    signals: FenceSignals,
}

#[derive(Debug)]
struct NoMem;

impl BlobMemory for NoMem {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        unreachable!("never mapped")
    }
    fn size(&self) -> u64 {
        0
    }
    fn read(&self, _: u64, _: &mut [u8]) -> bool {
        false
    }
}

impl RenderBackend for FenceRender {
    fn capsets(&self) -> &[Capset] {
        &self.capsets
    }
    fn create_context(&mut self, _: ContextId, _: CapsetId, _: &str) -> Result<(), RenderError> {
        Ok(())
    }
    fn destroy_context(&mut self, _: ContextId) {}
    fn submit(
        &mut self,
        ctx: ContextId,
        _: Ticket,
        cmds: Vec<u8>,
    ) -> Result<SubmitStatus, RenderError> {
        let cmds = cmds.as_slice();
        if cmds.len() == 12 {
            let ring = le32(cmds, 0);
            let id = u64::from(le32(cmds, 4)) | (u64::from(le32(cmds, 8)) << 32);
            self.signals
                .signal(Timeline::Ring(ctx, RingIdx(ring)), FenceId(id));
        }
        Ok(SubmitStatus::Done)
    }
    fn create_blob(
        &mut self,
        _: ContextId,
        _: ResourceId,
        _: BlobId,
        _: u64,
    ) -> Result<Arc<dyn BlobMemory>, RenderError> {
        Ok(Arc::new(NoMem))
    }
    fn destroy_blob(&mut self, _: ContextId, _: ResourceId) {}
    fn create_fence(&mut self, _: ContextId, _: Timeline, _: FenceId) -> FenceStatus {
        FenceStatus::Pending
    }
}

#[test]
fn fences_release_in_order_per_ring_across_two_rings() {
    let mut h = Harness::start(|signals| {
        Box::new(FenceRender {
            capsets: vec![Capset {
                id: CapsetId::VENUS,
                max_version: 1,
                bytes: vec![0; 160],
            }],
            signals,
        })
    });
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let fenced = |ring: u8, id: u64| {
        let mut v = encode::hdr(
            CommandType::Submit3d,
            FLAG_FENCE | FLAG_INFO_RING_IDX,
            id,
            1,
            ring,
        );
        encode::words(&mut v, &[0, 0]);
        v
    };
    let mut heads = std::collections::HashMap::new();
    for (ring, id) in [(0u8, 3u64), (1, 4), (0, 7), (1, 10), (0, 12)] {
        let req = fenced(ring, id);
        let a = h.alloc(req.len() as u64);
        h.mem.write_slice(&req, GuestAddress(a)).expect("write");
        let resp = h.alloc(64);
        let head = h.post(
            0,
            &[
                (a, u32::try_from(req.len()).expect("len"), false),
                (resp, 64, true),
            ],
        );
        heads.insert(head, (ring, id));
    }
    assert_eq!(
        h.next_used(0, Duration::from_millis(200)),
        None,
        "all parked"
    );
    // Signal ring 1 up to 10 with an unfenced SUBMIT_3D on the context.
    let signal = |ring: u32, id: u64| {
        let mut v = ctx_cmd(CommandType::Submit3d, 1, &[12, 0]);
        encode::words(
            &mut v,
            &[ring, vgpu_device::lo32(id), vgpu_device::hi32(id)],
        );
        v
    };
    let post_signal = |h: &mut Harness, ring: u32, id: u64| {
        let req = signal(ring, id);
        let a = h.alloc(req.len() as u64);
        h.mem.write_slice(&req, GuestAddress(a)).expect("write");
        let resp = h.alloc(64);
        h.post(
            0,
            &[
                (a, u32::try_from(req.len()).expect("len"), false),
                (resp, 64, true),
            ],
        )
    };
    let released = |h: &mut Harness, n: usize| -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        while out.len() < n {
            let (head, _) = h.next_used(0, Duration::from_secs(5)).expect("used");
            if let Some(v) = heads.get(&head) {
                out.push(*v);
            }
        }
        out
    };
    post_signal(&mut h, 1, 10);
    assert_eq!(released(&mut h, 2), vec![(1, 4), (1, 10)]);
    post_signal(&mut h, 0, 8);
    assert_eq!(released(&mut h, 2), vec![(0, 3), (0, 7)]);
    post_signal(&mut h, 0, 12);
    assert_eq!(released(&mut h, 1), vec![(0, 12)]);
}

#[path = "common/venus_stream.rs"]
mod venus_stream;

fn venus_render(signals: FenceSignals) -> Box<dyn RenderBackend> {
    Box::new(CoreBackend::new(
        &venus_capset(),
        Arc::new(vgpu_device::renderer::venus::VenusFactory::default()),
        ContextConfig::default(),
        signals,
    ))
}

fn submit_3d(ctx: u32, flags: u32, fence: u64, ring: u8, stream: &[u8]) -> Vec<u8> {
    let mut v = encode::hdr(CommandType::Submit3d, flags, fence, ctx, ring);
    let size = u32::try_from(stream.len()).expect("small stream");
    encode::words(&mut v, &[size, 0]);
    v.extend_from_slice(stream);
    v
}

/// A fence on a ring bound to a host queue (`VkDeviceQueueTimelineInfoMESA`) is held
/// until the queue retires the work before it — here a submission blocked on a
/// timeline semaphore — while the control queue keeps answering, and a fence on the
/// CPU timeline (ring 0) of the same context does not wait for that queue. Real
/// Venus executor on lavapipe.
#[test]
fn ring_fence_waits_for_the_host_queue_to_retire() {
    venus_stream::use_lavapipe();
    let mut h = Harness::start(venus_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let setup = h.request(&submit_3d(1, 0, 0, 0, &venus_stream::setup(1)));
    assert_eq!(le32(&setup, 0), OK, "setup stream ran");

    // Fence 100 on ring 1: the queue is blocked on the semaphore.
    let fenced_ring1 = h.post_request(&submit_3d(1, FLAG_FENCE | FLAG_INFO_RING_IDX, 100, 1, &[]));
    // The control queue still answers, and ring 0 (CPU timeline) is not held up.
    let display = h.post_request(&cmd(CommandType::GetDisplayInfo, &[]));
    assert_eq!(
        h.next_used(0, Duration::from_secs(5)).map(|u| u.0),
        Some(display)
    );
    let fenced_ring0 = h.post_request(&submit_3d(1, FLAG_FENCE | FLAG_INFO_RING_IDX, 101, 0, &[]));
    assert_eq!(
        h.next_used(0, Duration::from_secs(5)).map(|u| u.0),
        Some(fenced_ring0),
        "ring 0 fence is not behind ring 1's queue"
    );
    assert_eq!(
        h.next_used(0, Duration::from_millis(300)),
        None,
        "ring 1 fence must wait for the host queue"
    );

    // Let the queue run: the ring 1 fence follows.
    let signal = h.post_request(&submit_3d(1, 0, 0, 0, &venus_stream::signal()));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (head, len) = h
            .next_used(0, Duration::from_secs(5))
            .expect("signal and fence responses");
        assert_eq!(len, 24);
        seen.push(head);
    }
    seen.sort_unstable();
    let mut want = vec![signal, fenced_ring1];
    want.sort_unstable();
    assert_eq!(seen, want);

    let r = h.request(&submit_3d(1, 0, 0, 0, &venus_stream::teardown()));
    assert_eq!(le32(&r, 0), OK, "teardown stream ran");
    assert_eq!(h.resp_type(&ctx_cmd(CommandType::CtxDestroy, 1, &[])), OK);
}

/// A malformed Venus stream is answered with an error once the context thread has
/// run it, and only that context fails.
#[test]
fn malformed_stream_fails_its_submit_and_context_only() {
    let mut h = Harness::start(venus_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    assert_eq!(h.resp_type(&ctx_create(2, 4)), OK);
    // Command type 0xffff_fff0 does not exist.
    let bad = h.request(&submit_3d(
        1,
        0,
        0,
        0,
        &[0xf0, 0xff, 0xff, 0xff, 0, 0, 0, 0],
    ));
    assert_eq!(le32(&bad, 0), RespType::ErrUnspec as u32);
    let again = h.request(&submit_3d(1, 0, 0, 0, &[]));
    assert_ne!(le32(&again, 0), OK, "the failed context refuses more work");
    let other = h.request(&submit_3d(2, 0, 0, 0, &[]));
    assert_eq!(le32(&other, 0), OK, "the other context is unharmed");
}

/// GET_DISPLAY_INFO's first mode: (width, height, enabled).
fn first_mode(h: &mut Harness) -> (u32, u32, u32) {
    let r = h.request(&cmd(CommandType::GetDisplayInfo, &[]));
    assert_eq!(le32(&r, 0), RespType::OkDisplayInfo as u32);
    (le32(&r, 32), le32(&r, 36), le32(&r, 40))
}

/// Context 1 with HOST3D blob 7 mapped at 0x2000, and 2D resource 1: a piece of
/// every kind of per-connection state. Returns the responses.
fn make_connection_state(h: &mut Harness) -> [u32; 4] {
    let ctx = h.resp_type(&ctx_create(1, 4));
    let blob = h.resp_type(&ctx_cmd(
        CommandType::ResourceCreateBlob,
        1,
        &[7, 2, 1, 0, 0, 0, 4096, 0],
    ));
    let mut map = cmd(CommandType::ResourceMapBlob, &[7, 0]);
    map.extend_from_slice(&0x2000u64.to_le_bytes());
    let mapped = h.resp_type(&map);
    let two_d = h.resp_type(&cmd(CommandType::ResourceCreate2d, &[1, 2, 16, 8]));
    [ctx, blob, mapped, two_d]
}

const FRESH: [u32; 4] = [OK, OK, RespType::OkMapInfo as u32, OK];

#[test]
fn reconnecting_frontend_gets_a_fresh_device() {
    let dir = test_dir("reconnect");
    let socket = dir.0.join("gpu.sock");
    let config = test_config(socket.clone());
    std::thread::spawn(move || vgpu_device::vhost_user::serve(&config, core_render));
    wait_for_socket(&socket);

    let mut first = Harness::connect(&socket);
    assert_eq!(first_mode(&mut first), (1280, 800, 1));
    assert_eq!(make_connection_state(&mut first), FRESH);
    assert_eq!(
        make_connection_state(&mut first),
        [
            RespType::ErrInvalidContextId as u32,
            RespType::ErrInvalidResourceId as u32,
            RespType::ErrInvalidParameter as u32,
            RespType::ErrInvalidResourceId as u32,
        ],
        "the same ids are taken while the first frontend is connected"
    );
    drop(first);

    let mut second = Harness::connect(&socket);
    assert_eq!(
        make_connection_state(&mut second),
        FRESH,
        "context, blob, mapping and resource ids are free again"
    );
    assert_eq!(first_mode(&mut second), (1280, 800, 1));
    assert_eq!(
        *second.shm_log.calls.lock().expect("lock"),
        vec![("map", 1, 0x2000, 4096)],
        "the second frontend sees only its own SHMEM_MAP"
    );
}

/// A `vhost-user-vgpu serve` child process (the CLI binary), killed on drop.
struct ServeProcess {
    child: Child,
    log: PathBuf,
}

impl ServeProcess {
    fn spawn(dir: &TempDir, extra: &[&str]) -> (Self, PathBuf) {
        let socket = dir.0.join("gpu.sock");
        let log = dir.0.join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_vhost-user-vgpu"))
            .args(["serve", "--socket"])
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("vhost-user-vgpu serve");
        wait_for_socket(&socket);
        (Self { child, log }, socket)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Entries of `/proc/<pid>/<dir>` (`task`: threads, `fd`: open fds).
    fn proc_entries(&self, dir: &str) -> usize {
        std::fs::read_dir(format!("/proc/{}/{dir}", self.child.id()))
            .expect("/proc entry of the daemon")
            .count()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn once_daemon_exits_when_its_frontend_disconnects() {
    let dir = test_dir("once");
    let (mut daemon, socket) = ServeProcess::spawn(&dir, &["--once"]);
    let mut h = Harness::connect(&socket);
    assert_eq!(first_mode(&mut h), (1280, 800, 1));
    assert_eq!(make_connection_state(&mut h), FRESH);
    drop(h);
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{}",
        daemon.log()
    );
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn reconnects_do_not_grow_threads_or_fds() {
    let dir = test_dir("cycles");
    let (daemon, socket) = ServeProcess::spawn(&dir, &[]);
    // One connection first: its context starts the VM's idle-worker pool (a filler
    // thread and one ready worker, kept for the daemon's life), a fixed cost.
    {
        let mut h = Harness::connect(&socket);
        assert_eq!(first_mode(&mut h), (1280, 800, 1));
        assert_eq!(make_connection_state(&mut h), FRESH);
    }
    let mut counts = Vec::new();
    for _ in 0..5 {
        let mut h = Harness::connect(&socket);
        // The daemon accepts a frontend only after joining the previous connection's
        // threads and dropping its device, so this is a steady state.
        assert_eq!(first_mode(&mut h), (1280, 800, 1));
        // Settled: the pool refills in the background after a context takes its
        // worker, so read until two readings 100 ms apart agree (at most 10 s).
        let read = || (daemon.proc_entries("task"), daemon.proc_entries("fd"));
        let mut last = read();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            let now = read();
            if now == last {
                break;
            }
            last = now;
        }
        counts.push(last);
        assert_eq!(make_connection_state(&mut h), FRESH);
    }
    assert!(
        counts.iter().all(|c| *c == counts[0]),
        "(threads, fds) per connection: {counts:?}\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("frontend 5 connected") && log.contains("frontend 4 disconnected"),
        "one line per connect and disconnect:\n{log}"
    );
}

/// Shows a `w`×`h` 2D resource (id 1, guest backing of zeros) on scanout 0.
fn show_frame(h: &mut Harness, w: u32, hgt: u32) {
    let len = w * hgt * 4;
    let backing = h.alloc(u64::from(len));
    let mut attach = cmd(CommandType::ResourceAttachBacking, &[1, 1]);
    attach.extend_from_slice(
        &MemEntry {
            addr: backing,
            length: len,
        }
        .encode(),
    );
    for req in [
        cmd(CommandType::ResourceCreate2d, &[1, 2, w, hgt]),
        attach,
        cmd(CommandType::TransferToHost2d, &[0, 0, w, hgt, 0, 0, 1, 0]),
        cmd(CommandType::SetScanout, &[0, 0, w, hgt, 0, 1]),
        cmd(CommandType::ResourceFlush, &[0, 0, w, hgt, 1, 0]),
    ] {
        assert_eq!(h.resp_type(&req), OK);
    }
}

/// Sends SIGUSR1 and returns the size of the `scanout-0.png` it writes.
fn dump_frame(daemon: &ServeProcess, frames: &Path) -> (u32, u32) {
    let wrote = |log: &str| log.matches("frame dump: wrote").count();
    let before = wrote(&daemon.log());
    let status = Command::new("kill")
        .args(["-USR1", &daemon.child.id().to_string()])
        .status()
        .expect("kill -USR1");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while wrote(&daemon.log()) == before {
        assert!(
            Instant::now() < deadline,
            "no frame dump:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let png = std::fs::File::open(frames.join("scanout-0.png")).expect("scanout-0.png");
    let info = png::Decoder::new(png).read_info().expect("png header");
    (info.info().width, info.info().height)
}

#[test]
fn sigusr1_dumps_the_frame_of_the_connected_frontend() {
    let dir = test_dir("frames");
    let frames = dir.0.join("frames");
    std::fs::create_dir_all(&frames).expect("frames dir");
    let config = dir.0.join("serve.toml");
    std::fs::write(&config, format!("[defaults]\nframe_dir = {frames:?}\n")).expect("config");
    let config = config.to_str().expect("utf-8 path");
    let (daemon, socket) = ServeProcess::spawn(&dir, &["--config", config]);

    let mut first = Harness::connect(&socket);
    show_frame(&mut first, 16, 8);
    assert_eq!(dump_frame(&daemon, &frames), (16, 8));
    let threads = daemon.proc_entries("task");
    drop(first);

    let mut second = Harness::connect(&socket);
    show_frame(&mut second, 32, 4);
    assert_eq!(
        daemon.proc_entries("task"),
        threads,
        "one frame-dump thread for all connections"
    );
    assert_eq!(
        dump_frame(&daemon, &frames),
        (32, 4),
        "the dump shows the second frontend's scanout"
    );
}

/// CTX_ATTACH_RESOURCE + `VkImportMemoryResourceInfoMESA`: context 2 allocates device
/// memory over the blob context 1 exported, and exporting that memory again hands out
/// the same file (same pages); a context the blob is not attached to cannot import it.
#[test]
fn attached_blob_imports_as_the_same_device_memory_in_another_context() {
    venus_stream::use_lavapipe();
    let mut h = Harness::start(venus_render);
    attached_blob_imports(&mut h);
}

/// The same with every context in a worker process of its own (`vhost-user-vgpu
/// serve`, whose default is `isolation = "process"`): the blob's memfd goes from the
/// daemon to the other context's worker, which imports it.
#[test]
fn attached_blob_imports_across_worker_processes() {
    venus_stream::use_lavapipe();
    let dir = test_dir("attach-workers");
    let (daemon, socket) = ServeProcess::spawn(&dir, &[]);
    let mut h = Harness::connect(&socket);
    attached_blob_imports(&mut h);
    // Three contexts, three workers beside the daemon.
    let workers: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", daemon.child.id()))
        .expect("tasks")
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
                .collect::<Vec<_>>()
        })
        .filter(|comm| comm.starts_with("w:gpu-"))
        .collect();
    assert_eq!(workers.len(), 3, "{workers:?}\n{}", daemon.log());
}

/// A dispatch recorded with no compute pipeline bound (valid framing, invalid usage
/// the fuzzer found: lavapipe dereferences the NULL pipeline when the batch runs and
/// SIGSEGVs) is refused before the driver: only that context fails, in this process
/// (no worker to contain it), and another context of the device works afterwards.
#[test]
fn a_dispatch_without_a_bound_pipeline_is_refused_before_the_driver() {
    let _ = env_logger::builder().is_test(true).try_init();
    venus_stream::use_lavapipe();
    let mut h = Harness::start(venus_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let bad = venus_stream::dispatch_without_pipeline();
    assert_ne!(
        le32(&h.request(&submit_3d(1, 0, 0, 0, &bad)), 0),
        OK,
        "the context ran a dispatch with no pipeline"
    );
    assert_eq!(h.resp_type(&ctx_create(2, 4)), OK);
    let good = venus_stream::device_with_memory(0x20, 65536, None);
    assert_eq!(le32(&h.request(&submit_3d(2, 0, 0, 0, &good)), 0), OK);
}

fn attached_blob_imports(h: &mut Harness) {
    const MEM: u64 = 0x20;
    const SIZE: u32 = 65536;
    let blob = |res: u32, mem: u64| {
        let lo = u32::try_from(mem & 0xffff_ffff).expect("low word");
        let hi = u32::try_from(mem >> 32).expect("high word");
        // resource, HOST3D, MAPPABLE | SHAREABLE, no entries, blob id, size
        (res, vec![res, 2, 3, 0, lo, hi, SIZE, 0])
    };
    for ctx in 1..=3 {
        assert_eq!(h.resp_type(&ctx_create(ctx, 4)), OK);
    }
    let own = venus_stream::device_with_memory(MEM, u64::from(SIZE), None);
    assert_eq!(le32(&h.request(&submit_3d(1, 0, 0, 0, &own)), 0), OK);
    let (res, words) = blob(10, MEM);
    assert_eq!(
        h.resp_type(&ctx_cmd(CommandType::ResourceCreateBlob, 1, &words)),
        OK
    );
    assert_eq!(
        h.resp_type(&ctx_cmd(CommandType::CtxAttachResource, 2, &[res, 0])),
        OK
    );
    // Context 2 imports it; context 3 tries without the attach.
    for ctx in [2, 3] {
        let import = venus_stream::device_with_memory(MEM, u64::from(SIZE), Some(res));
        assert_eq!(le32(&h.request(&submit_3d(ctx, 0, 0, 0, &import)), 0), OK);
    }
    let (res2, words) = blob(11, MEM);
    assert_eq!(
        h.resp_type(&ctx_cmd(CommandType::ResourceCreateBlob, 2, &words)),
        OK
    );
    let (_, words) = blob(12, MEM);
    assert_ne!(
        h.resp_type(&ctx_cmd(CommandType::ResourceCreateBlob, 3, &words)),
        OK,
        "context 3's import failed, so it has no such memory to export"
    );
    for (r, offset) in [(res, 0u32), (res2, SIZE)] {
        let map = h.request(&cmd(CommandType::ResourceMapBlob, &[r, 0, offset, 0]));
        assert_eq!(le32(&map, 0), RespType::OkMapInfo as u32);
    }
    let inodes = h.shm_log.inodes.lock().expect("lock").clone();
    let (a, b) = (inodes.get(&0), inodes.get(&u64::from(SIZE)));
    assert!(a.is_some() && b.is_some(), "both blobs mapped: {inodes:?}");
    assert_eq!(a, b, "the imported memory is the exported blob's file");
}

/// A stream stuck in `vkQueueWaitIdle` on a queue that never drains (blocked on a
/// semaphore nobody signals) holds up only its context: the control queue answers
/// meanwhile, and destroying the context makes the wait give up.
#[test]
fn context_destroy_is_not_held_up_by_a_queue_that_never_drains() {
    venus_stream::use_lavapipe();
    let mut h = Harness::start(venus_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let setup = h.request(&submit_3d(1, 0, 0, 0, &venus_stream::setup(1)));
    assert_eq!(le32(&setup, 0), OK);
    let stuck = h.post_request(&submit_3d(1, 0, 0, 0, &venus_stream::queue_wait_idle()));
    let display = h.post_request(&cmd(CommandType::GetDisplayInfo, &[]));
    assert_eq!(
        h.next_used(0, Duration::from_secs(5)).map(|u| u.0),
        Some(display),
        "the control queue answers while the context waits"
    );
    assert_eq!(h.next_used(0, Duration::from_millis(200)), None);
    let start = Instant::now();
    let destroy = h.post_request(&ctx_cmd(CommandType::CtxDestroy, 1, &[]));
    h.expect_used(
        &[stuck, destroy],
        Duration::from_secs(30),
        "destroy and the stuck submit answered",
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    // The device still serves other contexts.
    assert_eq!(h.resp_type(&ctx_create(2, 4)), OK);
}

/// Responses parked on a destroyed context's ring come back with CTX_DESTROY: every
/// descriptor is answered.
#[test]
fn destroying_a_context_returns_responses_parked_on_its_rings() {
    venus_stream::use_lavapipe();
    let mut h = Harness::start(venus_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let setup = h.request(&submit_3d(1, 0, 0, 0, &venus_stream::setup(1)));
    assert_eq!(le32(&setup, 0), OK);
    let fenced = h.post_request(&submit_3d(1, FLAG_FENCE | FLAG_INFO_RING_IDX, 7, 1, &[]));
    assert_eq!(h.next_used(0, Duration::from_millis(300)), None, "parked");
    let destroy = h.post_request(&ctx_cmd(CommandType::CtxDestroy, 1, &[]));
    h.expect_used(
        &[fenced, destroy],
        Duration::from_secs(30),
        "the parked response and the destroy",
    );
}

/// A context whose stream blocks and which keeps submitting is held back on its own:
/// the control queue keeps answering (2D, other contexts, its CTX_DESTROY), and every
/// held request is answered once the context is gone.
#[test]
fn a_blocked_context_over_its_budget_does_not_stop_the_control_queue() {
    venus_stream::use_lavapipe();
    let mut h = Harness::start_with(venus_render, |c| c.handler.max_inflight_bytes = 64 << 10);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    assert_eq!(h.resp_type(&ctx_create(2, 4)), OK);
    let setup = h.request(&submit_3d(1, 0, 0, 0, &venus_stream::setup(1)));
    assert_eq!(le32(&setup, 0), OK);
    // Context 1's thread blocks in vkQueueWaitIdle; then 4 × 40 KiB more streams,
    // over its 64 KiB budget (never run: the context is destroyed first).
    let mut ours = vec![h.post_request(&submit_3d(1, 0, 0, 0, &venus_stream::queue_wait_idle()))];
    let filler = vec![0u8; 40 << 10];
    for _ in 0..4 {
        ours.push(h.post_request(&submit_3d(1, 0, 0, 0, &filler)));
    }
    // Context 2 and display requests still get through.
    let other = h.post_request(&submit_3d(2, 0, 0, 0, &[]));
    let display = h.post_request(&cmd(CommandType::GetDisplayInfo, &[]));
    h.expect_used(
        &[other, display],
        Duration::from_secs(5),
        "other requests answered while context 1 is stuck",
    );
    ours.push(h.post_request(&ctx_cmd(CommandType::CtxDestroy, 1, &[])));
    h.expect_used(
        &ours,
        Duration::from_secs(30),
        "every request of context 1 answered",
    );
}

/// QEMU stops the rings (GET_VRING_BASE) both to pause a VM and to reset the device
/// on a guest reboot. Restarted where they stopped, the device keeps its state;
/// restarted from scratch (a new driver), it is a fresh device.
#[test]
fn rings_restarted_in_place_keep_state_and_from_scratch_reset_it() {
    let mut h = Harness::start(core_render);
    let create = cmd(CommandType::ResourceCreate2d, &[1, 1, 64, 64]);
    assert_eq!(h.resp_type(&create), OK);
    // Pause and resume.
    let base = h.stop_queue(0);
    assert!(base > 0);
    h.restart_queue(0, base, false);
    assert_eq!(
        h.resp_type(&create),
        RespType::ErrInvalidResourceId as u32,
        "resource 1 survived the pause"
    );
    // Guest reset: both rings come back empty, the driver starts over.
    let _ = h.stop_queue(0);
    let _ = h.stop_queue(1);
    h.restart_queue(0, 0, true);
    h.restart_queue(1, 0, true);
    assert_eq!(h.resp_type(&create), OK, "a fresh device after the reset");
}

/// Posts MOVE_CURSOR on the cursor queue with a 24-byte response buffer, without
/// waiting; returns the head.
fn post_move_cursor(h: &mut Harness) -> u16 {
    let bufs = h.request_bufs(&cmd(CommandType::MoveCursor, &[0, 5, 6, 0, 0, 0, 0, 0]), 24);
    h.post(1, &bufs)
}

/// After a guest reset nothing from before it reaches the new rings: a response
/// parked on a fence when the rings stopped is dropped with the old device, and the
/// cursor ring's first request after the restart (before any control-queue kick,
/// which is where the pause-or-reset decision used to be made) is answered, not
/// stashed and then dropped with the old device's leftovers.
#[test]
fn after_a_reset_no_stale_completion_and_the_cursor_ring_is_answered_first() {
    venus_stream::use_lavapipe();
    let mut h = Harness::start(venus_render);
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let setup = h.request(&submit_3d(1, 0, 0, 0, &venus_stream::setup(1)));
    assert_eq!(le32(&setup, 0), OK);
    let parked = h.post_request(&submit_3d(1, FLAG_FENCE | FLAG_INFO_RING_IDX, 7, 1, &[]));
    assert_eq!(h.next_used(0, Duration::from_millis(300)), None, "parked");

    // The guest reboots: both rings stop and come back as a new driver lays them out.
    let _ = h.stop_queue(0);
    let _ = h.stop_queue(1);
    h.restart_queue(0, 0, true);
    h.restart_queue(1, 0, true);
    let cursor = post_move_cursor(&mut h);
    assert_eq!(
        h.next_used(1, Duration::from_secs(5)).map(|u| u.0),
        Some(cursor),
        "the cursor ring's first request after the reset"
    );
    // Fresh device: context 1 and resource 1 are free again, and every used entry on
    // the new control ring is one of its own requests, in order (request() checks).
    assert_eq!(h.resp_type(&ctx_create(1, 4)), OK);
    let create = cmd(CommandType::ResourceCreate2d, &[1, 1, 64, 64]);
    assert_eq!(h.resp_type(&create), OK);
    assert_eq!(
        h.next_used(0, Duration::from_millis(300)),
        None,
        "head {parked} from before the reset came back on the new ring"
    );
}

/// While the control ring is stopped (a pause), nothing is popped from either ring:
/// a cursor request waits, and is answered once the rings restart where they stopped,
/// together with the state kept across the pause.
#[test]
fn a_stopped_control_ring_holds_the_cursor_ring_until_the_restart() {
    let mut h = Harness::start(core_render);
    let create = cmd(CommandType::ResourceCreate2d, &[1, 1, 64, 64]);
    assert_eq!(h.resp_type(&create), OK);
    let base = h.stop_queue(0);
    let cursor = post_move_cursor(&mut h);
    assert_eq!(
        h.next_used(1, Duration::from_millis(300)),
        None,
        "answered while the control ring was stopped"
    );
    h.restart_queue(0, base, false);
    assert_eq!(
        h.next_used(1, Duration::from_secs(5)).map(|u| u.0),
        Some(cursor),
        "the held cursor request after the restart"
    );
    assert_eq!(
        h.resp_type(&create),
        RespType::ErrInvalidResourceId as u32,
        "resource 1 survived the pause"
    );
}

/// Configuration queries are answered ahead of queued 2D work: a GET_CAPSET posted
/// behind a burst of transfers and flushes (one kick for all, as a busy guest console
/// makes them) comes back first; the 2D requests then come back in their order.
#[test]
fn capset_query_is_answered_ahead_of_queued_2d_work() {
    let mut h = Harness::start(core_render);
    let create = cmd(CommandType::ResourceCreate2d, &[1, 2, 256, 256]);
    assert_eq!(h.resp_type(&create), OK);
    let backing = h.alloc(256 * 256 * 4);
    let attach = cmd(
        CommandType::ResourceAttachBacking,
        &[
            1,
            1,
            u32::try_from(backing).expect("low"),
            0,
            256 * 256 * 4,
            0,
        ],
    );
    assert_eq!(h.resp_type(&attach), OK);
    assert_eq!(
        h.resp_type(&cmd(CommandType::SetScanout, &[0, 0, 256, 256, 0, 1])),
        OK
    );
    // 12 pairs: with the capset, 50 descriptors, all in flight at once in the
    // harness's 64-entry table.
    let mut queued = Vec::new();
    for _ in 0..12 {
        for req in [
            cmd(CommandType::TransferToHost2d, &[0, 0, 256, 256, 0, 0, 1, 0]),
            cmd(CommandType::ResourceFlush, &[0, 0, 256, 256, 1, 0]),
        ] {
            let bufs = h.request_bufs(&req, 24);
            queued.push(h.post_no_kick(0, &bufs));
        }
    }
    let bufs = h.request_bufs(&cmd(CommandType::GetCapset, &[4, 1]), 4096);
    let capset = h.post(0, &bufs);
    let mut order = Vec::new();
    while order.len() < queued.len() + 1 {
        let (head, _) = h
            .next_used(0, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("answers so far: {order:?}"));
        order.push(head);
    }
    assert_eq!(order[0], capset, "the capset query first: {order:?}");
    assert_eq!(order[1..], queued[..], "then the 2D work in its order");
}

/// The frontend stops the control ring while the device is in the middle of a
/// request (here a CTX_CREATE that takes 600 ms) and the guest has queued one more
/// request meanwhile; then the guest resets (the rings come back empty). The device
/// must leave the stopped ring alone (with EVENT_IDX it used to spin on it, flooding
/// its log, and then pop the new ring's requests into the old device before noticing
/// the reset), and serve the new driver a fresh device.
#[test]
fn a_ring_stopped_mid_request_is_left_alone_and_the_reset_is_seen() {
    let slow = |signals: FenceSignals| -> Box<dyn RenderBackend> {
        let factory = |_ctx| -> Result<Arc<dyn StreamExecutor>, ExecError> {
            std::thread::sleep(Duration::from_millis(600));
            Ok(Arc::new(TransportOnlyExecutor))
        };
        Box::new(CoreBackend::new(
            &venus_capset(),
            Arc::new(factory),
            ContextConfig::default(),
            signals,
        ))
    };
    let mut h = Harness::start(slow);
    let create = cmd(CommandType::ResourceCreate2d, &[1, 1, 64, 64]);
    assert_eq!(h.resp_type(&create), OK);
    let _ctx = h.post_request(&ctx_create(1, 4));
    std::thread::sleep(Duration::from_millis(150));
    // Mid-request: the VMM stops the rings, and the guest had one more request
    // in the avail ring (no kick: the ring is stopped).
    let _ = h.stop_queue(0);
    let _ = h.stop_queue(1);
    let req = cmd(CommandType::GetDisplayInfo, &[]);
    let a = h.alloc(req.len() as u64);
    h.mem.write_slice(&req, GuestAddress(a)).expect("write");
    let _late = h.post_no_kick(0, &[(a, 24, false)]);
    std::thread::sleep(Duration::from_millis(900));
    // The guest reboots: fresh rings, and a fresh device for them.
    h.restart_queue(0, 0, true);
    h.restart_queue(1, 0, true);
    assert_eq!(h.resp_type(&create), OK, "a fresh device after the reset");
    assert_eq!(
        h.next_used(0, Duration::from_millis(300)),
        None,
        "an answer from before the reset came back on the new ring"
    );
}

/// Hostile headers around the query fast path: a chain too short for a header, a
/// fenced capset query (not reordered), an unknown command and a capset query for a
/// capset that does not exist are each answered exactly once, and the device goes on.
#[test]
fn short_fenced_and_unknown_requests_are_each_answered_once() {
    let mut h = Harness::start(core_render);
    let mut fenced = cmd(CommandType::GetCapset, &[4, 1]);
    fenced[4] = 1; // VIRTIO_GPU_FLAG_FENCE
    fenced[8] = 9; // fence id 9
    let requests = [
        vec![1u8, 2, 3, 4],
        fenced,
        cmd(CommandType::GetCapset, &[99, 1]),
        {
            let mut c = cmd(CommandType::GetDisplayInfo, &[]);
            c[0..4].copy_from_slice(&0xdead_u32.to_le_bytes());
            c
        },
    ];
    let mut heads = Vec::new();
    for req in &requests {
        let bufs = h.request_bufs(req, 4096);
        heads.push(h.post_no_kick(0, &bufs));
    }
    let bufs = h.request_bufs(&cmd(CommandType::GetDisplayInfo, &[]), 4096);
    heads.push(h.post(0, &bufs));
    h.expect_used(
        &heads,
        Duration::from_secs(5),
        "every request answered once",
    );
    assert_eq!(
        h.next_used(0, Duration::from_millis(200)),
        None,
        "answered twice"
    );
    assert_eq!(
        h.resp_type(&cmd(CommandType::ResourceCreate2d, &[1, 1, 64, 64])),
        OK
    );
}
