//! One daemon, many VMs: starts every front door of a [`DaemonConfig`] in one process
//! and stops them all on `SIGTERM`/`SIGINT`.
//!
//! ```text
//!              main thread: waits for an Event
//!   ┌────────────────────┬──────────────────────┬─────────────────────┐
//!   VM "a" vtest socket  VM "a" vhost-user      VM "b" vtest socket   vgpu-shutdown
//!   (vtest-accept thread (vhost-user-<vm>       ...                   (signal thread:
//!    + one thread per     thread: one frontend                         FATAL on rings,
//!    connection)          at a time)                                   sockets removed,
//!   └──── every context of VM "a" shares one VenusFactory::per_vm ───┘ Event::Stop)
//! ```
//!
//! Each VM gets one [`VenusFactory::per_vm`]: every context of the VM, from any of its
//! front doors (every connection on its vtest socket, every context of its vhost-user
//! frontend), draws on the same device-memory quota and fd budget. The single-socket
//! `vtest --socket` shorthand keeps the old shape: each connection a VM of its own
//! ([`Options::vm_per_connection`]).
//!
//! Per-VM fd limits not set in the config are derived from the daemon's
//! `RLIMIT_NOFILE` ([`raise_nofile_limit`], then [`FdLimits::derived`]).

use std::sync::mpsc;
use std::sync::Arc;

use crate::capset::{CapsetError, VenusCapset, VenusProtocolInfo};
use crate::config::{DaemonConfig, VmSpec};
use crate::renderer::fds::FdLimits;
use crate::renderer::venus::VenusFactory;
use crate::renderer::{ContextRegistry, ExecutorFactory};
use crate::shutdown::{self, ShutdownError};
use crate::vhost_user::{ServeConfig, VhostUserError};
use crate::vtest::{ServerHandle, VtestConfig, VtestError, VtestServer};

