//! The worker sandbox: a worker started exactly as the daemon starts one (fds 3 and
//! 4, host driver preloaded, then no_new_privs, RLIMIT_NOFILE and the seccomp
//! filter on every thread) runs one probe (`worker --sandbox-self-test PROBE`).
//! Opening a file for writing fails with EACCES; creating a socket, connecting,
//! ptrace, execve and fork kill it with SIGSYS; reading a file still works (the
//! Vulkan loader needs it); and it holds no fd but stdin/out/err and its control
//! socket.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
/// `SIGSYS` on Linux (the seccomp kill).
const SIGSYS: i32 = 31;

fn probe(name: &str) -> Output {
    // Set once, before any worker starts (the worker inherits the environment).
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| std::env::set_var("VK_DRIVER_FILES", vgpu_tests::harness::LVP_ICD));
    vgpu_device::worker::sandbox_self_test(Path::new(DAEMON), name).expect("start the worker")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn killed_by_seccomp(name: &str) {
    let o = probe(name);
    assert_eq!(
        o.status.signal(),
        Some(SIGSYS),
        "{name}: expected SIGSYS, got {:?}; stdout {:?} stderr {:?}",
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout(&o).is_empty(),
        "{name}: the call returned: {}",
        stdout(&o)
    );
}

#[test]
fn opening_a_file_for_writing_fails_with_eacces() {
    let o = probe("write");
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("PermissionDenied"), "{out}");
}

#[test]
fn reading_a_file_still_works() {
    let o = probe("read");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "read: ok");
}

#[test]
fn creating_a_socket_kills_the_worker() {
    killed_by_seccomp("socket");
}

#[test]
fn connect_kills_the_worker() {
    killed_by_seccomp("connect");
}

#[test]
fn ptrace_kills_the_worker() {
    killed_by_seccomp("ptrace");
}

#[test]
fn execve_kills_the_worker() {
    killed_by_seccomp("execve");
}

#[test]
fn fork_kills_the_worker() {
    killed_by_seccomp("fork");
}

#[test]
fn the_worker_holds_only_its_own_fds() {
    let o = probe("fds");
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let fds: Vec<i32> = out
        .trim()
        .strip_prefix("fds:")
        .expect("an fds line")
        .split_whitespace()
        .map(|f| f.parse().expect("an fd number"))
        .collect();
    // stdin, stdout, stderr, the control socket (3), and the directory listing
    // /proc/self/fd itself; nothing of the daemon or of other workers, and the
    // hang page's fd was closed once mapped.
    assert_eq!(&fds[..4], &[0, 1, 2, 3], "{out}");
    assert!(fds.len() <= 5, "extra fds: {out}");
    eprintln!("sandboxed worker fds: {out}");
}
