//! The TOML config file (`vhost-user-vgpu serve --config FILE`, `vtest --config FILE`):
//! parsing with `serde` + `toml` into [`DaemonConfig`], with every error naming the
//! file, line, column, VM and key.
//!
//! Shape (every key is optional unless said; `docs/config.example.toml` documents
//! each one and its default):
//!
//! ```toml
//! policy = "fixed-share"          # best-effort | equal-share | fixed-share | burst
//! control_socket = "/run/vgpu/ctl.sock"
//! metrics = "127.0.0.1:9100"      # or "unix:/run/vgpu/metrics.sock"
//! shutdown_grace_ms = 5000
//!
//! [vtest]                         # every vtest socket of the daemon
//! max_clients = 64
//!
//! [worker]                        # vtest connections in worker processes
//! isolation = "process"           # or "thread"
//!
//! [defaults]                      # any per-VM key: the default of every [[vm]]
//! memory_mib = 2048
//!
//! [[vm]]
//! name = "a"                      # required
//! vtest_socket = "/run/vgpu/a.vtest"
//! vhost_user_socket = "/run/vgpu/a.sock"
//! share = 50                      # percent of the GPU
//! ```
//!
//! Every table refuses unknown keys (`deny_unknown_fields`). Values are checked
//! against their ranges here, with the value's position in the error, so a config that
//! parses is one the daemon can run.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use vgpu_scheduler::{LatencyClass, Policy, PolicyError, Share, VmConfig, VmId};

use super::{DaemonConfig, MetricsListen, VmName, VmSpec, VtestSettings, WorkerConfig};
use crate::worker::Isolation;

/// Errors of reading or checking a config (file or command line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading {path} failed")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Something at a place in the file is wrong.
    #[error("{file} line {line}, column {column}: {scope}{what}")]
    At {
        /// The file's name as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// `vm "a": `, `[vtest]: `, or empty.
        scope: String,
        /// What is wrong, naming the key.
        what: String,
    },
    /// Something about the file as a whole is wrong.
    #[error("{file}: {what}")]
    File {
        /// The file's name as given.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// The VMs' QoS settings do not fit together (shares past 100 %).
    #[error("{file}: invalid QoS settings")]
    Qos {
        /// The file's name as given.
        file: String,
        /// Cause.
        #[source]
        source: PolicyError,
    },
    /// A command-line flag has a bad value.
    #[error("command line: {what}")]
    Flag {
        /// What is wrong, naming the key (the flag is its name with dashes).
        what: String,
    },
    /// The command line and the config file do not fit together.
    #[error("{0}")]
    Usage(&'static str),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ConfigError>;

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<DaemonConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks config `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<DaemonConfig> {
    let at = Locator {
        text,
        file,
        flags: false,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
    raw.check(&at)
}

/// Turns byte offsets into `line, column` and names the table they are in.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
    /// Values come from command-line flags: errors name no position.
    flags: bool,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// The scope (`vm "a": `) of the table the byte at `offset` is in, found from
    /// the table headers before it; a VM is named if the file parses as TOML at all.
    fn scope_of(&self, offset: usize) -> String {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or("");
        let mut vm_index = None;
        let mut header = None;
        let mut vms = 0usize;
        for line in before.lines() {
            let t = line.trim_start();
            if t.starts_with("[[vm]]") {
                vm_index = Some(vms);
                vms += 1;
                header = None;
            } else if t.starts_with('[') {
                vm_index = None;
                header = t.split(']').next().map(|h| format!("{h}]"));
            }
        }
        if let Some(i) = vm_index {
            let name = toml::from_str::<toml::Table>(self.text).ok().and_then(|t| {
                t.get("vm")?
                    .as_array()?
                    .get(i)?
                    .get("name")?
                    .as_str()
                    .map(str::to_owned)
            });
            return match name {
                Some(n) => format!("vm {n:?}: "),
                None => format!("vm #{}: ", i + 1),
            };
        }
        header.map(|h| format!("{h}: ")).unwrap_or_default()
    }

    /// The key on the line at `offset` (`key = ...`), if any.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let start = self.text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(start..)?.lines().next()?;
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        (!key.is_empty() && !key.starts_with('[')).then(|| key.to_owned())
    }

    fn at(&self, span: &Range<usize>, what: String) -> ConfigError {
        if self.flags {
            return ConfigError::Flag { what };
        }
        let (line, column) = self.line_col(span.start);
        ConfigError::At {
            file: self.file.to_owned(),
            line,
            column,
            scope: self.scope_of(span.start),
            what,
        }
    }

    /// An error about the value of `key` at `span`.
    fn value<T>(&self, span: &Range<usize>, key: &str, must: &str) -> Result<T> {
        Err(self.at(span, format!("key {key:?} must be {must}")))
    }

    fn file(&self, what: String) -> ConfigError {
        ConfigError::File {
            file: self.file.to_owned(),
            what,
        }
    }

    /// A `toml`/`serde` error, with serde's wording turned into the key's name.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let msg = e.message().trim_end();
        let between_ticks = |s: &str| {
            let rest = s.split_once('`')?.1;
            rest.split_once('`').map(|(k, _)| k.to_owned())
        };
        let what = if let Some(rest) = msg.strip_prefix("unknown field ") {
            match between_ticks(rest) {
                Some(key) => format!("unknown key {key:?}"),
                None => msg.to_owned(),
            }
        } else if let Some(rest) = msg.strip_prefix("missing field ") {
            match between_ticks(rest) {
                Some(key) => format!("missing key {key:?}"),
                None => msg.to_owned(),
            }
        } else {
            match e.span().and_then(|s| self.key_at(s.start)) {
                Some(key) => format!("key {key:?}: {msg}"),
                None => msg.to_owned(),
            }
        };
        match e.span() {
            Some(span) => self.at(&span, what),
            None => self.file(what),
        }
    }
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    policy: Option<Spanned<String>>,
    control_socket: Option<PathBuf>,
    metrics: Option<Spanned<String>>,
    shutdown_grace_ms: Option<Spanned<u64>>,
    #[serde(default)]
    vtest: RawVtest,
    #[serde(default)]
    worker: RawWorker,
    defaults: Option<Spanned<RawVm>>,
    #[serde(default)]
    vm: Vec<Spanned<RawVm>>,
}

