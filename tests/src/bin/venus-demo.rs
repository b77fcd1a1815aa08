//! The demo's compute sample (`scripts/demo.sh`): an ordinary Vulkan program (the
//! test suite's saxpy, `y = a·x + y` over 65 536 floats with push constants) that prints
//! which device it ran on and a few checked results. Run it through Venus with
//! `VK_DRIVER_FILES=…/virtio_icd.json VN_DEBUG=vtest VTEST_SOCKET_NAME=SOCKET`.
//! Exits 1 if the device cannot be created or any element differs from the CPU.

use std::io::Write;
use std::process::ExitCode;

use vgpu_tests::apps::{saxpy, Gpu};

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            let _ = writeln!(err, "venus-demo: device setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let v = gpu.api_version;
    let _ = writeln!(out, "device     {}", gpu.name);
    let _ = writeln!(
        out,
        "apiVersion {}.{}.{}",
        ash::vk::api_version_major(v),
        ash::vk::api_version_minor(v),
        ash::vk::api_version_patch(v)
    );
    // saxpy checks every element against the CPU before returning.
    let bytes = match saxpy(&gpu) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(err, "venus-demo: saxpy failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let y: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let _ = writeln!(
        out,
        "saxpy      y = 2.5·x + y over {} floats (x[i] = i/2, y[i] = i mod 97), all equal to the CPU's",
        y.len()
    );
    for i in [0usize, 1, 1000, 65_535] {
        let Some(got) = y.get(i) else { continue };
        #[allow(
            clippy::cast_precision_loss,
            reason = "indices below 2^16 are exact in f32"
        )]
        let want = 2.5 * (i as f32 * 0.5) + (i % 97) as f32;
        let _ = writeln!(out, "           y[{i}] = {got} (CPU {want})");
    }
    ExitCode::SUCCESS
}
