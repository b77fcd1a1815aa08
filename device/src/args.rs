//! Command-line arguments, validated into the daemon's configuration.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use vgpu_device::config::{self, ConfigError, DaemonConfig, Flags, FrontDoor};
use vgpu_device::daemon::Options;

/// vhost-user-vgpu: share a host GPU with VMs through Vulkan forwarding (Venus).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Mesa's vtest protocol (version 3) on a unix socket (`--socket`), or every
    /// VM of a config file (`--config`).
    Vtest(Box<VtestArgs>),
    /// Serve a vhost-user virtio-gpu device (crosvm `--vhost-user gpu,socket=PATH`,
    /// QEMU `-device vhost-user-gpu-pci`) on a unix socket (`--socket`), or every VM of
    /// a config file (`--config`).
    Serve(Box<ServeArgs>),
    /// Talk to a running daemon's control socket: `list`, `set VM share=PCT
    /// [cap=PCT|none]`, `policy NAME`, `metrics`.
    Ctl {
        /// Control socket path (the daemon's `--control-socket`).
        #[arg(long)]
        socket: PathBuf,
        /// The request words.
        #[arg(required = true, num_args = 1..)]
        request: Vec<String>,
    },
    /// Connect to a vtest socket as a demo client: handshake, capset, ring round trip.
    Probe {
        /// Socket path.
        #[arg(long)]
        socket: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct VtestArgs {
    /// Socket path (Mesa reads it from VTEST_SOCKET_NAME): one socket, each connection
    /// a VM of its own. Without it, `--config` must list the VMs.
    #[arg(long, required_unless_present = "config")]
    pub socket: Option<PathBuf>,
    /// TOML config file (docs/config.example.toml). With `--socket` it may not list
    /// VMs: its `[vtest]` and `[defaults]` apply to the socket. The flags below
    /// override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Maximum simultaneous clients [default: 64].
    #[arg(long)]
    pub max_clients: Option<u64>,
    /// Maximum connections one process may hold [default: 16].
    #[arg(long)]
    pub max_clients_per_pid: Option<u64>,
    /// Maximum connections one user may hold [default: 64].
    #[arg(long)]
    pub max_clients_per_uid: Option<u64>,
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
    pub max_message_mib: Option<u64>,
    /// Maximum shared memory per context in MiB [default: 4096].
    #[arg(long)]
    pub max_shmem_mib: Option<u64>,
    /// Maximum rings per context [default: 64].
    #[arg(long)]
    pub max_rings: Option<u64>,
    /// Cap on a ring's idle timeout (its busy-poll time) in µs [default: 10000].
    #[arg(long)]
    pub max_ring_idle_timeout_us: Option<u64>,
    /// On SIGTERM/SIGINT, how long the orderly stop may take before the daemon exits
    /// anyway, in ms [default: 5000].
    #[arg(long)]
    pub shutdown_grace_ms: Option<u64>,
    /// Worker processes and the GPU-hang deadline.
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Per-VM limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// QoS scheduling of host submissions.
    #[command(flatten)]
    pub qos: QosArgs,
}

/// Where contexts run and when a GPU hang is declared (override the config's
/// `[worker]` keys and the per-VM `gpu_timeout_ms`).
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Where each vtest connection or virtio-gpu context runs: `process` (a sandboxed
    /// worker process of its own) or `thread` (a thread of the daemon)
    /// [default: process]; the config file's `[worker] isolation`.
    #[arg(long)]
    pub isolation: Option<vgpu_device::worker::Isolation>,
    /// Work on a host queue running longer than this is a GPU hang (the context's worker is
    /// killed, or an in-daemon context failed), in ms [default: 5000]; the per-VM
    /// `gpu_timeout_ms`.
    #[arg(long)]
    pub gpu_timeout_ms: Option<u64>,
    /// Idle worker processes kept started ahead of clients [default: 1]; the config
    /// file's `[worker] pool`.
    #[arg(long)]
    pub worker_pool: Option<u64>,
}

/// QoS: the arbiter's policy, the control socket and the metrics endpoint (override
/// the config's `policy`, `control_socket`, `metrics`).
#[derive(Debug, clap::Args)]
pub struct QosArgs {
    /// Scheduling policy for host submissions: best-effort (no gate, today's
    /// behaviour), equal-share, fixed-share or burst [default: best-effort].
    #[arg(long)]
    pub qos_policy: Option<String>,
    /// Unix socket for `vhost-user-vgpu ctl` (list VMs, change shares and the policy).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Prometheus endpoint: a loopback `IP:PORT`, `unix:PATH` or a unix socket path.
    #[arg(long)]
    pub metrics: Option<String>,
}

impl QosArgs {
    /// Overrides the config's daemon-wide QoS keys.
    fn apply(&self, config: &mut DaemonConfig) -> Result<(), ArgsError> {
        if let Some(p) = &self.qos_policy {
            config.policy = vgpu_device::qos::parse_policy(p)?;
        }
        if let Some(c) = &self.control_socket {
            config.control_socket = Some(c.clone());
        }
        if let Some(m) = &self.metrics {
            config.metrics = Some(vgpu_device::qos::parse_metrics_listen(m)?);
        }
        Ok(())
    }
}

/// Per-VM limits on Venus objects, device memory and fds (override the config's).
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Device-memory quota per VM in MiB [default: the largest host heap / 4].
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Vulkan instances one context may hold [default: 8].
    #[arg(long)]
    pub max_instances: Option<u64>,
    /// Vulkan devices one context may hold [default: 8].
    #[arg(long)]
    pub max_devices: Option<u64>,
    /// Vulkan objects (of every type) one context may hold [default: 1000000].
    #[arg(long)]
    pub max_objects: Option<u64>,
    /// Blobs (fds backing memory) one VM may hold [default: derived from
    /// RLIMIT_NOFILE].
    #[arg(long)]
    pub max_blobs: Option<u64>,
    /// Pending sync waits one VM may hold [default: derived from RLIMIT_NOFILE].
    #[arg(long)]
    pub max_sync_waits: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// vhost-user socket path (the daemon listens; the VMM connects): one VM. Without
    /// it, `--config` must list the VMs.
    #[arg(long, required_unless_present = "config")]
    pub socket: Option<PathBuf>,
    /// TOML config file (docs/config.example.toml). With `--socket` it may not list
    /// VMs: its `[defaults]` apply to the socket's VM.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit when the first frontend disconnects (default: keep listening and serve
    /// the next frontend, e.g. after a VMM restart, on a fresh device).
    #[arg(long)]
    pub once: bool,
    /// Worker processes and the GPU-hang deadline.
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Per-VM limits.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// QoS scheduling of host submissions.
    #[command(flatten)]
    pub qos: QosArgs,
}

