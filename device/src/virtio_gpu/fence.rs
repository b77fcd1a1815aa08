//! Fence timelines: responses parked until their fence signals.
//!
//! A fenced command's response is encoded at once; its descriptor (an opaque token
//! here) is parked on its timeline — the global one, or `(ctx_id, ring_idx)` when the
//! guest set `INFO_RING_IDX`. When fence N signals on a timeline, every parked token on
//! that timeline with id ≤ N is released, in the order it was parked. Ids need not be
//! contiguous (Linux draws them from one global counter).

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::ids::{ContextId, RingIdx};

/// A fence id as the guest numbers it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FenceId(pub u64);

impl fmt::Display for FenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fence{}", self.0)
    }
}

/// A fence timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timeline {
    /// The device-wide timeline (no `INFO_RING_IDX`).
    Global,
    /// A context's ring (`INFO_RING_IDX`).
    Ring(ContextId, RingIdx),
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeline::Global => f.write_str("global timeline"),
            Timeline::Ring(c, r) => write!(f, "{c}/{r}"),
        }
    }
}

/// Parked tokens per timeline, plus the highest fence each timeline has completed.
#[derive(Debug)]
pub struct FenceQueue<T> {
    completed: HashMap<Timeline, FenceId>,
    parked: HashMap<Timeline, VecDeque<(FenceId, T)>>,
    max_parked: usize,
    parked_total: usize,
}

/// Parking refused: the cap on parked responses was reached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} responses already wait for fences")]
pub struct TooManyParked(pub usize);

impl<T> FenceQueue<T> {
    /// A queue holding at most `max_parked` tokens in all.
    pub fn new(max_parked: usize) -> Self {
        Self {
            completed: HashMap::new(),
            parked: HashMap::new(),
            max_parked,
            parked_total: 0,
        }
    }

    /// Parks `token` until `fence` completes on `timeline`. If it already has, the
    /// token comes straight back as `Ok(Some(token))`.
    pub fn park(
        &mut self,
        timeline: Timeline,
        fence: FenceId,
        token: T,
    ) -> Result<Option<T>, (TooManyParked, T)> {
        if self
            .completed
            .get(&timeline)
            .is_some_and(|&done| fence <= done)
        {
            return Ok(Some(token));
        }
        if self.parked_total >= self.max_parked {
            return Err((TooManyParked(self.max_parked), token));
        }
        self.parked
            .entry(timeline)
            .or_default()
            .push_back((fence, token));
        self.parked_total += 1;
        Ok(None)
    }

    /// Records that `fence` completed on `timeline`; returns every parked token with
    /// an id ≤ `fence` on that timeline, in parking order.
    pub fn signal(&mut self, timeline: Timeline, fence: FenceId) -> Vec<T> {
        let done = self.completed.entry(timeline).or_insert(fence);
        if *done < fence {
            *done = fence;
        }
        let Some(queue) = self.parked.get_mut(&timeline) else {
            return Vec::new();
        };
        let mut released = Vec::new();
        let mut kept = VecDeque::with_capacity(queue.len());
        for (id, token) in queue.drain(..) {
            if id <= fence {
                released.push(token);
            } else {
                kept.push_back((id, token));
            }
        }
        *queue = kept;
        if queue.is_empty() {
            self.parked.remove(&timeline);
        }
        self.parked_total = self.parked_total.saturating_sub(released.len());
        released
    }

    /// Drops a context's timelines, returning its parked tokens (their responses are
    /// still valid: the context is gone, so the guest must not wait forever).
    pub fn drop_context(&mut self, ctx: ContextId) -> Vec<T> {
        self.completed
            .retain(|t, _| !matches!(t, Timeline::Ring(c, _) if *c == ctx));
        let mut released = Vec::new();
        self.parked.retain(|t, q| {
            if matches!(t, Timeline::Ring(c, _) if *c == ctx) {
                released.extend(q.drain(..).map(|(_, tok)| tok));
                false
            } else {
                true
            }
        });
        self.parked_total = self.parked_total.saturating_sub(released.len());
        released
    }

    /// Releases everything (device reset).
    pub fn drain_all(&mut self) -> Vec<T> {
        self.completed.clear();
        self.parked_total = 0;
        self.parked
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|(_, t)| t))
            .collect()
    }

    /// Number of parked tokens.
    pub fn parked(&self) -> usize {
        self.parked_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Timeline = Timeline::Ring(ContextId(1), RingIdx(0));
    const B: Timeline = Timeline::Ring(ContextId(1), RingIdx(1));

    #[test]
    fn signal_releases_all_lower_or_equal_ids_on_its_own_timeline_only() {
        let mut q = FenceQueue::new(16);
        for (t, id, tok) in [
            (A, 3, "a3"),
            (B, 4, "b4"),
            (A, 7, "a7"),
            (A, 12, "a12"),
            (B, 9, "b9"),
        ] {
            assert_eq!(q.park(t, FenceId(id), tok), Ok(None));
        }
        assert_eq!(q.signal(A, FenceId(8)), vec!["a3", "a7"]);
        assert_eq!(q.parked(), 3);
        assert_eq!(q.signal(B, FenceId(9)), vec!["b4", "b9"]);
        assert_eq!(q.signal(A, FenceId(100)), vec!["a12"]);
        assert_eq!(q.parked(), 0);
    }

    #[test]
    fn park_after_completion_returns_token_at_once() {
        let mut q = FenceQueue::new(4);
        assert!(q.signal(Timeline::Global, FenceId(10)).is_empty());
        assert_eq!(q.park(Timeline::Global, FenceId(9), 1), Ok(Some(1)));
        assert_eq!(q.park(Timeline::Global, FenceId(11), 2), Ok(None));
    }

    #[test]
    fn completion_never_goes_backwards() {
        let mut q = FenceQueue::new(4);
        q.signal(A, FenceId(10));
        q.signal(A, FenceId(5));
        assert_eq!(q.park(A, FenceId(8), ()), Ok(Some(())));
    }

    #[test]
    fn cap_on_parked_tokens_is_enforced() {
        let mut q = FenceQueue::new(1);
        assert_eq!(q.park(A, FenceId(1), 1), Ok(None));
        assert_eq!(q.park(A, FenceId(2), 2), Err((TooManyParked(1), 2)));
    }

    #[test]
    fn dropping_a_context_releases_its_tokens() {
        let mut q = FenceQueue::new(8);
        let other = Timeline::Ring(ContextId(2), RingIdx(0));
        q.park(A, FenceId(1), 1).ok();
        q.park(other, FenceId(1), 2).ok();
        assert_eq!(q.drop_context(ContextId(1)), vec![1]);
        assert_eq!(q.parked(), 1);
    }
}
