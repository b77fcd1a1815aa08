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

/// The QoS pieces a daemon runs: the arbiter service and, if asked for, the control
/// socket and the metrics endpoint (dropped on exit).
struct Qos {
    service: vgpu_device::qos::ArbiterService,
    _control: Option<vgpu_device::qos::ControlServer>,
    _metrics: Option<vgpu_device::qos::MetricsServer>,
}

fn start_qos(args: &args::QosArgs) -> Result<Qos, Box<dyn std::error::Error>> {
    use vgpu_device::qos;
    let policy = qos::parse_policy(&args.qos_policy)?;
    let service = qos::ArbiterService::start(policy)?;
    let control = args
        .control_socket
        .as_deref()
        .map(|p| qos::ControlServer::bind(p, service.handle()))
        .transpose()?;
    let metrics = args
        .metrics
        .as_deref()
        .map(|a| qos::MetricsServer::bind(a, service.handle()))
        .transpose()?;
    Ok(Qos {
        service,
        _control: control,
        _metrics: metrics,
    })
}

fn run(args: args::Args) -> Result<(), Box<dyn std::error::Error>> {
    match args.command {
        args::Command::Vtest(vtest) => {
            let grace = Duration::from_millis(vtest.shutdown_grace_ms);
            let qos = start_qos(&vtest.qos)?;
            let config = VtestConfig::try_from(vtest)?;
            // The capset comes from vulkan-proto's generated table; every context runs
            // the Venus executor on the host Vulkan driver the loader picks
            // (VK_DRIVER_FILES selects it, e.g. lavapipe). Each connection is a VM.
            let capset = VenusCapset::new(&VenusProtocolInfo::generated())?;
            let factory =
                Arc::new(VenusFactory::per_context(config.venus).with_qos(qos.service.handle()));
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
            let qos = start_qos(&serve.qos)?;
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
                let factory = VenusFactory::per_vm(format!("frontend {n}"), config.limits)
                    .with_qos(qos.service.handle());
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
        args::Command::Ctl { socket, request } => {
            let answer = vgpu_device::qos::control_request(&socket, &request.join(" "))?;
            #[allow(clippy::print_stdout)] // the command's output is its purpose
            {
                print!("{answer}");
            }
            if answer.starts_with("error:") {
                return Err(answer.trim_end().into());
            }
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
