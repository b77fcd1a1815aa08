//! End-to-end QoS on the real submission path: real Mesa Venus client processes on
//! lavapipe (`LP_NUM_THREADS=1`), each vtest connection a VM, the daemon's arbiter in
//! front of every `vkQueueSubmit`.
//!
//! Ratios are asserted in generous bands (2:1 within 1.6–2.4, 1:3 within 2.4–3.6), in
//! any of up to three windows: the machine is shared with other builds, and exact
//! targets belong to the bench (`benches/src/bin/qos_real.rs`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vgpu_device::qos::control_request;
use vgpu_tests::harness::{client, output_text as text, run_with_timeout, Daemon, Mode};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const GRAPHICS: &str = env!("CARGO_BIN_EXE_graphics-app");
const SPIN: &str = env!("CARGO_BIN_EXE_spin-app");
const TIMEOUT: Duration = Duration::from_secs(240);
/// About 5 ms of device time per batch on lavapipe with one thread (long enough that
/// a switch between VMs, a thread wake-up charged to the incoming VM, stays small on a
/// loaded machine).
const GROUPS: &str = "16";
const ITERS: &str = "6000";

/// The tests measure shares of one CPU-bound device: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct QosDaemon {
    daemon: Daemon,
    control: PathBuf,
    metrics: PathBuf,
}

impl QosDaemon {
    fn start(tag: &str, policy: &str) -> Self {
        Self::start_in(tag, policy, "process")
    }