/// `[vtest]`: settings of every vtest socket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVtest {
    max_clients: Option<Spanned<u64>>,
    max_clients_per_pid: Option<Spanned<u64>>,
    max_clients_per_uid: Option<Spanned<u64>>,
    max_syncs: Option<Spanned<u64>>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    message_timeout_ms: Option<Spanned<u64>>,
    reply_timeout_ms: Option<Spanned<u64>>,
    max_message_mib: Option<Spanned<u64>>,
}

/// `[worker]`: daemon-wide worker-process settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    isolation: Option<Spanned<String>>,
    sandbox: Option<Spanned<bool>>,
    pool: Option<Spanned<u64>>,
    max_open_files: Option<Spanned<u64>>,
}

impl RawWorker {
    fn apply(&self, at: &Locator<'_>, w: &mut WorkerConfig) -> Result<()> {
        if let Some(v) = &self.isolation {
            w.isolation = match v.get_ref().parse::<Isolation>() {
                Ok(i) => i,
                Err(_) => return at.value(&v.span(), "isolation", "\"process\" or \"thread\""),
            };
        }
        if let Some(v) = &self.sandbox {
            w.sandbox = *v.get_ref();
        }
        if let Some(v) = &self.pool {
            w.pool = to_usize(ranged(at, v, "pool", 0, 64)?);
        }
        if let Some(v) = &self.max_open_files {
            w.max_open_files = ranged(at, v, "max_open_files", 64, 1 << 20)?;
        }
        Ok(())
    }
}

