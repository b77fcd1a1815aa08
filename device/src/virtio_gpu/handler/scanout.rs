//! Scanouts: SET_SCANOUT (2D resources), SET_SCANOUT_BLOB, RESOURCE_FLUSH, and what
//! each scanout shows.

use vm_memory::GuestMemory;

use super::error::{CmdResult, CommandError};
use super::resources::ResKind;
use super::GpuHandler;
use crate::virtio_gpu::display::ScanoutId;
use crate::virtio_gpu::protocol::{
    Format, Rect, ResourceFlush, Response, SetScanout, SetScanoutBlob,
};

#[derive(Clone, Copy, Debug)]
pub(super) enum ScanoutSource {
    Resource2d,
    Blob {
        format: Format,
        stride: u32,
        offset: u32,
    },
}

impl GpuHandler {
    pub(super) fn scanout_index(&self, id: u32) -> CmdResult<usize> {
        usize::try_from(id)
            .ok()
            .filter(|i| *i < self.display.len())
            .ok_or(CommandError::Scanout(id))
    }

    pub(super) fn disable_scanout(&mut self, i: usize) {
        if let Some(s) = self
            .display
            .get_mut(ScanoutId(u32::try_from(i).unwrap_or(u32::MAX)))
        {
            s.resource_id = 0;
            s.frame = None;
        }
        if let Some(src) = self.sources.get_mut(i) {
            *src = None;
        }
    }

    pub(super) fn set_scanout<M: GuestMemory>(
        &mut self,
        mem: &M,
        s: SetScanout,
    ) -> CmdResult<Response> {
        let i = self.scanout_index(s.scanout_id)?;
        if s.resource_id == 0 || s.r.is_empty() {
            self.disable_scanout(i);
            return Ok(Response::OkNodata);
        }
        let res = self
            .resources
            .get(&s.resource_id)
            .ok_or(CommandError::Resource(s.resource_id))?;
        let ResKind::TwoD(r) = &res.kind else {
            return Err(CommandError::Parameter("SET_SCANOUT of a blob"));
        };
        if !s.r.fits_in(r.width, r.height) {
            return Err(CommandError::Parameter(
                "scanout rectangle outside resource",
            ));
        }
        self.show(i, s.resource_id, s.r, ScanoutSource::Resource2d);
        self.refresh(mem, i);
        Ok(Response::OkNodata)
    }

    pub(super) fn set_scanout_blob<M: GuestMemory>(
        &mut self,
        mem: &M,
        s: SetScanoutBlob,
    ) -> CmdResult<Response> {
        let i = self.scanout_index(s.scanout_id)?;
        if s.resource_id == 0 || s.r.is_empty() {
            self.disable_scanout(i);
            return Ok(Response::OkNodata);
        }
        let res = self
            .resources
            .get(&s.resource_id)
            .ok_or(CommandError::Resource(s.resource_id))?;
        let ResKind::Blob { size, .. } = &res.kind else {
            return Err(CommandError::Parameter("SET_SCANOUT_BLOB of a 2D resource"));
        };
        let format = Format::from_u32(s.format).ok_or(CommandError::Parameter("format"))?;
        if s.width == 0 || s.height == 0 || !s.r.fits_in(s.width, s.height) {
            return Err(CommandError::Parameter("scanout rectangle outside surface"));
        }
        let row = u64::from(s.width) * u64::from(Format::BYTES_PER_PIXEL);
        if u64::from(s.strides[0]) < row {
            return Err(CommandError::Parameter("stride below width"));
        }
        let end = u64::from(s.strides[0])
            .checked_mul(u64::from(s.height - 1))
            .and_then(|v| v.checked_add(u64::from(s.offsets[0])))
            .and_then(|v| v.checked_add(row));
        if end.is_none_or(|e| e > *size) {
            return Err(CommandError::Parameter("surface larger than blob"));
        }
        self.show(
            i,
            s.resource_id,
            s.r,
            ScanoutSource::Blob {
                format,
                stride: s.strides[0],
                offset: s.offsets[0],
            },
        );
        self.refresh(mem, i);
        Ok(Response::OkNodata)
    }

    pub(super) fn show(&mut self, i: usize, resource_id: u32, rect: Rect, src: ScanoutSource) {
        if let Some(sc) = self
            .display
            .get_mut(ScanoutId(u32::try_from(i).unwrap_or(u32::MAX)))
        {
            sc.resource_id = resource_id;
            sc.rect = rect;
        }
        if let Some(slot) = self.sources.get_mut(i) {
            *slot = Some(src);
        }
    }

    pub(super) fn flush<M: GuestMemory>(
        &mut self,
        mem: &M,
        f: ResourceFlush,
    ) -> CmdResult<Response> {
        let res = self
            .resources
            .get(&f.resource_id)
            .ok_or(CommandError::Resource(f.resource_id))?;
        let fits = match &res.kind {
            ResKind::TwoD(r) => f.r.fits_in(r.width, r.height),
            ResKind::Blob { .. } => true,
        };
        if !fits {
            return Err(CommandError::Parameter("flush rectangle outside resource"));
        }
        let showing: Vec<ScanoutId> = self.display.showing(f.resource_id).collect();
        for s in showing {
            if let Ok(i) = usize::try_from(s.0) {
                self.refresh_region(mem, i, Some(f.r));
            }
        }
        Ok(Response::OkNodata)
    }

    /// Re-reads a scanout's visible rectangle into its frame.
    pub(super) fn refresh<M: GuestMemory>(&mut self, mem: &M, i: usize) {
        self.refresh_region(mem, i, None);
    }
}
