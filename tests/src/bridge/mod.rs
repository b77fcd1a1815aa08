//! The vtest ⇄ vhost-user bridge (vhost-user-gpu.md §10.2): a test tool that lets the
//! unmodified Mesa Venus ICD drive `vhost-user-vgpu serve` through the whole
//! vhost-user path, with no VM.
//!
//! - [`vtest`]: serves Mesa's vtest protocol v3 and translates each context message
//!   into the virtio-gpu commands a Linux guest kernel would send.
//! - [`frontend`]: plays VMM and guest driver towards the backend: memfd guest memory,
//!   split virtqueues, one control command in flight at a time.
//! - [`shm`]: the VMM's host-visible region: SHMEM_MAP/SHMEM_UNMAP into a `PROT_NONE`
//!   reservation, spec rules enforced.
//! - [`launch`]: starts daemon + bridge processes for the end-to-end tests.
//!
//! Blobs reach Mesa as the fd the backend sent with SHMEM_MAP, passed through
//! unchanged: the device exports one memfd per blob and maps it with `fd_offset` 0,
//! which is exactly what Mesa's vtest client mmaps. Any other shape (a sub-allocated
//! fd, a non-zero offset) makes the bridge drop the client rather than hand Mesa a
//! copy, which would not be coherent.

pub mod frontend;
pub mod launch;
pub mod shm;
pub mod vtest;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use self::vtest::{Bridge, BridgeError, BridgeStats};

/// Connects to the backend at `vhost_socket`, binds `vtest_socket` and serves vtest
/// clients until the process ends. `timeout` bounds each virtio-gpu command.
pub fn run(vhost_socket: &Path, vtest_socket: &Path, timeout: Duration) -> Result<(), BridgeError> {
    let gpu = frontend::GuestDriver::connect(vhost_socket, timeout)?;
    let info = gpu.info();
    log::info!(
        "bridge: connected to {}: features {:#x}, {} capsets, host-visible region {} MiB",
        vhost_socket.display(),
        info.features,
        info.num_capsets,
        info.shm_size >> 20
    );
    let bridge = Arc::new(Bridge::new(gpu)?);
    let _ = std::fs::remove_file(vtest_socket);
    let listener = UnixListener::bind(vtest_socket)?;
    log::info!("bridge: serving vtest on {}", vtest_socket.display());
    bridge.serve(&listener);
    Ok(())
}
