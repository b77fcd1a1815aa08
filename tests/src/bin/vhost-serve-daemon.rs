//! `vhost-user-vgpu serve` as the CLI runs it (Venus executor on the host driver the
//! loader picks, default device settings), as a binary of this package so the
//! end-to-end tests can locate it: `vhost-serve-daemon --socket PATH`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::renderer::venus::VenusFactory;
use vgpu_device::renderer::{ContextConfig, ContextRegistry};
use vgpu_device::shutdown::{on_termination, OnSignal};
use vgpu_device::vhost_user::ServeConfig;
use vgpu_device::virtio_gpu::CoreBackend;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let socket = match (args.next().as_deref(), args.next()) {
        (Some("--socket"), Some(path)) => path,
        _ => {
            log::error!("usage: vhost-serve-daemon --socket PATH");
            return ExitCode::FAILURE;
        }
    };
    let capset = match VenusCapset::new(&VenusProtocolInfo::generated()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = ServeConfig::new(socket.into());
    // As the CLI: on SIGTERM/SIGINT every context fails, the socket goes, exit 0.
    let contexts = ContextRegistry::new();
    if let Err(e) = on_termination(OnSignal {
        socket: config.socket.clone(),
        contexts: contexts.clone(),
        stop: Box::new(|| std::process::exit(0)),
        grace: Duration::ZERO,
    }) {
        log::error!("{}", vgpu_device::error_chain(&e));
        return ExitCode::FAILURE;
    }
    let served = vgpu_device::vhost_user::serve(&config, |signals| {
        Box::new(
            CoreBackend::new(
                &capset,
                Arc::new(VenusFactory),
                ContextConfig::default(),
                signals,
            )
            .with_registry(contexts.clone()),
        )
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", vgpu_device::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
