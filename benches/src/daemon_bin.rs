//! Finding the `vhost-user-vgpu` binary for the report binaries (`venus_report`,
//! `vhost_report`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Error type of [`daemon_binary`].
pub type Error = Box<dyn std::error::Error>;

/// The daemon binary: `explicit` (the reports' `--daemon`), or built by cargo (when run
/// under `cargo run`) beside the calling executable, in the same profile.
pub fn daemon_binary(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(d) = explicit {
        return Ok(d.to_owned());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no executable directory")?;
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile_dir = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let target_dir = dir.parent().ok_or("no target directory")?;
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "vgpu-device",
            "--bin",
            "vhost-user-vgpu",
        ])
        .arg("--target-dir")
        .arg(target_dir);
        if profile_dir == "release" {
            cmd.arg("--release");
        }
        log_line(&format!("building the daemon: {cmd:?}"));
        if !cmd.status()?.success() {
            return Err("building vhost-user-vgpu failed".into());
        }
    }
    let bin = dir.join("vhost-user-vgpu");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: cargo build --release -p vgpu-device --bin vhost-user-vgpu, or --daemon PATH",
            bin.display()
        )
        .into())
    }
}

fn log_line(s: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{s}");
}
