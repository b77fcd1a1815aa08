//! The vtest daemon with the Venus executor, as `vhost-user-vgpu vtest` runs it, for
//! the end-to-end tests (a binary of this package so tests can locate it):
//! `venus-daemon [--config FILE] [--memory-mib N] [--max-instances N]
//! [--max-devices N] [--max-objects N] [--isolation process|thread]
//! [--gpu-timeout-ms N] --socket PATH` (each connection a VM with these limits, in a
//! worker process by default; the flags override the file). Like the CLI, it stops on
//! SIGTERM/SIGINT: every context fails, the socket goes, and it exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::renderer::venus::VenusFactory;
use vgpu_device::shutdown::{on_termination, OnSignal};
use vgpu_device::vtest::{VtestConfig, VtestServer};
use vgpu_device::worker::child::worker_main;
use vgpu_device::worker::{Isolation, WORKER_SUBCOMMAND};

const USAGE: &str = "usage: venus-daemon [--config FILE] [--memory-mib N] \
                     [--max-instances N] [--max-devices N] [--max-objects N] \
                     [--isolation process|thread] [--gpu-timeout-ms N] --socket PATH";

/// The command line: socket path, config file, and limit flags as config keys.
struct CommandLine {
    socket: String,
    config_file: Option<String>,
    limits: Vec<(&'static str, String)>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Option<CommandLine> {
    let (mut socket, mut config_file, mut limits) = (None, None, Vec::new());
    while let Some(flag) = args.next() {
        let value = args.next()?;
        match flag.as_str() {
            "--socket" => socket = Some(value),
            "--config" => config_file = Some(value),
            "--memory-mib" => limits.push(("memory_mib", value)),
            "--max-instances" => limits.push(("max_instances", value)),
            "--max-devices" => limits.push(("max_devices", value)),
            "--max-objects" => limits.push(("max_objects", value)),
            "--isolation" => limits.push(("isolation", value)),
            "--gpu-timeout-ms" => limits.push(("gpu_timeout_ms", value)),
            _ => return None,
        }
    }
    Some(CommandLine {
        socket: socket?,
        config_file,
        limits,
    })
}

/// The config file, then the flags over it (errors name "line 0", the command line).
fn config(line: CommandLine) -> Result<VtestConfig, vgpu_device::vtest::ConfigError> {
    let mut config = VtestConfig::new(line.socket);
    // As the CLI: each connection in a worker process (this binary re-executed as
    // `venus-daemon worker`) unless `--isolation thread`.
    config.isolation = Isolation::Process;
    if let Some(path) = line.config_file {
        config.load(path.as_ref())?;
    }
    for (key, value) in &line.limits {
        config.set(0, key, value)?;
    }
    Ok(config)
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
    let config = match config(line) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let factory = Arc::new(VenusFactory::per_context(config.venus));
    let result = VenusCapset::new(&VenusProtocolInfo::generated())
        .map_err(|e| e.to_string())
        .and_then(|capset| VtestServer::bind(config, &capset, factory).map_err(|e| e.to_string()))
        .and_then(|server| {
            let stopper = server.stopper();
            on_termination(OnSignal {
                socket: server.path().to_path_buf(),
                contexts: server.contexts(),
                stop: Box::new(move || stopper.stop()),
                grace: Duration::from_secs(5),
            })
            .map(|()| server)
            .map_err(|e| vgpu_device::error_chain(&e))
        });
    match result {
        Ok(server) => {
            server.run();
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
