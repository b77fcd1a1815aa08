//! A plain Vulkan offscreen-graphics application: runs the named graphics cases (all if
//! none) on whatever driver the loader picks and prints one line per case,
//! `<case> <digest> <bytes>`, after `device <name>` and `api <major.minor.patch>` lines.
//! Exits 1 on any failure.

use std::io::Write;
use std::process::ExitCode;

use vgpu_tests::apps::graphics::{run_case, CASES};
use vgpu_tests::apps::{digest, Gpu};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&str> = if args.is_empty() {
        CASES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let gpu = match Gpu::new_graphics() {
        Ok(g) => g,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "graphics-app: device setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let v = gpu.api_version;
    let _ = writeln!(out, "device {}", gpu.name);
    let _ = writeln!(
        out,
        "api {}.{}.{}",
        ash::vk::api_version_major(v),
        ash::vk::api_version_minor(v),
        ash::vk::api_version_patch(v)
    );
    for case in cases {
        match run_case(&gpu, case) {
            Ok(bytes) => {
                let _ = writeln!(out, "{case} {:016x} {}", digest(&bytes), bytes.len());
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "graphics-app: {case} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
