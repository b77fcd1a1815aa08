//! Where a VM's account lives when its contexts run in several processes.
//!
//! A VM's device-memory quota and fd budget ([`super::venus::VmAccount`],
//! [`super::FdBudget`]) are one account however many contexts the VM has. Contexts in
//! the daemon share the account directly. A context in a worker process charges the
//! daemon's account through a [`RemoteLedger`] (the worker's end of its account
//! socket, `crate::worker::account`): each charge is a claim the daemon grants or
//! refuses against the VM's whole usage, and holds until the worker releases it or
//! dies — so a crashed worker's memory comes back to its VM at once, and two workers
//! of one VM cannot each spend its full quota.
//!
//! The worker still checks its own part locally first (a cheap refusal that needs no
//! round trip); the daemon's answer is the one that counts.

use super::fds::FdKind;

/// Device-memory heaps an account tracks (`VK_MAX_MEMORY_HEAPS`).
pub const HEAPS: usize = 16;

/// Bytes held per host heap index.
pub type HeapBytes = [u64; HEAPS];

/// A claim the daemon granted, named by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimId(pub u64);

/// What a worker asks its VM's account for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// `bytes` of device memory on host heap `heap`; `quota` is the VM's quota as the
    /// worker computes it from the host's heaps (the daemon uses the configured
    /// `memory_mib` instead when there is one).
    Memory {
        /// Host heap index.
        heap: u32,
        /// Bytes the host holds for the allocation.
        bytes: u64,
        /// The VM's quota in bytes.
        quota: u64,
    },
    /// One fd slot of `kind`, leaving `spare` more free.
    Fd {
        /// Blob or sync wait.
        kind: FdKind,
        /// Slots that must stay free after this one.
        spare: u32,
    },
}

/// The daemon's account of a VM, seen from a worker process.
///
/// Every call is a round trip to the daemon; a failed transport refuses claims (the
/// daemon is gone or the worker is being killed) and reports no usage.
pub trait RemoteLedger: Send + Sync + std::fmt::Debug {
    /// Asks for `claim`; `Some` when the daemon granted it.
    fn claim(&self, claim: Claim) -> Option<ClaimId>;
    /// Gives a granted claim back.
    fn release(&self, id: ClaimId);
    /// Device memory the whole VM holds, per heap.
    fn memory_usage(&self) -> Option<HeapBytes>;
}
