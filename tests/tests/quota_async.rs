//! End-to-end (issue 11): Mesa 25.0.7 sends `vkAllocateMemory` without waiting for the
//! answer, so a quota refusal only surfaces when it creates the blob for that memory —
//! a vtest request with no way to say "no". The context must fail promptly (the
//! client's driver stops instead of spinning for ever on a closed socket), with one log
//! line naming the quota and the blob, and another VM must be unaffected.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const QUOTA_APP: &str = env!("CARGO_BIN_EXE_quota-app");
const COMPUTE_APP: &str = env!("CARGO_BIN_EXE_compute-app");
/// Generous against a loaded machine; before the fix the client never ended.
const TIMEOUT: Duration = Duration::from_secs(60);

fn compute(mode: Mode<'_>) -> Output {
    run_with_timeout(client(COMPUTE_APP, mode), TIMEOUT).expect("compute-app")
}

fn venus_quota_app(socket: &Path) -> Command {
    // No VN_PERF=no_async_mem_alloc: Mesa's default, asynchronous allocation.
    let mut cmd = client(QUOTA_APP, Mode::Venus(socket));
    cmd.arg("20");
    cmd
}

#[test]
fn an_asynchronous_allocation_past_the_quota_fails_the_context_promptly() {
    let mut daemon_cmd = Command::new(DAEMON);
    daemon_cmd.args(["--memory-mib", "64"]);
    let mut daemon = Daemon::start_command(daemon_cmd, "quota-async").expect("daemon");

    let start = Instant::now();
    let out = run_with_timeout(venus_quota_app(daemon.socket()), TIMEOUT).expect("quota-app");
    let took = start.elapsed();
    assert!(
        took < TIMEOUT,
        "the client did not end within {TIMEOUT:?}: {}\ndaemon log:\n{}",
        text(&out),
        daemon.log()
    );
    // The driver stops (Mesa aborts on the lost connection); it never reports success.
    assert!(!out.status.success(), "{}", text(&out));
    let log = daemon.log();
    assert!(
        log.contains("device-memory quota of 64 MiB reached"),
        "no quota line:\n{log}"
    );
    assert!(
        log.contains("RESOURCE_CREATE_BLOB of blob") && log.contains("context failed"),
        "the context failure does not name the blob:\n{log}"
    );
    assert_eq!(daemon.exit_status(), None, "daemon died:\n{log}");

    // Another VM (connection) is unaffected.
    let native = compute(Mode::Native);
    assert!(native.status.success(), "{}", text(&native));
    let venus = compute(Mode::Venus(daemon.socket()));
    assert!(
        venus.status.success(),
        "{}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&native), case_lines(&venus), "results differ");
}
