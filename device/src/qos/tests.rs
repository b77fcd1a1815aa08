//! Gate, service, socket transport and control tests (no Vulkan).

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};

use super::control::execute;
use super::wire::{GateRequest, MSG_LEN};
use super::*;

const LONG: Duration = Duration::from_secs(5);

fn service(policy: Policy) -> (ArbiterService, QosHandle) {
    let s = ArbiterService::start(policy).expect("service");
    let h = s.handle();
    (s, h)
}

fn never() -> bool {
    false
}

/// Acquires on another thread; the receiver yields the ticket once granted.
fn acquire_async(gate: &Arc<SubmitGate>) -> mpsc::Receiver<Ticket> {
    let (tx, rx) = mpsc::channel();
    let gate = Arc::clone(gate);
    std::thread::spawn(move || {
        if let Ok(t) = gate.acquire(&never) {
            let _ = tx.send(t);
        }
    });
    rx
}

fn pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair")
}

fn vm<'a>(vms: &'a [VmSnapshot], name: &str) -> &'a VmSnapshot {
    vms.iter().find(|v| v.name == name).expect("VM listed")
}

#[test]
fn one_submission_in_flight_under_fixed_share() {
    let (_s, h) = service(Policy::FixedShare);
    let a = h.attach_default("a".into()).expect("attach");
    let b = h.attach_default("b".into()).expect("attach");
    let mut first = a.acquire(&never).expect("grant");
    first.submitted();
    let second = acquire_async(&b);
    assert!(
        second.recv_timeout(Duration::from_millis(100)).is_err(),
        "a second grant while the device slot is taken"
    );
    first.complete();
    let t = second
        .recv_timeout(LONG)
        .expect("granted after the completion");
    assert!(t.is_arbitrated());
}

#[test]
fn best_effort_grants_locally() {
    let (_s, h) = service(Policy::BestEffort);
    let a = h.attach_default("a".into()).expect("attach");
    let t1 = a.acquire(&never).expect("grant");
    let t2 = a.acquire(&never).expect("no wait under best-effort");
    assert!(!t1.is_arbitrated() && !t2.is_arbitrated());
}

#[test]
fn best_effort_device_time_is_reported_in_sums_and_nothing_is_lost() {
    let (_s, h) = service(Policy::BestEffort);
    let a = h.attach_default("a".into()).expect("attach");
    let run = |ms: u64| {
        let mut t = a.acquire(&never).expect("grant");
        t.submitted();
        std::thread::sleep(Duration::from_millis(ms));
        t.complete();
    };
    let figures = || {
        let (_, vms) = h.snapshot().expect("snapshot");
        let v = vm(&vms, "a");
        (v.submissions, v.device_ns)
    };
    // The first completion after a quiet spell is reported at once.
    run(1);
    assert_eq!(figures().0, 1);
    // The next ones within REPORT_PERIOD are summed, not sent one by one.
    run(1);
    run(1);
    assert_eq!(figures().0, 1, "reported before REPORT_PERIOD passed");
    // The quiet flush sends what is left: every submission and its time counted.
    a.flush_unreported();
    let (n, ns) = figures();
    assert_eq!(n, 3);
    assert!(ns >= 3_000_000, "{ns} ns for three 1 ms batches");
    // After REPORT_PERIOD the next completion goes out with its predecessors.
    std::thread::sleep(REPORT_PERIOD);
    run(1);
    run(1);
    std::thread::sleep(REPORT_PERIOD);
    run(1);
    assert_eq!(figures().0, 6);
}

