//! `vhost-user-vgpu serve` as the CLI runs it (Venus executor on the host driver the
//! loader picks), as a binary of this package so the end-to-end tests can locate it:
//! `vhost-serve-daemon [--config FILE] [--socket PATH]`. With `--socket`, one VM on
//! that socket with the file's `[defaults]`; without it, every VM of the TOML config.
//! A VM's vtest connections run in worker processes (this binary re-executed as
//! `vhost-serve-daemon worker`) unless the file says `[worker] isolation = "thread"`;
//! unless the file sets `gpu_timeout_ms`, every VM's is
//! `vgpu_tests::TEST_GPU_TIMEOUT_MS` (60 s; see there why).

use std::path::PathBuf;
use std::process::ExitCode;

use vgpu_device::config::{self, DaemonConfig, Flags, FrontDoor};
use vgpu_device::daemon::{self, Options};

const USAGE: &str = "usage: vhost-serve-daemon [--config FILE] [--socket PATH]";

fn run(socket: Option<PathBuf>, file: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = match &file {
        Some(path) => config::load(path)?,
        None => DaemonConfig::default(),
    };
    if let Some(socket) = socket {
        config.add_socket_vm(socket, FrontDoor::VhostUser)?;
    }
    if !file
        .as_deref()
        .is_some_and(vgpu_tests::config_sets_gpu_timeout)
    {
        let flags = Flags {
            gpu_timeout_ms: Some(vgpu_tests::TEST_GPU_TIMEOUT_MS),
            ..Flags::default()
        };
        config::apply_flags(&mut config, &flags)?;
    }
    daemon::run(&config, Options::default())?;
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if std::env::args().nth(1).as_deref() == Some(vgpu_device::worker::WORKER_SUBCOMMAND) {
        return vgpu_device::worker::child::worker_main(std::env::args().skip(2));
    }
    let mut args = std::env::args().skip(1);
    let (mut socket, mut config_file) = (None, None);
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--config" => config_file = Some(PathBuf::from(value)),
            _ => {
                log::error!("{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    if socket.is_none() && config_file.is_none() {
        log::error!("{USAGE}");
        return ExitCode::FAILURE;
    }
    match run(socket, config_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", vgpu_device::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
