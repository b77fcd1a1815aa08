//! The control socket: a unix stream socket with a line protocol, one request per
//! connection, answered in plain text and closed.
//!
//! | request | answer |
//! |---|---|
//! | `list` | `policy NAME`, then one line per VM with its live figures |
//! | `set VM share=PCT [cap=PCT\|none]` | `ok` or `error: …` (VM: its name or `vmN`) |
//! | `policy NAME` | `ok` or `error: …` |
//! | `metrics` | the Prometheus text exposition |
//!
//! Changes apply to the live arbiter: nothing queued is lost.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vgpu_scheduler::Share;

use super::{parse_policy, render_metrics, QosError, QosHandle, Result};

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;

/// The control socket's server thread; removes the socket and joins when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket) and serves requests for `handle`.
    pub fn bind(path: &Path, handle: QosHandle) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("vgpu-control".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        if let Ok(c) = conn {
                            serve_one(c, &handle);
                        }
                    }
                })?
        };
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(conn: UnixStream, handle: &QosHandle) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let Ok(reader) = conn.try_clone() else {
        return;
    };
    if BufReader::new(reader.take(MAX_LINE))
        .read_line(&mut line)
        .is_err()
    {
        return;
    }
    let answer = match execute(line.trim(), handle) {
        Ok(text) => text,
        Err(e) => format!("error: {}\n", crate::error_chain(&e)),
    };
    let mut conn = conn;
    let _ = conn.write_all(answer.as_bytes());
}

fn percent(v: &str) -> Result<Share> {
    let p: f64 = v
        .trim_end_matches('%')
        .parse()
        .map_err(|_| QosError::Malformed("a share is a percentage, e.g. 66.7"))?;
    Ok(Share::from_percent(p)?)
}

fn ppm_percent(ppm: u32) -> f64 {
    f64::from(ppm) / 10_000.0
}

/// Runs one control request and returns its answer.
pub fn execute(line: &str, handle: &QosHandle) -> Result<String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("list") => {
            let (policy, vms) = handle.snapshot()?;
            let mut out = format!("policy {}\n", policy.name());
            for v in vms {
                let cap = v
                    .cap_ppm
                    .map_or_else(|| "none".to_owned(), |c| format!("{}", ppm_percent(c)));
                out.push_str(&format!(
                    "{} name={:?} share={} cap={} device_ms={:.3} submissions={} grants={} \
                     queued={} throttled_ms={:.3} stalls={} failures={} memory_mib={}\n",
                    v.id,
                    v.name,
                    ppm_percent(v.share_ppm),
                    cap,
                    v.device_ns as f64 / 1e6,
                    v.submissions,
                    v.grants,
                    v.queued,
                    v.throttled_ns as f64 / 1e6,
                    v.stalls,
                    v.failures,
                    v.memory_bytes.map_or_else(
                        || "?".to_owned(),
                        |b| format!("{:.1}", b as f64 / 1048576.0)
                    ),
                ));
            }
            Ok(out)
        }
        Some("set") => {
            let vm = words
                .next()
                .ok_or(QosError::Malformed("set VM share=PCT [cap=PCT|none]"))?;
            let (mut share, mut cap) = (None, None);
            for w in words {
                match w.split_once('=') {
                    Some(("share", v)) => share = Some(percent(v)?),
                    Some(("cap", "none")) => cap = Some(None),
                    Some(("cap", v)) => cap = Some(Some(percent(v)?)),
                    _ => return Err(QosError::Malformed("set takes share=PCT and cap=PCT|none")),
                }
            }
            handle.update(vm, share, cap)?;
            Ok("ok\n".to_owned())
        }
        Some("policy") => {
            let name = words.next().ok_or(QosError::Malformed("policy NAME"))?;
            handle.set_policy(parse_policy(name)?)?;
            Ok("ok\n".to_owned())
        }
        Some("metrics") => render_metrics(handle),
        _ => Err(QosError::Malformed("requests: list, set, policy, metrics")),
    }
}

/// Sends one request line to a control socket and returns the answer (for `ctl`).
pub fn control_request(path: &Path, line: &str) -> Result<String> {
    let mut conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(line.as_bytes())?;
    conn.write_all(b"\n")?;
    let mut out = String::new();
    conn.read_to_string(&mut out)?;
    Ok(out)
}