/// Errors starting or running the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The config names no socket to serve.
    #[error("the config lists no VM socket to serve")]
    NothingToServe,
    /// Building the Venus capset failed.
    #[error("building the Venus capset failed")]
    Capset(#[from] CapsetError),
    /// A VM's vtest socket could not be served.
    #[error("VM {vm}: vtest socket")]
    Vtest {
        /// The VM.
        vm: String,
        /// Cause.
        #[source]
        source: VtestError,
    },
    /// A VM's vhost-user socket failed.
    #[error("VM {vm}: vhost-user socket")]
    VhostUser {
        /// The VM.
        vm: String,
        /// Cause.
        #[source]
        source: VhostUserError,
    },
    /// Starting a listener thread failed.
    #[error("starting a listener thread failed")]
    Spawn(#[source] std::io::Error),
    /// Installing the signal handler failed.
    #[error("installing the shutdown handler failed")]
    Shutdown(#[from] ShutdownError),
    /// Starting the QoS service, control socket or metrics endpoint failed.
    #[error("starting QoS failed")]
    Qos(#[from] crate::qos::QosError),
    /// Preparing the worker processes of a VM's virtio-gpu contexts failed.
    #[error("preparing the worker processes failed")]
    Workers(#[source] crate::worker::WorkerError),
    /// Starting the GPU-hang watchdog thread failed.
    #[error("starting the GPU-hang watchdog failed")]
    Watchdog(#[source] std::io::Error),
}

/// How the command line asked for the config to be served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `vtest --socket`: every connection on a vtest socket is a VM of its own (its
    /// quota and fd budget its own), as before VMs existed in the config.
    pub vm_per_connection: bool,
    /// `serve --socket --once`: exit when the first vhost-user frontend disconnects.
    pub once: bool,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit in force
/// (the soft one, if raising failed).
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(1 << 20);
    let Some(hard) = now.maximum else {
        return current;
    };
    if hard <= current {
        return current;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => hard,
        Err(e) => {
            log::warn!("limits: raising RLIMIT_NOFILE from {current} to {hard} failed: {e}");
            current
        }
    }
}

/// What the main thread waits for.
enum Event {
    /// A termination signal arrived (rings are FATAL, sockets removed).
    Stop,
    /// A VM's vhost-user listener returned.
    VhostUserEnded {
        vm: String,
        result: Result<(), VhostUserError>,
    },
}

/// Serves every VM of `config` until a signal stops the daemon (returns `Ok`: exit
/// status 0) or a vhost-user listener fails (an error).
pub fn run(config: &DaemonConfig, options: Options) -> Result<(), DaemonError> {
    let vm_count = if options.vm_per_connection {
        config.vtest.max_clients
    } else {
        config.vms.len()
    };
    let nofile = raise_nofile_limit();
    let derived = FdLimits::derived(nofile, vm_count);
    log::info!(
        "limits: RLIMIT_NOFILE {nofile}, {vm_count} VMs: default per-VM max_blobs {}, \
         max_sync_waits {}",
        derived.max_blobs,
        derived.max_sync_waits
    );
    let capset = VenusCapset::new(&VenusProtocolInfo::generated())?;
    // One arbiter for the host GPU; every VM's contexts submit through its gate.
    let qos = crate::qos::QosRuntime::start(
        config.policy,
        config.control_socket.as_deref(),
        config.metrics.as_ref(),
    )?;
    let (events, waiting) = mpsc::channel::<Event>();
    let mut registries = Vec::new();
    // The GPU-hang watchdog of in-daemon contexts: each VM's registries with its
    // `gpu_timeout_ms` (worker processes are watched by their supervisors).
    let mut watched = Vec::new();
    // The worker processes of each VM's virtio-gpu contexts, for shutdown.
    let mut gpu_workers = Vec::new();
    let mut vtest_servers: Vec<ServerHandle> = Vec::new();
    let mut vhost_user = Vec::new();
    let in_workers = config.worker.isolation == crate::worker::Isolation::Process;
    for vm in &config.vms {
        let venus = vm.venus_limits(derived);
        // A configured VM is one VM of the arbiter, whichever door its contexts come
        // through: the in-daemon factory's gate (vhost-user, vtest on threads) and the
        // gate sockets of its vtest workers all submit as it.
        let mut worker_vm = None;
        // The VM's one account, charged by its in-daemon contexts and (over their
        // account sockets) by its worker processes; `None`: every connection a VM.
        let mut vm_account = None;
        let factory: Arc<dyn ExecutorFactory> = if options.vm_per_connection {
            Arc::new(
                VenusFactory::per_context(venus)
                    .with_qos(qos.handle(), crate::qos::default_vm_config()),
            )
        } else if in_workers && vm.vhost_user_socket.is_none() {
            // Only worker processes submit for this VM: attach it for their gates.
            let factory = VenusFactory::per_vm(vm.name.to_string(), venus);
            vm_account = factory.vm_account();
            worker_vm = Some(crate::qos::attach_shared(
                &qos.handle(),
                vm.name.to_string(),
                vm.qos,
                vm_account.as_ref().map(|a| a.memory_probe()),
            )?);
            Arc::new(factory)
        } else {
            let factory =
                VenusFactory::per_vm(vm.name.to_string(), venus).with_qos(qos.handle(), vm.qos);
            worker_vm = factory.qos_vm();
            vm_account = factory.vm_account();
            Arc::new(factory)
        };
        if let Some(socket) = &vm.vtest_socket {
            let mut vtest =
                VtestConfig::for_vm(socket.clone(), &config.vtest, &config.worker, vm, venus);
            if options.vm_per_connection {
                vtest.vm = None;
            }
            let server =
                VtestServer::bind(vtest, &capset, Arc::clone(&factory)).map_err(|source| {
                    DaemonError::Vtest {
                        vm: vm.name.to_string(),
                        source,
                    }
                })?;
            // Connections in worker processes reach the arbiter over a gate socket,
            // each attached as a VM with this QoS (the VM's, or an equal default when
            // every connection is a VM of its own).
            let how = match worker_vm {
                Some(id) => crate::vtest::WorkerQos::Vm(id),
                None => crate::vtest::WorkerQos::PerConnection(crate::qos::default_vm_config()),
            };
            let mut server = server.with_qos(qos.handle(), how);
            if let Some(account) = &vm_account {
                server = server.with_vm_account(Arc::clone(account));
            }
            registries.push(server.contexts());
            watched.push((server.contexts(), vm.gpu_timeout));
            vtest_servers.push(server.spawn().map_err(|source| DaemonError::Vtest {
                vm: vm.name.to_string(),
                source,
            })?);
        }
        if let Some(socket) = &vm.vhost_user_socket {
            let registry = ContextRegistry::new();
            registries.push(registry.clone());
            watched.push((registry.clone(), vm.gpu_timeout));
            // With worker processes, each of the VM's virtio-gpu contexts runs in a
            // worker of its own, charging the VM's account and submitting as the VM.
            let gpu = match (&vm_account, in_workers) {
                (Some(account), true) => {
                    let settings = VtestConfig::for_vm(
                        socket.clone(),
                        &config.vtest,
                        &config.worker,
                        vm,
                        venus,
                    );
                    let qos = worker_vm.map(|id| (qos.handle(), id));
                    let gpu =
                        crate::worker::remote::GpuWorkers::new(&settings, Arc::clone(account), qos)
                            .map_err(DaemonError::Workers)?;
                    gpu_workers.push(Arc::clone(&gpu));
                    Some(gpu)
                }
                _ => None,
            };
            vhost_user.push((vm, socket.clone(), registry, Arc::clone(&factory), gpu));
        }
    }
    if vtest_servers.is_empty() && vhost_user.is_empty() {
        return Err(DaemonError::NothingToServe);
    }
    let vhost_registries: Vec<ContextRegistry> =
        vhost_user.iter().map(|(_, _, r, _, _)| r.clone()).collect();
    for (vm, socket, registry, factory, gpu) in vhost_user {
        let serve = ServeConfig::for_vm(socket, vm, vm.venus_limits(derived), options.once);
        let render = Render {
            capset: capset.clone(),
            factory,
            registry,
            gpu,
        };
        spawn_vhost_user(serve, vm, render, events.clone())?;
    }
    let _watchdog =
        crate::renderer::watchdog::HangWatchdog::spawn(watched).map_err(DaemonError::Watchdog)?;
    let stop = events.clone();
    shutdown::on_termination(shutdown::OnSignal {
        sockets: config.vm_sockets(),
        contexts: registries,
        also_fatal: gpu_workers
            .iter()
            .map(|g| {
                let g = Arc::clone(g);
                Box::new(move || g.set_rings_fatal()) as Box<dyn Fn() -> usize + Send>
            })
            .collect(),
        stop: Box::new(move || {
            let _ = stop.send(Event::Stop);
        }),
        grace: config.shutdown_grace,
    })?;
    // Scripts and tests wait for this line rather than probing a socket: every socket
    // listens and a stop signal is handled from here on.
    log::info!("daemon: ready (SIGTERM or SIGINT stops it)");
    drop(events);
    let result = wait(&waiting, options.once);
    // vtest servers answer what their clients sent, fail the contexts left, hang up
    // and join their threads; vhost-user contexts fail at once (the VMM sees the
    // socket close when the process exits).
    for server in vtest_servers {
        server.shutdown();
    }
    for registry in &vhost_registries {
        registry.fail_all(shutdown::SHUTDOWN_REASON);
    }
    for gpu in &gpu_workers {
        let n = gpu.shutdown();
        if n > 0 {
            log::info!("virtio-gpu: rings of {n} worker contexts set FATAL, workers ended");
        }
    }
    result
}

/// Waits for a stop signal, or for a vhost-user listener to end: with `once`, the
/// first frontend's end stops the daemon; otherwise a listener only ends on a fatal
/// error, which stops the daemon with that error.
fn wait(events: &mpsc::Receiver<Event>, once: bool) -> Result<(), DaemonError> {
    loop {
        match events.recv() {
            Ok(Event::Stop) | Err(mpsc::RecvError) => return Ok(()),
            Ok(Event::VhostUserEnded { vm, result }) => match result {
                Ok(()) if once => return Ok(()),
                Ok(()) => log::info!("vhost-user: VM {vm}: listener ended"),
                Err(source) => return Err(DaemonError::VhostUser { vm, source }),
            },
        }
    }
}

/// Runs `vhost_user::serve` for one VM on its own thread; its end is reported on
/// `events`.
/// How one VM's virtio-gpu contexts are run.
struct Render {
    capset: VenusCapset,
    /// In the daemon: the VM's executors.
    factory: Arc<dyn ExecutorFactory>,
    registry: ContextRegistry,
    /// In worker processes (then `factory` is not used for them).
    gpu: Option<Arc<crate::worker::remote::GpuWorkers>>,
}

fn spawn_vhost_user(
    serve: ServeConfig,
    vm: &VmSpec,
    render: Render,
    events: mpsc::Sender<Event>,
) -> Result<(), DaemonError> {
    let name = vm.name.to_string();
    let vm_name = name.clone();
    let context = vm.context;
    let thread_name: String = format!("vhost-user-{name}").chars().take(15).collect();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let result = crate::vhost_user::serve(&serve, |signals| {
                let Render {
                    capset,
                    factory,
                    registry,
                    gpu,
                } = &render;
                match gpu {
                    Some(gpu) => Box::new(crate::worker::remote::ProcessBackend::new(
                        capset,
                        Arc::clone(gpu),
                        signals,
                    )),
                    None => Box::new(
                        crate::virtio_gpu::CoreBackend::new(
                            capset,
                            Arc::clone(factory),
                            context,
                            signals,
                        )
                        .with_registry(registry.clone())
                        .with_vm(vm_name.clone()),
                    ),
                }
            });
            let _ = events.send(Event::VhostUserEnded { vm: name, result });
        })
        .map(drop)
        .map_err(DaemonError::Spawn)
}
