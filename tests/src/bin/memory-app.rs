//! Memory-safety client: runs the named `apps::memory` cases (the valid ones if none) on
//! whatever driver the loader picks and prints `device <name>`, `formats <list>` (the
//! formats the driver copies), then `<case> <digest> <bytes>` per case. A hostile case
//! that is not stopped prints its line too; exits 1 on any failure.

use std::io::Write;
use std::process::ExitCode;

use vgpu_tests::apps::digest;
use vgpu_tests::apps::memory::{run_case, supported_formats, Dev, CASES};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&str> = if args.is_empty() {
        CASES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let dev = match Dev::new() {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "memory-app: device setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "device {}", dev.name);
    let _ = writeln!(out, "formats {}", supported_formats(&dev).join(","));
    let _ = out.flush();
    for case in cases {
        match run_case(&dev, case) {
            Ok(bytes) => {
                let _ = writeln!(out, "{case} {:016x} {}", digest(&bytes), bytes.len());
                let _ = out.flush();
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "memory-app: {case} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
