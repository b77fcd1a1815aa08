//! Soak (issue 11): many clients over a long run, a third of them hostile in the ways
//! the limits exist for, the rest running compute through the real Mesa Venus driver.
//! Every compute client must get the native results, the daemon must survive, and once
//! every client has left, the daemon's threads and file descriptors must be back at
//! their baseline and its RSS within [`RSS_BOUND_KIB`] of it.
//!
//! The short version runs in the suite; the full one (200 clients over 10 minutes) is
//! `SOAK_CLIENTS=200 SOAK_SECS=600 cargo test -p vgpu-tests --test soak -- --nocapture`.
//! Both print the figures.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vgpu_device::ids::{BlobId, CapsetId, ResourceId};
use vgpu_device::vtest::client::VtestClient;
use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;
use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const QUOTA_APP: &str = env!("CARGO_BIN_EXE_quota-app");
const LIFETIME_ATTACKER: &str = env!("CARGO_BIN_EXE_lifetime-attacker");
const OWNERSHIP_ATTACKER: &str = env!("CARGO_BIN_EXE_ownership-attacker");
const CASES: &[&str] = &["saxpy", "prefix_sum"];
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);
/// Each VM's device-memory quota: the quota client runs into it after a few chunks.
const QUOTA_MIB: u64 = 512;
/// How far above its baseline the idle daemon's RSS may settle.
const RSS_BOUND_KIB: u64 = 64 << 10;
/// How long the daemon gets to drop hostile connections and settle at the end (the
/// handshake and message timeouts are 5 s and 10 s by default).
const SETTLE: Duration = Duration::from_secs(30);

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Compute,
    /// Connects and never speaks.
    Silent,
    /// Starts a message and stops mid-way.
    Stalled,
    /// Sends requests and never reads the replies.
    NeverReads,
    /// Holds many small blobs (each an fd in the daemon).
    Blobs,
    /// Holds many pending sync waits (each an eventfd in the daemon).
    SyncWaits,
    /// Allocates device memory past its quota through Venus.
    Quota,
    /// Destroys what its running work uses (lifetimes).
    Lifetimes,
    /// Names another device's buffer (ownership): its context fails.
    Ownership,
    /// A compute client killed mid-run.
    Killed,
}

const HOSTILE: [Kind; 9] = [
    Kind::Silent,
    Kind::Stalled,
    Kind::NeverReads,
    Kind::Blobs,
    Kind::SyncWaits,
    Kind::Quota,
    Kind::Lifetimes,
    Kind::Ownership,
    Kind::Killed,
];

fn kind_of(i: u64) -> Kind {
    // Every third client is hostile, cycling through the hostile kinds.
    if i % 3 == 2 {
        let n = usize::try_from(i / 3).unwrap_or(0) % HOSTILE.len();
        HOSTILE[n]
    } else {
        Kind::Compute
    }
}

fn venus(program: &str, socket: &Path, args: &[&str]) -> Command {
    let mut cmd = client(program, Mode::Venus(socket));
    cmd.args(args);
    cmd
}

fn ready(socket: &Path, name: &str) -> Option<VtestClient> {
    let mut c = VtestClient::connect(socket).ok()?;
    c.handshake(name).ok()?;
    c.context_init(CapsetId::VENUS).ok()?;
    Some(c)
}

/// What one client did, for the tally.
#[derive(Debug)]
enum Outcome {
    /// Compute finished with the native results.
    Exact,
    /// Compute failed or differed: the soak fails.
    Wrong(String),
    /// A hostile client ran its course (whatever the daemon answered).
    Hostile,
}

