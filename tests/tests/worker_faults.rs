//! Fault injection on the vtest front door with worker processes (the default
//! isolation): while bystander clients run the compute suite, another client crashes
//! its worker again and again by each means: the real lavapipe crash (a descriptor
//! array indexed out of range: SIGSEGV), SIGKILL and SIGABRT sent to the worker, and
//! a never-ending shader (the GPU-hang watchdog kills the worker). The bystanders
//! must finish bit-exact with zero errors, the daemon must survive and log one line
//! per death, the crashing client must then run the compute suite, and the daemon's
//! threads and fds must return to their baseline.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vgpu_tests::harness::{
    case_lines, children, children_named, client, output_text as text, run_with_timeout,
    wait_until, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const COMPUTE: &str = env!("CARGO_BIN_EXE_compute-app");
const CRASH: &str = env!("CARGO_BIN_EXE_crash-app");
const TIMEOUT: Duration = Duration::from_secs(240);
/// The watchdog's budget in these tests. A 512×512 matmul of a bystander sharing
/// two cores with four other clients keeps a fence pending for more than 1 s, and
/// with a compiler also running on those cores for up to 7.5 s (seen), so the budget
/// is twice the 5 s default: the watchdog counts pending time, and lavapipe's
/// "device" is the starved CPU.
const GPU_TIMEOUT_MS: u64 = 10_000;

/// The ways the crashing client ends its worker.
#[derive(Clone, Copy, Debug)]
enum Means {
    /// Out-of-range descriptor index: lavapipe SIGSEGVs.
    DescriptorIndex,
    /// SIGKILL sent to the worker.
    Kill,
    /// SIGABRT sent to the worker.
    Abort,
    /// A shader that never ends: the watchdog kills the worker.
    Hang,
}

impl Means {
    const ALL: [Self; 4] = [Self::DescriptorIndex, Self::Kill, Self::Abort, Self::Hang];

    /// Whether a daemon log line reports a death by this means.
    fn matches(self, line: &str) -> bool {
        line.contains("'crash-app'")
            && match self {
                Self::DescriptorIndex => line.contains("killed by SIGSEGV"),
                Self::Kill => line.contains("killed by SIGKILL") && !line.contains("GPU hang"),
                Self::Abort => line.contains("killed by SIGABRT"),
                Self::Hang => line.contains("GPU hang: work running"),
            }
    }
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// The daemon's threads and open fds.
fn footprint(pid: u32) -> (usize, usize) {
    (
        count_entries(&format!("/proc/{pid}/task")),
        count_entries(&format!("/proc/{pid}/fd")),
    )
}

fn deaths(daemon: &Daemon, means: Means) -> usize {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && means.matches(l))
        .count()
}

