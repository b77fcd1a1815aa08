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

/// One fence the guest asked for, in creation order on its timeline.
#[derive(Debug)]
struct Pending<T> {
    id: FenceId,
    done: bool,
    tokens: Vec<T>,
}

/// Fences per timeline in creation order, with the responses parked behind them.
///
/// The renderer may report fences out of order (a SUBMIT_3D on one context finishes
/// after a 2D command fenced later on the global timeline), but the guest treats a
/// fence as "everything up to here is done" on its timeline: Linux signals every
/// older fence of the same ring when a response with a newer one arrives. So a fence
/// counts as completed only once every fence created before it on its timeline has
/// too; its responses are released then, in creation order.
#[derive(Debug)]
pub struct FenceQueue<T> {
    timelines: HashMap<Timeline, VecDeque<Pending<T>>>,
    max_parked: usize,
    parked_total: usize,
    max_pending: usize,
    pending_total: usize,
}

/// Parking refused: the cap on parked responses was reached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} responses already wait for fences")]
pub struct TooManyParked(pub usize);

impl<T> FenceQueue<T> {
    /// A queue holding at most `max_parked` tokens and `max_parked` pending fences.
    pub fn new(max_parked: usize) -> Self {
        Self {
            timelines: HashMap::new(),
            max_parked,
            parked_total: 0,
            max_pending: max_parked,
            pending_total: 0,
        }
    }

    /// Registers fence `fence` on `timeline`, after every fence created there before.
    /// `done` says the renderer completed it at once. Returns tokens released by it
    /// (none are parked on a fence that was just created, but a completed fence may
    /// unblock nothing else either; kept for symmetry with [`FenceQueue::signal`]).
    ///
    /// When the cap on pending fences is reached the fence is not tracked: its
    /// response will be returned as soon as it is written (a guest with that many
    /// fences in flight is misbehaving; it only loses its own ordering).
    pub fn create(&mut self, timeline: Timeline, fence: FenceId, done: bool) -> Vec<T> {
        if self.pending_total >= self.max_pending {
            return Vec::new();
        }
        self.timelines
            .entry(timeline)
            .or_default()
            .push_back(Pending {
                id: fence,
                done,
                tokens: Vec::new(),
            });
        self.pending_total += 1;
        self.release(timeline)
    }

    /// Parks `token` behind fence `fence` of `timeline` (the oldest pending fence
    /// with that id). If no such fence is pending — it completed, or was never
    /// created — the token comes straight back as `Ok(Some(token))`.
    pub fn park(
        &mut self,
        timeline: Timeline,
        fence: FenceId,
        token: T,
    ) -> Result<Option<T>, (TooManyParked, T)> {
        let Some(entry) = self
            .timelines
            .get_mut(&timeline)
            .and_then(|q| q.iter_mut().find(|p| p.id == fence))
        else {
            return Ok(Some(token));
        };
        if self.parked_total >= self.max_parked {
            return Err((TooManyParked(self.max_parked), token));
        }
        entry.tokens.push(token);
        self.parked_total += 1;
        Ok(None)
    }

    /// Records that the renderer completed fence `fence` on `timeline` (the oldest
    /// pending one with that id); returns every token now releasable on that timeline,
    /// in creation order.
    ///
    /// A context ring is in order by definition, so there the fence also completes
    /// every fence created before it; a renderer that reports only the newest of
    /// several may do so, and an id no pending fence has completes those with lower
    /// ids (what Linux assumes of a ring). The global timeline mixes contexts, so only
    /// the exact fence completes there.
    pub fn signal(&mut self, timeline: Timeline, fence: FenceId) -> Vec<T> {
        if let Some(queue) = self.timelines.get_mut(&timeline) {
            let exact = queue.iter().position(|p| p.id == fence && !p.done);
            match (timeline, exact) {
                (Timeline::Global, Some(i)) => {
                    if let Some(p) = queue.get_mut(i) {
                        p.done = true;
                    }
                }
                (Timeline::Global, None) => {}
                (Timeline::Ring(..), Some(i)) => {
                    queue.iter_mut().take(i + 1).for_each(|p| p.done = true);
                }
                (Timeline::Ring(..), None) => queue
                    .iter_mut()
                    .filter(|p| p.id <= fence)
                    .for_each(|p| p.done = true),
            }
        }
        self.release(timeline)
    }

    /// Pops the completed prefix of `timeline`, returning its tokens.
    fn release(&mut self, timeline: Timeline) -> Vec<T> {
        let Some(queue) = self.timelines.get_mut(&timeline) else {
            return Vec::new();
        };
        let mut released = Vec::new();
        while queue.front().is_some_and(|p| p.done) {
            if let Some(p) = queue.pop_front() {
                self.pending_total = self.pending_total.saturating_sub(1);
                released.extend(p.tokens);
            }
        }
        if queue.is_empty() {
            self.timelines.remove(&timeline);
        }
        self.parked_total = self.parked_total.saturating_sub(released.len());
        released
    }

    /// Drops a context's timelines, returning its parked tokens (their responses are
    /// still valid: the context is gone, so the guest must not wait forever).
    pub fn drop_context(&mut self, ctx: ContextId) -> Vec<T> {
        let mut released = Vec::new();
        let mut dropped = 0;
        self.timelines.retain(|t, q| {
            if matches!(t, Timeline::Ring(c, _) if *c == ctx) {
                dropped += q.len();
                released.extend(q.drain(..).flat_map(|p| p.tokens));
                false
            } else {
                true
            }
        });
        self.pending_total = self.pending_total.saturating_sub(dropped);
        self.parked_total = self.parked_total.saturating_sub(released.len());
        released
    }

