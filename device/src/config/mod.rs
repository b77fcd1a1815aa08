//! The daemon's configuration model: one daemon, many VMs.
//!
//! `vhost-user-vgpu serve --config FILE` (TOML) describes daemon-wide settings and one
//! `[[vm]]` table per VM; every front door (a vhost-user socket, a vtest socket) belongs
//! to exactly one VM, and every per-VM limit, QoS parameter and watchdog deadline hangs
//! off that VM. The single-socket command lines (`serve --socket`, `vtest --socket`) are
//! shorthands for a config with one VM.
//!
//! This module holds only the validated model; parsing lives beside it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use vgpu_scheduler::{Policy, VmConfig};

use crate::renderer::venus::VenusLimits;

/// A VM's name as the config gives it (`[[vm]] name = "..."`): unique in the daemon,
/// 1..=64 characters of `[A-Za-z0-9._-]`, so it is safe in log lines, metric labels
/// and file names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmName(String);

impl VmName {
    /// Longest name accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates a name.
    pub fn new(name: &str) -> Option<Self> {
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Default GPU-hang deadline: a host fence pending longer than this fails the context
/// (and, with worker processes, kills its worker).
pub const DEFAULT_GPU_TIMEOUT: Duration = Duration::from_secs(5);

/// One VM: its front doors, limits, QoS parameters and watchdog deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    /// Its name (logs, metrics, `ctl`).
    pub name: VmName,
    /// The vhost-user socket its VMM connects to, if any.
    pub vhost_user_socket: Option<PathBuf>,
    /// The vtest socket its clients connect to, if any (every connection on it is a
    /// context of this VM).
    pub vtest_socket: Option<PathBuf>,
    /// Venus limits (device-memory quota, instances, devices, objects).
    pub limits: VenusLimits,
    /// QoS parameters (share, cap, burst, latency class); which matter depends on the
    /// daemon's [`DaemonConfig::policy`].
    pub qos: VmConfig,
    /// GPU-hang deadline for this VM's host fences.
    pub gpu_timeout: Duration,
}

/// Daemon-wide settings and the VMs it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The VMs, in config order; names and sockets are unique.
    pub vms: Vec<VmSpec>,
    /// The scheduling policy for the one host GPU.
    pub policy: Policy,
    /// The control socket `vhost-user-vgpu ctl` talks to, if any.
    pub control_socket: Option<PathBuf>,
    /// Where the Prometheus text endpoint listens, if anywhere.
    pub metrics: Option<MetricsListen>,
}

/// Where the Prometheus text endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    /// A local TCP address (`127.0.0.1:9100`); non-loopback addresses are refused.
    Tcp(std::net::SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}
