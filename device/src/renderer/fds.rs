//! Per-VM file-descriptor budget (issue 11, row 2): how many blobs (every fd the
//! daemon holds for a VM's memory) and pending sync waits (an eventfd each) one VM
//! may hold at once, so no VM can exhaust the daemon's `RLIMIT_NOFILE`.
//!
//! A [`FdCharge`] is taken before the fd is created and lives beside it (in the
//! [`super::Resource`], the Venus host-visible memory, the pending sync wait); dropping
//! it credits the budget, so every path that closes the fd gives the slot back.
//!
//! What counts as a blob: a shared-memory blob resource (its memfd), an exported
//! device-memory blob resource (its duplicate of the memory's memfd) and a
//! host-visible device-memory allocation (its memfd). Past the limit, a blob create
//! fails (virtio-gpu: an error response; vtest: the client is dropped, as the vtest
//! protocol has no error reply), `vkAllocateMemory` of host-visible memory returns
//! `VK_ERROR_OUT_OF_HOST_MEMORY`, and a sync wait that would pend is a protocol error.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ledger::{Claim, ClaimId, RemoteLedger};
use crate::ratelimit::RateLimiter;

/// fds the daemon keeps for itself (sockets, eventfds of rings, threads, the host
/// driver, log files) before dividing the rest among VMs: this many, or a quarter of
/// the limit if that is more.
pub const NOFILE_RESERVE: u64 = 256;

/// Which per-VM fd limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// [`FdLimits::max_blobs`].
    Blob,
    /// [`FdLimits::max_sync_waits`].
    SyncWait,
}

impl FdKind {
    fn name(self) -> &'static str {
        match self {
            Self::Blob => "max_blobs",
            Self::SyncWait => "max_sync_waits",
        }
    }
}

/// One VM's fd limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimits {
    /// Blobs (fds backing the VM's memory) held at once.
    pub max_blobs: u32,
    /// Sync waits pending at once.
    pub max_sync_waits: u32,
}

impl FdLimits {
    /// No limit (library default; the daemon always sets derived limits).
    pub const UNLIMITED: Self = Self {
        max_blobs: u32::MAX,
        max_sync_waits: u32::MAX,
    };

    /// The defaults for `vms` VMs sharing a daemon whose fd limit is `nofile`: keep
    /// [`NOFILE_RESERVE`] (or a quarter of `nofile`, if more) for the daemon, divide
    /// the rest by `vms`, and give three quarters of a VM's part to blobs, one
    /// quarter to sync waits (each at least 1).
    pub fn derived(nofile: u64, vms: usize) -> Self {
        let reserve = NOFILE_RESERVE.max(nofile / 4);
        let vms = u64::try_from(vms.max(1)).unwrap_or(u64::MAX);
        let per_vm = nofile.saturating_sub(reserve) / vms;
        let clamp = |v: u64| u32::try_from(v.max(1)).unwrap_or(u32::MAX);
        Self {
            max_blobs: clamp(per_vm / 4 * 3),
            max_sync_waits: clamp(per_vm / 4),
        }
    }

    fn max(&self, kind: FdKind) -> u32 {
        match kind {
            FdKind::Blob => self.max_blobs,
            FdKind::SyncWait => self.max_sync_waits,
        }
    }
}

impl Default for FdLimits {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// One VM's fd usage against its [`FdLimits`], shared by its contexts.
#[derive(Debug)]
pub struct FdBudget {
    /// Names the VM in log lines.
    vm: String,
    limits: FdLimits,
    blobs: AtomicU32,
    waits: AtomicU32,
    log: RateLimiter,
    /// In a worker process: the daemon's budget of the VM, which every slot is also
    /// claimed from (the counters above then count this worker's part).
    remote: Option<Arc<dyn RemoteLedger>>,
}

impl FdBudget {
    /// A fresh budget for VM `vm`.
    pub fn new(vm: impl Into<String>, limits: FdLimits) -> Arc<Self> {
        Arc::new(Self {
            vm: vm.into(),
            limits,
            blobs: AtomicU32::new(0),
            waits: AtomicU32::new(0),
            log: RateLimiter::new("vgpu::limits", Duration::from_secs(10), 4),
            remote: None,
        })
    }

    /// A budget whose slots are also claimed from the daemon's budget of the VM
    /// through `ledger` (a worker process; see [`super::ledger`]).
    pub fn new_remote(
        vm: impl Into<String>,
        limits: FdLimits,
        ledger: Arc<dyn RemoteLedger>,
    ) -> Arc<Self> {
        Arc::new(Self {
            vm: vm.into(),
            limits,
            blobs: AtomicU32::new(0),
            waits: AtomicU32::new(0),
            log: RateLimiter::new("vgpu::limits", Duration::from_secs(10), 4),
            remote: Some(ledger),
        })
    }

