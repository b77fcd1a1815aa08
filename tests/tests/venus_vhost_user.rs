//! End-to-end: the unmodified Mesa Venus ICD through the whole vhost-user path.
//!
//! Mesa (vtest) → `vtest-vhost-bridge` (guest driver + VMM: virtio-gpu commands on a
//! split control queue in memfd guest memory, blobs via RESOURCE_MAP_BLOB →
//! SHMEM_MAP) → `vhost-user-vgpu serve` on lavapipe. The daemon binary here is
//! `vhost-serve-daemon`, which runs the same `serve` code as the CLI.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::ids::{BlobId, CapsetId, ResourceId};
use vgpu_device::vtest::client::{Batch, VtestClient};
use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;
use vgpu_tests::bridge::launch::VhostChain;
use vgpu_tests::harness::{case_lines, client, output_text as text, run_with_timeout, Mode};

const SERVE: &str = env!("CARGO_BIN_EXE_vhost-serve-daemon");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const VTEST_DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const TIMEOUT: Duration = Duration::from_secs(240);

/// Daemon + bridge. `VGPU_SERVE_BIN=/path/to/vhost-user-vgpu` runs the CLI binary
/// (`vhost-user-vgpu serve`) instead of this package's copy of it.
fn chain(tag: &str) -> VhostChain {
    let started = match std::env::var("VGPU_SERVE_BIN") {
        Ok(bin) => VhostChain::start(&bin, &["serve"], BRIDGE, tag),
        Err(_) => VhostChain::start(SERVE, &[], BRIDGE, tag),
    };
    started.expect("serve daemon + bridge")
}

fn run_app(mode: Mode<'_>, cases: &[&str]) -> Output {
    let mut cmd = client(APP, mode);
    cmd.args(cases);
    run_with_timeout(cmd, TIMEOUT).expect("run compute-app")
}

/// One connection's summary from the bridge log.
#[derive(Clone, Copy, Debug)]
struct Closed {
    /// Blobs whose SHMEM_MAP fd was passed to Mesa.
    blobs: u64,
    /// Of those, device-memory blobs (blob_id = VkDeviceMemory id).
    device_blobs: u64,
    /// Blobs unmapped again (UNMAP_BLOB answered with SHMEM_UNMAP).
    unmapped: u64,
    /// SUBMIT_3D commands.
    submits: u64,
}

