//! Orderly exit on `SIGTERM`/`SIGINT` for every front door of the daemon.
//!
//! A signal thread waits for the first signal, then: sets FATAL on every ring of
//! every live context of every VM (a guest sees a lost device instead of a silent
//! host), removes every socket file of the daemon, and runs the stop action
//! (`daemon::run` wakes its main thread). Each vtest server stops accepting, lets
//! each connection answer what its client already sent (Mesa 25.0.7 spins forever on
//! an end-of-file in the middle of a reply), then fails the contexts, hangs up and
//! joins its threads; vhost-user contexts fail at once; `main` exits 0. If the process
//! is still alive after the grace period, or a second signal arrives, the signal
//! thread exits 0 itself.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::renderer::ContextRegistry;

/// The reason every context is failed with.
pub const SHUTDOWN_REASON: &str = "the daemon is shutting down";

/// Errors installing the handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Registering the signal handler failed.
    #[error("installing the SIGTERM/SIGINT handler failed")]
    Signal(#[source] std::io::Error),
    /// Starting the signal thread failed.
    #[error("starting the shutdown thread failed")]
    Spawn(#[source] std::io::Error),
}

/// What to do on the first `SIGTERM` or `SIGINT`.
pub struct OnSignal {
    /// The socket files to remove (every VM's sockets).
    pub sockets: Vec<PathBuf>,
    /// Contexts whose rings get FATAL (one registry per front door).
    pub contexts: Vec<ContextRegistry>,
    /// Also set FATAL on rings of contexts kept elsewhere (worker processes); each
    /// returns how many contexts it reached.
    pub also_fatal: Vec<Box<dyn Fn() -> usize + Send>>,
    /// The front door's stop action (run after the rings got FATAL and the socket
    /// is gone); it fails the contexts.
    pub stop: Box<dyn FnOnce() + Send>,
    /// How long the stop action may take before the process exits anyway.
    pub grace: Duration,
}

impl std::fmt::Debug for OnSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnSignal")
            .field("sockets", &self.sockets)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// Installs the handler and starts the signal thread.
pub fn on_termination(action: OnSignal) -> Result<(), ShutdownError> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(ShutdownError::Signal)?;
    std::thread::Builder::new()
        .name("vgpu-shutdown".to_owned())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            log::info!(
                "shutdown: {} received: FATAL on every ring, removing {} sockets",
                signal_name(signal),
                action.sockets.len()
            );
            let contexts: usize = action
                .contexts
                .iter()
                .map(ContextRegistry::set_rings_fatal)
                .sum::<usize>()
                + action.also_fatal.iter().map(|f| f()).sum::<usize>();
            for socket in &action.sockets {
                remove_socket(socket);
            }
            log::info!("shutdown: rings of {contexts} contexts set FATAL");
            (action.stop)();
            // An overflowing grace period waits for a second signal only.
            let deadline = Instant::now().checked_add(action.grace);
            while deadline.is_none_or(|d| Instant::now() < d) {
                if let Some(again) = signals.pending().next() {
                    log::warn!("shutdown: {} again: exiting now", signal_name(again));
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            log::warn!(
                "shutdown: not stopped within {:?}; exiting anyway",
                action.grace
            );
            std::process::exit(0);
        })
        .map_err(ShutdownError::Spawn)?;
    Ok(())
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// Removes `path` if it is a socket (never another kind of file that replaced it).
fn remove_socket(path: &std::path::Path) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("shutdown: removing {} failed: {e}", path.display());
        }
    }
}
