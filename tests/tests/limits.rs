//! End-to-end: no vtest client can starve the daemon or the other clients (issue 11,
//! rows 1, 2, 6, 7, 8). Each attack runs against `venus-daemon` (the vtest server as
//! `vhost-user-vgpu vtest` runs it) with short limits from a config file, and a
//! bystander — `compute-app` through Mesa's Venus driver — must still get results
//! equal to native lavapipe.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vgpu_device::ids::{BlobId, CapsetId, RingId};
use vgpu_device::renderer::{STATUS_FATAL, STATUS_IDLE};
use vgpu_device::sys::SharedMemory;
use vgpu_device::vtest::client::{venus, Batch, VtestClient};
use vgpu_device::vtest::probe::mesa_instance_ring;
use vgpu_device::vtest::protocol::{cmd, BLOB_FLAG_MAPPABLE};
use vgpu_tests::bridge::launch::VhostChain;
use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, socket_path, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const SERVE: &str = env!("CARGO_BIN_EXE_vhost-serve-daemon");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const TIMEOUT: Duration = Duration::from_secs(240);
/// What the bystander runs.
const CASES: &[&str] = &["saxpy", "prefix_sum"];

/// Starts `venus-daemon` with `limits` (TOML config-file text).
fn daemon(tag: &str, limits: &str) -> (Daemon, TempFile) {
    let config = TempFile(socket_path(tag).with_extension("toml"));
    std::fs::write(&config.0, limits).expect("write config");
    let mut cmd = Command::new(DAEMON);
    cmd.arg("--config").arg(&config.0);
    (Daemon::start_command(cmd, tag).expect("daemon"), config)
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_app(mode: Mode<'_>, cases: &[&str]) -> Output {
    let mut cmd = client(APP, mode);
    cmd.args(cases);
    run_with_timeout(cmd, TIMEOUT).expect("run compute-app")
}

/// The bystander: `compute-app` through Venus gives the native results.
fn assert_bystander_works(daemon: &Daemon) {
    let native = run_app(Mode::Native, CASES);
    assert!(native.status.success(), "native: {}", text(&native));
    let venus = run_app(Mode::Venus(daemon.socket()), CASES);
    assert!(
        venus.status.success(),
        "bystander failed: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&venus), case_lines(&native), "results differ");
    assert_eq!(case_lines(&venus).len(), CASES.len());
}

/// Whether the server closed `stream` within `timeout` (reads and discards until EOF).
fn closed_within(mut stream: &UnixStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Connects, retrying while the daemon has bound its socket but not yet listens.
fn connect(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
}

fn ready_client(path: &Path, name: &str) -> VtestClient {
    // Retries while the daemon has bound its socket but not yet listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match VtestClient::connect(path) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    c.handshake(name).expect("handshake");
    c.context_init(CapsetId::VENUS).expect("context init");
    c
}

/// Names of the daemon's threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn connection_threads(pid: u32) -> usize {
    thread_names(pid)
        .iter()
        .filter(|n| n.starts_with("vtest-c"))
        .count()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Row 1: connections that never speak take no more than their process's share of
/// the slots, do not lock a new client out, and are dropped after the handshake
/// timeout.
#[test]
fn silent_connections_are_limited_and_dropped() {
    let (daemon, _config) = daemon(
        "silent",
        // On daemon threads: the test counts the daemon's connection threads.
        "[vtest]\nmax_clients = 8\nmax_clients_per_pid = 4\nhandshake_timeout_ms = 3000\n\
         [worker]\nisolation = \"thread\"\n",
    );
    // Twice the total limit, all from this process, none saying a word.
    let silent: Vec<UnixStream> = (0..16).map(|_| connect(daemon.socket())).collect();
    wait_for("the daemon to sort them", Duration::from_secs(5), || {
        connection_threads(daemon.pid()) == 4
    });
    // Beyond the per-process limit: closed at once.
    let refused = silent
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(200)))
        .count();
    assert_eq!(refused, 12, "only 4 silent connections may be kept");
    // A new client (another process) still gets in and works.
    assert_bystander_works(&daemon);
    // The 4 kept ones are dropped once the handshake timeout passes.
    let dropped = silent
        .iter()
        .filter(|s| closed_within(s, Duration::from_secs(10)))
        .count();
    assert_eq!(dropped, 16, "silent connections outlived the timeout");
    wait_for("connection threads to end", Duration::from_secs(5), || {
        connection_threads(daemon.pid()) == 0
    });
    let log = daemon.log();
    assert!(log.contains("no CONTEXT_INIT within"), "{log}");
    assert!(log.contains("connections"), "no refusal line: {log}");
}

/// Row 1: a client that starts a message and stops mid-way is dropped after the
/// message timeout, both during the handshake and after it; a handshaken client
/// that idles between messages is kept.
#[test]
fn stalled_mid_message_clients_are_dropped() {
    let (daemon, _config) = daemon(
        "stalled",
        "[vtest]\nhandshake_timeout_ms = 60000\nmessage_timeout_ms = 800\n",
    );
    // After the handshake: a SUBMIT_CMD2 header promising 100 dwords, then 10.
    let mut after = ready_client(daemon.socket(), "stall-after-handshake");
    let mut msg = Vec::new();
    for w in [100u32, cmd::SUBMIT_CMD2] {
        msg.extend_from_slice(&w.to_le_bytes());
    }
    msg.extend_from_slice(&[0u8; 40]);
    after.send_raw(&msg).expect("send");
    // During the handshake: half a CREATE_RENDERER header.
    let during = connect(daemon.socket());
    (&during).write_all(&[16, 0, 0, 0]).expect("send");
    // An idle, handshaken client.
    let mut idle = ready_client(daemon.socket(), "idle");

    let started = Instant::now();
    assert!(
        closed_within(after.stream(), Duration::from_secs(10)),
        "the stalled client was kept"
    );
    assert!(closed_within(&during, Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_bystander_works(&daemon);
    // Idle for longer than the message timeout, and still served.
    let (valid, _) = idle.get_capset(CapsetId::VENUS, 0).expect("idle client");
    assert!(valid);
    let log = daemon.log();
    assert!(
        log.matches("a message was not completed within").count() >= 2,
        "{log}"
    );
}

/// Row 7: a client that never reads its replies is disconnected after the reply
/// timeout with one line naming it, and its daemon thread ends.
#[test]
fn client_that_never_reads_is_disconnected() {
    // On a daemon thread (`isolation = "thread"`): the test watches the daemon's own
    // connection thread; in a worker process the same timeout ends the worker.
    let (daemon, _config) = daemon(
        "noread",
        "[vtest]\nreply_timeout_ms = 1500\n[worker]\nisolation = \"thread\"\n",
    );
    let before = connection_threads(daemon.pid());
    let mut c = ready_client(daemon.socket(), "never-reads");
    // GET_CAPSET requests until the socket buffers are full both ways; none of the
    // ~170-byte replies is read.
    let mut request = Vec::new();
    for _ in 0..256 {
        for w in [2u32, cmd::GET_CAPSET, CapsetId::VENUS.0, 0] {
            request.extend_from_slice(&w.to_le_bytes());
        }
    }
    let stream = c.stream().try_clone().expect("clone");
    stream.set_nonblocking(true).expect("nonblocking");
    // Until the daemon stops taking requests for 300 ms: its thread is then blocked
    // writing a reply nobody reads.
    let (mut sent, mut pending) = (0usize, &request[..]);
    let mut blocked_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while blocked_since.is_none_or(|t| t.elapsed() < Duration::from_millis(300)) {
        assert!(Instant::now() < deadline, "the daemon kept reading");
        match (&stream).write(pending) {
            Ok(n) => {
                sent += n;
                pending = &pending[n..];
                if pending.is_empty() {
                    pending = &request[..];
                }
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(sent > 4096, "only {sent} bytes of requests went out");
    assert_eq!(connection_threads(daemon.pid()), before + 1);
    // The daemon's thread is blocked in a write; the timeout frees it.
    wait_for(
        "the connection thread to end",
        Duration::from_secs(10),
        || connection_threads(daemon.pid()) == before,
    );
    stream.set_nonblocking(false).expect("blocking");
    assert!(closed_within(&stream, Duration::from_secs(10)));
    assert!(c.wait_closed(Duration::from_secs(1)).expect("read"));
    assert_bystander_works(&daemon);
    let log = daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("replies not read"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("never-reads"), "{log}");
}

/// Clock ticks of CPU time (user + system) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name: state is the first, utime the
    // 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}

/// The daemon's CPU use over `window`, in cores.
fn cpu_cores(pid: u32, window: Duration) -> f64 {
    let t0 = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(window);
    let ticks = cpu_ticks(pid) - t0;
    #[allow(clippy::cast_precision_loss)] // tick counts are small
    let seconds = ticks as f64 / clock_ticks_per_second();
    seconds / start.elapsed().as_secs_f64()
}

/// A client holding `n` rings that ask for an idle timeout of 2^64-1 ns.
struct RingClient {
    client: VtestClient,
    rings: Vec<SharedMemory>,
}

fn ring_client(socket: &Path, n: usize) -> RingClient {
    let mut client = ready_client(socket, "idle-rings");
    let mut rings = Vec::new();
    for i in 0..n {
        let (res, fd) = client
            .create_blob(BLOB_FLAG_MAPPABLE, 131_268, BlobId::SHMEM)
            .expect("ring blob");
        rings.push(SharedMemory::map(&fd, 131_268).expect("map"));
        let mut info = mesa_instance_ring(res);
        info.idle_timeout_ns = u64::MAX;
        info.monitor_period_us = None;
        let id = RingId(0x1000 + u64::try_from(i).expect("small"));
        client
            .submit_cmd2(&[Batch {
                cmds: &venus::create_ring(id, &info),
                ..Batch::default()
            }])
            .expect("create ring");
    }
    RingClient { client, rings }
}

fn status(ring: &SharedMemory) -> u32 {
    ring.load_u32(128, Ordering::SeqCst).expect("status")
}

/// Row 6: 16 rings created with an idle timeout of 2^64-1 ns (4 clients × 4) go idle
/// and the daemon stays under 10 % of a core; with the cap raised to an hour (the old
/// behaviour) the same rings never go idle and keep polling.
#[test]
fn huge_ring_idle_timeouts_are_clamped() {
    const CLIENTS: usize = 4;
    const RINGS_PER_CLIENT: usize = 4;
    // On daemon threads (`[worker] isolation = "thread"`): the test counts the daemon's ring
    // threads and its CPU time.
    let measure = |tag: &str, limits: &str, expect_idle: bool| {
        let (daemon, _config) = daemon(tag, limits);
        let clients: Vec<RingClient> = (0..CLIENTS)
            .map(|_| ring_client(daemon.socket(), RINGS_PER_CLIENT))
            .collect();
        wait_for("every ring thread", Duration::from_secs(10), || {
            thread_names(daemon.pid())
                .iter()
                .filter(|n| n.starts_with("vgpu-r"))
                .count()
                == CLIENTS * RINGS_PER_CLIENT
        });
        if expect_idle {
            wait_for("every ring to go idle", Duration::from_secs(10), || {
                clients
                    .iter()
                    .flat_map(|c| &c.rings)
                    .all(|r| status(r) & STATUS_IDLE != 0)
            });
        }
        let cores = cpu_cores(daemon.pid(), Duration::from_secs(3));
        (daemon, clients, cores)
    };
    let (_, unclamped_clients, unclamped) = measure(
        "rings-unclamped",
        "[defaults]\nmax_ring_idle_timeout_us = 3600000000\n[worker]\nisolation = \"thread\"\n",
        false,
    );
    assert!(unclamped_clients
        .iter()
        .flat_map(|c| &c.rings)
        .all(|r| status(r) & STATUS_IDLE == 0));
    drop(unclamped_clients);
    let (daemon, clients, clamped) =
        measure("rings-clamped", "[worker]\nisolation = \"thread\"\n", true);
    eprintln!(
        "daemon CPU with {} rings asking for a 2^64-1 ns idle timeout: {:.1} % of a core \
         unclamped, {:.1} % clamped to 10 ms",
        CLIENTS * RINGS_PER_CLIENT,
        unclamped * 100.0,
        clamped * 100.0
    );
    // Unclamped, each ring wakes every 1 ms (9-12 % of a core for 16 rings in a debug
    // build, and the rings never go idle, which the wait above catches); clamped, every
    // 20 ms once idle (1-2 %).
    assert!(clamped < 0.10, "{:.1} % of a core", clamped * 100.0);
    assert_bystander_works(&daemon);
    drop(clients);
}

/// Row 6: rings beyond the per-context cap fail only that context.
#[test]
fn rings_per_context_are_capped() {
    let (daemon, _config) = daemon("ring-cap", "[defaults]\nmax_rings = 4\n");
    let mut c = ring_client(daemon.socket(), 5);
    assert!(
        c.client.wait_closed(Duration::from_secs(10)).expect("read"),
        "a fifth ring was accepted"
    );
    wait_for("FATAL on the first rings", Duration::from_secs(5), || {
        c.rings[..4].iter().all(|r| status(r) & STATUS_FATAL != 0)
    });
    c.rings.clear();
    assert_bystander_works(&daemon);
    assert!(daemon.log().contains("rings"), "{}", daemon.log());
}

/// Row 8: SIGTERM removes the socket, fails every context (FATAL on its rings, the
/// connection closed), the running Venus client fails instead of hanging, and the
/// daemon exits 0.
#[test]
fn sigterm_fails_clients_removes_the_socket_and_exits_zero() {
    let (mut daemon, _config) = daemon("sigterm", "");
    let socket = daemon.socket().to_path_buf();
    // A raw client with a ring, idle.
    let mut raw = ring_client(&socket, 1);
    // A Venus client in the middle of a long run.
    let mut app = running_app(Mode::Venus(&socket));

    daemon.signal("TERM").expect("kill");
    let signalled = Instant::now();
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("wait")
        .expect("the daemon did not exit within 10 s");
    assert!(exit.success(), "{exit:?}\n{}", daemon.log());
    assert!(!socket.exists(), "the socket is still there");
    // The raw client sees FATAL on its ring and a closed connection.
    assert_ne!(status(&raw.rings[0]) & STATUS_FATAL, 0, "no FATAL");
    assert!(raw
        .client
        .wait_closed(Duration::from_secs(2))
        .expect("read"));
    assert_fails_soon(&mut app, signalled);
    let log = daemon.log();
    assert!(log.contains("SIGTERM received"), "{log}");
}

/// `compute-app` through `mode` running 2000 cases, returned once the first is done.
fn running_app(mode: Mode<'_>) -> Child {
    let cases = vec!["saxpy"; 2000];
    let mut app = client(APP, mode)
        .args(&cases)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn compute-app");
    let stdout = app.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("saxpy ") && tx.send(()).is_err() {
                break;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("compute-app never got going");
    app
}

/// The Venus client fails within a few seconds instead of hanging or finishing, and
/// Mesa says why: the ring turned FATAL, or the connection was lost (not, say, an
/// allocation failure of its own).
fn assert_fails_soon(app: &mut Child, signalled: Instant) {
    // Mesa checks the ring status after each ring submission, but a thread already
    // waiting (`vn_relax`) looks only at its first warning, about 3.5 s in; a loaded
    // machine adds to that.
    let deadline = signalled + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = app.try_wait().expect("try_wait") {
            eprintln!(
                "the Venus client failed {:?} after SIGTERM",
                signalled.elapsed()
            );
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = app.kill();
            let _ = app.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("the Venus client hung after SIGTERM");
    assert!(!status.success(), "the Venus client finished every case");
    let mut stderr = String::new();
    if let Some(mut pipe) = app.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    // SIGPIPE: its next vtest write after the daemon closed the connection.
    assert!(
        stderr.contains("fatal")
            || stderr.contains("lost connection")
            || status.signal() == Some(13),
        "the Venus client failed for another reason ({status:?}):\n{stderr}"
    );
}

/// Row 8, `serve`: SIGTERM to the vhost-user daemon with a guest ring in use (through
/// the vtest ⇄ vhost-user bridge, which plays VMM and guest kernel) sets FATAL on
/// that ring, removes the socket and exits 0.
///
/// The client is a raw vtest client, not Mesa: a Mesa thread waiting for the bridge's
/// answer to a request the dead daemon never gives gets an end-of-file from the
/// bridge and spins on it forever (Mesa 25.0.7 `vtest_read`), which is the bridge's
/// artefact, not the daemon's; in a VM that request waits in the guest kernel.
#[test]
fn serve_sigterm_sets_fatal_on_guest_rings_and_exits_zero() {
    let mut chain = VhostChain::start(SERVE, &[], BRIDGE, "serve-term").expect("chain");
    let mut raw = ring_client(chain.vtest_socket(), 1);
    // A round trip through the bridge: the ring exists on the device.
    raw.client
        .get_capset(CapsetId::VENUS, 0)
        .expect("round trip");
    assert_eq!(status(&raw.rings[0]) & STATUS_FATAL, 0);
    let ok = Command::new("kill")
        .args(["-s", "TERM", &chain.daemon_pid().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let exit = chain
        .wait_daemon_exit(Duration::from_secs(10))
        .expect("wait")
        .expect("the daemon did not exit within 10 s");
    assert!(exit.success(), "{exit:?}\n{}", chain.logs());
    assert!(!chain.vhost_socket().exists(), "the socket is still there");
    assert_ne!(
        status(&raw.rings[0]) & STATUS_FATAL,
        0,
        "no FATAL on the guest's ring\n{}",
        chain.logs()
    );
    let logs = chain.logs();
    assert!(logs.contains("rings of 1 contexts set FATAL"), "{logs}");
}

/// Row 1: a Venus client refused because the daemon is full fails at once (Mesa sees
/// a reset connection and aborts) instead of spinning on end-of-file.
#[test]
fn a_refused_venus_client_fails_instead_of_hanging() {
    let (daemon, _config) = daemon(
        "refused",
        "[vtest]\nmax_clients = 2\nhandshake_timeout_ms = 60000\n",
    );
    let _holders: Vec<VtestClient> = (0..2)
        .map(|i| ready_client(daemon.socket(), &format!("holder-{i}")))
        .collect();
    let started = Instant::now();
    let refused = run_with_timeout(
        {
            let mut cmd = client(APP, Mode::Venus(daemon.socket()));
            cmd.args(CASES);
            cmd
        },
        Duration::from_secs(20),
    )
    .expect("run compute-app");
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refused client hung for {:?}: {}",
        started.elapsed(),
        text(&refused)
    );
    assert!(
        daemon.log().contains("2 clients connected"),
        "{}",
        daemon.log()
    );
}

/// The per-VM fd limits the daemon derived from its `RLIMIT_NOFILE`, from its log.
fn derived_fd_limits(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .find(|l| l.contains("default per-VM max_blobs"))
        .unwrap_or_else(|| panic!("no fd-limit line in the log:\n{log}"));
    let number_after = |key: &str| -> usize {
        line.split(key)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    (number_after("max_blobs"), number_after("max_sync_waits"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Row 2: a client that tries to hold ~20,000 small blobs, then one that tries ~20,000
/// pending SYNC_WAITs, stop at the limits the daemon derived from its fd limit (each
/// vtest connection is a VM), are dropped, and leave the daemon's fds bounded; a
/// bystander's `vulkaninfo` and compute still work meanwhile.
#[test]
fn blob_and_sync_wait_floods_stop_at_the_derived_fd_limits() {
    const FLOOD: usize = 20_000;
    let (daemon, _config) = daemon("row2", "");
    let (max_blobs, max_waits) = derived_fd_limits(&daemon.log());
    let nofile = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
        })
        .expect("the daemon's open-file limit");
    assert!(
        max_blobs < FLOOD && max_waits < FLOOD,
        "{max_blobs} {max_waits}"
    );

    let mut blobs = ready_client(daemon.socket(), "blob-flood");
    let mut held = Vec::new();
    while held.len() < FLOOD {
        match blobs.create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM) {
            Ok(b) => held.push(b),
            Err(_) => break,
        }
    }
    assert_eq!(held.len(), max_blobs, "blobs granted before the refusal");
    assert!(blobs.wait_closed(Duration::from_secs(5)).expect("read"));

    let mut waits = ready_client(daemon.socket(), "wait-flood");
    let sync = waits.sync_create(0).expect("sync");
    let mut pending = Vec::new();
    while pending.len() < FLOOD {
        match waits.sync_wait(false, 0, &[(sync, 1)]) {
            Ok(fd) => pending.push(fd),
            Err(_) => break,
        }
    }
    assert_eq!(pending.len(), max_waits, "waits pending before the refusal");
    assert!(waits.wait_closed(Duration::from_secs(5)).expect("read"));

    // The hostile clients' fds are still open on this side; the daemon's are bounded
    // far below its limit, and other clients start Vulkan and compute.
    let fds = open_fds(daemon.pid());
    assert!(fds < nofile / 2, "daemon holds {fds} fds of {nofile}");
    let info = {
        let mut cmd = client("vulkaninfo", Mode::Venus(daemon.socket()));
        cmd.arg("--summary");
        run_with_timeout(cmd, TIMEOUT).expect("vulkaninfo")
    };
    assert!(info.status.success(), "vulkaninfo: {}", text(&info));
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("Virtio-GPU Venus"),
        "{}",
        text(&info)
    );
    assert_bystander_works(&daemon);
    let log = daemon.log();
    assert!(
        log.contains(&format!("max_blobs limit of {max_blobs} reached")),
        "{log}"
    );
    assert!(
        log.contains(&format!("max_sync_waits limit of {max_waits} reached")),
        "{log}"
    );
    drop((held, pending));
}
