//! The VMM + guest-driver half of the bridge: connects to `vhost-user-vgpu serve`,
//! negotiates as QEMU/crosvm would, shares a memfd as guest memory, lays out split
//! virtqueues in it, and sends virtio-gpu control commands one at a time (header and
//! payload in separate readable descriptors, response in a writable one, as the Linux
//! driver does). SHMEM_MAP/SHMEM_UNMAP land in a [`ShmWindow`].

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vgpu_device::virtio_gpu::protocol::{features, CommandType, RespType, CTRL_HDR_SIZE};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, FrontendReqHandler, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::shm::ShmWindow;

/// Guest memory size.
const MEM_SIZE: u64 = 40 << 20;
/// Queue size of both queues.
const QSIZE: u16 = 256;
/// Where the response buffer lives.
const RESP_ADDR: u64 = 0x2_0000;
/// Largest response accepted (GET_CAPSET of a big capset, DISPLAY_INFO, EDID).
pub const MAX_RESP: u32 = 0x1_0000;
/// Where the command (header + fixed part) lives.
const CMD_ADDR: u64 = 0x3_0000;
/// Largest command header + fixed part.
const MAX_CMD: usize = 0x1_0000;
/// Where the payload (SUBMIT_3D stream) lives.
const DATA_ADDR: u64 = 0x10_0000;
/// Largest payload: the device's default `max_submit_bytes`, plus slack.
pub const MAX_DATA: usize = 32 << 20;
/// Guest-physical address of the payload area, for callers that place resource backing
/// there instead of sending a payload (benchmarks: `MAX_DATA` bytes at this address,
/// overwritten by the next [`GuestDriver::command`] that carries a payload).
pub const PAYLOAD_ADDR: u64 = DATA_ADDR;

const F_VERSION_1: u64 = 1 << 32;
const F_RING_RESET: u64 = 1 << 40;
const F_INDIRECT: u64 = 1 << 28;
const F_EVENT_IDX: u64 = 1 << 29;
const F_PROTOCOL: u64 = 1 << 30;

/// One split virtqueue in guest memory.
#[derive(Debug)]
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    avail_idx: u16,
    used_seen: u16,
    kick: EventFd,
    call: EventFd,
}

/// What negotiation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Virtio features acked.
    pub features: u64,
    /// `num_capsets` from the config space.
    pub num_capsets: u32,
    /// Size of shared-memory region 1.
    pub shm_size: u64,
}

/// A response: type and the whole buffer the device wrote.
#[derive(Clone, Debug)]
pub struct Response {
    /// `RespType` value.
    pub resp: u32,
    /// Bytes written (header included).
    pub bytes: Vec<u8>,
}

impl Response {
    /// Whether the type is `ok`.
    pub fn is(&self, ok: RespType) -> bool {
        self.resp == ok as u32
    }

