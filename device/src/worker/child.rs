//! The worker process (`vhost-user-vgpu worker`): takes its control socket (fd 3)
//! and hang page (fd 4), closes every other inherited fd, loads the Vulkan loader
//! and the host driver, sandboxes itself, reports READY, then serves the one vtest
//! client the daemon hands it with the daemon's settings.
//!
//! `worker --sandbox-self-test PROBE` installs the same sandbox and then tries one
//! thing a sandboxed worker must not do (or, for `fds` and `read`, one it may),
//! for the sandbox test.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use super::protocol::{self, Msg};
use super::{hang, WorkerError};
use crate::capset::{VenusCapset, VenusProtocolInfo};
use crate::ratelimit::RateLimiter;
use crate::renderer::venus::{preload_host_driver, VenusFactory, VmAccount};
use crate::renderer::{Context, ContextRegistry, RingEvent};
use crate::sys::process::{self as proc, exit_now};
use crate::vtest::{ServerShared, VtestConfig};

/// The control socket's fd number in a worker.
pub(crate) const CONTROL_FD: i32 = 3;
/// The hang page's fd number in a worker.
pub(crate) const HANG_FD: i32 = 4;

/// Sandbox settings from the worker's command line.
#[derive(Debug, Default)]
struct Args {
    sandbox: bool,
    max_open_files: Option<u64>,
    max_address_space: Option<u64>,
    self_test: Option<String>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, WorkerError> {
    let mut out = Args {
        sandbox: true,
        ..Args::default()
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| WorkerError::Usage(format!("{flag} needs a value")))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| WorkerError::Usage(format!("{v} is not a number")))
        };
        match flag.as_str() {
            "--no-sandbox" => out.sandbox = false,
            "--max-open-files" => out.max_open_files = Some(number(value()?)?),
            "--max-address-space" => out.max_address_space = Some(number(value()?)?),
            "--sandbox-self-test" => out.self_test = Some(value()?),
            other => return Err(WorkerError::Usage(format!("unknown flag {other}"))),
        }
    }
    Ok(out)
}

