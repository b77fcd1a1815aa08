//! The vtest front door: Mesa's vtest protocol (version 3) on a unix socket, so the
//! unmodified Mesa Venus driver can use the renderer without a VM.
//!
//! One thread per connection; each connection is one renderer context. A client that
//! misbehaves or hangs up loses only its own context; the server logs one line
//! (rate-limited) and keeps serving everyone else.

pub mod client;
mod conn;
pub mod probe;
pub mod protocol;
mod sync;

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub use conn::ConnError;
pub use sync::SyncError;

use crate::capset::{VenusCapset, VENUS_CAPSET_SIZE};
use crate::ratelimit::RateLimiter;
use crate::renderer::{ContextConfig, ExecutorFactory};

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
}

type Clients = Arc<Mutex<HashMap<u64, UnixStream>>>;

/// A bound vtest server.
pub struct VtestServer {
    listener: UnixListener,
    shared: Arc<ServerShared>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for VtestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtestServer")
            .field("socket", &self.shared.config.socket)
            .finish_non_exhaustive()
    }
}

impl VtestServer {
    /// Binds the socket (replacing a stale one left by a dead server).
    pub fn bind(
        config: VtestConfig,
        capset: &VenusCapset,
        factory: Arc<dyn ExecutorFactory>,
    ) -> Result<Self, VtestError> {
        remove_stale_socket(&config.socket)?;
        let listener = UnixListener::bind(&config.socket).map_err(|source| VtestError::Bind {
            path: config.socket.clone(),
            source,
        })?;
        Ok(Self {
            listener,
            shared: Arc::new(ServerShared {
                config,
                factory,
                capset: capset.to_bytes(),
                warn: RateLimiter::new("vgpu::vtest", Duration::from_secs(5), 20),
                next_context: AtomicU32::new(1),
            }),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.shared.config.socket
    }

    /// Serves clients on the calling thread until stopped (see [`VtestServer::spawn`]).
    pub fn run(self) {
        let clients: Clients = Arc::new(Mutex::new(HashMap::new()));
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut next_conn = 0u64;
        log::info!("vtest: listening on {}", self.path().display());
        for incoming in self.listener.incoming() {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            reap(&mut threads);
            let stream = match incoming {
                Ok(s) => s,
                Err(e) => {
                    self.shared
                        .warn
                        .warn(format_args!("vtest: accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if threads.len() >= self.shared.config.max_clients {
                self.shared.warn.warn(format_args!(
                    "vtest: refusing a client: {} clients connected",
                    threads.len()
                ));
                continue;
            }
            next_conn += 1;
            match spawn_connection(next_conn, stream, &self.shared, &clients) {
                Ok(t) => threads.push(t),
                Err(e) => log::error!("vtest: cannot start a connection thread: {e}"),
            }
        }
        // Stopping: hang up on every client, then join their threads.
        for (_, stream) in clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for t in threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(self.path());
        log::info!("vtest: stopped");
    }

    /// Serves on a background thread; the handle stops it when dropped.
    pub fn spawn(self) -> Result<ServerHandle, VtestError> {
        let stop = Arc::clone(&self.stop);
        let path = self.path().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("vtest-accept".into())
            .spawn(move || self.run())
            .map_err(VtestError::Spawn)?;
        Ok(ServerHandle {
            stop,
            path,
            thread: Some(thread),
        })
    }
}

/// A server running on a background thread.
#[derive(Debug)]
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
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
            self.stop.store(true, Ordering::Release);
            // Wake the blocking accept.
            let _ = UnixStream::connect(&self.path);
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn reap(threads: &mut Vec<JoinHandle<()>>) {
    let (done, live): (Vec<_>, Vec<_>) = threads.drain(..).partition(|t| t.is_finished());
    *threads = live;
    for t in done {
        let _ = t.join();
    }
}

fn spawn_connection(
    conn_id: u64,
    stream: UnixStream,
    shared: &Arc<ServerShared>,
    clients: &Clients,
) -> std::io::Result<JoinHandle<()>> {
    let registry_copy = stream.try_clone()?;
    clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(conn_id, registry_copy);
    let shared = Arc::clone(shared);
    let clients = Arc::clone(clients);
    std::thread::Builder::new()
        .name(format!("vtest-c{conn_id}"))
        .spawn(move || {
            let mut conn = conn::Connection::new(stream, Arc::clone(&shared), conn_id);
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
            clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&conn_id);
        })
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
