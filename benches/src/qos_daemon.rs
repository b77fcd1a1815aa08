//! The daemon side of the real-path QoS benches: a `vhost-user-vgpu vtest` on lavapipe
//! (`LP_NUM_THREADS=1`) with a control socket, read and steered through `ctl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vgpu_device::qos::control_request;
use vgpu_tests::harness::{socket_path, LVP_ICD};

use crate::qos_client::Res;

/// A running daemon; killed and its sockets removed on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The vtest socket (`start`), or the first VM's (`start_config`).
    pub socket: PathBuf,
    /// The control socket.
    pub control: PathBuf,
    /// Further sockets to remove on drop (`start_config`).
    extra: Vec<PathBuf>,
}

impl Daemon {
    /// `vtest --isolation thread --qos-policy POLICY` on one socket, each connection a
    /// VM of its own.
    pub fn start(bin: &Path, policy: &str) -> Res<Self> {
        let socket = socket_path("qos-real");
        let control = socket.with_extension("ctl");
        let child = Command::new(bin)
            .args([
                "vtest",
                "--isolation",
                "thread",
                "--qos-policy",
                policy,
                "--socket",
            ])
            .arg(&socket)
            .arg("--control-socket")
            .arg(&control)
            .env("VK_DRIVER_FILES", LVP_ICD)
            .env("LP_NUM_THREADS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let start = Instant::now();
        while !socket.exists() || !control.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("daemon sockets did not appear".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            socket,
            control,
            extra: Vec::new(),
        })
    }

    /// `vtest --config FILE`: `config` is the file's text, written to a temporary
    /// file; `sockets` are the vtest sockets it names (the first is `socket`) and
    /// `control` its `control_socket`. Waits until they all exist.
    pub fn start_config(
        bin: &Path,
        config: &str,
        sockets: &[PathBuf],
        control: &Path,
    ) -> Res<Self> {
        let file = control.with_extension("toml");
        std::fs::write(&file, config)?;
        let child = Command::new(bin)
            .args(["vtest", "--config"])
            .arg(&file)
            .env("VK_DRIVER_FILES", LVP_ICD)
            .env("LP_NUM_THREADS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let mut extra: Vec<PathBuf> = sockets.iter().skip(1).cloned().collect();
        extra.push(file);
        let d = Self {
            child,
            socket: sockets.first().ok_or("no socket")?.clone(),
            control: control.to_path_buf(),
            extra,
        };
        let start = Instant::now();
        while !sockets.iter().all(|s| s.exists()) || !control.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("daemon sockets did not appear".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    /// One control request; an `error` answer is an error.
    pub fn ctl(&self, line: &str) -> Res<String> {
        let a = control_request(&self.control, line)?;
        if a.starts_with("error") {
            return Err(format!("ctl {line}: {a}").into());
        }
        Ok(a)
    }

    /// `(vm, submissions, device_ms)` per attached VM.
    pub fn list(&self) -> Res<Vec<(String, u64, f64)>> {
        Ok(self
            .ctl("list")?
            .lines()
            .skip(1)
            .map(|l| {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .unwrap_or("0")
                        .to_owned()
                };
                (
                    l.split_whitespace().next().unwrap_or("").to_owned(),
                    field("submissions=").parse().unwrap_or(0),
                    field("device_ms=").parse().unwrap_or(0.0),
                )
            })
            .collect())
    }

    /// Waits until a VM not in `known` attaches and returns its name.
    pub fn new_vm(&self, known: &[String]) -> Res<String> {
        let start = Instant::now();
        loop {
            if let Some((vm, _, _)) = self
                .list()?
                .into_iter()
                .find(|(v, _, _)| !known.contains(v))
            {
                return Ok(vm);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err("a client did not attach".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until no VM is attached.
    pub fn wait_empty(&self) -> Res<()> {
        let start = Instant::now();
        while !self.list()?.is_empty() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("VMs did not detach".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.control);
        for s in &self.extra {
            let _ = std::fs::remove_file(s);
        }
    }
}
