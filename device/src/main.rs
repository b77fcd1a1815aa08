//! `vhost-user-vgpu`: parse arguments, validate them into a config, run.

mod args;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::error_chain;
use vgpu_device::renderer::venus::VenusFactory;
use vgpu_device::renderer::ContextRegistry;
use vgpu_device::shutdown;
use vgpu_device::vtest::{probe, VtestConfig, VtestServer};

fn run(args: args::Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.command {
        args::Command::Vtest(vtest) => {
            let grace = Duration::from_millis(vtest.shutdown_grace_ms);
            let config = VtestConfig::try_from(*vtest)?;
            // The capset comes from vulkan-proto's generated table; every context runs
            // the Venus executor on the host Vulkan driver the loader picks
            // (VK_DRIVER_FILES selects it, e.g. lavapipe). Each connection is a VM.
            let capset = VenusCapset::new(&VenusProtocolInfo::generated())?;
            let factory = Arc::new(VenusFactory::per_context(config.venus));
            let server = VtestServer::bind(config, &capset, factory)?;
            let stopper = server.stopper();
            shutdown::on_termination(shutdown::OnSignal {
                socket: server.path().to_path_buf(),
                contexts: server.contexts(),
                stop: Box::new(move || stopper.stop()),
                grace,
            })?;
            // Returns once a signal stopped it; exit status 0.
            server.run();
            Ok(())
        }
        args::Command::Serve(serve) => {
            let socket = serve.socket().to_path_buf();
            let config = vgpu_device::vhost_user::ServeConfig::try_from(serve)?;
            let capset = VenusCapset::new(&VenusProtocolInfo::generated())?;
            let context = vgpu_device::renderer::ContextConfig::default();
            // Each frontend is a VM: its contexts share one device-memory quota.
            let frontends = AtomicU64::new(0);
            let contexts = ContextRegistry::new();
            // The vhost-user daemon blocks in accept and in its message thread; on a
            // signal every context fails (FATAL on its rings), the socket goes, and the
            // process exits 0 (the VMM sees the socket close).
            shutdown::on_termination(shutdown::OnSignal {
                socket,
                contexts: contexts.clone(),
                stop: Box::new(|| std::process::exit(0)),
                grace: Duration::ZERO,
            })?;
            vgpu_device::vhost_user::serve(&config, |signals| {
                let n = frontends.fetch_add(1, Ordering::Relaxed) + 1;
                let factory = VenusFactory::per_vm(format!("frontend {n}"), config.limits);
                Box::new(
                    vgpu_device::virtio_gpu::CoreBackend::new(
                        &capset,
                        Arc::new(factory),
                        context,
                        signals,
                    )
                    .with_registry(contexts.clone()),
                )
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
    // The hidden worker subcommand (a vtest connection in its own process) is
    // dispatched before clap: the daemon is its only caller.
    if std::env::args().nth(1).as_deref() == Some(vgpu_device::worker::WORKER_SUBCOMMAND) {
        return vgpu_device::worker::child::worker_main(std::env::args().skip(2));
    }
    match run(args::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
