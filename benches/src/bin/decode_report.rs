//! Measures decode + dispatch throughput of the benchmark streams (issue 2, section 5),
//! writes `docs/bench/decode_throughput.csv` and `docs/bench/decode_throughput.svg`, and
//! prints the numbers.
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin decode_report            # ~10 s
//! cargo run -p vgpu-benches --release --bin decode_report -- --quick # ~2 s
//! cargo run -p vgpu-benches --release --bin decode_report -- --out DIR
//! cargo run -p vgpu-benches --release --bin decode_report -- --only compute --ids hash_table
//!     # one stream and/or one id map (for profiling): prints only, writes nothing
//! ```
//!
//! Single thread, release build. Exit status 0 whether or not the target is met (the
//! summary says which): this is a measurement, not a test.

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the summary table"
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use vgpu_benches::decode::{measure, streams, Ids};
use vgpu_benches::decode_plot::{write_csv, write_svg, TARGET_COMMANDS_PER_S};

fn main() -> ExitCode {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = manifest.parent().unwrap_or(manifest).join("docs/bench");
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut only_ids: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only = args.next(),
            "--ids" => only_ids = args.next(),
            "--out" => match args.next() {
                Some(d) => out = PathBuf::from(d),
                None => {
                    eprintln!("--out needs a directory");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: decode_report [--quick] [--only STREAM] [--ids hash_table|identity] [--out DIR]");
                return ExitCode::from(2);
            }
        }
    }
    let (trials, trial) = if quick {
        (3, Duration::from_millis(100))
    } else {
        (7, Duration::from_millis(250))
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run with --release for meaningful numbers");
    }
    let (streams, table) = streams();
    let mut ms = Vec::new();
    for s in &streams {
        if only.as_deref().is_some_and(|o| !s.name.contains(o)) {
            continue;
        }
        for ids in [Ids::Table, Ids::Identity] {
            if only_ids.as_deref().is_some_and(|o| o != ids.name()) {
                continue;
            }
            ms.push(measure(s, &table, ids, trials, trial));
        }
    }
    println!(
        "{:<20} {:<11} {:>9} {:>9} {:>10} {:>12} {:>9}",
        "stream", "ids", "commands", "B/cmd", "ns/cmd", "Mcmd/s", "MB/s"
    );
    for m in &ms {
        println!(
            "{:<20} {:<11} {:>9} {:>9.1} {:>10.2} {:>12.2} {:>9.1}",
            m.stream,
            m.ids.name(),
            m.commands,
            m.bytes_per_command(),
            m.ns_per_command(),
            m.commands_per_s() / 1e6,
            m.mb_per_s()
        );
    }
    if only.is_some() || only_ids.is_some() {
        // A partial run (profiling): print only, keep the published figures intact.
        return ExitCode::SUCCESS;
    }
    let small = ms
        .iter()
        .find(|m| m.stream == "cmd_dispatch_only" && m.ids == Ids::Table)
        .map_or(0.0, vgpu_benches::decode::Measurement::commands_per_s);
    println!(
        "target: {:.0} M small commands/s per core; vkCmdDispatch with the id table: {:.1} M/s ({})",
        TARGET_COMMANDS_PER_S / 1e6,
        small / 1e6,
        if small >= TARGET_COMMANDS_PER_S { "met" } else { "MISSED" }
    );
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let csv = out.join("decode_throughput.csv");
    let svg = out.join("decode_throughput.svg");
    let written = write_csv(&ms, &csv).and_then(|()| {
        write_svg(
            &ms,
            "vulkan-proto decode + dispatch throughput (one core, release)",
            &svg,
        )
    });
    if let Err(e) = written {
        eprintln!("writing the figures failed: {e}");
        return ExitCode::FAILURE;
    }
    println!("wrote {} and {}", csv.display(), svg.display());
    ExitCode::SUCCESS
}
