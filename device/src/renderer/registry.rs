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
