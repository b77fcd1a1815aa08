//! Per-thread scheduling knobs.

use std::num::NonZeroU64;

/// Timer slack of a thread whose short sleeps are on a guest's latency path: 1 µs
/// instead of Linux's default 50 µs, so a back-off sleep of 10 µs wakes after about
/// 10 µs, not 60 µs.
const PRECISE_SLACK_NS: u64 = 1_000;

/// Makes the calling thread's timed sleeps precise (see [`PRECISE_SLACK_NS`]), or
/// gives it back the process default (`precise == false`). A failure only costs
/// latency, so it is logged at debug level and ignored.
pub fn set_precise_timers(precise: bool) {
    // `None` restores the thread's default slack.
    let slack = if precise {
        NonZeroU64::new(PRECISE_SLACK_NS)
    } else {
        None
    };
    if let Err(e) = rustix::thread::set_current_timer_slack(slack) {
        log::debug!("sys: PR_SET_TIMERSLACK failed: {e}");
    }
}
