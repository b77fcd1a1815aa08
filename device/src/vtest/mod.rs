//! The vtest front door: Mesa's vtest protocol (version 3) on a unix socket, so the
//! unmodified Mesa Venus driver can use the renderer without a VM.
//!
//! One thread per connection; each connection is one renderer context. A client that
//! misbehaves or hangs up loses only its own context; the server logs one line
//! (rate-limited) and keeps serving everyone else.

pub mod client;
mod conn;
mod peer;
pub mod probe;
pub mod protocol;
mod sync;

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use conn::ConnError;
pub use sync::SyncError;

use crate::capset::{VenusCapset, VENUS_CAPSET_SIZE};
use crate::ratelimit::RateLimiter;
use crate::renderer::venus::VenusLimits;
use crate::renderer::{Context, ContextConfig, ContextRegistry, ExecutorFactory};
use crate::worker::supervisor::{Pool, Workers};
use crate::worker::{Isolation, WorkerSettings};
use peer::Peer;

/// Errors of the vtest server itself (not of one client).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VtestError {
    /// The socket path is in use by a live server.
    #[error("{0} is in use by another server")]
    InUse(PathBuf),
    /// The socket path exists and is not a socket.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Binding failed.
    #[error("binding {path} failed")]
    Bind {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Spawning a thread failed.
    #[error("spawning a thread failed")]
    Spawn(#[source] std::io::Error),
    /// Creating the socket pair that wakes the accept loop to stop failed.
    #[error("creating the stop socket failed")]
    StopSocket(#[source] std::io::Error),
}

/// vtest server configuration (validated by the CLI layer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VtestConfig {
    /// Socket path.
    pub socket: PathBuf,
    /// Per-context limits.
    pub context: ContextConfig,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Simultaneous clients.
    pub max_clients: usize,
    /// Syncs (and pending sync waits) per connection.
    pub max_syncs: usize,
    /// Connections one process (peer pid) may hold.
    pub max_clients_per_pid: usize,
    /// Connections one user (peer uid) may hold.
    pub max_clients_per_uid: usize,
    /// A client must finish the handshake (up to CONTEXT_INIT) this soon after
    /// connecting, or it is dropped.
    pub handshake_timeout: Duration,
    /// A client that starts a message must send all of it within this time.
    pub message_timeout: Duration,
    /// A reply the client does not read within this time (its socket buffer stays
    /// full) drops the client.
    pub reply_timeout: Duration,
    /// Venus limits (device-memory quota, instances, devices, objects, fds). The
    /// binary builds its renderer factory from these.
    pub venus: VenusLimits,
    /// The VM every connection on this socket belongs to (log lines name it);
    /// `None`: each connection is a VM of its own.
    pub vm: Option<crate::config::VmName>,
    /// Where each connection runs: a thread of the daemon or a worker process.
    pub isolation: Isolation,
    /// Worker-process settings (GPU timeout, sandbox).
    pub worker: WorkerSettings,
}

impl VtestConfig {
    /// Defaults for `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            context: ContextConfig::default(),
            max_message_bytes: 16 << 20,
            max_clients: 64,
            max_syncs: 4096,
            max_clients_per_pid: 16,
            max_clients_per_uid: 64,
            handshake_timeout: Duration::from_secs(5),
            message_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
            venus: VenusLimits::default(),
            vm: None,
            isolation: Isolation::default(),
            worker: WorkerSettings::default(),
        }
    }

    /// The server of `socket` with the daemon's vtest `settings` and worker
    /// settings and the limits of `vm` (its `gpu_timeout_ms` is its workers'
    /// watchdog deadline); `venus` is the VM's Venus limits with its fd limits
    /// resolved.
    pub fn for_vm(
        socket: PathBuf,
        settings: &crate::config::VtestSettings,
        worker: &crate::config::WorkerConfig,
        vm: &crate::config::VmSpec,
        venus: VenusLimits,
    ) -> Self {
        Self {
            socket,
            context: vm.context,
            max_message_bytes: settings.max_message_bytes,
            max_clients: settings.max_clients,
            max_syncs: settings.max_syncs,
            max_clients_per_pid: settings.max_clients_per_pid,
            max_clients_per_uid: settings.max_clients_per_uid,
            handshake_timeout: settings.handshake_timeout,
            message_timeout: settings.message_timeout,
            reply_timeout: settings.reply_timeout,
            venus,
            vm: Some(vm.name.clone()),
            isolation: worker.isolation,
            worker: WorkerSettings {
                gpu_timeout: vm.gpu_timeout,
                sandbox: worker.sandbox,
                max_open_files: worker.max_open_files,
                pool: worker.pool,
                ..WorkerSettings::default()
            },
        }
    }
}

