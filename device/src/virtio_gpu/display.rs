//! Headless display: scanouts, their last presented frame, EDID, PNG output.
//!
//! Each scanout remembers what the guest last flushed to it as an RGBA frame, so tests
//! and users can see what the guest shows ([`Display::write_png`]), and its cursor:
//! position, hot spot and a 64 × 64 ARGB copy of the image ([`CursorImage`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use super::protocol::{DisplayOne, Format, Rect};

/// A scanout index (`scanout_id`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScanoutId(pub u32);

impl std::fmt::Display for ScanoutId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scanout{}", self.0)
    }
}

/// Errors of the display.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DisplayError {
    /// No such scanout.
    #[error("{0} does not exist")]
    NoScanout(ScanoutId),
    /// The scanout has not shown anything yet.
    #[error("{0} has no frame")]
    NoFrame(ScanoutId),
    /// Writing the file failed.
    #[error("writing {path} failed")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("encoding PNG failed")]
    Png(#[from] png::EncodingError),
}

/// A presented frame, RGBA8, tightly packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes, row-major, RGBA.
    pub rgba: Vec<u8>,
}

/// Width and height of a cursor image (QEMU's `cursor_alloc(64, 64)`; the Linux
/// driver's cursor resources are 64 × 64 too).
pub const CURSOR_SIZE: u32 = 64;

/// Pixels in one row of a cursor image.
const CURSOR_ROW: usize = 64;

/// Pixels in a cursor image.
pub const CURSOR_PIXELS: usize = CURSOR_ROW * CURSOR_ROW;

/// A 64 × 64 cursor image, row-major, one `u32` per pixel with alpha in bits 24–31,
/// red in 16–23, green in 8–15 and blue in 0–7 (ARGB as a host-order integer, the
/// layout of QEMU's `QEMUCursor::data`). Cheap to clone: the pixels are shared.
#[derive(Clone, PartialEq, Eq)]
pub struct CursorImage(Arc<[u32; CURSOR_PIXELS]>);

impl std::fmt::Debug for CursorImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opaque = self.0.iter().filter(|p| **p >> 24 != 0).count();
        f.debug_struct("CursorImage")
            .field("non_transparent", &opaque)
            .finish()
    }
}

impl CursorImage {
    /// Copies the top-left 64 × 64 pixels of a `width` × `height` image in `format`
    /// whose rows are `width * 4` bytes of `pixels`. Pixels outside the image (a
    /// smaller resource) or outside `pixels` (never for a consistent resource) are
    /// transparent; a larger image is clipped.
    pub fn capture(format: Format, width: u32, height: u32, pixels: &[u8]) -> Self {
        let mut argb = [0u32; CURSOR_PIXELS];
        let cols = width.min(CURSOR_SIZE);
        let rows = height.min(CURSOR_SIZE);
        for (y, out) in (0..rows).zip(argb.chunks_exact_mut(CURSOR_ROW)) {
            for (x, px) in (0..cols).zip(out.iter_mut()) {
                *px = source_pixel(format, width, x, y, pixels).unwrap_or(0);
            }
        }
        Self(Arc::new(argb))
    }

    /// The pixels, row-major.
    pub fn argb(&self) -> &[u32; CURSOR_PIXELS] {
        &self.0
    }
}

/// Pixel (`x`, `y`) of an image `width` pixels wide, as ARGB; `None` if it lies
/// outside `pixels` or the offset overflows.
fn source_pixel(format: Format, width: u32, x: u32, y: u32, pixels: &[u8]) -> Option<u32> {
    let index = u64::from(y)
        .checked_mul(u64::from(width))?
        .checked_add(u64::from(x))?;
    let start = usize::try_from(index).ok()?.checked_mul(4)?;
    let bytes: [u8; 4] = pixels.get(start..start.checked_add(4)?)?.try_into().ok()?;
    let [r, g, b, a] = format.to_rgba(bytes);
    Some(u32::from_be_bytes([a, r, g, b]))
}

