//! A Vulkan client that crashes its own context on purpose (fault-injection tests of
//! the worker processes): `crash-app desc_crash|hang|busy|<compute case>...`; with no
//! argument it runs every compute case like `compute-app`. Output as `compute-app`.

use std::process::ExitCode;

use vgpu_tests::app_main::app_main;
use vgpu_tests::apps::faults::run_fault_case;
use vgpu_tests::apps::{Gpu, CASES};

fn main() -> ExitCode {
    app_main("crash-app", Gpu::new_graphics(), CASES, run_fault_case)
}
