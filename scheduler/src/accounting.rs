//! Device-time accounting for one VM: virtual time for proportional share, a token bucket
//! for caps, and a cost estimate for admission.
//!
//! Everything is charged in **measured device-time nanoseconds**: a grant charges the
//! estimate in advance, the completion replaces it with the measurement. Both balances
//! are bounded:
//!
//! * **Credit.** A VM that wakes up after being idle has its virtual time raised to at
//!   most `burst` ns (of its own device time) behind the system virtual time, and its cap
//!   bucket clipped to `burst`: idling cannot hoard credit. While a VM is backlogged but
//!   blocked behind other VMs' non-preemptible submissions, its bucket keeps filling up to
//!   `burst + cap × longest recent submission`, so it can repay exactly what it was owed.
//! * **Debt.** A submission longer than its estimate overshoots; the overshoot is carried
//!   (virtual time ahead of the system, negative tokens) and repaid by waiting. Debt
//!   beyond [`AccountingConfig::debt_window_ns`] is forgiven, like NVIDIA's averaging
//!   factor spreading an overshoot over a bounded number of slices.

use crate::model::PPM;

/// Scale of virtual time: one unit is `1 / VT_SCALE` ns of device time at full weight.
pub const VT_SCALE: u128 = 1_000_000_000_000;

/// Tunables of the accounting, shared by all VMs of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountingConfig {
    /// Largest debt (ns of the VM's own device time) carried; the rest is forgiven.
    pub debt_window_ns: u64,
    /// Cost estimate update: `estimate += (measured - estimate) / 2^ewma_shift`.
    pub ewma_shift: u32,
    /// The "longest recent submission" decays by `1 / 2^max_cost_decay_shift` per
    /// completion, so one huge submission does not widen the credit ceiling for ever.
    pub max_cost_decay_shift: u32,
}

impl AccountingConfig {
    /// Defaults: 1 s debt window, EWMA weight 1/4, max-cost half-life ≈ 177 completions.
    pub const DEFAULT: AccountingConfig = AccountingConfig {
        debt_window_ns: 1_000_000_000,
        ewma_shift: 2,
        max_cost_decay_shift: 8,
    };
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig::DEFAULT
    }
}

/// Converts `cost_ns` of device time to virtual time at `weight_ppm`.
pub fn weighted(cost_ns: u64, weight_ppm: u32) -> u128 {
    u128::from(cost_ns) * VT_SCALE / u128::from(weight_ppm.max(1))
}

/// One VM's balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Virtual time: device time received divided by weight.
    vtime: u128,
    /// Cap bucket in ns × ppm (so refills at `cap_ppm` per ns are exact).
    tokens: i128,
    /// Time up to which `tokens` has been refilled.
    refilled_at: u64,
    /// EWMA of measured device time per submission.
    estimate_ns: u64,
}

impl Account {
    /// A fresh account at `now`, with a full bucket of `burst_ns` and virtual time `vtime`.
    pub fn new(now: u64, vtime: u128, burst_ns: u64, initial_estimate_ns: u64) -> Account {
        Account {
            vtime,
            tokens: i128::from(burst_ns) * i128::from(PPM),
            refilled_at: now,
            estimate_ns: initial_estimate_ns,
        }
    }

    /// Current virtual time.
    pub fn vtime(&self) -> u128 {
        self.vtime
    }

    /// Current cost estimate.
    pub fn estimate_ns(&self) -> u64 {
        self.estimate_ns
    }

    /// Charges `cost_ns` of device time at `weight_ppm` to virtual time.
    pub fn charge_vtime(&mut self, cost_ns: u64, weight_ppm: u32) {
        self.vtime = self.vtime.saturating_add(weighted(cost_ns, weight_ppm));
    }

    /// Gives back `cost_ns` of device time at `weight_ppm` (an estimate that was too high).
    pub fn refund_vtime(&mut self, cost_ns: u64, weight_ppm: u32) {
        self.vtime = self.vtime.saturating_sub(weighted(cost_ns, weight_ppm));
    }

