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
            _ => return Err(ConfigError::UnknownKey(line, key.to_owned())),
        }
        Ok(())
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
