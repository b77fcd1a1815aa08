//! `vhost-user-vgpu`: parse arguments, validate them into a config, run.

mod args;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser;
use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::error_chain;
use vgpu_device::renderer::venus::{VenusFactory, VenusLimits};
use vgpu_device::vtest::{probe, VtestConfig, VtestServer};

fn run(args: args::Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.command {
        args::Command::Vtest(vtest) => {
            let limits = VenusLimits::try_from(&vtest.limits)?;
            let config = VtestConfig::try_from(vtest)?;
            // The capset comes from vulkan-proto's generated table; every context runs
            // the Venus executor on the host Vulkan driver the loader picks
            // (VK_DRIVER_FILES selects it, e.g. lavapipe). Each connection is a VM.
            let capset = VenusCapset::new(&VenusProtocolInfo::generated())?;
            let factory = Arc::new(VenusFactory::per_context(limits));
            VtestServer::bind(config, &capset, factory)?.run();
            Ok(())
        }
        args::Command::Serve(serve) => {
            let config = vgpu_device::vhost_user::ServeConfig::try_from(serve)?;
            let capset = VenusCapset::new(&VenusProtocolInfo::generated())?;
            let context = vgpu_device::renderer::ContextConfig::default();
            // Each frontend is a VM: its contexts share one device-memory quota.
            let frontends = AtomicU64::new(0);
            vgpu_device::vhost_user::serve(&config, |signals| {
                let n = frontends.fetch_add(1, Ordering::Relaxed) + 1;
                let factory = VenusFactory::per_vm(format!("frontend {n}"), config.limits);
                Box::new(vgpu_device::virtio_gpu::CoreBackend::new(
                    &capset,
                    Arc::new(factory),
                    context,
                    signals,
                ))
            })?;
            Ok(())
        }
        args::Command::Probe { socket } => {
            let report = probe::probe(&socket)?;
            #[allow(clippy::print_stdout)] // the demo client's output is its purpose
            {
                print!("{report}");
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(args::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
