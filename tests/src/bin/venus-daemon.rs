//! The vtest daemon with the Venus executor, as `vhost-user-vgpu vtest` runs it, for
//! the end-to-end tests (a binary of this package so tests can locate it):
//! `venus-daemon [--memory-mib N] [--max-instances N] [--max-devices N]
//! [--max-objects N] --socket PATH` (each connection a VM with these limits).

use std::process::ExitCode;
use std::sync::Arc;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::renderer::venus::{VenusFactory, VenusLimits};
use vgpu_device::vtest::{VtestConfig, VtestServer};

const USAGE: &str = "usage: venus-daemon [--memory-mib N] [--max-instances N] \
                     [--max-devices N] [--max-objects N] --socket PATH";

/// The socket path and limits from the command line.
fn parse(mut args: impl Iterator<Item = String>) -> Option<(String, VenusLimits)> {
    let mut limits = VenusLimits::default();
    let mut socket = None;
    while let Some(flag) = args.next() {
        let value = args.next()?;
        let num = || value.parse::<u32>().ok().filter(|&v| v > 0);
        match flag.as_str() {
            "--socket" => socket = Some(value),
            "--memory-mib" => limits.memory_mib = Some(u64::from(num()?)),
            "--max-instances" => limits.max_instances = num()?,
            "--max-devices" => limits.max_devices = num()?,
            "--max-objects" => limits.max_objects = num()?,
            _ => return None,
        }
    }
    Some((socket?, limits))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let Some((socket, limits)) = parse(std::env::args().skip(1)) else {
        log::error!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let factory = Arc::new(VenusFactory::per_context(limits));
    let result = VenusCapset::new(&VenusProtocolInfo::generated())
        .map_err(|e| e.to_string())
        .and_then(|capset| {
            VtestServer::bind(VtestConfig::new(socket), &capset, factory).map_err(|e| e.to_string())
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
