//! A plain Vulkan compute application: runs the named cases (all if none) on whatever
//! driver the loader picks and prints one line per case, `<case> <digest> <bytes>`,
//! after `device <name>` and `api <major.minor.patch>` lines. Exits 1 on any failure.

use std::process::ExitCode;

use vgpu_tests::app_main::app_main;
use vgpu_tests::apps::{run_case, Gpu, CASES};

fn main() -> ExitCode {
    app_main("compute-app", Gpu::new(), CASES, run_case)
}
