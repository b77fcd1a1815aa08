//! The cursor: UPDATE_CURSOR (image captured from a 2D resource) and MOVE_CURSOR.

use super::error::{CmdResult, CommandError};
use super::resources::ResKind;
use super::GpuHandler;
use crate::virtio_gpu::display::{Cursor, CursorImage, ScanoutId};
use crate::virtio_gpu::protocol::{Response, UpdateCursor};

impl GpuHandler {
    /// guest transfers the image before this command and may reuse the resource).
    pub(super) fn update_cursor(&mut self, u: UpdateCursor) -> CmdResult<Response> {
        if u.resource_id != 0 && !self.resources.contains_key(&u.resource_id) {
            return Err(CommandError::Resource(u.resource_id));
        }
        if self.display.get(ScanoutId(u.scanout_id)).is_none() {
            return Err(CommandError::Scanout(u.scanout_id));
        }
        let image = self.cursor_image(u.resource_id);
        // Wrapping: a serial only compared for equality; it outlives resets so a
        // display consumer never mistakes a new image for the one it already has.
        self.cursor_generation = self.cursor_generation.wrapping_add(1);
        let generation = self.cursor_generation;
        let s = self
            .display
            .get_mut(ScanoutId(u.scanout_id))
            .ok_or(CommandError::Scanout(u.scanout_id))?;
        s.cursor = Cursor {
            resource_id: u.resource_id,
            x: u.x,
            y: u.y,
            hot_x: u.hot_x,
            hot_y: u.hot_y,
            image,
            generation,
        };
        Ok(Response::OkNodata)
    }

    /// The 64 × 64 image of cursor resource `id`: `None` for 0 (hidden) and for
    /// blobs, whose pixels the device does not keep (a GUEST blob could be read from
    /// guest memory, but the Linux driver's cursors are 2D resources).
    fn cursor_image(&self, id: u32) -> Option<CursorImage> {
        match &self.resources.get(&id)?.kind {
            ResKind::TwoD(r) => Some(CursorImage::capture(r.format, r.width, r.height, &r.pixels)),
            ResKind::Blob { .. } => {
                log::debug!("virtio-gpu: cursor res{id} is a blob; its image is not forwarded");
                None
            }
        }
    }

    /// MOVE_CURSOR: position only; the image and hot spot stay.
    pub(super) fn move_cursor(&mut self, u: UpdateCursor) -> CmdResult<Response> {
        let s = self
            .display
            .get_mut(ScanoutId(u.scanout_id))
            .ok_or(CommandError::Scanout(u.scanout_id))?;
        s.cursor.x = u.x;
        s.cursor.y = u.y;
        Ok(Response::OkNodata)
    }
}
