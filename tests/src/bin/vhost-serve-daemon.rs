//! `vhost-user-vgpu serve` as the CLI runs it (Venus executor on the host driver the
//! loader picks, default device settings), as a binary of this package so the
//! end-to-end tests can locate it: `vhost-serve-daemon --socket PATH`.

use std::process::ExitCode;
use std::sync::Arc;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::renderer::venus::VenusFactory;
use vgpu_device::renderer::ContextConfig;
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
    let served = vgpu_device::vhost_user::serve(&config, |signals| {
        Box::new(CoreBackend::new(
            &capset,
            Arc::new(VenusFactory::per_vm("frontend".into(), config.limits)),
            ContextConfig::default(),
            signals,
        ))
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", vgpu_device::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
