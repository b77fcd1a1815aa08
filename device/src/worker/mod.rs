//! Worker processes: each vtest connection (one renderer context) and each vhost-user
//! (virtio-gpu) context runs in its own process, so a host-driver crash, an abort or
//! a GPU hang caused by one guest context ends only that context.
//!
//! ```text
//!   daemon (accept loop, one supervisor thread per worker)
//!     │  socketpair(SEQPACKET): control          memfd: hang page (u64)
//!     ▼
//!   vhost-user-vgpu worker  (re-exec of the same binary, fds 3 and 4)
//!     preload loader + host ICD → sandbox (no_new_privs, RLIMIT_NOFILE, seccomp)
//!     → READY → [GATE] → ACCOUNT
//!     → SERVE(client fd, config) → conn::Connection for that vtest client
//!       or SERVE_GPU(ops socket, config) → a CoreBackend with one virtio-gpu context
//!     → RING(memfd, status offset) for each ring, so the daemon can set FATAL
//! ```
//!
//! - [`supervisor`]: daemon side: spawns a worker, hands it the client, keeps each
//!   ring's status word mapped, notices the worker's death through a pidfd, and
//!   kills it when its oldest host fence is older than the GPU timeout.
//! - [`child`]: worker side: `vhost-user-vgpu worker`.
//! - [`protocol`]: the control messages.
//! - [`account`]: the worker's VM account, kept by the daemon: every device-memory
//!   charge and fd slot a worker takes is granted against its whole VM.
//! - [`hang`]: the shared page the watchdog reads.
//! - [`remote`]: daemon side of virtio-gpu contexts in workers (`ProcessBackend`);
//!   [`ops`] its context-operations socket; [`gpu`] the worker side.

pub(crate) mod account;
pub mod child;
pub(crate) mod gpu;
pub(crate) mod hang;
pub(crate) mod ops;
pub(crate) mod protocol;
pub mod remote;
pub(crate) mod supervisor;
pub(crate) mod wire;

pub use supervisor::sandbox_self_test;

use std::path::PathBuf;
use std::time::Duration;

/// The hidden subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "worker";

/// Errors of the worker machinery (either side).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A control-socket call failed.
    #[error("control socket I/O failed")]
    Control(#[source] std::io::Error),
    /// A control message did not parse.
    #[error("malformed control message: {0}")]
    Malformed(&'static str),
    /// The worker did not become ready in time.
    #[error("the worker did not start within {0:?}")]
    StartTimeout(Duration),
    /// The worker closed its control socket before it was ready.
    #[error("the worker exited before it was ready")]
    EarlyExit,
    /// Spawning the worker failed.
    #[error("spawning {path} failed")]
    Spawn {
        /// The worker executable.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An fd or memfd operation failed.
    #[error("fd operation failed")]
    Fd(#[from] crate::sys::FdError),
    /// Mapping shared memory failed.
    #[error("mapping shared memory failed")]
    Shm(#[from] crate::sys::ShmError),
    /// A process call failed.
    #[error("process call failed")]
    Process(#[from] crate::sys::ProcessError),
    /// Installing the seccomp filter failed.
    #[error("installing the seccomp filter failed")]
    Seccomp(#[from] crate::sys::SeccompError),
    /// Loading the host driver failed.
    #[error("preloading the host Vulkan driver failed")]
    Preload(#[source] crate::renderer::venus::VenusError),
    /// The configuration sent to the worker did not parse.
    #[error("the worker's configuration is invalid")]
    Config(#[source] toml::de::Error),
    /// Bad worker command line.
    #[error("bad worker arguments: {0}")]
    Usage(String),
}

/// Where a vtest connection runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// On a thread of the daemon (one crash ends every client).
    #[default]
    Thread,
    /// In a sandboxed worker process of its own.
    Process,
}

impl Isolation {
    /// The config/flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Process => "process",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "thread" => Ok(Self::Thread),
            "process" => Ok(Self::Process),
            _ => Err("`process` or `thread`"),
        }
    }
}

/// Worker-process settings (used when [`Isolation::Process`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The binary to re-exec with `worker` (`None`: our own executable, through
    /// `/proc/self/exe`, so a binary replaced on disk still starts the same
    /// workers). Tests that run the server in-process point it at a daemon binary.
    pub exe: Option<PathBuf>,
    /// Work on a host queue running longer than this kills the worker (GPU hang).
    pub gpu_timeout: Duration,
    /// Sandbox workers (seccomp, no_new_privs, RLIMIT_NOFILE); off only for
    /// debugging and the `strace` survey that builds the allow-list.
    pub sandbox: bool,
    /// `RLIMIT_NOFILE` inside a worker.
    pub max_open_files: u64,
    /// `RLIMIT_AS` inside a worker in bytes (`None`: unlimited).
    pub max_address_space: Option<u64>,
    /// Idle workers kept started ahead of clients (0: start each on connect).
    pub pool: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            exe: None,
            gpu_timeout: Duration::from_secs(5),
            sandbox: true,
            max_open_files: 4096,
            max_address_space: None,
            pool: 1,
        }
    }
}
