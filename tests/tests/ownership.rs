//! End-to-end (issue 10, ownership): a command of one device that names an object of
//! another device of the same context is refused before the host driver sees it — for
//! every command, by the one check every decoded handle passes through
//! (`device/src/renderer/venus/ownership.rs`). The attacker's context fails (its
//! driver stops), a bystander running the compute suite at the same time gets the
//! native results, and the daemon serves a new client afterwards.

use std::path::Path;
use std::process::Output;
use std::thread::JoinHandle;
use std::time::Duration;

use vgpu_device::vtest::probe;
use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const ATTACKER: &str = env!("CARGO_BIN_EXE_ownership-attacker");
const TIMEOUT: Duration = Duration::from_secs(120);
const BYSTANDER_CASES: &[&str] = &["saxpy", "matmul", "prefix_sum", "fences"];

fn run(program: &str, mode: Mode<'_>, args: &[&str]) -> Output {
    let mut cmd = client(program, mode);
    cmd.args(args);
    run_with_timeout(cmd, TIMEOUT).expect("run client")
}

fn spawn_bystander(sock: &Path) -> JoinHandle<Output> {
    let sock = sock.to_path_buf();
    std::thread::spawn(move || run(APP, Mode::Venus(&sock), BYSTANDER_CASES))
}

fn attack(scenario: &str) {
    let native = run(APP, Mode::Native, BYSTANDER_CASES);
    assert!(native.status.success(), "native: {}", text(&native));

    let mut daemon = Daemon::start(DAEMON, "ownership").expect("start daemon");
    let bystander = spawn_bystander(daemon.socket());
    let attacker = run(ATTACKER, Mode::Venus(daemon.socket()), &[scenario]);
    let out = String::from_utf8_lossy(&attacker.stdout).into_owned();
    assert!(
        !out.contains("went through") && !attacker.status.success(),
        "the cross-device {scenario} was not refused: {}\ndaemon log:\n{}",
        text(&attacker),
        daemon.log()
    );
    assert_eq!(daemon.exit_status(), None, "daemon died:\n{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("belongs to another device"),
        "the refusal is not logged with its cause:\n{log}"
    );

    let venus = bystander.join().expect("join bystander");
    assert!(
        venus.status.success(),
        "bystander failed: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&venus), case_lines(&native), "bystander results");
    let report = probe::probe(daemon.socket()).expect("a new client is served");
    assert!(!report.lines.is_empty());
}

#[test]
fn a_fill_of_another_devices_buffer_is_refused() {
    attack("fill");
}

#[test]
fn a_copy_into_another_devices_buffer_is_refused() {
    attack("copy");
}

#[test]
fn binding_another_devices_memory_is_refused() {
    attack("bind");
}
