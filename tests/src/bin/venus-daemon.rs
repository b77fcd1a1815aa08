//! The vtest daemon with the Venus executor, as `vhost-user-vgpu vtest` runs it, for
//! the end-to-end tests (a binary of this package so tests can locate it):
//! `venus-daemon [--config FILE] --socket PATH`. Like the CLI, it stops on
//! SIGTERM/SIGINT: every context fails, the socket goes, and it exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::renderer::venus::VenusFactory;
use vgpu_device::shutdown::{on_termination, OnSignal};
use vgpu_device::vtest::{VtestConfig, VtestServer};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let (mut socket, mut config_file) = (None, None);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--socket", Some(path)) => socket = Some(path),
            ("--config", Some(path)) => config_file = Some(path),
            _ => {
                log::error!("usage: venus-daemon [--config FILE] --socket PATH");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(socket) = socket else {
        log::error!("usage: venus-daemon [--config FILE] --socket PATH");
        return ExitCode::FAILURE;
    };
    let mut config = VtestConfig::new(socket);
    if let Some(path) = config_file {
        if let Err(e) = config.load(path.as_ref()) {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let result = VenusCapset::new(&VenusProtocolInfo::generated())
        .map_err(|e| e.to_string())
        .and_then(|capset| {
            VtestServer::bind(config, &capset, Arc::new(VenusFactory)).map_err(|e| e.to_string())
        })
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
