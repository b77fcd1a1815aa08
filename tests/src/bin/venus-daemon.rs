//! The vtest daemon with the Venus executor, as `vhost-user-vgpu vtest` runs it, for
//! the end-to-end tests (a binary of this package so tests can locate it):
//! `venus-daemon [--config FILE] [--memory-mib N] [--max-instances N]
//! [--max-devices N] [--max-objects N] [--max-blobs N] [--max-sync-waits N]
//! [--isolation process|thread] [--gpu-timeout-ms N] [--qos-policy NAME]
//! [--control-socket PATH] [--metrics ADDR] [--socket PATH]` (QoS flags override the
//! config's `policy`, `control_socket`, `metrics`). With
//! `--socket`, each connection is a VM with these limits (the flags override the
//! file's `[defaults]`); without it, every VM of the TOML config is served, as
//! `serve --config` does. Each connection runs in a worker process (this binary
//! re-executed as `venus-daemon worker`) unless `--isolation thread` or the file's
//! `[worker] isolation = "thread"`. Unless the file or `--gpu-timeout-ms` sets
//! one, every VM's `gpu_timeout_ms` is `vgpu_tests::TEST_GPU_TIMEOUT_MS` (60 s), not the
//! product's 5 s: on a 2-core CI machine lavapipe's "device" is the CPU shared with
//! the compiler, and an honest fence can stay pending longer than 5 s. Like the CLI,
//! it stops on SIGTERM/SIGINT: every context fails, the sockets go, and it exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use vgpu_device::config::{self, DaemonConfig, Flags, FrontDoor};
use vgpu_device::daemon::{self, Options};
use vgpu_device::worker::child::worker_main;
use vgpu_device::worker::WORKER_SUBCOMMAND;

const USAGE: &str = "usage: venus-daemon [--config FILE] [--memory-mib N] \
                     [--max-instances N] [--max-devices N] [--max-objects N] \
                     [--max-blobs N] [--max-sync-waits N] [--isolation process|thread] \
                     [--gpu-timeout-ms N] [--qos-policy NAME] [--control-socket PATH] \
                     [--metrics ADDR] [--socket PATH]";

/// The command line: socket path, config file, and limit flags.
struct CommandLine {
    socket: Option<PathBuf>,
    config_file: Option<PathBuf>,
    flags: Flags,
    qos_policy: Option<String>,
    control_socket: Option<PathBuf>,
    metrics: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Option<CommandLine> {
    let mut line = CommandLine {
        socket: None,
        config_file: None,
        flags: Flags::default(),
        qos_policy: None,
        control_socket: None,
        metrics: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next()?;
        let number = || value.parse::<u64>().ok();
        let f = &mut line.flags;
        match flag.as_str() {
            "--socket" => line.socket = Some(value.into()),
            "--config" => line.config_file = Some(value.into()),
            "--memory-mib" => f.memory_mib = Some(number()?),
            "--max-instances" => f.max_instances = Some(number()?),
            "--max-devices" => f.max_devices = Some(number()?),
            "--max-objects" => f.max_objects = Some(number()?),
            "--max-blobs" => f.max_blobs = Some(number()?),
            "--max-sync-waits" => f.max_sync_waits = Some(number()?),
            "--qos-policy" => line.qos_policy = Some(value),
            "--control-socket" => line.control_socket = Some(value.into()),
            "--metrics" => line.metrics = Some(value),
            "--isolation" => f.isolation = Some(value.parse().ok()?),
            "--gpu-timeout-ms" => f.gpu_timeout_ms = Some(number()?),
            _ => return None,
        }
    }
    (line.socket.is_some() || line.config_file.is_some()).then_some(line)
}

fn run(mut line: CommandLine) -> Result<(), Box<dyn std::error::Error>> {
    let file_sets_timeout = line
        .config_file
        .as_deref()
        .is_some_and(vgpu_tests::config_sets_gpu_timeout);
    if !file_sets_timeout && line.flags.gpu_timeout_ms.is_none() {
        line.flags.gpu_timeout_ms = Some(vgpu_tests::TEST_GPU_TIMEOUT_MS);
    }
    let mut config = match &line.config_file {
        Some(path) => config::load(path)?,
        None => DaemonConfig::default(),
    };
    let vm_per_connection = line.socket.is_some();
    if let Some(socket) = line.socket {
        config.add_socket_vm(socket, FrontDoor::Vtest)?;
    }
    config::apply_flags(&mut config, &line.flags)?;
    if let Some(p) = &line.qos_policy {
        config.policy = vgpu_device::qos::parse_policy(p)?;
    }
    if line.control_socket.is_some() {
        config.control_socket = line.control_socket;
    }
    if let Some(m) = &line.metrics {
        config.metrics = Some(vgpu_device::qos::parse_metrics_listen(m)?);
    }
    daemon::run(
        &config,
        Options {
            vm_per_connection,
            once: false,
        },
    )?;
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if std::env::args().nth(1).as_deref() == Some(WORKER_SUBCOMMAND) {
        return worker_main(std::env::args().skip(2));
    }
    let Some(line) = parse(std::env::args().skip(1)) else {
        log::error!("{USAGE}");
        return ExitCode::FAILURE;
    };
    match run(line) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", vgpu_device::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
