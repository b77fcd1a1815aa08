//! End-to-end: vhost-user (virtio-gpu) contexts in worker processes (issue 12), through
//! the bridge with unmodified Mesa Venus clients. Each context runs in a worker of
//! its own (`w:gpu-<ctx>` beside the daemon); a worker killed by SIGKILL, the real
//! lavapipe crash (a descriptor array indexed out of range: SIGSEGV) and a
//! never-ending shader (the GPU-hang deadline) each end only that context: the
//! daemon logs the death, lives on, and a client started afterwards computes bit for
//! bit on the same frontend.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vgpu_tests::bridge::launch::VhostChain;
use vgpu_tests::harness::{
    case_lines, children, client, output_text as text, run_with_timeout, wait_until, Mode,
};

const SERVE: &str = env!("CARGO_BIN_EXE_vhost-serve-daemon");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const COMPUTE: &str = env!("CARGO_BIN_EXE_compute-app");
const CRASH: &str = env!("CARGO_BIN_EXE_crash-app");
const TIMEOUT: Duration = Duration::from_secs(240);

/// A chain whose VM has `gpu_timeout_ms` (the daemon's default isolation: workers).
fn chain(tag: &str, gpu_timeout_ms: u64) -> VhostChain {
    let config = std::env::temp_dir().join(format!("vgpu-{tag}-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!("[defaults]\ngpu_timeout_ms = {gpu_timeout_ms}\n"),
    )
    .expect("config file");
    let path = config.to_str().expect("utf-8 path");
    let chain = VhostChain::start(SERVE, &["--config", path], BRIDGE, tag).expect("chain");
    let _ = std::fs::remove_file(&config);
    chain
}

/// The daemon's worker processes serving a virtio-gpu context.
fn gpu_workers(daemon: u32) -> Vec<u32> {
    children(daemon)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with("w:gpu-"))
        })
        .collect()
}

fn native() -> Vec<String> {
    let out = run_with_timeout(client(COMPUTE, Mode::Native), TIMEOUT).expect("native");
    assert!(out.status.success(), "{}", text(&out));
    case_lines(&out)
}

fn compute_matches(socket: &Path, native: &[String], logs: &dyn Fn() -> String) {
    let out = run_with_timeout(client(COMPUTE, Mode::Venus(socket)), TIMEOUT).expect("venus");
    assert!(out.status.success(), "{}\n{}", text(&out), logs());
    assert_eq!(case_lines(&out), native, "results differ\n{}", logs());
}

/// Runs `crash-app case` through the chain; it must end, and not succeed.
fn crash(chain: &VhostChain, case: &str) {
    let mut cmd = client(CRASH, chain.mode());
    cmd.arg(case);
    let out = run_with_timeout(cmd, Duration::from_secs(90)).expect("crash-app");
    assert!(
        !out.status.success(),
        "crash-app {case} succeeded?\n{}\n{}",
        text(&out),
        chain.logs()
    );
}

fn log_lines(chain: &VhostChain, needle: &str) -> usize {
    chain
        .logs()
        .lines()
        .filter(|l| l.contains("virtio-gpu: VM") && l.contains(needle))
        .count()
}

#[test]
fn each_context_runs_in_a_worker_and_its_death_ends_only_that_context() {
    let chain = chain("gpu-workers", 60_000);
    let daemon = chain.daemon_pid();
    let native = native();

    // A busy client: its context is a worker of its own, which we kill.
    let mut busy = client(CRASH, chain.mode())
        .arg("busy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash-app busy");
    let mut workers = Vec::new();
    let found = wait_until(Duration::from_secs(60), || {
        workers = gpu_workers(daemon);
        !workers.is_empty()
    });
    if !found {
        let _ = busy.kill();
        panic!("no w:gpu- worker beside the daemon\n{}", chain.logs());
    }
    std::thread::sleep(Duration::from_millis(300));
    for pid in &workers {
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
    }
    let ended = wait_until(Duration::from_secs(60), || {
        busy.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = busy.kill();
        panic!(
            "the client of a killed worker did not end\n{}",
            chain.logs()
        );
    }
    let status = busy.wait().expect("wait");
    assert!(!status.success(), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(10), || log_lines(
            &chain,
            "killed by SIGKILL"
        ) == 1),
        "{}",
        chain.logs()
    );

    // The real lavapipe crash.
    crash(&chain, "desc_crash");
    assert!(
        wait_until(Duration::from_secs(10), || log_lines(&chain, "SIGSEGV")
            == 1),
        "{}",
        chain.logs()
    );

    // The frontend and the daemon serve on.
    compute_matches(chain.vtest_socket(), &native, &|| chain.logs());
    assert!(
        wait_until(Duration::from_secs(20), || gpu_workers(daemon).len() <= 1),
        "workers left behind: {:?}",
        gpu_workers(daemon)
    );
}

#[test]
fn a_hung_worker_is_killed_at_the_gpu_timeout() {
    // 10 s: the compute suite afterwards must not be mistaken for a hang on a loaded
    // two-core machine (see `hang_in_daemon.rs`).
    let chain = chain("gpu-hang", 10_000);
    let native = native();
    let start = Instant::now();
    crash(&chain, "hang");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(
        wait_until(Duration::from_secs(10), || log_lines(
            &chain,
            "GPU hang: work running"
        ) == 1),
        "{}",
        chain.logs()
    );
    compute_matches(chain.vtest_socket(), &native, &|| chain.logs());
}