/// Cursor state of a scanout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Image resource (0 = hidden).
    pub resource_id: u32,
    /// Position.
    pub x: u32,
    /// Position.
    pub y: u32,
    /// Hot spot.
    pub hot_x: u32,
    /// Hot spot.
    pub hot_y: u32,
    /// The image captured from `resource_id` at the last UPDATE_CURSOR; `None` when
    /// hidden or when the resource is not a 2D resource (blob cursors are not read).
    pub image: Option<CursorImage>,
    /// Changes at every UPDATE_CURSOR (image or hot spot may have changed), never at
    /// MOVE_CURSOR, so a consumer can tell a new image from a move.
    pub generation: u64,
}

/// What a scanout shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scanout {
    /// Preferred mode reported to the guest.
    pub mode: Rect,
    /// The resource being scanned out (0 = disabled).
    pub resource_id: u32,
    /// The part of the resource shown.
    pub rect: Rect,
    /// The last frame flushed (cleared when disabled).
    pub frame: Option<Frame>,
    /// The cursor.
    pub cursor: Cursor,
}

/// All scanouts of the device.
#[derive(Clone, Debug)]
pub struct Display {
    scanouts: Vec<Scanout>,
}

impl Display {
    /// `count` scanouts (1..=16), each with preferred mode `width` × `height`.
    pub fn new(count: usize, width: u32, height: u32) -> Self {
        let mode = Rect {
            x: 0,
            y: 0,
            width,
            height,
        };
        Self {
            scanouts: vec![
                Scanout {
                    mode,
                    ..Scanout::default()
                };
                count.clamp(1, super::protocol::MAX_SCANOUTS)
            ],
        }
    }

    /// Number of scanouts.
    pub fn len(&self) -> usize {
        self.scanouts.len()
    }

    /// Never true (at least one scanout).
    pub fn is_empty(&self) -> bool {
        self.scanouts.is_empty()
    }

    /// `GET_DISPLAY_INFO` entries.
    pub fn info(&self) -> Vec<DisplayOne> {
        self.scanouts
            .iter()
            .map(|s| DisplayOne {
                r: s.mode,
                enabled: true,
            })
            .collect()
    }

    /// A scanout.
    pub fn get(&self, id: ScanoutId) -> Option<&Scanout> {
        self.scanouts.get(usize::try_from(id.0).ok()?)
    }

    /// A scanout, mutably.
    pub fn get_mut(&mut self, id: ScanoutId) -> Option<&mut Scanout> {
        self.scanouts.get_mut(usize::try_from(id.0).ok()?)
    }

    /// Scanouts currently showing `resource_id`.
    pub fn showing(&self, resource_id: u32) -> impl Iterator<Item = ScanoutId> + '_ {
        self.scanouts
            .iter()
            .enumerate()
            .filter(move |(_, s)| resource_id != 0 && s.resource_id == resource_id)
            .filter_map(|(i, _)| u32::try_from(i).ok().map(ScanoutId))
    }

    /// Disables every scanout showing `resource_id` (the resource is going away).
    pub fn forget_resource(&mut self, resource_id: u32) {
        for s in &mut self.scanouts {
            if s.resource_id == resource_id {
                s.resource_id = 0;
            }
            if s.cursor.resource_id == resource_id {
                s.cursor.resource_id = 0;
                s.cursor.image = None;
            }
        }
    }

    /// The last frame of a scanout.
    pub fn frame(&self, id: ScanoutId) -> Result<&Frame, DisplayError> {
        self.get(id)
            .ok_or(DisplayError::NoScanout(id))?
            .frame
            .as_ref()
            .ok_or(DisplayError::NoFrame(id))
    }

    /// Writes a scanout's last frame as a PNG file.
    pub fn write_png(&self, id: ScanoutId, path: &Path) -> Result<(), DisplayError> {
        let frame = self.frame(id)?;
        let io = |source| DisplayError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let mut enc = png::Encoder::new(BufWriter::new(file), frame.width, frame.height);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&frame.rgba)?;
        writer.finish()?;
        Ok(())
    }

    /// The 128-byte EDID for a scanout.
    pub fn edid(&self, id: ScanoutId) -> Option<[u8; 128]> {
        self.get(id).map(|s| edid(s.mode.width, s.mode.height))
    }
}

