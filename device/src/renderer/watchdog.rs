//! The GPU-hang watchdog of contexts that run in the daemon (vhost-user contexts, and
//! vtest connections with `isolation = "thread"`): one owned thread that looks at
//! every watched registry every [`PERIOD`] and fails each context whose oldest host
//! fence has been pending longer than its VM's `gpu_timeout_ms`
//! ([`ContextRegistry::fail_hung`]). The guest then sees FATAL on its rings at once
//! rather than waiting forever. Contexts in worker processes have the supervisor's
//! watchdog instead, which can also stop the work (it kills the worker).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::ContextRegistry;

/// How often the watchdog looks.
pub const PERIOD: Duration = Duration::from_millis(100);

/// Owns the watchdog thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct HangWatchdog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HangWatchdog {
    /// Watches each registry with its VM's GPU timeout.
    pub fn spawn(watched: Vec<(ContextRegistry, Duration)>) -> std::io::Result<Self> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vgpu-watchdog".into())
            .spawn(move || loop {
                match rx.recv_timeout(PERIOD) {
                    Err(RecvTimeoutError::Timeout) => {
                        for (registry, timeout) in &watched {
                            registry.fail_hung(*timeout);
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for HangWatchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
