//! Newtype identifiers used across the scheduler.
//!
//! Every id that crosses the scheduler boundary is its own type, so a VM id can never be
//! passed where a queue id or submission id is expected.

use std::fmt;

/// Identifies one VM (one guest, one runlist per GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(pub u32);

/// Identifies one host execution queue of a GPU (`0..GpuConfig::queues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u32);

/// Identifies one submission, unique for the lifetime of an [`crate::Arbiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubmissionId(pub u64);

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm{}", self.0)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue{}", self.0)
    }
}

impl fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_with_their_kind() {
        assert_eq!(VmId(3).to_string(), "vm3");
        assert_eq!(QueueId(0).to_string(), "queue0");
        assert_eq!(SubmissionId(42).to_string(), "sub42");
    }
}
