//! Per-VM limits: how many host instances, devices and objects one context may hold,
//! and a device-memory quota per VM.
//!
//! Until VMs exist in the config, a vtest connection (one context) and a vhost-user
//! frontend (all of its contexts) each count as one VM: [`VenusFactory`] gives every
//! executor it creates either its own [`VmAccount`] (vtest) or one shared by all of them
//! (one factory per vhost-user frontend).
//!
//! The quota is charged when `vkAllocateMemory` succeeds on the host, in the bytes the
//! host holds (host-visible memfds count their page-rounded size), and credited when the
//! memory is freed or its context torn down: a [`MemoryCharge`] sits in the object
//! table next to the memory it paid for, so every path that forgets the memory credits
//! the account. Another VM's allocations never change what a VM may allocate; the guest
//! sees heap sizes no larger than its quota, and `VK_EXT_memory_budget` answers with
//! its own usage and budget.
//!
//! [`VenusFactory`]: super::VenusFactory

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ash::vk;

use crate::ratelimit::RateLimiter;
use crate::renderer::fds::{FdBudget, FdLimits};
use crate::renderer::ledger::{Claim, ClaimId, RemoteLedger, HEAPS};

/// Default [`VenusLimits::max_instances`].
pub const DEFAULT_MAX_INSTANCES: u32 = 8;
/// Default [`VenusLimits::max_devices`].
pub const DEFAULT_MAX_DEVICES: u32 = 8;
/// Default [`VenusLimits::max_objects`].
pub const DEFAULT_MAX_OBJECTS: u32 = 1_000_000;
/// Without a configured quota, a VM may allocate its host's largest memory heap divided
/// by this.
pub const DEFAULT_QUOTA_DIVISOR: u64 = 4;

/// The limits of one VM (the same for every VM of a daemon today).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VenusLimits {
    /// Host instances one context may hold at once (`vkCreateInstance` past it:
    /// `VK_ERROR_INITIALIZATION_FAILED`).
    pub max_instances: u32,
    /// Host devices one context may hold at once (`vkCreateDevice` past it:
    /// `VK_ERROR_TOO_MANY_OBJECTS`).
    pub max_devices: u32,
    /// Objects of every type one context may hold at once (a create past it:
    /// `VK_ERROR_OUT_OF_HOST_MEMORY`).
    pub max_objects: u32,
    /// Device memory one VM may hold, in MiB (`vkAllocateMemory` past it:
    /// `VK_ERROR_OUT_OF_DEVICE_MEMORY`); `None`: the largest host heap divided by
    /// [`DEFAULT_QUOTA_DIVISOR`].
    pub memory_mib: Option<u64>,
    /// Blobs and pending sync waits (fds the daemon holds) one VM may hold; the
    /// daemon derives them from its `RLIMIT_NOFILE` unless configured.
    pub fds: FdLimits,
}

impl Default for VenusLimits {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_devices: DEFAULT_MAX_DEVICES,
            max_objects: DEFAULT_MAX_OBJECTS,
            memory_mib: None,
            fds: FdLimits::UNLIMITED,
        }
    }
}

/// Which per-context count a create command ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`VenusLimits::max_instances`].
    Instances,
    /// [`VenusLimits::max_devices`].
    Devices,
    /// [`VenusLimits::max_objects`].
    Objects,
}

impl Limit {
    /// What the create command returns to the guest, as a driver out of room would.
    pub fn result(self) -> vk::Result {
        match self {
            Self::Instances => vk::Result::ERROR_INITIALIZATION_FAILED,
            Self::Devices => vk::Result::ERROR_TOO_MANY_OBJECTS,
            Self::Objects => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        }
    }

    /// The configured value of this limit.
    pub fn value(self, limits: &VenusLimits) -> u32 {
        match self {
            Self::Instances => limits.max_instances,
            Self::Devices => limits.max_devices,
            Self::Objects => limits.max_objects,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Instances => "instance",
            Self::Devices => "device",
            Self::Objects => "object",
        }
    }
}

/// Bytes per heap index (`VK_MAX_MEMORY_HEAPS` of them).
type HeapBytes = [u64; vk::MAX_MEMORY_HEAPS];

const _: () = assert!(HEAPS == vk::MAX_MEMORY_HEAPS);

/// The heaps of `props` that are in use (the count clamped to the array).
fn heap_count(props: &vk::PhysicalDeviceMemoryProperties) -> usize {
    usize::try_from(props.memory_heap_count)
        .unwrap_or(usize::MAX)
        .min(vk::MAX_MEMORY_HEAPS)
}

/// One VM's limits and device-memory usage, shared by its contexts' executors.
#[derive(Debug)]
pub struct VmAccount {
    /// Names the VM in log lines.
    name: String,
    limits: VenusLimits,
    /// Bytes held per host heap index.
    used: Mutex<HeapBytes>,
    /// One warning per refusal, rate-limited per VM.
    log: RateLimiter,
    /// Blobs and pending sync waits of the VM.
    fds: Arc<FdBudget>,
    /// In a worker process: the daemon's account of the VM, which every charge is
    /// also claimed from (`used` then counts this worker's part only).
    remote: Option<Arc<dyn RemoteLedger>>,
}