    /// The limits.
    pub fn limits(&self) -> FdLimits {
        self.limits
    }

    fn counter(&self, kind: FdKind) -> &AtomicU32 {
        match kind {
            FdKind::Blob => &self.blobs,
            FdKind::SyncWait => &self.waits,
        }
    }

    /// How many of `kind` the VM holds now.
    pub fn in_use(&self, kind: FdKind) -> u32 {
        self.counter(kind).load(Ordering::Acquire)
    }

    /// Takes one slot of `kind`, or logs (rate-limited, naming the VM and the limit)
    /// and returns `None` if the VM holds its limit already.
    pub fn try_charge(self: &Arc<Self>, kind: FdKind) -> Option<FdCharge> {
        self.try_charge_leaving(kind, 0)
    }

    /// Like [`Self::try_charge`], but only if `spare` more slots stay free after it:
    /// a host-visible allocation leaves room for the blob that exports it, so the
    /// driver-visible failure comes from `vkAllocateMemory`, not from the export.
    pub fn try_charge_leaving(self: &Arc<Self>, kind: FdKind, spare: u32) -> Option<FdCharge> {
        let max = self.limits.max(kind);
        let taken = self
            .counter(kind)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let after = n.checked_add(1)?;
                (after.saturating_add(spare) <= max).then_some(after)
            });
        if taken.is_err() {
            self.log.warn(format_args!(
                "limits: VM {}: {} limit of {max} reached; request refused",
                self.vm,
                kind.name()
            ));
            return None;
        }
        let mut charge = FdCharge {
            budget: Arc::clone(self),
            kind,
            claim: None,
        };
        if let Some(ledger) = &self.remote {
            // The daemon logs its own refusal, naming the VM; dropping `charge`
            // gives the local slot back.
            let id = ledger.claim(Claim::Fd { kind, spare })?;
            charge.claim = Some((Arc::clone(ledger), id));
        }
        Some(charge)
    }
}

/// One slot of a VM's [`FdBudget`], credited back when dropped.
#[derive(Debug)]
pub struct FdCharge {
    budget: Arc<FdBudget>,
    kind: FdKind,
    /// The daemon's grant of the slot (a worker process).
    claim: Option<(Arc<dyn RemoteLedger>, ClaimId)>,
}

impl Drop for FdCharge {
    fn drop(&mut self) {
        if let Some((ledger, id)) = self.claim.take() {
            ledger.release(id);
        }
        let _ =
            self.budget
                .counter(self.kind)
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_come_back_when_dropped() {
        let b = FdBudget::new(
            "a",
            FdLimits {
                max_blobs: 2,
                max_sync_waits: 1,
            },
        );
        let one = b.try_charge(FdKind::Blob).expect("first");
        let _two = b.try_charge(FdKind::Blob).expect("second");
        assert!(b.try_charge(FdKind::Blob).is_none());
        assert!(
            b.try_charge(FdKind::SyncWait).is_some(),
            "kinds are separate"
        );
        drop(one);
        assert_eq!(b.in_use(FdKind::Blob), 1);
        assert!(b.try_charge(FdKind::Blob).is_some());
    }

    #[test]
    fn a_charge_leaving_spare_slots_stops_earlier() {
        let b = FdBudget::new(
            "a",
            FdLimits {
                max_blobs: 3,
                max_sync_waits: 1,
            },
        );
        let _one = b
            .try_charge_leaving(FdKind::Blob, 1)
            .expect("1 + 1 spare fit in 3");
        let _two = b
            .try_charge_leaving(FdKind::Blob, 1)
            .expect("2 + 1 spare fit in 3");
        assert!(b.try_charge_leaving(FdKind::Blob, 1).is_none());
        assert!(
            b.try_charge(FdKind::Blob).is_some(),
            "the spare slot is still there"
        );
    }

    #[test]
    fn derived_limits_keep_a_reserve_and_divide_by_vms() {
        let l = FdLimits::derived(20_000, 4);
        // 20000 - 5000 reserved = 15000; 3750 per VM.
        assert_eq!((l.max_blobs, l.max_sync_waits), (2811, 937));
        let tiny = FdLimits::derived(100, 64);
        assert_eq!((tiny.max_blobs, tiny.max_sync_waits), (1, 1));
    }
}
