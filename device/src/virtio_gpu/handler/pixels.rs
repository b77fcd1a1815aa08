//! Pixel conversion: re-reading the part of a scanout that changed into its RGBA
//! frame, from a 2D resource's host copy or a blob's memory.

use vm_memory::GuestMemory;

use super::resources::ResKind;
use super::scanout::ScanoutSource;
use super::GpuHandler;
use crate::virtio_gpu::display::{Frame, ScanoutId};
use crate::virtio_gpu::protocol::{Format, Rect};

impl GpuHandler {
    /// Re-reads the part of scanout `i` that `damage` (resource coordinates) covers;
    /// all of it when `damage` is `None` or the frame is missing or of another size.
    /// A RESOURCE_FLUSH re-reads only its rectangle: a console that flushes one line of
    /// text must not cost a whole-frame conversion per flush (that made each flush
    /// take up to a second on a loaded host, and queued the guest's other requests
    /// behind them).
    pub(super) fn refresh_region<M: GuestMemory>(
        &mut self,
        mem: &M,
        i: usize,
        damage: Option<Rect>,
    ) {
        let id = ScanoutId(u32::try_from(i).unwrap_or(u32::MAX));
        let (Some(sc), Some(Some(src))) = (self.display.get(id), self.sources.get(i)) else {
            return;
        };
        let (rect, res_id, src) = (sc.rect, sc.resource_id, *src);
        let Some(res) = self.resources.get(&res_id) else {
            return;
        };
        let px = |w: u32| usize::try_from(w).unwrap_or(0);
        // The frame to update and the area of it to re-read (frame coordinates).
        let reuse = damage.and_then(|d| {
            let frame = sc.frame.as_ref()?;
            (frame.width == rect.width && frame.height == rect.height)
                .then(|| intersect_in(rect, d))
        });
        let (mut rgba, area) = match reuse {
            Some(None) => return, // the damage is outside what the scanout shows
            Some(Some(area)) => match self.display.get_mut(id).and_then(|sc| sc.frame.take()) {
                Some(f) => (f.rgba, area),
                None => return,
            },
            None => (
                vec![0u8; px(rect.width) * px(rect.height) * 4],
                Rect {
                    x: 0,
                    y: 0,
                    width: rect.width,
                    height: rect.height,
                },
            ),
        };
        // Bounded: the rectangle was checked against the resource or blob at
        // SET_SCANOUT*, the resource exists, and `area` lies inside the rectangle.
        let frame_row = px(rect.width) * 4;
        let (ax, aw) = (px(area.x) * 4, px(area.width) * 4);
        let ok = match (&res.kind, src) {
            (ResKind::TwoD(r), ScanoutSource::Resource2d) => {
                let stride = px(r.width) * 4;
                let mut ok = true;
                for y in px(area.y)..px(area.y) + px(area.height) {
                    let row_start = (px(rect.y) + y) * stride + px(rect.x) * 4 + ax;
                    let out_start = y * frame_row + ax;
                    match (
                        r.pixels.get(row_start..row_start + aw),
                        rgba.get_mut(out_start..out_start + aw),
                    ) {
                        (Some(row), Some(out)) => convert_row(r.format, row, out),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                ok
            }
            (
                ResKind::Blob { host, .. },
                ScanoutSource::Blob {
                    format,
                    stride,
                    offset,
                    ..
                },
            ) => {
                let mut row = vec![0u8; aw];
                let mut ok = true;
                for y in px(area.y)..px(area.y) + px(area.height) {
                    let off = u64::from(offset)
                        + (u64::from(rect.y) + y as u64) * u64::from(stride)
                        + (u64::from(rect.x) + u64::from(area.x)) * 4;
                    let read = match (host, &res.backing) {
                        (Some((_, m)), _) => m.read(off, &mut row),
                        (None, Some(b)) => b.read(mem, off, &mut row).is_ok(),
                        (None, None) => false,
                    };
                    let out_start = y * frame_row + ax;
                    match rgba.get_mut(out_start..out_start + aw) {
                        Some(out) if read => convert_row(format, &row, out),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                ok
            }
            _ => false,
        };
        if !ok {
            self.warn
                .warn(format_args!("virtio-gpu: {id} cannot read res{res_id}"));
            if reuse.is_none() {
                return;
            }
        }
        if let Some(sc) = self.display.get_mut(id) {
            sc.frame = Some(Frame {
                width: rect.width,
                height: rect.height,
                rgba,
            });
        }
    }
}

/// The part of `damage` (resource coordinates) inside `shown` (the scanout's
/// rectangle in the same coordinates), relative to `shown`; `None` if they do not
/// overlap.
fn intersect_in(shown: Rect, damage: Rect) -> Option<Rect> {
    let end = |o: u32, len: u32| u64::from(o) + u64::from(len);
    let x0 = shown.x.max(damage.x);
    let y0 = shown.y.max(damage.y);
    let x1 = end(shown.x, shown.width).min(end(damage.x, damage.width));
    let y1 = end(shown.y, shown.height).min(end(damage.y, damage.height));
    let width = u32::try_from(x1.checked_sub(u64::from(x0))?).ok()?;
    let height = u32::try_from(y1.checked_sub(u64::from(y0))?).ok()?;
    (width > 0 && height > 0).then_some(Rect {
        x: x0 - shown.x,
        y: y0 - shown.y,
        width,
        height,
    })
}

fn convert_row(format: Format, src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(4)) {
        let p = format.to_rgba([s[0], s[1], s[2], s[3]]);
        d.copy_from_slice(&p);
    }
}