/// Runs a worker; `args` are the arguments after the subcommand. Returns only on a
/// start-up error; a served connection ends the process.
pub fn worker_main(args: impl Iterator<Item = String>) -> ExitCode {
    match run(args) {
        Ok(code) => exit_now(code),
        Err(e) => {
            log::error!("worker {}: {}", std::process::id(), crate::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(args: impl Iterator<Item = String>) -> Result<i32, WorkerError> {
    let args = parse(args)?;
    let control = proc::take_inherited_fd(CONTROL_FD)?;
    let hang_fd = proc::take_inherited_fd(HANG_FD)?;
    proc::close_fds_from(5)?;
    // Everything that opens files happens here, before the sandbox.
    let extensions = preload_host_driver().map_err(WorkerError::Preload)?;
    let capset = VenusCapset::new(&VenusProtocolInfo::generated())
        .map_err(|_| WorkerError::Usage("capset".into()))?;
    hang::install(&hang_fd)?;
    drop(hang_fd);
    if args.sandbox || args.self_test.is_some() {
        sandbox(&args)?;
    }
    log::debug!(
        "worker {}: host driver loaded ({extensions} instance extensions), sandboxed: {}",
        std::process::id(),
        args.sandbox
    );
    if let Some(probe) = &args.self_test {
        return Ok(self_test(probe, &control));
    }
    protocol::send(&control, &Msg::Ready)?;
    // An optional GATE (the daemon schedules this VM) and ACCOUNT (the daemon keeps
    // the VM's account), then SERVE.
    let mut gate = None;
    let mut account = None;
    let work = loop {
        match protocol::recv(&control)? {
            Some(Msg::Gate(fd)) if gate.is_none() => gate = Some(fd),
            Some(Msg::Account(fd)) if account.is_none() => account = Some(fd),
            Some(Msg::Serve {
                conn,
                config,
                client,
            }) => break (Some((conn, client)), config, None),
            Some(Msg::ServeGpu { config, ops }) => break (None, config, Some(ops)),
            Some(_) => {
                return Err(WorkerError::Malformed(
                    "expected GATE, ACCOUNT, SERVE or SERVE_GPU",
                ))
            }
            None => return Ok(0),
        }
    };
    let (vtest, text, ops) = work;
    let config = super::wire::WorkerConfigWire::parse(&text)?;
    let gate = match gate {
        // The reader thread routes the daemon's grants to the waiting ring threads.
        Some(fd) => Some(Arc::new(crate::qos::SubmitGate::new(Box::new(
            crate::qos::GateClient::from_fd(fd)
                .map_err(|_| WorkerError::Malformed("cannot start the QoS gate"))?,
        )))),
        None => None,
    };
    match (vtest, ops) {
        (Some((conn, client)), _) => serve(conn, config, &capset, client, control, gate, account),
        (None, Some(ops)) => super::gpu::serve_gpu(config, &capset, ops, control, gate, account),
        (None, None) => Ok(0),
    }
}

/// The factory of the worker's one context: with an account socket every charge is
/// granted by the daemon against the whole VM (all of its workers); without one, the
/// context is a VM alone (`fallback` names it). With a gate, every submission goes
/// through the daemon's arbiter.
pub(super) fn factory(
    config: &VtestConfig,
    fallback: crate::ids::ContextId,
    gate: Option<Arc<crate::qos::SubmitGate>>,
    account: Option<OwnedFd>,
) -> VenusFactory {
    let factory = match account {
        Some(fd) => {
            let ledger = Arc::new(super::account::AccountClient::new(fd));
            let name = config
                .vm
                .as_ref()
                .map_or_else(|| fallback.to_string(), ToString::to_string);
            VenusFactory::for_account(Arc::new(VmAccount::new_remote(name, config.venus, ledger)))
        }
        None => VenusFactory::per_context(config.venus),
    };
    match gate {
        Some(gate) => factory.with_fixed_gate(gate),
        None => factory,
    }
}

fn sandbox(args: &Args) -> Result<(), WorkerError> {
    proc::set_no_new_privs()?;
    if let Some(n) = args.max_open_files {
        proc::limit_open_files(n)?;
    }
    if let Some(bytes) = args.max_address_space {
        proc::limit_address_space(bytes)?;
    }
    crate::sys::seccomp::install_worker_filter()?;
    Ok(())
}

/// Tells the daemon about each ring of a context (RING with its memfd, RING_GONE),
/// so it can set FATAL on the ring's status word when the worker dies.
pub(super) fn ring_hook(control: &Arc<OwnedFd>) -> crate::renderer::RingHook {
    let rings = Arc::clone(control);
    Box::new(move |event| {
        let sent = match event {
            RingEvent::Created {
                ring,
                fd,
                status_offset,
            } => protocol::send_ring(&*rings, ring, status_offset, fd),
            RingEvent::Destroyed(ring) => protocol::send(&*rings, &Msg::RingGone(ring)),
        };
        if let Err(e) = sent {
            log::warn!("worker: telling the daemon about a ring failed: {e}");
        }
    })
}

fn serve(
    conn: u64,
    config: VtestConfig,
    capset: &VenusCapset,
    client: OwnedFd,
    control: OwnedFd,
    gate: Option<Arc<crate::qos::SubmitGate>>,
    account: Option<OwnedFd>,
) -> Result<i32, WorkerError> {
    let control = Arc::new(control);
    let hook_control = Arc::clone(&control);
    let on_context = Box::new(move |ctx: &Context, name: &str, label: &str| {
        // `ps` and the tests see which client a worker serves: "w:<client name>"
        // (the kernel keeps 15 bytes).
        let comm: String = format!("w:{name}")
            .chars()
            .filter(|c| !c.is_control())
            .take(15)
            .collect();
        if let Ok(comm) = std::ffi::CString::new(comm) {
            let _ = rustix::thread::set_name(&comm);
        }
        let _ = protocol::send(&*hook_control, &Msg::Label(label.to_owned()));
        ctx.set_ring_hook(ring_hook(&hook_control));
    });
    let ctx = crate::ids::ContextId(u32::try_from(conn).unwrap_or(1).max(1));
    let factory = Arc::new(factory(&config, ctx, gate, account));
    let shared = Arc::new(ServerShared {
        factory,
        capset: capset.to_bytes(),
        warn: RateLimiter::new("vgpu::vtest", Duration::from_secs(5), 20),
        next_context: AtomicU32::new(u32::try_from(conn).unwrap_or(1).max(1)),
        contexts: ContextRegistry::new(),
        on_context: Some(on_context),
        qos: None,
        vm_account: None,
        config,
    });
    let stream = UnixStream::from(client);
    crate::vtest::serve_one(stream, &shared, conn);
    Ok(0)
}

/// One sandbox probe; returns the exit code (a forbidden call never returns: the
/// filter kills the process with SIGSYS).
fn self_test(probe: &str, control: &impl AsFd) -> i32 {
    let report = |line: String| {
        #[allow(clippy::print_stdout)] // the self-test's output is its purpose
        {
            println!("{line}");
        }
    };
    match probe {
        "fds" => {
            let fds = proc::open_fds().unwrap_or_default();
            let fds: Vec<String> = fds.iter().map(ToString::to_string).collect();
            report(format!("fds: {}", fds.join(" ")));
            0
        }
        "read" => match std::fs::read_to_string("/proc/self/status") {
            Ok(_) => {
                report("read: ok".into());
                0
            }
            Err(e) => {
                report(format!("read: {e}"));
                1
            }
        },
        "write" => {
            let path = std::env::temp_dir().join(format!("vgpu-sandbox-{}", std::process::id()));
            let r = std::fs::File::create(&path);
            report(format!("write: {r:?}"));
            0
        }
        "socket" => {
            let r = std::net::TcpStream::connect("127.0.0.1:9");
            report(format!("socket: {r:?}"));
            0
        }
        "connect" => {
            // connect(2) on the socket it already holds.
            let addr = rustix::net::SocketAddrUnix::new("/nonexistent");
            let r = addr.map(|a| rustix::net::connect(control, &a));
            report(format!("connect: {r:?}"));
            0
        }
        "ptrace" => {
            let r = proc::ptrace_traceme();
            report(format!("ptrace: {r}"));
            0
        }
        "execve" => {
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new("/bin/true").exec();
            report(format!("execve: {e}"));
            0
        }
        "fork" => {
            let r = std::process::Command::new("/bin/true").status();
            report(format!("fork: {r:?}"));
            0
        }
        other => {
            report(format!("unknown probe {other}"));
            2
        }
    }
}
