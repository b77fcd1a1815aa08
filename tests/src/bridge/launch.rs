//! Starts `vhost-user-vgpu serve` and the bridge in front of it for the end-to-end
//! tests: the bridge's vtest socket is then used exactly like the vtest daemon's
//! ([`crate::harness::Mode::Venus`]), so every harness client runs unchanged "through
//! vhost-user".

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{socket_path, Mode, LVP_ICD};

/// The daemon (`serve`, on lavapipe) and the bridge; both killed on drop.
#[derive(Debug)]
pub struct VhostChain {
    daemon: Child,
    bridge: Option<Child>,
    vhost_socket: PathBuf,
    vtest_socket: PathBuf,
    daemon_log: PathBuf,
    bridge_log: PathBuf,
}

fn wait_for(path: &Path, child: &mut Child, what: &str) -> io::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("{what} exited early: {status}")));
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(io::Error::other(format!("{what} socket did not appear")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl VhostChain {
    /// Starts `daemon --socket A` (a `serve` front door: `vhost-serve-daemon`, or
    /// `vhost-user-vgpu` with `serve` in `daemon_args`) with lavapipe as host driver,
    /// then `bridge --vhost-socket A --vtest-socket B`, and waits for B.
    pub fn start(daemon: &str, daemon_args: &[&str], bridge: &str, tag: &str) -> io::Result<Self> {
        let vhost_socket = socket_path(&format!("{tag}-vhost"));
        let vtest_socket = socket_path(&format!("{tag}-vtest"));
        let daemon_log = vhost_socket.with_extension("log");
        let bridge_log = vtest_socket.with_extension("log");
        let daemon = Command::new(daemon)
            .args(daemon_args)
            .arg("--socket")
            .arg(&vhost_socket)
            .env("VK_DRIVER_FILES", LVP_ICD)
            .env_remove("VK_ICD_FILENAMES")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&daemon_log)?)
            .spawn()?;
        let mut chain = Self {
            daemon,
            bridge: None,
            vhost_socket,
            vtest_socket,
            daemon_log,
            bridge_log,
        };
        wait_for(&chain.vhost_socket, &mut chain.daemon, "vhost-user daemon")
            .map_err(|e| chain.annotate(e))?;
        let bridge = Command::new(bridge)
            .arg("--vhost-socket")
            .arg(&chain.vhost_socket)
            .arg("--vtest-socket")
            .arg(&chain.vtest_socket)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&chain.bridge_log)?)
            .spawn()?;
        let bridge = chain.bridge.insert(bridge);
        wait_for(&chain.vtest_socket, bridge, "bridge").map_err(|e| chain.annotate(e))?;
        Ok(chain)
    }

    fn annotate(&self, e: io::Error) -> io::Error {
        io::Error::other(format!("{e}\n{}", self.logs()))
    }

    /// The bridge's vtest socket.
    pub fn vtest_socket(&self) -> &Path {
        &self.vtest_socket
    }

    /// The harness mode that runs a client through the bridge.
    pub fn mode(&self) -> Mode<'_> {
        Mode::Venus(&self.vtest_socket)
    }

    /// Both logs so far.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "daemon log:\n{}\nbridge log:\n{}",
            read(&self.daemon_log),
            read(&self.bridge_log)
        )
    }

    /// The vhost-user socket the daemon listens on.
    pub fn vhost_socket(&self) -> &Path {
        &self.vhost_socket
    }

    /// The daemon's process id.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.id()
    }

    /// Waits up to `timeout` for the daemon to exit; `None` if it is still running.
    pub fn wait_daemon_exit(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<std::process::ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.daemon.try_wait()? {
                return Ok(Some(status));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether both processes are still running.
    pub fn alive(&mut self) -> bool {
        let daemon = matches!(self.daemon.try_wait(), Ok(None));
        let bridge = self
            .bridge
            .as_mut()
            .is_some_and(|b| matches!(b.try_wait(), Ok(None)));
        daemon && bridge
    }
}

impl Drop for VhostChain {
    fn drop(&mut self) {
        if let Some(b) = self.bridge.as_mut() {
            let _ = b.kill();
            let _ = b.wait();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        for p in [
            &self.vhost_socket,
            &self.vtest_socket,
            &self.daemon_log,
            &self.bridge_log,
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}
