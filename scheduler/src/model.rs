//! The scheduler's data model: GPU and VM configuration, submissions, grants and completions.
//!
//! All times are nanoseconds of a monotonic clock chosen by the caller (the renderer passes
//! `CLOCK_MONOTONIC`, the simulator its virtual clock). All device time is **measured** device
//! time reported by the caller on completion; cost hints are only used to decide admission
//! and are corrected when the measurement arrives.

use thiserror::Error;

use crate::ids::{QueueId, SubmissionId, VmId};

/// Parts per million: the unit of shares and caps (`1_000_000` = the whole GPU).
pub const PPM: u32 = 1_000_000;

/// Errors from validating a configuration value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A share or cap outside `1..=1_000_000` ppm.
    #[error("share of {0} ppm is outside 1..=1000000")]
    ShareOutOfRange(u64),
    /// A cap below the VM's reserved share.
    #[error("cap of {cap} ppm is below the reserved share of {share} ppm")]
    CapBelowShare {
        /// The requested cap.
        cap: u32,
        /// The reserved share.
        share: u32,
    },
    /// A GPU with no execution queue.
    #[error("a GPU needs at least one execution queue")]
    NoQueues,
    /// An in-flight depth of zero would never run anything.
    #[error("in-flight depth must be at least 1")]
    ZeroDepth,
    /// A time slice of zero.
    #[error("time slice must be at least 1 ns")]
    ZeroSlice,
    /// A per-VM queue limit of zero would reject every submission.
    #[error("queue limit must be at least 1")]
    ZeroQueueLimit,
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ModelError>;

/// A fraction of one GPU's device time, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Share(u32);

impl Share {
    /// The whole GPU.
    pub const FULL: Share = Share(PPM);

    /// A share from parts per million; `1..=1_000_000`.
    pub fn from_ppm(ppm: u64) -> Result<Share> {
        match u32::try_from(ppm) {
            Ok(v) if (1..=PPM).contains(&v) => Ok(Share(v)),
            _ => Err(ModelError::ShareOutOfRange(ppm)),
        }
    }

    /// A share from a percentage (`0 < percent <= 100`), rounded to the nearest ppm.
    pub fn from_percent(percent: f64) -> Result<Share> {
        let ppm = (percent * 10_000.0).round();
        if ppm.is_nan() || ppm < 0.0 {
            return Err(ModelError::ShareOutOfRange(0));
        }
        #[allow(
            clippy::cast_possible_truncation,
            reason = "non-negative; `as` saturates, and from_ppm rejects anything above 1e6"
        )]
        let ppm = ppm as u64;
        Share::from_ppm(ppm)
    }

    /// `numerator / denominator` of the GPU, e.g. `Share::ratio(2, 3)` for two thirds.
    pub fn ratio(numerator: u32, denominator: u32) -> Result<Share> {
        if denominator == 0 {
            return Err(ModelError::ShareOutOfRange(0));
        }
        Share::from_ppm(u64::from(numerator) * u64::from(PPM) / u64::from(denominator))
    }

    /// The share in parts per million.
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// The share as a fraction in `(0, 1]`.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / f64::from(PPM)
    }
}

/// How latency-sensitive a VM is. Interactive VMs win ties and are listed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LatencyClass {
    /// Online / interactive work (inference, desktop): short jobs, tail latency matters.
    Interactive,
    /// Offline / batch work (training): throughput matters.
    #[default]
    Batch,
}

/// Configuration of one GPU (one arbiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuConfig {
    /// Number of host execution queues; submissions name one of `0..queues`.
    pub queues: u32,
    /// Most submissions outstanding on the device at once (all queues together).
    pub in_flight_depth: u32,
    /// The time slice in ns: default burst allowance, split-hint threshold and the
    /// granularity of fairness (see the crate docs).
    pub slice_ns: u64,
    /// A second (third, …) submission is only pipelined behind outstanding work while the
    /// estimated outstanding device time stays within this many ns. This bounds how long a
    /// newly arriving submission from another VM can be stuck behind committed work.
    pub pipeline_ns: u64,
    /// Default per-VM runlist length limit (backpressure beyond it).
    pub queue_limit: usize,
}

impl GpuConfig {
    /// Defaults: one queue, depth 2, 2 ms slice (NVIDIA's non-strict default with ≤ 8
    /// vGPUs), pipelining within one slice, 256 queued submissions per VM.
    pub const DEFAULT: GpuConfig = GpuConfig {
        queues: 1,
        in_flight_depth: 2,
        slice_ns: 2_000_000,
        pipeline_ns: 2_000_000,
        queue_limit: 256,
    };

    /// Checks the values for sanity.
    pub fn validate(&self) -> Result<()> {
        if self.queues == 0 {
            return Err(ModelError::NoQueues);
        }
        if self.in_flight_depth == 0 {
            return Err(ModelError::ZeroDepth);
        }
        if self.slice_ns == 0 {
            return Err(ModelError::ZeroSlice);
        }
        if self.queue_limit == 0 {
            return Err(ModelError::ZeroQueueLimit);
        }
        Ok(())
    }
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig::DEFAULT
    }
}

/// Per-VM parameters. Which of them matter depends on the GPU's [`crate::Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmConfig {
    /// Reserved share (fixed-share) or guaranteed minimum and weight (burst).
    pub share: Share,
    /// Optional cap on device time; fixed-share defaults it to `share`.
    pub cap: Option<Share>,
    /// Credit in ns of device time that an idle VM may bring back (the cap bucket depth and
    /// the virtual-time lag allowed on wake-up). `None` means one time slice.
    pub burst_ns: Option<u64>,
    /// Latency class.
    pub latency: LatencyClass,
    /// Runlist length limit; `None` uses [`GpuConfig::queue_limit`].
    pub queue_limit: Option<usize>,
}

