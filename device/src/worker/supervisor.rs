//! The daemon side of a worker: spawn it, hand it its client, keep its rings'
//! status words mapped, notice its death at once (a pidfd in `poll`), enforce the
//! GPU timeout, and report a death in one log line. One supervisor thread per
//! worker; it ends (and the daemon's fds for that worker close) when the worker has
//! been reaped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::account::AccountServer;
use super::hang::HangPage;
use super::protocol::{self, Msg};
use super::{WorkerError, WorkerSettings, WORKER_SUBCOMMAND};
use crate::ids::RingId;
use crate::ratelimit::RateLimiter;
use crate::renderer::venus::VmAccount;
use crate::renderer::STATUS_FATAL;
use crate::sys::process as proc;
use crate::sys::{check_sealed, SharedMemory};
use crate::vtest::ServerShared;

/// How often the supervisor looks at the hang page.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// How long a worker may take from spawn to READY.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// After a worker died, how long the daemon keeps the client socket open waiting
/// for the client to send something: closing a socket with unread data makes the
/// client's next read fail with ECONNRESET (Mesa reports a lost connection and
/// aborts) instead of an end-of-file it would spin on.
const CLIENT_LINGER: Duration = Duration::from_millis(100);
/// What the daemon sends a client whose worker died, before it lingers: zeros, more
/// than the longest vtest reply a worker sends (GET_CAPSET: a header, the valid
/// word and the capset), so a reply the worker was cut off in the middle of is
/// completed too. See [`answer_lost`].
const LOST_REPLY: [u8; 256] = [0; 256];
const _: () = assert!(LOST_REPLY.len() > 8 + 4 + crate::capset::VENUS_CAPSET_SIZE);
/// Rings one worker may report (the context allows at most 1024).
const MAX_RINGS: usize = 1024;
/// Largest status-word offset the daemon maps (it maps the blob from its start up
/// to the word): Mesa's rings live in blobs of well under a MiB, and a compromised
/// worker must not make the daemon map terabytes of address space.
const MAX_STATUS_OFFSET: u64 = 64 << 20;

/// A ring status word the daemon keeps mapped.
struct Status {
    map: SharedMemory,
    offset: u64,
}

/// The daemon's record of one live worker.
pub(crate) struct WorkerEntry {
    pid: u32,
    pidfd: OwnedFd,
    rings: Mutex<HashMap<RingId, Status>>,
}

impl WorkerEntry {
    /// Sets FATAL in every ring status word the worker reported.
    fn set_rings_fatal(&self) -> usize {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        for status in rings.values() {
            let _ = status
                .map
                .fetch_or_u32(status.offset, STATUS_FATAL, Ordering::SeqCst);
        }
        rings.len()
    }

    /// SIGKILL through the pidfd (never a recycled pid).
    fn kill(&self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
    }
}

/// The live workers of a server, for shutdown.
#[derive(Clone, Default)]
pub(crate) struct Workers(Arc<Mutex<HashMap<u64, Arc<WorkerEntry>>>>);

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("live", &self.lock().len())
            .finish()
    }
}

impl Workers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<WorkerEntry>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// FATAL on every ring of every worker; returns how many workers.
    pub(crate) fn set_rings_fatal(&self) -> usize {
        let all: Vec<_> = self.lock().values().cloned().collect();
        for w in &all {
            w.set_rings_fatal();
        }
        all.len()
    }

    /// Kills the worker serving `conn`, if it still runs.
    pub(crate) fn kill(&self, conn: u64) {
        let entry = self.lock().get(&conn).cloned();
        if let Some(w) = entry {
            w.kill();
        }
    }

    /// Kills every worker; returns how many.
    pub(crate) fn kill_all(&self) -> usize {
        let all: Vec<_> = self.lock().values().cloned().collect();
        for w in &all {
            w.kill();
        }
        all.len()
    }
}