/// `[[vm]]` (and `[defaults]`, which takes every key but the first three).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Option<Spanned<String>>,
    vhost_user_socket: Option<Spanned<PathBuf>>,
    vtest_socket: Option<Spanned<PathBuf>>,
    // Venus limits.
    memory_mib: Option<Spanned<u64>>,
    max_instances: Option<Spanned<u64>>,
    max_devices: Option<Spanned<u64>>,
    max_objects: Option<Spanned<u64>>,
    max_blobs: Option<Spanned<u64>>,
    max_sync_waits: Option<Spanned<u64>>,
    // Per-context limits.
    max_rings: Option<Spanned<u64>>,
    max_ring_idle_timeout_us: Option<Spanned<u64>>,
    max_shmem_mib: Option<Spanned<u64>>,
    // QoS.
    share: Option<Spanned<f64>>,
    cap: Option<Spanned<f64>>,
    burst_ms: Option<Spanned<u64>>,
    latency: Option<Spanned<String>>,
    gpu_timeout_ms: Option<Spanned<u64>>,
    // vhost-user device.
    num_scanouts: Option<Spanned<u64>>,
    width: Option<Spanned<u64>>,
    height: Option<Spanned<u64>>,
    shm_size_mib: Option<Spanned<u64>>,
    max_2d_mib: Option<Spanned<u64>>,
    max_inflight_mib: Option<Spanned<u64>>,
    max_submit_mib: Option<Spanned<u64>>,
    offer_virgl: Option<Spanned<bool>>,
    frame_dir: Option<Spanned<PathBuf>>,
}

/// A milliseconds value from 1 ms to an hour.
const MS_RANGE: (u64, u64) = (1, 3_600_000);

