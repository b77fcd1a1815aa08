//! Rate-limited warnings for messages a misbehaving guest can repeat.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
    suppressed: u64,
}

/// Allows at most `burst` messages per `period`; counts the rest and reports the
/// count with the next message that gets through.
#[derive(Debug)]
pub struct RateLimiter {
    target: &'static str,
    period: Duration,
    burst: u32,
    window: Mutex<Window>,
}

impl RateLimiter {
    /// A limiter passing `burst` messages per `period`, logging under `target`.
    pub fn new(target: &'static str, period: Duration, burst: u32) -> Self {
        Self {
            target,
            period,
            burst,
            window: Mutex::new(Window {
                start: Instant::now(),
                count: 0,
                suppressed: 0,
            }),
        }
    }

    /// Returns `Some(suppressed_so_far)` if a message may be logged now.
    pub fn check(&self) -> Option<u64> {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(w.start) >= self.period {
            w.start = now;
            w.count = 0;
        }
        if w.count < self.burst {
            w.count += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }

    /// Logs `msg` at warn level if the limiter allows it.
    pub fn warn(&self, msg: std::fmt::Arguments<'_>) {
        match self.check() {
            Some(0) => log::warn!(target: self.target, "{msg}"),
            Some(n) => log::warn!(target: self.target, "{msg} ({n} similar messages suppressed)"),
            None => {}
        }
    }

    /// Logs `msg` at info level if the limiter allows it (expected states a guest or
    /// frontend causes, such as a stopped ring, that are not faults).
    pub fn info(&self, msg: std::fmt::Arguments<'_>) {
        match self.check() {
            Some(0) => log::info!(target: self.target, "{msg}"),
            Some(n) => log::info!(target: self.target, "{msg} ({n} similar messages suppressed)"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_passes_burst_then_counts_suppressed() {
        let rl = RateLimiter::new("test", Duration::from_secs(3600), 2);
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), None);
        assert_eq!(rl.check(), None);
    }
}