#[test]
fn a_lying_best_effort_report_is_clamped() {
    let (_s, h) = service(Policy::BestEffort);
    let (d, w) = pair();
    let _liar = serve_gate(&h, d, "liar".into(), default_vm_config(), None).expect("serve");
    let _ = recv_raw(&w); // the bypass state
                          // The most submissions and device time a report can claim.
    send_raw(
        &w,
        &GateRequest::Ran {
            submissions: u64::MAX,
            device_ns: u64::MAX,
        }
        .encode(),
    );
    let figures = || {
        let (_, vms) = h.snapshot().expect("snapshot");
        vms.iter()
            .find(|v| v.name == "liar")
            .map(|v| (v.submissions, v.device_ns))
    };
    let deadline = Instant::now() + LONG;
    while figures().is_none_or(|f| f.0 == 0) {
        assert!(Instant::now() < deadline, "the report never counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(figures(), Some((1 << 20, (1u64 << 20) * 10_000_000_000)));
    // A report of no submissions is malformed: the connection ends, the VM goes.
    let mut none = GateRequest::Ran {
        submissions: 1,
        device_ns: 1,
    }
    .encode();
    none[8..16].fill(0);
    send_raw(&w, &none);
    while figures().is_some() {
        assert!(
            Instant::now() < deadline,
            "the malformed report did not end it"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stopping_waiter_gives_up_and_frees_nothing_it_never_held() {
    let (_s, h) = service(Policy::FixedShare);
    let a = h.attach_default("a".into()).expect("attach");
    let b = h.attach_default("b".into()).expect("attach");
    let held = a.acquire(&never).expect("grant");
    let start = Instant::now();
    let r = b.acquire(&|| start.elapsed() > Duration::from_millis(30));
    assert!(matches!(r, Err(QosError::Stopped)), "{r:?}");
    drop(held);
    // The abandoned request is granted and completed by the service; a new one runs.
    let again = acquire_async(&b);
    let _t = again.recv_timeout(LONG).expect("granted");
}

#[test]
fn a_stalled_grant_is_released_for_others() {
    let (_s, h) = service(Policy::FixedShare);
    let a = h.attach_default("a".into()).expect("attach");
    let b = h.attach_default("b".into()).expect("attach");
    let mut stuck = a.acquire(&never).expect("grant");
    stuck.submitted();
    let other = acquire_async(&b);
    let t = other
        .recv_timeout(LONG)
        .expect("the stalled grant stops holding the device");
    drop(t);
    let (_, vms) = h.snapshot().expect("snapshot");
    assert_eq!(vm(&vms, "a").stalls, 1);
    // Its late completion is ignored (charged once, as stalled).
    drop(stuck);
    let (_, after) = h.snapshot().expect("snapshot");
    assert_eq!(vm(&after, "a").submissions, vm(&vms, "a").submissions);
}

#[test]
fn policy_and_shares_change_live() {
    let (_s, h) = service(Policy::BestEffort);
    let a = h.attach_default("a".into()).expect("attach");
    assert!(!a.acquire(&never).expect("grant").is_arbitrated());
    assert_eq!(execute("policy fixed-share", &h).expect("ok"), "ok\n");
    // Gated now (alone: under a lease).
    let t = a.acquire(&never).expect("grant");
    assert!(t.is_arbitrated() || t.is_leased());
    drop(t);
    assert_eq!(
        execute("set a share=66.7 cap=66.7", &h).expect("ok"),
        "ok\n"
    );
    let list = execute("list", &h).expect("list");
    assert!(list.starts_with("policy fixed-share\n"), "{list}");
    assert!(list.contains("name=\"a\" share=66.7 cap=66.7"), "{list}");
    assert!(matches!(
        execute("set nobody share=1", &h),
        Err(QosError::UnknownVm(_))
    ));
    assert!(matches!(
        execute("set a share=150", &h),
        Err(QosError::Share(_))
    ));
    assert!(matches!(
        execute("policy fastest", &h),
        Err(QosError::UnknownPolicy(_))
    ));
    assert!(matches!(execute("reboot", &h), Err(QosError::Malformed(_))));
}

#[test]
fn metrics_name_every_vm() {
    let (_s, h) = service(Policy::FixedShare);
    let a = h.attach_default("alpha".into()).expect("attach");
    let mut t = a.acquire(&never).expect("grant");
    t.submitted();
    std::thread::sleep(Duration::from_millis(2));
    t.complete();
    // The completion is a message; the snapshot after it is ordered behind it.
    let text = render_metrics(&h).expect("metrics");
    assert!(
        text.contains("vgpu_vm_grants_total{vm=\"vm1\",name=\"alpha\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vgpu_policy{policy=\"fixed-share\"} 1"),
        "{text}"
    );
    assert!(text.contains("# EOF"), "{text}");
}

#[test]
fn the_gate_works_over_a_seqpacket_socket() {
    let (_s, h) = service(Policy::FixedShare);
    let (daemon, worker) = pair();
    let server = serve_gate(&h, daemon, "w".into(), default_vm_config(), None).expect("serve");
    let gate = Arc::new(SubmitGate::new(Box::new(
        GateClient::from_fd(worker).expect("client"),
    )));
    // Alone on the device: the first grant is a lease and the next batches go under
    // it without asking.
    for i in 0..3 {
        let mut t = gate.acquire(&never).expect("grant over the socket");
        assert!(t.is_leased() && !t.is_arbitrated(), "batch {i}");
        t.submitted();
        std::thread::sleep(Duration::from_millis(2));
        t.complete();
    }
    // Reported when due (every 10 ms) or, as here, when the context goes quiet.
    gate.flush_unreported();
    gate.context_failed();
    let deadline = Instant::now() + LONG;
    loop {
        let (_, vms) = h.snapshot().expect("snapshot");
        let w = vm(&vms, "w");
        if w.submissions == 3 && w.failures == 1 {
            assert!(w.device_ns >= 6_000_000, "{w:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{w:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.vm(), VmId(1));
    assert!(!server.is_closed());
}

fn send_raw(fd: &OwnedFd, m: &[u8]) {
    rustix::net::send(fd, m, SendFlags::NOSIGNAL).expect("send");
}

fn recv_raw(fd: &OwnedFd) -> [u8; MSG_LEN] {
    let mut b = [0u8; MSG_LEN];
    let (n, _) = rustix::net::recv(fd, &mut b[..], rustix::net::RecvFlags::empty()).expect("recv");
    assert_eq!(n, MSG_LEN);
    b
}

#[test]
fn a_lying_worker_is_clamped_and_a_malformed_one_cut_off() {
    let (_s, h) = service(Policy::FixedShare);
    let (d1, w1) = pair();
    let liar = serve_gate(&h, d1, "liar".into(), default_vm_config(), None).expect("serve");
    let (d2, w2) = pair();
    let _honest = serve_gate(&h, d2, "honest".into(), default_vm_config(), None).expect("serve");
    // Bypass state (off) comes first on each connection.
    assert_eq!(
        super::wire::decode_event(&recv_raw(&w1)).ok(),
        Some(GateEvent::Bypass(false))
    );
    assert_eq!(
        super::wire::decode_event(&recv_raw(&w2)).ok(),
        Some(GateEvent::Bypass(false))
    );
    // The liar gets a grant and claims an hour of device time after a few ms.
    send_raw(
        &w1,
        &GateRequest::Submit {
            tag: 9,
            cost_hint_ns: None,
        }
        .encode(),
    );
    // Alone, the liar's grant is a lease; the honest VM's request below revokes it.
    let GateEvent::Granted {
        tag: 9, submission, ..
    } = super::wire::decode_event(&recv_raw(&w1)).expect("grant")
    else {
        panic!("expected a grant")
    };
    // It also completes a submission it never held (the honest VM's next id).
    send_raw(
        &w2,
        &GateRequest::Submit {
            tag: 1,
            cost_hint_ns: None,
        }
        .encode(),
    );
    send_raw(
        &w1,
        &GateRequest::Complete {
            submission: SubmissionId(submission.0 + 1),
            device_ns: 1,
        }
        .encode(),
    );
    std::thread::sleep(Duration::from_millis(20));
    send_raw(
        &w1,
        &GateRequest::Complete {
            submission,
            device_ns: 3_600_000_000_000,
        }
        .encode(),
    );
    // The honest VM is granted only once the liar's real grant completes.
    assert!(matches!(
        super::wire::decode_event(&recv_raw(&w2)),
        Ok(GateEvent::Granted { tag: 1, .. })
    ));
    let (_, vms) = h.snapshot().expect("snapshot");
    let l = vm(&vms, "liar");
    assert!(
        l.device_ns < 1_000_000_000,
        "clamped to the time held: {l:?}"
    );
    assert_eq!(vm(&vms, "honest").submissions, 0);
    // A malformed message (wrong length, then a bad kind) ends the connection and
    // detaches the VM.
    send_raw(&w1, &[1, 2, 3]);
    let deadline = Instant::now() + LONG;
    while !liar.is_closed() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, vms) = h.snapshot().expect("snapshot");
    assert!(vms.iter().all(|v| v.name != "liar"), "{vms:?}");
}

#[test]
fn a_vm_pipelines_its_own_work_but_never_shares_the_device() {
    // Depth 2 (the daemon uses 1): the deferral rule keeps other VMs off the device.
    let gpu = vgpu_scheduler::GpuConfig {
        in_flight_depth: 2,
        ..service::LAVAPIPE_GPU
    };
    let s = ArbiterService::start_with(gpu, Policy::FixedShare).expect("service");
    let h = s.handle();
    let a = h.attach_default("a".into()).expect("attach");
    let b = h.attach_default("b".into()).expect("attach");
    // Teach the arbiter that a's batches are short (well inside the 2 ms budget).
    for _ in 0..8 {
        let mut t = a.acquire(&never).expect("grant");
        t.submitted();
        std::thread::sleep(Duration::from_micros(300));
        t.complete();
    }
    let first = a.acquire(&never).expect("grant");
    let second = acquire_async(&a);
    let second = second
        .recv_timeout(LONG)
        .expect("a's second batch is pipelined behind its first");
    let other = acquire_async(&b);
    assert!(
        other.recv_timeout(Duration::from_millis(100)).is_err(),
        "b released while a has work on the device"
    );
    drop(first);
    assert!(
        other.recv_timeout(Duration::from_millis(100)).is_err(),
        "b released while a's second batch is still on the device"
    );
    drop(second);
    let _t = other
        .recv_timeout(LONG)
        .expect("b runs once a is off the device");
}

/// A socket gate as a worker has it, serving a new VM `name`.
fn socket_gate(h: &QosHandle, name: &str) -> (GateServer, Arc<SubmitGate>) {
    let (daemon, worker) = pair();
    let server = serve_gate(h, daemon, name.into(), default_vm_config(), None).expect("serve");
    let gate = Arc::new(SubmitGate::new(Box::new(
        GateClient::from_fd(worker).expect("client"),
    )));
    (server, gate)
}

#[test]
fn a_lease_is_revoked_when_another_vm_asks_and_returned_when_its_batches_end() {
    let (_s, h) = service(Policy::FixedShare);
    let (_sa, a) = socket_gate(&h, "a");
    let b = h.attach_default("b".into()).expect("attach");
    // a alone: leased, and an idle lease is handed back at once when b asks.
    let mut t = a.acquire(&never).expect("lease");
    assert!(t.is_leased());
    t.submitted();
    t.complete();
    let started = Instant::now();
    let mut tb = b
        .acquire(&never)
        .expect("b granted once a's idle lease is back");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "returned at once, not released as stalled: {:?}",
        started.elapsed()
    );
    assert!(tb.is_arbitrated(), "in-process gates are never leased");
    // a now asks the arbiter and waits for b's batch.
    let a_next = acquire_async(&a);
    assert!(
        a_next.recv_timeout(Duration::from_millis(100)).is_err(),
        "a granted while b holds the device"
    );
    tb.submitted();
    tb.complete();
    // b's batch just finished: b is not quiet, so a's grant is not a lease (an
    // online VM whose every job waited out a lease batch would otherwise look
    // quiet again by then, and each next grant of a would be a lease).
    let mut t = a_next.recv_timeout(LONG).expect("a after b");
    assert!(
        t.is_arbitrated() && !t.is_leased(),
        "b finished moments ago"
    );
    t.submitted();
    t.complete();
    // Alone again once b has been quiet for the lease's quiet time: a's grant is
    // a lease. With a batch of it in flight, b waits for that batch and no longer.
    std::thread::sleep(Duration::from_millis(60));
    let mut t = a.acquire(&never).expect("a alone");
    assert!(t.is_leased());
    t.submitted();
    let b_next = acquire_async(&b);
    assert!(
        b_next.recv_timeout(Duration::from_millis(100)).is_err(),
        "b granted while a's leased batch runs"
    );
    // Revoked: a's next batch asks the arbiter (queued behind b).
    let a_after = acquire_async(&a);
    assert!(
        a_after.recv_timeout(Duration::from_millis(50)).is_err(),
        "a granted while its own revoked lease is out"
    );
    std::thread::sleep(Duration::from_millis(5));
    t.complete();
    let tb = b_next.recv_timeout(LONG).expect("b once a's batch ended");
    drop(tb);
    let t = a_after.recv_timeout(LONG).expect("a after b");
    drop(t);
    // Every batch is counted once: a submitted three (the fourth never reached the
    // host queue), b's two grants completed.
    let deadline = Instant::now() + LONG;
    loop {
        let (_, vms) = h.snapshot().expect("snapshot");
        let (va, vb) = (vm(&vms, "a"), vm(&vms, "b"));
        if va.submissions == 3 && vb.submissions == 2 {
            // The leased batch b waited for ran ~155 ms.
            assert!(va.device_ns >= 150_000_000, "{va:?}");
            assert_eq!(va.stalls + vb.stalls, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{va:?} {vb:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn no_lease_under_a_cap_or_best_effort() {
    let (_s, h) = service(Policy::FixedShare);
    let (_sa, a) = socket_gate(&h, "a");
    h.update("a", Some(Share::from_percent(50.0).expect("share")), None)
        .expect("set share");
    h.update(
        "a",
        None,
        Some(Some(Share::from_percent(50.0).expect("cap"))),
    )
    .expect("set cap");
    for _ in 0..3 {
        let mut t = a.acquire(&never).expect("grant");
        assert!(
            t.is_arbitrated() && !t.is_leased(),
            "a cap of 50 % is not leased"
        );
        t.submitted();
        t.complete();
    }
    h.set_policy(Policy::BestEffort).expect("policy");
    let deadline = Instant::now() + LONG;
    loop {
        let t = a.acquire(&never).expect("grant");
        if !t.is_arbitrated() {
            assert!(!t.is_leased());
            break;
        }
        assert!(Instant::now() < deadline, "bypass never arrived");
    }
}

#[test]
fn vms_taking_turns_are_granted_batch_by_batch() {
    let (_s, h) = service(Policy::FixedShare);
    let (_sa, a) = socket_gate(&h, "a");
    let (_sb, b) = socket_gate(&h, "b");
    // Each asks while the other asked moments ago: no leases, however short the
    // moment in which one of them has nothing queued.
    let mut t = b.acquire(&never).expect("grant");
    t.submitted();
    t.complete();
    for _ in 0..20 {
        for gate in [&a, &b] {
            let mut t = gate.acquire(&never).expect("grant");
            assert!(t.is_arbitrated() && !t.is_leased());
            t.submitted();
            t.complete();
        }
    }
}

#[test]
fn a_lying_lease_return_is_clamped_and_one_it_never_held_ignored() {
    let (_s, h) = service(Policy::FixedShare);
    let (d, w) = pair();
    let _server = serve_gate(&h, d, "liar".into(), default_vm_config(), None).expect("serve");
    assert_eq!(
        super::wire::decode_event(&recv_raw(&w)).ok(),
        Some(GateEvent::Bypass(false))
    );
    send_raw(
        &w,
        &GateRequest::Submit {
            tag: 1,
            cost_hint_ns: None,
        }
        .encode(),
    );
    let Ok(GateEvent::Granted {
        tag: 1,
        submission,
        lease: true,
    }) = super::wire::decode_event(&recv_raw(&w))
    else {
        panic!("alone: expected a lease")
    };
    // Returning a lease it never held changes nothing.
    let stranger = GateRequest::EndLease {
        submission: SubmissionId(submission.0 + 100),
        submissions: 5,
        device_ns: 5_000_000,
    };
    send_raw(&w, &stranger.encode());
    std::thread::sleep(Duration::from_millis(20));
    let lie = GateRequest::EndLease {
        submission,
        submissions: u64::MAX,
        device_ns: u64::MAX,
    };
    send_raw(&w, &lie.encode());
    // Returned: another VM is granted at once.
    let other = h.attach_default("other".into()).expect("attach");
    let started = Instant::now();
    drop(other.acquire(&never).expect("grant"));
    assert!(started.elapsed() < Duration::from_millis(200));
    let (_, vms) = h.snapshot().expect("snapshot");
    let l = vm(&vms, "liar");
    assert!(l.submissions <= 1 << 20, "{l:?}");
    assert!(
        l.device_ns < 1_000_000_000,
        "clamped to the time the lease was held: {l:?}"
    );
    assert_eq!(l.stalls, 0);
}
