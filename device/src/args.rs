//! Command-line arguments, validated into library configuration.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vgpu_device::vtest::VtestConfig;

/// vhost-user-vgpu: share a host GPU with VMs through Vulkan forwarding (Venus).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Mesa's vtest protocol (version 3) on a unix socket.
    Vtest(Box<VtestArgs>),
    /// Serve a vhost-user virtio-gpu device (crosvm `--vhost-user gpu,socket=PATH`,
    /// QEMU `-device vhost-user-gpu-pci`) on a unix socket.
    Serve(ServeArgs),
    /// Connect to a vtest socket as a demo client: handshake, capset, ring round trip.
    Probe {
        /// Socket path.
        #[arg(long)]
        socket: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct VtestArgs {
    /// Socket path (Mesa reads it from VTEST_SOCKET_NAME).
    #[arg(long)]
    pub socket: PathBuf,
    /// Optional limits file (`key = value` lines; see `vtest::VtestConfig::apply`);
    /// the flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Maximum simultaneous clients [default: 64].
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Maximum connections one process may hold [default: 16].
    #[arg(long)]
    pub max_clients_per_pid: Option<usize>,
    /// Maximum connections one user may hold [default: 64].
    #[arg(long)]
    pub max_clients_per_uid: Option<usize>,
    /// Time from connecting to CONTEXT_INIT before a client is dropped [default: 5000].
    #[arg(long)]
    pub handshake_timeout_ms: Option<u64>,
    /// Time to finish a message once started [default: 10000].
    #[arg(long)]
    pub message_timeout_ms: Option<u64>,
    /// Time a reply may wait for the client to read it [default: 10000].
    #[arg(long)]
    pub reply_timeout_ms: Option<u64>,
    /// Maximum size of one vtest message in MiB [default: 16].
    #[arg(long)]
    pub max_message_mib: Option<usize>,
    /// Maximum shared memory per context in MiB [default: 4096].
    #[arg(long)]
    pub max_shmem_mib: Option<u64>,
    /// Maximum rings per context [default: 64].
    #[arg(long)]
    pub max_rings: Option<usize>,
    /// Cap on a ring's idle timeout (its busy-poll time) in µs [default: 10000].
    #[arg(long)]
    pub max_ring_idle_timeout_us: Option<u64>,
    /// On SIGTERM/SIGINT, how long the orderly stop may take before the daemon exits
    /// anyway, in ms.
    #[arg(long, default_value_t = 5000)]
    pub shutdown_grace_ms: u64,
    /// Where each connection runs: `process` (a sandboxed worker process per
    /// connection) or `thread` (a thread of the daemon) [default: process].
    #[arg(long)]
    pub isolation: Option<String>,
    /// A host fence pending longer than this kills the connection's worker (GPU
    /// hang), in ms [default: 5000].
    #[arg(long)]
    pub gpu_timeout_ms: Option<u64>,
    /// Idle worker processes kept started ahead of clients [default: 1].
    #[arg(long)]
    pub worker_pool: Option<usize>,
    /// Per-VM limits (each vtest connection is one VM).
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Per-VM limits on Venus objects and device memory (override the config file's
/// `memory_mib`, `max_instances`, `max_devices`, `max_objects`).
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Device-memory quota per VM in MiB [default: the largest host heap / 4].
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Vulkan instances one context may hold [default: 8].
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// Vulkan devices one context may hold [default: 8].
    #[arg(long)]
    pub max_devices: Option<u32>,
    /// Vulkan objects (of every type) one context may hold [default: 1000000].
    #[arg(long)]
    pub max_objects: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// vhost-user socket path (the daemon listens; the VMM connects).
    #[arg(long)]
    pub socket: PathBuf,
    /// Optional device settings (`key = value` lines; see `vhost_user::ServeConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit when the first frontend disconnects (default: keep listening and serve
    /// the next frontend, e.g. after a VMM restart, on a fresh device).
    #[arg(long)]
    pub once: bool,
}

impl ServeArgs {
    /// Socket path, for the shutdown handler.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }
}

impl TryFrom<ServeArgs> for vgpu_device::vhost_user::ServeConfig {
    type Error = vgpu_device::vhost_user::ConfigError;

    fn try_from(args: ServeArgs) -> Result<Self, Self::Error> {
        let mut config = Self::new(args.socket);
        if let Some(path) = &args.config {
            config.load(path)?;
        }
        // The flag can only turn single-connection mode on, never off.
        config.once |= args.once;
        Ok(config)
    }
}

/// Invalid arguments.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("socket path {0} has no parent directory")]
    SocketDir(PathBuf),
    #[error("invalid vtest limits")]
    Config(#[from] vgpu_device::vtest::ConfigError),
}

impl TryFrom<VtestArgs> for VtestConfig {
    type Error = ArgsError;

    fn try_from(args: VtestArgs) -> Result<Self, Self::Error> {
        let dir = args.socket.parent().map(|p| {
            if p.as_os_str().is_empty() {
                ".".as_ref()
            } else {
                p
            }
        });
        if !dir.is_some_and(std::path::Path::is_dir) {
            return Err(ArgsError::SocketDir(args.socket));
        }
        let mut config = VtestConfig::new(args.socket.clone());
        // The daemon runs each connection in a worker process unless told otherwise.
        config.isolation = vgpu_device::worker::Isolation::Process;
        if let Some(path) = &args.config {
            config.load(path)?;
        }
        // Flags override the file; each goes through the same validation (errors name
        // "line 0", the command line).
        let flags = [
            ("max_clients", args.max_clients.map(|v| v.to_string())),
            (
                "max_clients_per_pid",
                args.max_clients_per_pid.map(|v| v.to_string()),
            ),
            (
                "max_clients_per_uid",
                args.max_clients_per_uid.map(|v| v.to_string()),
            ),
            (
                "handshake_timeout_ms",
                args.handshake_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "message_timeout_ms",
                args.message_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "reply_timeout_ms",
                args.reply_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "max_message_mib",
                args.max_message_mib.map(|v| v.to_string()),
            ),
            ("max_shmem_mib", args.max_shmem_mib.map(|v| v.to_string())),
            ("max_rings", args.max_rings.map(|v| v.to_string())),
            (
                "max_ring_idle_timeout_us",
                args.max_ring_idle_timeout_us.map(|v| v.to_string()),
            ),
            ("isolation", args.isolation.clone()),
            ("gpu_timeout_ms", args.gpu_timeout_ms.map(|v| v.to_string())),
            ("worker_pool", args.worker_pool.map(|v| v.to_string())),
            ("memory_mib", args.limits.memory_mib.map(|v| v.to_string())),
            (
                "max_instances",
                args.limits.max_instances.map(|v| v.to_string()),
            ),
            (
                "max_devices",
                args.limits.max_devices.map(|v| v.to_string()),
            ),
            (
                "max_objects",
                args.limits.max_objects.map(|v| v.to_string()),
            ),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                config.set(0, key, &value)?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vgpu_device::renderer::venus::VenusLimits;
    use vgpu_device::vhost_user::ServeConfig;

    fn serve_config(argv: &[&str]) -> ServeConfig {
        let args = Args::try_parse_from(argv).expect("valid arguments");
        let Command::Serve(serve) = args.command else {
            unreachable!("a serve command line")
        };
        ServeConfig::try_from(serve).expect("valid config")
    }

    fn vtest_config(argv: &[&str]) -> Result<VtestConfig, ArgsError> {
        let args = Args::try_parse_from(argv).expect("valid arguments");
        let Command::Vtest(vtest) = args.command else {
            unreachable!("a vtest command line")
        };
        VtestConfig::try_from(*vtest)
    }

    #[test]
    fn vtest_limit_flags_override_defaults() {
        let config = vtest_config(&[
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--max-clients-per-pid",
            "3",
            "--reply-timeout-ms",
            "250",
            "--max-rings",
            "4",
        ])
        .expect("valid");
        assert_eq!(config.max_clients_per_pid, 3);
        assert_eq!(config.reply_timeout, std::time::Duration::from_millis(250));
        assert_eq!(config.context.max_rings, 4);
        assert_eq!(config.max_clients, VtestConfig::new("s").max_clients);
    }

    #[test]
    fn vtest_rejects_a_zero_timeout() {
        let err = vtest_config(&[
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--handshake-timeout-ms",
            "0",
        ]);
        assert!(matches!(err, Err(ArgsError::Config(_))));
    }

    #[test]
    fn vtest_limits_default_and_flags() {
        let base = ["vhost-user-vgpu", "vtest", "--socket", "s"];
        let config = vtest_config(&base).expect("defaults");
        assert_eq!(config.venus, VenusLimits::default());
        let mut argv = base.to_vec();
        argv.extend([
            "--memory-mib",
            "64",
            "--max-instances",
            "2",
            "--max-objects",
            "9",
        ]);
        let l = vtest_config(&argv).expect("flags").venus;
        assert_eq!(
            (l.memory_mib, l.max_instances, l.max_objects),
            (Some(64), 2, 9)
        );
        let mut argv = base.to_vec();
        argv.extend(["--max-devices", "0"]);
        assert!(matches!(vtest_config(&argv), Err(ArgsError::Config(_))));
    }

    #[test]
    fn vtest_limit_flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("vgpu-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("vtest.conf");
        std::fs::write(&file, "memory_mib = 32\nmax_devices = 2\nmax_rings = 4\n")
            .expect("config file");
        let path = file.to_str().expect("utf-8 path");
        let config = vtest_config(&[
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--config",
            path,
            "--memory-mib",
            "48",
        ])
        .expect("valid");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(config.venus.memory_mib, Some(48));
        assert_eq!(config.venus.max_devices, 2);
        assert_eq!(config.context.max_rings, 4);
    }

    #[test]
    fn serve_keeps_listening_by_default() {
        let config = serve_config(&["vhost-user-vgpu", "serve", "--socket", "s"]);
        assert!(!config.once);
    }

    #[test]
    fn once_flag_selects_single_connection_mode() {
        let config = serve_config(&["vhost-user-vgpu", "serve", "--socket", "s", "--once"]);
        assert!(config.once);
    }
}
