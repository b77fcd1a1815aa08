//! `serve` configuration: defaults, and the optional `--config FILE` (`key = value`
//! lines, `#` comments).
//!
//! ```text
//! num_scanouts = 1        # 1..=16
//! width = 1280            # preferred mode
//! height = 800
//! shm_size_mib = 1024     # host-visible region 1; 0 = none (no SHMEM, no MAP_BLOB)
//! max_2d_mib = 512        # host memory for all 2D resources
//! offer_virgl = true      # VIRTIO_GPU_F_VIRGL (Linux gates capsets and contexts on it)
//! frame_dir = /tmp/frames # SIGUSR1 writes scanout-<n>.png here
//! once = false            # true: exit after the first frontend disconnects
//! memory_mib = 4096       # device-memory quota of the VM (default: largest host heap / 4)
//! max_instances = 8       # Vulkan instances per context
//! max_devices = 8         # Vulkan devices per context
//! max_objects = 1000000   # Vulkan objects per context
//! ```

use std::path::{Path, PathBuf};

use crate::renderer::venus::VenusLimits;
use crate::virtio_gpu::HandlerConfig;

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

/// Everything `serve` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// The vhost-user socket to listen on.
    pub socket: PathBuf,
    /// Device settings.
    pub handler: HandlerConfig,
    /// Offer `VIRTIO_GPU_F_VIRGL`. Linux reads capsets, allows CONTEXT_INIT and
    /// EXECBUFFER only with it, so Venus guests need it; virgl resources
    /// (RESOURCE_CREATE_3D, TRANSFER_*_3D) are still refused: no virgl capset exists.
    pub offer_virgl: bool,
    /// Where `SIGUSR1` writes each scanout's last frame as `scanout-<n>.png` (headless
    /// display); `None` leaves the signal alone.
    pub frame_dir: Option<PathBuf>,
    /// Serve one frontend and return when it disconnects, instead of accepting the
    /// next one on a fresh device.
    pub once: bool,
    /// The frontend's VM limits: device-memory quota, instances, devices and objects.
    pub limits: VenusLimits,
}

impl ServeConfig {
    /// Defaults for `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            handler: HandlerConfig::default(),
            offer_virgl: true,
            frame_dir: None,
            once: false,
            limits: VenusLimits::default(),
        }
    }

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
            let (key, value) = (key.trim(), value.trim());
            let num = |lo: u64, hi: u64, what| {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|v| (lo..=hi).contains(v))
                    .ok_or_else(|| ConfigError::Value(n, key.to_owned(), what))
            };
            let h = &mut self.handler;
            match key {
                "num_scanouts" => {
                    h.num_scanouts = usize::try_from(num(1, 16, "1..=16")?).unwrap_or(1);
                }
                "width" => h.width = u32::try_from(num(1, 16384, "1..=16384")?).unwrap_or(1),
                "height" => h.height = u32::try_from(num(1, 16384, "1..=16384")?).unwrap_or(1),
                "shm_size_mib" => h.shm_size = num(0, 1 << 20, "0..=1048576")? << 20,
                "max_2d_mib" => h.max_2d_bytes = num(1, 1 << 20, "1..=1048576")? << 20,
                "max_inflight_mib" => {
                    h.max_inflight_bytes = num(1, 1 << 16, "1..=65536")? << 20;
                }
                "max_submit_mib" => {
                    let mib = num(1, 1024, "1..=1024")?;
                    h.max_submit_bytes = u32::try_from(mib << 20).unwrap_or(u32::MAX);
                }
                "frame_dir" => self.frame_dir = Some(PathBuf::from(value)),
                "memory_mib" => {
                    self.limits.memory_mib = Some(num(1, 1 << 30, "1..=1073741824")?);
                }
                "max_instances" | "max_devices" | "max_objects" => {
                    let v = u32::try_from(num(1, u64::from(u32::MAX), "1..=4294967295")?)
                        .unwrap_or(u32::MAX);
                    let l = &mut self.limits;
                    match key {
                        "max_instances" => l.max_instances = v,
                        "max_devices" => l.max_devices = v,
                        _ => l.max_objects = v,
                    }
                }
                "offer_virgl" | "once" => {
                    let flag = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(ConfigError::Value(n, key.to_owned(), "true or false")),
                    };
                    if key == "once" {
                        self.once = flag;
                    } else {
                        self.offer_virgl = flag;
                    }
                }
                _ => return Err(ConfigError::UnknownKey(n, key.to_owned())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_overrides_defaults() {
        let mut c = ServeConfig::new("s".into());
        c.apply("# comment\nnum_scanouts = 2\nwidth=1024 # trailing\nshm_size_mib = 0\noffer_virgl = false\n")
            .expect("valid");
        c.apply("max_inflight_mib = 8\nmax_submit_mib = 2")
            .expect("valid");
        assert_eq!(c.handler.max_inflight_bytes, 8 << 20);
        assert_eq!(c.handler.max_submit_bytes, 2 << 20);
        assert_eq!(
            c.apply("max_submit_mib = 4096"),
            Err(ConfigError::Value(1, "max_submit_mib".into(), "1..=1024"))
        );
        assert_eq!(c.handler.num_scanouts, 2);
        assert_eq!(c.handler.width, 1024);
        assert_eq!(c.handler.shm_size, 0);
        assert!(!c.offer_virgl);
        assert!(!c.once, "serving every frontend is the default");
    }

    #[test]
    fn config_text_sets_vm_limits() {
        let mut c = ServeConfig::new("s".into());
        assert_eq!(
            c.limits.memory_mib, None,
            "default quota comes from the host heap"
        );
        c.apply("memory_mib = 64\nmax_instances = 2\nmax_devices = 3\nmax_objects = 500")
            .expect("valid");
        assert_eq!(c.limits.memory_mib, Some(64));
        assert_eq!(
            (
                c.limits.max_instances,
                c.limits.max_devices,
                c.limits.max_objects
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
    fn config_once_takes_true_or_false() {
        let mut c = ServeConfig::new("s".into());
        c.apply("once = true").expect("valid");
        assert!(c.once);
        assert!(c.offer_virgl, "once leaves offer_virgl alone");
        assert_eq!(
            c.apply("once = 1"),
            Err(ConfigError::Value(1, "once".into(), "true or false"))
        );
    }

    #[test]
    fn config_errors_name_the_line() {
        let mut c = ServeConfig::new("s".into());
        assert_eq!(c.apply("x"), Err(ConfigError::Syntax(1)));
        assert_eq!(
            c.apply("\nbogus = 1"),
            Err(ConfigError::UnknownKey(2, "bogus".into()))
        );
        assert_eq!(
            c.apply("num_scanouts = 17"),
            Err(ConfigError::Value(1, "num_scanouts".into(), "1..=16"))
        );
    }
}
