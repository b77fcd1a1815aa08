//! A VM's account across its worker processes: the worker's [`AccountClient`] (its
//! [`RemoteLedger`]) asks the daemon's [`AccountServer`] for every device-memory
//! charge and fd slot over a `SOCK_SEQPACKET` socket of its own (sent with the
//! `ACCOUNT` control message, before `SERVE`), so a VM's `memory_mib`, `max_blobs` and
//! `max_sync_waits` hold across all of its connections, and whatever a worker held
//! comes back to its VM the moment the worker ends, however it ends.
//!
//! One message per packet, little-endian, internal (both ends are one binary):
//!
//! | request (32 bytes) | `op: u32` | `arg: u32` | `id: u64` | `a: u64` | `b: u64` |
//! |---|---|---|---|---|---|
//! | `CLAIM_MEMORY` | 1 | heap | claim id | bytes | quota the worker computed |
//! | `CLAIM_FD` | 2 | 0 blob, 1 sync wait | claim id | spare | — |
//! | `RELEASE` (no reply) | 3 | — | claim id | — | — |
//! | `USAGE` | 4 | — | — | — | — |
//!
//! A reply is 144 bytes: `op: u32` (1 granted, 2 refused, 3 usage), `pad: u32`,
//! `id: u64`, then 16 `u64` heap usages (zero except in a usage reply).
//!
//! The daemon trusts nothing a worker sends: a malformed request, a reused claim id or
//! a worker holding more claims than its VM's limits allow gets the worker killed as a
//! malformed control message would. A worker's requests are answered in order, one
//! at a time, by its supervisor thread.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::net::{RecvFlags, SendFlags};

use super::WorkerError;
use crate::renderer::fds::{FdCharge, FdKind};
use crate::renderer::ledger::{Claim, ClaimId, HeapBytes, RemoteLedger, HEAPS};
use crate::renderer::venus::limits::MemoryCharge;
use crate::renderer::venus::VmAccount;

const REQUEST_LEN: usize = 32;
const REPLY_LEN: usize = 16 + 8 * HEAPS;

const CLAIM_MEMORY: u32 = 1;
const CLAIM_FD: u32 = 2;
const RELEASE: u32 = 3;
const USAGE: u32 = 4;

const GRANTED: u32 = 1;
const REFUSED: u32 = 2;
const USAGE_REPLY: u32 = 3;

/// A worker's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Claim(ClaimId, Claim),
    Release(ClaimId),
    Usage,
}

fn kind_code(kind: FdKind) -> u32 {
    match kind {
        FdKind::Blob => 0,
        FdKind::SyncWait => 1,
    }
}

impl Request {
    fn encode(self) -> [u8; REQUEST_LEN] {
        let (op, arg, id, a, b) = match self {
            Self::Claim(id, Claim::Memory { heap, bytes, quota }) => {
                (CLAIM_MEMORY, heap, id.0, bytes, quota)
            }
            Self::Claim(id, Claim::Fd { kind, spare }) => {
                (CLAIM_FD, kind_code(kind), id.0, u64::from(spare), 0)
            }
            Self::Release(id) => (RELEASE, 0, id.0, 0, 0),
            Self::Usage => (USAGE, 0, 0, 0, 0),
        };
        let mut m = [0u8; REQUEST_LEN];
        m[0..4].copy_from_slice(&op.to_le_bytes());
        m[4..8].copy_from_slice(&arg.to_le_bytes());
        m[8..16].copy_from_slice(&id.to_le_bytes());
        m[16..24].copy_from_slice(&a.to_le_bytes());
        m[24..32].copy_from_slice(&b.to_le_bytes());
        m
    }

