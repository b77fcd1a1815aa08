//! What `serve` needs for one vhost-user socket (one VM), built from the daemon's
//! config ([`crate::config`]).

use std::path::PathBuf;

use crate::config::VmSpec;
use crate::renderer::venus::VenusLimits;
use crate::virtio_gpu::HandlerConfig;

/// Everything `serve` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// The vhost-user socket to listen on.
    pub socket: PathBuf,
    /// Device settings.
    pub handler: HandlerConfig,
    /// Offer `VIRTIO_GPU_F_VIRGL`. Linux reads capsets, allows CONTEXT_INIT and
    /// EXECBUFFER only with it, so Venus guests need it; virgl resources
    /// (RESOURCE_CREATE_3D, TRANSFER_*_3D) are still refused: no virgl capset exists.
    pub offer_virgl: bool,
    /// Where `SIGUSR1` writes each scanout's last frame as `scanout-<n>.png` (headless
    /// display); `None` leaves the signal alone.
    pub frame_dir: Option<PathBuf>,
    /// Serve one frontend and return when it disconnects, instead of accepting the
    /// next one on a fresh device.
    pub once: bool,
    /// The frontend's VM limits: device-memory quota, instances, devices, objects, fds.
    pub limits: VenusLimits,
    /// Names the VM in log lines.
    pub vm: String,
}

impl ServeConfig {
    /// Defaults for `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            handler: HandlerConfig::default(),
            offer_virgl: true,
            frame_dir: None,
            once: false,
            limits: VenusLimits::default(),
            vm: "vm".to_owned(),
        }
    }

    /// The device of `vm` on `socket`; `limits` is the VM's Venus limits with its fd
    /// limits resolved.
    pub fn for_vm(socket: PathBuf, vm: &VmSpec, limits: VenusLimits, once: bool) -> Self {
        Self {
            socket,
            handler: vm.device.handler.clone(),
            offer_virgl: vm.device.offer_virgl,
            frame_dir: vm.device.frame_dir.clone(),
            once,
            limits,
            vm: vm.name.to_string(),
        }
    }
}