impl VmConfig {
    /// A batch VM with the given share and defaults for everything else.
    pub fn new(share: Share) -> VmConfig {
        VmConfig {
            share,
            cap: None,
            burst_ns: None,
            latency: LatencyClass::Batch,
            queue_limit: None,
        }
    }

    /// Sets the cap.
    pub fn with_cap(mut self, cap: Share) -> VmConfig {
        self.cap = Some(cap);
        self
    }

    /// Sets the latency class.
    pub fn with_latency(mut self, latency: LatencyClass) -> VmConfig {
        self.latency = latency;
        self
    }

    /// Sets the burst allowance in ns.
    pub fn with_burst_ns(mut self, burst_ns: u64) -> VmConfig {
        self.burst_ns = Some(burst_ns);
        self
    }

    /// Sets the runlist length limit.
    pub fn with_queue_limit(mut self, limit: usize) -> VmConfig {
        self.queue_limit = Some(limit);
        self
    }

    /// Checks the values that can be checked without knowing the other VMs.
    pub fn validate(&self) -> Result<()> {
        if let Some(cap) = self.cap {
            if cap < self.share {
                return Err(ModelError::CapBelowShare {
                    cap: cap.ppm(),
                    share: self.share.ppm(),
                });
            }
        }
        if self.queue_limit == Some(0) {
            return Err(ModelError::ZeroQueueLimit);
        }
        Ok(())
    }
}

/// A request to run one submission (one guest `vkQueueSubmit`) on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitRequest {
    /// The submitting VM.
    pub vm: VmId,
    /// The host execution queue it targets.
    pub queue: QueueId,
    /// Expected device time in ns, if the renderer has an estimate; otherwise the VM's
    /// recent average is used.
    pub cost_hint_ns: Option<u64>,
    /// Opaque value for the caller's own bookkeeping, returned in the [`Grant`].
    pub tag: u64,
}

/// Tells the renderer that a submission is expected to run longer than one slice and
/// should be split (at dispatch boundaries) if it can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitHint {
    /// The expected device time of the whole submission.
    pub expected_ns: u64,
    /// The slice the chunks should fit in.
    pub slice_ns: u64,
    /// Suggested number of chunks, `ceil(expected / slice)`.
    pub chunks: u64,
}

/// Permission to send one submission to the device now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The granted submission.
    pub submission: SubmissionId,
    /// Its VM.
    pub vm: VmId,
    /// Its host execution queue.
    pub queue: QueueId,
    /// The caller's tag from the [`SubmitRequest`].
    pub tag: u64,
    /// The estimate the arbiter charged in advance (corrected on completion).
    pub estimate_ns: u64,
    /// Set when the estimate exceeds one slice.
    pub split: Option<SplitHint>,
}

/// The device finished a granted submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The finished submission.
    pub submission: SubmissionId,
    /// Measured device time in ns (timestamps or fence deltas).
    pub device_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_rejects_zero_and_more_than_the_gpu() {
        assert_eq!(Share::from_ppm(0), Err(ModelError::ShareOutOfRange(0)));
        assert_eq!(
            Share::from_ppm(1_000_001),
            Err(ModelError::ShareOutOfRange(1_000_001))
        );
        assert_eq!(
            Share::from_percent(100.5),
            Err(ModelError::ShareOutOfRange(1_005_000))
        );
        assert_eq!(
            Share::from_percent(f64::NAN),
            Err(ModelError::ShareOutOfRange(0))
        );
        assert_eq!(
            Share::from_percent(-1.0),
            Err(ModelError::ShareOutOfRange(0))
        );
        assert_eq!(Share::from_percent(100.0), Ok(Share::FULL));
    }

    #[test]
    fn share_from_ratio_and_percent_agree() {
        assert_eq!(Share::ratio(1, 4).map(Share::ppm), Ok(250_000));
        assert_eq!(Share::from_percent(25.0).map(Share::ppm), Ok(250_000));
        assert_eq!(Share::ratio(2, 3).map(Share::ppm), Ok(666_666));
        assert_eq!(Share::ratio(1, 0), Err(ModelError::ShareOutOfRange(0)));
    }

    #[test]
    fn cap_below_share_is_rejected() {
        let cfg = VmConfig::new(Share::ratio(1, 2).unwrap()).with_cap(Share::ratio(1, 4).unwrap());
        assert_eq!(
            cfg.validate(),
            Err(ModelError::CapBelowShare {
                cap: 250_000,
                share: 500_000
            })
        );
    }

    #[test]
    fn gpu_config_rejects_degenerate_values() {
        let ok = GpuConfig::DEFAULT;
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok;
        bad.in_flight_depth = 0;
        assert_eq!(bad.validate(), Err(ModelError::ZeroDepth));
        let mut bad = ok;
        bad.queues = 0;
        assert_eq!(bad.validate(), Err(ModelError::NoQueues));
        let mut bad = ok;
        bad.slice_ns = 0;
        assert_eq!(bad.validate(), Err(ModelError::ZeroSlice));
        let mut bad = ok;
        bad.queue_limit = 0;
        assert_eq!(bad.validate(), Err(ModelError::ZeroQueueLimit));
    }
}
