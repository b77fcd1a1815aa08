//! A plain Vulkan offscreen-graphics application: runs the named graphics cases (all if
//! none) on whatever driver the loader picks and prints one line per case,
//! `<case> <digest> <bytes>`, after `device <name>` and `api <major.minor.patch>` lines.
//! Exits 1 on any failure.

use std::process::ExitCode;

use vgpu_tests::app_main::app_main;
use vgpu_tests::apps::graphics::{run_case, CASES};
use vgpu_tests::apps::Gpu;

fn main() -> ExitCode {
    app_main("graphics-app", Gpu::new_graphics(), CASES, run_case)
}
