//! A message-style front end to the [`Arbiter`], for driving it from other threads or
//! worker processes: every request and reply is a plain enum of plain data.
//!
//! The daemon owns the arbiter; workers send [`Request`]s (over a channel or socket,
//! serialised by the caller) and receive [`Reply`]s. After every request the arbiter grants
//! whatever the device can take, so replies may carry grants for other VMs: route them by
//! [`Grant::vm`].

use thiserror::Error;

use crate::arbiter::{Arbiter, ArbiterError, Decision};
use crate::ids::{SubmissionId, VmId};
use crate::model::{Completion, GpuConfig, Grant, SubmitRequest, VmConfig};
use crate::policy::Policy;

/// Errors carried in [`Reply::Refused`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The arbiter refused the request.
    #[error("request refused")]
    Arbiter(#[from] ArbiterError),
}

/// A request to the arbiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Attach a VM.
    Attach {
        /// The VM.
        vm: VmId,
        /// Its configuration.
        config: VmConfig,
    },
    /// Detach a VM; its queued submissions come back as [`Reply::Cancelled`].
    Detach {
        /// The VM.
        vm: VmId,
    },
    /// Change a VM's configuration.
    UpdateVm {
        /// The VM.
        vm: VmId,
        /// Its new configuration.
        config: VmConfig,
    },
    /// Change the GPU policy.
    SetPolicy(Policy),
    /// Change the GPU controls.
    SetGpu(GpuConfig),
    /// Queue a submission; acknowledged with [`Reply::Queued`].
    Submit(SubmitRequest),
    /// Report a completion with measured device time.
    Complete(Completion),
    /// Revoke a hung VM's queued and in-flight work (watchdog).
    Revoke {
        /// The VM.
        vm: VmId,
    },
    /// Nothing changed but time passed (a throttle timer fired).
    Poll,
}

/// A reply from the arbiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The request was applied.
    Done,
    /// A submission was queued under this id.
    Queued {
        /// The VM.
        vm: VmId,
        /// The caller's tag.
        tag: u64,
        /// The id the arbiter assigned.
        submission: SubmissionId,
    },
    /// The request was refused; for a submission this is backpressure or a bad queue.
    Refused(MessageError),
    /// A submission was cancelled (detach or revoke); the renderer must fail it.
    Cancelled {
        /// The VM.
        vm: VmId,
        /// The cancelled submission.
        submission: SubmissionId,
    },
    /// A submission may go to the device now.
    Granted(Grant),
    /// Work is throttled by caps: send [`Request::Poll`] at this time.
    WakeAt(u64),
}