    /// On wake-up: lag behind the system virtual time `floor` by at most `credit_ns`.
    pub fn wake(&mut self, floor: u128, credit_ns: u64, weight_ppm: u32) {
        let lowest = floor.saturating_sub(weighted(credit_ns, weight_ppm));
        self.vtime = self.vtime.max(lowest);
    }

    /// Forgives debt beyond `debt_ns` ahead of the system virtual time `floor`.
    pub fn bound_debt(&mut self, floor: u128, debt_ns: u64, weight_ppm: u32) {
        let highest = floor.saturating_add(weighted(debt_ns, weight_ppm));
        self.vtime = self.vtime.min(highest);
    }

    /// Re-expresses the lag or lead relative to `floor` after a weight change.
    pub fn reweight(&mut self, floor: u128, old_ppm: u32, new_ppm: u32) {
        let old = u128::from(old_ppm.max(1));
        let new = u128::from(new_ppm.max(1));
        self.vtime = if self.vtime >= floor {
            floor.saturating_add((self.vtime - floor) * old / new)
        } else {
            floor.saturating_sub((floor - self.vtime) * old / new)
        };
    }

    /// The bucket level at `now` (ns × ppm) without changing the account.
    pub fn tokens_at(&self, now: u64, cap_ppm: u32, ceiling_ns: u64) -> i128 {
        let elapsed = i128::from(now.saturating_sub(self.refilled_at));
        let ceiling = i128::from(ceiling_ns) * i128::from(PPM);
        let filled = self.tokens + elapsed * i128::from(cap_ppm);
        // A bucket already above the ceiling (ceiling shrank) does not grow, but is not
        // drained by the refill either; `clip_tokens` does that explicitly.
        if self.tokens >= ceiling {
            self.tokens
        } else {
            filled.min(ceiling)
        }
    }

    /// Refills the bucket up to `now` at `cap_ppm`, never above `ceiling_ns`.
    pub fn refill(&mut self, now: u64, cap_ppm: u32, ceiling_ns: u64) {
        self.tokens = self.tokens_at(now, cap_ppm, ceiling_ns);
        self.refilled_at = self.refilled_at.max(now);
    }

    /// Clips the bucket to `[-floor_ns, ceiling_ns]`.
    pub fn clip_tokens(&mut self, floor_ns: u64, ceiling_ns: u64) {
        let hi = i128::from(ceiling_ns) * i128::from(PPM);
        let lo = -(i128::from(floor_ns) * i128::from(PPM));
        self.tokens = self.tokens.clamp(lo, hi);
    }

    /// Whether the bucket is non-negative at `now`, i.e. the VM may start a submission.
    pub fn has_tokens(&self, now: u64, cap_ppm: u32, ceiling_ns: u64) -> bool {
        self.tokens_at(now, cap_ppm, ceiling_ns) >= 0
    }

    /// The earliest time at which the bucket is non-negative again.
    pub fn tokens_ready_at(&self, now: u64, cap_ppm: u32, ceiling_ns: u64) -> u64 {
        let level = self.tokens_at(now, cap_ppm, ceiling_ns);
        if level >= 0 || cap_ppm == 0 {
            return now;
        }
        let missing = -level;
        let rate = i128::from(cap_ppm);
        let wait = (missing + rate - 1) / rate;
        now.saturating_add(u64::try_from(wait).unwrap_or(u64::MAX))
    }

    /// Takes `cost_ns` out of the bucket.
    pub fn charge_tokens(&mut self, cost_ns: u64) {
        self.tokens -= i128::from(cost_ns) * i128::from(PPM);
    }

    /// Puts `cost_ns` back into the bucket.
    pub fn refund_tokens(&mut self, cost_ns: u64) {
        self.tokens += i128::from(cost_ns) * i128::from(PPM);
    }

