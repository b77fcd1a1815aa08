//! Resources a context can reference: shared memory (blob id 0) mapped into the
//! daemon, and device-memory blobs exported by the executor.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::fds::FdCharge;
use crate::ids::{BlobId, ResourceId};
use crate::sys::{check_sealed, create_memfd, FdError, SharedMemory, ShmError};

/// Errors about resources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// Size zero or above the configured cap.
    #[error("blob size {size} is outside 1..={max}")]
    BadSize {
        /// Requested size.
        size: u64,
        /// Configured cap.
        max: u64,
    },
    /// The context's shared-memory budget would be exceeded.
    #[error("shared-memory budget of {budget} bytes exhausted")]
    Budget {
        /// The budget.
        budget: u64,
    },
    /// The VM holds its limit of blobs (fds).
    #[error("the VM's blob limit (max_blobs = {0}) is reached")]
    FdLimit(u32),
    /// Too many resources in one context.
    #[error("resource limit of {0} reached")]
    TooMany(usize),
    /// The id is already attached.
    #[error("{0} already exists")]
    Duplicate(ResourceId),
    /// The id is not attached.
    #[error("{0} does not exist")]
    Unknown(ResourceId),
    /// Creating the memfd failed.
    #[error("creating shared memory failed")]
    Memfd(#[from] FdError),
    /// An exported blob's fd failed [`check_sealed`]: it could be truncated under a
    /// mapping (SIGBUS), or is not the size it claims.
    #[error("{blob} has an fd that is not safe to share")]
    UnsafeFd {
        /// The blob id.
        blob: BlobId,
        /// Why.
        #[source]
        source: FdError,
    },
    /// Mapping it failed.
    #[error("mapping shared memory failed")]
    Map(#[from] ShmError),
    /// The blob exporter refused.
    #[error("{blob} cannot be exported")]
    Export {
        /// The blob id.
        blob: BlobId,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What backs a resource.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResourceKind {
    /// Anonymous shared memory (blob id 0), mapped into the daemon: rings, reply
    /// streams and command-stream buffers live here.
    Shmem(Arc<SharedMemory>),
    /// Device memory exported by the executor (blob id = `VkDeviceMemory` id). The
    /// renderer core does not map it.
    DeviceMemory(BlobId),
}

/// A resource attached to a context.
#[derive(Debug)]
pub struct Resource {
    size: u64,
    kind: ResourceKind,
    fd: OwnedFd,
    /// The VM's blob-budget slot this resource's fd holds.
    _fd_charge: Option<FdCharge>,
}

impl Resource {
    /// Creates a memfd-backed shared-memory resource of exactly `size` bytes and maps it.
    pub fn new_shmem(size: u64) -> Result<Self, ResourceError> {
        let fd = create_memfd("vgpu-shmem", size)?;
        let map = SharedMemory::map(&fd, size)?;
        Ok(Self {
            size,
            kind: ResourceKind::Shmem(Arc::new(map)),
            fd,
            _fd_charge: None,
        })
    }

    /// Wraps a device-memory blob exported by the executor, after checking its fd
    /// ([`check_sealed`]): it is handed to clients and may be mapped again by an
    /// importer, so it must be sealed against shrinking and hold `size` bytes.
    pub fn new_device_memory(blob: BlobId, size: u64, fd: OwnedFd) -> Result<Self, ResourceError> {
        check_sealed(&fd, size).map_err(|source| ResourceError::UnsafeFd { blob, source })?;
        Ok(Self {
            size,
            kind: ResourceKind::DeviceMemory(blob),
            fd,
            _fd_charge: None,
        })
    }

    /// A blob another process created (a virtio-gpu context in another worker,
    /// shared with CTX_ATTACH_RESOURCE), from its fd: shared memory (`blob` is
    /// [`BlobId::SHMEM`]) is mapped like one of ours, device memory kept for import.
    /// Either way the fd must pass [`check_sealed`] for `size` bytes.
    pub fn import(blob: BlobId, size: u64, fd: OwnedFd) -> Result<Self, ResourceError> {
        if blob != BlobId::SHMEM {
            return Self::new_device_memory(blob, size, fd);
        }
        check_sealed(&fd, size).map_err(|source| ResourceError::UnsafeFd { blob, source })?;
        let map = SharedMemory::map(&fd, size)?;
        Ok(Self {
            size,
            kind: ResourceKind::Shmem(Arc::new(map)),
            fd,
            _fd_charge: None,
        })
    }

    /// Holds `charge` (a slot of the VM's blob budget) for as long as the fd lives.
    #[must_use]
    pub fn with_fd_charge(mut self, charge: Option<FdCharge>) -> Self {
        self._fd_charge = charge;
        self
    }

    /// Size in bytes as the guest requested it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What backs it.
    pub fn kind(&self) -> &ResourceKind {
        &self.kind
    }

    /// The daemon's mapping, for shared-memory resources.
    pub fn shmem(&self) -> Option<&Arc<SharedMemory>> {
        match &self.kind {
            ResourceKind::Shmem(map) => Some(map),
            ResourceKind::DeviceMemory(_) => None,
        }
    }

    /// The backing fd (to send to the guest).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// A device-memory blob handed out by [`crate::renderer::StreamExecutor::export_blob`].
#[derive(Debug)]
pub struct ExportedBlob {
    /// A memfd whose offset 0 is memory offset 0, sealed at least against shrinking
    /// ([`crate::sys::check_sealed`]; [`Resource::new_device_memory`] refuses others).
    pub fd: OwnedFd,
    /// Its size in bytes.
    pub size: u64,
}

/// Limits on a context's resources (all guest-controlled sizes are checked against
/// these before anything is allocated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Largest single shared-memory blob.
    pub max_shmem_size: u64,
    /// Total shared memory per context.
    pub max_shmem_total: u64,
    /// Resources per context.
    pub max_resources: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_shmem_size: 1 << 30,
            max_shmem_total: 4 << 30,
            max_resources: 65536,
        }
    }
}

/// A context's resources by id. Shared by the context thread (attach/detach) and ring
/// threads (lookups) behind one `RwLock` in the context; never nested with another
/// lock.
#[derive(Debug, Default)]
pub(crate) struct ResourceTable {
    map: HashMap<ResourceId, Arc<Resource>>,
    shmem_total: u64,
}

impl ResourceTable {
    pub(crate) fn check_new_shmem(
        &self,
        size: u64,
        limits: &ResourceLimits,
    ) -> Result<(), ResourceError> {
        if size == 0 || size > limits.max_shmem_size {
            return Err(ResourceError::BadSize {
                size,
                max: limits.max_shmem_size,
            });
        }
        if self.map.len() >= limits.max_resources {
            return Err(ResourceError::TooMany(limits.max_resources));
        }
        match self.shmem_total.checked_add(size) {
            Some(total) if total <= limits.max_shmem_total => Ok(()),
            _ => Err(ResourceError::Budget {
                budget: limits.max_shmem_total,
            }),
        }
    }

    pub(crate) fn insert(
        &mut self,
        id: ResourceId,
        res: Resource,
        limits: &ResourceLimits,
    ) -> Result<Arc<Resource>, ResourceError> {
        if self.map.contains_key(&id) {
            return Err(ResourceError::Duplicate(id));
        }
        let res = Arc::new(res);
        self.admit(id, Arc::clone(&res), limits)?;
        Ok(res)
    }

    /// Checks the limits for one more resource, accounts it and stores it.
    fn admit(
        &mut self,
        id: ResourceId,
        res: Arc<Resource>,
        limits: &ResourceLimits,
    ) -> Result<(), ResourceError> {
        if self.map.len() >= limits.max_resources {
            return Err(ResourceError::TooMany(limits.max_resources));
        }
        if res.shmem().is_some() {
            self.check_new_shmem(res.size, limits)?;
            self.shmem_total += res.size;
        }
        self.map.insert(id, res);
        Ok(())
    }

    /// Adds a resource another table already holds (shared blobs); it counts against
    /// this table's limits as if it were its own.
    pub(crate) fn attach(
        &mut self,
        id: ResourceId,
        res: Arc<Resource>,
        limits: &ResourceLimits,
    ) -> Result<(), ResourceError> {
        if let Some(have) = self.map.get(&id) {
            if Arc::ptr_eq(have, &res) {
                return Ok(());
            }
            return Err(ResourceError::Duplicate(id));
        }
        self.admit(id, res, limits)
    }

    pub(crate) fn remove(&mut self, id: ResourceId) -> Result<Arc<Resource>, ResourceError> {
        let res = self.map.remove(&id).ok_or(ResourceError::Unknown(id))?;
        if res.shmem().is_some() {
            self.shmem_total = self.shmem_total.saturating_sub(res.size);
        }
        Ok(res)
    }

    pub(crate) fn get(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.map.get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
