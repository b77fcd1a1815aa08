//! End-to-end: the GPU-hang watchdog counts how long a queue's oldest pending work
//! has been *running*, not how long its fence has been queued. A real Mesa Venus
//! client keeps 16 submissions of ~150 ms each in flight (about 2.4 s of queued work)
//! under a 1.5 s GPU timeout: every batch is far shorter than the timeout, so the
//! client must finish with the right results and no hang reported — with worker
//! processes and with contexts on daemon threads. (Counting from queueing, the
//! watchdog killed it: every fence waited behind fifteen others.)

use std::process::Command;
use std::time::Duration;

use vgpu_tests::harness::{client, output_text as text, run_with_timeout, Daemon, Mode};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const SPIN: &str = env!("CARGO_BIN_EXE_spin-app");
const GPU_TIMEOUT_MS: &str = "1500";
/// 16 workgroups × ~340k rounds: about 150 ms of lavapipe time per submission on one
/// thread (about 0.44 µs a round), longer on a busy machine; far below the timeout.
const GROUPS: &str = "16";
const ITERS: &str = "340000";
const DEPTH: &str = "16";

fn deep_pipeline_survives(isolation: &str) {
    let mut cmd = Command::new(DAEMON);
    cmd.args(["--isolation", isolation])
        .args(["--gpu-timeout-ms", GPU_TIMEOUT_MS]);
    let mut daemon = Daemon::start_command(cmd, &format!("hang-pipe-{isolation}")).expect("daemon");
    let mut spin = client(SPIN, Mode::Venus(daemon.socket()));
    spin.env("LP_NUM_THREADS", "1")
        .args([GROUPS, ITERS, "5", DEPTH]);
    let out = run_with_timeout(spin, Duration::from_secs(120)).expect("spin-app");
    let log = daemon.log();
    assert!(
        out.status.success(),
        "{isolation}: the client failed\n{}\n{log}",
        text(&out)
    );
    let submissions: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("submissions "))
        .and_then(|n| n.trim().parse().ok())
        .expect("submission count");
    // Half again a full pipeline went through (the queue really was deep).
    assert!(
        submissions >= 24,
        "{isolation}: only {submissions} submissions\n{log}"
    );
    assert!(
        !log.contains("GPU hang"),
        "{isolation}: a deep pipeline of short batches was taken for a hang\n{log}"
    );
    assert!(
        daemon.exit_status().is_none(),
        "{isolation}: the daemon died"
    );
}

#[test]
fn a_deep_pipeline_of_short_batches_is_not_a_hang_in_a_worker() {
    deep_pipeline_survives("process");
}

#[test]
fn a_deep_pipeline_of_short_batches_is_not_a_hang_on_a_daemon_thread() {
    deep_pipeline_survives("thread");
}
