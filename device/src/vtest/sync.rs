//! vtest sync objects (SYNC_CREATE/UNREF/READ/WRITE/WAIT) of one connection.
//!
//! Mesa's vtest backend never sends these (it hard-codes `has_external_sync` false),
//! but they are served for completeness. A wait returns an eventfd that becomes
//! readable once the condition holds.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::ids::SyncId;
use crate::renderer::{FdBudget, FdCharge, FdKind};
use crate::sys::{create_eventfd, signal_eventfd, FdError};

/// Sync errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Unknown sync id.
    #[error("{0} does not exist")]
    Unknown(SyncId),
    /// Too many syncs or pending waits.
    #[error("sync limit of {0} reached")]
    TooMany(usize),
    /// The VM holds its limit of pending sync waits.
    #[error("the VM's pending sync wait limit (max_sync_waits = {0}) is reached")]
    VmWaits(u32),
    /// A wait that would pend before CONTEXT_INIT (it has no VM to charge).
    #[error("a pending sync wait needs a context (CONTEXT_INIT first)")]
    NoContext,
    /// eventfd failure.
    #[error("eventfd failed")]
    Fd(#[from] FdError),
}

/// What a pending wait is charged to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WaitBudget<'a> {
    /// No context yet (before CONTEXT_INIT): no VM to charge, so no pending wait.
    NoContext,
    /// A context whose executor has no fd budget: no limit.
    Unlimited,
    /// The VM's budget.
    Vm(&'a Arc<FdBudget>),
}

#[derive(Debug)]
struct PendingWait {
    fd: OwnedFd,
    /// The VM's sync-wait slot this eventfd holds.
    _charge: Option<FdCharge>,
    any: bool,
    entries: Vec<(SyncId, u64)>,
}

/// The syncs of one connection.
#[derive(Debug)]
pub(crate) struct SyncTable {
    values: HashMap<SyncId, u64>,
    waits: Vec<PendingWait>,
    next: u32,
    max: usize,
}

impl SyncTable {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            values: HashMap::new(),
            waits: Vec::new(),
            next: 1,
            max,
        }
    }

    pub(crate) fn create(&mut self, value: u64) -> Result<SyncId, SyncError> {
        if self.values.len() >= self.max {
            return Err(SyncError::TooMany(self.max));
        }
        let mut id = SyncId(self.next);
        while id.0 == 0 || self.values.contains_key(&id) {
            id = SyncId(id.0.wrapping_add(1));
        }
        self.next = id.0.wrapping_add(1);
        self.values.insert(id, value);
        Ok(id)
    }

    pub(crate) fn unref(&mut self, id: SyncId) -> Result<(), SyncError> {
        self.values.remove(&id).ok_or(SyncError::Unknown(id))?;
        Ok(())
    }

    pub(crate) fn read(&self, id: SyncId) -> Result<u64, SyncError> {
        self.values.get(&id).copied().ok_or(SyncError::Unknown(id))
    }

    /// SYNC_WRITE: sets the value.
    pub(crate) fn write(&mut self, id: SyncId, value: u64) -> Result<(), SyncError> {
        *self.values.get_mut(&id).ok_or(SyncError::Unknown(id))? = value;
        self.wake()
    }

    /// Validates that every id exists.
    pub(crate) fn check_ids(&self, entries: &[(SyncId, u64)]) -> Result<(), SyncError> {
        match entries.iter().find(|(id, _)| !self.values.contains_key(id)) {
            Some((id, _)) => Err(SyncError::Unknown(*id)),
            None => Ok(()),
        }
    }

    /// Signals after a submission: values only move forward.
    pub(crate) fn signal(&mut self, entries: &[(SyncId, u64)]) -> Result<(), SyncError> {
        self.check_ids(entries)?;
        self.raise(entries);
        self.wake()
    }

    /// Moves each existing sync forward to its value (never back).
    fn raise(&mut self, entries: &[(SyncId, u64)]) {
        for (id, value) in entries {
            if let Some(v) = self.values.get_mut(id) {
                *v = (*v).max(*value);
            }
        }
    }

    /// Signals from a host-queue fence: syncs the client unref'd meanwhile are
    /// skipped. A failing eventfd write leaves that waiter for the next wake.
    pub(crate) fn signal_existing(&mut self, entries: &[(SyncId, u64)]) {
        self.raise(entries);
        if let Err(e) = self.wake() {
            log::debug!("vtest: waking sync waiters failed: {e}");
        }
    }

    fn satisfied(&self, any: bool, entries: &[(SyncId, u64)]) -> bool {
        let reached = |(id, value): &(SyncId, u64)| self.values.get(id).is_some_and(|v| v >= value);
        if any {
            entries.iter().any(reached)
        } else {
            entries.iter().all(reached)
        }
    }

    /// SYNC_WAIT: returns the client's copy of an eventfd, already signalled if the
    /// condition holds now. A wait that pends is charged to `budget`, the VM's.
    pub(crate) fn wait(
        &mut self,
        any: bool,
        entries: Vec<(SyncId, u64)>,
        budget: WaitBudget<'_>,
    ) -> Result<OwnedFd, SyncError> {
        self.check_ids(&entries)?;
        let fd = create_eventfd()?;
        if entries.is_empty() || self.satisfied(any, &entries) {
            signal_eventfd(&fd)?;
            return Ok(fd);
        }
        if self.waits.len() >= self.max {
            return Err(SyncError::TooMany(self.max));
        }
        let charge = match budget {
            WaitBudget::NoContext => return Err(SyncError::NoContext),
            WaitBudget::Unlimited => None,
            WaitBudget::Vm(vm) => Some(
                vm.try_charge(FdKind::SyncWait)
                    .ok_or(SyncError::VmWaits(vm.limits().max_sync_waits))?,
            ),
        };
        let ours = fd.try_clone().map_err(FdError::Eventfd)?;
        self.waits.push(PendingWait {
            fd: ours,
            _charge: charge,
            any,
            entries,
        });
        Ok(fd)
    }

    fn wake(&mut self) -> Result<(), SyncError> {
        let waits = std::mem::take(&mut self.waits);
        for w in waits {
            if self.satisfied(w.any, &w.entries) {
                signal_eventfd(&w.fd)?;
            } else {
                self.waits.push(w);
            }
        }
        Ok(())
    }
}