fn run_client(kind: Kind, socket: &Path, native: &[String]) -> Outcome {
    match kind {
        Kind::Compute => match run_with_timeout(venus(APP, socket, CASES), CLIENT_TIMEOUT) {
            Ok(o) if o.status.success() && case_lines(&o) == native => Outcome::Exact,
            Ok(o) => Outcome::Wrong(text(&o)),
            Err(e) => Outcome::Wrong(format!("spawning compute-app: {e}")),
        },
        Kind::Silent => {
            let s = UnixStream::connect(socket);
            std::thread::sleep(Duration::from_secs(2));
            drop(s);
            Outcome::Hostile
        }
        Kind::Stalled => {
            if let Ok(mut s) = UnixStream::connect(socket) {
                // Half a header: a length word, then nothing.
                let _ = s.write_all(&64u32.to_le_bytes());
                std::thread::sleep(Duration::from_secs(2));
            }
            Outcome::Hostile
        }
        Kind::NeverReads => {
            if let Some(mut c) = ready(socket, "soak-never-reads") {
                if let Ok(sync) = c.sync_create(0) {
                    for _ in 0..20_000 {
                        if c.send(vgpu_device::vtest::protocol::cmd::SYNC_READ, &[sync.0])
                            .is_err()
                        {
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            Outcome::Hostile
        }
        Kind::Blobs => {
            let mut held: Vec<(ResourceId, OwnedFd)> = Vec::new();
            if let Some(mut c) = ready(socket, "soak-blobs") {
                for _ in 0..500 {
                    match c.create_blob(BLOB_FLAG_MAPPABLE, 4096, BlobId::SHMEM) {
                        Ok(b) => held.push(b),
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            drop(held);
            Outcome::Hostile
        }
        Kind::SyncWaits => {
            let mut held: Vec<OwnedFd> = Vec::new();
            if let Some(mut c) = ready(socket, "soak-sync-waits") {
                if let Ok(sync) = c.sync_create(0) {
                    for _ in 0..500 {
                        // Waits for a value never written.
                        match c.sync_wait(false, u32::MAX, &[(sync, 1)]) {
                            Ok(fd) => held.push(fd),
                            Err(_) => break,
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            drop(held);
            Outcome::Hostile
        }
        Kind::Quota => {
            let _ = run_with_timeout(venus(QUOTA_APP, socket, &["64"]), CLIENT_TIMEOUT);
            Outcome::Hostile
        }
        Kind::Lifetimes => {
            let _ = run_with_timeout(
                venus(LIFETIME_ATTACKER, socket, &["buffers"]),
                CLIENT_TIMEOUT,
            );
            Outcome::Hostile
        }
        Kind::Ownership => {
            let _ = run_with_timeout(venus(OWNERSHIP_ATTACKER, socket, &["fill"]), CLIENT_TIMEOUT);
            Outcome::Hostile
        }
        Kind::Killed => {
            if let Ok(mut child) = venus(APP, socket, &["saxpy", "matmul", "prefix_sum"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
            {
                std::thread::sleep(Duration::from_millis(700));
                let _ = child.kill();
                let _ = child.wait();
            }
            Outcome::Hostile
        }
    }
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    threads: usize,
    fds: usize,
    rss_kib: u64,
}

fn figures(d: &Daemon) -> Figures {
    figures_of(d.pid())
}

fn figures_of(pid: u32) -> Figures {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    Figures {
        threads: threads(pid),
        fds: fds(pid),
        rss_kib,
    }
}

#[test]
fn many_clients_a_third_hostile_leave_the_daemon_at_its_baseline() {
    let clients = env_num("SOAK_CLIENTS", 27);
    let secs = env_num("SOAK_SECS", 40);
    let native = run_with_timeout(
        {
            let mut c = client(APP, Mode::Native);
            c.args(CASES);
            c
        },
        CLIENT_TIMEOUT,
    )
    .expect("native run");
    assert!(native.status.success(), "native: {}", text(&native));
    let native = case_lines(&native);

    let mut cmd = Command::new(DAEMON);
    cmd.args(["--memory-mib", &QUOTA_MIB.to_string()]);
    let mut daemon = Daemon::start_command(cmd, "soak").expect("start daemon");
    let socket: PathBuf = daemon.socket().to_path_buf();
    // Baseline: after a first client, so what the driver loads once is counted in.
    assert!(matches!(
        run_client(Kind::Compute, &socket, &native),
        Outcome::Exact
    ));
    std::thread::sleep(Duration::from_secs(1));
    let base = figures(&daemon);

    let start = Instant::now();
    let spacing = Duration::from_secs(secs) / u32::try_from(clients.max(1)).unwrap_or(1);
    let mut handles = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let pid = daemon.pid();
        std::thread::spawn(move || {
            let mut peak = base;
            while !stop.load(Ordering::Relaxed) {
                let f = figures_of(pid);
                peak.threads = peak.threads.max(f.threads);
                peak.fds = peak.fds.max(f.fds);
                peak.rss_kib = peak.rss_kib.max(f.rss_kib);
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    for i in 0..clients {
        let due = start + spacing * u32::try_from(i).unwrap_or(0);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(20));
        }
        let kind = kind_of(i);
        let socket = socket.clone();
        let native = native.clone();
        handles.push((
            kind,
            std::thread::spawn(move || {
                let t = Instant::now();
                (run_client(kind, &socket, &native), t.elapsed())
            }),
        ));
    }
    let mut exact = 0;
    let mut hostile = 0;
    let mut wrong = Vec::new();
    let mut slowest: Vec<(Kind, Duration)> = Vec::new();
    for (kind, h) in handles {
        let (outcome, took) = h.join().expect("client thread");
        match slowest.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, d)) => *d = (*d).max(took),
            None => slowest.push((kind, took)),
        }
        match outcome {
            Outcome::Exact => exact += 1,
            Outcome::Hostile => hostile += 1,
            Outcome::Wrong(why) => wrong.push(format!("{kind:?}: {why}")),
        }
    }
    let ran = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    assert_eq!(daemon.exit_status(), None, "daemon died:\n{}", daemon.log());
    assert!(
        wrong.is_empty(),
        "{} compute clients failed or differed:\n{}\ndaemon log tail:\n{}",
        wrong.len(),
        wrong.join("\n"),
        tail(&daemon.log())
    );

    // Settle: hostile connections are dropped by their timeouts, contexts torn down.
    let deadline = Instant::now() + SETTLE;
    let mut end = figures(&daemon);
    while Instant::now() < deadline
        && (end.threads > base.threads
            || end.fds > base.fds
            || end.rss_kib > base.rss_kib + RSS_BOUND_KIB)
    {
        std::thread::sleep(Duration::from_millis(250));
        end = figures(&daemon);
    }
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "soak: {clients} clients ({exact} compute bit-exact, {hostile} hostile) in {:.0} s\n\
         soak: slowest client of each kind (s): {}\n\
         soak: baseline threads {} fds {} rss {} KiB; peak threads {} fds {} rss {} KiB; \
         after threads {} fds {} rss {} KiB (bound +{} KiB)",
        ran.as_secs_f64(),
        slowest
            .iter()
            .map(|(k, d)| format!("{k:?} {:.1}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        base.threads,
        base.fds,
        base.rss_kib,
        peak.threads,
        peak.fds,
        peak.rss_kib,
        end.threads,
        end.fds,
        end.rss_kib,
        RSS_BOUND_KIB
    );
    assert!(
        end.threads <= base.threads,
        "threads {} > baseline {}",
        end.threads,
        base.threads
    );
    assert!(
        end.fds <= base.fds,
        "fds {} > baseline {}",
        end.fds,
        base.fds
    );
    assert!(
        end.rss_kib <= base.rss_kib + RSS_BOUND_KIB,
        "rss {} KiB > baseline {} KiB + {RSS_BOUND_KIB}",
        end.rss_kib,
        base.rss_kib
    );
    // And the daemon still serves.
    assert!(matches!(
        run_client(Kind::Compute, &socket, &native),
        Outcome::Exact
    ));
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
