//! The simulated device: one engine that runs granted submissions one after another in
//! grant order, with a launch latency, a completion-notification latency and noisy
//! service times.
//!
//! Defaults follow the lavapipe measurements in the QoS notes: an empty submit → fence
//! round trip of ≈ 16 µs (split here into 8 µs launch and 8 µs notification) and a
//! per-submission spread of a few percent with one llvmpipe thread.

use crate::sim::rng::Rng;

/// Parameters of the simulated device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceModel {
    /// From grant to the device being able to start the submission (submit call, driver).
    pub launch_ns: u64,
    /// From the device finishing to the host seeing the fence.
    pub notify_ns: u64,
    /// Coefficient of variation of service time around the nominal work (log-normal).
    pub noise_cv: f64,
}

impl DeviceModel {
    /// lavapipe-like defaults: 8 µs launch, 8 µs notification, 3 % service-time spread.
    pub const LAVAPIPE: DeviceModel = DeviceModel {
        launch_ns: 8_000,
        notify_ns: 8_000,
        noise_cv: 0.03,
    };

    /// An ideal device: no latency, no noise.
    pub const IDEAL: DeviceModel = DeviceModel {
        launch_ns: 0,
        notify_ns: 0,
        noise_cv: 0.0,
    };
}

impl Default for DeviceModel {
    fn default() -> Self {
        DeviceModel::LAVAPIPE
    }
}

/// When a submission runs on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    /// Device start.
    pub start_ns: u64,
    /// Device end.
    pub end_ns: u64,
    /// When the host learns of the completion.
    pub notify_ns: u64,
}

/// The device's state: when its engine becomes free.
#[derive(Debug, Clone)]
pub struct Device {
    model: DeviceModel,
    free_at: u64,
    rng: Rng,
}

impl Device {
    /// An idle device.
    pub fn new(model: DeviceModel, seed: u64) -> Device {
        Device {
            model,
            free_at: 0,
            rng: Rng::new(seed),
        }
    }

    /// Runs a submission of `work_ns` nominal device time granted at `granted_ns`.
    pub fn run(&mut self, granted_ns: u64, work_ns: u64) -> Execution {
        let factor = self.rng.noise_factor(self.model.noise_cv);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_precision_loss,
            reason = "simulated durations are far below 2^53 ns and non-negative"
        )]
        let service = ((work_ns as f64) * factor).round().max(1.0) as u64;
        let start_ns = granted_ns
            .saturating_add(self.model.launch_ns)
            .max(self.free_at);
        let end_ns = start_ns.saturating_add(service);
        self.free_at = end_ns;
        Execution {
            start_ns,
            end_ns,
            notify_ns: end_ns.saturating_add(self.model.notify_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_submissions_back_to_back_in_grant_order() {
        let mut d = Device::new(DeviceModel::LAVAPIPE, 1);
        let a = d.run(0, 1_000_000);
        let b = d.run(0, 1_000_000);
        assert_eq!(a.start_ns, 8_000);
        assert_eq!(b.start_ns, a.end_ns);
        assert_eq!(b.notify_ns, b.end_ns + 8_000);
    }

    #[test]
    fn idle_device_pays_the_launch_latency() {
        let mut d = Device::new(DeviceModel::IDEAL, 1);
        let a = d.run(0, 500);
        assert_eq!((a.start_ns, a.end_ns), (0, 500));
        let b = d.run(10_000, 500);
        assert_eq!((b.start_ns, b.end_ns), (10_000, 10_500));
    }
}
