//! The gate protocol on a SOCK_SEQPACKET socket: every message is exactly
//! [`MSG_LEN`] bytes, little-endian: `kind: u32, reserved: u32 (0), a: u64, b: u64,
//! c: u64`.
//!
//! | direction | kind | a | b |
//! |---|---|---|---|
//! | worker → daemon | 1 submit | tag | cost hint ns + 1 (0: none) |
//! | worker → daemon | 2 complete | submission id | device ns |
//! | worker → daemon | 3 ran (best-effort or under a lease: no grant of their own) | submissions | device ns |
//! | worker → daemon | 4 a context failed | 0 | 0 |
//! | worker → daemon | 5 lease returned | submission id of the lease | device ns of its unreported batches (count in `c`) |
//! | daemon → worker | 1 granted | tag | submission id |
//! | daemon → worker | 2 refused (backpressure) | tag | 0 |
//! | daemon → worker | 3 best-effort | 0 or 1 | 0 |
//! | daemon → worker | 4 granted with a lease | tag | submission id |
//! | daemon → worker | 5 lease revoked | 0 | submission id of the lease |
//!
//! Field `c` is reserved (0) except in a returned lease. The daemon checks length,
//! kind and reserved fields and drops a connection that breaks them.

use vgpu_scheduler::SubmissionId;

use super::{GateEvent, QosError, Result};

/// Size of every gate message.
pub const MSG_LEN: usize = 32;

/// A worker's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRequest {
    /// Queue a submission.
    Submit {
        /// The worker's tag.
        tag: u64,
        /// Expected device time.
        cost_hint_ns: Option<u64>,
    },
    /// A granted submission finished.
    Complete {
        /// Its id.
        submission: SubmissionId,
        /// Measured device time.
        device_ns: u64,
    },
    /// Best-effort submissions (no grant) finished since the last report.
    Ran {
        /// How many (at least 1).
        submissions: u64,
        /// Their summed device time.
        device_ns: u64,
    },
    /// A context of the VM failed.
    ContextFailed,
    /// A revoked lease's last batches finished: its unreported batches and their
    /// device time; the lease's grant is complete.
    EndLease {
        /// The lease's grant.
        submission: SubmissionId,
        /// Batches not yet reported.
        submissions: u64,
        /// Their device time.
        device_ns: u64,
    },
}

fn put(kind: u32, a: u64, b: u64) -> [u8; MSG_LEN] {
    put3(kind, a, b, 0)
}

fn put3(kind: u32, a: u64, b: u64, c: u64) -> [u8; MSG_LEN] {
    let mut m = [0u8; MSG_LEN];
    m[0..4].copy_from_slice(&kind.to_le_bytes());
    m[8..16].copy_from_slice(&a.to_le_bytes());
    m[16..24].copy_from_slice(&b.to_le_bytes());
    m[24..32].copy_from_slice(&c.to_le_bytes());
    m
}

/// Kind of the one message that uses field `c`.
const END_LEASE: u32 = 5;

fn get(m: &[u8]) -> Result<(u32, u64, u64)> {
    match get3(m)? {
        (kind, a, b, 0) => Ok((kind, a, b)),
        _ => Err(QosError::Malformed("gate message with reserved bits set")),
    }
}

fn get3(m: &[u8]) -> Result<(u32, u64, u64, u64)> {
    if m.len() != MSG_LEN {
        return Err(QosError::Malformed("gate message of the wrong length"));
    }
    let word = |r: std::ops::Range<usize>| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&m[r]);
        u64::from_le_bytes(b)
    };
    let mut k = [0u8; 4];
    k.copy_from_slice(&m[0..4]);
    let mut reserved = [0u8; 4];
    reserved.copy_from_slice(&m[4..8]);
    if u32::from_le_bytes(reserved) != 0 {
        return Err(QosError::Malformed("gate message with reserved bits set"));
    }
    Ok((
        u32::from_le_bytes(k),
        word(8..16),
        word(16..24),
        word(24..32),
    ))
}

impl GateRequest {
    /// Encodes the request.
    pub fn encode(self) -> [u8; MSG_LEN] {
        match self {
            GateRequest::Submit { tag, cost_hint_ns } => {
                put(1, tag, cost_hint_ns.map_or(0, |c| c.saturating_add(1)))
            }
            GateRequest::Complete {
                submission,
                device_ns,
            } => put(2, submission.0, device_ns),
            GateRequest::Ran {
                submissions,
                device_ns,
            } => put(3, submissions, device_ns),
            GateRequest::ContextFailed => put(4, 0, 0),
            GateRequest::EndLease {
                submission,
                submissions,
                device_ns,
            } => put3(END_LEASE, submission.0, device_ns, submissions),
        }
    }

