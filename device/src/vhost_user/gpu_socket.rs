//! The QEMU vhost-user-gpu display socket (`VHOST_USER_GPU_SET_SOCKET`,
//! vhost-user-gpu.md §4.1): forwards what the headless display shows to the frontend's
//! console.
//!
//! Messages go out through the `vhost` crate's [`GpuBackend`]. Everything that can
//! block on the frontend runs on one sender thread per socket: the frontend reads the
//! socket from its main loop, which may itself be waiting for a vhost-user reply from
//! us, so neither the vring worker nor the message thread ever writes to it. The vring
//! glue only calls [`GpuSocket::after_command`], which compares the display with what
//! was last announced and parks the difference in a bounded slot per scanout: the
//! newest frame replaces one not yet sent, so a slow frontend costs frames, never
//! memory or guest progress.
//!
//! Sent: GET_PROTOCOL_FEATURES / SET_PROTOCOL_FEATURES (EDID only; no DMABUF2, frames
//! are sent as pixels), GET_DISPLAY_INFO and GET_EDID once at start (logged and kept
//! for [`GpuSocket::frontend_display`]; the guest's GET_DISPLAY_INFO and GET_EDID are
//! still answered from the device's own configuration, so both displays agree),
//! SCANOUT when a scanout is enabled, resized or disabled, UPDATE with x8r8g8b8
//! pixels after SET_SCANOUT* and RESOURCE_FLUSH (in bands of at most [`MAX_UPDATE`]
//! bytes), CURSOR_UPDATE (position, hot spot and the 64 × 64 ARGB image the handler
//! captured) after each UPDATE_CURSOR of a 2D resource, CURSOR_POS when the cursor
//! only moves (or its resource is a blob, whose image is not captured), and
//! CURSOR_POS_HIDE when it hides. A cursor image waiting to be sent is never replaced
//! by a later move: the move updates its position instead. Not sent: DMABUF_* (no
//! dma-buf export).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vhost::vhost_user::gpu_message::{
    VhostUserGpuCursorPos, VhostUserGpuCursorUpdate, VhostUserGpuEdidRequest, VhostUserGpuScanout,
    VhostUserGpuUpdate,
};
use vhost::vhost_user::message::VhostUserU64;
use vhost::vhost_user::GpuBackend;

use crate::ratelimit::RateLimiter;
use crate::virtio_gpu::display::{
    Cursor, CursorImage, Display, Frame, ScanoutId, CURSOR_PIXELS, CURSOR_SIZE,
};
use crate::virtio_gpu::protocol::{CommandType, MAX_SCANOUTS};

/// `VHOST_USER_GPU_PROTOCOL_F_EDID` as a mask. vhost 0.18's
/// `VhostUserGpuProtocolFeatures` declares its flags with the bit *numbers* (EDID = 0,
/// DMABUF2 = 1), so its `EDID` is the empty set and its `DMABUF2` is really EDID.
const PROTOCOL_F_EDID: u64 = 1 << 0;

/// Largest UPDATE payload; taller frames go out in bands of rows.
///
/// Small on purpose. QEMU reads each message from this socket with a blocking
/// `qemu_chr_fe_read_all` in its main loop, holding the big QEMU lock, from the moment
/// the header arrives until the last payload byte does. A message larger than the
/// socket buffer (208 KiB by default) therefore makes QEMU wait, lock held, for this
/// process's sender thread to be scheduled again and again; on a loaded host that took
/// seconds per 4 MiB frame, during which the guest's vCPU (which needs the lock for its
/// virtqueue kicks and interrupts) stood still, and the guest driver's 5 s wait for a
/// capset ran out. A band that fits the buffer whole is written by one `sendmsg`, so
/// QEMU finds every message complete when it starts reading it.
pub const MAX_UPDATE: usize = 64 << 10;

/// What the frontend reported at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendDisplay {
    /// Protocol features the frontend offered.
    pub protocol_features: u64,
    /// Enabled scanouts and their preferred modes, `(scanout, width, height)`.
    pub modes: Vec<(u32, u32, u32)>,
    /// Size of the EDID the frontend returned for scanout 0 (0 without EDID).
    pub edid_size: u32,
}

/// Bytes of a CURSOR_UPDATE image (64 × 64 × 4).
const CURSOR_BYTES: usize = CURSOR_PIXELS * 4;

