//! One VM's runlist: a bounded FIFO of submissions waiting for a grant.
//!
//! The runlist keeps submission order (so per-queue order is kept too) and refuses new
//! work beyond its limit, which is how backpressure reaches the guest instead of the host
//! buffering without bound.

use std::collections::VecDeque;

use thiserror::Error;

use crate::ids::{QueueId, SubmissionId, VmId};

/// Errors from a runlist.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RunlistError {
    /// The runlist is at its limit; the caller should stop decoding until a grant.
    #[error("runlist of {vm} is full ({limit} submissions queued)")]
    Full {
        /// The VM whose runlist is full.
        vm: VmId,
        /// The limit in force.
        limit: usize,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, RunlistError>;

/// A submission waiting in a runlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// Its id.
    pub id: SubmissionId,
    /// Target host queue.
    pub queue: QueueId,
    /// Cost hint from the submitter.
    pub cost_hint_ns: Option<u64>,
    /// Caller's tag.
    pub tag: u64,
    /// Global arrival sequence number (FIFO order across VMs).
    pub seq: u64,
}

/// A bounded FIFO of [`Queued`] submissions for one VM.
#[derive(Debug, Clone)]
pub struct Runlist {
    vm: VmId,
    items: VecDeque<Queued>,
    limit: usize,
}

impl Runlist {
    /// An empty runlist for `vm` holding at most `limit` submissions.
    pub fn new(vm: VmId, limit: usize) -> Runlist {
        Runlist {
            vm,
            items: VecDeque::new(),
            limit,
        }
    }

    /// Appends a submission, or refuses it when the runlist is full.
    pub fn push(&mut self, item: Queued) -> Result<()> {
        if self.items.len() >= self.limit {
            return Err(RunlistError::Full {
                vm: self.vm,
                limit: self.limit,
            });
        }
        self.items.push_back(item);
        Ok(())
    }

    /// The next submission to grant, if any.
    pub fn head(&self) -> Option<&Queued> {
        self.items.front()
    }

    /// Removes and returns the head.
    pub fn pop(&mut self) -> Option<Queued> {
        self.items.pop_front()
    }

    /// Number of queued submissions.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The limit in force.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the limit. Work already queued beyond a lower limit is kept; only new
    /// submissions are refused until the runlist drains below it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Removes everything, returning the ids in order.
    pub fn drain(&mut self) -> Vec<SubmissionId> {
        self.items.drain(..).map(|q| q.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64) -> Queued {
        Queued {
            id: SubmissionId(n),
            queue: QueueId(0),
            cost_hint_ns: None,
            tag: n,
            seq: n,
        }
    }

    #[test]
    fn keeps_submission_order() {
        let mut r = Runlist::new(VmId(1), 8);
        for n in 0..3 {
            r.push(item(n)).unwrap();
        }
        assert_eq!(r.pop().map(|q| q.id), Some(SubmissionId(0)));
        assert_eq!(r.head().map(|q| q.id), Some(SubmissionId(1)));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn refuses_beyond_the_limit() {
        let mut r = Runlist::new(VmId(1), 2);
        r.push(item(0)).unwrap();
        r.push(item(1)).unwrap();
        assert_eq!(
            r.push(item(2)),
            Err(RunlistError::Full {
                vm: VmId(1),
                limit: 2
            })
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn lowering_the_limit_keeps_queued_work() {
        let mut r = Runlist::new(VmId(1), 4);
        for n in 0..4 {
            r.push(item(n)).unwrap();
        }
        r.set_limit(1);
        assert_eq!(r.len(), 4);
        assert!(r.push(item(9)).is_err());
        assert_eq!(r.drain(), (0..4).map(SubmissionId).collect::<Vec<_>>());
        assert!(r.is_empty());
        r.push(item(9)).unwrap();
    }
}