/// What every connection thread shares.
pub(crate) struct ServerShared {
    pub(crate) config: VtestConfig,
    pub(crate) factory: Arc<dyn ExecutorFactory>,
    pub(crate) capset: [u8; VENUS_CAPSET_SIZE],
    pub(crate) warn: RateLimiter,
    pub(crate) next_context: AtomicU32,
    /// Every live context, so shutdown can fail them all.
    pub(crate) contexts: ContextRegistry,
    /// Run on each context right after it is created, with the client's name and
    /// the connection's label (a worker process installs its ring hook here).
    pub(crate) on_context: Option<ContextHook>,
    /// The arbiter a connection served in a worker process submits through (over a
    /// gate socket the daemon hands the worker), and the QoS of the VM it attaches as.
    /// Connections on daemon threads use the factory's gate instead.
    pub(crate) qos: Option<(crate::qos::QosHandle, WorkerQos)>,
    /// The account every worker process of this server charges (a configured VM);
    /// `None`: each worker's connection is a VM with an account of its own.
    pub(crate) vm_account: Option<Arc<crate::renderer::venus::VmAccount>>,
}

/// How a connection served in a worker process attaches to the arbiter.
#[derive(Clone, Copy, Debug)]
pub enum WorkerQos {
    /// Every connection is a VM of its own with this QoS (`vtest --socket`).
    PerConnection(vgpu_scheduler::VmConfig),
    /// Every connection submits as this VM, attached once (a configured VM: all its
    /// connections draw on its one share).
    Vm(vgpu_scheduler::VmId),
}

/// See [`ServerShared::on_context`].
pub(crate) type ContextHook = Box<dyn Fn(&Context, &str, &str) + Send + Sync>;

type Clients = Arc<Mutex<HashMap<u64, UnixStream>>>;

/// A bound vtest server.
pub struct VtestServer {
    listener: UnixListener,
    /// The socket file's inode, so stopping removes only the file this server made.
    inode: Option<u64>,
    shared: Arc<ServerShared>,
    stopper: Stopper,
    /// Readable once [`Stopper::stop`] wrote to its end.
    wake: UnixStream,
    /// Live worker processes (process isolation).
    workers: Workers,
}

impl std::fmt::Debug for VtestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtestServer")
            .field("socket", &self.shared.config.socket)
            .finish_non_exhaustive()
    }
}

/// Stops a [`VtestServer`] from any thread (a signal handler thread, a test).
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    wake: Arc<UnixStream>,
}

impl Stopper {
    /// Asks the accept loop to stop: it stops accepting, removes the socket, sets
    /// FATAL on every ring, lets connections answer what their clients already sent,
    /// then fails the contexts left, hangs up on every client, joins the connection
    /// threads and returns (see `VtestServer::stop_clients`).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        // A full buffer is still readable, so an error here still wakes the loop.
        let _ = (&*self.wake).write(&[1]);
    }
}

/// How long a refused connection is held before it is closed. Mesa sends its first
/// message right after connecting; closing a socket with unread data makes the
/// client's next read fail with ECONNRESET, and Mesa 25.0.7 then reports "lost
/// connection" and aborts. A plain EOF would leave it spinning in `vtest_read`, which
/// retries a zero-byte read forever.
const REFUSE_LINGER: Duration = Duration::from_millis(100);
/// How long connections may take to answer what their clients already sent when the
/// server stops, before their contexts are failed.
const DRAIN: Duration = Duration::from_secs(1);
/// Refused connections held at once (the oldest is closed first beyond this).
const MAX_REFUSED_HELD: usize = 64;

/// What [`VtestServer::wait_for_client`] saw.
enum Wait {
    Client,
    Timeout,
    Stop,
}

/// A connection thread and the peer it serves.
struct ConnThread {
    thread: JoinHandle<()>,
    peer: Option<Peer>,
}