impl VmAccount {
    /// A fresh account named `name` (log lines) with `limits`.
    pub fn new(name: String, limits: VenusLimits) -> Self {
        Self {
            fds: FdBudget::new(name.clone(), limits.fds),
            name,
            limits,
            used: Mutex::new([0; vk::MAX_MEMORY_HEAPS]),
            log: RateLimiter::new("vgpu::limits", Duration::from_secs(10), 4),
            remote: None,
        }
    }

    /// An account of a worker process whose charges are also claimed from the
    /// daemon's account of the VM through `ledger` (see
    /// [`crate::renderer::ledger`]).
    pub fn new_remote(name: String, limits: VenusLimits, ledger: Arc<dyn RemoteLedger>) -> Self {
        Self {
            fds: FdBudget::new_remote(name.clone(), limits.fds, Arc::clone(&ledger)),
            name,
            limits,
            used: Mutex::new([0; vk::MAX_MEMORY_HEAPS]),
            log: RateLimiter::new("vgpu::limits", Duration::from_secs(10), 4),
            remote: Some(ledger),
        }
    }

    /// The VM's name (log lines).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the VM's device memory in use (every heap) for QoS `list` and metrics.
    pub fn memory_probe(self: &Arc<Self>) -> crate::qos::MemoryProbe {
        let account = Arc::clone(self);
        Arc::new(move || account.usage().iter().sum())
    }

    /// The VM's fd budget.
    pub fn fds(&self) -> &Arc<FdBudget> {
        &self.fds
    }

    /// The VM's limits.
    pub fn limits(&self) -> &VenusLimits {
        &self.limits
    }

    /// The device-memory quota in bytes on a host with memory properties `host`.
    pub fn quota(&self, host: &vk::PhysicalDeviceMemoryProperties) -> u64 {
        match self.limits.memory_mib {
            Some(mib) => mib.saturating_mul(1 << 20),
            None => {
                host.memory_heaps_as_slice()
                    .iter()
                    .map(|h| h.size)
                    .max()
                    .unwrap_or(0)
                    / DEFAULT_QUOTA_DIVISOR
            }
        }
    }

