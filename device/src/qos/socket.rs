//! The gate across a process boundary: a SOCK_SEQPACKET socket per worker, with the
//! fixed-size messages of [`super::wire`]. [`GateClient`] is the worker's
//! [`GateTransport`]; [`serve_gate`] is the daemon's end, which binds the connection to
//! one VM and trusts nothing the worker sends.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::net::{RecvFlags, SendFlags, Shutdown};
use vgpu_scheduler::{SubmissionId, VmConfig, VmId};

use super::wire::{decode_event, encode_event, GateRequest, MSG_LEN};

/// Most best-effort submissions one `Ran` report of a worker may claim (a lying
/// worker inflates only its own VM's figures, and only so far).
const MAX_RAN_PER_REPORT: u64 = 1 << 20;
use super::lease::{Leases, Report};
use super::{GateEvent, GateTransport, MemoryProbe, QosError, QosHandle, Result};
use crate::ratelimit::RateLimiter;

/// Reads one message; `Ok(None)` at end of stream. A message longer than [`MSG_LEN`]
/// is reported with its real length (so it is rejected, not silently truncated).
fn recv_msg(fd: &OwnedFd, buf: &mut [u8; MSG_LEN + 1]) -> std::io::Result<Option<usize>> {
    loop {
        match rustix::net::recv(fd, &mut buf[..], RecvFlags::TRUNC) {
            Ok((_, 0)) => return Ok(None),
            Ok((_, len)) => return Ok(Some(len)),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn send_msg(fd: &OwnedFd, m: &[u8; MSG_LEN]) -> Result<()> {
    loop {
        match rustix::net::send(fd, m, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(QosError::Io(e.into())),
        }
    }
}

type Waiters = Arc<Mutex<HashMap<u64, Sender<GateEvent>>>>;

/// The worker end of a gate socket.
#[derive(Debug)]
pub struct GateClient {
    fd: Arc<OwnedFd>,
    waiters: Waiters,
    bypass: Arc<AtomicBool>,
    leases: Arc<Leases>,
    reader: Option<JoinHandle<()>>,
}

impl GateClient {
    /// Wraps the worker's end of a gate socket (SOCK_SEQPACKET) and starts its reader
    /// thread, which routes grants to the waiting ring threads.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        let fd = Arc::new(fd);
        let waiters: Waiters = Arc::default();
        let bypass = Arc::new(AtomicBool::new(false));
        let leases = Arc::new(Leases::default());
        let reader = {
            let (fd, waiters, bypass, leases) = (
                Arc::clone(&fd),
                Arc::clone(&waiters),
                Arc::clone(&bypass),
                Arc::clone(&leases),
            );
            std::thread::Builder::new()
                .name("vgpu-gate".into())
                .spawn(move || client_reader(&fd, &waiters, &bypass, &leases))?
        };
        Ok(Self {
            fd,
            waiters,
            bypass,
            leases,
            reader: Some(reader),
        })
    }
}

/// Sends what a lease change reports (see `SubmitGate::send_report`).
fn send_report(fd: &OwnedFd, r: Report) -> Result<()> {
    let m = match r.end {
        Some(submission) => GateRequest::EndLease {
            submission,
            submissions: r.submissions,
            device_ns: r.device_ns,
        },
        None if r.submissions > 0 => GateRequest::Ran {
            submissions: r.submissions,
            device_ns: r.device_ns,
        },
        None => return Ok(()),
    };
    send_msg(fd, &m.encode())
}

fn client_reader(
    fd: &OwnedFd,
    waiters: &Mutex<HashMap<u64, Sender<GateEvent>>>,
    bypass: &AtomicBool,
    leases: &Leases,
) {
    let mut buf = [0u8; MSG_LEN + 1];
    while let Ok(Some(len)) = recv_msg(fd, &mut buf) {
        let Ok(mut ev) = decode_event(buf.get(..len).unwrap_or(&[])) else {
            log::warn!("qos: malformed message from the arbiter; closing the gate");
            break;
        };
        let (tag, submission) = match &mut ev {
            GateEvent::Bypass(on) => {
                bypass.store(*on, Ordering::Release);
                continue;
            }
            GateEvent::Revoke { submission } => {
                // Acted on here, so an idle VM returns its lease at once.
                if send_report(fd, leases.revoke(*submission)).is_err() {
                    break;
                }
                continue;
            }
            GateEvent::Granted {
                tag,
                submission,
                lease,
            } => {
                // The lease starts here, before any revocation behind it is read.
                if *lease && !leases.begin(*submission) {
                    *lease = false;
                }
                (*tag, Some((*submission, *lease)))
            }
            GateEvent::Refused { tag } => (*tag, None),
        };
        let waiter = waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tag);
        let delivered = waiter.is_some_and(|w| w.send(ev).is_ok());
        // The ring thread gave up (its context stops): hand the slot back (a lease's
        // batch that never ran; the lease itself may go on serving other rings).
        let sent = match (delivered, submission) {
            (false, Some((s, true))) => send_report(fd, leases.finish(s, None).0),
            (false, Some((s, false))) => send_msg(
                fd,
                &GateRequest::Complete {
                    submission: s,
                    device_ns: 0,
                }
                .encode(),
            ),
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
    // Waiters see their channel close (`ServiceGone`).
    waiters
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}

impl GateTransport for GateClient {
    fn submit(&self, tag: u64, cost_hint_ns: Option<u64>, waiter: Sender<GateEvent>) -> Result<()> {
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tag, waiter);
        let r = send_msg(
            &self.fd,
            &GateRequest::Submit { tag, cost_hint_ns }.encode(),
        );
        if r.is_err() {
            self.waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&tag);
        }
        r
    }

    fn complete(&self, submission: SubmissionId, device_ns: u64) -> Result<()> {
        send_msg(
            &self.fd,
            &GateRequest::Complete {
                submission,
                device_ns,
            }
            .encode(),
        )
    }

    fn ran(&self, submissions: u64, device_ns: u64) -> Result<()> {
        send_msg(
            &self.fd,
            &GateRequest::Ran {
                submissions,
                device_ns,
            }
            .encode(),
        )
    }

    fn end_lease(&self, submission: SubmissionId, submissions: u64, device_ns: u64) -> Result<()> {
        send_report(
            &self.fd,
            Report {
                submissions,
                device_ns,
                end: Some(submission),
            },
        )
    }

    fn bypass(&self) -> bool {
        self.bypass.load(Ordering::Acquire)
    }

    fn context_failed(&self) -> Result<()> {
        send_msg(&self.fd, &GateRequest::ContextFailed.encode())
    }

    fn leases(&self) -> Option<&Leases> {
        Some(&self.leases)
    }
}

impl Drop for GateClient {
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(&*self.fd, Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The daemon end of one worker's gate socket; stops (detaching the VM) when dropped
/// or when the worker closes or breaks the protocol.
#[derive(Debug)]
pub struct GateServer {
    vm: VmId,
    fd: Arc<OwnedFd>,
    closed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl GateServer {
    /// The VM this connection speaks for.
    pub fn vm(&self) -> VmId {
        self.vm
    }

    /// Whether the connection has ended (worker gone or protocol broken).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for GateServer {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        let _ = rustix::net::shutdown(&*self.fd, Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Serves a worker's gate socket for a new VM `name` with `config`. Every request the
/// worker sends is taken as coming from that VM; malformed messages end the connection.
pub fn serve_gate(
    handle: &QosHandle,
    fd: OwnedFd,
    name: String,
    config: VmConfig,
    memory: Option<MemoryProbe>,
) -> Result<GateServer> {
    let (vm, _bypass) = handle.attach_raw(name, config, memory)?;
    serve(handle, fd, vm, true)
}

/// Serves a worker's gate socket for `vm`, a VM already attached (one of several
/// connections of a configured VM, which all draw on its one share). The VM stays
/// attached when the connection ends.
pub fn serve_gate_for(handle: &QosHandle, fd: OwnedFd, vm: VmId) -> Result<GateServer> {
    serve(handle, fd, vm, false)
}

/// Attaches a VM for [`serve_gate_for`] (named `name`, with `config`).
pub fn attach_shared(
    handle: &QosHandle,
    name: String,
    config: VmConfig,
    memory: Option<MemoryProbe>,
) -> Result<VmId> {
    Ok(handle.attach_raw(name, config, memory)?.0)
}

fn serve(handle: &QosHandle, fd: OwnedFd, vm: VmId, owned: bool) -> Result<GateServer> {
    let fd = Arc::new(fd);
    let closed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<GateEvent>();
    handle.notify(vm, tx.clone())?;
    let writer = {
        let (fd, closed) = (Arc::clone(&fd), Arc::clone(&closed));
        std::thread::Builder::new()
            .name(format!("vgpu-gate-w-{}", vm.0))
            .spawn(move || loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(ev) => {
                        if send_msg(&fd, &encode_event(ev)).is_err() {
                            closed.store(true, Ordering::Release);
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if closed.load(Ordering::Acquire) {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            })?
    };
    let reader = {
        let (fd, closed, handle) = (Arc::clone(&fd), Arc::clone(&closed), handle.clone());
        std::thread::Builder::new()
            .name(format!("vgpu-gate-r-{}", vm.0))
            .spawn(move || {
                server_reader(&fd, &handle, vm, &tx);
                closed.store(true, Ordering::Release);
                let _ = rustix::net::shutdown(&*fd, Shutdown::Both);
                if owned {
                    handle.detach(vm);
                }
            })?
    };
    Ok(GateServer {
        vm,
        fd,
        closed,
        threads: vec![reader, writer],
    })
}

fn server_reader(fd: &OwnedFd, handle: &QosHandle, vm: VmId, tx: &Sender<GateEvent>) {
    static BAD: OnceLock<RateLimiter> = OnceLock::new();
    let bad = BAD.get_or_init(|| RateLimiter::new("qos", Duration::from_secs(10), 5));
    let mut buf = [0u8; MSG_LEN + 1];
    loop {
        let len = match recv_msg(fd, &mut buf) {
            Ok(Some(len)) => len,
            Ok(None) | Err(_) => return,
        };
        let req = match GateRequest::decode(buf.get(..len).unwrap_or(&[])) {
            Ok(r) => r,
            Err(e) => {
                if let Some(n) = bad.check() {
                    log::warn!("qos: {vm}: {e}; closing its gate ({n} more suppressed)");
                }
                return;
            }
        };
        let sent = match req {
            GateRequest::Submit { tag, cost_hint_ns } => {
                handle.submit(vm, tag, cost_hint_ns, true, tx.clone())
            }
            GateRequest::Complete {
                submission,
                device_ns,
            } => handle.complete(vm, submission, device_ns),
            // A worker may lie: a report covers at most one REPORT_PERIOD of
            // submissions' worth of counts, and each ungated batch at most 10 s.
            GateRequest::Ran {
                submissions,
                device_ns,
            } => {
                let n = submissions.min(MAX_RAN_PER_REPORT);
                handle.ran(vm, n, device_ns.min(n.saturating_mul(10_000_000_000)))
            }
            GateRequest::ContextFailed => {
                handle.failure(vm);
                Ok(())
            }
            // Clamped as `Ran`; the service also clamps the time to the lease's.
            GateRequest::EndLease {
                submission,
                submissions,
                device_ns,
            } => {
                let n = submissions.min(MAX_RAN_PER_REPORT);
                let ns = device_ns.min(n.saturating_mul(10_000_000_000));
                handle.end_lease(vm, submission, n, ns)
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