/// Invalid arguments.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("socket path {0} has no parent directory")]
    SocketDir(PathBuf),
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("invalid QoS option")]
    Qos(#[from] vgpu_device::qos::QosError),
}

/// The config the command line describes, and how to serve it.
#[derive(Debug)]
pub struct Plan {
    pub config: DaemonConfig,
    pub options: Options,
}

fn load(path: Option<&Path>) -> Result<DaemonConfig, ArgsError> {
    Ok(match path {
        Some(p) => config::load(p)?,
        None => DaemonConfig::default(),
    })
}

impl LimitArgs {
    fn flags(&self) -> Flags {
        Flags {
            memory_mib: self.memory_mib,
            max_instances: self.max_instances,
            max_devices: self.max_devices,
            max_objects: self.max_objects,
            max_blobs: self.max_blobs,
            max_sync_waits: self.max_sync_waits,
            ..Flags::default()
        }
    }
}

impl TryFrom<VtestArgs> for Plan {
    type Error = ArgsError;

    fn try_from(args: VtestArgs) -> Result<Self, Self::Error> {
        if let Some(socket) = &args.socket {
            let dir = socket.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    ".".as_ref()
                } else {
                    p
                }
            });
            if !dir.is_some_and(Path::is_dir) {
                return Err(ArgsError::SocketDir(socket.clone()));
            }
        }
        let mut config = load(args.config.as_deref())?;
        if let Some(socket) = &args.socket {
            config.add_socket_vm(socket.clone(), FrontDoor::Vtest)?;
        }
        let flags = Flags {
            max_clients: args.max_clients,
            max_clients_per_pid: args.max_clients_per_pid,
            max_clients_per_uid: args.max_clients_per_uid,
            handshake_timeout_ms: args.handshake_timeout_ms,
            message_timeout_ms: args.message_timeout_ms,
            reply_timeout_ms: args.reply_timeout_ms,
            max_message_mib: args.max_message_mib,
            shutdown_grace_ms: args.shutdown_grace_ms,
            max_shmem_mib: args.max_shmem_mib,
            max_rings: args.max_rings,
            max_ring_idle_timeout_us: args.max_ring_idle_timeout_us,
            gpu_timeout_ms: args.worker.gpu_timeout_ms,
            isolation: args.worker.isolation,
            worker_pool: args.worker.worker_pool,
            ..args.limits.flags()
        };
        config::apply_flags(&mut config, &flags)?;
        args.qos.apply(&mut config)?;
        Ok(Self {
            config,
            options: Options {
                vm_per_connection: args.socket.is_some(),
                once: false,
            },
        })
    }
}

