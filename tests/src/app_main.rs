//! The shared `main` of the test applications (`compute-app`, `graphics-app`): run the
//! named cases (all if none) on whatever driver the loader picks and print
//! `device <name>`, `api <major.minor.patch>`, then one `<case> <digest> <bytes>` line per
//! case. Exits 1 on any failure.

use std::io::Write;
use std::process::ExitCode;

use crate::apps::{digest, AppResult, Gpu};

/// Runs `cases` (from the command line, or `all`) on `gpu` with `run`, printing as above.
pub fn app_main(
    app: &str,
    gpu: AppResult<Gpu>,
    all: &[&str],
    run: impl Fn(&Gpu, &str) -> AppResult<Vec<u8>>,
) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let gpu = match gpu {
        Ok(g) => g,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{app}: device setup failed: {e}");
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
        match run(&gpu, case) {
            Ok(bytes) => {
                let _ = writeln!(out, "{case} {:016x} {}", digest(&bytes), bytes.len());
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{app}: {case} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