    fn decode(m: &[u8]) -> Result<Self, WorkerError> {
        let m: &[u8; REQUEST_LEN] = m
            .try_into()
            .map_err(|_| WorkerError::Malformed("account request of the wrong size"))?;
        let u32_at = |at: usize| u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&m[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (op, arg, id, a, b) = (
            u32_at(0),
            u32_at(4),
            ClaimId(u64_at(8)),
            u64_at(16),
            u64_at(24),
        );
        Ok(match op {
            CLAIM_MEMORY => Self::Claim(
                id,
                Claim::Memory {
                    heap: arg,
                    bytes: a,
                    quota: b,
                },
            ),
            CLAIM_FD => {
                let kind = match arg {
                    0 => FdKind::Blob,
                    1 => FdKind::SyncWait,
                    _ => {
                        return Err(WorkerError::Malformed(
                            "account claim of an unknown fd kind",
                        ))
                    }
                };
                let spare = u32::try_from(a)
                    .map_err(|_| WorkerError::Malformed("account claim spare out of range"))?;
                Self::Claim(id, Claim::Fd { kind, spare })
            }
            RELEASE => Self::Release(id),
            USAGE => Self::Usage,
            _ => return Err(WorkerError::Malformed("unknown account request")),
        })
    }
}

fn reply(op: u32, id: u64, heaps: &HeapBytes) -> [u8; REPLY_LEN] {
    let mut m = [0u8; REPLY_LEN];
    m[0..4].copy_from_slice(&op.to_le_bytes());
    m[8..16].copy_from_slice(&id.to_le_bytes());
    for (chunk, h) in m[16..].chunks_exact_mut(8).zip(heaps) {
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    m
}

fn send(fd: &OwnedFd, m: &[u8]) -> std::io::Result<()> {
    loop {
        match rustix::net::send(fd, m, SendFlags::NOSIGNAL) {
            Ok(n) if n == m.len() => return Ok(()),
            Ok(_) => return Err(std::io::Error::other("short send")),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one packet into `buf`; `Ok(None)` at end of stream. The length returned
/// is the packet's real length (`MSG_TRUNC`), so an oversized one is caught.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::TRUNC) {
            Ok((_, 0)) => return Ok(None),
            Ok((_, len)) => return Ok(Some(len)),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The worker's end: the [`RemoteLedger`] its VM account charges.
#[derive(Debug)]
pub(crate) struct AccountClient {
    /// One request and its reply at a time.
    fd: Mutex<OwnedFd>,
    next: AtomicU64,
}

impl AccountClient {
    /// Wraps the worker's end of its account socket.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self {
            fd: Mutex::new(fd),
            next: AtomicU64::new(1),
        }
    }

    /// Sends `req` and reads the daemon's reply; `None` if the daemon is gone or
    /// answered something that does not fit.
    fn call(&self, req: Request) -> Option<[u8; REPLY_LEN]> {
        let fd = self.fd.lock().unwrap_or_else(PoisonError::into_inner);
        send(&fd, &req.encode()).ok()?;
        let mut buf = [0u8; REPLY_LEN + 1];
        match recv(&fd, &mut buf) {
            Ok(Some(REPLY_LEN)) => {
                let mut out = [0u8; REPLY_LEN];
                out.copy_from_slice(&buf[..REPLY_LEN]);
                Some(out)
            }
            _ => None,
        }
    }
}

fn op_and_id(m: &[u8; REPLY_LEN]) -> (u32, u64) {
    let mut op = [0u8; 4];
    op.copy_from_slice(&m[0..4]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&m[8..16]);
    (u32::from_le_bytes(op), u64::from_le_bytes(id))
}

impl RemoteLedger for AccountClient {
    fn claim(&self, claim: Claim) -> Option<ClaimId> {
        let id = ClaimId(self.next.fetch_add(1, Ordering::Relaxed));
        let m = self.call(Request::Claim(id, claim))?;
        (op_and_id(&m) == (GRANTED, id.0)).then_some(id)
    }

    fn release(&self, id: ClaimId) {
        let fd = self.fd.lock().unwrap_or_else(PoisonError::into_inner);
        // The daemon gone: everything this worker held is credited anyway.
        let _ = send(&fd, &Request::Release(id).encode());
    }

    fn memory_usage(&self) -> Option<HeapBytes> {
        let m = self.call(Request::Usage)?;
        if op_and_id(&m).0 != USAGE_REPLY {
            return None;
        }
        let mut heaps = [0u64; HEAPS];
        for (h, chunk) in heaps.iter_mut().zip(m[16..].chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *h = u64::from_le_bytes(b);
        }
        Some(heaps)
    }
}

/// What the daemon holds for one granted claim.
#[derive(Debug)]
enum Held {
    /// Credits the VM's device memory when dropped.
    Memory { _charge: MemoryCharge },
    /// Credits the VM's fd budget when dropped.
    Fd { _charge: FdCharge },
}

/// The daemon's end of one worker's account socket: charges the VM's account for
/// the worker and holds what it granted until the worker releases it or ends
/// (dropping the server credits everything still held).
#[derive(Debug)]
pub(crate) struct AccountServer {
    account: Arc<VmAccount>,
    held: HashMap<u64, Held>,
    /// Claims one worker may hold at once: every object, blob and sync wait its VM
    /// may have.
    max_held: usize,
}

impl AccountServer {
    /// Serves a worker of the VM `account`.
    pub(crate) fn new(account: Arc<VmAccount>) -> Self {
        let l = account.limits();
        let max = u64::from(l.max_objects)
            .saturating_add(u64::from(l.fds.max_blobs))
            .saturating_add(u64::from(l.fds.max_sync_waits));
        Self {
            account,
            held: HashMap::new(),
            max_held: usize::try_from(max.min(1 << 24)).unwrap_or(1 << 24),
        }
    }

    /// Claims held for the worker now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Reads and answers one request from `fd`; `Ok(false)` when the worker closed
    /// its end.
    pub(crate) fn serve_one(&mut self, fd: &OwnedFd) -> Result<bool, WorkerError> {
        let mut buf = [0u8; REQUEST_LEN + 1];
        let len = match recv(fd, &mut buf).map_err(WorkerError::Control)? {
            None => return Ok(false),
            Some(len) => len,
        };
        let req = Request::decode(buf.get(..len).unwrap_or(&[]))?;
        let answer = match req {
            Request::Release(id) => {
                // An unknown id is ignored: nothing is held for it.
                self.held.remove(&id.0);
                return Ok(true);
            }
            Request::Usage => reply(USAGE_REPLY, 0, &self.account.usage()),
            Request::Claim(id, claim) => {
                if self.held.contains_key(&id.0) {
                    return Err(WorkerError::Malformed("account claim id reused"));
                }
                let granted = if self.held.len() >= self.max_held {
                    None
                } else {
                    self.grant(claim)
                };
                let op = match granted {
                    Some(h) => {
                        self.held.insert(id.0, h);
                        GRANTED
                    }
                    None => REFUSED,
                };
                reply(op, id.0, &[0; HEAPS])
            }
        };
        send(fd, &answer).map_err(WorkerError::Control)?;
        Ok(true)
    }

    fn grant(&self, claim: Claim) -> Option<Held> {
        match claim {
            Claim::Memory { heap, bytes, quota } => self
                .account
                .try_charge_within(heap, bytes, quota)
                .map(|c| Held::Memory { _charge: c }),
            Claim::Fd { kind, spare } => self
                .account
                .fds()
                .try_charge_leaving(kind, spare)
                .map(|c| Held::Fd { _charge: c }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::renderer::fds::FdLimits;
    use crate::renderer::venus::VenusLimits;

    fn account(mib: u64, blobs: u32) -> Arc<VmAccount> {
        Arc::new(VmAccount::new(
            "vm".into(),
            VenusLimits {
                memory_mib: Some(mib),
                fds: FdLimits {
                    max_blobs: blobs,
                    max_sync_waits: 1,
                },
                ..VenusLimits::default()
            },
        ))
    }

    /// A served client: the daemon end answered on a thread until it closes.
    fn served(account: Arc<VmAccount>) -> (AccountClient, std::thread::JoinHandle<usize>) {
        let (ours, theirs) = super::super::protocol::seqpacket_pair().expect("socketpair");
        let thread = std::thread::spawn(move || {
            let mut server = AccountServer::new(account);
            while server.serve_one(&ours).expect("well-formed") {}
            server.held()
        });
        (AccountClient::new(theirs), thread)
    }

    fn memory(bytes: u64) -> Claim {
        Claim::Memory {
            heap: 0,
            bytes,
            quota: u64::MAX,
        }
    }

    #[test]
    fn two_workers_of_one_vm_share_its_quota_and_a_dead_one_gives_it_back() {
        let vm = account(64, 8);
        let (a, a_thread) = served(Arc::clone(&vm));
        let (b, b_thread) = served(Arc::clone(&vm));
        let held = a.claim(memory(48 << 20)).expect("within quota");
        assert!(
            b.claim(memory(32 << 20)).is_none(),
            "the VM's quota is shared"
        );
        assert_eq!(b.memory_usage().expect("usage")[0], 48 << 20);
        // The worker's configured quota wins over what it claims the quota is.
        assert!(b.claim(memory(17 << 20)).is_none());
        a.release(held);
        // a's requests are served in order: once it has an answer, its release is in.
        assert_eq!(a.memory_usage().expect("usage")[0], 0);
        let again = b.claim(memory(64 << 20)).expect("released by a");
        // b ends without releasing (a crash): everything it held comes back.
        drop(b);
        assert_eq!(b_thread.join().expect("server"), 1);
        assert_eq!(vm.usage()[0], 0);
        let _ = again;
        drop(a);
        assert_eq!(a_thread.join().expect("server"), 0);
    }

    #[test]
    fn fd_slots_are_shared_across_workers() {
        let vm = account(64, 2);
        let (a, _ta) = served(Arc::clone(&vm));
        let (b, _tb) = served(Arc::clone(&vm));
        let blob = Claim::Fd {
            kind: FdKind::Blob,
            spare: 0,
        };
        assert!(a.claim(blob).is_some());
        assert!(b.claim(blob).is_some());
        assert!(a.claim(blob).is_none(), "max_blobs is the VM's");
        assert_eq!(vm.fds().in_use(FdKind::Blob), 2);
    }

    #[test]
    fn zero_byte_and_bad_heap_claims_are_refused() {
        let (c, _t) = served(account(64, 2));
        assert!(c.claim(memory(0)).is_none());
        let bad_heap = Claim::Memory {
            heap: 16,
            bytes: 1,
            quota: u64::MAX,
        };
        assert!(c.claim(bad_heap).is_none());
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        let (ours, theirs) = super::super::protocol::seqpacket_pair().expect("socketpair");
        let mut server = AccountServer::new(account(64, 2));
        let mut reused = Request::Claim(ClaimId(7), memory(1)).encode().to_vec();
        // (An empty packet reads as the end of the stream: the worker stops its own
        // account.)
        for bad in [
            vec![0u8; 31],
            vec![0u8; 33],
            {
                let mut m = Request::Usage.encode().to_vec();
                m[0] = 99;
                m
            },
            {
                let mut m = Request::Claim(
                    ClaimId(1),
                    Claim::Fd {
                        kind: FdKind::Blob,
                        spare: 0,
                    },
                )
                .encode()
                .to_vec();
                m[4] = 5;
                m
            },
        ] {
            send(&theirs, &bad).expect("send");
            assert!(server.serve_one(&ours).is_err(), "accepted {bad:?}");
        }
        send(&theirs, &reused).expect("send");
        assert!(server.serve_one(&ours).expect("first use"));
        reused.truncate(REQUEST_LEN);
        send(&theirs, &reused).expect("send");
        assert!(server.serve_one(&ours).is_err(), "a reused id was accepted");
    }

    #[test]
    fn a_worker_cannot_hold_more_claims_than_its_vm_may() {
        let vm = Arc::new(VmAccount::new(
            "vm".into(),
            VenusLimits {
                max_objects: 2,
                memory_mib: Some(64),
                fds: FdLimits {
                    max_blobs: 1,
                    max_sync_waits: 1,
                },
                ..VenusLimits::default()
            },
        ));
        let (c, _t) = served(vm);
        let granted = (0..10).filter(|_| c.claim(memory(1)).is_some()).count();
        assert_eq!(granted, 4);
    }
}