/// One crash of the crashing client's worker by `means`; the client must end (not
/// succeed) and the daemon must log the death.
fn crash_once(daemon: &Daemon, socket: &Path, means: Means) {
    let before = deaths(daemon, means);
    let out = match means {
        Means::DescriptorIndex | Means::Hang => {
            let case = if matches!(means, Means::Hang) {
                "hang"
            } else {
                "desc_crash"
            };
            let mut cmd = client(CRASH, Mode::Venus(socket));
            cmd.arg(case);
            run_with_timeout(cmd, Duration::from_secs(60)).expect("run crash-app")
        }
        Means::Kill | Means::Abort => {
            let mut cmd = client(CRASH, Mode::Venus(socket));
            let mut child = cmd
                .arg("busy")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn crash-app busy");
            let mut worker = Vec::new();
            let found = wait_until(Duration::from_secs(30), || {
                worker = children_named(daemon.pid(), "w:crash-app");
                !worker.is_empty()
            });
            if !found {
                let _ = child.kill();
                panic!("no worker named w:crash-app\n{}", daemon.log());
            }
            // Let it get going: its first dispatches are in flight.
            std::thread::sleep(Duration::from_millis(300));
            let signal = if matches!(means, Means::Kill) {
                "KILL"
            } else {
                "ABRT"
            };
            for pid in &worker {
                let status = Command::new("kill")
                    .args(["-s", signal, &pid.to_string()])
                    .status()
                    .expect("kill");
                assert!(status.success(), "kill -s {signal} {pid}");
            }
            // Killed inside a fence wait, Mesa 25.0.7 notices the FATAL status word
            // only when `vn_relax` first looks at it, at its 1024th poll of ever
            // longer sleeps (within 8 s for 140 clients killed at random moments on
            // a quiet machine; longer on a busy one), and killed elsewhere it fails
            // on its next vtest message at once. Killed while the client
            // waits for a vtest reply, it must fail too: Mesa's `vtest_read` retries
            // an end of file for ever, so the daemon answers the request the worker
            // had read with zeros and closes only with the client's next request
            // unread (a reset, which Mesa aborts on). A client burning a whole CPU
            // is the spin this guards against; the test fails on it.
            let pid = child.id();
            let mut spinning = false;
            let exited = wait_until(Duration::from_secs(150), || {
                if child.try_wait().ok().flatten().is_some() {
                    return true;
                }
                spinning = spins_at_full_cpu(pid);
                spinning
            });
            if !exited || spinning {
                let _ = child.kill();
            }
            let out = child.wait_with_output().expect("crash-app output");
            assert!(
                !spinning,
                "{means:?}: crash-app spins at full CPU after its worker died (end of \
                 file in Mesa's vtest_read?): {}",
                text(&out)
            );
            assert!(exited, "crash-app did not end after its worker died");
            out
        }
    };
    assert!(
        !out.status.success(),
        "{means:?}: the crashing client succeeded: {}",
        text(&out)
    );
    // It ended by itself (Mesa aborts on FATAL or a reset connection), rather than
    // being killed by the timeout above.
    assert_ne!(
        out.status.signal(),
        Some(9),
        "{means:?}: the crashing client did not notice its worker's death: {}",
        text(&out)
    );
    assert!(
        wait_until(Duration::from_secs(10), || deaths(daemon, means) > before),
        "{means:?}: no death line in the daemon log:\n{}",
        daemon.log()
    );
}

/// Whether process `pid` used at least 80 % of a CPU over the next 2 s (a Mesa
/// client spinning on end of file; one waiting for a fence sleeps, one that got
/// its error ends).
fn spins_at_full_cpu(pid: u32) -> bool {
    let ticks = || -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let Some(a) = ticks() else { return false };
    std::thread::sleep(Duration::from_secs(2));
    let Some(b) = ticks() else { return false };
    // Clock ticks are 1/100 s on Linux: 160 ticks in 2 s is 80 %.
    b.saturating_sub(a) >= 160
}

/// Bystander runs: (succeeded bit-exact, failed).
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ok: usize,
    failed: usize,
}

/// Starts `n` bystanders that each run the compute suite in a loop until `stop`.
fn bystanders(
    n: usize,
    socket: &Path,
    expected: &[String],
    stop: &Arc<AtomicBool>,
    failures: &Arc<Mutex<Vec<String>>>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..n)
        .map(|_| {
            let socket = socket.to_path_buf();
            let expected = expected.to_vec();
            let stop = Arc::clone(stop);
            let failures = Arc::clone(failures);
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                while !stop.load(Ordering::Acquire) {
                    let out = run_with_timeout(client(COMPUTE, Mode::Venus(&socket)), TIMEOUT)
                        .expect("run compute-app");
                    if out.status.success() && case_lines(&out) == expected {
                        tally.ok += 1;
                    } else {
                        tally.failed += 1;
                        failures
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(text(&out));
                    }
                }
                tally
            })
        })
        .collect()
}

