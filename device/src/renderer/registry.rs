//! The daemon's live contexts, so shutdown can fail every one of them (FATAL on every
//! ring) before the process exits: a guest then sees a lost device, not a silent host.
//!
//! It holds weak references only: a context's lifetime stays with its front door.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::context::{Context, ContextShared};

/// Live contexts of one daemon (cheap to clone; clones share the list).
#[derive(Clone, Debug, Default)]
pub struct ContextRegistry(Arc<Mutex<Vec<Weak<ContextShared>>>>);

impl ContextRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Weak<ContextShared>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `context` (dropping entries of contexts already gone).
    pub fn register(&self, context: &Context) {
        let mut list = self.list();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(context.shared()));
    }

    /// Number of live contexts.
    pub fn live(&self) -> usize {
        self.list().iter().filter(|w| w.strong_count() > 0).count()
    }

    /// Sets FATAL on every ring of every live context without failing the contexts
    /// (their front doors still answer what the guest already sent); returns how
    /// many contexts there were.
    pub fn set_rings_fatal(&self) -> usize {
        let live: Vec<Arc<ContextShared>> = self.list().iter().filter_map(Weak::upgrade).collect();
        for ctx in &live {
            ctx.set_rings_fatal();
        }
        live.len()
    }

    /// The GPU-hang watchdog of contexts that run in this process: fails every live
    /// context whose oldest pending host fence was queued more than `timeout` ago
    /// (FATAL on its rings, its waits give up, one log line with the VM's context
    /// and the time pending); returns how many it failed. The host work itself
    /// cannot be stopped in-process: the context's device is leaked when it is torn
    /// down if its queues never drain (a worker process is killed instead).
    pub fn fail_hung(&self, timeout: std::time::Duration) -> usize {
        let live: Vec<Arc<ContextShared>> = self.list().iter().filter_map(Weak::upgrade).collect();
        let now = crate::worker::hang::now_ns();
        let mut failed = 0;
        for ctx in live.iter().filter(|c| !c.is_fatal()) {
            let Some(at) = ctx.executor.oldest_pending_ns() else {
                continue;
            };
            let pending = std::time::Duration::from_nanos(now.saturating_sub(at));
            if pending > timeout {
                ctx.set_fatal(&format!(
                    "GPU hang: work running {:.1} s (gpu_timeout_ms {})",
                    pending.as_secs_f64(),
                    timeout.as_millis()
                ));
                failed += 1;
            }
        }
        failed
    }

    /// Fails every live context with `reason` (its fatal hook runs, its rings get
    /// FATAL, its waits give up); returns how many were failed. The lock is not held
    /// while the hooks run.
    pub fn fail_all(&self, reason: &str) -> usize {
        let live: Vec<Arc<ContextShared>> =
            self.list().drain(..).filter_map(|w| w.upgrade()).collect();
        for ctx in &live {
            ctx.set_fatal(reason);
        }
        live.len()
    }
}
