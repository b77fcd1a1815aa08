//! 2D resources: creation within the 2D memory budget, guest backing attached and
//! detached, and TRANSFER_TO_HOST_2D into the host copy.

use std::collections::BTreeSet;

use vm_memory::GuestMemory;

use super::error::{CmdResult, CommandError};
use super::read::RequestReader;
use super::resources::{GpuResource, ResKind, Resource2d};
use super::GpuHandler;
use crate::virtio_gpu::protocol::{
    AttachBacking, CommandType, Format, ResourceCreate2d, Response, TransferToHost2d,
};

impl GpuHandler {
    pub(super) fn create_2d(&mut self, c: ResourceCreate2d) -> CmdResult<Response> {
        self.check_new_id(c.resource_id)?;
        if c.width == 0
            || c.height == 0
            || c.width > self.config.max_2d_dim
            || c.height > self.config.max_2d_dim
        {
            return Err(CommandError::Parameter("2D size out of range"));
        }
        let bytes = u64::from(c.width)
            .checked_mul(u64::from(c.height))
            .and_then(|p| p.checked_mul(u64::from(Format::BYTES_PER_PIXEL)))
            .ok_or(CommandError::Parameter("2D size overflows"))?;
        let total = self
            .bytes_2d
            .checked_add(bytes)
            .filter(|t| *t <= self.config.max_2d_bytes)
            .ok_or(CommandError::OutOfMemory("2D memory budget"))?;
        let len = usize::try_from(bytes).map_err(|_| CommandError::OutOfMemory("2D size"))?;
        self.bytes_2d = total;
        self.resources.insert(
            c.resource_id,
            GpuResource {
                kind: ResKind::TwoD(Resource2d {
                    format: c.format,
                    width: c.width,
                    height: c.height,
                    pixels: vec![0; len],
                }),
                backing: None,
                uuid: None,
                contexts: BTreeSet::new(),
            },
        );
        Ok(Response::OkNodata)
    }

    /// RESOURCE_ATTACH_BACKING: guest pages for a 2D resource that has none.
    pub(super) fn attach_backing<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &mut dyn RequestReader,
        a: AttachBacking,
        cmd: CommandType,
    ) -> CmdResult<Response> {
        let res = self
            .resources
            .get(&a.resource_id)
            .ok_or(CommandError::Resource(a.resource_id))?;
        if res.backing.is_some() {
            return Err(CommandError::Parameter("backing already attached"));
        }
        if !matches!(res.kind, ResKind::TwoD(_)) {
            return Err(CommandError::Parameter("attach backing to a blob"));
        }
        let backing = self.read_backing(mem, req, a.nr_entries, cmd)?;
        if let Some(res) = self.resources.get_mut(&a.resource_id) {
            res.backing = Some(backing);
        }
        Ok(Response::OkNodata)
    }

    /// RESOURCE_DETACH_BACKING.
    pub(super) fn detach_backing(&mut self, resource_id: u32) -> CmdResult<Response> {
        let res = self
            .resources
            .get_mut(&resource_id)
            .ok_or(CommandError::Resource(resource_id))?;
        if !matches!(res.kind, ResKind::TwoD(_)) || res.backing.take().is_none() {
            return Err(CommandError::Parameter("no backing attached"));
        }
        Ok(Response::OkNodata)
    }

    pub(super) fn transfer_to_host_2d<M: GuestMemory>(
        &mut self,
        mem: &M,
        t: TransferToHost2d,
    ) -> CmdResult<Response> {
        let res = self
            .resources
            .get_mut(&t.resource_id)
            .ok_or(CommandError::Resource(t.resource_id))?;
        let ResKind::TwoD(r) = &mut res.kind else {
            return Err(CommandError::Parameter("transfer to a blob"));
        };
        let backing = res
            .backing
            .as_ref()
            .ok_or(CommandError::Parameter("no backing attached"))?;
        if !t.r.fits_in(r.width, r.height) {
            return Err(CommandError::Parameter("rectangle outside resource"));
        }
        if t.r.is_empty() {
            return Ok(Response::OkNodata);
        }
        let bpp = u64::from(Format::BYTES_PER_PIXEL);
        let stride = u64::from(r.width) * bpp;
        let row = usize::try_from(u64::from(t.r.width) * bpp)
            .map_err(|_| CommandError::Parameter("row too long"))?;
        // The whole source range must be inside the backing before anything is copied.
        let last = t
            .offset
            .checked_add(stride * u64::from(t.r.height - 1))
            .and_then(|o| o.checked_add(row as u64))
            .ok_or(CommandError::Parameter("transfer offset overflows"))?;
        if last > backing.len() {
            return Err(CommandError::Parameter("transfer reads past the backing"));
        }
        for h in 0..u64::from(t.r.height) {
            let src = t.offset + stride * h;
            let dst = usize::try_from((u64::from(t.r.y) + h) * stride + u64::from(t.r.x) * bpp)
                .map_err(|_| CommandError::Parameter("offset overflows"))?;
            let out = r
                .pixels
                .get_mut(dst..dst + row)
                .ok_or(CommandError::Parameter("rectangle outside resource"))?;
            backing.read(mem, src, out)?;
        }
        Ok(Response::OkNodata)
    }
}