/// Checks a number against `lo..=hi`.
fn ranged(at: &Locator<'_>, v: &Spanned<u64>, key: &str, lo: u64, hi: u64) -> Result<u64> {
    let n = *v.get_ref();
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        at.value(&v.span(), key, &format!("in {lo}..={hi}"))
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A share or cap in percent of the GPU, `0 < p <= 100`.
fn percent(at: &Locator<'_>, v: &Spanned<f64>, key: &str) -> Result<Share> {
    let p = *v.get_ref();
    if p.is_finite() && p > 0.0 && p <= 100.0 {
        if let Ok(s) = Share::from_percent(p) {
            return Ok(s);
        }
    }
    at.value(&v.span(), key, "a percentage in (0, 100]")
}

impl RawVtest {
    fn apply(&self, at: &Locator<'_>, s: &mut VtestSettings) -> Result<()> {
        let count = |v: &Option<Spanned<u64>>, key, into: &mut usize| -> Result<()> {
            if let Some(v) = v {
                *into = to_usize(ranged(at, v, key, 1, 4096)?);
            }
            Ok(())
        };
        count(&self.max_clients, "max_clients", &mut s.max_clients)?;
        count(
            &self.max_clients_per_pid,
            "max_clients_per_pid",
            &mut s.max_clients_per_pid,
        )?;
        count(
            &self.max_clients_per_uid,
            "max_clients_per_uid",
            &mut s.max_clients_per_uid,
        )?;
        if let Some(v) = &self.max_syncs {
            s.max_syncs = to_usize(ranged(at, v, "max_syncs", 1, 1 << 20)?);
        }
        let ms = |v: &Option<Spanned<u64>>, key, into: &mut Duration| -> Result<()> {
            if let Some(v) = v {
                *into = Duration::from_millis(ranged(at, v, key, MS_RANGE.0, MS_RANGE.1)?);
            }
            Ok(())
        };
        ms(
            &self.handshake_timeout_ms,
            "handshake_timeout_ms",
            &mut s.handshake_timeout,
        )?;
        ms(
            &self.message_timeout_ms,
            "message_timeout_ms",
            &mut s.message_timeout,
        )?;
        ms(
            &self.reply_timeout_ms,
            "reply_timeout_ms",
            &mut s.reply_timeout,
        )?;
        if let Some(v) = &self.max_message_mib {
            s.max_message_bytes = to_usize(ranged(at, v, "max_message_mib", 1, 256)?) << 20;
        }
        Ok(())
    }
}

impl RawVm {
    /// Applies every key but the name and sockets onto `vm`; `share` receives the
    /// share if one is set.
    fn apply(&self, at: &Locator<'_>, vm: &mut VmSpec, share: &mut Option<Share>) -> Result<()> {
        let num = |v: &Option<Spanned<u64>>, key, lo, hi| -> Result<Option<u64>> {
            v.as_ref().map(|v| ranged(at, v, key, lo, hi)).transpose()
        };
        let l = &mut vm.limits;
        if let Some(v) = num(&self.memory_mib, "memory_mib", 1, 1 << 30)? {
            l.memory_mib = Some(v);
        }
        let max32 = u64::from(u32::MAX);
        if let Some(v) = num(&self.max_instances, "max_instances", 1, max32)? {
            l.max_instances = to_u32(v);
        }
        if let Some(v) = num(&self.max_devices, "max_devices", 1, max32)? {
            l.max_devices = to_u32(v);
        }
        if let Some(v) = num(&self.max_objects, "max_objects", 1, max32)? {
            l.max_objects = to_u32(v);
        }
        if let Some(v) = num(&self.max_blobs, "max_blobs", 1, max32)? {
            vm.fds.max_blobs = Some(to_u32(v));
        }
        if let Some(v) = num(&self.max_sync_waits, "max_sync_waits", 1, max32)? {
            vm.fds.max_sync_waits = Some(to_u32(v));
        }
        let c = &mut vm.context;
        if let Some(v) = num(&self.max_rings, "max_rings", 1, 1024)? {
            c.max_rings = to_usize(v);
        }
        if let Some(v) = num(
            &self.max_ring_idle_timeout_us,
            "max_ring_idle_timeout_us",
            0,
            3_600_000_000,
        )? {
            c.max_ring_idle_timeout = Duration::from_micros(v);
        }
        if let Some(v) = num(&self.max_shmem_mib, "max_shmem_mib", 1, 1 << 20)? {
            let total = v << 20;
            c.limits.max_shmem_total = total;
            c.limits.max_shmem_size = c.limits.max_shmem_size.min(total);
        }
        if let Some(v) = &self.share {
            *share = Some(percent(at, v, "share")?);
        }
        if let Some(v) = &self.cap {
            vm.qos.cap = Some(percent(at, v, "cap")?);
        }
        if let Some(v) = num(&self.burst_ms, "burst_ms", 1, MS_RANGE.1)? {
            vm.qos.burst_ns = Some(v.saturating_mul(1_000_000));
        }
        if let Some(v) = &self.latency {
            vm.qos.latency = match v.get_ref().as_str() {
                "interactive" => LatencyClass::Interactive,
                "batch" => LatencyClass::Batch,
                _ => return at.value(&v.span(), "latency", "\"interactive\" or \"batch\""),
            };
        }
        if let Some(v) = num(
            &self.gpu_timeout_ms,
            "gpu_timeout_ms",
            MS_RANGE.0,
            MS_RANGE.1,
        )? {
            vm.gpu_timeout = Duration::from_millis(v);
        }
        let d = &mut vm.device;
        if let Some(v) = num(&self.num_scanouts, "num_scanouts", 1, 16)? {
            d.handler.num_scanouts = to_usize(v);
        }
        if let Some(v) = num(&self.width, "width", 1, 16384)? {
            d.handler.width = to_u32(v);
        }
        if let Some(v) = num(&self.height, "height", 1, 16384)? {
            d.handler.height = to_u32(v);
        }
        if let Some(v) = num(&self.shm_size_mib, "shm_size_mib", 0, 1 << 20)? {
            d.handler.shm_size = v << 20;
        }
        if let Some(v) = num(&self.max_2d_mib, "max_2d_mib", 1, 1 << 20)? {
            d.handler.max_2d_bytes = v << 20;
        }
        if let Some(v) = num(&self.max_inflight_mib, "max_inflight_mib", 1, 1 << 16)? {
            d.handler.max_inflight_bytes = v << 20;
        }
        if let Some(v) = num(&self.max_submit_mib, "max_submit_mib", 1, 1024)? {
            d.handler.max_submit_bytes = to_u32(v << 20);
        }
        if let Some(v) = &self.offer_virgl {
            d.offer_virgl = *v.get_ref();
        }
        if let Some(v) = &self.frame_dir {
            d.frame_dir = Some(v.get_ref().clone());
        }
        Ok(())
    }
}

impl RawFile {
    fn check(self, at: &Locator<'_>) -> Result<DaemonConfig> {
        let mut config = DaemonConfig::default();
        if let Some(p) = &self.policy {
            config.policy = match Policy::ALL.iter().find(|x| x.name() == p.get_ref()) {
                Some(&policy) => policy,
                None => {
                    return at.value(
                        &p.span(),
                        "policy",
                        "best-effort, equal-share, fixed-share or burst",
                    )
                }
            };
        }
        config.control_socket = self.control_socket;
        if let Some(m) = &self.metrics {
            config.metrics = Some(parse_metrics(m.get_ref()).ok_or_else(|| {
                at.at(
                    &m.span(),
                    "key \"metrics\" must be a loopback address (127.0.0.1:9100) or \
                     unix:PATH"
                        .to_owned(),
                )
            })?);
        }
        if let Some(v) = &self.shutdown_grace_ms {
            config.shutdown_grace =
                Duration::from_millis(ranged(at, v, "shutdown_grace_ms", 0, MS_RANGE.1)?);
        }
        self.vtest.apply(at, &mut config.vtest)?;
        self.worker.apply(at, &mut config.worker)?;
        let mut template_share = None;
        if let Some(d) = &self.defaults {
            let raw = d.get_ref();
            let named = [
                ("name", raw.name.as_ref().map(Spanned::span)),
                (
                    "vhost_user_socket",
                    raw.vhost_user_socket.as_ref().map(Spanned::span),
                ),
                ("vtest_socket", raw.vtest_socket.as_ref().map(Spanned::span)),
            ];
            if let Some((key, Some(span))) = named.into_iter().find(|(_, s)| s.is_some()) {
                return Err(at.at(
                    &span,
                    format!("key {key:?} belongs in a [[vm]] table, not in [defaults]"),
                ));
            }
            raw.apply(at, &mut config.template, &mut template_share)?;
        }
        let mut shares: Vec<Option<Share>> = Vec::with_capacity(self.vm.len());
        let mut names = HashSet::new();
        let mut sockets = HashSet::new();
        for raw in &self.vm {
            let table = raw.get_ref();
            let Some(name) = &table.name else {
                return Err(at.at(&raw.span(), "missing key \"name\"".to_owned()));
            };
            let vm_name = VmName::new(name.get_ref()).ok_or_else(|| {
                at.at(
                    &name.span(),
                    format!(
                        "key \"name\" must be 1..={} characters of A-Z a-z 0-9 . _ -",
                        VmName::MAX_LEN
                    ),
                )
            })?;
            if !names.insert(vm_name.clone()) {
                return Err(at.at(
                    &name.span(),
                    format!("VM name {:?} is used twice", vm_name.as_str()),
                ));
            }
            let mut vm = config.template.clone();
            vm.name = vm_name;
            for (key, socket) in [
                ("vhost_user_socket", &table.vhost_user_socket),
                ("vtest_socket", &table.vtest_socket),
            ] {
                let Some(socket) = socket else { continue };
                if !sockets.insert(socket.get_ref().clone()) {
                    return Err(at.at(
                        &socket.span(),
                        format!(
                            "key {key:?}: socket {} is used twice",
                            socket.get_ref().display()
                        ),
                    ));
                }
            }
            vm.vhost_user_socket = table
                .vhost_user_socket
                .as_ref()
                .map(|s| s.get_ref().clone());
            vm.vtest_socket = table.vtest_socket.as_ref().map(|s| s.get_ref().clone());
            if vm.vhost_user_socket.is_none() && vm.vtest_socket.is_none() {
                return Err(at.at(
                    &name.span(),
                    "a VM needs a vhost_user_socket or a vtest_socket".to_owned(),
                ));
            }
            let mut share = template_share;
            table.apply(at, &mut vm, &mut share)?;
            shares.push(share);
            config.vms.push(vm);
        }
        if let Some(path) = &config.control_socket {
            if sockets.contains(path) {
                return Err(at.file(format!(
                    "control_socket {} is also a VM's socket",
                    path.display()
                )));
            }
        }
        fill_shares(&mut config.vms, &shares).map_err(|what| at.file(what))?;
        let ids = (0u32..).map(VmId);
        vgpu_scheduler::policy::validate(ids.zip(config.vms.iter().map(|vm| &vm.qos))).map_err(
            |source| ConfigError::Qos {
                file: at.file.to_owned(),
                source,
            },
        )?;
        Ok(config)
    }
}

/// Gives every VM without a `share` an equal part of what the VMs with one leave.
fn fill_shares(vms: &mut [VmSpec], shares: &[Option<Share>]) -> std::result::Result<(), String> {
    let given: u64 = shares.iter().flatten().map(|s| u64::from(s.ppm())).sum();
    let unset = shares.iter().filter(|s| s.is_none()).count();
    let left = u64::from(vgpu_scheduler::PPM).saturating_sub(given);
    let each = u64::try_from(unset)
        .ok()
        .filter(|&n| n > 0)
        .map_or(0, |n| left / n);
    for (vm, share) in vms.iter_mut().zip(shares) {
        vm.qos.share = match share {
            Some(s) => *s,
            None => Share::from_ppm(each).map_err(|_| {
                format!(
                    "VM {:?} has no share and the others reserve the whole GPU",
                    vm.name.as_str()
                )
            })?,
        };
    }
    Ok(())
}

/// `127.0.0.1:9100` (loopback only) or `unix:/path`.
fn parse_metrics(s: &str) -> Option<MetricsListen> {
    if let Some(path) = s.strip_prefix("unix:") {
        return (!path.is_empty()).then(|| MetricsListen::Unix(PathBuf::from(path)));
    }
    let addr: std::net::SocketAddr = s.parse().ok()?;
    addr.ip().is_loopback().then_some(MetricsListen::Tcp(addr))
}

/// The default QoS of a VM before the file says otherwise.
pub(super) fn default_qos() -> VmConfig {
    VmConfig::new(Share::FULL)
}

/// Settings given as command-line flags (each named as its config key, with dashes
/// for underscores); they override the file: `[vtest]` keys for every vtest socket,
/// per-VM keys for every VM (and the single-socket VM).
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct Flags {
    pub max_clients: Option<u64>,
    pub max_clients_per_pid: Option<u64>,
    pub max_clients_per_uid: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
    pub message_timeout_ms: Option<u64>,
    pub reply_timeout_ms: Option<u64>,
    pub max_message_mib: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_shmem_mib: Option<u64>,
    pub max_rings: Option<u64>,
    pub max_ring_idle_timeout_us: Option<u64>,
    pub memory_mib: Option<u64>,
    pub max_instances: Option<u64>,
    pub max_devices: Option<u64>,
    pub max_objects: Option<u64>,
    pub max_blobs: Option<u64>,
    pub max_sync_waits: Option<u64>,
    pub gpu_timeout_ms: Option<u64>,
    pub isolation: Option<Isolation>,
    pub worker_pool: Option<u64>,
}

/// Applies `flags` over `config` (its `[vtest]` settings, its template and every
/// VM), with the same checks as the file.
pub fn apply_flags(config: &mut DaemonConfig, flags: &Flags) -> Result<()> {
    let at = Locator {
        text: "",
        file: "command line",
        flags: true,
    };
    let s = |v: Option<u64>| v.map(|v| Spanned::new(0..0, v));
    let vtest = RawVtest {
        max_clients: s(flags.max_clients),
        max_clients_per_pid: s(flags.max_clients_per_pid),
        max_clients_per_uid: s(flags.max_clients_per_uid),
        max_syncs: None,
        handshake_timeout_ms: s(flags.handshake_timeout_ms),
        message_timeout_ms: s(flags.message_timeout_ms),
        reply_timeout_ms: s(flags.reply_timeout_ms),
        max_message_mib: s(flags.max_message_mib),
    };
    vtest.apply(&at, &mut config.vtest)?;
    if let Some(i) = flags.isolation {
        config.worker.isolation = i;
    }
    if let Some(v) = &s(flags.worker_pool) {
        config.worker.pool = to_usize(ranged(&at, v, "worker_pool", 0, 64)?);
    }
    if let Some(v) = &s(flags.shutdown_grace_ms) {
        config.shutdown_grace =
            Duration::from_millis(ranged(&at, v, "shutdown_grace_ms", 0, MS_RANGE.1)?);
    }
    let vm = RawVm {
        max_shmem_mib: s(flags.max_shmem_mib),
        max_rings: s(flags.max_rings),
        max_ring_idle_timeout_us: s(flags.max_ring_idle_timeout_us),
        memory_mib: s(flags.memory_mib),
        max_instances: s(flags.max_instances),
        max_devices: s(flags.max_devices),
        max_objects: s(flags.max_objects),
        max_blobs: s(flags.max_blobs),
        max_sync_waits: s(flags.max_sync_waits),
        gpu_timeout_ms: s(flags.gpu_timeout_ms),
        ..RawVm::default()
    };
    let mut unused_share = None;
    vm.apply(&at, &mut config.template, &mut unused_share)?;
    for spec in &mut config.vms {
        vm.apply(&at, spec, &mut unused_share)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
