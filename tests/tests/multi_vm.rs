//! End-to-end: one daemon started from one TOML config serves several VMs (issue 12:
//! "one daemon, many VMs"), each VM's connections share its limits, and the per-VM fd
//! limits of issue 11 row 2 (blobs, pending sync waits) fail only the VM that runs into
//! them.
//!
//! Each test writes a config with its own sockets and runs `venus-daemon --config`
//! (the same `daemon::run` as `vhost-user-vgpu serve --config`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use vgpu_device::ids::{BlobId, CapsetId, SyncId};
use vgpu_device::vtest::client::VtestClient;
use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;
use vgpu_tests::harness::{
    case_lines, children_named, client, output_text as text, run_with_timeout, socket_path, Daemon,
    Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const QUOTA_APP: &str = env!("CARGO_BIN_EXE_quota-app");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const TIMEOUT: Duration = Duration::from_secs(240);
/// What each VM's compute client runs.
const CASES: &[&str] = &["saxpy", "prefix_sum", "matmul"];

/// A config file (removed on drop) and the daemon serving it.
struct Served {
    daemon: Daemon,
    config: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Writes `text` as a config and starts the daemon on it, waiting for `sockets`.
fn serve(tag: &str, text: &str, sockets: &[PathBuf]) -> Served {
    let config = socket_path(tag).with_extension("toml");
    std::fs::write(&config, text).expect("write config");
    let daemon = Daemon::start_config(DAEMON, &config, sockets, tag).expect("daemon");
    Served { daemon, config }
}

fn compute(mode: Mode<'_>) -> Command {
    let mut cmd = client(APP, mode);
    cmd.args(CASES);
    cmd
}

/// `compute-app` natively: the results every VM must reproduce bit for bit.
fn native_results() -> Vec<String> {
    let native = run_with_timeout(compute(Mode::Native), TIMEOUT).expect("native");
    assert!(native.status.success(), "native: {}", text(&native));
    let lines = case_lines(&native);
    assert_eq!(lines.len(), CASES.len(), "{lines:?}");
    lines
}

fn assert_compute_matches(socket: &Path, native: &[String], log: &dyn Fn() -> String) {
    let out = run_with_timeout(compute(Mode::Venus(socket)), TIMEOUT).expect("compute-app");
    assert!(
        out.status.success(),
        "compute-app on {}: {}\ndaemon log:\n{}",
        socket.display(),
        text(&out),
        log()
    );
    assert_eq!(
        case_lines(&out),
        native,
        "results differ on {}",
        socket.display()
    );
}

/// The bridge playing the VMM of a vhost-user VM: `vhost` → a vtest socket.
struct Bridge {
    child: Child,
    vtest: PathBuf,
    log: PathBuf,
}

impl Bridge {
    fn start(vhost: &Path, tag: &str) -> Self {
        let vtest = socket_path(&format!("{tag}-bridge"));
        let log = vtest.with_extension("log");
        let child = Command::new(BRIDGE)
            .arg("--vhost-socket")
            .arg(vhost)
            .arg("--vtest-socket")
            .arg(&vtest)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("bridge log"))
            .spawn()
            .expect("bridge");
        let bridge = Self { child, vtest, log };
        wait_for("the bridge's socket", Duration::from_secs(20), || {
            bridge.vtest.exists()
        });
        bridge
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.vtest);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One daemon, one config, three VMs: two on vtest sockets, one on a vhost-user
/// socket (driven through the bridge, as a VMM would). Real Mesa Venus clients on all
/// three at once get the native results bit for bit; log lines name the VMs; SIGTERM
/// stops everything, removes every socket and exits 0.
#[test]
fn one_config_serves_vtest_and_vhost_user_vms_in_one_daemon() {
    let (a, b, c) = (
        socket_path("multi-a"),
        socket_path("multi-b"),
        socket_path("multi-c"),
    );
    let config = format!(
        "policy = \"fixed-share\"\n\
         [[vm]]\nname = \"alpha\"\nvtest_socket = {a:?}\nshare = 40\n\
         [[vm]]\nname = \"beta\"\nvtest_socket = {b:?}\nshare = 40\n\
         [[vm]]\nname = \"gamma\"\nvhost_user_socket = {c:?}\n"
    );
    let mut served = serve("multi", &config, &[a.clone(), b.clone(), c.clone()]);
    let bridge = Bridge::start(&c, "multi");
    let native = native_results();
    let log = || format!("{}\nbridge:\n{}", served.daemon.log(), bridge.log());
    std::thread::scope(|s| {
        for socket in [&a, &b, &bridge.vtest] {
            let native = &native;
            let log = &log;
            s.spawn(move || assert_compute_matches(socket, native, log));
        }
    });
    let daemon_log = served.daemon.log();
    assert!(
        daemon_log.contains("VM gamma: frontend 1 connected"),
        "{daemon_log}"
    );
    drop(bridge);
    served.daemon.signal("TERM").expect("SIGTERM");
    let status = served
        .daemon
        .wait_exit(Duration::from_secs(10))
        .expect("wait")
        .expect("the daemon exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", served.daemon.log());
    for socket in [&a, &b, &c] {
        assert!(!socket.exists(), "{} left behind", socket.display());
    }
}

/// `quota-app` (host-visible chunks of 20 MiB, Mesa waiting for each allocation).
fn quota_app(socket: &Path, chunk_mib: u64, hold: bool) -> Command {
    let mut cmd = client(QUOTA_APP, Mode::Venus(socket));
    cmd.env("VN_PERF", "no_async_mem_alloc")
        .arg(chunk_mib.to_string());
    if hold {
        cmd.arg("hold");
    }
    cmd
}

/// The value after `key ` on its line of `out`.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

/// Starts `quota-app … hold` and returns it with its output up to `holding`.
fn hold_quota(socket: &Path, chunk_mib: u64) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = quota_app(socket, chunk_mib, true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holding client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut held = String::new();
    while !held.ends_with("holding\n") {
        let mut line = String::new();
        if lines.read_line(&mut line).expect("read") == 0 {
            panic!("holding client ended early ({:?}):\n{held}", child.wait());
        }
        held.push_str(&line);
    }
    (child, lines, held)
}

/// A VM's device-memory quota is shared by all connections on its vtest socket: the
/// second connection of VM "full" gets nothing while the first holds the quota, and
/// VM "other", in the same daemon, still gets all of its own. With worker processes
/// the daemon keeps the VM's account for all of its workers (`worker::account`), and
/// a worker killed while it holds the quota gives it back to its VM at once.
fn vms_share_their_quota(isolation: &str, tag: &str) {
    const QUOTA_MIB: u64 = 64;
    const CHUNK_MIB: u64 = 20;
    let full = socket_path(&format!("{tag}-full"));
    let other = socket_path(&format!("{tag}-other"));
    let config = format!(
        "[worker]\nisolation = \"{isolation}\"\n\
         [defaults]\nmemory_mib = {QUOTA_MIB}\n\
         [[vm]]\nname = \"full\"\nvtest_socket = {full:?}\n\
         [[vm]]\nname = \"other\"\nvtest_socket = {other:?}\n"
    );
    let served = serve(tag, &config, &[full.clone(), other.clone()]);
    let quota = (QUOTA_MIB << 20).to_string();
    let fit = (QUOTA_MIB / CHUNK_MIB).to_string();
    let (mut first, lines, held) = hold_quota(&full, CHUNK_MIB);
    assert_eq!(field(&held, "heap"), Some(quota.as_str()), "{held}");
    assert_eq!(field(&held, "allocated"), Some(fit.as_str()), "{held}");

    let second = run_with_timeout(quota_app(&full, CHUNK_MIB, false), TIMEOUT).expect("second");
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(
        field(&out, "allocated"),
        Some("0"),
        "{out}\n{}",
        served.daemon.log()
    );
    assert_eq!(
        field(&out, "failed"),
        Some("ERROR_OUT_OF_DEVICE_MEMORY"),
        "{out}"
    );

    let bystander =
        run_with_timeout(quota_app(&other, CHUNK_MIB, false), TIMEOUT).expect("bystander");
    let out = String::from_utf8_lossy(&bystander.stdout);
    assert!(bystander.status.success(), "{}", text(&bystander));
    assert_eq!(field(&out, "allocated"), Some(fit.as_str()), "{out}");
    assert_eq!(field(&out, "realloc"), Some("SUCCESS"), "{out}");

    if isolation == "process" {
        // Kill the holder's worker: its VM gets the whole quota back, no matter that
        // nothing freed it.
        // (The workers of the clients that already left may still be exiting.)
        let start = Instant::now();
        let workers = loop {
            let w = children_named(served.daemon.pid(), "w:quota-app");
            if w.len() <= 1 || start.elapsed() > Duration::from_secs(20) {
                break w;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(workers.len(), 1, "workers: {workers:?}");
        let killed = Command::new("kill")
            .args(["-KILL", &workers[0].to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let start = Instant::now();
        let after = loop {
            let o = run_with_timeout(quota_app(&full, CHUNK_MIB, false), TIMEOUT)
                .expect("after the kill");
            assert!(o.status.success(), "{}", text(&o));
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            if field(&out, "allocated") == Some(fit.as_str()) || start.elapsed() > TIMEOUT {
                break out;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            field(&after, "allocated"),
            Some(fit.as_str()),
            "{after}\n{}",
            served.daemon.log()
        );
        drop(lines);
        let _ = first.kill();
        let _ = first.wait();
    } else {
        drop(first.stdin.take());
        drop(lines);
        let _ = first.wait();
    }
    let log = served.daemon.log();
    assert!(log.contains("full"), "the refusal names the VM:\n{log}");
}

#[test]
fn a_vms_workers_share_its_quota_and_other_vms_keep_theirs() {
    vms_share_their_quota("process", "quota-p");
}

#[test]
fn a_vms_threads_share_its_quota_and_other_vms_keep_theirs() {
    vms_share_their_quota("thread", "quota-t");
}

/// Connects and finishes the handshake with a Venus context.
fn ready_client(path: &Path, name: &str) -> VtestClient {
    let mut c = VtestClient::connect(path).expect("connect");
    c.handshake(name).expect("handshake");
    c.context_init(CapsetId::VENUS).expect("context init");
    c
}

/// Open fds of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Issue 11 row 2: a hostile VM holding blobs and pending sync waits runs into its own
/// limits, over all of its connections: the blob past `max_blobs` and the wait past
/// `max_sync_waits` fail that client, with a log line naming the VM and the limit,
/// and the daemon's fds stay bounded. Meanwhile a bystander VM in the same daemon
/// starts Vulkan and computes bit for bit, and the hostile VM's own Mesa client gets
/// `VK_ERROR_OUT_OF_HOST_MEMORY` from `vkAllocateMemory` at its blob limit instead of
/// a lost connection.
#[test]
fn blob_and_sync_wait_limits_fail_only_the_vm_that_hits_them() {
    fd_limits_fail_only_their_vm("thread", "row2-t");
}

/// The same with every connection in a worker process: the daemon grants each
/// worker's blobs and sync waits against the VM's one budget.
#[test]
fn blob_and_sync_wait_limits_hold_across_a_vms_workers() {
    fd_limits_fail_only_their_vm("process", "row2-p");
}

fn fd_limits_fail_only_their_vm(isolation: &str, tag: &str) {
    const MAX_BLOBS: u32 = 24;
    const MAX_WAITS: u32 = 8;
    let hostile = socket_path(&format!("{tag}-hostile"));
    let bystander = socket_path(&format!("{tag}-bystander"));
    // With `isolation = "thread"` the fds below are the daemon's own; with workers
    // they are the workers', and the daemon's stay near its baseline.
    let config = format!(
        "[worker]\nisolation = \"{isolation}\"\n\
         [[vm]]\nname = \"hostile\"\nvtest_socket = {hostile:?}\n\
         max_blobs = {MAX_BLOBS}\nmax_sync_waits = {MAX_WAITS}\n\
         [[vm]]\nname = \"bystander\"\nvtest_socket = {bystander:?}\n"
    );
    let served = serve(tag, &config, &[hostile.clone(), bystander.clone()]);
    let pid = served.daemon.pid();
    let native = native_results();
    let baseline_fds = open_fds(pid);

    // Blobs: two connections of the VM split its budget; the one past it is dropped.
    let mut first = ready_client(&hostile, "blobs-1");
    let mut held = Vec::new();
    for _ in 0..MAX_BLOBS / 2 {
        held.push(
            first
                .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
                .expect("blob within the VM's limit"),
        );
    }
    let mut second = ready_client(&hostile, "blobs-2");
    for _ in 0..MAX_BLOBS / 2 {
        held.push(
            second
                .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
                .expect("blob within the VM's limit"),
        );
    }
    assert!(
        second
            .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
            .is_err(),
        "a blob past max_blobs was granted"
    );
    assert!(second.wait_closed(Duration::from_secs(5)).expect("read"));
    // The bystander VM is untouched while the hostile one holds its blobs.
    assert_compute_matches(&bystander, &native, &|| served.daemon.log());

    // Pending sync waits: the same, over two more connections.
    let mut w1 = ready_client(&hostile, "waits-1");
    let s1 = w1.sync_create(0).expect("sync");
    let mut waits = Vec::new();
    for _ in 0..MAX_WAITS / 2 {
        waits.push(
            w1.sync_wait(false, 0, &[(s1, 1)])
                .expect("wait within the limit"),
        );
    }
    let mut w2 = ready_client(&hostile, "waits-2");
    let s2: SyncId = w2.sync_create(0).expect("sync");
    for _ in 0..MAX_WAITS / 2 {
        waits.push(
            w2.sync_wait(false, 0, &[(s2, 1)])
                .expect("wait within the limit"),
        );
    }
    assert!(
        w2.sync_wait(false, 0, &[(s2, 1)]).is_err(),
        "a wait past max_sync_waits was granted"
    );
    assert!(w2.wait_closed(Duration::from_secs(5)).expect("read"));
    // A wait that is already satisfied holds nothing and is still answered.
    w1.sync_write(s1, 1).expect("signal");
    let ready = w1.sync_wait(false, 0, &[(s1, 1)]).expect("satisfied wait");
    drop(ready);

    let hostile_fds = open_fds(pid);
    assert!(
        hostile_fds <= baseline_fds + 2 * (MAX_BLOBS + MAX_WAITS) as usize + 64,
        "daemon fds grew from {baseline_fds} to {hostile_fds}"
    );
    assert_compute_matches(&bystander, &native, &|| served.daemon.log());

    // The hostile VM's own Mesa client, with most of the VM's blobs still held: its
    // allocations stop at the limit with VK_ERROR_OUT_OF_HOST_MEMORY, and it exits
    // normally.
    let app = run_with_timeout(quota_app(&hostile, 1, false), TIMEOUT).expect("quota-app");
    let out = String::from_utf8_lossy(&app.stdout);
    assert!(
        app.status.success(),
        "{}\n{}",
        text(&app),
        served.daemon.log()
    );
    assert_eq!(
        field(&out, "failed"),
        Some("ERROR_OUT_OF_HOST_MEMORY"),
        "{out}"
    );
    assert_ne!(field(&out, "allocated"), Some("0"), "{out}");

    let log = served.daemon.log();
    assert!(
        log.contains(&format!(
            "VM hostile: max_blobs limit of {MAX_BLOBS} reached"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "VM hostile: max_sync_waits limit of {MAX_WAITS} reached"
        )),
        "{log}"
    );
    assert!(!log.contains("VM bystander: max_"), "{log}");
    drop((first, w1, held, waits));
}
