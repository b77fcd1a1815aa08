//! The daemon's configuration model: one daemon, many VMs.
//!
//! `vhost-user-vgpu serve --config FILE` (TOML) describes daemon-wide settings and one
//! `[[vm]]` table per VM; every front door (a vhost-user socket, a vtest socket) belongs
//! to exactly one VM, and every per-VM limit, QoS parameter and watchdog deadline hangs
//! off that VM. The single-socket command lines (`serve --socket`, `vtest --socket`) are
//! shorthands for a config with one VM.
//!
//! This module holds the validated model; [`file`](mod@file) parses the TOML file into it.

pub mod file;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use vgpu_scheduler::{Policy, VmConfig};

pub use file::{apply_flags, load, parse, ConfigError, Flags};

use crate::renderer::fds::FdLimits;
use crate::renderer::venus::VenusLimits;
use crate::renderer::ContextConfig;
use crate::virtio_gpu::HandlerConfig;
use crate::worker::{Isolation, WorkerSettings};

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

    /// The name of the one VM of a single-socket command line.
    pub fn default_name() -> Self {
        Self("vm".to_owned())
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

/// Default GPU-hang deadline: work on a host queue running longer than this (its fence
/// pending since the one before it on the queue signalled) fails the context (and,
/// with worker processes, kills its worker).
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
    /// Per-context limits of this VM's contexts (rings, ring idle clamp, shared
    /// memory).
    pub context: ContextConfig,
    /// Configured fd limits; unset ones are derived from the daemon's
    /// `RLIMIT_NOFILE` at start-up ([`FdOverrides::resolve`]).
    pub fds: FdOverrides,
    /// vhost-user device settings (ignored for a VM without a vhost-user socket).
    pub device: DeviceSettings,
}

impl VmSpec {
    /// A VM named `name` with no sockets and every default.
    pub fn new(name: VmName) -> Self {
        Self {
            name,
            vhost_user_socket: None,
            vtest_socket: None,
            limits: VenusLimits::default(),
            qos: file::default_qos(),
            gpu_timeout: DEFAULT_GPU_TIMEOUT,
            context: ContextConfig::default(),
            fds: FdOverrides::default(),
            device: DeviceSettings::default(),
        }
    }

    /// The VM's Venus limits with its fd limits resolved against `derived`.
    pub fn venus_limits(&self, derived: FdLimits) -> VenusLimits {
        VenusLimits {
            fds: self.fds.resolve(derived),
            ..self.limits
        }
    }
}

/// fd limits as configured (`max_blobs`, `max_sync_waits`); `None`: derived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdOverrides {
    /// Blobs (fds backing the VM's memory) held at once.
    pub max_blobs: Option<u32>,
    /// Sync waits pending at once.
    pub max_sync_waits: Option<u32>,
}

impl FdOverrides {
    /// Configured values where set, `derived` elsewhere.
    pub fn resolve(self, derived: FdLimits) -> FdLimits {
        FdLimits {
            max_blobs: self.max_blobs.unwrap_or(derived.max_blobs),
            max_sync_waits: self.max_sync_waits.unwrap_or(derived.max_sync_waits),
        }
    }
}

/// The vhost-user device a VM's VMM sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSettings {
    /// Scanouts, preferred mode, host-visible region and request limits.
    pub handler: HandlerConfig,
    /// Offer `VIRTIO_GPU_F_VIRGL` (Linux gates capsets and contexts on it).
    pub offer_virgl: bool,
    /// Where `SIGUSR1` writes each scanout's last frame.
    pub frame_dir: Option<PathBuf>,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            handler: HandlerConfig::default(),
            offer_virgl: true,
            frame_dir: None,
        }
    }
}

/// Settings of every vtest socket of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtestSettings {
    /// Simultaneous clients per socket.
    pub max_clients: usize,
    /// Connections one process (peer pid) may hold per socket.
    pub max_clients_per_pid: usize,
    /// Connections one user (peer uid) may hold per socket.
    pub max_clients_per_uid: usize,
    /// Sync objects (and pending sync waits) per connection.
    pub max_syncs: usize,
    /// Time from connecting to CONTEXT_INIT.
    pub handshake_timeout: Duration,
    /// Time to finish a message once started.
    pub message_timeout: Duration,
    /// Time a reply may wait for the client to read it.
    pub reply_timeout: Duration,
    /// Largest vtest message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for VtestSettings {
    fn default() -> Self {
        let v = crate::vtest::VtestConfig::new(PathBuf::new());
        Self {
            max_clients: v.max_clients,
            max_clients_per_pid: v.max_clients_per_pid,
            max_clients_per_uid: v.max_clients_per_uid,
            max_syncs: v.max_syncs,
            handshake_timeout: v.handshake_timeout,
            message_timeout: v.message_timeout,
            reply_timeout: v.reply_timeout,
            max_message_bytes: v.max_message_bytes,
        }
    }
}