/// A cursor message for the frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CursorMsg {
    /// CURSOR_POS: show the current image at (x, y).
    Pos { scanout: u32, x: u32, y: u32 },
    /// CURSOR_POS_HIDE.
    Hide { scanout: u32 },
    /// CURSOR_UPDATE: a new image and hot spot, shown at (x, y).
    Update {
        scanout: u32,
        x: u32,
        y: u32,
        hot_x: u32,
        hot_y: u32,
        image: CursorImage,
    },
}

/// What the frontend was last told about one scanout's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CursorSeen {
    Hidden,
    /// At (x, y), with the image of this [`Cursor::generation`] (`None`: no image of
    /// ours was sent for it, the frontend shows whatever it had).
    Shown {
        x: u32,
        y: u32,
        image: Option<u64>,
    },
}

/// The message that brings the frontend from `seen` to `cursor` on `scanout`, with
/// the state it leaves; `None` if nothing changed.
fn cursor_change(
    scanout: u32,
    cursor: &Cursor,
    seen: Option<CursorSeen>,
) -> Option<(CursorSeen, CursorMsg)> {
    if cursor.resource_id == 0 {
        return (seen != Some(CursorSeen::Hidden))
            .then_some((CursorSeen::Hidden, CursorMsg::Hide { scanout }));
    }
    let generation = cursor.image.as_ref().map(|_| cursor.generation);
    let now = CursorSeen::Shown {
        x: cursor.x,
        y: cursor.y,
        image: generation,
    };
    if seen == Some(now) {
        return None;
    }
    let image_sent = matches!(seen, Some(CursorSeen::Shown { image, .. }) if image == generation);
    let msg = match &cursor.image {
        Some(image) if !image_sent => CursorMsg::Update {
            scanout,
            x: cursor.x,
            y: cursor.y,
            hot_x: cursor.hot_x,
            hot_y: cursor.hot_y,
            image: image.clone(),
        },
        _ => CursorMsg::Pos {
            scanout,
            x: cursor.x,
            y: cursor.y,
        },
    };
    Some((now, msg))
}

/// Parks `msg` in a scanout's cursor slot. The newest state wins, except that a move
/// does not drop an image still waiting: it moves it.
fn park_cursor(slot: &mut Option<CursorMsg>, msg: CursorMsg) {
    if let (Some(CursorMsg::Update { x, y, .. }), CursorMsg::Pos { x: nx, y: ny, .. }) =
        (slot.as_mut(), &msg)
    {
        (*x, *y) = (*nx, *ny);
        return;
    }
    *slot = Some(msg);
}

/// What is waiting to be sent for one scanout.
#[derive(Debug, Default)]
struct Slot {
    /// SCANOUT to send first: (width, height); (0, 0) disables.
    mode: Option<(u32, u32)>,
    /// Newest frame not yet sent.
    frame: Option<Frame>,
}

/// One scanout's work as the sender takes it: SCANOUT, then UPDATE.
type SlotWork = (Option<(u32, u32)>, Option<Frame>);

#[derive(Debug, Default)]
struct Pending {
    slots: Vec<Slot>,
    cursor: Vec<Option<CursorMsg>>,
    stop: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.mode.is_none() && s.frame.is_none())
            && self.cursor.iter().all(Option::is_none)
    }
}

