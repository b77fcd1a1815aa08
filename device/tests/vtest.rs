//! vtest front-door tests: a Rust client speaking Mesa's exact byte sequences, error
//! isolation between concurrent clients, syncs, and (where installed) the real Mesa
//! Venus driver.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use vgpu_device::capset::{VenusCapset, VenusProtocolInfo};
use vgpu_device::ids::{BlobId, CapsetId, ResourceId, SyncId};
use vgpu_device::renderer::transport::TransportOnlyExecutor;
use vgpu_device::renderer::{ExecError, StreamExecutor};
use vgpu_device::sys::SharedMemory;
use vgpu_device::vtest::client::{Batch, VtestClient};
use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;
use vgpu_device::vtest::{probe, ServerHandle, VtestConfig, VtestServer};

fn socket_path() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "vgpu-vtest-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn server() -> ServerHandle {
    let capset = VenusCapset::new(&VenusProtocolInfo::generated()).expect("capset");
    let factory = |_ctx| -> Result<Arc<dyn StreamExecutor>, ExecError> {
        Ok(Arc::new(TransportOnlyExecutor))
    };
    VtestServer::bind(VtestConfig::new(socket_path()), &capset, Arc::new(factory))
        .expect("bind")
        .spawn()
        .expect("spawn")
}

#[path = "common/venus_stream.rs"]
mod venus_stream;

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_exact_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read");
    buf
}

fn ready_client(path: &Path) -> VtestClient {
    let mut c = VtestClient::connect(path).expect("connect");
    c.handshake("test").expect("handshake");
    c.context_init(CapsetId::VENUS).expect("context init");
    c
}

fn readable(fd: &impl std::os::fd::AsFd, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let ts = Timespec::try_from(timeout).expect("timeout");
    rustix::event::poll(&mut fds, Some(&ts)).expect("poll") == 1
}

