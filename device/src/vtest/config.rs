//! The vtest server's optional config file (`vhost-user-vgpu vtest --config FILE`):
//! `key = value` lines, `#` comments; command-line flags override it.
//!
//! ```text
//! max_clients = 64             # connections in all
//! max_clients_per_pid = 16     # connections one process may hold
//! max_clients_per_uid = 64     # connections one user may hold
//! handshake_timeout_ms = 5000  # connect → CONTEXT_INIT
//! message_timeout_ms = 10000   # first byte of a message → its last byte
//! reply_timeout_ms = 10000     # a reply the client does not read
//! max_message_mib = 16         # one vtest message
//! max_shmem_mib = 4096         # shared memory per context
//! max_rings = 64               # rings per context
//! max_ring_idle_timeout_us = 10000  # cap on a ring's idleTimeout (busy-poll time)
//! memory_mib = 4096           # device-memory quota per VM (default: largest host heap / 4)
//! max_instances = 8            # Vulkan instances per context
//! max_devices = 8              # Vulkan devices per context
//! max_objects = 1000000        # Vulkan objects per context
//! isolation = process          # each connection in a worker process (or `thread`)
//! gpu_timeout_ms = 5000        # a host fence pending longer kills the worker
//! worker_sandbox = true        # seccomp + no_new_privs + RLIMIT_NOFILE in workers
//! worker_max_open_files = 4096 # RLIMIT_NOFILE inside a worker
//! worker_pool = 1              # idle workers started ahead of clients
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::VtestConfig;

/// Invalid configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading {0} failed: {1}")]
    Read(PathBuf, String),
    /// A line is not `key = value`.
    #[error("line {0}: expected `key = value`")]
    Syntax(usize),
    /// Unknown key.
    #[error("line {0}: unknown key `{1}`")]
    UnknownKey(usize, String),
    /// Bad value.
    #[error("line {0}: `{1}` must be {2}")]
    Value(usize, String, &'static str),
}

impl VtestConfig {
    /// Applies a config file.
    pub fn load(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.to_owned(), e.to_string()))?;
        self.apply(&text)
    }

    /// Applies config text.
    pub fn apply(&mut self, text: &str) -> Result<(), ConfigError> {
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or(ConfigError::Syntax(n))?;
            self.set(n, key.trim(), value.trim())?;
        }
        Ok(())
    }

    /// Sets one key (`line` names it in errors).
    pub fn set(&mut self, line: usize, key: &str, value: &str) -> Result<(), ConfigError> {
        let num = |lo: u64, hi: u64, what| {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| (lo..=hi).contains(v))
                .ok_or_else(|| ConfigError::Value(line, key.to_owned(), what))
        };
        let count = |lo, hi, what| num(lo, hi, what).map(|v| usize::try_from(v).unwrap_or(1));
        let ms = |what| num(1, 3_600_000, what).map(Duration::from_millis);
        match key {
            "max_clients" => self.max_clients = count(1, 4096, "1..=4096")?,
            "max_clients_per_pid" => self.max_clients_per_pid = count(1, 4096, "1..=4096")?,
            "max_clients_per_uid" => self.max_clients_per_uid = count(1, 4096, "1..=4096")?,
            "handshake_timeout_ms" => self.handshake_timeout = ms("1..=3600000 (ms)")?,
            "message_timeout_ms" => self.message_timeout = ms("1..=3600000 (ms)")?,
            "reply_timeout_ms" => self.reply_timeout = ms("1..=3600000 (ms)")?,
            "max_message_mib" => self.max_message_bytes = count(1, 256, "1..=256")? << 20,
            "max_shmem_mib" => {
                let total = num(1, 1 << 20, "1..=1048576")? << 20;
                let limits = &mut self.context.limits;
                limits.max_shmem_total = total;
                limits.max_shmem_size = limits.max_shmem_size.min(total);
            }
            "max_rings" => self.context.max_rings = count(1, 1024, "1..=1024")?,
            "max_ring_idle_timeout_us" => {
                self.context.max_ring_idle_timeout =
                    Duration::from_micros(num(0, 3_600_000_000, "0..=3600000000 (µs)")?);
            }
            "memory_mib" => {
                self.venus.memory_mib = Some(num(1, 1 << 30, "1..=1073741824")?);
            }
            "max_instances" | "max_devices" | "max_objects" => {
                let v = u32::try_from(num(1, u64::from(u32::MAX), "1..=4294967295")?)
                    .unwrap_or(u32::MAX);
                let l = &mut self.venus;
                match key {
                    "max_instances" => l.max_instances = v,
                    "max_devices" => l.max_devices = v,
                    _ => l.max_objects = v,
                }
            }
            "isolation" => {
                self.isolation = value
                    .parse()
                    .map_err(|what| ConfigError::Value(line, key.to_owned(), what))?;
            }
            "gpu_timeout_ms" => self.worker.gpu_timeout = ms("1..=3600000 (ms)")?,
            "worker_sandbox" => {
                self.worker.sandbox = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ConfigError::Value(line, key.to_owned(), "true or false")),
                };
            }
            "worker_pool" => self.worker.pool = count(0, 64, "0..=64")?,
            "worker_max_open_files" => {
                self.worker.max_open_files = num(64, 1 << 20, "64..=1048576")?;
            }
            _ => return Err(ConfigError::UnknownKey(line, key.to_owned())),
        }
        Ok(())
    }
}