    /// Dword at byte offset `off` (0 if short).
    pub fn le32(&self, off: usize) -> u32 {
        self.bytes
            .get(off..off.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    }
}

/// The guest driver: owns the vhost-user connection and the control queue.
pub struct GuestDriver {
    mem: GuestMemoryMmap,
    /// Kept open: dropping it disconnects, and the backend drops this connection's
    /// device (it exits only with `--once`).
    _frontend: Frontend,
    ctrl: Ring,
    _cursor: Ring,
    shm: Arc<ShmWindow>,
    info: DeviceInfo,
    timeout: Duration,
}

impl std::fmt::Debug for GuestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestDriver")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn err(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

impl GuestDriver {
    /// Connects to the backend at `socket` and sets the device up.
    pub fn connect(socket: &Path, timeout: Duration) -> io::Result<Self> {
        let memfd = rustix::fs::memfd_create("vgpu-bridge-guest", rustix::fs::MemfdFlags::CLOEXEC)?;
        let file = std::fs::File::from(memfd);
        file.set_len(MEM_SIZE)?;
        let mem = GuestMemoryMmap::from_ranges_with_files(&[(
            GuestAddress(0),
            usize::try_from(MEM_SIZE).map_err(err)?,
            Some(FileOffset::new(file.try_clone()?, 0)),
        )])
        .map_err(err)?;
        let host = mem
            .find_region(GuestAddress(0))
            .ok_or_else(|| err("no guest region"))?
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(err)? as u64;

        let mut frontend = Frontend::connect(socket, 2).map_err(err)?;
        frontend.set_owner().map_err(err)?;
        let offered = frontend.get_features().map_err(err)?;
        let gpu = (1u64 << features::VIRGL)
            | (1 << features::EDID)
            | (1 << features::RESOURCE_UUID)
            | (1 << features::RESOURCE_BLOB)
            | (1 << features::CONTEXT_INIT);
        let needed = F_VERSION_1
            | F_PROTOCOL
            | (1 << features::RESOURCE_BLOB)
            | (1 << features::CONTEXT_INIT);
        if offered & needed != needed {
            return Err(err(format!(
                "backend offers {offered:#x}, lacking {:#x}",
                needed & !offered
            )));
        }
        let acked =
            offered & (gpu | F_VERSION_1 | F_INDIRECT | F_EVENT_IDX | F_RING_RESET | F_PROTOCOL);
        let pf = frontend.get_protocol_features().map_err(err)?;
        let want = VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD
            | VhostUserProtocolFeatures::SHMEM;
        if !pf.contains(want) {
            return Err(err(format!(
                "backend protocol features {pf:?} lack {:?}",
                want - pf
            )));
        }
        frontend.set_protocol_features(want).map_err(err)?;
        frontend.set_features(acked).map_err(err)?;

        let (_, cfg) = frontend
            .get_config(0, 16, VhostUserConfigFlags::WRITABLE, &[0u8; 16])
            .map_err(err)?;
        let num_capsets = cfg
            .get(12..16)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        let shm_cfg = frontend.get_shmem_config().map_err(err)?;
        let sizes = shm_cfg.memory_sizes;
        let shm_size = sizes[usize::from(super::shm::SHM_ID_HOST_VISIBLE)];
        let shm = Arc::new(ShmWindow::reserve(shm_size)?);

        let mut req_handler = FrontendReqHandler::new(Arc::clone(&shm)).map_err(err)?;
        req_handler.set_reply_ack_flag(true);
        frontend
            .set_backend_request_fd(&req_handler.get_tx_raw_fd())
            .map_err(err)?;
        std::thread::Builder::new()
            .name("bridge-backend-req".to_owned())
            .spawn(move || loop {
                match req_handler.handle_request() {
                    Ok(_) => {}
                    // A refused request was answered with an error; keep serving.
                    Err(vhost::vhost_user::Error::ReqHandlerError(_))
                    | Err(vhost::vhost_user::Error::InvalidMessage) => {}
                    Err(e) => {
                        log::debug!("bridge: backend channel closed: {e}");
                        return;
                    }
                }
            })?;

        frontend
            .set_mem_table(&[VhostUserMemoryRegionInfo {
                guest_phys_addr: 0,
                memory_size: MEM_SIZE,
                userspace_addr: host,
                mmap_offset: 0,
                mmap_handle: file.as_raw_fd(),
            }])
            .map_err(err)?;

        let mut rings = Vec::new();
        for q in 0..2u64 {
            let base = q * 0x8000;
            let ring = Ring {
                desc: base,
                avail: base + 0x1000,
                used: base + 0x2000,
                avail_idx: 0,
                used_seen: 0,
                kick: EventFd::new(EFD_NONBLOCK).map_err(err)?,
                call: EventFd::new(EFD_NONBLOCK).map_err(err)?,
            };
            let qi = usize::try_from(q).map_err(err)?;
            frontend.set_vring_num(qi, QSIZE).map_err(err)?;
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
                .map_err(err)?;
            frontend.set_vring_base(qi, 0).map_err(err)?;
            frontend.set_vring_call(qi, &ring.call).map_err(err)?;
            frontend.set_vring_kick(qi, &ring.kick).map_err(err)?;
            frontend.set_vring_enable(qi, true).map_err(err)?;
            rings.push(ring);
        }
        let cursor = rings.pop().ok_or_else(|| err("no cursor ring"))?;
        let ctrl = rings.pop().ok_or_else(|| err("no control ring"))?;
        Ok(Self {
            mem,
            _frontend: frontend,
            ctrl,
            _cursor: cursor,
            shm,
            info: DeviceInfo {
                features: acked,
                num_capsets,
                shm_size,
            },
            timeout,
        })
    }

    /// What negotiation found.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// The shared-memory window.
    pub fn shm(&self) -> &Arc<ShmWindow> {
        &self.shm
    }

    /// Writes `bytes` into guest memory at `addr` (backing for 2D resources, placed in
    /// the payload area `PAYLOAD_ADDR .. PAYLOAD_ADDR + MAX_DATA`).
    pub fn write_guest(&self, addr: u64, bytes: &[u8]) -> io::Result<()> {
        let end = u64::try_from(bytes.len())
            .ok()
            .and_then(|n| addr.checked_add(n));
        let limit = DATA_ADDR + MAX_DATA as u64;
        if addr < DATA_ADDR || end.is_none_or(|e| e > limit) {
            return Err(err(format!(
                "{} bytes at {addr:#x} are outside the payload area",
                bytes.len()
            )));
        }
        self.mem.write_slice(bytes, GuestAddress(addr)).map_err(err)
    }