/// Runs the whole scenario and prints the bystanders' throughput (and, when
/// `measure_alone` is set, their throughput for that long without the crasher).
fn fault_injection(crashes_per_means: usize, n_bystanders: usize, measure_alone: Option<Duration>) {
    let native = run_with_timeout(client(COMPUTE, Mode::Native), TIMEOUT).expect("native");
    assert!(native.status.success(), "native: {}", text(&native));
    let expected = case_lines(&native);
    let mut cmd = Command::new(DAEMON);
    cmd.arg("--gpu-timeout-ms").arg(GPU_TIMEOUT_MS.to_string());
    let mut daemon = Daemon::start_command(cmd, "faults").expect("daemon");
    let socket = daemon.socket().to_path_buf();
    // The baseline includes the idle pooled worker (`worker_pool = 1`).
    assert!(
        wait_until(Duration::from_secs(20), || !children(daemon.pid())
            .is_empty()),
        "no pooled worker"
    );
    std::thread::sleep(Duration::from_millis(300));
    let baseline = footprint(daemon.pid());
    let failures = Arc::new(Mutex::new(Vec::new()));

    let alone_rate = measure_alone.map(|d| {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let threads = bystanders(n_bystanders, &socket, &expected, &stop, &failures);
        std::thread::sleep(d);
        stop.store(true, Ordering::Release);
        let ok: usize = threads
            .into_iter()
            .map(|t| t.join().expect("bystander").ok)
            .sum();
        #[allow(clippy::cast_precision_loss)]
        let rate = ok as f64 / start.elapsed().as_secs_f64();
        rate
    });

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads = bystanders(n_bystanders, &socket, &expected, &stop, &failures);
    let mut per_means = Vec::new();
    for means in Means::ALL {
        let t = Instant::now();
        for _ in 0..crashes_per_means {
            crash_once(&daemon, &socket, means);
            assert!(daemon.exit_status().is_none(), "the daemon died");
        }
        per_means.push((means, t.elapsed()));
    }
    stop.store(true, Ordering::Release);
    let tallies: Vec<Tally> = threads
        .into_iter()
        .map(|t| t.join().expect("bystander"))
        .collect();
    let elapsed = start.elapsed();
    let failures = failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(
        failures.is_empty(),
        "{} bystander runs failed; first:\n{}\ndaemon log:\n{}",
        failures.len(),
        failures[0],
        daemon.log()
    );
    assert!(
        tallies.iter().all(|t| t.ok > 0),
        "a bystander never finished a run: {tallies:?}"
    );
    assert!(daemon.exit_status().is_none(), "the daemon died");

    // The crashing client (same program, same daemon) now runs the compute suite.
    let again = run_with_timeout(client(CRASH, Mode::Venus(&socket)), TIMEOUT).expect("again");
    assert!(
        again.status.success(),
        "crash-app afterwards: {}",
        text(&again)
    );
    assert_eq!(case_lines(&again), expected, "crash-app afterwards differs");

    // Every worker is gone and the daemon is back to its threads and fds.
    let mut now = footprint(daemon.pid());
    let back = wait_until(Duration::from_secs(15), || {
        now = footprint(daemon.pid());
        now == baseline
    });
    assert!(
        back,
        "threads/fds {now:?} did not return to the baseline {baseline:?}"
    );

    let ok: usize = tallies.iter().map(|t| t.ok).sum();
    #[allow(clippy::cast_precision_loss)]
    let with_crasher = ok as f64 / elapsed.as_secs_f64();
    eprintln!(
        "fault injection: {crashes_per_means} crashes per means {per_means:?}; \
         {n_bystanders} bystanders finished {ok} compute suites bit-exact in {elapsed:?} \
         ({with_crasher:.3} suites/s), 0 errors; threads/fds {baseline:?} before and after"
    );
    if let Some(alone) = alone_rate {
        eprintln!(
            "fault injection: bystander throughput alone {alone:.3} suites/s, with the \
             crasher {with_crasher:.3} suites/s ({:.1} %)",
            100.0 * with_crasher / alone
        );
    }
}

/// CI version: two crashes per means, three bystanders.
#[test]
fn crashing_workers_leave_bystanders_and_the_daemon_intact() {
    fault_injection(2, 3, None);
}

/// The long version: 100 crashes per means (`VGPU_CRASHES_PER_MEANS` overrides),
/// four bystanders, and their throughput without the crasher for comparison (about
/// an hour on two cores).
#[test]
#[ignore = "long: 400 crashes"]
fn hundred_crashes_per_means() {
    let n = std::env::var("VGPU_CRASHES_PER_MEANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    fault_injection(n, 4, Some(Duration::from_secs(60)));
}
