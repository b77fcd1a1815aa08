//! The Prometheus text endpoint: per-VM figures from the arbiter service, encoded with
//! `prometheus-client`, served over HTTP/1.0 on a loopback TCP address or a unix socket
//! (`curl --unix-socket PATH http://x/metrics`). Every scrape takes a fresh snapshot.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{QosError, QosHandle, Result};
use crate::config::MetricsListen;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabels {
    vm: String,
    name: String,
}

/// Renders every VM's figures in the Prometheus text format.
pub fn render_metrics(handle: &QosHandle) -> Result<String> {
    let (policy, vms) = handle.snapshot()?;
    let mut registry = Registry::with_prefix("vgpu");
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let f = Family::<VmLabels, Counter>::default();
        registry.register(name, help, f.clone());
        f
    };
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let f = Family::<VmLabels, Gauge>::default();
        registry.register(name, help, f.clone());
        f
    };
    let device = counter(
        &mut registry,
        "vm_device_nanoseconds",
        "Measured device time",
    );
    let subs = counter(
        &mut registry,
        "vm_submissions",
        "Submissions sent to the host queue",
    );
    let grants = counter(&mut registry, "vm_grants", "Grants by the arbiter");
    let throttled = counter(
        &mut registry,
        "vm_throttled_nanoseconds",
        "Time submissions waited for their grant",
    );
    let stalls = counter(&mut registry, "vm_stalls", "Grants released as stalled");
    let refused = counter(
        &mut registry,
        "vm_refused",
        "Submissions refused by backpressure",
    );
    let failures = counter(&mut registry, "vm_context_failures", "Context failures");
    let queued = gauge(
        &mut registry,
        "vm_queue_depth",
        "Submissions waiting for a grant",
    );
    let share = gauge(
        &mut registry,
        "vm_share_ppm",
        "Configured share, parts per million",
    );
    let memory = gauge(
        &mut registry,
        "vm_memory_bytes",
        "Device memory the VM holds",
    );
    let policy_g = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register("policy", "The active policy (1)", policy_g.clone());
    policy_g
        .get_or_create(&vec![("policy".to_owned(), policy.name().to_owned())])
        .set(1);
    for v in vms {
        let l = VmLabels {
            vm: v.id.to_string(),
            name: v.name.clone(),
        };
        device.get_or_create(&l).inc_by(v.device_ns);
        subs.get_or_create(&l).inc_by(v.submissions);
        grants.get_or_create(&l).inc_by(v.grants);
        throttled.get_or_create(&l).inc_by(v.throttled_ns);
        stalls.get_or_create(&l).inc_by(v.stalls);
        refused.get_or_create(&l).inc_by(v.refused);
        failures.get_or_create(&l).inc_by(v.failures);
        queued
            .get_or_create(&l)
            .set(i64::try_from(v.queued).unwrap_or(i64::MAX));
        share.get_or_create(&l).set(i64::from(v.share_ppm));
        if let Some(b) = v.memory_bytes {
            memory
                .get_or_create(&l)
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|_| QosError::Malformed("metrics encoding"))?;
    Ok(out)
}

/// Reads a metrics address: `unix:PATH`, a loopback `IP:PORT`, or (anything else that
/// is not an `IP:PORT`) a unix socket path.
pub fn parse_metrics_listen(s: &str) -> Result<MetricsListen> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(QosError::Malformed("unix: needs a path"));
        }
        return Ok(MetricsListen::Unix(PathBuf::from(path)));
    }
    match s.parse::<SocketAddr>() {
        Ok(sa) if sa.ip().is_loopback() => Ok(MetricsListen::Tcp(sa)),
        Ok(_) => Err(QosError::Malformed("metrics TCP address must be loopback")),
        Err(_) if !s.is_empty() => Ok(MetricsListen::Unix(PathBuf::from(s))),
        Err(_) => Err(QosError::Malformed("empty metrics address")),
    }
}

/// Where the metrics endpoint listens.
#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The metrics endpoint's server thread.
#[derive(Debug)]
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Wake {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl MetricsServer {
    /// Serves on `addr` as [`parse_metrics_listen`] reads it.
    pub fn bind(addr: &str, handle: QosHandle) -> Result<Self> {
        Self::bind_listen(&parse_metrics_listen(addr)?, handle)
    }

    /// Serves on a loopback TCP address (port 0 picks one; see
    /// [`MetricsServer::local_addr`]) or a unix socket path.
    pub fn bind_listen(addr: &MetricsListen, handle: QosHandle) -> Result<Self> {
        let listener = match addr {
            MetricsListen::Tcp(sa) if sa.ip().is_loopback() => {
                Listener::Tcp(TcpListener::bind(sa)?)
            }
            MetricsListen::Tcp(_) => {
                return Err(QosError::Malformed("metrics TCP address must be loopback"))
            }
            MetricsListen::Unix(path) => {
                let _ = std::fs::remove_file(path);
                Listener::Unix(UnixListener::bind(path)?, path.clone())
            }
        };
        let wake = match &listener {
            Listener::Tcp(l) => Wake::Tcp(l.local_addr()?),
            Listener::Unix(_, p) => Wake::Unix(p.clone()),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("vgpu-metrics".into())
                .spawn(move || serve(&listener, &handle, &stop))?
        };
        Ok(Self {
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// The TCP address (when serving TCP).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self.wake {
            Wake::Tcp(a) => Some(a),
            Wake::Unix(_) => None,
        }
    }
}

fn answer(mut conn: impl Read + Write, handle: &QosHandle) {
    // Read the request head (any path is the metrics page).
    let mut head = [0u8; 2048];
    let mut got = 0;
    while got < head.len() {
        match conn.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if head[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let (status, body) = match render_metrics(handle) {
        Ok(b) => ("200 OK", b),
        Err(e) => ("503 Service Unavailable", format!("{e}\n")),
    };
    let _ = write!(
        conn,
        "HTTP/1.0 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; \
         charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

fn serve(listener: &Listener, handle: &QosHandle, stop: &AtomicBool) {
    let timeout = Some(Duration::from_secs(2));
    loop {
        match listener {
            Listener::Tcp(l) => {
                let Ok((c, _)) = l.accept() else { continue };
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let _ = c.set_read_timeout(timeout);
                let _ = c.set_write_timeout(timeout);
                answer(c, handle);
            }
            Listener::Unix(l, _) => {
                let Ok((c, _)) = l.accept() else { continue };
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let _ = c.set_read_timeout(timeout);
                let _ = c.set_write_timeout(timeout);
                answer(c, handle);
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        match &self.wake {
            Wake::Tcp(a) => drop(std::net::TcpStream::connect(a)),
            Wake::Unix(p) => drop(std::os::unix::net::UnixStream::connect(p)),
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Wake::Unix(p) = &self.wake {
            let _ = std::fs::remove_file(p);
        }
    }
}
