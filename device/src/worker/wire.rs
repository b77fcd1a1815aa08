//! The settings the daemon sends a worker with SERVE: a serde struct serialised as
//! TOML (the `toml` crate the config file uses). The worker reads it back into a
//! [`VtestConfig`]; text that does not parse, or names a value out of range, is an
//! error the worker exits on cleanly, never a panic.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::VmName;
use crate::renderer::fds::FdLimits;
use crate::vtest::VtestConfig;

use super::WorkerError;

/// Everything a worker needs to serve one connection as the daemon's server would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkerConfigWire {
    handshake_timeout_ms: u64,
    message_timeout_ms: u64,
    reply_timeout_ms: u64,
    max_message_bytes: u64,
    max_syncs: u64,
    max_shmem_size: u64,
    max_shmem_total: u64,
    max_resources: u64,
    max_rings: u64,
    max_ring_idle_timeout_us: u64,
    max_instances: u32,
    max_devices: u32,
    max_objects: u32,
    memory_mib: Option<u64>,
    max_blobs: u32,
    max_sync_waits: u32,
    vm: Option<String>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `n` as a `usize` within `1..=max` (the ranges the config file allows, so a value
/// that could not come from a checked config is refused).
fn count(n: u64, max: u64, what: &'static str) -> Result<usize, WorkerError> {
    (1..=max)
        .contains(&n)
        .then(|| usize::try_from(n).ok())
        .flatten()
        .ok_or(WorkerError::Malformed(what))
}

fn ms(n: u64, what: &'static str) -> Result<Duration, WorkerError> {
    (1..=3_600_000)
        .contains(&n)
        .then(|| Duration::from_millis(n))
        .ok_or(WorkerError::Malformed(what))
}

impl WorkerConfigWire {
    /// The settings of `config` a worker needs.
    pub(crate) fn from_config(config: &VtestConfig) -> Self {
        let c = &config.context;
        let v = &config.venus;
        Self {
            handshake_timeout_ms: millis(config.handshake_timeout),
            message_timeout_ms: millis(config.message_timeout),
            reply_timeout_ms: millis(config.reply_timeout),
            max_message_bytes: to_u64(config.max_message_bytes),
            max_syncs: to_u64(config.max_syncs),
            max_shmem_size: c.limits.max_shmem_size,
            max_shmem_total: c.limits.max_shmem_total,
            max_resources: to_u64(c.limits.max_resources),
            max_rings: to_u64(c.max_rings),
            max_ring_idle_timeout_us: u64::try_from(c.max_ring_idle_timeout.as_micros())
                .unwrap_or(u64::MAX),
            max_instances: v.max_instances,
            max_devices: v.max_devices,
            max_objects: v.max_objects,
            memory_mib: v.memory_mib,
            max_blobs: v.fds.max_blobs,
            max_sync_waits: v.fds.max_sync_waits,
            vm: config.vm.as_ref().map(|n| n.as_str().to_owned()),
        }
    }

    /// As TOML text.
    pub(crate) fn to_text(&self) -> Result<String, WorkerError> {
        toml::to_string(self).map_err(|_| WorkerError::Malformed("worker settings"))
    }

    /// Parses TOML text from the daemon into the config the worker serves with.
    pub(crate) fn parse(text: &str) -> Result<VtestConfig, WorkerError> {
        let w: Self = toml::from_str(text).map_err(WorkerError::Config)?;
        let mut config = VtestConfig::new("worker");
        config.handshake_timeout = ms(w.handshake_timeout_ms, "handshake_timeout_ms")?;
        config.message_timeout = ms(w.message_timeout_ms, "message_timeout_ms")?;
        config.reply_timeout = ms(w.reply_timeout_ms, "reply_timeout_ms")?;
        config.max_message_bytes = count(w.max_message_bytes, 256 << 20, "max_message_bytes")?;
        config.max_syncs = count(w.max_syncs, 1 << 20, "max_syncs")?;
        let c = &mut config.context;
        if w.max_shmem_total == 0 || w.max_shmem_size > w.max_shmem_total {
            return Err(WorkerError::Malformed("max_shmem_size/max_shmem_total"));
        }
        c.limits.max_shmem_size = w.max_shmem_size;
        c.limits.max_shmem_total = w.max_shmem_total;
        c.limits.max_resources = count(w.max_resources, 1 << 24, "max_resources")?;
        c.max_rings = count(w.max_rings, 1024, "max_rings")?;
        if w.max_ring_idle_timeout_us > 3_600_000_000 {
            return Err(WorkerError::Malformed("max_ring_idle_timeout_us"));
        }
        c.max_ring_idle_timeout = Duration::from_micros(w.max_ring_idle_timeout_us);
        let v = &mut config.venus;
        v.max_instances = w.max_instances;
        v.max_devices = w.max_devices;
        v.max_objects = w.max_objects;
        v.memory_mib = w.memory_mib;
        v.fds = FdLimits {
            max_blobs: w.max_blobs,
            max_sync_waits: w.max_sync_waits,
        };
        config.vm = match w.vm {
            Some(name) => Some(VmName::new(&name).ok_or(WorkerError::Malformed("vm name"))?),
            None => None,
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_back_to_the_same_config() {
        let mut c = VtestConfig::new("worker");
        c.handshake_timeout = Duration::from_millis(250);
        c.max_syncs = 17;
        c.context.max_rings = 8;
        c.context.max_ring_idle_timeout = Duration::from_micros(500);
        c.context.limits.max_shmem_total = 64 << 20;
        c.context.limits.max_shmem_size = 32 << 20;
        c.venus.memory_mib = Some(64);
        c.venus.max_devices = 3;
        c.venus.fds = FdLimits {
            max_blobs: 9,
            max_sync_waits: 5,
        };
        c.vm = VmName::new("a");
        let text = WorkerConfigWire::from_config(&c)
            .to_text()
            .expect("serialises");
        let back = WorkerConfigWire::parse(&text).expect("parses");
        assert_eq!(back, c);
    }

    #[test]
    fn malformed_settings_are_errors_not_panics() {
        let good = WorkerConfigWire::from_config(&VtestConfig::new("worker"))
            .to_text()
            .expect("serialises");
        for bad in [
            String::new(),
            "not toml at all [".to_owned(),
            format!("{good}\nextra_key = 1\n"),
            good.replace("max_rings = 64", "max_rings = 0"),
            good.replace("max_rings = 64", "max_rings = -1"),
            good.replace("handshake_timeout_ms = 5000", "handshake_timeout_ms = 0"),
            format!("{good}\nvm = \"a b\"\n"),
        ] {
            assert!(WorkerConfigWire::parse(&bad).is_err(), "accepted: {bad:?}");
        }
    }
}
