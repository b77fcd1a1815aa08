//! Simulated guest workloads.

/// What one simulated VM submits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// A saturating closed loop: `outstanding` submissions of `batch_ns` are kept
    /// submitted; each completion is followed, `think_ns` later, by a new submission.
    ClosedLoop {
        /// Nominal device time of each submission.
        batch_ns: u64,
        /// Submissions kept outstanding (queued or in flight).
        outstanding: u32,
        /// Delay between seeing a completion and submitting the next one.
        think_ns: u64,
    },
    /// An open loop: submissions of `job_ns` arrive as a Poisson process whose rate makes
    /// `load` the fraction of device time they would use alone.
    Poisson {
        /// Nominal device time of each job.
        job_ns: u64,
        /// Offered load, e.g. `0.05` for 5 %.
        load: f64,
    },
    /// Nothing at all (an attached but idle VM).
    Idle,
}

impl Workload {
    /// A saturating closed loop with 4 outstanding submissions and a 2 µs think time.
    pub fn saturating(batch_ns: u64) -> Workload {
        Workload::ClosedLoop {
            batch_ns,
            outstanding: 4,
            think_ns: 2_000,
        }
    }

    /// Nominal device time of one submission.
    pub fn job_ns(&self) -> u64 {
        match *self {
            Workload::ClosedLoop { batch_ns, .. } => batch_ns,
            Workload::Poisson { job_ns, .. } => job_ns,
            Workload::Idle => 0,
        }
    }

    /// Mean gap between Poisson arrivals in ns (`None` for other workloads).
    pub fn mean_gap_ns(&self) -> Option<f64> {
        match *self {
            Workload::Poisson { job_ns, load } if load > 0.0 => {
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "simulated durations are far below 2^53 ns"
                )]
                let job = job_ns as f64;
                Some(job / load)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_gap_follows_load() {
        let w = Workload::Poisson {
            job_ns: 1_000_000,
            load: 0.05,
        };
        assert_eq!(w.mean_gap_ns(), Some(20_000_000.0));
        assert_eq!(Workload::saturating(5).mean_gap_ns(), None);
        assert_eq!(Workload::saturating(5).job_ns(), 5);
    }
}