/// Idle workers started ahead of clients (`worker_pool`), so a new connection
/// skips the exec and driver load; a filler thread tops the pool up after each take.
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
    filler: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct PoolInner {
    ready: Mutex<std::collections::VecDeque<Spawned>>,
    wake: std::sync::Condvar,
    stop: std::sync::atomic::AtomicBool,
    size: usize,
    settings: WorkerSettings,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts the filler thread (none when `size` is 0).
    pub(crate) fn start(size: usize, settings: &WorkerSettings) -> Self {
        let inner = Arc::new(PoolInner {
            ready: Mutex::new(std::collections::VecDeque::new()),
            wake: std::sync::Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
            size,
            settings: settings.clone(),
        });
        let filler = (size > 0)
            .then(|| {
                let inner = Arc::clone(&inner);
                std::thread::Builder::new()
                    .name("vtest-pool".into())
                    .spawn(move || fill(&inner))
                    .map_err(|e| log::warn!("vtest: no worker pool: {e}"))
                    .ok()
            })
            .flatten();
        Self {
            inner,
            filler: Mutex::new(filler),
        }
    }

    /// An idle worker, if one is ready.
    fn take(&self) -> Option<Spawned> {
        let taken = self
            .inner
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        self.inner.wake.notify_all();
        taken
    }

    /// Stops the filler and kills the idle workers.
    pub(crate) fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.wake.notify_all();
        let filler = self
            .filler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = filler {
            let _ = t.join();
        }
        let idle: Vec<Spawned> = self
            .inner
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for w in idle {
            reap_now(w.child);
        }
    }
}

