//! The `vhost-user-vgpu` binary on SIGTERM/SIGINT (issue 11, row 8) and its vtest
//! limit flags: both subcommands stop, remove their socket and exit 0; a vtest client
//! sees FATAL on its ring and a closed connection.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vgpu_device::ids::{BlobId, CapsetId, RingId};
use vgpu_device::renderer::STATUS_FATAL;
use vgpu_device::sys::SharedMemory;
use vgpu_device::vtest::client::{venus, Batch, VtestClient};
use vgpu_device::vtest::probe::mesa_instance_ring;
use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;

const LVP_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.json";

/// A `vhost-user-vgpu` child process, killed on drop; its socket and log live in a
/// fresh directory removed on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    fn spawn(tag: &str, args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("vgpu-shutdown-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("daemon.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_vhost-user-vgpu"))
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .env("VK_DRIVER_FILES", LVP_ICD)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).expect("log"))
            .spawn()
            .expect("vhost-user-vgpu");
        // Ready: listening, and the stop signals handled. Not probed with a connection:
        // a vtest server would serve it (a worker and all), and a stop signal sent
        // before the handler is installed would find the default action.
        let daemon = Self { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !daemon.log().contains("daemon: ready") {
            assert!(
                Instant::now() < deadline,
                "the daemon did not get ready:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -s {name}");
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn assert_clean_exit(&mut self) {
        let status = self.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "exit status {status:?}\n{}",
            self.log()
        );
        assert!(!self.socket.exists(), "the socket is still there");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the peer closed `stream` within `timeout`.
fn closed_within(mut stream: &UnixStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A handshaken vtest client with one idle ring; returns the ring's mapping.
fn client_with_ring(socket: &Path) -> (VtestClient, SharedMemory) {
    let mut c = VtestClient::connect(socket).expect("connect");
    c.handshake("ring-client").expect("handshake");
    c.context_init(CapsetId::VENUS).expect("context init");
    let (res, fd) = c
        .create_blob(BLOB_FLAG_MAPPABLE, 131_268, BlobId::SHMEM)
        .expect("blob");
    let ring = SharedMemory::map(&fd, 131_268).expect("map");
    c.submit_cmd2(&[Batch {
        cmds: &venus::create_ring(RingId(1), &mesa_instance_ring(res)),
        ..Batch::default()
    }])
    .expect("create ring");
    // A round trip after the ring: the context stream has run vkCreateRingMESA.
    c.get_capset(CapsetId::VENUS, 0).expect("round trip");
    (c, ring)
}

#[test]
fn vtest_sigterm_fails_the_ring_removes_the_socket_and_exits_zero() {
    let mut daemon = Daemon::spawn("vtest-term", &["vtest"]);
    let (mut client, ring) = client_with_ring(&daemon.socket);
    daemon.signal("TERM");
    daemon.assert_clean_exit();
    let status = ring.load_u32(128, Ordering::SeqCst).expect("status");
    assert_ne!(status & STATUS_FATAL, 0, "status {status:#x}");
    assert!(client.wait_closed(Duration::from_secs(2)).expect("read"));
    let log = daemon.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    // The context runs in a worker process (the default isolation): the daemon
    // sets FATAL through the status word the worker passed it.
    assert!(
        log.contains("rings of 1 worker contexts set FATAL"),
        "{log}"
    );
}

#[test]
fn vtest_sigint_with_no_clients_exits_zero() {
    let mut daemon = Daemon::spawn("vtest-int", &["vtest"]);
    daemon.signal("INT");
    daemon.assert_clean_exit();
}

#[test]
fn serve_sigterm_removes_the_socket_and_exits_zero() {
    let mut daemon = Daemon::spawn("serve-term", &["serve"]);
    // A frontend connected (the daemon sits in its vhost-user message loop).
    let frontend = UnixStream::connect(&daemon.socket).expect("connect");
    std::thread::sleep(Duration::from_millis(200));
    daemon.signal("TERM");
    daemon.assert_clean_exit();
    assert!(closed_within(&frontend, Duration::from_secs(2)));
}

#[test]
fn vtest_limit_flags_reach_the_server() {
    let daemon = Daemon::spawn(
        "vtest-flags",
        &[
            "vtest",
            "--handshake-timeout-ms",
            "300",
            "--max-clients-per-pid",
            "1",
        ],
    );
    // Let the start-up probe connection's thread end: it counts against this pid.
    std::thread::sleep(Duration::from_millis(300));
    let silent = UnixStream::connect(&daemon.socket).expect("connect");
    std::thread::sleep(Duration::from_millis(100));
    let second = UnixStream::connect(&daemon.socket).expect("connect");
    assert!(
        closed_within(&second, Duration::from_secs(1)),
        "a second connection from this process was kept"
    );
    let started = Instant::now();
    assert!(closed_within(&silent, Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(2), "dropped late");
    let log = daemon.log();
    assert!(log.contains("pid"), "{log}");
    assert!(log.contains("no CONTEXT_INIT within 300ms"), "{log}");
}