    /// Decodes a request from untrusted bytes.
    pub fn decode(m: &[u8]) -> Result<Self> {
        if let (END_LEASE, s, device_ns, submissions) = get3(m)? {
            return Ok(GateRequest::EndLease {
                submission: SubmissionId(s),
                submissions,
                device_ns,
            });
        }
        match get(m)? {
            (1, tag, hint) => Ok(GateRequest::Submit {
                tag,
                cost_hint_ns: hint.checked_sub(1),
            }),
            (2, s, device_ns) => Ok(GateRequest::Complete {
                submission: SubmissionId(s),
                device_ns,
            }),
            (3, submissions, device_ns) if submissions > 0 => Ok(GateRequest::Ran {
                submissions,
                device_ns,
            }),
            (4, 0, 0) => Ok(GateRequest::ContextFailed),
            _ => Err(QosError::Malformed("unknown gate request")),
        }
    }
}

/// Encodes an event for the worker.
pub fn encode_event(ev: GateEvent) -> [u8; MSG_LEN] {
    match ev {
        GateEvent::Granted {
            tag,
            submission,
            lease: false,
        } => put(1, tag, submission.0),
        GateEvent::Granted {
            tag,
            submission,
            lease: true,
        } => put(4, tag, submission.0),
        GateEvent::Revoke { submission } => put(5, 0, submission.0),
        GateEvent::Refused { tag } => put(2, tag, 0),
        GateEvent::Bypass(on) => put(3, u64::from(on), 0),
    }
}

/// Decodes an event from the daemon.
pub fn decode_event(m: &[u8]) -> Result<GateEvent> {
    match get(m)? {
        (kind @ (1 | 4), tag, s) => Ok(GateEvent::Granted {
            tag,
            submission: SubmissionId(s),
            lease: kind == 4,
        }),
        (5, 0, s) => Ok(GateEvent::Revoke {
            submission: SubmissionId(s),
        }),
        (2, tag, 0) => Ok(GateEvent::Refused { tag }),
        (3, on @ (0 | 1), 0) => Ok(GateEvent::Bypass(on == 1)),
        _ => Err(QosError::Malformed("unknown gate event")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qos::QosError;

    #[test]
    fn requests_round_trip() {
        for r in [
            GateRequest::Submit {
                tag: 7,
                cost_hint_ns: None,
            },
            GateRequest::Submit {
                tag: u64::MAX,
                cost_hint_ns: Some(5),
            },
            GateRequest::Complete {
                submission: SubmissionId(3),
                device_ns: 1_000,
            },
            GateRequest::Ran {
                submissions: 3,
                device_ns: 9,
            },
            GateRequest::ContextFailed,
            GateRequest::EndLease {
                submission: SubmissionId(8),
                submissions: 0,
                device_ns: 0,
            },
            GateRequest::EndLease {
                submission: SubmissionId(u64::MAX),
                submissions: 3,
                device_ns: 77,
            },
        ] {
            assert_eq!(GateRequest::decode(&r.encode()).ok(), Some(r));
        }
    }

    #[test]
    fn events_round_trip() {
        for e in [
            GateEvent::Granted {
                tag: 1,
                submission: SubmissionId(2),
                lease: false,
            },
            GateEvent::Granted {
                tag: 3,
                submission: SubmissionId(4),
                lease: true,
            },
            GateEvent::Revoke {
                submission: SubmissionId(6),
            },
            GateEvent::Refused { tag: 4 },
            GateEvent::Bypass(true),
            GateEvent::Bypass(false),
        ] {
            assert_eq!(decode_event(&encode_event(e)).ok(), Some(e));
        }
    }

    #[test]
    fn hostile_requests_are_rejected() {
        let good = GateRequest::Ran {
            submissions: 1,
            device_ns: 1,
        }
        .encode();
        // A report of no submissions is malformed.
        let mut none = good;
        none[8..16].fill(0);
        assert!(matches!(
            GateRequest::decode(&none),
            Err(QosError::Malformed(_))
        ));
        assert!(matches!(
            GateRequest::decode(&good[..31]),
            Err(QosError::Malformed(_))
        ));
        let mut long = good.to_vec();
        long.push(0);
        assert!(matches!(
            GateRequest::decode(&long),
            Err(QosError::Malformed(_))
        ));
        let mut reserved = good;
        reserved[5] = 1;
        assert!(matches!(
            GateRequest::decode(&reserved),
            Err(QosError::Malformed(_))
        ));
        let mut kind = good;
        kind[0] = 9;
        assert!(matches!(
            GateRequest::decode(&kind),
            Err(QosError::Malformed(_))
        ));
        let mut tail = good;
        tail[31] = 1;
        assert!(matches!(
            GateRequest::decode(&tail),
            Err(QosError::Malformed(_))
        ));
    }
}