impl VtestConfig {
    /// The settings a worker process needs to serve one connection as this server
    /// would, as `key = value` lines that [`VtestConfig::apply`] reads back.
    pub(crate) fn worker_text(&self) -> String {
        let c = &self.context;
        let mut lines = vec![
            format!(
                "handshake_timeout_ms = {}",
                self.handshake_timeout.as_millis()
            ),
            format!("message_timeout_ms = {}", self.message_timeout.as_millis()),
            format!("reply_timeout_ms = {}", self.reply_timeout.as_millis()),
            format!("max_message_mib = {}", self.max_message_bytes >> 20),
            format!("max_shmem_mib = {}", c.limits.max_shmem_total >> 20),
            format!("max_rings = {}", c.max_rings),
            format!(
                "max_ring_idle_timeout_us = {}",
                c.max_ring_idle_timeout.as_micros()
            ),
            format!("max_instances = {}", self.venus.max_instances),
            format!("max_devices = {}", self.venus.max_devices),
            format!("max_objects = {}", self.venus.max_objects),
        ];
        if let Some(mib) = self.venus.memory_mib {
            lines.push(format!("memory_mib = {mib}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_overrides_defaults() {
        let mut c = VtestConfig::new("s");
        c.apply(
            "# limits\nmax_clients_per_pid = 2\nhandshake_timeout_ms=250 # short\n\
             max_rings = 8\nmax_ring_idle_timeout_us = 500\nmax_shmem_mib = 64\n",
        )
        .expect("valid");
        assert_eq!(c.max_clients_per_pid, 2);
        assert_eq!(c.handshake_timeout, Duration::from_millis(250));
        assert_eq!(c.context.max_rings, 8);
        assert_eq!(c.context.max_ring_idle_timeout, Duration::from_micros(500));
        assert_eq!(c.context.limits.max_shmem_total, 64 << 20);
        assert_eq!(c.context.limits.max_shmem_size, 64 << 20);
        assert_eq!(c.message_timeout, VtestConfig::new("s").message_timeout);
    }

    #[test]
    fn config_sets_venus_limits() {
        let mut c = VtestConfig::new("s");
        assert_eq!(c.venus, crate::renderer::venus::VenusLimits::default());
        c.apply("memory_mib = 64\nmax_instances = 2\nmax_devices = 3\nmax_objects = 500")
            .expect("valid");
        assert_eq!(c.venus.memory_mib, Some(64));
        assert_eq!(
            (
                c.venus.max_instances,
                c.venus.max_devices,
                c.venus.max_objects
            ),
            (2, 3, 500)
        );
        assert_eq!(
            c.apply("max_objects = 0"),
            Err(ConfigError::Value(
                1,
                "max_objects".into(),
                "1..=4294967295"
            ))
        );
    }

    #[test]
    fn worker_text_reads_back_to_the_same_limits() {
        let mut c = VtestConfig::new("s");
        c.apply(
            "max_rings = 8\nmemory_mib = 64\nmax_objects = 500\nreply_timeout_ms = 250\n\
             max_shmem_mib = 64\nmax_ring_idle_timeout_us = 500\n",
        )
        .expect("valid");
        let mut back = VtestConfig::new("s");
        back.apply(&c.worker_text()).expect("worker text parses");
        assert_eq!(back, c);
    }

    #[test]
    fn isolation_and_gpu_timeout_keys() {
        let mut c = VtestConfig::new("s");
        c.apply("isolation = process\ngpu_timeout_ms = 750\nworker_sandbox = false")
            .expect("valid");
        assert_eq!(c.isolation, crate::worker::Isolation::Process);
        assert_eq!(c.worker.gpu_timeout, Duration::from_millis(750));
        assert!(!c.worker.sandbox);
        assert!(matches!(
            c.apply("isolation = fork"),
            Err(ConfigError::Value(1, _, _))
        ));
    }

    #[test]
    fn config_errors_name_the_line() {
        let mut c = VtestConfig::new("s");
        assert_eq!(c.apply("x"), Err(ConfigError::Syntax(1)));
        assert_eq!(
            c.apply("\nbogus = 1"),
            Err(ConfigError::UnknownKey(2, "bogus".into()))
        );
        assert_eq!(
            c.apply("reply_timeout_ms = 0"),
            Err(ConfigError::Value(
                1,
                "reply_timeout_ms".into(),
                "1..=3600000 (ms)"
            ))
        );
    }
}