/// The bridge's per-connection summaries.
fn closed_lines(logs: &str) -> Vec<Closed> {
    logs.lines()
        .filter_map(|l| l.split_once(" closed: ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let n: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .filter_map(|w| w.parse().ok())
                .collect();
            // "<b> blobs passed through (<d> device memory), <u> unmapped, <s>
            // SUBMIT_3D" (the 3 of SUBMIT_3D is the last number).
            match *n.as_slice() {
                [blobs, device_blobs, unmapped, submits, 3] => Some(Closed {
                    blobs,
                    device_blobs,
                    unmapped,
                    submits,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Waits for the bridge to log `n` closed connections (teardown runs after the
/// client exits).
fn wait_closed(c: &VhostChain, n: usize) -> Vec<Closed> {
    for _ in 0..800 {
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
    let closed = wait_closed(&c, 1)[0];
    assert!(
        closed.blobs >= 2 && closed.submits > 0,
        "{closed:?}\n{}",
        c.logs()
    );
    assert_eq!(
        closed.blobs,
        closed.unmapped,
        "every SHMEM_MAP undone:\n{}",
        c.logs()
    );
    assert!(c.alive(), "daemon and bridge survive the client");
}

/// The same full `vulkaninfo` report (every property, feature, format and extension
/// Mesa's Venus driver derives) through the vtest front door and through vhost-user:
/// the transport must not change a line of what the application sees.
#[test]
fn vulkaninfo_report_equals_the_vtest_front_door() {
    let c = chain("report");
    let vtest =
        vgpu_tests::harness::Daemon::start(VTEST_DAEMON, "report-vtest").expect("vtest daemon");
    let run = |sock: &Path| {
        let o =
            run_with_timeout(client("vulkaninfo", Mode::Venus(sock)), TIMEOUT).expect("vulkaninfo");
        assert!(o.status.success(), "{}\n{}", text(&o), c.logs());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let over_vtest = run(vtest.socket());
    let over_vhost = run(c.vtest_socket());
    assert!(
        over_vhost.contains("Virtio-GPU Venus (llvmpipe"),
        "{over_vhost}"
    );
    assert!(over_vhost.lines().count() > 500, "{over_vhost}");
    if over_vtest != over_vhost {
        let diff: Vec<String> = over_vtest
            .lines()
            .zip(over_vhost.lines())
            .filter(|(a, b)| a != b)
            .take(20)
            .map(|(a, b)| format!("vtest: {a}\nvhost: {b}"))
            .collect();
        panic!(
            "reports differ ({} vs {} lines):\n{}",
            over_vtest.lines().count(),
            over_vhost.lines().count(),
            diff.join("\n")
        );
    }
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
    let closed = wait_closed(&c, 1)[0];
    // Mapped VkDeviceMemory reached Mesa as device-memory blobs (blob_id = memory id),
    // and host_writes/saxpy read and wrote them through the SHMEM_MAP fd.
    assert!(closed.device_blobs > 0, "{closed:?}\n{}", c.logs());
    assert_eq!(closed.blobs, closed.unmapped, "{}", c.logs());
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
    assert!(closed.iter().all(|c| c.blobs == c.unmapped), "{closed:?}");
    assert!(c.alive());
}

/// The probe's scripted Venus session (vtest/probe.rs): two shmem blobs, a ring in
/// one, a reply written by the renderer into the other. Through the bridge both blobs
/// are the SHMEM_MAP fds, so the reply read back proves the mapping is coherent.
#[test]
fn probe_ring_and_reply_stream_through_shmem_map() {
    let c = chain("probe");
    let report = vgpu_device::vtest::probe::probe(c.vtest_socket())
        .unwrap_or_else(|e| panic!("probe: {e}\n{}", c.logs()));
    let text = report.to_string();
    assert!(text.contains("head reached tail"), "{text}");
    let closed = wait_closed(&c, 1)[0];
    assert_eq!((closed.blobs, closed.unmapped), (2, 2), "{closed:?}");
}

/// Clients that leave blobs behind, unref unknown ids or send a corrupt stream lose
/// their connection (vtest has no error replies); the bridge tears their context down
/// like a guest kernel closing the DRM file, and the device keeps serving others.
#[test]
fn careless_and_hostile_clients_are_cleaned_up() {
    let mut c = chain("hostile");
    // Handshake: the capset Mesa would see is the device's GET_CAPSET answer.
    let mut careless = VtestClient::connect(c.vtest_socket()).expect("connect");
    let hs = careless.handshake("careless").expect("handshake");
    let capset = VenusCapset::new(&VenusProtocolInfo::generated()).expect("capset");
    assert_eq!(hs.capset, capset.to_bytes().to_vec());
    careless
        .context_init(CapsetId::VENUS)
        .expect("context init");
    let mut fds = Vec::new();
    for size in [131_268u64, 4096, 1 << 20] {
        let (id, fd) = careless
            .create_blob(BLOB_FLAG_MAPPABLE, size, BlobId::SHMEM)
            .expect("blob");
        let st = rustix::fs::fstat(&fd).expect("fstat");
        assert!(u64::try_from(st.st_size).expect("size") >= size);
        fds.push((id, fd));
    }
    careless.resource_unref(fds[0].0).expect("unref");
    drop(careless);
    let closed = wait_closed(&c, 1)[0];
    assert_eq!((closed.blobs, closed.unmapped), (3, 3), "{closed:?}");

    // An unknown resource id.
    let mut bad = VtestClient::connect(c.vtest_socket()).expect("connect");
    bad.handshake("bad-unref").expect("handshake");
    bad.context_init(CapsetId::VENUS).expect("context init");
    bad.resource_unref(ResourceId(999)).expect("send");
    assert!(bad.wait_closed(Duration::from_secs(10)).expect("read"));

    // A corrupt context stream: SUBMIT_3D fails on the device, the client is dropped.
    let mut bad = VtestClient::connect(c.vtest_socket()).expect("connect");
    bad.handshake("bad-stream").expect("handshake");
    bad.context_init(CapsetId::VENUS).expect("context init");
    let mut cmds = vgpu_device::vtest::client::venus::enumerate_instance_version();
    cmds.extend(std::iter::repeat_n(0xa5u8, 256));
    bad.submit_cmd2(&[Batch {
        cmds: &cmds,
        ..Batch::default()
    }])
    .expect("send");
    assert!(bad.wait_closed(Duration::from_secs(10)).expect("read"));
    wait_closed(&c, 3);

    let native = run_app(Mode::Native, &["saxpy", "fences"]);
    let after = run_app(c.mode(), &["saxpy", "fences"]);
    assert!(after.status.success(), "{}\n{}", text(&after), c.logs());
    assert_eq!(case_lines(&after), case_lines(&native));
    assert!(c.alive());
}
