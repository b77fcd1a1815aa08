//! End-to-end (issue 10): no client can kill the daemon with SIGBUS by resizing a memfd
//! the daemon shared with it, and the daemon refuses memory fds that could be resized
//! under its mappings.
//!
//! - A raw vtest client truncates its ring and reply stream while the daemon serves
//!   that ring; the real Venus driver's application (`memfd-attacker`) truncates every
//!   daemon memfd it has mapped (rings, reply streams, host-visible device memory).
//!   Every attempt must fail with EPERM, the attacker keeps working, a bystander's
//!   compute gives the same results as native, and the daemon is still alive after.
//! - An executor that exports an unsealed or short memfd as a blob is refused: the
//!   client is dropped, other clients keep working.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::ids::{BlobId, CapsetId, ContextId, ResourceId, RingId};
use vgpu_device::renderer::transport::{command_type, TransportOnlyExecutor};
use vgpu_device::renderer::{
    Context, ContextConfig, ContextError, ExecError, ExportedBlob, ResourceError, StreamCtx,
    StreamExecutor, STATUS_FATAL,
};
use vgpu_device::sys::{FdError, SharedMemory};
use vgpu_device::vtest::client::{venus, Batch, VtestClient};
use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;
use vgpu_device::vtest::{probe, ServerHandle, VtestConfig, VtestServer};
use vgpu_tests::harness::{
    client, output_text as text, run_with_timeout, socket_path, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const ATTACKER: &str = env!("CARGO_BIN_EXE_memfd-attacker");
const TIMEOUT: Duration = Duration::from_secs(240);
/// What the bystander computes while the attack runs.
const BYSTANDER_CASES: &[&str] = &["matmul", "prefix_sum", "host_writes", "fences"];
/// Mesa's instance ring blob and a reply stream, as the probe uses them.
const RING_SIZE: u64 = 131_268;
const REPLY_SIZE: u64 = 1 << 20;

fn run(program: &str, mode: Mode<'_>, cases: &[&str]) -> Output {
    let mut cmd = client(program, mode);
    cmd.args(cases);
    run_with_timeout(cmd, TIMEOUT).expect("run client")
}

/// `<case> <digest> <bytes>` lines: everything but `device`, `api` and `memfd` lines.
fn case_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("device ") && !l.starts_with("api ") && !l.starts_with("memfd "))
        .map(str::to_owned)
        .collect()
}

/// `compute-app` natively, checked to succeed.
fn native_bystander() -> Output {
    let native = run(APP, Mode::Native, BYSTANDER_CASES);
    assert!(native.status.success(), "native: {}", text(&native));
    assert_eq!(case_lines(&native).len(), BYSTANDER_CASES.len());
    native
}

/// `compute-app` through Venus on a thread.
fn spawn_bystander(sock: &Path) -> JoinHandle<Output> {
    let sock = sock.to_path_buf();
    std::thread::spawn(move || run(APP, Mode::Venus(&sock), BYSTANDER_CASES))
}

