//! End-to-end tests of the Venus renderer: ordinary `ash` compute programs run natively
//! on lavapipe and through Venus (Mesa's virtio ICD over vtest to our daemon), and their
//! results compared.
//!
//! - [`apps`]: the compute programs (a small `ash` harness plus one function per case),
//!   run by the `compute-app` binary in a child process, since the Vulkan loader picks
//!   its ICD (`VK_DRIVER_FILES`) once per process.
//! - [`harness`]: starts the `venus-daemon` binary on a private socket and runs
//!   children natively or through Venus.
//! - [`bridge`]: the vtest ⇄ vhost-user bridge (`vtest-vhost-bridge`), which lets the
//!   same children reach `vhost-user-vgpu serve` through virtio-gpu commands and SHMEM_MAP.

pub mod app_main;
pub mod apps;
pub mod bridge;
pub mod harness;

/// The GPU-hang deadline of the test daemon binaries (`venus-daemon`,
/// `vhost-serve-daemon`) unless a test sets one (`gpu_timeout_ms` in its config file
/// or `--gpu-timeout-ms`): 60 s, not the product's 5 s. The CI machine has two cores
/// and lavapipe's "device" is that CPU, shared with the compiler, so an honest fence
/// can stay pending for more than 5 s; no honest test may be killed by the watchdog.
pub const TEST_GPU_TIMEOUT_MS: u64 = 60_000;

/// Whether the config file at `path` sets `gpu_timeout_ms` anywhere (then the test
/// daemons keep its values; a file that cannot be read is left to the config loader
/// to report).
pub fn config_sets_gpu_timeout(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("gpu_timeout_ms") || l.starts_with("\"gpu_timeout_ms\"")
        })
    })
}