    /// The bucket level in whole ns (rounded towards negative infinity).
    pub fn tokens_ns(&self) -> i128 {
        self.tokens.div_euclid(i128::from(PPM))
    }

    /// Folds a measured device time into the cost estimate.
    pub fn observe(&mut self, measured_ns: u64, ewma_shift: u32) {
        let est = i128::from(self.estimate_ns);
        let delta = (i128::from(measured_ns) - est) >> ewma_shift.min(16);
        self.estimate_ns = u64::try_from(est + delta).unwrap_or(measured_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn heavier_weight_advances_virtual_time_slower() {
        let mut a = Account::new(0, 0, 0, MS);
        let mut b = Account::new(0, 0, 0, MS);
        a.charge_vtime(2 * MS, 666_666);
        b.charge_vtime(MS, 333_333);
        // Two ms at weight 2/3 cost the same virtual time as one ms at weight 1/3.
        let diff = a.vtime().abs_diff(b.vtime());
        assert!(
            diff * 1_000_000 < a.vtime(),
            "a={} b={}",
            a.vtime(),
            b.vtime()
        );
    }

    #[test]
    fn wake_bounds_credit_but_keeps_debt() {
        let floor = weighted(100 * MS, PPM);
        let mut idle = Account::new(0, 0, 0, MS);
        idle.wake(floor, 2 * MS, PPM);
        assert_eq!(idle.vtime(), weighted(98 * MS, PPM));
        let mut indebted = Account::new(0, weighted(150 * MS, PPM), 0, MS);
        indebted.wake(floor, 2 * MS, PPM);
        assert_eq!(indebted.vtime(), weighted(150 * MS, PPM));
    }

    #[test]
    fn debt_beyond_the_window_is_forgiven() {
        let mut a = Account::new(0, weighted(5_000 * MS, PPM), 0, MS);
        a.bound_debt(weighted(1_000 * MS, PPM), 1_000 * MS, PPM);
        assert_eq!(a.vtime(), weighted(2_000 * MS, PPM));
    }

    #[test]
    fn bucket_refills_at_cap_rate_up_to_the_ceiling() {
        let mut a = Account::new(0, 0, 0, MS);
        a.charge_tokens(10 * MS);
        // 25 % cap: 40 ms of wall time repays 10 ms of device time.
        assert!(!a.has_tokens(39 * MS, 250_000, 2 * MS));
        assert!(a.has_tokens(40 * MS, 250_000, 2 * MS));
        assert_eq!(a.tokens_ready_at(0, 250_000, 2 * MS), 40 * MS);
        a.refill(1_000 * MS, 250_000, 2 * MS);
        assert_eq!(a.tokens_ns(), i128::from(2 * MS));
    }

    #[test]
    fn clip_bounds_both_sides() {
        let mut a = Account::new(0, 0, 50 * MS, MS);
        a.clip_tokens(MS, 2 * MS);
        assert_eq!(a.tokens_ns(), i128::from(2 * MS));
        a.charge_tokens(100 * MS);
        a.clip_tokens(MS, 2 * MS);
        assert_eq!(a.tokens_ns(), -i128::from(MS));
    }

    #[test]
    fn estimate_moves_towards_measurements() {
        let mut a = Account::new(0, 0, 0, 4 * MS);
        for _ in 0..64 {
            a.observe(MS, 2);
        }
        assert!(a.estimate_ns().abs_diff(MS) < 1_000, "{}", a.estimate_ns());
    }

    #[test]
    fn reweight_scales_the_lag() {
        let floor = weighted(100 * MS, PPM);
        let mut a = Account::new(0, weighted(90 * MS, PPM), 0, MS);
        // A lag at half weight…
        let lag_before = floor - a.vtime();
        a.reweight(floor, 500_000, 250_000);
        // …is the same device time at quarter weight: twice the virtual lag.
        assert_eq!(floor - a.vtime(), lag_before * 2);
    }
}