#[test]
fn mesa_handshake_gets_byte_exact_replies() {
    let srv = server();
    let mut s = UnixStream::connect(srv.path()).expect("connect");
    // CREATE_RENDERER (LEN in bytes), PING, dummy BUSY_WAIT: all before any read.
    let mut msg = words(&[11, 8]);
    msg.extend_from_slice(b"vulkaninfo\0");
    msg.extend(words(&[0, 10]));
    msg.extend(words(&[2, 7, 0, 0]));
    s.write_all(&msg).expect("write");
    assert_eq!(read_exact_n(&mut s, 8), words(&[0, 10]), "ping reply first");
    assert_eq!(read_exact_n(&mut s, 12), words(&[1, 7, 0]));
    s.write_all(&words(&[1, 11, 3])).expect("write");
    assert_eq!(read_exact_n(&mut s, 12), words(&[1, 11, 3]));
    s.write_all(&words(&[1, 15, 1])).expect("write");
    assert_eq!(read_exact_n(&mut s, 16), words(&[2, 15, 1, 64]));
    s.write_all(&words(&[2, 16, 4, 0])).expect("write");
    let capset = read_exact_n(&mut s, 8 + 4 + 160);
    assert_eq!(&capset[..12], &words(&[41, 16, 1])[..]);
    let field = |off: usize| {
        let b = &capset[12 + off..12 + off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    assert_eq!(field(0), 1, "wire format");
    assert_eq!(field(4), (1 << 22) | (3 << 12) | 269, "vk.xml 1.3.269");
    assert_eq!(field(12), 2, "venus protocol spec");
    assert_eq!(field(16), 1, "blob id 0");
    assert_eq!(field(20) & 1, 1, "mask valid bit");
    assert_eq!((field(148), field(152), field(156)), (1, 1, 0));
    // CONTEXT_INIT has no reply; the connection stays usable.
    s.write_all(&words(&[1, 17, 4])).expect("write");
    s.write_all(&words(&[0, 10])).expect("write");
    assert_eq!(read_exact_n(&mut s, 8), words(&[0, 10]));
}

#[test]
fn protocol_version_is_min_of_client_and_three() {
    let srv = server();
    let mut c = VtestClient::connect(srv.path()).expect("connect");
    c.handshake("v").expect("handshake");
    c.send(11, &[4]).expect("send");
    assert_eq!(c.read_reply(11).expect("reply"), [3]);
    c.send(11, &[2]).expect("send");
    assert_eq!(c.read_reply(11).expect("reply"), [2]);
}

#[test]
fn unknown_capset_and_param_are_reported_invalid() {
    let srv = server();
    let mut c = VtestClient::connect(srv.path()).expect("connect");
    c.handshake("v").expect("handshake");
    assert_eq!(
        c.get_capset(CapsetId(3), 0).expect("capset"),
        (false, vec![])
    );
    assert!(!c.get_capset(CapsetId::VENUS, 1).expect("capset").0);
    c.send(15, &[2]).expect("send");
    assert_eq!(c.read_reply(15).expect("reply"), [0, 0]);
}

#[test]
fn blobs_arrive_as_separate_fds_with_small_reused_ids() {
    let srv = server();
    let mut c = ready_client(srv.path());
    let (a, fd_a) = c
        .create_blob(BLOB_FLAG_MAPPABLE, 131_268, BlobId::SHMEM)
        .expect("blob a");
    let (b, _fd_b) = c
        .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
        .expect("blob b");
    assert_eq!((a, b), (ResourceId(1), ResourceId(2)));
    let stat = rustix::fs::fstat(&fd_a).expect("fstat");
    assert_eq!(stat.st_size, 131_268, "exact, unaligned size");
    let map = SharedMemory::map(&fd_a, 131_268).expect("map");
    map.write(131_000, b"hello").expect("write");
    c.resource_unref(a).expect("unref");
    let (again, _) = c
        .create_blob(BLOB_FLAG_MAPPABLE, 8192, BlobId::SHMEM)
        .expect("blob again");
    assert_eq!(again, ResourceId(1), "freed id reused");
}

#[test]
fn probe_creates_a_ring_and_round_trips_a_reply() {
    let srv = server();
    let report = probe::probe(srv.path()).expect("probe");
    let text = report.to_string();
    assert!(text.contains("protocol version 3"), "{text}");
    assert!(text.contains("head reached tail"), "{text}");
}

#[test]
fn sync_wait_eventfd_fires_when_the_value_is_reached() {
    let srv = server();
    let mut c = ready_client(srv.path());
    let id = c.sync_create(5).expect("create");
    assert_eq!(c.sync_read(id).expect("read"), 5);
    c.sync_write(id, 7).expect("write");
    assert_eq!(c.sync_read(id).expect("read"), 7);
    let now = c.sync_wait(false, 0, &[(id, 7)]).expect("wait");
    assert!(readable(&now, Duration::from_millis(100)));
    let later = c.sync_wait(false, u32::MAX, &[(id, 10)]).expect("wait");
    assert!(!readable(&later, Duration::from_millis(50)));
    // An empty batch that signals the sync on the CPU timeline.
    c.submit_cmd2(&[Batch {
        syncs: &[(id, 10)],
        ..Batch::default()
    }])
    .expect("submit");
    assert!(readable(&later, Duration::from_secs(2)));
    assert_eq!(c.sync_read(id).expect("read"), 10);
}

/// Misbehaviours that must drop only the offending client.
fn misbehave(path: &Path, case: &str) -> VtestClient {
    let mut c = VtestClient::connect(path).expect("connect");
    match case {
        "garbage first" => c.send_raw(&[0xff; 64]).expect("send"),
        "bad CREATE_RENDERER LEN" => c.send_raw(&words(&[100_000, 8])).expect("send"),
        "huge LEN" => {
            c.handshake("bad").expect("handshake");
            c.send_raw(&words(&[0x4000_0000, 24])).expect("send");
        }
        "unknown command" => {
            c.handshake("bad").expect("handshake");
            c.send(99, &[1, 2, 3]).expect("send");
        }
        "submit before context" => {
            c.handshake("bad").expect("handshake");
            c.submit_cmd2(&[Batch::default()]).expect("send");
        }
        "submit offsets past the end" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId::VENUS).expect("init");
            c.send(24, &[1, 1, 7, 35, 42, 0, 0]).expect("send");
        }
        "ring_idx 64" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId::VENUS).expect("init");
            c.send(24, &[1, 1, 7, 0, 7, 0, 64]).expect("send");
        }
        "undecodable stream" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId::VENUS).expect("init");
            c.submit_cmd2(&[Batch {
                cmds: &words(&[137, 1, 1, 0]),
                ..Batch::default()
            }])
            .expect("send");
        }
        "unref of unknown resource" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId::VENUS).expect("init");
            c.resource_unref(ResourceId(42)).expect("send");
        }
        "oversized blob" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId::VENUS).expect("init");
            c.send(18, &[2, 1, 0, 0x100, 0, 0]).expect("send");
        }
        "other capset" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId(2)).expect("init");
        }
        "unknown sync" => {
            c.handshake("bad").expect("handshake");
            c.context_init(CapsetId::VENUS).expect("init");
            c.sync_write(SyncId(77), 1).expect("send");
        }
        other => panic!("unknown case {other}"),
    }
    c
}

#[test]
fn a_misbehaving_client_loses_only_its_own_connection() {
    let srv = server();
    let mut good = ready_client(srv.path());
    let (res, fd) = good
        .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
        .expect("blob");
    for case in [
        "garbage first",
        "bad CREATE_RENDERER LEN",
        "huge LEN",
        "unknown command",
        "submit before context",
        "submit offsets past the end",
        "ring_idx 64",
        "undecodable stream",
        "unref of unknown resource",
        "oversized blob",
        "other capset",
        "unknown sync",
    ] {
        let mut bad = misbehave(srv.path(), case);
        assert!(
            bad.wait_closed(Duration::from_secs(5)).expect("read"),
            "server kept the connection after: {case}"
        );
        // The well-behaved client is unaffected.
        good.send(10, &[]).expect("ping");
        assert!(
            good.read_reply(10).expect("pong").is_empty(),
            "after {case}"
        );
    }
    drop(fd);
    good.resource_unref(res).expect("unref");
    let report = probe::probe(srv.path()).expect("server still serves new clients");
    assert!(report.to_string().contains("head reached tail"));
}