fn fill(inner: &PoolInner) {
    loop {
        {
            let mut ready = inner.ready.lock().unwrap_or_else(PoisonError::into_inner);
            while !inner.stop.load(Ordering::Acquire) && ready.len() >= inner.size {
                ready = inner
                    .wake
                    .wait(ready)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        match spawn(&inner.settings) {
            Ok(w) => inner
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(w),
            Err(e) => {
                log::warn!(
                    "vtest: starting a pooled worker failed: {}",
                    crate::error_chain(&e)
                );
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A spawned worker before it serves.
pub(crate) struct Spawned {
    child: Child,
    /// The daemon's end of its control socket.
    pub(crate) control: OwnedFd,
    page: HangPage,
    pidfd: OwnedFd,
}

/// Starts `exe worker --sandbox-self-test PROBE` with the control socket and hang
/// page a real worker gets, and returns its output once it ended (the sandbox test
/// checks what each probe may and may not do).
pub fn sandbox_self_test(
    exe: &std::path::Path,
    probe: &str,
) -> Result<std::process::Output, WorkerError> {
    let (cmd, _ours, _page) = worker_command(&WorkerSettings {
        exe: Some(exe.to_path_buf()),
        ..WorkerSettings::default()
    })?;
    let mut cmd = cmd;
    cmd.arg("--sandbox-self-test")
        .arg(probe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.output().map_err(|source| WorkerError::Spawn {
        path: exe.to_path_buf(),
        source,
    })
}

/// The worker command line with its two fds placed, and the daemon's end of the
/// control socket.
fn worker_command(settings: &WorkerSettings) -> Result<(Command, OwnedFd, HangPage), WorkerError> {
    let (ours, theirs) = protocol::seqpacket_pair()?;
    let (page, page_fd) = HangPage::create()?;
    let exe = match &settings.exe {
        Some(p) => p.clone(),
        // Our own binary, even if its file was replaced or deleted since we started
        // (an upgrade in place): /proc/self/exe names the running image.
        None => PathBuf::from("/proc/self/exe"),
    };
    let mut cmd = Command::new(&exe);
    cmd.arg(WORKER_SUBCOMMAND)
        .arg("--max-open-files")
        .arg(settings.max_open_files.to_string())
        .env("MESA_SHADER_CACHE_DISABLE", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(bytes) = settings.max_address_space {
        cmd.arg("--max-address-space").arg(bytes.to_string());
    }
    if !settings.sandbox {
        cmd.arg("--no-sandbox");
    }
    proc::inherit_fds(
        &mut cmd,
        vec![
            (theirs, super::child::CONTROL_FD),
            (page_fd, super::child::HANG_FD),
        ],
    )?;
    Ok((cmd, ours, page))
}

/// Spawns a worker and waits for its READY.
fn spawn(settings: &WorkerSettings) -> Result<Spawned, WorkerError> {
    let (mut cmd, ours, page) = worker_command(settings)?;
    let exe = PathBuf::from(cmd.get_program());
    let child = cmd.spawn().map_err(|source| WorkerError::Spawn {
        path: exe.clone(),
        source,
    })?;
    // Closes the daemon's copies of the worker's ends.
    drop(cmd);
    let pidfd = match proc::pidfd(child.id()) {
        Ok(fd) => fd,
        Err(e) => {
            reap_now(child);
            return Err(e.into());
        }
    };
    let spawned = Spawned {
        child,
        control: ours,
        page,
        pidfd,
    };
    match wait_ready(&spawned.control) {
        Ok(()) => Ok(spawned),
        Err(e) => {
            reap_now(spawned.child);
            Err(e)
        }
    }
}

fn reap_now(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_ready(control: &OwnedFd) -> Result<(), WorkerError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WorkerError::StartTimeout(START_TIMEOUT));
        }
        let mut fds = [PollFd::new(control, PollFlags::IN)];
        let timeout = Timespec::try_from(left).ok();
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(WorkerError::Control(e.into())),
        }
        return match protocol::recv(control)? {
            Some(Msg::Ready) => Ok(()),
            Some(_) => Err(WorkerError::Malformed("expected READY")),
            None => Err(WorkerError::EarlyExit),
        };
    }
}

/// How a worker ended, for the log line.
fn describe(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        let name = match sig {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGKILL => "SIGKILL",
            libc::SIGSYS => "SIGSYS (seccomp violation)",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGTERM => "SIGTERM",
            _ => "a signal",
        };
        return format!("killed by {name} ({sig})");
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "ended".to_owned(),
    }
}

/// Runs connection `conn` in a worker process and supervises it until it has
/// ended (on the calling thread, a supervisor thread of the daemon).
pub(crate) fn run_connection(
    conn: u64,
    client: UnixStream,
    server: &Arc<ServerShared>,
    workers: &Workers,
    pool: &Pool,
) {
    let settings = &server.config.worker;
    // The VM the worker charges: the configured VM's one account, or an account of
    // its own (`vtest --socket`: every connection is a VM).
    let vm_account = server.vm_account.clone().unwrap_or_else(|| {
        let ctx = crate::ids::ContextId(u32::try_from(conn).unwrap_or(1).max(1));
        Arc::new(VmAccount::new(ctx.to_string(), server.config.venus))
    });
    let gate = server.qos.as_ref().map(|(qos, how)| match how {
        crate::vtest::WorkerQos::PerConnection(config) => GateSpec::OwnVm {
            qos: qos.clone(),
            name: format!("conn{conn}"),
            config: *config,
        },
        crate::vtest::WorkerQos::Vm(vm) => GateSpec::Vm {
            qos: qos.clone(),
            vm: *vm,
        },
    });
    let started = start(pool, settings, gate, &vm_account, |spawned| {
        let dup = client.try_clone().map_err(WorkerError::Control)?;
        let config = super::wire::WorkerConfigWire::from_config(&server.config).to_text()?;
        protocol::send(
            &spawned.control,
            &Msg::Serve {
                conn,
                config,
                client: OwnedFd::from(dup),
            },
        )
    });
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            server.warn.warn(format_args!(
                "vtest: conn {conn}: cannot start a worker: {}",
                crate::error_chain(&e)
            ));
            return;
        }
    };
    let ended = supervise(conn, started, workers, settings, &server.warn);
    if let Some(how) = ended {
        server
            .warn
            .warn(format_args!("vtest: {how}, client disconnected"));
        hang_up_lost(client);
    }
}

/// Ends the connection of a client whose worker died so that the client fails
/// rather than spins: [`answer_lost`], then [`linger`], then close.
fn hang_up_lost(client: UnixStream) {
    answer_lost(&client);
    linger(&client);
}

/// How a worker reaches the QoS arbiter.
#[derive(Debug)]
pub(crate) enum GateSpec {
    /// As a VM of its own, attached for as long as it serves.
    OwnVm {
        qos: crate::qos::QosHandle,
        name: String,
        config: vgpu_scheduler::VmConfig,
    },
    /// As `vm`, a VM already attached (a configured VM's worker).
    Vm {
        qos: crate::qos::QosHandle,
        vm: vgpu_scheduler::VmId,
    },
}

/// A worker that was handed its work, with what the daemon serves for it.
pub(crate) struct Started {
    spawned: Spawned,
    /// The daemon's end of the worker's account socket, and its claims.
    account: (OwnedFd, AccountServer),
    /// Serves the worker's gate until dropped.
    _gate: Option<crate::qos::GateServer>,
}

/// Takes a pooled worker (or spawns one; a pooled one that died while idle is
/// replaced), hands it its QoS gate (`gate`) and its VM's account (`account`), then
/// calls `serve` to give it its work.
pub(crate) fn start(
    pool: &Pool,
    settings: &WorkerSettings,
    gate: Option<GateSpec>,
    account: &Arc<VmAccount>,
    mut serve: impl FnMut(&Spawned) -> Result<(), WorkerError>,
) -> Result<Started, WorkerError> {
    type Served = ((OwnedFd, AccountServer), Option<crate::qos::GateServer>);
    let mut hand_over = |spawned: &Spawned| -> Result<Served, WorkerError> {
        let served_gate = match &gate {
            Some(spec) => {
                let (ours, theirs) = protocol::seqpacket_pair()?;
                let served = match spec {
                    GateSpec::OwnVm { qos, name, config } => crate::qos::serve_gate(
                        qos,
                        ours,
                        name.clone(),
                        *config,
                        Some(account.memory_probe()),
                    ),
                    GateSpec::Vm { qos, vm } => crate::qos::serve_gate_for(qos, ours, *vm),
                }
                .map_err(|e| WorkerError::Control(std::io::Error::other(e.to_string())))?;
                protocol::send(&spawned.control, &Msg::Gate(theirs))?;
                Some(served)
            }
            None => None,
        };
        // The worker's VM account: its end goes over too; the daemon's end is
        // served on the supervisor thread, and what it holds is credited when it
        // drops.
        let (ours, theirs) = protocol::seqpacket_pair()?;
        protocol::send(&spawned.control, &Msg::Account(theirs))?;
        serve(spawned)?;
        Ok(((ours, AccountServer::new(Arc::clone(account))), served_gate))
    };
    let mut pooled = pool.take();
    loop {
        let (spawned, was_pooled) = match pooled.take() {
            Some(s) => (s, true),
            None => (spawn(settings)?, false),
        };
        match hand_over(&spawned) {
            Ok((account, gate)) => {
                return Ok(Started {
                    spawned,
                    account,
                    _gate: gate,
                })
            }
            Err(e) => {
                reap_now(spawned.child);
                if !was_pooled {
                    return Err(e);
                }
            }
        }
    }
}

/// Supervises a started worker until it has ended: answers its account requests,
/// keeps its rings' status words, enforces the GPU timeout. Returns `None` when it
/// exited cleanly; otherwise the line to log (label, how it ended, rings set
/// FATAL), after setting FATAL on its rings.
pub(crate) fn supervise(
    conn: u64,
    started: Started,
    workers: &Workers,
    settings: &WorkerSettings,
    warn: &RateLimiter,
) -> Option<String> {
    let Started {
        spawned,
        account,
        _gate: gate_server,
    } = started;
    let mut account = Some(account);
    let pid = spawned.child.id();
    let Spawned {
        mut child,
        control,
        page,
        pidfd,
    } = spawned;
    let entry = Arc::new(WorkerEntry {
        pid,
        pidfd,
        rings: Mutex::new(HashMap::new()),
    });
    workers.lock().insert(conn, Arc::clone(&entry));
    let mut label = format!("conn {conn}");
    let mut held_until_exit: Option<AccountServer> = None;
    let mut control = Some(control);
    let mut killed_for: Option<String> = None;
    loop {
        let (pid_ready, control_ready, account_ready) = {
            let mut fds = vec![PollFd::new(&entry.pidfd, PollFlags::IN)];
            let control_at = control.as_ref().map(|c| {
                fds.push(PollFd::new(c, PollFlags::IN));
                fds.len() - 1
            });
            let account_at = account.as_ref().map(|(a, _)| {
                fds.push(PollFd::new(a, PollFlags::IN));
                fds.len() - 1
            });
            let timeout = Timespec::try_from(POLL).ok();
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("worker {pid} ({label}): polling failed: {e}");
                    std::thread::sleep(POLL);
                }
            }
            let ready = |at: Option<usize>| {
                at.and_then(|i| fds.get(i))
                    .is_some_and(|f| !f.revents().is_empty())
            };
            (
                !fds[0].revents().is_empty(),
                ready(control_at),
                ready(account_at),
            )
        };
        if account_ready {
            if let Some((fd, served)) = &mut account {
                match served.serve_one(fd) {
                    Ok(true) => {}
                    // The worker closed it (it is ending): what it held stays held
                    // until it has ended, then is credited below.
                    Ok(false) => {
                        held_until_exit = account.take().map(|(_, s)| s);
                    }
                    Err(e) => {
                        warn.warn(format_args!(
                            "{label}: worker {pid}: account: {}; killing it",
                            crate::error_chain(&e)
                        ));
                        entry.kill();
                        killed_for.get_or_insert_with(|| "a malformed account request".into());
                        held_until_exit = account.take().map(|(_, s)| s);
                    }
                }
            }
        }
        if control_ready {
            if let Some(c) = &control {
                match protocol::recv(c) {
                    Ok(Some(msg)) => handle(msg, &entry, &mut label, warn),
                    Ok(None) => control = None,
                    Err(e) => {
                        warn.warn(format_args!(
                            "{label}: worker {pid}: {}; killing it",
                            crate::error_chain(&e)
                        ));
                        entry.kill();
                        killed_for.get_or_insert_with(|| "a malformed control message".into());
                        control = None;
                    }
                }
            }
        }
        if killed_for.is_none() {
            if let Some(ns) = page.pending_for_ns() {
                if u128::from(ns) > settings.gpu_timeout.as_nanos() {
                    #[allow(clippy::cast_precision_loss)] // a log figure
                    let secs = ns as f64 / 1e9;
                    killed_for = Some(format!("GPU hang: work running {secs:.1} s"));
                    entry.kill();
                }
            }
        }
        if pid_ready {
            // What the worker sent just before it ended (a ring it created as it
            // crashed): its end is closed, so these reads end at EOF.
            if let Some(c) = &control {
                while let Ok(Some(msg)) = protocol::recv(c) {
                    handle(msg, &entry, &mut label, warn);
                }
            }
            break;
        }
    }
    let status = child.wait();
    workers.lock().remove(&conn);
    // The worker is gone, and with it all it allocated: credit its VM.
    drop(account);
    drop(held_until_exit);
    drop(gate_server);
    let clean = killed_for.is_none() && status.as_ref().is_ok_and(ExitStatus::success);
    if clean {
        log::debug!("{label}: worker {pid} exited");
        return None;
    }
    let rings = entry.set_rings_fatal();
    let how = match (&killed_for, &status) {
        (Some(reason), Ok(s)) => format!("{reason}; worker {pid} {}", describe(*s)),
        (Some(reason), Err(_)) => format!("{reason}; worker {pid} killed"),
        (None, Ok(s)) => format!("worker {pid} {}", describe(*s)),
        (None, Err(e)) => format!("worker {pid} could not be reaped: {e}"),
    };
    Some(format!("{label}: {how}; FATAL set on {rings} rings"))
}

