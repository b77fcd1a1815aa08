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