/// What the glue side last announced, to send only changes.
#[derive(Debug, Default)]
struct Announced {
    /// Per scanout: (width, height) last sent with SCANOUT; (0, 0) = disabled.
    modes: Vec<(u32, u32)>,
    /// Per scanout: cursor last queued (`None` = nothing yet).
    cursors: Vec<Option<CursorSeen>>,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    frontend: Mutex<Option<FrontendDisplay>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One frontend display socket and its sender thread.
#[derive(Debug)]
pub struct GpuSocket {
    shared: Arc<Shared>,
    alive: Arc<AtomicBool>,
    announced: Mutex<Announced>,
}

impl GpuSocket {
    /// Takes over `backend` (the socket from GPU_SET_SOCKET) for a device with
    /// `num_scanouts` scanouts and starts the sender thread.
    pub fn start(backend: GpuBackend, num_scanouts: usize) -> std::io::Result<Self> {
        let n = num_scanouts.clamp(1, MAX_SCANOUTS);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                slots: (0..n).map(|_| Slot::default()).collect(),
                cursor: vec![None; n],
                stop: false,
            }),
            ..Shared::default()
        });
        let alive = Arc::new(AtomicBool::new(true));
        let (s, a) = (Arc::clone(&shared), Arc::clone(&alive));
        std::thread::Builder::new()
            .name("vgpu-gpu-socket".to_owned())
            .spawn(move || {
                sender(&backend, &s);
                a.store(false, Ordering::Release);
            })?;
        Ok(Self {
            shared,
            alive,
            announced: Mutex::new(Announced {
                modes: vec![(0, 0); n],
                cursors: vec![None; n],
            }),
        })
    }

    /// Whether the sender still runs (false once the frontend closed the socket).
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// What the frontend reported at start, once it has answered.
    pub fn frontend_display(&self) -> Option<FrontendDisplay> {
        lock(&self.shared.frontend).clone()
    }

    /// The device was reset: everything is announced again from scratch.
    pub fn reset(&self) {
        let mut a = lock(&self.announced);
        a.modes.iter_mut().for_each(|m| *m = (0, 0));
        a.cursors.iter_mut().for_each(|c| *c = None);
    }

    /// Called after each processed request of type `command` (raw `type`, 0 if
    /// unreadable) with the display as the handler left it; queues what changed.
    pub fn after_command(&self, command: u32, display: &Display) {
        if !self.alive() {
            return;
        }
        let ty = CommandType::from_u32(command);
        let pixels = matches!(
            ty,
            Some(
                CommandType::SetScanout | CommandType::SetScanoutBlob | CommandType::ResourceFlush
            )
        );
        let cursor = matches!(
            ty,
            Some(CommandType::UpdateCursor | CommandType::MoveCursor)
        );
        let scanouty = pixels || matches!(ty, Some(CommandType::ResourceUnref));
        if !scanouty && !cursor {
            return;
        }
        let mut announced = lock(&self.announced);
        let mut pending = lock(&self.shared.pending);
        let mut queued = false;
        let n = announced.modes.len().min(display.len());
        for i in 0..n {
            let Ok(id) = u32::try_from(i) else { break };
            let Some(sc) = display.get(ScanoutId(id)) else {
                continue;
            };
            let frame = sc.frame.as_ref().filter(|_| sc.resource_id != 0);
            if scanouty {
                let mode = frame.map_or((0, 0), |f| (f.width, f.height));
                if let (Some(old), Some(slot)) =
                    (announced.modes.get_mut(i), pending.slots.get_mut(i))
                {
                    if *old != mode {
                        *old = mode;
                        slot.mode = Some(mode);
                        if mode == (0, 0) {
                            slot.frame = None;
                        }
                        queued = true;
                    }
                    if pixels {
                        if let Some(f) = frame {
                            // Replaces a frame the sender has not taken yet.
                            slot.frame = Some(f.clone());
                            queued = true;
                        }
                    }
                }
            }
            if cursor {
                if let (Some(old), Some(slot)) =
                    (announced.cursors.get_mut(i), pending.cursor.get_mut(i))
                {
                    if let Some((seen, msg)) = cursor_change(id, &sc.cursor, *old) {
                        *old = Some(seen);
                        park_cursor(slot, msg);
                        queued = true;
                    }
                }
            }
        }
        drop(pending);
        if queued {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for GpuSocket {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.wake.notify_one();
    }
}

/// Protocol features, display info and EDID, then the send loop until stopped or
/// the socket fails.
fn sender(gpu: &GpuBackend, shared: &Shared) {
    let warn = RateLimiter::new("vgpu::gpu_socket", Duration::from_secs(5), 5);
    let info = match handshake(gpu) {
        Ok(info) => info,
        Err(e) => {
            warn.warn(format_args!("gpu socket: handshake failed: {e}"));
            gpu.set_failed(libc_epipe());
            return;
        }
    };
    log::info!(
        "gpu socket: frontend protocol features {:#x}, modes {:?}, EDID {} bytes",
        info.protocol_features,
        info.modes,
        info.edid_size
    );
    *lock(&shared.frontend) = Some(info);
    loop {
        let work = {
            let mut p = lock(&shared.pending);
            while p.is_empty() && !p.stop {
                p = shared.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
            }
            if p.stop {
                return;
            }
            let slots: Vec<SlotWork> = p
                .slots
                .iter_mut()
                .map(|s| (s.mode.take(), s.frame.take()))
                .collect();
            let cursors: Vec<Option<CursorMsg>> = p.cursor.iter_mut().map(Option::take).collect();
            (slots, cursors)
        };
        if let Err(e) = send(gpu, &work.0, &work.1) {
            // The VMM closing the socket (shutdown, reconnect) is routine now that the
            // daemon outlives its frontends.
            log::info!("gpu socket: frontend gone ({e}); display forwarding stops");
            gpu.set_failed(libc_epipe());
            return;
        }
    }
}

fn libc_epipe() -> i32 {
    // EPIPE on Linux; only used as the "socket broken" marker.
    32
}

fn handshake(gpu: &GpuBackend) -> std::io::Result<FrontendDisplay> {
    let offered = gpu.get_protocol_features()?.value;
    let ack = offered & PROTOCOL_F_EDID;
    gpu.set_protocol_features(&VhostUserU64::new(ack))?;
    let di = gpu.get_display_info()?;
    let modes = di
        .pmodes
        .iter()
        .zip(0u32..)
        .filter(|(m, _)| m.enabled != 0)
        .map(|(m, i)| (i, m.r.width, m.r.height))
        .collect();
    let edid_size = if ack != 0 {
        let e = gpu.get_edid(&VhostUserGpuEdidRequest { scanout_id: 0 })?;
        e.size.min(1024)
    } else {
        0
    };
    Ok(FrontendDisplay {
        protocol_features: offered,
        modes,
        edid_size,
    })
}

fn send(
    gpu: &GpuBackend,
    slots: &[SlotWork],
    cursors: &[Option<CursorMsg>],
) -> std::io::Result<()> {
    for ((mode, frame), id) in slots.iter().zip(0u32..) {
        if let Some((width, height)) = *mode {
            gpu.set_scanout(&VhostUserGpuScanout {
                scanout_id: id,
                width,
                height,
            })?;
        }
        if let Some(f) = frame {
            send_frame(gpu, id, f)?;
        }
    }
    for c in cursors.iter().flatten() {
        send_cursor(gpu, c)?;
    }
    Ok(())
}

fn send_cursor(gpu: &GpuBackend, c: &CursorMsg) -> std::io::Result<()> {
    match c {
        CursorMsg::Pos { scanout, x, y } => gpu.cursor_pos(&VhostUserGpuCursorPos {
            scanout_id: *scanout,
            x: *x,
            y: *y,
        }),
        CursorMsg::Hide { scanout } => gpu.cursor_pos_hide(&VhostUserGpuCursorPos {
            scanout_id: *scanout,
            x: 0,
            y: 0,
        }),
        CursorMsg::Update {
            scanout,
            x,
            y,
            hot_x,
            hot_y,
            image,
        } => gpu.cursor_update(
            &VhostUserGpuCursorUpdate {
                pos: VhostUserGpuCursorPos {
                    scanout_id: *scanout,
                    x: *x,
                    y: *y,
                },
                // A hot spot outside the image means nothing; keep the frontend's
                // cursor code inside it.
                hot_x: (*hot_x).min(CURSOR_SIZE - 1),
                hot_y: (*hot_y).min(CURSOR_SIZE - 1),
            },
            &cursor_bytes(image),
        ),
    }
}

/// The CURSOR_UPDATE payload: each ARGB pixel as a `u32` in host byte order, as QEMU
/// copies it into its `QEMUCursor` (vhost-user-gpu.md §4.1).
fn cursor_bytes(image: &CursorImage) -> [u8; CURSOR_BYTES] {
    let mut out = [0u8; CURSOR_BYTES];
    for (d, p) in out.chunks_exact_mut(4).zip(image.argb()) {
        d.copy_from_slice(&p.to_ne_bytes());
    }
    out
}

/// UPDATE messages covering `f`, converted from RGBA to x8r8g8b8 (bytes B, G, R, X),
/// in bands of whole rows of at most [`MAX_UPDATE`] bytes.
fn send_frame(gpu: &GpuBackend, scanout_id: u32, f: &Frame) -> std::io::Result<()> {
    let row = usize::try_from(f.width)
        .ok()
        .and_then(|w| w.checked_mul(4))
        .filter(|r| *r > 0);
    let height = usize::try_from(f.height).unwrap_or(0);
    let Some(row) = row else {
        return Ok(());
    };
    if row.checked_mul(height) != Some(f.rgba.len()) {
        return Ok(());
    }
    let band = (MAX_UPDATE / row).max(1);
    let mut out = Vec::with_capacity(row.saturating_mul(band.min(height)));
    for (chunk, first) in f
        .rgba
        .chunks(row.saturating_mul(band))
        .zip((0..).step_by(band))
    {
        out.clear();
        out.extend(chunk.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0], 0xff]));
        let rows = chunk.len() / row;
        gpu.update_scanout(
            &VhostUserGpuUpdate {
                scanout_id,
                x: 0,
                y: u32::try_from(first).unwrap_or(u32::MAX),
                width: f.width,
                height: u32::try_from(rows).unwrap_or(0),
            },
            &out,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    fn read_msg(s: &mut UnixStream) -> (u32, Vec<u8>) {
        use std::io::Read;
        let mut hdr = [0u8; 12];
        s.read_exact(&mut hdr).expect("header");
        let req = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let size = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        let mut body = vec![0u8; size as usize];
        s.read_exact(&mut body).expect("body");
        (req, body)
    }

    fn reply(s: &mut UnixStream, req: u32, body: &[u8]) {
        use std::io::Write;
        let mut m = Vec::new();
        m.extend_from_slice(&req.to_le_bytes());
        m.extend_from_slice(&4u32.to_le_bytes());
        m.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
        m.extend_from_slice(body);
        s.write_all(&m).expect("reply");
    }

    /// Reads UPDATE messages until `height` rows arrived; returns each band's
    /// (y, width, rows, payload bytes) and checks the first pixel's conversion.
    fn read_bands(b: &mut UnixStream, height: u32) -> Vec<(u32, u32, u32, usize)> {
        let word = |body: &[u8], at: usize| {
            u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]])
        };
        let mut bands = Vec::new();
        let mut rows = 0;
        while rows < height {
            let (req, body) = read_msg(b);
            assert_eq!(req, 8, "UPDATE");
            assert_eq!(&body[20..24], &[3, 2, 1, 0xff], "RGBA → x8r8g8b8");
            let band = (
                word(&body, 8),
                word(&body, 12),
                word(&body, 16),
                body.len() - 20,
            );
            rows += band.2;
            bands.push(band);
        }
        bands
    }

    #[test]
    fn bands_split_tall_frames_and_convert_pixels() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let gpu = GpuBackend::from_stream(a);
        // 1024 px wide: 4 KiB rows, 16 rows per 64 KiB band; 1500 rows = 93 full
        // bands and one of 12 rows.
        let f = Frame {
            width: 1024,
            height: 1500,
            rgba: [1u8, 2, 3, 4].repeat(1024 * 1500),
        };
        let t = std::thread::spawn(move || send_frame(&gpu, 0, &f));
        let bands = read_bands(&mut b, 1500);
        t.join().expect("join").expect("sent");
        assert_eq!(bands.len(), 94);
        for (i, band) in (0u32..).zip(&bands[..93]) {
            assert_eq!(*band, (i * 16, 1024, 16, MAX_UPDATE));
        }
        assert_eq!(bands[93], (93 * 16, 1024, 12, 12 * 4096));
        // Every message fits the default unix socket buffer whole.
        assert!(bands.iter().all(|b| b.3 + 20 <= 208 << 10));
    }

    #[test]
    fn rows_wider_than_a_band_go_one_per_message() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let gpu = GpuBackend::from_stream(a);
        // 20000 px: an 80000-byte row, over MAX_UPDATE; still sent, a row at a time.
        let f = Frame {
            width: 20_000,
            height: 3,
            rgba: [1u8, 2, 3, 4].repeat(20_000 * 3),
        };
        let t = std::thread::spawn(move || send_frame(&gpu, 0, &f));
        let bands = read_bands(&mut b, 3);
        t.join().expect("join").expect("sent");
        assert_eq!(
            bands,
            vec![
                (0, 20_000, 1, 80_000),
                (1, 20_000, 1, 80_000),
                (2, 20_000, 1, 80_000)
            ]
        );
    }

    /// Plays QEMU 10.0.2's side of the handshake (protocol features 3, one
    /// 1280 × 800 scanout, a 128-byte EDID).
    fn qemu_handshake(b: &mut UnixStream) {
        let (req, _) = read_msg(b);
        assert_eq!(req, 1);
        reply(b, 1, &3u64.to_le_bytes());
        let (req, body) = read_msg(b);
        assert_eq!((req, body), (2, 1u64.to_le_bytes().to_vec()));
        let (req, _) = read_msg(b);
        assert_eq!(req, 3);
        let mut di = vec![0u8; 24 + 16 * 24];
        di[24 + 8..24 + 12].copy_from_slice(&1280u32.to_le_bytes());
        di[24 + 12..24 + 16].copy_from_slice(&800u32.to_le_bytes());
        di[24 + 16..24 + 20].copy_from_slice(&1u32.to_le_bytes());
        reply(b, 3, &di);
        let (req, body) = read_msg(b);
        assert_eq!((req, body), (11, vec![0, 0, 0, 0]));
        let mut edid = vec![0u8; 24 + 8 + 1024];
        edid[24..28].copy_from_slice(&128u32.to_le_bytes());
        reply(b, 11, &edid);
    }

    fn le32(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    /// A cursor showing a 2 × 1 B8G8R8A8 image (opaque red, half-transparent blue).
    fn cursor_with_image(generation: u64) -> Cursor {
        let pixels = [0, 0, 0xff, 0xff, 0xff, 0, 0, 0x80];
        Cursor {
            resource_id: 3,
            x: 100,
            y: 200,
            hot_x: 5,
            hot_y: 7,
            image: Some(CursorImage::capture(
                crate::virtio_gpu::protocol::Format::B8G8R8A8Unorm,
                2,
                1,
                &pixels,
            )),
            generation,
        }
    }

    #[test]
    fn cursor_change_sends_an_image_once_then_moves_then_hides() {
        let c = cursor_with_image(1);
        let (seen, msg) = cursor_change(0, &c, None).expect("new cursor");
        assert!(matches!(
            msg,
            CursorMsg::Update {
                scanout: 0,
                x: 100,
                y: 200,
                hot_x: 5,
                hot_y: 7,
                ..
            }
        ));
        assert_eq!(cursor_change(0, &c, Some(seen)), None);
        let moved = Cursor { x: 1, ..c.clone() };
        let (seen, msg) = cursor_change(0, &moved, Some(seen)).expect("moved");
        assert_eq!(
            msg,
            CursorMsg::Pos {
                scanout: 0,
                x: 1,
                y: 200
            }
        );
        let newer = Cursor {
            generation: 2,
            ..moved
        };
        let (seen, msg) = cursor_change(0, &newer, Some(seen)).expect("new image");
        assert!(matches!(msg, CursorMsg::Update { x: 1, .. }));
        let hidden = Cursor::default();
        assert_eq!(
            cursor_change(0, &hidden, Some(seen)),
            Some((CursorSeen::Hidden, CursorMsg::Hide { scanout: 0 }))
        );
        assert_eq!(cursor_change(0, &hidden, Some(CursorSeen::Hidden)), None);
    }

    #[test]
    fn a_cursor_without_image_only_moves() {
        let c = Cursor {
            image: None,
            ..cursor_with_image(4)
        };
        let (_, msg) = cursor_change(2, &c, None).expect("shown");
        assert_eq!(
            msg,
            CursorMsg::Pos {
                scanout: 2,
                x: 100,
                y: 200
            }
        );
    }

    #[test]
    fn a_move_parked_after_an_image_keeps_the_image() {
        let image = cursor_with_image(1).image.expect("image");
        let mut slot = Some(CursorMsg::Update {
            scanout: 0,
            x: 1,
            y: 2,
            hot_x: 3,
            hot_y: 4,
            image: image.clone(),
        });
        park_cursor(
            &mut slot,
            CursorMsg::Pos {
                scanout: 0,
                x: 9,
                y: 8,
            },
        );
        assert_eq!(
            slot,
            Some(CursorMsg::Update {
                scanout: 0,
                x: 9,
                y: 8,
                hot_x: 3,
                hot_y: 4,
                image,
            })
        );
        park_cursor(&mut slot, CursorMsg::Hide { scanout: 0 });
        assert_eq!(slot, Some(CursorMsg::Hide { scanout: 0 }));
    }

    #[test]
    fn update_cursor_sends_cursor_update_with_hot_spot_and_argb_pixels() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let mut display = Display::new(1, 64, 32);
        let sock = GpuSocket::start(GpuBackend::from_stream(a), 1).expect("start");
        qemu_handshake(&mut b);

        display.get_mut(ScanoutId(0)).expect("scanout").cursor = cursor_with_image(1);
        sock.after_command(CommandType::UpdateCursor as u32, &display);
        let (req, body) = read_msg(&mut b);
        assert_eq!(req, 6, "VHOST_USER_GPU_CURSOR_UPDATE");
        assert_eq!(body.len(), 12 + 8 + 64 * 64 * 4);
        let header: Vec<u32> = (0..5).map(|i| le32(&body, i * 4)).collect();
        assert_eq!(header, [0, 100, 200, 5, 7]);
        let px = |i: usize| {
            u32::from_ne_bytes([
                body[20 + i * 4],
                body[21 + i * 4],
                body[22 + i * 4],
                body[23 + i * 4],
            ])
        };
        assert_eq!(px(0), 0xffff_0000, "opaque red");
        assert_eq!(px(1), 0x8000_00ff, "half-transparent blue");
        assert!((2..64 * 64).all(|i| px(i) == 0), "padding is transparent");

        // A move sends CURSOR_POS; hiding sends CURSOR_POS_HIDE.
        display.get_mut(ScanoutId(0)).expect("scanout").cursor.x = 7;
        sock.after_command(CommandType::MoveCursor as u32, &display);
        let (req, body) = read_msg(&mut b);
        assert_eq!((req, body.len()), (4, 12));
        assert_eq!(
            [le32(&body, 0), le32(&body, 4), le32(&body, 8)],
            [0, 7, 200]
        );
        display.get_mut(ScanoutId(0)).expect("scanout").cursor = Cursor::default();
        sock.after_command(CommandType::UpdateCursor as u32, &display);
        let (req, body) = read_msg(&mut b);
        assert_eq!((req, body), (5, vec![0; 12]));
        drop(sock);
    }

    #[test]
    fn hot_spot_outside_the_image_is_clamped() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let gpu = GpuBackend::from_stream(a);
        let msg = CursorMsg::Update {
            scanout: 1,
            x: 0,
            y: 0,
            hot_x: 500,
            hot_y: u32::MAX,
            image: cursor_with_image(1).image.expect("image"),
        };
        send_cursor(&gpu, &msg).expect("sent");
        let (req, body) = read_msg(&mut b);
        assert_eq!(req, 6);
        assert_eq!(
            [le32(&body, 0), le32(&body, 12), le32(&body, 16)],
            [1, 63, 63]
        );
    }

    #[test]
    fn handshake_then_scanout_and_update_after_flush() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let mut display = Display::new(1, 64, 32);
        let sock = GpuSocket::start(GpuBackend::from_stream(a), 1).expect("start");
        qemu_handshake(&mut b);

        // A flush of something not shown sends nothing; showing a frame sends
        // SCANOUT then UPDATE.
        sock.after_command(CommandType::ResourceFlush as u32, &display);
        let sc = display.get_mut(ScanoutId(0)).expect("scanout");
        sc.resource_id = 5;
        sc.frame = Some(Frame {
            width: 2,
            height: 1,
            rgba: vec![10, 20, 30, 255, 40, 50, 60, 255],
        });
        sock.after_command(CommandType::SetScanout as u32, &display);
        let (req, body) = read_msg(&mut b);
        assert_eq!(req, 7);
        assert_eq!(body, [0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        let (req, body) = read_msg(&mut b);
        assert_eq!(req, 8);
        assert_eq!(&body[20..], &[30, 20, 10, 0xff, 60, 50, 40, 0xff]);
        assert_eq!(
            sock.frontend_display(),
            Some(FrontendDisplay {
                protocol_features: 3,
                modes: vec![(0, 1280, 800)],
                edid_size: 128,
            })
        );

        // Disabling sends SCANOUT with 0 × 0; the cursor hides.
        display.forget_resource(5);
        sock.after_command(CommandType::ResourceUnref as u32, &display);
        let (req, body) = read_msg(&mut b);
        assert_eq!((req, body), (7, vec![0; 12]));
        sock.after_command(CommandType::MoveCursor as u32, &display);
        let (req, body) = read_msg(&mut b);
        assert_eq!((req, body), (5, vec![0; 12]));
        drop(sock);
    }
}
