//! End-to-end: the unmodified Mesa Venus ICD through the whole vhost-user path.
//!
//! Mesa (vtest) → `vtest-vhost-bridge` (guest driver + VMM: virtio-gpu commands on a
//! split control queue in memfd guest memory, blobs via RESOURCE_MAP_BLOB →
//! SHMEM_MAP) → `vhost-user-vgpu serve` on lavapipe. The daemon binary here is
//! `vhost-serve-daemon`, which runs the same `serve` code as the CLI.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use vgpu_tests::bridge::launch::VhostChain;
use vgpu_tests::harness::{client, run_with_timeout, Mode};

const SERVE: &str = env!("CARGO_BIN_EXE_vhost-serve-daemon");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const VTEST_DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const TIMEOUT: Duration = Duration::from_secs(240);

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn chain(tag: &str) -> VhostChain {
    VhostChain::start(SERVE, &[], BRIDGE, tag).expect("serve daemon + bridge")
}

fn run_app(mode: Mode<'_>, cases: &[&str]) -> Output {
    let mut cmd = client(APP, mode);
    cmd.args(cases);
    run_with_timeout(cmd, TIMEOUT).expect("run compute-app")
}

fn case_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("device ") && !l.starts_with("api "))
        .map(str::to_owned)
        .collect()
}

/// The bridge's per-connection summaries: (blobs passed through, unmapped, submits).
fn closed_lines(logs: &str) -> Vec<(u64, u64, u64)> {
    logs.lines()
        .filter_map(|l| l.split_once(" closed: ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let n: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .filter_map(|w| w.parse().ok())
                .collect();
            // "<b> blobs passed through, <u> unmapped, <s> SUBMIT_3D" (the 3 in
            // SUBMIT_3D is the fourth number).
            match n.as_slice() {
                [b, u, s, 3] => Some((*b, *u, *s)),
                _ => None,
            }
        })
        .collect()
}

/// Waits for the bridge to log `n` closed connections (teardown runs after the
/// client exits).
fn wait_closed(c: &VhostChain, n: usize) -> Vec<(u64, u64, u64)> {
    for _ in 0..200 {
        let lines = closed_lines(&c.logs());
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("bridge did not log {n} closed connections:\n{}", c.logs());
}

fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim_start().trim_start_matches('=').trim())
}

#[test]
fn vulkaninfo_through_vhost_user() {
    let mut c = chain("vulkaninfo");
    let o = run_with_timeout(client("vulkaninfo", c.mode()), TIMEOUT).expect("vulkaninfo");
    assert!(o.status.success(), "{}\n{}", text(&o), c.logs());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let name = field(&out, "deviceName").unwrap_or_default();
    assert!(
        name.starts_with("Virtio-GPU Venus (llvmpipe"),
        "deviceName {name:?}\n{out}"
    );
    let api = field(&out, "apiVersion").unwrap_or_default();
    assert!(api.starts_with("1.3."), "apiVersion {api:?}");
    // The blobs Mesa used (ring, reply and command shmems at least) were created,
    // mapped through SHMEM_MAP, passed to Mesa, and unmapped again at the end.
    let closed = wait_closed(&c, 1);
    let (blobs, unmapped, submits) = closed[0];
    assert!(blobs >= 2 && submits > 0, "{closed:?}\n{}", c.logs());
    assert_eq!(blobs, unmapped, "every SHMEM_MAP undone:\n{}", c.logs());
    assert!(c.alive(), "daemon and bridge survive the client");
}

/// The same `vulkaninfo --summary` through the vtest front door and through vhost-user:
/// the transport must not change what Mesa sees.
#[test]
fn vulkaninfo_summary_equals_the_vtest_front_door() {
    let c = chain("summary");
    let vtest =
        vgpu_tests::harness::Daemon::start(VTEST_DAEMON, "summary-vtest").expect("vtest daemon");
    let run = |sock: &Path| {
        let mut cmd = client("vulkaninfo", Mode::Venus(sock));
        cmd.arg("--summary");
        let o = run_with_timeout(cmd, TIMEOUT).expect("vulkaninfo");
        assert!(o.status.success(), "{}\n{}", text(&o), c.logs());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let over_vtest = run(vtest.socket());
    let over_vhost = run(c.vtest_socket());
    assert!(
        over_vhost.contains("Virtio-GPU Venus (llvmpipe"),
        "{over_vhost}"
    );
    assert_eq!(over_vtest, over_vhost);
}

#[test]
fn compute_suite_matches_native_through_vhost_user() {
    let mut c = chain("compute");
    let native = run_app(Mode::Native, &[]);
    assert!(native.status.success(), "native: {}", text(&native));
    let venus = run_app(c.mode(), &[]);
    assert!(venus.status.success(), "{}\n{}", text(&venus), c.logs());
    let out = String::from_utf8_lossy(&venus.stdout).into_owned();
    assert!(out.contains("device Virtio-GPU Venus (llvmpipe"), "{out}");
    assert!(out.contains("api 1.3."), "{out}");
    assert_eq!(case_lines(&native).len(), vgpu_tests::apps::CASES.len());
    assert_eq!(case_lines(&native), case_lines(&venus), "results differ");
    let closed = wait_closed(&c, 1);
    let (blobs, unmapped, _) = closed[0];
    // Device-memory blobs (mapped buffers) come on top of the shmems.
    assert!(blobs > 3, "{closed:?}");
    assert_eq!(blobs, unmapped, "{}", c.logs());
    assert!(c.alive());
}

/// Several guests' processes at once: one context each on the one device, blobs in
/// one shared region, responses on one control queue.
#[test]
fn concurrent_clients_share_one_device() {
    let mut c = chain("concurrent");
    let cases = ["saxpy", "prefix_sum", "timeline", "host_writes", "fences"];
    let native = run_app(Mode::Native, &cases);
    assert!(native.status.success(), "{}", text(&native));
    let sock = c.vtest_socket().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || run_app(Mode::Venus(&sock), &cases))
        })
        .collect();
    for h in handles {
        let o = h.join().expect("join");
        assert!(o.status.success(), "{}\n{}", text(&o), c.logs());
        assert_eq!(case_lines(&o), case_lines(&native));
    }
    let closed = wait_closed(&c, 4);
    assert!(closed.iter().all(|(b, u, _)| b == u), "{closed:?}");
    assert!(c.alive());
}