/// The `[worker]` table: where vtest connections run and how worker processes are
/// set up (daemon-wide; each VM's `gpu_timeout_ms` is its workers' watchdog).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// `isolation`: each vtest connection in a sandboxed worker process
    /// (`process`, the default) or on a thread of the daemon (`thread`).
    pub isolation: Isolation,
    /// `sandbox`: seccomp, no_new_privs and `RLIMIT_NOFILE` in workers.
    pub sandbox: bool,
    /// `pool`: idle workers kept started ahead of clients, per vtest socket.
    pub pool: usize,
    /// `max_open_files`: `RLIMIT_NOFILE` inside a worker.
    pub max_open_files: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let w = WorkerSettings::default();
        Self {
            isolation: Isolation::Process,
            sandbox: w.sandbox,
            pool: w.pool,
            max_open_files: w.max_open_files,
        }
    }
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
    /// Settings of every vtest socket.
    pub vtest: VtestSettings,
    /// Worker-process settings (`[worker]`).
    pub worker: WorkerConfig,
    /// On SIGTERM/SIGINT, how long the orderly stop may take before the daemon
    /// exits anyway.
    pub shutdown_grace: Duration,
    /// The `[defaults]` table applied to a VM with every default: the start of each
    /// `[[vm]]`, and the VM of the single-socket command lines.
    pub template: VmSpec,
}

/// Default [`DaemonConfig::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            vms: Vec::new(),
            policy: Policy::default(),
            control_socket: None,
            metrics: None,
            vtest: VtestSettings::default(),
            worker: WorkerConfig::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            template: VmSpec::new(VmName::default_name()),
        }
    }
}

/// Which front door a `--socket` shorthand serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontDoor {
    /// `vtest --socket`.
    Vtest,
    /// `serve --socket`.
    VhostUser,
}

impl DaemonConfig {
    /// The single-socket command lines: adds the one VM (named `vm`, with the file's
    /// `[defaults]`) serving `socket`. The file may not list VMs then.
    pub fn add_socket_vm(&mut self, socket: PathBuf, door: FrontDoor) -> Result<(), ConfigError> {
        if !self.vms.is_empty() {
            return Err(ConfigError::Usage(
                "--socket serves one VM; the config file may not list [[vm]] tables then",
            ));
        }
        let mut vm = self.template.clone();
        vm.name = VmName::default_name();
        match door {
            FrontDoor::Vtest => vm.vtest_socket = Some(socket),
            FrontDoor::VhostUser => vm.vhost_user_socket = Some(socket),
        }
        self.vms.push(vm);
        Ok(())
    }

    /// Every VM socket the daemon listens on (vhost-user and vtest).
    pub fn vm_sockets(&self) -> Vec<PathBuf> {
        self.vms
            .iter()
            .flat_map(|vm| {
                [vm.vhost_user_socket.clone(), vm.vtest_socket.clone()]
                    .into_iter()
                    .flatten()
            })
            .collect()
    }
}

/// Where the Prometheus text endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    /// A local TCP address (`127.0.0.1:9100`); non-loopback addresses are refused.
    Tcp(std::net::SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fd_limits_take_the_derived_ones() {
        let mut vm = VmSpec::new(VmName::default_name());
        vm.fds.max_blobs = Some(10);
        let derived = FdLimits {
            max_blobs: 100,
            max_sync_waits: 30,
        };
        let l = vm.venus_limits(derived);
        assert_eq!((l.fds.max_blobs, l.fds.max_sync_waits), (10, 30));
    }

    #[test]
    fn a_socket_shorthand_adds_one_vm_from_the_defaults() {
        let mut config = parse("[defaults]\nmemory_mib = 32\n", "c").expect("valid");
        config
            .add_socket_vm(PathBuf::from("/tmp/s"), FrontDoor::VhostUser)
            .expect("one VM");
        let vm = &config.vms[0];
        assert_eq!(vm.name.as_str(), "vm");
        assert_eq!(vm.limits.memory_mib, Some(32));
        assert_eq!(vm.vhost_user_socket.as_deref(), Some("/tmp/s".as_ref()));
        assert_eq!(config.vm_sockets(), vec![PathBuf::from("/tmp/s")]);
        assert!(matches!(
            config.add_socket_vm(PathBuf::from("/tmp/t"), FrontDoor::Vtest),
            Err(ConfigError::Usage(_))
        ));
    }

    #[test]
    fn vm_names_are_short_and_plain() {
        assert!(VmName::new("web-1.prod_a").is_some());
        assert!(VmName::new("").is_none());
        assert!(VmName::new("a b").is_none());
        assert!(VmName::new(&"x".repeat(VmName::MAX_LEN + 1)).is_none());
    }
}