/// The bystander finished with the native results; the daemon still runs and serves a
/// new client.
fn assert_unharmed(daemon: &mut Daemon, bystander: JoinHandle<Output>, native: &Output) {
    let venus = bystander.join().expect("join bystander");
    assert!(
        venus.status.success(),
        "bystander failed: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&venus), case_lines(native), "bystander results");
    assert_eq!(daemon.exit_status(), None, "daemon died:\n{}", daemon.log());
    let report = probe::probe(daemon.socket()).expect("a new client is served");
    assert!(!report.lines.is_empty());
}

fn ready_client(path: &Path) -> VtestClient {
    let mut c = VtestClient::connect(path).expect("connect");
    c.handshake("memfd-attacker").expect("handshake");
    c.context_init(CapsetId::VENUS).expect("context init");
    c
}

/// Shrinking, growing and re-sealing `fd` all fail with EPERM; its size stays `size`.
fn assert_cannot_resize(fd: &OwnedFd, size: u64, what: &str) {
    assert_eq!(
        rustix::fs::ftruncate(fd, 0),
        Err(Errno::PERM),
        "{what}: shrink"
    );
    assert_eq!(
        rustix::fs::ftruncate(fd, size * 2),
        Err(Errno::PERM),
        "{what}: grow"
    );
    assert_eq!(
        rustix::fs::fcntl_add_seals(fd, SealFlags::FUTURE_WRITE),
        Err(Errno::PERM),
        "{what}: add a seal"
    );
    let now = rustix::fs::fstat(fd).expect("fstat").st_size;
    assert_eq!(u64::try_from(now).ok(), Some(size), "{what}: size");
}

/// Publishes set-reply-stream + seek-with-reply on the ring at `at` (the current tail)
/// and waits until the daemon has consumed it and written the reply: it read the ring
/// and wrote the reply stream. Returns the new tail.
fn ring_round_trip(
    daemon: &Daemon,
    ring: &SharedMemory,
    reply: &SharedMemory,
    reply_res: ResourceId,
    at: u32,
) -> u32 {
    let mut cmds = venus::set_reply_stream(reply_res, 0, 64);
    cmds.extend(venus::seek_reply_stream(0, true));
    let len = u32::try_from(cmds.len()).expect("len");
    ring.write(192 + u64::from(at), &cmds).expect("write ring");
    let tail = at + len;
    ring.store_u32(64, tail, Ordering::Release).expect("tail");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ring.load_u32(128, Ordering::SeqCst).expect("status");
        assert_eq!(
            status & STATUS_FATAL,
            0,
            "the daemon set FATAL:\n{}",
            daemon.log()
        );
        if ring.load_u32(0, Ordering::Acquire).expect("head") == tail {
            break;
        }
        assert!(Instant::now() < deadline, "head did not reach tail {tail}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut word = [0u8; 4];
    reply.read(0, &mut word).expect("read reply");
    assert_eq!(
        u32::from_le_bytes(word),
        command_type::SEEK_REPLY_COMMAND_STREAM
    );
    reply.write(0, &[0; 4]).expect("clear reply");
    tail
}

#[test]
fn raw_vtest_client_cannot_resize_its_ring_or_reply_stream() {
    let mut daemon = Daemon::start(DAEMON, "memfd-raw").expect("daemon");
    let sock = daemon.socket().to_path_buf();
    let native = native_bystander();
    let bystander = spawn_bystander(&sock);

    let mut c = ready_client(&sock);
    let (ring_res, ring_fd) = c
        .create_blob(BLOB_FLAG_MAPPABLE, RING_SIZE, BlobId::SHMEM)
        .expect("ring blob");
    let ring = SharedMemory::map(&ring_fd, RING_SIZE).expect("map ring");
    let (reply_res, reply_fd) = c
        .create_blob(BLOB_FLAG_MAPPABLE, REPLY_SIZE, BlobId::SHMEM)
        .expect("reply blob");
    let reply = SharedMemory::map(&reply_fd, REPLY_SIZE).expect("map reply");
    let ring_id = RingId(0x6d65_6d66_6400);
    let create = venus::create_ring(ring_id, &probe::mesa_instance_ring(ring_res));
    c.submit_cmd2(&[Batch {
        cmds: &create,
        ..Batch::default()
    }])
    .expect("create ring");
    let tail = ring_round_trip(&daemon, &ring, &reply, reply_res, 0);

    // The attack, while the daemon's ring thread watches the ring.
    assert_cannot_resize(&ring_fd, RING_SIZE, "ring");
    assert_cannot_resize(&reply_fd, REPLY_SIZE, "reply stream");

    // The daemon touches both again; the attacker's context keeps working.
    ring_round_trip(&daemon, &ring, &reply, reply_res, tail);
    c.submit_cmd2(&[Batch {
        cmds: &venus::destroy_ring(ring_id),
        ..Batch::default()
    }])
    .expect("destroy ring");
    let (extra_res, extra_fd) = c
        .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
        .expect("another blob after the attack");
    assert_cannot_resize(&extra_fd, 4096, "later blob");
    for res in [extra_res, reply_res, ring_res] {
        c.resource_unref(res).expect("unref");
    }
    assert!(
        !c.wait_closed(Duration::from_millis(200)).expect("poll"),
        "the daemon dropped the attacker:\n{}",
        daemon.log()
    );
    drop(c);

    assert_unharmed(&mut daemon, bystander, &native);
}

#[test]
fn venus_client_cannot_resize_device_memory_rings_or_reply_streams() {
    let mut daemon = Daemon::start(DAEMON, "memfd-venus").expect("daemon");
    let sock = daemon.socket().to_path_buf();
    let native = native_bystander();
    let native_attacker = run(ATTACKER, Mode::Native, &[]);
    assert!(
        native_attacker.status.success(),
        "{}",
        text(&native_attacker)
    );
    let bystander = spawn_bystander(&sock);

    let attacker = run(ATTACKER, Mode::Venus(&sock), &[]);
    assert!(
        attacker.status.success(),
        "attacker: {}\ndaemon log:\n{}",
        text(&attacker),
        daemon.log()
    );
    let stdout = String::from_utf8_lossy(&attacker.stdout).into_owned();
    let memfds: Vec<&str> = stdout.lines().filter(|l| l.starts_with("memfd ")).collect();
    assert!(
        memfds.iter().all(|l| !l.contains(" unreachable ")),
        "reopening /proc/self/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE:\n{stdout}"
    );
    for name in ["vgpu-shmem", "vgpu-device-memory"] {
        assert!(
            memfds
                .iter()
                .any(|l| l.starts_with(&format!("memfd {name} "))),
            "no {name} memfd mapped by the Venus client:\n{stdout}"
        );
    }
    for line in &memfds {
        assert!(
            line.ends_with(" shrink EPERM grow EPERM seal EPERM") && !line.contains(" size 0 "),
            "a daemon memfd could be changed: {line}"
        );
    }
    assert_eq!(
        case_lines(&attacker),
        case_lines(&native_attacker),
        "the attacker's own results after the attack"
    );

    assert_unharmed(&mut daemon, bystander, &native);
    let native_saxpy = run(APP, Mode::Native, &["saxpy"]);
    let again = run(APP, Mode::Venus(&sock), &["saxpy"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(case_lines(&again), case_lines(&native_saxpy));
}

/// How [`Exporter`] backs the blobs it exports.
#[derive(Clone, Copy, Debug)]
enum Backing {
    /// A memfd sealed like the daemon's own (the control case).
    Sealed,
    /// A memfd without seals.
    Unsealed,
    /// A sealed memfd half the size it claims.
    Short,
}

/// An executor that answers transport commands and exports blobs backed as told: the
/// seam where a worker process will hand the daemon fds.
#[derive(Debug)]
struct Exporter(Backing);

impl StreamExecutor for Exporter {
    fn execute_one(&self, stream: &mut StreamCtx<'_>, cmds: &[u8]) -> Result<usize, ExecError> {
        TransportOnlyExecutor.execute_one(stream, cmds)
    }

    fn export_blob(&self, _blob: BlobId, size: u64) -> Result<ExportedBlob, ExecError> {
        let fail = |e: Errno| ExecError::Failed(Box::new(std::io::Error::from(e)));
        let fd =
            rustix::fs::memfd_create("exported", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(fail)?;
        let real = match self.0 {
            Backing::Short => size / 2,
            Backing::Sealed | Backing::Unsealed => size,
        };
        rustix::fs::ftruncate(&fd, real).map_err(fail)?;
        if !matches!(self.0, Backing::Unsealed) {
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).map_err(fail)?;
        }
        Ok(ExportedBlob { fd, size })
    }
}

fn exporter_server(backing: Backing) -> ServerHandle {
    let capset = VenusCapset::new(&VenusProtocolInfo::generated()).expect("capset");
    let factory = move |_ctx| -> Result<Arc<dyn StreamExecutor>, ExecError> {
        Ok(Arc::new(Exporter(backing)))
    };
    VtestServer::bind(
        VtestConfig::new(socket_path("exporter")),
        &capset,
        Arc::new(factory),
    )
    .expect("bind")
    .spawn()
    .expect("spawn")
}

fn create_blob_in_context(backing: Backing) -> Result<(), ContextError> {
    let ctx = Context::new(
        ContextId(1),
        ContextConfig::default(),
        Arc::new(Exporter(backing)),
    );
    ctx.create_blob(ResourceId(1), BlobId(7), 8192).map(|_| ())
}

#[test]
fn exported_blob_fds_must_be_sealed_and_large_enough() {
    create_blob_in_context(Backing::Sealed).expect("a sealed export is accepted");
    for (backing, want) in [
        (Backing::Unsealed, "Unsealed"),
        (Backing::Short, "TooSmall"),
    ] {
        let err = create_blob_in_context(backing).expect_err("refused");
        let ContextError::Resource(ResourceError::UnsafeFd { blob, source }) = &err else {
            panic!("{backing:?}: unexpected error {err:?}");
        };
        assert_eq!(*blob, BlobId(7));
        let matched = match source {
            FdError::Unsealed { .. } => "Unsealed",
            FdError::TooSmall { .. } => "TooSmall",
            _ => "other",
        };
        assert_eq!(matched, want, "{backing:?}: {source:?}");
    }
}

#[test]
fn vtest_client_is_dropped_when_its_blob_fd_is_unsafe_and_others_continue() {
    let sealed = exporter_server(Backing::Sealed);
    let mut c = ready_client(sealed.path());
    let (_, fd) = c
        .create_blob(BLOB_FLAG_MAPPABLE, 8192, BlobId(7))
        .expect("a sealed export is handed out");
    assert_eq!(rustix::fs::fstat(&fd).expect("fstat").st_size, 8192);

    for backing in [Backing::Unsealed, Backing::Short] {
        let srv = exporter_server(backing);
        let mut bystander = ready_client(srv.path());
        let mut bad = ready_client(srv.path());
        assert!(
            bad.create_blob(BLOB_FLAG_MAPPABLE, 8192, BlobId(7))
                .is_err(),
            "{backing:?}: the blob was handed out"
        );
        assert!(
            bad.wait_closed(Duration::from_secs(5)).expect("poll"),
            "{backing:?}: the client was not dropped"
        );
        let (_, fd) = bystander
            .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
            .expect("the other client is still served");
        assert_cannot_resize(&fd, 4096, "bystander blob");
    }
}
