//! End-to-end: the GPU-hang watchdog of contexts that run in the daemon (vtest with
//! `isolation = "thread"`, and vhost-user contexts, through the bridge). A never-ending
//! shader's context is failed once its fence has been pending longer than the VM's
//! `gpu_timeout_ms`: the real Mesa Venus client stops (FATAL on its rings) instead of
//! waiting forever, the daemon logs the hang once and lives on, and a bystander then
//! computes bit for bit. (In-process, the hung work itself cannot be stopped: the
//! context's device is leaked; worker processes are killed instead, see
//! `worker_faults.rs`.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vgpu_tests::bridge::launch::VhostChain;
use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const SERVE: &str = env!("CARGO_BIN_EXE_vhost-serve-daemon");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const COMPUTE: &str = env!("CARGO_BIN_EXE_compute-app");
const CRASH: &str = env!("CARGO_BIN_EXE_crash-app");
const TIMEOUT: Duration = Duration::from_secs(240);
/// The hang budget here: the daemon later runs the compute suite, whose 512×512
/// matmul can keep a fence pending for seconds on two cores shared with the rest of
/// the test run (`worker_faults.rs` measured up to 7.5 s), so 10 s, not the 5 s default.
const GPU_TIMEOUT_MS: u64 = 10_000;

/// Runs `crash-app hang` on `socket`: it must end, not succeed, well before the
/// client would give up by itself; returns how long it took.
fn hang_ends(socket: &Path, log: &dyn Fn() -> String) -> Duration {
    let start = Instant::now();
    let mut cmd = client(CRASH, Mode::Venus(socket));
    cmd.arg("hang");
    let out = run_with_timeout(cmd, Duration::from_secs(90)).expect("run crash-app hang");
    let took = start.elapsed();
    assert!(
        !out.status.success(),
        "a never-ending shader finished?\n{}\n{}",
        text(&out),
        log()
    );
    assert!(
        took < Duration::from_secs(60),
        "the hung client took {took:?} to end\n{}",
        log()
    );
    took
}

fn compute_matches(socket: &Path, log: &dyn Fn() -> String) {
    let native = run_with_timeout(client(COMPUTE, Mode::Native), TIMEOUT).expect("native");
    assert!(native.status.success(), "{}", text(&native));
    let venus = run_with_timeout(client(COMPUTE, Mode::Venus(socket)), TIMEOUT).expect("venus");
    assert!(venus.status.success(), "{}\n{}", text(&venus), log());
    assert_eq!(case_lines(&native), case_lines(&venus), "results differ");
}

fn hang_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("GPU hang: work running"))
        .count()
}

#[test]
fn a_hung_context_on_a_daemon_thread_is_failed_and_the_daemon_serves_on() {
    let mut cmd = Command::new(DAEMON);
    cmd.args(["--isolation", "thread"])
        .args(["--gpu-timeout-ms", &GPU_TIMEOUT_MS.to_string()]);
    let mut daemon = Daemon::start_command(cmd, "hang-thread").expect("daemon");
    let log = || daemon.log();
    let took = hang_ends(daemon.socket(), &log);
    let lines = hang_lines(&daemon.log());
    assert_eq!(lines, 1, "took {took:?}\n{}", daemon.log());
    compute_matches(daemon.socket(), &|| daemon.log());
    assert!(daemon.exit_status().is_none(), "the daemon died");
}

#[test]
fn a_hung_vhost_user_context_is_failed_and_the_daemon_serves_on() {
    let config = std::env::temp_dir().join(format!("vgpu-hang-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        // The vhost-user contexts on daemon threads (with worker processes, the
        // default, the worker is killed instead: `vhost_user_workers.rs`).
        format!(
            "[worker]\nisolation = \"thread\"\n\
             [defaults]\ngpu_timeout_ms = {GPU_TIMEOUT_MS}\n"
        ),
    )
    .expect("config file");
    let path = config.to_str().expect("utf-8 path");
    let chain = VhostChain::start(SERVE, &["--config", path], BRIDGE, "hang-vhost").expect("chain");
    let _ = std::fs::remove_file(&config);
    let logs = || chain.logs();
    let took = hang_ends(chain.vtest_socket(), &logs);
    assert_eq!(
        hang_lines(&chain.logs()),
        1,
        "took {took:?}\n{}",
        chain.logs()
    );
    compute_matches(chain.vtest_socket(), &logs);
}
