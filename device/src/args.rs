//! Command-line arguments, validated into library configuration.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vgpu_device::renderer::venus::VenusLimits;
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
    Vtest(VtestArgs),
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
    /// Maximum simultaneous clients.
    #[arg(long, default_value_t = 64)]
    pub max_clients: usize,
    /// Maximum size of one vtest message in MiB.
    #[arg(long, default_value_t = 16)]
    pub max_message_mib: usize,
    /// Maximum shared memory per context in MiB.
    #[arg(long, default_value_t = 4096)]
    pub max_shmem_mib: u64,
    /// Per-VM limits (each vtest connection is one VM).
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Per-VM limits on Venus objects and device memory.
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Device-memory quota per VM in MiB (default: the largest host heap / 4).
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Vulkan instances one context may hold.
    #[arg(long, default_value_t = vgpu_device::renderer::venus::limits::DEFAULT_MAX_INSTANCES)]
    pub max_instances: u32,
    /// Vulkan devices one context may hold.
    #[arg(long, default_value_t = vgpu_device::renderer::venus::limits::DEFAULT_MAX_DEVICES)]
    pub max_devices: u32,
    /// Vulkan objects (of every type) one context may hold.
    #[arg(long, default_value_t = vgpu_device::renderer::venus::limits::DEFAULT_MAX_OBJECTS)]
    pub max_objects: u32,
}

impl TryFrom<&LimitArgs> for VenusLimits {
    type Error = ArgsError;

    fn try_from(args: &LimitArgs) -> Result<Self, Self::Error> {
        if args.memory_mib.is_some_and(|m| !(1..=1 << 30).contains(&m)) {
            return Err(ArgsError::MemorySize);
        }
        if args.max_instances == 0 || args.max_devices == 0 || args.max_objects == 0 {
            return Err(ArgsError::ZeroLimit);
        }
        Ok(Self {
            max_instances: args.max_instances,
            max_devices: args.max_devices,
            max_objects: args.max_objects,
            memory_mib: args.memory_mib,
        })
    }
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
    #[error("--max-clients must be at least 1")]
    NoClients,
    #[error("--max-message-mib must be 1..=256")]
    MessageSize,
    #[error("--max-shmem-mib must be 1..=1048576")]
    ShmemSize,
    #[error("socket path {0} has no parent directory")]
    SocketDir(PathBuf),
    #[error("--memory-mib must be 1..=1073741824")]
    MemorySize,
    #[error("--max-instances, --max-devices and --max-objects must be at least 1")]
    ZeroLimit,
}

impl TryFrom<VtestArgs> for VtestConfig {
    type Error = ArgsError;

    fn try_from(args: VtestArgs) -> Result<Self, Self::Error> {
        if args.max_clients == 0 {
            return Err(ArgsError::NoClients);
        }
        if !(1..=256).contains(&args.max_message_mib) {
            return Err(ArgsError::MessageSize);
        }
        if !(1..=1 << 20).contains(&args.max_shmem_mib) {
            return Err(ArgsError::ShmemSize);
        }
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
        let mut config = VtestConfig::new(args.socket);
        config.max_clients = args.max_clients;
        config.max_message_bytes = args.max_message_mib << 20;
        let total = args.max_shmem_mib << 20;
        config.context.limits.max_shmem_total = total;
        config.context.limits.max_shmem_size = config.context.limits.max_shmem_size.min(total);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vgpu_device::vhost_user::ServeConfig;

    fn serve_config(argv: &[&str]) -> ServeConfig {
        let args = Args::try_parse_from(argv).expect("valid arguments");
        let Command::Serve(serve) = args.command else {
            unreachable!("a serve command line")
        };
        ServeConfig::try_from(serve).expect("valid config")
    }

    #[test]
    fn vtest_limits_default_and_flags() {
        let parse = |argv: &[&str]| {
            let args = Args::try_parse_from(argv).expect("valid arguments");
            let Command::Vtest(vtest) = args.command else {
                unreachable!("a vtest command line")
            };
            VenusLimits::try_from(&vtest.limits)
        };
        let base = ["vhost-user-vgpu", "vtest", "--socket", "s"];
        assert_eq!(parse(&base).expect("defaults"), VenusLimits::default());
        let mut argv = base.to_vec();
        argv.extend([
            "--memory-mib",
            "64",
            "--max-instances",
            "2",
            "--max-objects",
            "9",
        ]);
        let l = parse(&argv).expect("flags");
        assert_eq!(
            (l.memory_mib, l.max_instances, l.max_objects),
            (Some(64), 2, 9)
        );
        let mut argv = base.to_vec();
        argv.extend(["--max-devices", "0"]);
        assert!(matches!(parse(&argv), Err(ArgsError::ZeroLimit)));
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
