//! Blobs: CREATE_BLOB (guest pages, context memory, or both), MAP_BLOB / UNMAP_BLOB
//! into the host-visible region through a [`ShmMapper`].

use std::collections::BTreeSet;
use std::os::fd::BorrowedFd;

use vm_memory::GuestMemory;

use super::error::{CmdResult, CommandError};
use super::read::RequestReader;
use super::resources::{GpuResource, ResKind};
use super::GpuHandler;
use crate::ids::{BlobId, ContextId, ResourceId};
use crate::virtio_gpu::protocol::{
    BlobMem, CommandType, MapBlob, ResourceCreateBlob, Response, BLOB_FLAG_USE_MAPPABLE,
    MAP_CACHE_CACHED,
};

/// Page size for host-visible mappings.
pub const PAGE_SIZE: u64 = 4096;

/// Maps host memory into the guest's host-visible shared-memory region
/// (vhost-user SHMEM_MAP / SHMEM_UNMAP, or anything else a front door uses).
pub trait ShmMapper: Send + Sync {
    /// Maps `len` bytes of `fd` from `fd_offset` at `shm_offset` in region 1.
    fn map(
        &self,
        shm_offset: u64,
        fd: BorrowedFd<'_>,
        fd_offset: u64,
        len: u64,
        writable: bool,
    ) -> std::result::Result<(), String>;
    /// Unmaps exactly a range mapped before.
    fn unmap(&self, shm_offset: u64, len: u64) -> std::result::Result<(), String>;
}

impl GpuHandler {
    pub(super) fn create_blob<M: GuestMemory>(
        &mut self,
        mem: &M,
        req: &mut dyn RequestReader,
        ctx: ContextId,
        b: ResourceCreateBlob,
        cmd: CommandType,
    ) -> CmdResult<Response> {
        self.check_new_id(b.resource_id)?;
        if b.size == 0 || b.size > self.config.max_blob_size {
            return Err(CommandError::Parameter("blob size out of range"));
        }
        // GUEST: guest pages only; HOST3D: context memory only; HOST3D_GUEST: context
        // memory plus guest pages kept with it, as virglrenderer does (Venus never
        // transfers between them).
        let host_side = matches!(b.blob_mem, BlobMem::Host3d | BlobMem::Host3dGuest);
        let guest_side = matches!(b.blob_mem, BlobMem::Guest | BlobMem::Host3dGuest);
        if host_side && !self.contexts.contains(&ctx) {
            return Err(CommandError::Context(ctx.0));
        }
        let backing = if guest_side {
            if b.nr_entries == 0 {
                return Err(CommandError::Parameter("blob without guest entries"));
            }
            let backing = self.read_backing(mem, req, b.nr_entries, cmd)?;
            if backing.len() < b.size {
                return Err(CommandError::Parameter("blob backing smaller than size"));
            }
            Some(backing)
        } else {
            if b.nr_entries != 0 {
                return Err(CommandError::Parameter("HOST3D blob with guest entries"));
            }
            None
        };
        let host = if host_side {
            let m = self.render.create_blob(
                ctx,
                ResourceId(b.resource_id),
                BlobId(b.blob_id),
                b.size,
            )?;
            Some((ctx, m))
        } else {
            None
        };
        self.resources.insert(
            b.resource_id,
            GpuResource {
                kind: ResKind::Blob {
                    mem: b.blob_mem,
                    flags: b.blob_flags,
                    size: b.size,
                    host,
                    mapped: None,
                },
                backing,
                uuid: None,
                contexts: if b.blob_mem == BlobMem::Guest {
                    BTreeSet::new()
                } else {
                    BTreeSet::from([ctx])
                },
            },
        );
        Ok(Response::OkNodata)
    }

    pub(super) fn map_blob(&mut self, m: MapBlob) -> CmdResult<Response> {
        let shm_size = self.config.shm_size;
        // Existing mappings, to refuse overlaps (the spec forbids mapping over one).
        let taken: Vec<(u64, u64)> = self
            .resources
            .values()
            .filter_map(|r| match &r.kind {
                ResKind::Blob { mapped, .. } => *mapped,
                ResKind::TwoD(_) => None,
            })
            .collect();
        let mapper = self.mapper.clone();
        let res = self
            .resources
            .get_mut(&m.resource_id)
            .ok_or(CommandError::Resource(m.resource_id))?;
        let ResKind::Blob {
            flags,
            size,
            host,
            mapped,
            mem,
        } = &mut res.kind
        else {
            return Err(CommandError::Parameter("not a blob"));
        };
        if *flags & BLOB_FLAG_USE_MAPPABLE == 0 {
            return Err(CommandError::Parameter("blob not MAPPABLE"));
        }
        let Some((_, memory)) = host else {
            return Err(CommandError::Parameter(if *mem == BlobMem::Guest {
                "guest blobs are already in guest memory"
            } else {
                "blob has no host memory"
            }));
        };
        if mapped.is_some() {
            return Err(CommandError::Parameter("blob already mapped"));
        }
        let len = size
            .checked_add(PAGE_SIZE - 1)
            .map(|s| s & !(PAGE_SIZE - 1))
            .ok_or(CommandError::Parameter("size overflows"))?;
        if !m.offset.is_multiple_of(PAGE_SIZE)
            || m.offset.checked_add(len).is_none_or(|end| end > shm_size)
        {
            return Err(CommandError::Parameter(
                "offset outside host-visible region",
            ));
        }
        if taken
            .iter()
            .any(|(o, l)| m.offset < o.saturating_add(*l) && *o < m.offset + len)
        {
            return Err(CommandError::Parameter("mapping overlaps another"));
        }
        let mapper = mapper.ok_or(CommandError::Map("no host-visible region".into()))?;
        mapper
            .map(m.offset, memory.fd(), 0, len, true)
            .map_err(CommandError::Map)?;
        *mapped = Some((m.offset, len));
        Ok(Response::MapInfo(MAP_CACHE_CACHED))
    }

    /// UNMAP_BLOB: undoes a MAP_BLOB.
    pub(super) fn unmap_blob(&mut self, resource_id: u32) -> CmdResult<Response> {
        let res = self
            .resources
            .get_mut(&resource_id)
            .ok_or(CommandError::Resource(resource_id))?;
        let ResKind::Blob { mapped, .. } = &mut res.kind else {
            return Err(CommandError::Parameter("not a blob"));
        };
        let (offset, len) = mapped.ok_or(CommandError::Parameter("blob not mapped"))?;
        let mapper = self
            .mapper
            .as_ref()
            .ok_or(CommandError::Map("no mapper".into()))?;
        mapper.unmap(offset, len).map_err(CommandError::Map)?;
        *mapped = None;
        Ok(Response::OkNodata)
    }
}