    /// Bytes this VM holds, per host heap index (in a worker: the whole VM's, as
    /// the daemon counts it, or this worker's part if the daemon cannot answer).
    pub fn usage(&self) -> HeapBytes {
        if let Some(all) = self.remote.as_ref().and_then(|l| l.memory_usage()) {
            return all;
        }
        *self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charges `bytes` on `heap` if the VM's total stays within its quota; the charge
    /// is credited back when the returned value drops.
    pub(crate) fn try_charge(
        self: &Arc<Self>,
        host: &vk::PhysicalDeviceMemoryProperties,
        heap: u32,
        bytes: u64,
    ) -> Option<MemoryCharge> {
        let quota = self.quota(host);
        let mut charge = self.try_charge_within(heap, bytes, quota)?;
        if let Some(ledger) = &self.remote {
            let claim = Claim::Memory { heap, bytes, quota };
            // Refused: dropping `charge` gives this worker's part back.
            let id = ledger.claim(claim)?;
            charge.claim = Some((Arc::clone(ledger), id));
        }
        Some(charge)
    }

    /// Charges `bytes` on `heap` against `quota` bytes (the daemon's side of a
    /// worker's claim; [`Self::try_charge`] otherwise). Zero bytes are refused: no
    /// allocation is empty, and a charge must mean something held.
    pub(crate) fn try_charge_within(
        self: &Arc<Self>,
        heap: u32,
        bytes: u64,
        quota: u64,
    ) -> Option<MemoryCharge> {
        let heap = usize::try_from(heap)
            .ok()
            .filter(|&h| h < vk::MAX_MEMORY_HEAPS && bytes > 0)?;
        let quota = match self.limits.memory_mib {
            Some(mib) => mib.saturating_mul(1 << 20),
            None => quota,
        };
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let total = used.iter().try_fold(0u64, |a, &b| a.checked_add(b))?;
        let after = total.checked_add(bytes)?;
        if after > quota {
            return None;
        }
        used[heap] = used[heap].checked_add(bytes)?;
        Some(MemoryCharge {
            account: Arc::clone(self),
            heap,
            bytes,
            claim: None,
        })
    }

    fn credit(&self, heap: usize, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = used.get_mut(heap) {
            *h = h.saturating_sub(bytes);
        }
    }

    /// Heap sizes as this VM sees them: no larger than its quota.
    pub fn patch_heaps(&self, props: &mut vk::PhysicalDeviceMemoryProperties) {
        let quota = self.quota(props);
        let count = heap_count(props);
        for heap in props.memory_heaps.iter_mut().take(count) {
            heap.size = heap.size.min(quota);
        }
    }

    /// `VK_EXT_memory_budget` as this VM sees it: usage = its own allocations per heap;
    /// budget = the least of the host's budget, the heap size it sees, and its quota
    /// less what it holds on other heaps. `host` are the host's (unpatched) memory
    /// properties; `budget` holds the host's answer on entry (zero where the host gave
    /// none).
    pub fn patch_budget(
        &self,
        host: &vk::PhysicalDeviceMemoryProperties,
        budget: &mut vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'_>,
    ) {
        let quota = self.quota(host);
        let used = self.usage();
        let total: u64 = used.iter().fold(0u64, |a, &b| a.saturating_add(b));
        let count = heap_count(host);
        let heaps = host.memory_heaps.iter().zip(used);
        let out = budget.heap_budget.iter_mut().zip(&mut budget.heap_usage);
        for (h, ((heap, used), (b, u))) in heaps.zip(out).enumerate() {
            if h >= count {
                (*b, *u) = (0, 0);
                continue;
            }
            let size = heap.size.min(quota);
            // A host without the extension leaves the budget zero: the heap is it.
            let host_budget = if *b == 0 { size } else { *b };
            let others = total.saturating_sub(used);
            *b = host_budget.min(size).min(quota.saturating_sub(others));
            *u = used;
        }
    }

    /// Logs (rate-limited) that `ctx` ran into a per-context limit.
    pub(crate) fn warn_limit(&self, ctx: crate::ids::ContextId, limit: Limit) {
        self.log.warn(format_args!(
            "venus: {ctx} of VM {}: {} limit of {} reached; create refused with {:?}",
            self.name,
            limit.name(),
            limit.value(&self.limits),
            limit.result(),
        ));
    }

    /// Logs (rate-limited) that `ctx` ran into the VM's device-memory quota.
    pub(crate) fn warn_quota(
        &self,
        ctx: crate::ids::ContextId,
        host: &vk::PhysicalDeviceMemoryProperties,
        bytes: u64,
    ) {
        let used: u64 = self.usage().iter().fold(0u64, |a, &b| a.saturating_add(b));
        self.log.warn(format_args!(
            "venus: {ctx} of VM {}: device-memory quota of {} MiB reached ({used} bytes \
             held); vkAllocateMemory of {bytes} bytes refused with \
             ERROR_OUT_OF_DEVICE_MEMORY",
            self.name,
            self.quota(host) >> 20,
        ));
    }
}

/// Device memory charged to a VM; credits the VM when dropped.
#[derive(Debug)]
pub(crate) struct MemoryCharge {
    account: Arc<VmAccount>,
    heap: usize,
    bytes: u64,
    /// The daemon's grant (a worker process).
    claim: Option<(Arc<dyn RemoteLedger>, ClaimId)>,
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        if let Some((ledger, id)) = self.claim.take() {
            ledger.release(id);
        }
        self.account.credit(self.heap, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(heap: u64) -> vk::PhysicalDeviceMemoryProperties {
        let mut p = vk::PhysicalDeviceMemoryProperties {
            memory_heap_count: 1,
            ..Default::default()
        };
        p.memory_heaps[0].size = heap;
        p
    }

    fn account(mib: Option<u64>) -> Arc<VmAccount> {
        Arc::new(VmAccount::new(
            "test".into(),
            VenusLimits {
                memory_mib: mib,
                ..VenusLimits::default()
            },
        ))
    }

    #[test]
    fn default_quota_is_a_quarter_of_the_largest_heap() {
        let a = account(None);
        assert_eq!(a.quota(&host(8 << 30)), 2 << 30);
    }

    #[test]
    fn charge_past_quota_is_refused_and_drop_credits() {
        let a = account(Some(64));
        let h = host(1 << 40);
        let first = a.try_charge(&h, 0, 48 << 20).expect("within quota");
        assert!(a.try_charge(&h, 0, 32 << 20).is_none());
        drop(first);
        assert!(a.try_charge(&h, 0, 64 << 20).is_some());
    }

    #[test]
    fn another_account_does_not_share_the_quota() {
        let (a, b) = (account(Some(64)), account(Some(64)));
        let h = host(1 << 40);
        let _held = a.try_charge(&h, 0, 64 << 20).expect("a's quota");
        assert!(b.try_charge(&h, 0, 64 << 20).is_some());
    }

    #[test]
    fn heaps_are_clamped_to_the_quota() {
        let a = account(Some(64));
        let mut p = host(1 << 40);
        a.patch_heaps(&mut p);
        assert_eq!(p.memory_heaps[0].size, 64 << 20);
    }

    #[test]
    fn budget_reports_own_usage_and_quota() {
        let a = account(Some(64));
        let h = host(1 << 40);
        let _held = a.try_charge(&h, 0, 16 << 20).expect("within quota");
        let mut b = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        b.heap_budget[0] = 1 << 39;
        b.heap_usage[0] = 5 << 30;
        a.patch_budget(&h, &mut b);
        assert_eq!((b.heap_budget[0], b.heap_usage[0]), (64 << 20, 16 << 20));
    }
}
