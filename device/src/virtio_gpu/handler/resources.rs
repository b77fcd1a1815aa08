//! Resources of every kind: the resource table's entries, new-id checks, UNREF,
//! ASSIGN_UUID, and guest backing read from ATTACH_BACKING / CREATE_BLOB entries.

use std::collections::BTreeSet;
use std::sync::Arc;

use vm_memory::GuestMemory;

use super::error::{CmdResult, CommandError};
use super::read::{read_exact, RequestReader};
use super::GpuHandler;
use crate::ids::{ContextId, ResourceId};
use crate::virtio_gpu::backing::Backing;
use crate::virtio_gpu::display::ScanoutId;
use crate::virtio_gpu::protocol::{
    BlobMem, CommandType, Format, MemEntry, Response, MEM_ENTRY_SIZE,
};
use crate::virtio_gpu::render::BlobMemory;

#[derive(Debug)]
pub(super) struct Resource2d {
    pub(super) format: Format,
    pub(super) width: u32,
    pub(super) height: u32,
    /// Host copy, `width * height * 4` bytes (bounded by `max_2d_bytes`).
    pub(super) pixels: Vec<u8>,
}

#[derive(Debug)]
pub(super) enum ResKind {
    TwoD(Resource2d),
    Blob {
        mem: BlobMem,
        flags: u32,
        size: u64,
        /// HOST3D memory and the context that created it.
        host: Option<(ContextId, Arc<dyn BlobMemory>)>,
        /// Mapped at this offset of region 1, with this length.
        mapped: Option<(u64, u64)>,
    },
}

#[derive(Debug)]
pub(super) struct GpuResource {
    pub(super) kind: ResKind,
    pub(super) backing: Option<Backing>,
    pub(super) uuid: Option<[u8; 16]>,
    pub(super) contexts: BTreeSet<ContextId>,
}

impl GpuHandler {
    pub(super) fn read_backing<M: GuestMemory>(
        &self,
        mem: &M,
        req: &mut dyn RequestReader,
        nr_entries: u32,
        cmd: CommandType,
    ) -> CmdResult<Backing> {
        if nr_entries > self.config.max_backing_entries {
            return Err(CommandError::Parameter(
                "nr_entries above max_backing_entries",
            ));
        }
        let n = usize::try_from(nr_entries)
            .ok()
            .and_then(|n| n.checked_mul(MEM_ENTRY_SIZE))
            .ok_or(CommandError::Parameter("nr_entries overflows"))?;
        // Bounded by the bytes present (read_exact checks before allocating).
        let raw = read_exact(req, n, cmd)?;
        let entries: Vec<MemEntry> = raw
            .chunks_exact(MEM_ENTRY_SIZE)
            .filter_map(|c| <&[u8; MEM_ENTRY_SIZE]>::try_from(c).ok())
            .map(MemEntry::parse)
            .collect();
        Ok(Backing::new(mem, &entries)?)
    }

    pub(super) fn check_new_id(&self, id: u32) -> CmdResult<()> {
        if id == 0 || self.resources.contains_key(&id) {
            return Err(CommandError::Resource(id));
        }
        if self.resources.len() >= self.config.max_resources {
            return Err(CommandError::OutOfMemory("resource limit"));
        }
        Ok(())
    }

    pub(super) fn unref(&mut self, id: u32) {
        let Some(res) = self.resources.remove(&id) else {
            return;
        };
        self.display.forget_resource(id);
        for (i, src) in self.sources.iter_mut().enumerate() {
            if self
                .display
                .get(ScanoutId(u32::try_from(i).unwrap_or(u32::MAX)))
                .is_some_and(|s| s.resource_id == 0)
            {
                *src = None;
            }
        }
        match res.kind {
            ResKind::TwoD(r) => {
                self.bytes_2d = self.bytes_2d.saturating_sub(r.pixels.len() as u64);
            }
            ResKind::Blob { host, mapped, .. } => {
                if let (Some((offset, len)), Some(m)) = (mapped, &self.mapper) {
                    if let Err(e) = m.unmap(offset, len) {
                        log::debug!("virtio-gpu: unmapping res{id} on unref failed: {e}");
                    }
                }
                if let Some((owner, _)) = host {
                    for &ctx in res.contexts.iter().filter(|&&c| c != owner) {
                        self.render.detach_blob(ResourceId(id), ctx);
                    }
                    self.render.destroy_blob(owner, ResourceId(id));
                }
            }
        }
    }

    /// ASSIGN_UUID: a version-4 UUID from the device's seed and the resource id,
    /// the same for every request on the resource.
    pub(super) fn assign_uuid(&mut self, resource_id: u32) -> CmdResult<Response> {
        let seed = self.uuid_seed;
        let res = self
            .resources
            .get_mut(&resource_id)
            .ok_or(CommandError::Resource(resource_id))?;
        let uuid = *res.uuid.get_or_insert_with(|| {
            let mut u = [0u8; 16];
            u[..8].copy_from_slice(&seed.to_le_bytes());
            u[8..12].copy_from_slice(&resource_id.to_le_bytes());
            u[6] = (u[6] & 0x0f) | 0x40;
            u[8] = (u[8] & 0x3f) | 0x80;
            u
        });
        Ok(Response::ResourceUuid(uuid))
    }
}
