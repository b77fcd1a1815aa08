//! The vtest daemon with the Venus executor, as `vhost-user-vgpu vtest` runs it, for
//! the end-to-end tests (a binary of this package so tests can locate it).

use std::process::ExitCode;
use std::sync::Arc;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::renderer::venus::VenusFactory;
use vgpu_device::vtest::{VtestConfig, VtestServer};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let socket = match (args.next().as_deref(), args.next()) {
        (Some("--socket"), Some(path)) => path,
        _ => {
            log::error!("usage: venus-daemon --socket PATH");
            return ExitCode::FAILURE;
        }
    };
    let result = VenusCapset::new(&VenusProtocolInfo::generated())
        .map_err(|e| e.to_string())
        .and_then(|capset| {
            VtestServer::bind(VtestConfig::new(socket), &capset, Arc::new(VenusFactory))
                .map_err(|e| e.to_string())
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
