//! How long the work on each host queue has been running, for the GPU-hang watchdog.
//!
//! A fence's time since it was queued is not the time its work ran: a guest that
//! queues many long batches at once (legal, and what a deep pipeline does) has its
//! last fence pending for the sum of them all, and a watchdog counting from queueing
//! would kill a VM whose every batch is short. A queue runs its work in order, so the
//! oldest fence still pending on a queue started running, at the latest, when the
//! fence before it on that queue was seen to signal (or when it was queued, if that
//! is later). [`BusyClock`] keeps that moment per queue; the watchdog looks at the
//! earliest of them over the context's queues. Queues are kept apart so that one
//! queue's progress never hides another queue's hang.
//!
//! The moment a fence is *seen* to signal is at most a poll after it did, so a hung
//! batch is noticed at most that much later.

use std::collections::{HashMap, HashSet};

/// A host queue: the raw handles of its device and of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct QueueKey {
    pub(crate) device: u64,
    pub(crate) queue: u64,
}

/// When each queue last retired a fence (`CLOCK_MONOTONIC` ns).
#[derive(Debug, Default)]
pub(crate) struct BusyClock {
    last_retired: HashMap<QueueKey, u64>,
}

impl BusyClock {
    /// A fence of `key` was seen to signal at `now`.
    pub(crate) fn retired(&mut self, key: QueueKey, now: u64) {
        let at = self.last_retired.entry(key).or_insert(now);
        *at = (*at).max(now);
    }

    /// The device's queues are gone (its fences were flushed before it was destroyed).
    pub(crate) fn forget_device(&mut self, device: u64) {
        self.last_retired.retain(|k, _| k.device != device);
    }

    /// Since when the work of the oldest pending fence has been running, over all
    /// queues: for each queue, its first fence in `pending` (queue key and when it
    /// was queued, in queueing order) started at the later of its queueing and the
    /// queue's last retirement; the earliest of those. `None` if nothing is pending.
    pub(crate) fn running_since(
        &self,
        pending: impl IntoIterator<Item = (QueueKey, u64)>,
    ) -> Option<u64> {
        // A set, not a list: a guest may spread its fences over many devices'
        // queues, and this runs on every pass of the retire loop.
        let mut seen: HashSet<QueueKey> = HashSet::new();
        let mut earliest: Option<u64> = None;
        for (key, queued) in pending {
            if !seen.insert(key) {
                continue;
            }
            let started = self
                .last_retired
                .get(&key)
                .map_or(queued, |&r| r.max(queued));
            earliest = Some(earliest.map_or(started, |e| e.min(started)));
        }
        earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: QueueKey = QueueKey {
        device: 1,
        queue: 10,
    };
    const B: QueueKey = QueueKey {
        device: 1,
        queue: 11,
    };

    #[test]
    fn a_deep_pipeline_counts_from_the_last_retirement_not_from_queueing() {
        let mut c = BusyClock::default();
        // Ten batches queued at 0; nine retired, the last at 9 s.
        for s in 1..=9 {
            c.retired(A, s * 1_000_000_000);
        }
        assert_eq!(c.running_since([(A, 0)]), Some(9_000_000_000));
        // A fence queued after the last retirement started when it was queued.
        assert_eq!(c.running_since([(A, 9_500_000_000)]), Some(9_500_000_000));
        assert_eq!(c.running_since(std::iter::empty()), None);
    }

    #[test]
    fn one_queue_progressing_never_hides_another_queue_hanging() {
        let mut c = BusyClock::default();
        // Queue B hangs from 1 s; queue A keeps retiring fences.
        for s in 2..=20 {
            c.retired(A, s * 1_000_000_000);
        }
        let pending = [(A, 20_000_000_000), (B, 1_000_000_000), (A, 20_500_000_000)];
        assert_eq!(c.running_since(pending), Some(1_000_000_000));
        // Only the first pending fence of each queue counts.
        c.retired(B, 3_000_000_000);
        let pending = [(B, 1_000_000_000), (B, 2_000_000_000)];
        assert_eq!(c.running_since(pending), Some(3_000_000_000));
    }

    #[test]
    fn a_destroyed_device_is_forgotten() {
        let mut c = BusyClock::default();
        c.retired(A, 5);
        c.retired(
            QueueKey {
                device: 2,
                queue: 10,
            },
            7,
        );
        c.forget_device(1);
        assert_eq!(c.running_since([(A, 1)]), Some(1));
        assert_eq!(
            c.running_since([(
                QueueKey {
                    device: 2,
                    queue: 10
                },
                1
            )]),
            Some(7)
        );
        // Time never runs backwards for a queue.
        c.retired(A, 9);
        c.retired(A, 8);
        assert_eq!(c.running_since([(A, 1)]), Some(9));
    }
}
