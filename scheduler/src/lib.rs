//! `vgpu-scheduler`: per-VM runlists, QoS policies, device-time accounting and an arbiter
//! for one host GPU shared by many VMs, plus a deterministic simulator.
//!
//! Pure Rust: no Vulkan, no I/O, no threads, no clocks. The caller passes the time.
//!
//! # Layers
//!
//! | module | what |
//! |---|---|
//! | [`ids`] | `VmId`, `QueueId`, `SubmissionId` |
//! | [`model`] | GPU and VM configuration, submissions, grants, completions |
//! | [`policy`] | best-effort, equal-share, fixed-share, burst; effective weight and cap |
//! | [`accounting`] | virtual time, cap buckets, debt and credit bounds, cost estimate |
//! | [`runlist`] | one bounded FIFO per VM (backpressure) |
//! | [`arbiter`] | the decision: which submission goes to the device next |
//! | [`message`] | the same as plain request/reply enums, for worker processes |
//! | [`sim`] | virtual clock, device model, workloads, reports |
//!
//! # Use
//!
//! ```
//! use vgpu_scheduler::{
//!     AccountingConfig, Arbiter, Completion, Decision, GpuConfig, Policy, QueueId, Share,
//!     SubmitRequest, VmConfig, VmId,
//! };
//!
//! let mut arb = Arbiter::new(GpuConfig::DEFAULT, Policy::FixedShare, AccountingConfig::DEFAULT)?;
//! arb.attach(0, VmId(1), VmConfig::new(Share::ratio(2, 3)?))?;
//! arb.attach(0, VmId(2), VmConfig::new(Share::ratio(1, 3)?))?;
//! let id = arb.submit(0, SubmitRequest { vm: VmId(1), queue: QueueId(0), cost_hint_ns: None, tag: 0 })?;
//! let Decision::Grant(grant) = arb.next_grant(0) else { unreachable!() };
//! assert_eq!(grant.submission, id);
//! // ... the renderer submits to the host queue, measures 1.5 ms of device time ...
//! arb.complete(1_500_000, Completion { submission: id, device_ns: 1_500_000 })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod accounting;
pub mod arbiter;
pub mod ids;
pub mod message;
pub mod model;
pub mod policy;
pub mod runlist;
pub mod sim;

pub use accounting::AccountingConfig;
pub use arbiter::{Arbiter, ArbiterError, Decision, Revoked, VmBalance, VmStats};
pub use ids::{QueueId, SubmissionId, VmId};
pub use message::{MessageError, Reply, Request};
pub use model::{
    Completion, GpuConfig, Grant, LatencyClass, ModelError, Share, SplitHint, SubmitRequest,
    VmConfig, PPM,
};
pub use policy::{Policy, PolicyError};
