//! Runs the Venus daemon and client processes for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// lavapipe, the host driver.
pub const LVP_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.json";
/// Mesa's Venus guest driver.
pub const VIRTIO_ICD: &str = "/usr/share/vulkan/icd.d/virtio_icd.json";

/// A fresh socket path in the temp directory.
pub fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "vgpu-e2e-{tag}-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running `venus-daemon` on lavapipe; killed on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `bin --socket <fresh path>` with lavapipe as the host driver and waits
    /// for the socket to appear.
    pub fn start(bin: &str, tag: &str) -> std::io::Result<Self> {
        Self::start_command(Command::new(bin), tag)
    }

    /// Like [`Daemon::start`] for a prepared command (program, leading arguments such
    /// as `vtest`, extra environment such as `LP_NUM_THREADS`): appends `--socket
    /// <fresh path>`, selects lavapipe and waits for the socket to appear.
    pub fn start_command(mut cmd: Command, tag: &str) -> std::io::Result<Self> {
        let socket = socket_path(tag);
        let log = socket.with_extension("log");
        let child = cmd
            .arg("--socket")
            .arg(&socket)
            .env("VK_DRIVER_FILES", LVP_ICD)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let start = Instant::now();
        while !socket.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other("daemon socket did not appear"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, socket, log })
    }

    /// Starts `bin --config FILE` (every VM of a TOML config; `bin` is a daemon of
    /// this package) with lavapipe as the host driver and waits for every socket in
    /// `sockets`; [`Daemon::socket`] is the first of them.
    pub fn start_config(
        bin: &str,
        config: &Path,
        sockets: &[PathBuf],
        tag: &str,
    ) -> std::io::Result<Self> {
        let first = sockets
            .first()
            .ok_or_else(|| std::io::Error::other("no socket to wait for"))?;
        let log = socket_path(tag).with_extension("log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env("VK_DRIVER_FILES", LVP_ICD)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let daemon = Self {
            child,
            socket: first.clone(),
            log,
        };
        let start = Instant::now();
        while !sockets.iter().all(|s| s.exists()) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other(format!(
                    "daemon sockets did not appear:\n{}",
                    daemon.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's resident set size in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `None` while the daemon runs; its exit status (e.g. killed by SIGBUS) once it
    /// has died.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (a `kill -s` name such as `TERM`) to the daemon.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -s {signal} failed")))
        }
    }

    /// Waits up to `timeout` for the daemon to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // An orderly stop first, so the daemon removes the sockets it made (control,
        // metrics, every VM's vtest socket); killed only if it does not stop in time.
        let stopped = self.child.try_wait().ok().flatten().is_some()
            || (self.signal("TERM").is_ok()
                && self
                    .wait_exit(Duration::from_secs(2))
                    .ok()
                    .flatten()
                    .is_some());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Where a client runs.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'a> {
    /// Directly on lavapipe.
    Native,
    /// Through Venus to the daemon on this socket.
    Venus(&'a Path),
}

/// A command for `program` with the environment that selects `mode`.
pub fn client(program: &str, mode: Mode<'_>) -> Command {
    let mut cmd = Command::new(program);
    match mode {
        Mode::Native => {
            cmd.env("VK_DRIVER_FILES", LVP_ICD);
        }
        Mode::Venus(sock) => {
            cmd.env("VK_DRIVER_FILES", VIRTIO_ICD)
                .env("VN_DEBUG", "vtest")
                .env("VTEST_SOCKET_NAME", sock);
        }
    }
    cmd.env_remove("VK_ICD_FILENAMES");
    cmd
}

/// A client's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command to completion with a timeout (killing it if it overruns).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            return child.wait_with_output();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The result lines of a compute or graphics app (`<case> <digest> <bytes>`), without
/// the `device …` and `api …` lines that differ between native and Venus runs.
pub fn case_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("device ") && !l.starts_with("api "))
        .map(str::to_owned)
        .collect()
}

/// The child processes of `parent` (a daemon's worker processes).
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The child processes of `parent` whose name (`comm`) is `comm` (a worker serving
/// a client named N is called `w:N`).
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// Polls `ok` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: std::time::Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !ok() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}
