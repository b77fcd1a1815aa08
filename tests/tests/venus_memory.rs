//! End-to-end memory safety through the real Mesa Venus driver: copies with formats
//! past VkFormat 184 give native results, and a client binding a buffer or image outside
//! its allocation loses its own context (the bind is refused before the driver) while a
//! bystander's compute suite, running at the same time, still matches native and the
//! daemon serves new clients afterwards.

use std::process::Output;
use std::time::Duration;

use vgpu_tests::harness::{client, output_text as text, run_with_timeout, Daemon, Mode};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const MEMORY_APP: &str = env!("CARGO_BIN_EXE_memory-app");
const COMPUTE_APP: &str = env!("CARGO_BIN_EXE_compute-app");
const TIMEOUT: Duration = Duration::from_secs(240);
/// A hostile client whose context fails may be left waiting; it is killed after this.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(60);

fn run(app: &str, mode: Mode<'_>, cases: &[&str], timeout: Duration) -> Output {
    let mut cmd = client(app, mode);
    cmd.args(cases);
    run_with_timeout(cmd, timeout).expect("run client")
}

/// The result lines (everything after `device` and `api`).
fn results(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("device ") && !l.starts_with("api "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn formats_past_184_round_trip_like_native() {
    let daemon = Daemon::start(DAEMON, "formats").expect("daemon");
    let native = run(MEMORY_APP, Mode::Native, &["formats"], TIMEOUT);
    assert!(native.status.success(), "native: {}", text(&native));
    let listed = results(&native).first().cloned().unwrap_or_default();
    assert!(
        listed.len() > "formats ".len(),
        "lavapipe copies none of the formats, the test would check nothing: {listed}"
    );
    let venus = run(
        MEMORY_APP,
        Mode::Venus(daemon.socket()),
        &["formats"],
        TIMEOUT,
    );
    assert!(
        venus.status.success(),
        "Venus: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert!(
        String::from_utf8_lossy(&venus.stdout).contains("device Virtio-GPU Venus"),
        "{}",
        text(&venus)
    );
    assert_eq!(results(&native), results(&venus), "formats or bytes differ");
}

#[test]
fn binds_outside_the_allocation_fail_only_the_attacker() {
    let daemon = Daemon::start(DAEMON, "binds").expect("daemon");
    let sock = daemon.socket().to_path_buf();
    // The whole compute suite, started before the attackers connect.
    let cases = vgpu_tests::apps::CASES;
    let bystander = {
        let sock = sock.clone();
        std::thread::spawn(move || run(COMPUTE_APP, Mode::Venus(&sock), cases, TIMEOUT))
    };
    for attack in vgpu_tests::apps::memory::ATTACKS {
        let o = run(MEMORY_APP, Mode::Venus(&sock), &[attack], ATTACK_TIMEOUT);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !out.lines().any(|l| l.starts_with(attack)),
            "{attack}: the hostile fill completed: {}\ndaemon log:\n{}",
            text(&o),
            daemon.log()
        );
    }
    let o = bystander.join().expect("join");
    assert!(
        o.status.success(),
        "bystander failed: {}\ndaemon log:\n{}",
        text(&o),
        daemon.log()
    );
    let native = run(COMPUTE_APP, Mode::Native, cases, TIMEOUT);
    assert!(native.status.success(), "native: {}", text(&native));
    assert_eq!(
        results(&o),
        results(&native),
        "bystander differs from native"
    );

    // The daemon still serves a new client, with native results.
    let after = run(COMPUTE_APP, Mode::Venus(&sock), &["saxpy"], TIMEOUT);
    assert!(
        after.status.success(),
        "new client failed: {}\ndaemon log:\n{}",
        text(&after),
        daemon.log()
    );
    let native = run(COMPUTE_APP, Mode::Native, &["saxpy"], TIMEOUT);
    assert_eq!(results(&after), results(&native));

    let log = daemon.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("vkBind") && l.contains("refused memory bind"))
        .collect();
    assert_eq!(
        refusals.len(),
        vgpu_tests::apps::memory::ATTACKS.len(),
        "one refusal line per attacker naming the command:\n{log}"
    );
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("exceeds the allocation")),
        "{log}"
    );
}