    /// Releases everything (device reset).
    pub fn drain_all(&mut self) -> Vec<T> {
        self.parked_total = 0;
        self.pending_total = 0;
        self.timelines
            .drain()
            .flat_map(|(_, q)| q.into_iter().flat_map(|p| p.tokens))
            .collect()
    }

    /// Number of parked tokens.
    pub fn parked(&self) -> usize {
        self.parked_total
    }

    /// Number of fences not yet released.
    pub fn pending(&self) -> usize {
        self.pending_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Timeline = Timeline::Ring(ContextId(1), RingIdx(0));
    const B: Timeline = Timeline::Ring(ContextId(1), RingIdx(1));

    fn created<T>(q: &mut FenceQueue<T>, t: Timeline, ids: &[u64]) {
        for &id in ids {
            assert!(q.create(t, FenceId(id), false).is_empty());
        }
    }

    #[test]
    fn signal_releases_in_creation_order_on_its_own_timeline_only() {
        let mut q = FenceQueue::new(16);
        created(&mut q, A, &[3, 7, 12]);
        created(&mut q, B, &[4, 9]);
        for (t, id, tok) in [
            (A, 3, "a3"),
            (B, 4, "b4"),
            (A, 7, "a7"),
            (A, 12, "a12"),
            (B, 9, "b9"),
        ] {
            assert_eq!(q.park(t, FenceId(id), tok), Ok(None));
        }
        assert_eq!(q.signal(A, FenceId(3)), vec!["a3"]);
        assert_eq!(q.signal(A, FenceId(7)), vec!["a7"]);
        assert_eq!(q.parked(), 3);
        assert_eq!(q.signal(B, FenceId(4)), vec!["b4"]);
        assert_eq!(q.signal(B, FenceId(9)), vec!["b9"]);
        assert_eq!(q.signal(A, FenceId(12)), vec!["a12"]);
        assert_eq!(q.parked(), 0);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn a_later_fence_completing_first_waits_for_the_older_one() {
        let mut q = FenceQueue::new(8);
        let g = Timeline::Global;
        created(&mut q, g, &[5]);
        // A 2D command fenced later completes at once…
        assert!(q.create(g, FenceId(6), true).is_empty());
        assert_eq!(q.park(g, FenceId(5), "submit"), Ok(None));
        assert_eq!(q.park(g, FenceId(6), "flush"), Ok(None));
        // …but its response waits until the older SUBMIT_3D fence is done.
        assert!(q.signal(g, FenceId(6)).is_empty());
        assert_eq!(q.signal(g, FenceId(5)), vec!["submit", "flush"]);
    }

    #[test]
    fn park_on_a_completed_or_unknown_fence_returns_the_token_at_once() {
        let mut q = FenceQueue::new(4);
        assert!(q.create(Timeline::Global, FenceId(10), true).is_empty());
        assert_eq!(q.park(Timeline::Global, FenceId(10), 1), Ok(Some(1)));
        assert_eq!(q.park(Timeline::Global, FenceId(99), 2), Ok(Some(2)));
        assert!(q.create(Timeline::Global, FenceId(11), false).is_empty());
        assert_eq!(q.park(Timeline::Global, FenceId(11), 3), Ok(None));
    }

    #[test]
    fn ids_need_not_increase() {
        let mut q = FenceQueue::new(4);
        let g = Timeline::Global;
        created(&mut q, g, &[10, 5]);
        assert_eq!(q.park(g, FenceId(5), "five"), Ok(None));
        assert!(q.signal(g, FenceId(5)).is_empty());
        assert_eq!(q.signal(g, FenceId(10)), vec!["five"]);
    }

    #[test]
    fn on_a_ring_a_newer_fence_completes_the_older_ones() {
        let mut q = FenceQueue::new(8);
        created(&mut q, A, &[3, 7, 12]);
        for (id, tok) in [(3, "a3"), (7, "a7"), (12, "a12")] {
            assert_eq!(q.park(A, FenceId(id), tok), Ok(None));
        }
        assert_eq!(q.signal(A, FenceId(7)), vec!["a3", "a7"]);
        // An id nobody created completes the lower ones.
        assert_eq!(q.signal(A, FenceId(20)), vec!["a12"]);
    }

    #[test]
    fn cap_on_parked_tokens_is_enforced() {
        let mut q = FenceQueue::new(1);
        created(&mut q, A, &[1]);
        assert_eq!(q.park(A, FenceId(1), 1), Ok(None));
        assert_eq!(q.park(A, FenceId(1), 2), Err((TooManyParked(1), 2)));
    }

    #[test]
    fn dropping_a_context_releases_its_tokens() {
        let mut q = FenceQueue::new(8);
        let other = Timeline::Ring(ContextId(2), RingIdx(0));
        created(&mut q, A, &[1]);
        created(&mut q, other, &[1]);
        q.park(A, FenceId(1), 1).ok();
        q.park(other, FenceId(1), 2).ok();
        assert_eq!(q.drop_context(ContextId(1)), vec![1]);
        assert_eq!(q.parked(), 1);
        assert_eq!(q.pending(), 1);
    }
}
