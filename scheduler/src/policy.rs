//! Scheduling policies and the per-VM parameters each one derives.
//!
//! | policy | order | reservation | cap | work-conserving |
//! |---|---|---|---|---|
//! | [`Policy::BestEffort`] | FIFO by submission | none | none | yes |
//! | [`Policy::EqualShare`] | virtual time, equal weights | 1/N | 1/N | no |
//! | [`Policy::FixedShare`] | virtual time, weight = share | share | cap (default share) | no |
//! | [`Policy::Burst`] | virtual time, weight = share | share | optional cap | yes (uncapped VMs) |
//!
//! N is the number of attached VMs ("running vGPUs" in NVIDIA's terms): an idle VM's
//! equal share stays idle rather than being handed to the others.

use thiserror::Error;

use crate::ids::VmId;
use crate::model::{ModelError, VmConfig, PPM};

/// The scheduling policy of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// What a GPU does on its own: first come, first served across VMs. No isolation.
    #[default]
    BestEffort,
    /// Each attached VM gets 1/N of the device and no more (NVIDIA equal share).
    EqualShare,
    /// Each VM is reserved its share and capped at its cap (default: its share); idle
    /// capacity is deliberately left idle (NVIDIA fixed share, qGPU fixed-share).
    FixedShare,
    /// Each VM is guaranteed its share and may use idle capacity in proportion to its share
    /// (qGPU burst-share, Huawei burst); per-VM caps are honoured if set.
    Burst,
}

impl Policy {
    /// All policies, in the order used by reports.
    pub const ALL: [Policy; 4] = [
        Policy::BestEffort,
        Policy::EqualShare,
        Policy::FixedShare,
        Policy::Burst,
    ];

    /// A short lowercase name (`best-effort`, `equal-share`, `fixed-share`, `burst`).
    pub fn name(self) -> &'static str {
        match self {
            Policy::BestEffort => "best-effort",
            Policy::EqualShare => "equal-share",
            Policy::FixedShare => "fixed-share",
            Policy::Burst => "burst",
        }
    }

    /// Whether the policy serves runlists in arrival order rather than by virtual time.
    pub fn is_fifo(self) -> bool {
        self == Policy::BestEffort
    }

    /// Whether the device is never left idle while work is queued (for VMs without a cap).
    pub fn is_work_conserving(self) -> bool {
        matches!(self, Policy::BestEffort | Policy::Burst)
    }
}

/// Errors from checking a set of VM configurations against a policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A VM's own configuration is invalid.
    #[error("invalid configuration for {vm}")]
    InvalidVm {
        /// The VM.
        vm: VmId,
        /// What is wrong.
        #[source]
        source: ModelError,
    },
    /// The reserved shares add up to more than the whole GPU.
    #[error("reserved shares add up to {total_ppm} ppm, more than the whole GPU")]
    Overcommitted {
        /// Sum of all shares.
        total_ppm: u64,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, PolicyError>;

/// The parameters the arbiter actually uses for one VM under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// Weight in ppm for virtual-time ordering (ignored by FIFO).
    pub weight_ppm: u32,
    /// Cap in ppm of wall time, if any.
    pub cap_ppm: Option<u32>,
}

/// Derives the effective weight and cap of a VM; `attached` is the number of VMs on the GPU.
pub fn effective(policy: Policy, cfg: &VmConfig, attached: usize) -> Effective {
    match policy {
        Policy::BestEffort => Effective {
            weight_ppm: cfg.share.ppm(),
            cap_ppm: None,
        },
        Policy::EqualShare => {
            let n = u32::try_from(attached.max(1)).unwrap_or(PPM);
            let each = (PPM / n).max(1);
            Effective {
                weight_ppm: each,
                cap_ppm: Some(each),
            }
        }
        Policy::FixedShare => Effective {
            weight_ppm: cfg.share.ppm(),
            cap_ppm: Some(cfg.cap.unwrap_or(cfg.share).ppm()),
        },
        Policy::Burst => Effective {
            weight_ppm: cfg.share.ppm(),
            cap_ppm: cfg.cap.map(|c| c.ppm()).filter(|&c| c < PPM),
        },
    }
}

/// Checks every VM's configuration and that the reserved shares fit on one GPU.
///
/// Shares are reservations (fixed-share) or guaranteed minimums (burst), so they are
/// checked under every policy: switching policy later must not make the set invalid.
pub fn validate<'a>(vms: impl IntoIterator<Item = (VmId, &'a VmConfig)>) -> Result<()> {
    let mut total: u64 = 0;
    for (vm, cfg) in vms {
        cfg.validate()
            .map_err(|source| PolicyError::InvalidVm { vm, source })?;
        total += u64::from(cfg.share.ppm());
    }
    if total > u64::from(PPM) {
        return Err(PolicyError::Overcommitted { total_ppm: total });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Share;

    fn cfg(percent: f64) -> VmConfig {
        VmConfig::new(Share::from_percent(percent).unwrap())
    }

    #[test]
    fn fixed_share_caps_at_share_by_default() {
        let e = effective(Policy::FixedShare, &cfg(30.0), 3);
        assert_eq!(e.weight_ppm, 300_000);
        assert_eq!(e.cap_ppm, Some(300_000));
    }

    #[test]
    fn fixed_share_honours_a_larger_cap() {
        let c = cfg(30.0).with_cap(Share::from_percent(50.0).unwrap());
        assert_eq!(effective(Policy::FixedShare, &c, 2).cap_ppm, Some(500_000));
    }

    #[test]
    fn equal_share_divides_by_attached_vms() {
        let e = effective(Policy::EqualShare, &cfg(90.0), 4);
        assert_eq!(e.weight_ppm, 250_000);
        assert_eq!(e.cap_ppm, Some(250_000));
    }

    #[test]
    fn burst_is_uncapped_unless_asked() {
        assert_eq!(effective(Policy::Burst, &cfg(10.0), 2).cap_ppm, None);
        let c = cfg(10.0).with_cap(Share::from_percent(40.0).unwrap());
        assert_eq!(effective(Policy::Burst, &c, 2).cap_ppm, Some(400_000));
    }

    #[test]
    fn best_effort_has_no_cap() {
        assert_eq!(effective(Policy::BestEffort, &cfg(10.0), 2).cap_ppm, None);
    }

    #[test]
    fn overcommitted_shares_are_rejected() {
        let a = cfg(60.0);
        let b = cfg(50.0);
        let err = validate([(VmId(1), &a), (VmId(2), &b)]);
        assert_eq!(
            err,
            Err(PolicyError::Overcommitted {
                total_ppm: 1_100_000
            })
        );
        let b = cfg(40.0);
        assert_eq!(validate([(VmId(1), &a), (VmId(2), &b)]), Ok(()));
    }

    #[test]
    fn invalid_vm_config_names_the_vm() {
        let a = cfg(60.0).with_cap(Share::from_percent(10.0).unwrap());
        let err = validate([(VmId(7), &a)]).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidVm { vm: VmId(7), .. }));
    }
}