impl TryFrom<ServeArgs> for Plan {
    type Error = ArgsError;

    fn try_from(args: ServeArgs) -> Result<Self, Self::Error> {
        let mut config = load(args.config.as_deref())?;
        if let Some(socket) = args.socket {
            config.add_socket_vm(socket, FrontDoor::VhostUser)?;
        }
        let flags = Flags {
            gpu_timeout_ms: args.worker.gpu_timeout_ms,
            isolation: args.worker.isolation,
            worker_pool: args.worker.worker_pool,
            ..args.limits.flags()
        };
        config::apply_flags(&mut config, &flags)?;
        args.qos.apply(&mut config)?;
        Ok(Self {
            config,
            options: Options {
                vm_per_connection: false,
                once: args.once,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan(argv: &[&str]) -> Result<Plan, ArgsError> {
        let args = Args::try_parse_from(argv).expect("valid arguments");
        match args.command {
            Command::Vtest(v) => Plan::try_from(*v),
            Command::Serve(s) => Plan::try_from(*s),
            Command::Probe { .. } | Command::Ctl { .. } => {
                unreachable!("not a daemon command line")
            }
        }
    }

    fn temp_config(tag: &str, text: &str) -> PathBuf {
        let file =
            std::env::temp_dir().join(format!("vgpu-args-{}-{tag}.toml", std::process::id()));
        std::fs::write(&file, text).expect("config file");
        file
    }

    #[test]
    fn vtest_limit_flags_override_defaults() {
        let p = plan(&[
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
        let c = &p.config;
        assert_eq!(c.vtest.max_clients_per_pid, 3);
        assert_eq!(c.vtest.reply_timeout, Duration::from_millis(250));
        assert_eq!(c.vms[0].context.max_rings, 4);
        assert_eq!(c.vms[0].vtest_socket.as_deref(), Some(Path::new("s")));
        assert!(p.options.vm_per_connection);
    }

    #[test]
    fn worker_flags_set_isolation_pool_and_the_vm_gpu_timeout() {
        let p = plan(&["vhost-user-vgpu", "vtest", "--socket", "s"]).expect("valid");
        assert_eq!(
            p.config.worker.isolation,
            vgpu_device::worker::Isolation::Process
        );
        let p = plan(&[
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--isolation",
            "thread",
            "--gpu-timeout-ms",
            "750",
            "--worker-pool",
            "0",
        ])
        .expect("valid");
        assert_eq!(
            p.config.worker.isolation,
            vgpu_device::worker::Isolation::Thread
        );
        assert_eq!(p.config.worker.pool, 0);
        assert_eq!(p.config.vms[0].gpu_timeout, Duration::from_millis(750));
        // The same flags on `serve` (virtio-gpu contexts run in workers too).
        let p = plan(&[
            "vhost-user-vgpu",
            "serve",
            "--socket",
            "s",
            "--isolation",
            "thread",
            "--gpu-timeout-ms",
            "900",
            "--worker-pool",
            "2",
        ])
        .expect("valid");
        assert_eq!(
            p.config.worker.isolation,
            vgpu_device::worker::Isolation::Thread
        );
        assert_eq!(p.config.worker.pool, 2);
        assert_eq!(p.config.vms[0].gpu_timeout, Duration::from_millis(900));
        let e = Args::try_parse_from([
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--isolation",
            "fork",
        ])
        .expect_err("an unknown isolation is refused");
        assert!(e.to_string().contains("process"), "{e}");
        assert!(matches!(
            plan(&[
                "vhost-user-vgpu",
                "vtest",
                "--socket",
                "s",
                "--worker-pool",
                "65"
            ]),
            Err(ArgsError::Config(ConfigError::Flag { .. }))
        ));
    }

    #[test]
    fn vtest_rejects_a_zero_timeout() {
        let err = plan(&[
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--handshake-timeout-ms",
            "0",
        ]);
        assert!(matches!(
            err,
            Err(ArgsError::Config(ConfigError::Flag { .. }))
        ));
    }

    #[test]
    fn vtest_limit_flags_override_the_file() {
        let file = temp_config(
            "override",
            "[defaults]\nmemory_mib = 32\nmax_devices = 2\nmax_rings = 4\nmax_blobs = 7\n",
        );
        let path = file.to_str().expect("utf-8 path");
        let p = plan(&[
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
        let _ = std::fs::remove_file(&file);
        let vm = &p.config.vms[0];
        assert_eq!(vm.limits.memory_mib, Some(48));
        assert_eq!(vm.limits.max_devices, 2);
        assert_eq!(vm.context.max_rings, 4);
        assert_eq!(vm.fds.max_blobs, Some(7));
    }

    #[test]
    fn socket_shorthand_refuses_a_config_with_vms() {
        let file = temp_config("vms", "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/x\"\n");
        let path = file.to_str().expect("utf-8 path");
        let err = plan(&[
            "vhost-user-vgpu",
            "serve",
            "--socket",
            "s",
            "--config",
            path,
        ]);
        let _ = std::fs::remove_file(&file);
        assert!(matches!(err, Err(ArgsError::Config(ConfigError::Usage(_)))));
    }

    #[test]
    fn serve_config_serves_every_vm() {
        let file = temp_config(
            "serve",
            "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/x\"\n\
             [[vm]]\nname = \"b\"\nvhost_user_socket = \"/tmp/y\"\n",
        );
        let path = file.to_str().expect("utf-8 path");
        let p = plan(&["vhost-user-vgpu", "serve", "--config", path]).expect("valid");
        let _ = std::fs::remove_file(&file);
        assert_eq!(p.config.vms.len(), 2);
        assert!(!p.options.vm_per_connection);
        assert!(!p.options.once);
    }

    #[test]
    fn qos_policy_defaults_to_best_effort_and_parses() {
        let args = Args::try_parse_from(["vhost-user-vgpu", "vtest", "--socket", "s"])
            .expect("valid arguments");
        let Command::Vtest(v) = args.command else {
            unreachable!("a vtest command line")
        };
        assert_eq!(v.qos.qos_policy, None);
        let p = plan(&["vhost-user-vgpu", "vtest", "--socket", "s"]).expect("valid");
        assert_eq!(p.config.policy, vgpu_device::qos::Policy::BestEffort);
        let p = plan(&[
            "vhost-user-vgpu",
            "vtest",
            "--socket",
            "s",
            "--qos-policy",
            "fixed-share",
            "--metrics",
            "127.0.0.1:0",
        ])
        .expect("valid");
        assert_eq!(p.config.policy, vgpu_device::qos::Policy::FixedShare);
        assert!(p.config.metrics.is_some());
        let args = Args::try_parse_from([
            "vhost-user-vgpu",
            "ctl",
            "--socket",
            "c",
            "set",
            "vm1",
            "share=50",
        ])
        .expect("valid arguments");
        let Command::Ctl { request, .. } = args.command else {
            unreachable!("a ctl command line")
        };
        assert_eq!(request, ["set", "vm1", "share=50"]);
    }

    #[test]
    fn once_flag_selects_single_connection_mode() {
        let p = plan(&["vhost-user-vgpu", "serve", "--socket", "s", "--once"]).expect("valid");
        assert!(p.options.once);
        assert_eq!(
            p.config.vms[0].vhost_user_socket.as_deref(),
            Some(Path::new("s"))
        );
    }
}