    /// `isolation`: `process` (each connection in a worker process, the default: its
    /// gate reaches the daemon's arbiter over the socket the daemon hands the worker)
    /// or `thread`.
    fn start_in(tag: &str, policy: &str, isolation: &str) -> Self {
        let control = vgpu_tests::harness::socket_path(&format!("{tag}-ctl"));
        let metrics = vgpu_tests::harness::socket_path(&format!("{tag}-metrics"));
        let mut cmd = Command::new(DAEMON);
        cmd.env("LP_NUM_THREADS", "1")
            .args(["--isolation", isolation])
            .args(["--qos-policy", policy, "--control-socket"])
            .arg(&control)
            .arg("--metrics")
            .arg(&metrics);
        let daemon = Daemon::start_command(cmd, tag).expect("daemon");
        let start = Instant::now();
        while !control.exists() || !metrics.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no control socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            daemon,
            control,
            metrics,
        }
    }

    fn ctl(&self, line: &str) -> String {
        control_request(&self.control, line).expect("control request")
    }

    /// `(submissions, device_ms)` per VM name from `list`.
    fn figures(&self) -> Vec<(String, u64, f64)> {
        self.ctl("list")
            .lines()
            .skip(1)
            .map(|l| {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .unwrap_or("0")
                        .to_owned()
                };
                (
                    l.split_whitespace().next().unwrap_or("").to_owned(),
                    field("submissions=").parse().unwrap_or(0),
                    field("device_ms=").parse().unwrap_or(0.0),
                )
            })
            .collect()
    }

    /// Waits until `n` VMs are attached.
    fn wait_vms(&self, n: usize) {
        let start = Instant::now();
        while self.figures().len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "VMs did not attach:\n{}",
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spin(sock: &Path, seconds: u32) -> Child {
    client(SPIN, Mode::Venus(sock))
        .env("LP_NUM_THREADS", "1")
        .args([GROUPS, ITERS, &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spin-app")
}

fn finish(c: Child) -> Output {
    c.wait_with_output().expect("spin-app output")
}

/// Submissions completed per VM over `window`.
fn window(d: &QosDaemon, vms: &[&str], window: Duration) -> Vec<u64> {
    let at = |f: &[(String, u64, f64)], vm: &str| {
        f.iter().find(|(n, _, _)| n == vm).map_or(0, |(_, s, _)| *s)
    };
    let before = d.figures();
    std::thread::sleep(window);
    let after = d.figures();
    vms.iter()
        .map(|vm| at(&after, vm) - at(&before, vm))
        .collect()
}

/// Up to `WINDOW_TRIES` windows of `len`, until `ok` accepts one: the device is a CPU
/// core shared with whatever else the machine runs, so a burst of outside load can
/// starve one VM's client for a whole window (seen once at load 8+: 2:1 measured 2.49).
/// A scheduler that does not hold the shares fails every window. Returns every window
/// measured, the accepted one last.
fn windows_until(
    d: &QosDaemon,
    vms: &[&str],
    len: Duration,
    ok: impl Fn(&[u64]) -> bool,
) -> Vec<Vec<u64>> {
    let mut seen = Vec::new();
    for _ in 0..WINDOW_TRIES {
        let w = window(d, vms, len);
        let accepted = ok(&w);
        seen.push(w);
        if accepted {
            break;
        }
    }
    seen
}

/// Windows a ratio test may measure before it fails (see `windows_until`).
const WINDOW_TRIES: usize = 3;

#[allow(clippy::cast_precision_loss, reason = "submission counts are small")]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

#[test]
fn fixed_share_holds_two_to_one_and_follows_a_live_change_to_one_to_three() {
    let _serial = serial();
    let d = QosDaemon::start("qos-ratio", "fixed-share");
    let sock = d.daemon.socket().to_path_buf();
    // Long enough for every window try of both phases.
    let a = spin(&sock, 24);
    d.wait_vms(1);
    let b = spin(&sock, 24);
    d.wait_vms(2);
    assert_eq!(d.ctl("set vm1 share=66.7 cap=66.7"), "ok\n");
    assert_eq!(d.ctl("set vm2 share=33.3 cap=33.3"), "ok\n");
    std::thread::sleep(Duration::from_millis(500));
    let two_one = |w: &[u64]| (1.6..=2.4).contains(&ratio(w[0], w[1]));
    let two_to_one = windows_until(&d, &["vm1", "vm2"], Duration::from_secs(3), two_one);
    // Live change: lower vm1 first so the reserved shares never exceed the GPU.
    assert_eq!(d.ctl("set vm1 share=25 cap=25"), "ok\n");
    assert_eq!(d.ctl("set vm2 share=75 cap=75"), "ok\n");
    std::thread::sleep(Duration::from_millis(1000));
    let one_three = |w: &[u64]| (2.4..=3.6).contains(&ratio(w[1], w[0]));
    let one_to_three = windows_until(&d, &["vm1", "vm2"], Duration::from_secs(3), one_three);
    let (a, b) = (finish(a), finish(b));
    assert!(a.status.success(), "{}\n{}", text(&a), d.daemon.log());
    assert!(b.status.success(), "{}\n{}", text(&b), d.daemon.log());
    eprintln!("2:1 windows {two_to_one:?}; 1:3 windows {one_to_three:?}");
    assert!(
        two_to_one.last().is_some_and(|w| two_one(w)),
        "2:1 held in none of {two_to_one:?} (band 1.6-2.4)"
    );
    assert!(
        one_to_three.last().is_some_and(|w| one_three(w)),
        "1:3 held in none of {one_to_three:?} (band 2.4-3.6)"
    );
}

/// Semantics under arbitration (issue 13): the compute suite (its `timeline`,
/// `fences` and `timestamps` cases wait on fences and timeline semaphores through
/// Mesa's vtest syncs) and the offscreen graphics suite give the same bytes as
/// natively while fixed-share is active and two other VMs saturate the device, so
/// every one of their submissions waits for a grant.
#[test]
fn compute_and_graphics_suites_pass_with_fixed_share_and_two_saturating_vms() {
    let _serial = serial();
    let d = QosDaemon::start("qos-suite", "fixed-share");
    let sock = d.daemon.socket().to_path_buf();
    let native = run_with_timeout(client(APP, Mode::Native), TIMEOUT).expect("native");
    assert!(native.status.success(), "{}", text(&native));
    let native_gfx = run_with_timeout(client(GRAPHICS, Mode::Native), TIMEOUT).expect("native");
    assert!(native_gfx.status.success(), "{}", text(&native_gfx));
    let a = spin(&sock, 600);
    let b = spin(&sock, 600);
    d.wait_vms(2);
    let venus = run_with_timeout(client(APP, Mode::Venus(&sock)), TIMEOUT).expect("venus");
    let venus_gfx = run_with_timeout(client(GRAPHICS, Mode::Venus(&sock)), TIMEOUT).expect("venus");
    let figures = d.figures();
    for mut c in [a, b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    for out in [&venus, &venus_gfx] {
        assert!(
            out.status.success(),
            "{}\ndaemon log:\n{}",
            text(out),
            d.daemon.log()
        );
    }
    let lines = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("device ") && !l.starts_with("api "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(lines(&native), lines(&venus), "compute results differ");
    assert_eq!(
        lines(&native_gfx),
        lines(&venus_gfx),
        "graphics results differ"
    );
    assert!(!lines(&venus_gfx).is_empty(), "{}", text(&venus_gfx));
    // The two saturating VMs really ran (and were arbitrated) while the suites did.
    assert!(
        figures.iter().filter(|(_, s, _)| *s > 10).count() >= 2,
        "{figures:?}"
    );
}

/// Device time is measured on the device (issue 13): each submission the arbiter
/// grants gets a timestamp pair around the guest's command buffers. Under fixed-share
/// with two VMs taking turns (a VM alone is leased and charged by completion timing),
/// in worker processes, the clients' batches are stamped, and what the timestamps give
/// is most of, and never more than, what completion timing (submit to retire fence
/// seen) gives; each gate logs both when its VM goes.
#[test]
fn device_time_comes_from_timestamps() {
    let _serial = serial();
    let d = QosDaemon::start("qos-stamps", "fixed-share");
    let sock = d.daemon.socket().to_path_buf();
    let (a, b) = (spin(&sock, 2), spin(&sock, 2));
    for out in [finish(a), finish(b)] {
        assert!(out.status.success(), "{}", text(&out));
    }
    let mut line = None;
    assert!(
        vgpu_tests::harness::wait_until(Duration::from_secs(20), || {
            line = d
                .daemon
                .log()
                .lines()
                .find(|l| l.contains("stamped submissions"))
                .map(str::to_owned);
            line.is_some()
        }),
        "no timing line:\n{}",
        d.daemon.log()
    );
    let line = line.unwrap_or_default();
    eprintln!("{line}");
    // "… device time of N stamped submissions: X ms by timestamps, Y ms by completion timing (…)"
    let num = |after: &str| -> f64 {
        line.split(after)
            .next()
            .and_then(|h| h.rsplit(' ').find(|w| !w.is_empty()))
            .and_then(|w| w.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (n, stamped, completion) = (
        num(" stamped submissions"),
        num(" ms by timestamps"),
        num(" ms by completion timing"),
    );
    assert!(n >= 20.0, "{line}");
    assert!(stamped > 0.0 && stamped <= completion * 1.01, "{line}");
    assert!(stamped >= 0.5 * completion, "{line}");
}

#[test]
fn metrics_endpoint_reports_every_vm() {
    metrics_report_every_vm("process");
}

/// The same with the connection on a daemon thread.
#[test]
fn metrics_endpoint_reports_every_vm_on_threads() {
    metrics_report_every_vm("thread");
}

/// With workers, a VM's device memory comes from the account the daemon keeps for
/// them (`worker::account`); on threads, from the context's own account.
fn metrics_report_every_vm(isolation: &str) {
    let _serial = serial();
    let d = QosDaemon::start_in(
        &format!("qos-metrics-{isolation}"),
        "fixed-share",
        isolation,
    );
    let sock = d.daemon.socket().to_path_buf();
    let a = spin(&sock, 3);
    d.wait_vms(1);
    // Scrape once the client runs (its memory is allocated by then).
    let start = Instant::now();
    while d.figures().first().is_none_or(|f| f.1 == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            d.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = d.figures();
    let mut conn = UnixStream::connect(&d.metrics).expect("metrics socket");
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut page = String::new();
    conn.read_to_string(&mut page).expect("response");
    let a = finish(a);
    assert!(a.status.success(), "{}", text(&a));
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
    for family in [
        "vgpu_vm_device_nanoseconds_total",
        "vgpu_vm_submissions_total",
        "vgpu_vm_grants_total",
        "vgpu_vm_throttled_nanoseconds_total",
        "vgpu_vm_queue_depth",
        "vgpu_vm_context_failures_total",
        "vgpu_vm_memory_bytes",
    ] {
        assert!(
            page.contains(&format!("{family}{{vm=\"vm1\"")),
            "{family} missing:\n{page}"
        );
    }
    assert!(
        page.contains("vgpu_policy{policy=\"fixed-share\"} 1"),
        "{page}"
    );
    // The client's buffer counts as its VM's device memory.
    let memory: u64 = page
        .lines()
        .find(|l| l.starts_with("vgpu_vm_memory_bytes{vm=\"vm1\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("a memory sample");
    assert!(memory > 0, "{page}");
    // The scrape counts at least what `list` showed just before it.
    let scraped: u64 = page
        .lines()
        .find(|l| l.starts_with("vgpu_vm_submissions_total{vm=\"vm1\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("a submissions sample");
    assert!(scraped >= listed[0].1, "{scraped} < {listed:?}");
}

#[test]
fn config_vms_get_their_shares_and_the_policy_from_the_file() {
    let _serial = serial();
    let big = vgpu_tests::harness::socket_path("qos-cfg-big");
    let small = vgpu_tests::harness::socket_path("qos-cfg-small");
    let control = vgpu_tests::harness::socket_path("qos-cfg-ctl");
    let file = vgpu_tests::harness::socket_path("qos-cfg").with_extension("toml");
    std::fs::write(
        &file,
        format!(
            "policy = \"fixed-share\"\ncontrol_socket = {control:?}\n\n\
             [[vm]]\nname = \"big\"\nvtest_socket = {big:?}\nshare = 66.7\ncap = 66.7\n\n\
             [[vm]]\nname = \"small\"\nvtest_socket = {small:?}\nshare = 33.3\ncap = 33.3\n"
        ),
    )
    .expect("config");
    let daemon = Daemon::start_config(
        DAEMON,
        &file,
        &[big.clone(), small.clone(), control.clone()],
        "qos-cfg",
    )
    .expect("daemon");
    let list = control_request(&control, "list").expect("list");
    assert!(list.starts_with("policy fixed-share\n"), "{list}");
    assert!(list.contains("name=\"big\" share=66.7 cap=66.7"), "{list}");
    assert!(
        list.contains("name=\"small\" share=33.3 cap=33.3"),
        "{list}"
    );
    let d = QosDaemon {
        daemon,
        control,
        metrics: PathBuf::new(),
    };
    // Long enough for every window try.
    let a = spin(&big, 14);
    let b = spin(&small, 14);
    // Both VMs are attached from the start: wait until both have run something.
    let start = Instant::now();
    while d.figures().iter().filter(|(_, s, _)| *s > 0).count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            d.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let two_one = |w: &[u64]| (1.6..=2.4).contains(&ratio(w[0], w[1]));
    let w = windows_until(&d, &["vm1", "vm2"], Duration::from_secs(3), two_one);
    let (a, b) = (finish(a), finish(b));
    let _ = std::fs::remove_file(&file);
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    eprintln!("config 2:1 windows {w:?}");
    assert!(
        w.last().is_some_and(|w| two_one(w)),
        "config 2:1 held in none of {w:?} (band 1.6-2.4)"
    );
}

#[test]
fn four_vms_at_40_30_20_10_each_get_about_their_share() {
    let _serial = serial();
    let d = QosDaemon::start("qos-four", "fixed-share");
    let sock = d.daemon.socket().to_path_buf();
    let shares = [40.0, 30.0, 20.0, 10.0];
    let mut clients = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        clients.push(spin(&sock, 24));
        d.wait_vms(i + 1);
        assert_eq!(
            d.ctl(&format!("set vm{} share={share} cap={share}", i + 1)),
            "ok\n"
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let percents = |w: &[u64]| -> Vec<f64> {
        let total: u64 = w.iter().sum();
        w.iter()
            .map(|&n| n as f64 / total.max(1) as f64 * 100.0)
            .collect()
    };
    // Generous band on a shared machine: each within a quarter of its share.
    let held = |w: &[u64]| {
        percents(w)
            .iter()
            .zip(shares)
            .all(|(g, s)| (g - s).abs() <= s * 0.25)
    };
    let seen = windows_until(
        &d,
        &["vm1", "vm2", "vm3", "vm4"],
        Duration::from_secs(5),
        held,
    );
    for c in clients {
        let o = finish(c);
        assert!(o.status.success(), "{}\n{}", text(&o), d.daemon.log());
    }
    let got: Vec<Vec<f64>> = seen.iter().map(|w| percents(w)).collect();
    eprintln!("40/30/20/10 windows {seen:?} = {got:.1?} %");
    assert!(
        seen.last().is_some_and(|w| held(w)),
        "40/30/20/10 held in none of {seen:?} = {got:.1?} %"
    );
}

/// `key=` of `vm` in `ctl list`, as a number.
fn list_field(d: &QosDaemon, vm: &str, key: &str) -> u64 {
    d.ctl("list")
        .lines()
        .find(|l| l.split_whitespace().next() == Some(vm))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `vm` has run `n` batches; its `(submissions, grants)` then.
fn ran_at_least(d: &QosDaemon, vm: &str, n: u64) -> (u64, u64) {
    assert!(
        vgpu_tests::harness::wait_until(Duration::from_secs(20), || {
            list_field(d, vm, "submissions=") >= n
        }),
        "{vm} did not run:\n{}",
        d.ctl("list")
    );
    (
        list_field(d, vm, "submissions="),
        list_field(d, vm, "grants="),
    )
}

/// Leases on the real path (worker processes): a VM alone under fixed-share runs
/// hundreds of batches on a handful of grants; once a second VM runs, both are
/// granted batch by batch, and both clients finish.
#[test]
fn a_vm_alone_runs_under_a_lease_and_two_vms_take_turns() {
    let _serial = serial();
    let d = QosDaemon::start("qos-lease", "fixed-share");
    let sock = d.daemon.socket().to_path_buf();
    let a = spin(&sock, 5);
    d.wait_vms(1);
    // Alone: its grants stay few (one per lease) while its batches climb.
    let (subs, grants) = ran_at_least(&d, "vm1", 200);
    assert!(grants <= 5, "alone: {grants} grants for {subs} batches");
    // Together: every batch of the second VM is granted on its own.
    let b = spin(&sock, 3);
    d.wait_vms(2);
    let (subs2, grants2) = ran_at_least(&d, "vm2", 100);
    assert!(
        grants2 * 10 >= subs2 * 9,
        "taking turns: {grants2} grants for {subs2} batches"
    );
    assert!(
        list_field(&d, "vm1", "grants=") > grants + 20,
        "vm1 still leased beside vm2:\n{}",
        d.ctl("list")
    );
    for out in [finish(a), finish(b)] {
        assert!(out.status.success(), "{}\n{}", text(&out), d.daemon.log());
    }
}

/// The split hint on the real path (worker processes): beside a second VM under
/// fixed-share, a VM whose submissions are 12 command buffers of about 5 ms each
/// is granted in parts once its gate has learned what a command buffer costs (one
/// command buffer a part: each is longer than the 4 ms slice), and both clients'
/// results are right.
#[test]
fn a_submission_of_many_command_buffers_is_granted_in_parts() {
    let _serial = serial();
    let d = QosDaemon::start("qos-split", "fixed-share");
    let sock = d.daemon.socket().to_path_buf();
    // Depth 1, 12 command buffers a submission.
    let long = client(SPIN, Mode::Venus(&sock))
        .env("LP_NUM_THREADS", "1")
        .args([GROUPS, ITERS, "6", "1", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spin-app");
    d.wait_vms(1);
    let short = spin(&sock, 5);
    d.wait_vms(2);
    // The VM goes from `list` when its client ends: read its count meanwhile.
    let mut long = long;
    let mut parts = 0;
    while long.try_wait().expect("spin-app status").is_none() {
        parts = parts.max(list_field(&d, "vm1", "submissions="));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (long, short) = (finish(long), finish(short));
    for out in [&long, &short] {
        assert!(out.status.success(), "{}\n{}", text(out), d.daemon.log());
    }
    let guest: u64 = String::from_utf8_lossy(&long.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("submissions "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the long client's submission count");
    eprintln!("split: {parts} granted or leased parts for {guest} guest submissions");
    // Alone at first it runs whole submissions under a lease; beside the other VM
    // each submission is 12 parts. Unsplit, the two counts would be equal.
    assert!(
        guest > 0 && parts >= guest * 4,
        "{parts} submissions granted or leased for {guest} guest submissions:\n{}",
        d.ctl("list")
    );
}

/// A VM alone holds a lease (burst, no cap) and its submissions of 12 command
/// buffers of about 3 ms still go to the host in parts, each taken under the lease
/// while it holds: a VM that arrives waits for one part, not a whole submission.
/// The VM learns what its command buffers cost under the lease (it never had a
/// grant of its own), so only its first submission goes whole.
#[test]
fn a_long_submission_under_a_lease_goes_in_parts() {
    let _serial = serial();
    let d = QosDaemon::start("qos-lease-split", "burst");
    let sock = d.daemon.socket().to_path_buf();
    let mut long = client(SPIN, Mode::Venus(&sock))
        .env("LP_NUM_THREADS", "1")
        .args([GROUPS, ITERS, "4", "1", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spin-app");
    d.wait_vms(1);
    let mut parts = 0;
    while long.try_wait().expect("spin-app status").is_none() {
        parts = parts.max(list_field(&d, "vm1", "submissions="));
        std::thread::sleep(Duration::from_millis(50));
    }
    let long = finish(long);
    assert!(long.status.success(), "{}\n{}", text(&long), d.daemon.log());
    let guest: u64 = String::from_utf8_lossy(&long.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("submissions "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the client's submission count");
    let metrics = d.ctl("metrics");
    eprintln!("lease split: {parts} leased parts for {guest} guest submissions");
    // Unsplit, the two counts would be equal (one leased batch per submission).
    assert!(
        guest > 2 && parts >= (guest - 1) * 3,
        "{parts} batches leased for {guest} guest submissions:\n{}\n{metrics}",
        d.ctl("list")
    );
}