impl Arbiter {
    /// Applies one request at time `now` and appends the replies (the request's own reply
    /// first, then any grants and at most one [`Reply::WakeAt`]) to `out`.
    pub fn handle(&mut self, now: u64, request: Request, out: &mut Vec<Reply>) {
        let refused = |e: ArbiterError| Reply::Refused(MessageError::from(e));
        match request {
            Request::Attach { vm, config } => {
                out.push(
                    self.attach(now, vm, config)
                        .map_or_else(refused, |()| Reply::Done),
                );
            }
            Request::Detach { vm } => match self.detach(now, vm) {
                Ok(ids) => {
                    out.push(Reply::Done);
                    out.extend(
                        ids.into_iter()
                            .map(|submission| Reply::Cancelled { vm, submission }),
                    );
                }
                Err(e) => out.push(refused(e)),
            },
            Request::UpdateVm { vm, config } => {
                out.push(
                    self.update_vm(now, vm, config)
                        .map_or_else(refused, |()| Reply::Done),
                );
            }
            Request::SetPolicy(policy) => {
                self.set_policy(now, policy);
                out.push(Reply::Done);
            }
            Request::SetGpu(gpu) => {
                out.push(
                    self.set_gpu(now, gpu)
                        .map_or_else(refused, |()| Reply::Done),
                );
            }
            Request::Submit(req) => out.push(self.submit(now, req).map_or_else(
                refused,
                |submission| Reply::Queued {
                    vm: req.vm,
                    tag: req.tag,
                    submission,
                },
            )),
            Request::Complete(done) => {
                out.push(
                    self.complete(now, done)
                        .map_or_else(refused, |()| Reply::Done),
                );
            }
            Request::Revoke { vm } => match self.revoke(now, vm) {
                Ok(r) => {
                    out.push(Reply::Done);
                    out.extend(
                        r.queued
                            .into_iter()
                            .chain(r.in_flight)
                            .map(|submission| Reply::Cancelled { vm, submission }),
                    );
                }
                Err(e) => out.push(refused(e)),
            },
            Request::Poll => {}
        }
        loop {
            match self.next_grant(now) {
                Decision::Grant(g) => out.push(Reply::Granted(g)),
                Decision::Throttled { retry_at_ns } => {
                    out.push(Reply::WakeAt(retry_at_ns));
                    break;
                }
                Decision::Busy | Decision::Idle => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::AccountingConfig;
    use crate::ids::QueueId;
    use crate::model::Share;
    use crate::runlist::RunlistError;

    fn arbiter(policy: Policy) -> Arbiter {
        Arbiter::new(GpuConfig::DEFAULT, policy, AccountingConfig::DEFAULT).unwrap()
    }

    fn submit(vm: u32, tag: u64) -> Request {
        Request::Submit(SubmitRequest {
            vm: VmId(vm),
            queue: QueueId(0),
            cost_hint_ns: Some(1_000_000),
            tag,
        })
    }

    #[test]
    fn submit_is_acknowledged_then_granted() {
        let mut a = arbiter(Policy::Burst);
        let mut out = Vec::new();
        a.handle(
            0,
            Request::Attach {
                vm: VmId(1),
                config: VmConfig::new(Share::from_percent(50.0).unwrap()),
            },
            &mut out,
        );
        assert_eq!(out, vec![Reply::Done]);
        out.clear();
        a.handle(0, submit(1, 77), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            out[0],
            Reply::Queued {
                vm: VmId(1),
                tag: 77,
                submission: SubmissionId(0)
            }
        );
        assert!(matches!(out[1], Reply::Granted(g) if g.tag == 77 && g.vm == VmId(1)));
    }

    #[test]
    fn backpressure_is_a_refusal_not_a_panic() {
        let mut a = arbiter(Policy::Burst);
        let mut out = Vec::new();
        let config = VmConfig::new(Share::from_percent(50.0).unwrap()).with_queue_limit(1);
        a.handle(
            0,
            Request::Attach {
                vm: VmId(1),
                config,
            },
            &mut out,
        );
        // Depth 2 with 1 ms hints inside a 2 ms pipeline budget: two go in flight, the
        // third waits in the runlist, the fourth is refused.
        for tag in 0..4 {
            a.handle(0, submit(1, tag), &mut out);
        }
        let refused = out
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Reply::Refused(MessageError::Arbiter(ArbiterError::QueueFull(
                        RunlistError::Full { .. }
                    )))
                )
            })
            .count();
        assert_eq!(refused, 1, "{out:?}");
    }

    #[test]
    fn detach_returns_queued_work_as_cancelled() {
        let mut a = arbiter(Policy::FixedShare);
        let mut out = Vec::new();
        let config = VmConfig::new(Share::from_percent(10.0).unwrap());
        a.handle(
            0,
            Request::Attach {
                vm: VmId(1),
                config,
            },
            &mut out,
        );
        for tag in 0..5 {
            a.handle(0, submit(1, tag), &mut out);
        }
        out.clear();
        a.handle(0, Request::Detach { vm: VmId(1) }, &mut out);
        let cancelled = out
            .iter()
            .filter(|r| matches!(r, Reply::Cancelled { .. }))
            .count();
        // 10 % cap with a 2 ms burst: one 1 ms submission went out, a second fitted the
        // pipeline budget (bucket still at +1 ms), the other three were queued.
        assert_eq!(cancelled, 3, "{out:?}");
    }

    #[test]
    fn throttled_work_asks_for_a_wake_up() {
        let mut a = arbiter(Policy::FixedShare);
        let mut out = Vec::new();
        let config = VmConfig::new(Share::from_percent(10.0).unwrap()).with_burst_ns(0);
        a.handle(
            0,
            Request::Attach {
                vm: VmId(1),
                config,
            },
            &mut out,
        );
        a.handle(0, submit(1, 0), &mut out);
        a.handle(0, submit(1, 1), &mut out);
        out.clear();
        let first = SubmissionId(0);
        a.handle(
            1_000_000,
            Request::Complete(Completion {
                submission: first,
                device_ns: 1_000_000,
            }),
            &mut out,
        );
        // 1 ms at a 10 % cap: 9 ms more of wall time before the next one may start.
        assert_eq!(out, vec![Reply::Done, Reply::WakeAt(10_000_000)]);
        out.clear();
        a.handle(10_000_000, Request::Poll, &mut out);
        assert!(matches!(out.as_slice(), [Reply::Granted(g)] if g.tag == 1));
    }
}