/// Answers whatever request the client may be blocked on with [`LOST_REPLY`].
///
/// Mesa 25.0.7's `vtest_read` retries a read that returns end of file for ever, so
/// a client that sent a request the dead worker had read, and waits for its reply,
/// would spin at full CPU once the daemon closes the socket. Zeros claim nothing:
/// a sync read sees value 0 (not signalled), a capset is "not valid", a parameter
/// "unsupported"; a reply that carries a file descriptor (blob create, sync wait)
/// finds a byte without one and Mesa aborts ("invalid cmsghdr"). A client that goes
/// on sends its next request, which the daemon never reads: closing with it unread
/// makes the client's next read fail with ECONNRESET (the kernel's rule for a
/// stream socket closed with data it did not read), and once closed its next write
/// fails with EPIPE; Mesa aborts on either. So no request the client is waiting on
/// is left both read and unanswered, which is what the end-of-file spin needs.
/// Sent without blocking: a client that never reads gets what fits.
fn answer_lost(client: &UnixStream) {
    use rustix::net::{send, SendFlags};
    let _ = send(
        client,
        &LOST_REPLY,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    );
}

/// Waits up to [`CLIENT_LINGER`] for the client to send something, so closing the
/// socket resets the connection rather than ending it.
fn linger(client: &UnixStream) {
    let mut fds = [PollFd::new(client, PollFlags::IN)];
    let timeout = Timespec::try_from(CLIENT_LINGER).ok();
    let _ = poll(&mut fds, timeout.as_ref());
}