impl VtestServer {
    /// Binds the socket (replacing a stale one left by a dead server).
    pub fn bind(
        config: VtestConfig,
        capset: &VenusCapset,
        factory: Arc<dyn ExecutorFactory>,
    ) -> Result<Self, VtestError> {
        remove_stale_socket(&config.socket)?;
        let bind_err = |source| VtestError::Bind {
            path: config.socket.clone(),
            source,
        };
        let listener = UnixListener::bind(&config.socket).map_err(bind_err)?;
        // Polled with the stop socket, then accepted without blocking.
        listener.set_nonblocking(true).map_err(bind_err)?;
        let inode = std::fs::symlink_metadata(&config.socket)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let (wake, wake_tx) = UnixStream::pair().map_err(VtestError::StopSocket)?;
        wake_tx
            .set_nonblocking(true)
            .map_err(VtestError::StopSocket)?;
        Ok(Self {
            listener,
            inode,
            shared: Arc::new(ServerShared {
                config,
                factory,
                capset: capset.to_bytes(),
                warn: RateLimiter::new("vgpu::vtest", Duration::from_secs(5), 20),
                next_context: AtomicU32::new(1),
                contexts: ContextRegistry::new(),
                on_context: None,
                qos: None,
                vm_account: None,
            }),
            stopper: Stopper {
                stop: Arc::new(AtomicBool::new(false)),
                wake: Arc::new(wake_tx),
            },
            wake,
            workers: Workers::default(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.shared.config.socket
    }

    /// Schedules connections served in worker processes through `qos`'s arbiter: each
    /// connection's worker gets a gate socket, attached as `config` says. (Connections
    /// on daemon threads submit through the factory's gate.) Call before
    /// [`VtestServer::run`] or [`VtestServer::spawn`].
    pub fn with_qos(mut self, qos: crate::qos::QosHandle, config: WorkerQos) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.qos = Some((qos, config)),
            None => log::error!("vtest: QoS set on a server already running; ignored"),
        }
        self
    }

    /// Makes every connection served in a worker process charge `account` (through
    /// its account socket), so the VM's quota and fd limits hold across all of its
    /// connections. Call before [`VtestServer::run`] or [`VtestServer::spawn`].
    pub fn with_vm_account(mut self, account: Arc<crate::renderer::venus::VmAccount>) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.vm_account = Some(account),
            None => log::error!("vtest: VM account set on a server already running; ignored"),
        }
        self
    }

    /// A handle that stops [`VtestServer::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// The server's live contexts.
    pub fn contexts(&self) -> ContextRegistry {
        self.shared.contexts.clone()
    }

    /// Serves clients on the calling thread until stopped (see [`Stopper`]).
    pub fn run(self) {
        let clients: Clients = Arc::new(Mutex::new(HashMap::new()));
        let mut threads: Vec<ConnThread> = Vec::new();
        let mut next_conn = 0u64;
        let mut refused: VecDeque<(UnixStream, Instant)> = VecDeque::new();
        let pool_size = match self.shared.config.isolation {
            Isolation::Process => self.shared.config.worker.pool,
            Isolation::Thread => 0,
        };
        let pool = Arc::new(Pool::start(pool_size, &self.shared.config.worker));
        log::info!("vtest: listening on {}", self.path().display());
        loop {
            let linger = refused
                .front()
                .map(|(_, at)| (*at + REFUSE_LINGER).saturating_duration_since(Instant::now()));
            let wait = self.wait_for_client(linger);
            while refused
                .front()
                .is_some_and(|(_, at)| at.elapsed() >= REFUSE_LINGER)
            {
                refused.pop_front();
            }
            match wait {
                Wait::Stop => break,
                Wait::Timeout => continue,
                Wait::Client => {}
            }
            reap(&mut threads);
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => {
                    self.shared
                        .warn
                        .warn(format_args!("vtest: accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let peer = Peer::of(&stream);
            if let Err(why) = self.admit(&threads, peer) {
                self.shared.warn.warn(format_args!(
                    "vtest: refusing a client ({}): {why}",
                    peer.map_or_else(|| "unknown peer".to_owned(), |p| p.to_string())
                ));
                if refused.len() >= MAX_REFUSED_HELD {
                    refused.pop_front();
                }
                refused.push_back((stream, Instant::now()));
                continue;
            }
            next_conn += 1;
            let spawned = spawn_connection(
                next_conn,
                stream,
                &self.shared,
                &clients,
                &self.workers,
                &pool,
            );
            match spawned {
                Ok(thread) => threads.push(ConnThread { thread, peer }),
                Err(e) => log::error!("vtest: cannot start a connection thread: {e}"),
            }
        }
        self.stop_clients(&clients, threads);
        pool.shutdown();
    }

    /// Stopping: no new clients; FATAL on every ring; each connection answers what
    /// its client already sent (its reads end once the socket's read side is shut,
    /// and the client's next write fails), for up to [`DRAIN`]; then every context
    /// left fails (waits give up), every client is hung up on, the threads joined.
    fn stop_clients(&self, clients: &Clients, threads: Vec<ConnThread>) {
        self.remove_socket();
        let contexts = &self.shared.contexts;
        contexts.set_rings_fatal();
        let in_workers = self.workers.set_rings_fatal();
        if in_workers > 0 {
            log::info!("vtest: rings of {in_workers} worker contexts set FATAL");
        }
        let shut = |how| {
            for stream in clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
            {
                let _ = stream.shutdown(how);
            }
        };
        shut(std::net::Shutdown::Read);
        let deadline = Instant::now() + DRAIN;
        while Instant::now() < deadline && !threads.iter().all(|t| t.thread.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let failed = contexts.fail_all(crate::shutdown::SHUTDOWN_REASON) + self.workers.kill_all();
        shut(std::net::Shutdown::Both);
        for t in threads {
            let _ = t.thread.join();
        }
        if failed > 0 {
            log::info!("vtest: {failed} contexts still busy were failed");
        }
        log::info!("vtest: stopped");
    }

    /// Blocks until a client is waiting to be accepted, the server is stopped, or
    /// `timeout` (if any) passes.
    fn wait_for_client(&self, timeout: Option<Duration>) -> Wait {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
        loop {
            if self.stopper.stop.load(Ordering::Acquire) {
                return Wait::Stop;
            }
            let mut fds = [
                PollFd::new(&self.listener, PollFlags::IN),
                PollFd::new(&self.wake, PollFlags::IN),
            ];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return Wait::Timeout,
                Ok(_) if fds[1].revents().is_empty() => return Wait::Client,
                // The stop flag is checked above.
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("vtest: polling the listening socket failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Whether a client of `peer` may connect now, or why not.
    fn admit(&self, threads: &[ConnThread], peer: Option<Peer>) -> Result<(), String> {
        let config = &self.shared.config;
        if threads.len() >= config.max_clients {
            return Err(format!("{} clients connected", threads.len()));
        }
        let Some(peer) = peer else {
            return Ok(());
        };
        let same_pid = threads
            .iter()
            .filter(|t| t.peer.is_some_and(|p| p.pid == peer.pid))
            .count();
        if same_pid >= config.max_clients_per_pid {
            return Err(format!("pid {} holds {same_pid} connections", peer.pid));
        }
        let same_uid = threads
            .iter()
            .filter(|t| t.peer.is_some_and(|p| p.uid == peer.uid))
            .count();
        if same_uid >= config.max_clients_per_uid {
            return Err(format!("uid {} holds {same_uid} connections", peer.uid));
        }
        Ok(())
    }

    /// Removes the socket file if it is still the one this server bound.
    fn remove_socket(&self) {
        let path = self.path();
        let current = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if current.is_some() && current == self.inode {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Serves on a background thread; the handle stops it when dropped.
    pub fn spawn(self) -> Result<ServerHandle, VtestError> {
        let stopper = self.stopper();
        let path = self.path().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("vtest-accept".into())
            .spawn(move || self.run())
            .map_err(VtestError::Spawn)?;
        Ok(ServerHandle {
            stopper,
            path,
            thread: Some(thread),
        })
    }
}

/// A server running on a background thread.
#[derive(Debug)]
pub struct ServerHandle {
    stopper: Stopper,
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, hangs up on every client and joins all threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn reap(threads: &mut Vec<ConnThread>) {
    let (done, live): (Vec<_>, Vec<_>) = threads.drain(..).partition(|t| t.thread.is_finished());
    *threads = live;
    for t in done {
        let _ = t.thread.join();
    }
}

fn spawn_connection(
    conn_id: u64,
    stream: UnixStream,
    shared: &Arc<ServerShared>,
    clients: &Clients,
    workers: &Workers,
    pool: &Arc<Pool>,
) -> std::io::Result<JoinHandle<()>> {
    let registry_copy = stream.try_clone()?;
    clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(conn_id, registry_copy);
    let shared = Arc::clone(shared);
    let clients = Arc::clone(clients);
    let workers = workers.clone();
    let pool = Arc::clone(pool);
    let (name, isolation) = match shared.config.isolation {
        Isolation::Thread => (format!("vtest-c{conn_id}"), Isolation::Thread),
        Isolation::Process => (format!("vtest-w{conn_id}"), Isolation::Process),
    };
    std::thread::Builder::new().name(name).spawn(move || {
        match isolation {
            Isolation::Thread => serve_one(stream, &shared, conn_id),
            Isolation::Process => {
                crate::worker::supervisor::run_connection(
                    conn_id, stream, &shared, &workers, &pool,
                );
            }
        }
        clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&conn_id);
    })
}

/// Serves one client on the calling thread (a connection thread of the daemon, or
/// a worker process's main thread) until it hangs up or fails, then tears its
/// context down.
pub(crate) fn serve_one(stream: UnixStream, shared: &Arc<ServerShared>, conn_id: u64) {
    let mut conn = conn::Connection::new(stream, Arc::clone(shared), conn_id);
    let result = conn.run();
    let label = conn.label();
    match result {
        Ok(()) => log::debug!("vtest: {label} disconnected"),
        // The context's fatal hook already logged the one line.
        Err(e) if conn.context_failed() => {
            log::debug!("vtest: {label} closed: {}", crate::error_chain(&e));
        }
        Err(e) => shared.warn.warn(format_args!(
            "vtest: dropping {label}: {}",
            crate::error_chain(&e)
        )),
    }
    // Tears down the context: stops ring and monitor threads, frees resources.
    drop(conn);
}

fn remove_stale_socket(path: &Path) -> Result<(), VtestError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(VtestError::NotASocket(path.to_path_buf()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(VtestError::InUse(path.to_path_buf()));
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}