    /// Sends one control command (`cmd`: header + fixed part; `data`: an optional
    /// second readable descriptor) and waits for its response.
    pub fn command(&mut self, cmd: &[u8], data: &[u8], resp_len: u32) -> io::Result<Response> {
        if cmd.len() < CTRL_HDR_SIZE || cmd.len() > MAX_CMD {
            return Err(err(format!("command of {} bytes", cmd.len())));
        }
        if data.len() > MAX_DATA || !(24..=MAX_RESP).contains(&resp_len) {
            return Err(err(format!(
                "payload of {} bytes or response of {resp_len} bytes out of range",
                data.len()
            )));
        }
        self.mem
            .write_slice(cmd, GuestAddress(CMD_ADDR))
            .map_err(err)?;
        let mut bufs = vec![(CMD_ADDR, len32(cmd.len())?, false)];
        if !data.is_empty() {
            self.mem
                .write_slice(data, GuestAddress(DATA_ADDR))
                .map_err(err)?;
            bufs.push((DATA_ADDR, len32(data.len())?, false));
        }
        bufs.push((RESP_ADDR, resp_len, true));
        let head = self.post(&bufs)?;
        let (used, len) = self.wait_used(cmd)?;
        if used != u32::from(head) {
            return Err(err(format!("used id {used}, expected {head}")));
        }
        let n = usize::try_from(len.min(resp_len)).map_err(err)?;
        let mut bytes = vec![0u8; n];
        self.mem
            .read_slice(&mut bytes, GuestAddress(RESP_ADDR))
            .map_err(err)?;
        let resp = bytes
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        Ok(Response { resp, bytes })
    }

    /// Writes a chain at descriptors 0.. (one request is in flight at a time) and
    /// kicks; returns the head.
    fn post(&mut self, bufs: &[(u64, u32, bool)]) -> io::Result<u16> {
        let ring = &mut self.ctrl;
        for (i, (addr, len, writable)) in bufs.iter().enumerate() {
            let idx = u16::try_from(i).map_err(err)?;
            let last = i + 1 == bufs.len();
            let flags: u16 = u16::from(!last) | if *writable { 2 } else { 0 };
            let d = ring.desc + u64::from(idx) * 16;
            self.mem.write_obj(*addr, GuestAddress(d)).map_err(err)?;
            self.mem.write_obj(*len, GuestAddress(d + 8)).map_err(err)?;
            self.mem
                .write_obj(flags, GuestAddress(d + 12))
                .map_err(err)?;
            let next = if last { 0 } else { idx + 1 };
            self.mem
                .write_obj(next, GuestAddress(d + 14))
                .map_err(err)?;
        }
        let slot = ring.avail + 4 + u64::from(ring.avail_idx % QSIZE) * 2;
        self.mem.write_obj(0u16, GuestAddress(slot)).map_err(err)?;
        // EVENT_IDX: ask for an interrupt as soon as the next used entry appears.
        let used_event = ring.avail + 4 + u64::from(QSIZE) * 2;
        self.mem
            .write_obj(ring.used_seen, GuestAddress(used_event))
            .map_err(err)?;
        fence(Ordering::SeqCst);
        ring.avail_idx = ring.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(ring.avail_idx, GuestAddress(ring.avail + 2))
            .map_err(err)?;
        fence(Ordering::SeqCst);
        ring.kick.write(1).map_err(err)?;
        Ok(0)
    }

    /// Waits for the next used entry: (id, len).
    fn wait_used(&mut self, cmd: &[u8]) -> io::Result<(u32, u32)> {
        let deadline = Instant::now() + self.timeout;
        let ring = &mut self.ctrl;
        loop {
            fence(Ordering::SeqCst);
            let idx: u16 = self
                .mem
                .read_obj(GuestAddress(ring.used + 2))
                .map_err(err)?;
            if idx != ring.used_seen {
                let e = ring.used + 4 + u64::from(ring.used_seen % QSIZE) * 8;
                let id: u32 = self.mem.read_obj(GuestAddress(e)).map_err(err)?;
                let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).map_err(err)?;
                ring.used_seen = ring.used_seen.wrapping_add(1);
                return Ok((id, len));
            }
            let now = Instant::now();
            if now > deadline {
                let ty = cmd
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes);
                return Err(err(format!(
                    "no response to command {ty:#x} ({:?}) within {:?}",
                    CommandType::from_u32(ty),
                    self.timeout
                )));
            }
            // Sleep on the call eventfd (bounded, so a lost interrupt only slows us).
            // SAFETY: the eventfd is owned by `ring` and outlives this borrow.
            let call = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.call.as_raw_fd()) };
            let mut fds = [rustix::event::PollFd::new(
                &call,
                rustix::event::PollFlags::IN,
            )];
            let wait = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let _ = ring.call.read();
        }
    }
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(err)
}
