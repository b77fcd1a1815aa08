//! End-to-end (issue 10, safe object lifetimes): a client that destroys buffers, frees
//! their memory, destroys a command pool or a descriptor pool (with the set, pipeline
//! and buffers it names) while a submitted copy or dispatch still uses them must not
//! crash the daemon. The daemon keeps every host object alive until the submissions
//! using it retire, so the attacker itself keeps working; a bystander running the
//! compute suite at the same time gets the native results, and the daemon serves a
//! new client afterwards.

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
const ATTACKER: &str = env!("CARGO_BIN_EXE_lifetime-attacker");
const TIMEOUT: Duration = Duration::from_secs(300);
/// What the bystander computes while the attack runs.
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
    assert_eq!(case_lines(&native).len(), BYSTANDER_CASES.len());

    let mut daemon = Daemon::start(DAEMON, "lifetimes").expect("start daemon");
    let bystander = spawn_bystander(daemon.socket());
    let attacker = run(ATTACKER, Mode::Venus(daemon.socket()), &[scenario]);
    assert_eq!(
        daemon.exit_status(),
        None,
        "the daemon died during the attack:\n{}\nattacker: {}",
        daemon.log(),
        text(&attacker)
    );
    // Destroying is deferred, not refused: the attacker's own context keeps working.
    assert!(
        attacker.status.success(),
        "attacker: {}\ndaemon log:\n{}",
        text(&attacker),
        daemon.log()
    );
    assert!(
        String::from_utf8_lossy(&attacker.stdout).contains(&format!("{scenario} done")),
        "attacker: {}",
        text(&attacker)
    );

    let venus = bystander.join().expect("join bystander");
    assert!(
        venus.status.success(),
        "bystander failed: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&venus), case_lines(&native), "bystander results");
    assert_eq!(daemon.exit_status(), None, "daemon died:\n{}", daemon.log());
    let report = probe::probe(daemon.socket()).expect("a new client is served");
    assert!(!report.lines.is_empty());
}

#[test]
fn destroying_buffers_and_memory_under_a_running_copy() {
    attack("buffers");
}

#[test]
fn destroying_a_command_pool_under_its_running_command_buffer() {
    attack("command_pool");
}

#[test]
fn destroying_a_descriptor_pool_and_what_its_set_names_under_a_dispatch() {
    attack("descriptors");
}

#[test]
fn resetting_a_pending_command_buffer_and_descriptor_pool() {
    attack("resets");
}