#[test]
fn concurrent_clients_each_get_their_own_context() {
    let srv = server();
    let path = srv.path().to_path_buf();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || probe::probe(&path).map(|r| r.to_string()))
        })
        .collect();
    for w in workers {
        let text = w.join().expect("thread").expect("probe");
        assert!(text.contains("head reached tail"), "{text}");
    }
}

#[test]
fn disconnect_mid_message_tears_down_the_context() {
    let srv = server();
    {
        let mut c = ready_client(srv.path());
        let _blob = c
            .create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM)
            .expect("blob");
        // Half a header, then hang up.
        c.send_raw(&[1, 0, 0]).expect("send");
    }
    let report = probe::probe(srv.path()).expect("server still serves");
    assert!(report.to_string().contains("head reached tail"));
}

/// The real, unmodified Mesa 25.0.7 Venus driver (installed by scripts/setup.sh).
/// Until the Venus decoder is plugged in it completes the vtest handshake, creates its
/// instance ring, and its first Vulkan command on the ring fails the context: the
/// driver must see FATAL and exit (abort) promptly instead of hanging, and the server
/// must keep serving.
#[test]
fn real_mesa_venus_driver_gets_through_the_handshake_and_fails_cleanly() {
    let icd = "/usr/share/vulkan/icd.d/virtio_icd.json";
    let have_vulkaninfo = Command::new("sh")
        .args(["-c", "command -v vulkaninfo"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !Path::new(icd).exists() || !have_vulkaninfo {
        eprintln!("SKIPPED: {icd} or vulkaninfo missing (run scripts/setup.sh)");
        return;
    }
    let srv = server();
    let start = Instant::now();
    let out = Command::new("sh")
        .args(["-c", "ulimit -c 0; exec timeout 60 vulkaninfo --summary"])
        .env("VN_DEBUG", "vtest,init")
        .env("VTEST_SOCKET_NAME", srv.path())
        .env("VK_DRIVER_FILES", icd)
        .output()
        .expect("run vulkaninfo");
    let elapsed = start.elapsed();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("wire format version 1"), "{log}");
    assert!(
        log.contains("VK_MESA_venus_protocol spec version 2"),
        "{log}"
    );
    assert!(
        log.contains("ring fatal") || log.contains("abort"),
        "the driver should stop on the FATAL ring: {log}"
    );
    assert_ne!(out.status.code(), Some(124), "vulkaninfo hung: {log}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let report = probe::probe(srv.path()).expect("server still serves");
    assert!(report.to_string().contains("head reached tail"));
}

/// A SUBMIT_CMD2 sync on a queue timeline (ring_idx bound with
/// `VkDeviceQueueTimelineInfoMESA`) moves only once the host queue has retired the
/// work before it. Real Venus executor on lavapipe.
#[test]
fn queue_timeline_sync_waits_for_the_host_queue() {
    venus_stream::use_lavapipe();
    let capset = VenusCapset::new(&VenusProtocolInfo::generated()).expect("capset");
    let srv = VtestServer::bind(
        VtestConfig::new(socket_path()),
        &capset,
        Arc::new(vgpu_device::renderer::venus::VenusFactory::default()),
    )
    .expect("bind")
    .spawn()
    .expect("spawn");
    let mut c = ready_client(srv.path());
    let setup = venus_stream::setup(1);
    c.submit_cmd2(&[Batch {
        cmds: &setup,
        ..Batch::default()
    }])
    .expect("setup");
    let id = c.sync_create(0).expect("sync");
    c.submit_cmd2(&[Batch {
        ring_idx: vgpu_device::ids::RingIdx(1),
        syncs: &[(id, 1)],
        ..Batch::default()
    }])
    .expect("fence batch");
    let wait = c.sync_wait(false, u32::MAX, &[(id, 1)]).expect("wait");
    assert!(
        !readable(&wait, Duration::from_millis(300)),
        "the queue is blocked on the semaphore"
    );
    assert_eq!(c.sync_read(id).expect("read"), 0);
    let signal = venus_stream::signal();
    c.submit_cmd2(&[Batch {
        cmds: &signal,
        ..Batch::default()
    }])
    .expect("signal");
    assert!(readable(&wait, Duration::from_secs(5)), "queue retired");
    assert_eq!(c.sync_read(id).expect("read"), 1);
    let teardown = venus_stream::teardown();
    c.submit_cmd2(&[Batch {
        cmds: &teardown,
        ..Batch::default()
    }])
    .expect("teardown");
    assert_eq!(c.sync_read(id).expect("still connected"), 1);
}