fn handle(msg: Msg, entry: &WorkerEntry, label: &mut String, warn: &RateLimiter) {
    match msg {
        Msg::Label(l) => *label = l,
        Msg::Ring {
            ring,
            status_offset,
            fd,
        } => {
            let mapped = Some(status_offset)
                .filter(|&o| o <= MAX_STATUS_OFFSET)
                .and_then(|o| o.checked_add(4))
                .ok_or(WorkerError::Malformed("ring status offset out of range"))
                .and_then(|len| {
                    check_sealed(&fd, len)?;
                    Ok(SharedMemory::map(&fd, len)?)
                });
            match mapped {
                Ok(map) => {
                    let mut rings = entry.rings.lock().unwrap_or_else(PoisonError::into_inner);
                    if rings.len() < MAX_RINGS || rings.contains_key(&ring) {
                        rings.insert(
                            ring,
                            Status {
                                map,
                                offset: status_offset,
                            },
                        );
                    }
                }
                Err(e) => warn.warn(format_args!(
                    "{label}: worker {}: ring {ring} not mapped: {}",
                    entry.pid,
                    crate::error_chain(&e)
                )),
            }
        }
        Msg::RingGone(ring) => {
            entry
                .rings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&ring);
        }
        Msg::Ready | Msg::Serve { .. } | Msg::ServeGpu { .. } | Msg::Gate(_) | Msg::Account(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::net::UnixStream;

    use super::{hang_up_lost, LOST_REPLY};

    /// The case Mesa spins on: the dead worker had read the client's request, and the
    /// client waits for the reply.
    #[test]
    fn a_client_waiting_on_a_read_request_gets_zeros_then_a_reset_not_end_of_file() {
        let (daemon, mut client) = UnixStream::pair().expect("socketpair");
        // SYNC_READ (header and id), read by the worker before it died.
        client
            .write_all(&[2, 0, 0, 0, 22, 0, 0, 0, 7, 0, 0, 0])
            .expect("send");
        let mut request = [0u8; 12];
        (&daemon).read_exact(&mut request).expect("worker reads");
        let hang_up = std::thread::spawn(move || hang_up_lost(daemon));

        // Mesa reads the header and the value: zeros, so "not signalled".
        let mut reply = [0xffu8; 16];
        client
            .read_exact(&mut reply)
            .expect("a reply, not end of file");
        assert_eq!(reply, [0; 16]);
        // It asks again; that request is never read, so the client's read after the
        // rest of the zeros fails instead of returning end of file.
        client
            .write_all(&[2, 0, 0, 0, 22, 0, 0, 0, 7, 0, 0, 0])
            .expect("send again");
        let mut rest = vec![0u8; LOST_REPLY.len() - 16];
        client.read_exact(&mut rest).expect("the rest of the zeros");
        let mut byte = [0u8; 1];
        let err = client
            .read(&mut byte)
            .expect_err("a reset, not end of file");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        hang_up.join().expect("hang-up thread");
    }

    /// A client that was not waiting (its request not yet read, or none) fails on its
    /// next write once the daemon has hung up.
    #[test]
    fn an_idle_client_fails_on_its_next_write() {
        let (daemon, mut client) = UnixStream::pair().expect("socketpair");
        hang_up_lost(daemon);
        let mut zeros = vec![0u8; LOST_REPLY.len()];
        client.read_exact(&mut zeros).expect("the zeros");
        let err = client
            .write_all(&[2, 0, 0, 0, 22, 0, 0, 0, 7, 0, 0, 0])
            .expect_err("a broken pipe");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
    }
}