/// A 128-byte EDID 1.4 base block whose preferred (detailed) timing is
/// `width` × `height` at 60 Hz, with a valid checksum. Sizes above 4095 are clamped
/// (the detailed timing holds 12 bits).
pub fn edid(width: u32, height: u32) -> [u8; 128] {
    let w = width.clamp(1, 4095);
    let h = height.clamp(1, 4095);
    let mut e = [0u8; 128];
    e[0..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "VGP" (5-bit letters, big-endian).
    let id: u16 =
        ((u16::from(b'V' - b'@')) << 10) | ((u16::from(b'G' - b'@')) << 5) | u16::from(b'P' - b'@');
    e[8..10].copy_from_slice(&id.to_be_bytes());
    e[10..12].copy_from_slice(&1u16.to_le_bytes());
    e[16] = 1; // week
    e[17] = 36; // 2026
    e[18] = 1;
    e[19] = 4;
    e[20] = 0xa5; // digital, 8 bpc, DisplayPort
    let w_mm = w.saturating_mul(264) / 1000; // ~96 dpi
    let h_mm = h.saturating_mul(264) / 1000;
    e[21] = u8::try_from(w_mm / 10).unwrap_or(u8::MAX);
    e[22] = u8::try_from(h_mm / 10).unwrap_or(u8::MAX);
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // sRGB, preferred timing in DTD 1
    e[25..35].copy_from_slice(&[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    for i in 0..8 {
        e[38 + i * 2] = 1;
        e[39 + i * 2] = 1;
    }
    // Detailed timing descriptor 1.
    let (hblank, vblank) = (160u32, 30u32);
    let clock_10khz = (w + hblank) * (h + vblank) * 60 / 10_000;
    let lo = |v: u32| (v & 0xff) as u8;
    let hi = |v: u32| ((v >> 8) & 0xf) as u8;
    let d = &mut e[54..72];
    d[0..2].copy_from_slice(
        &u16::try_from(clock_10khz.max(1))
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    d[2] = lo(w);
    d[3] = lo(hblank);
    d[4] = (hi(w) << 4) | hi(hblank);
    d[5] = lo(h);
    d[6] = lo(vblank);
    d[7] = (hi(h) << 4) | hi(vblank);
    d[8] = 48;
    d[9] = 32;
    d[10] = (3 << 4) | 6;
    d[12] = lo(w_mm);
    d[13] = lo(h_mm);
    d[14] = (hi(w_mm) << 4) | hi(h_mm);
    d[17] = 0x18;
    // Display product name.
    let n = &mut e[72..90];
    n[3] = 0xfc;
    n[5..18].copy_from_slice(b"vgpu\n        ");
    // Two dummy descriptors.
    e[93] = 0x10;
    e[111] = 0x10;
    let sum = e[..127].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    e[127] = 0u8.wrapping_sub(sum);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edid_has_header_checksum_and_preferred_mode() {
        let e = edid(1280, 800);
        assert_eq!(&e[0..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!(e.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let w = u32::from(e[56]) | (u32::from(e[58] >> 4) << 8);
        let h = u32::from(e[59]) | (u32::from(e[61] >> 4) << 8);
        assert_eq!((w, h), (1280, 800));
    }

    #[test]
    fn showing_and_forget_track_resources() {
        let mut d = Display::new(2, 640, 480);
        d.get_mut(ScanoutId(1)).expect("exists").resource_id = 7;
        assert_eq!(d.showing(7).collect::<Vec<_>>(), vec![ScanoutId(1)]);
        d.forget_resource(7);
        assert_eq!(d.showing(7).count(), 0);
        assert!(d.get(ScanoutId(2)).is_none());
    }

    #[test]
    fn png_round_trips_a_frame() {
        let mut d = Display::new(1, 2, 1);
        d.get_mut(ScanoutId(0)).expect("exists").frame = Some(Frame {
            width: 2,
            height: 1,
            rgba: vec![1, 2, 3, 255, 4, 5, 6, 255],
        });
        let dir = std::env::temp_dir().join(format!("vgpu-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("f.png");
        d.write_png(ScanoutId(0), &path).expect("png written");
        let dec = png::Decoder::new(File::open(&path).expect("open"));
        let mut reader = dec.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(&buf[..8], &[1, 2, 3, 255, 4, 5, 6, 255]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn frame_of_unknown_scanout_is_an_error() {
        let d = Display::new(1, 2, 1);
        assert!(matches!(
            d.frame(ScanoutId(3)),
            Err(DisplayError::NoScanout(_))
        ));
        assert!(matches!(
            d.frame(ScanoutId(0)),
            Err(DisplayError::NoFrame(_))
        ));
    }
}
