//! A deterministic discrete-event simulator for the arbiter.
//!
//! A virtual clock in ns, a [`device::Device`] that runs granted submissions serially with
//! launch and notification latency and noisy service times, closed-loop and Poisson
//! [`workload::Workload`]s, and scheduled live reconfigurations. Equal [`Scenario`]s
//! (including the seed) give equal [`report::Report`]s.

pub mod device;
pub mod engine;
pub mod report;
pub mod rng;
pub mod workload;

use thiserror::Error;

pub use device::DeviceModel;
pub use engine::run;
pub use report::{JobRecord, Report};
pub use workload::Workload;

use crate::accounting::AccountingConfig;
use crate::arbiter::ArbiterError;
use crate::ids::VmId;
use crate::model::{GpuConfig, VmConfig};
use crate::policy::Policy;

/// Errors from setting up or running a simulation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SimError {
    /// The arbiter rejected the scenario's configuration.
    #[error("scenario rejected by the arbiter")]
    Arbiter(#[from] ArbiterError),
    /// The scenario has no duration.
    #[error("scenario duration must be positive")]
    ZeroDuration,
    /// The run did not drain within the time limit.
    #[error("simulation did not drain {queued} submissions by {limit_ns} ns")]
    DidNotDrain {
        /// Submissions still queued or in flight.
        queued: usize,
        /// The time limit.
        limit_ns: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, SimError>;

/// One simulated VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimVm {
    /// Its id.
    pub id: VmId,
    /// Its scheduler configuration.
    pub config: VmConfig,
    /// What it submits.
    pub workload: Workload,
    /// When it starts submitting.
    pub start_ns: u64,
    /// When it stops submitting (`None`: at the end of the scenario).
    pub stop_ns: Option<u64>,
    /// Whether submissions carry their nominal cost as a hint.
    pub hints: bool,
}

impl SimVm {
    /// A VM that submits `workload` for the whole scenario, without cost hints.
    pub fn new(id: VmId, config: VmConfig, workload: Workload) -> SimVm {
        SimVm {
            id,
            config,
            workload,
            start_ns: 0,
            stop_ns: None,
            hints: false,
        }
    }
}

/// A live reconfiguration applied during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Switch the GPU's policy.
    Policy(Policy),
    /// Replace a VM's configuration.
    Vm(VmId, VmConfig),
    /// Replace the GPU controls.
    Gpu(GpuConfig),
}

/// Everything a run depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// GPU controls.
    pub gpu: GpuConfig,
    /// Initial policy.
    pub policy: Policy,
    /// Accounting tunables.
    pub accounting: AccountingConfig,
    /// Device model.
    pub device: DeviceModel,
    /// The VMs.
    pub vms: Vec<SimVm>,
    /// Workloads stop submitting at this time; queued work then drains.
    pub duration_ns: u64,
    /// Live reconfigurations, applied at the given times.
    pub changes: Vec<(u64, Change)>,
    /// Seed for service-time noise and arrivals.
    pub seed: u64,
}

impl Scenario {
    /// A scenario with default GPU, accounting and lavapipe-like device, and no changes.
    pub fn new(policy: Policy, vms: Vec<SimVm>, duration_ns: u64, seed: u64) -> Scenario {
        Scenario {
            gpu: GpuConfig::DEFAULT,
            policy,
            accounting: AccountingConfig::DEFAULT,
            device: DeviceModel::LAVAPIPE,
            vms,
            duration_ns,
            changes: Vec::new(),
            seed,
        }
    }
}
