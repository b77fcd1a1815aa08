//! End-to-end: per-VM limits against the vtest daemon (each connection is a VM) —
//! the device-memory quota through the real Mesa Venus driver, and the per-context
//! object limits with a raw client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use vgpu_tests::harness::{client, run_with_timeout, Daemon, Mode};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const QUOTA_APP: &str = env!("CARGO_BIN_EXE_quota-app");
const COMPUTE_APP: &str = env!("CARGO_BIN_EXE_compute-app");
const TIMEOUT: Duration = Duration::from_secs(240);

/// The quota the daemon runs with, and the chunk the app allocates (three fit, the
/// fourth does not).
const QUOTA_MIB: u64 = 64;
const CHUNK_MIB: u64 = 20;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn daemon(tag: &str, flags: &[&str]) -> Daemon {
    let mut cmd = Command::new(DAEMON);
    cmd.args(flags);
    Daemon::start_command(cmd, tag).expect("daemon")
}

/// `quota-app` through Venus. Mesa allocates asynchronously by default, so a refused
/// allocation would only show when the memory is first used;
/// `VN_PERF=no_async_mem_alloc` makes Mesa wait for the host's answer.
fn quota_app(daemon: &Daemon, hold: bool) -> Command {
    let mut cmd = client(QUOTA_APP, Mode::Venus(daemon.socket()));
    cmd.env("VN_PERF", "no_async_mem_alloc")
        .arg(CHUNK_MIB.to_string());
    if hold {
        cmd.arg("hold");
    }
    cmd
}

/// The value after `key ` on its line of `out`.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

fn case_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("device ") && !l.starts_with("api "))
        .map(str::to_owned)
        .collect()
}

/// A VM sees its quota as the heap size, can allocate up to it and no further
/// (`VK_ERROR_OUT_OF_DEVICE_MEMORY`), and can allocate again after a free; a second VM
/// in the same daemon, while the first holds its whole quota, gets the same quota and
/// runs the compute suite with the same results as native lavapipe.
#[test]
fn quota_is_the_heap_and_each_vm_has_its_own() {
    let daemon = daemon("quota", &["--memory-mib", &QUOTA_MIB.to_string()]);
    let mut first = quota_app(&daemon, true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn first client");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout"));
    let mut held = String::new();
    while !held.ends_with("holding\n") {
        let mut line = String::new();
        if lines.read_line(&mut line).expect("read") == 0 {
            panic!(
                "first client ended early:\n{held}\ndaemon log:\n{}",
                daemon.log()
            );
        }
        held.push_str(&line);
    }
    let quota = QUOTA_MIB << 20;
    assert_eq!(
        field(&held, "heap"),
        Some(quota.to_string().as_str()),
        "{held}"
    );
    let fit = QUOTA_MIB / CHUNK_MIB;
    assert_eq!(
        field(&held, "allocated"),
        Some(fit.to_string().as_str()),
        "{held}"
    );
    assert_eq!(
        field(&held, "failed"),
        Some("ERROR_OUT_OF_DEVICE_MEMORY"),
        "{held}"
    );

    // The first VM holds its whole quota; the second still gets all of its own.
    let second = run_with_timeout(quota_app(&daemon, false), TIMEOUT).expect("second client");
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    assert_eq!(
        field(&out, "heap"),
        Some(quota.to_string().as_str()),
        "{out}"
    );
    assert_eq!(
        field(&out, "allocated"),
        Some(fit.to_string().as_str()),
        "{out}"
    );
    assert_eq!(field(&out, "realloc"), Some("SUCCESS"), "{out}");

    let native = run_with_timeout(client(COMPUTE_APP, Mode::Native), TIMEOUT).expect("native");
    assert!(native.status.success(), "{}", text(&native));
    let venus = run_with_timeout(client(COMPUTE_APP, Mode::Venus(daemon.socket())), TIMEOUT)
        .expect("compute through Venus");
    assert!(
        venus.status.success(),
        "{}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&native), case_lines(&venus), "results differ");

    // Closing stdin lets the first client free a chunk and allocate it again.
    drop(first.stdin.take());
    let mut rest = String::new();
    for line in lines.lines() {
        rest.push_str(&line.expect("read"));
        rest.push('\n');
    }
    assert!(first.wait().expect("wait").success(), "{rest}");
    assert_eq!(field(&rest, "realloc"), Some("SUCCESS"), "{rest}");
    let log = daemon.log();
    assert!(
        log.contains("device-memory quota of 64 MiB reached"),
        "no log line for the refusal:\n{log}"
    );
}
