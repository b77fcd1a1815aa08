//! vhost-user throughput report (issue 4, "Throughput benchmark").
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin vhost_report             # ~25 s
//! cargo run -p vgpu-benches --release --bin vhost_report -- --quick  # ~8 s
//! cargo run -p vgpu-benches --release --bin vhost_report -- --window 10 --iters 5000 --out DIR
//! ```
//!
//! 1. 2D: `vhost-user-vgpu serve` on lavapipe; this process is the VMM + guest driver
//!    (the bridge's `GuestDriver`: memfd guest memory, split virtqueues over
//!    vhost-user). A 1920×1080 B8G8R8X8 resource with guest backing is shown on
//!    scanout 0; each frame is TRANSFER_TO_HOST_2D + RESOURCE_FLUSH, one command in
//!    flight. Frames per second and MB/s of guest pixels.
//! 2. SUBMIT_3D round trip: a 16-byte Venus stream in a Venus context, fenced on ring 0,
//!    timed until the (fence-held) response; then the same stream over
//!    `vhost-user-vgpu vtest` as SUBMIT_CMD2 + PING_PROTOCOL_VERSION, timed until the
//!    reply. p50/p99.
//! 3. Native baseline: `vkQueueSubmit` of a one-fill command buffer + `vkWaitForFences`
//!    on lavapipe in this process (`vgpu_benches::venus::latency`), p50/p99.
//!
//! Writes `docs/bench/vhost_throughput.{csv,svg}` and prints the table with the load
//! average before and after (the machine is shared). Under `cargo run` it first builds
//! the daemon (`cargo build -p vgpu-device --bin vhost-user-vgpu`, same profile and
//! target dir); otherwise it expects `vhost-user-vgpu` beside its own executable, or
//! `--daemon PATH`. lavapipe runs with `LP_NUM_THREADS=1`. `--daemon-arg ARG`
//! (repeatable) adds ARG to both daemons' command lines, e.g. `--daemon-arg
//! --isolation --daemon-arg thread` for contexts on daemon threads instead of worker
//! processes (the default), to measure the process boundary.

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the summary table"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use vgpu_benches::venus::latency;
use vgpu_benches::vhost::{
    create_venus_context, rows, setup_2d, submit_vhost, submit_vtest, two_d, write_csv, write_svg,
    Report, COLUMNS,
};
use vgpu_tests::apps::Gpu;
use vgpu_tests::bridge::frontend::GuestDriver;
use vgpu_tests::harness::Daemon;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Clone)]
struct Opts {
    out: PathBuf,
    warmup: Duration,
    window: Duration,
    iters: usize,
    daemon: Option<PathBuf>,
    daemon_args: Vec<String>,
}

fn main() -> ExitCode {
    // Before any thread exists: the native baseline runs lavapipe in this process,
    // configured as the daemons are.
    if std::env::var_os("VK_DRIVER_FILES").is_none() {
        std::env::set_var("VK_DRIVER_FILES", vgpu_tests::harness::LVP_ICD);
    }
    std::env::set_var("LP_NUM_THREADS", "1");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|o| report(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "vhost_report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Res<Opts> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        out: manifest.parent().unwrap_or(manifest).join("docs/bench"),
        warmup: Duration::from_secs(1),
        window: Duration::from_secs(8),
        iters: 3000,
        daemon: None,
        daemon_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => {
                o.warmup = Duration::from_millis(300);
                o.window = Duration::from_secs(2);
                o.iters = 500;
            }
            "--out" => o.out = PathBuf::from(value()?),
            "--daemon" => o.daemon = Some(PathBuf::from(value()?)),
            "--daemon-arg" => o.daemon_args.push(value()?.clone()),
            "--window" => o.window = Duration::from_secs_f64(value()?.parse()?),
            "--iters" => o.iters = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn daemon(bin: &Path, sub: &str, extra: &[String], tag: &str) -> Res<Daemon> {
    let mut cmd = Command::new(bin);
    cmd.arg(sub).args(extra).env("LP_NUM_THREADS", "1");
    Ok(Daemon::start_command(cmd, tag)?)
}

fn report(o: &Opts) -> Res<()> {
    let bin = vgpu_benches::daemon_bin::daemon_binary(o.daemon.as_deref())?;
    let load_before = loadavg();

    println!("daemon arguments: {}", o.daemon_args.join(" "));
    let serve = daemon(&bin, "serve", &o.daemon_args, "vhost-report-serve")?;
    let (two_d, submit_vhost) = {
        let with_log = |e: std::io::Error| format!("{e}\ndaemon log:\n{}", serve.log());
        let mut gpu =
            GuestDriver::connect(serve.socket(), Duration::from_secs(30)).map_err(with_log)?;
        setup_2d(&mut gpu).map_err(with_log)?;
        println!("2D: {:?} warm-up, {:?} window", o.warmup, o.window);
        let t = two_d(&mut gpu, o.warmup, o.window).map_err(with_log)?;
        create_venus_context(&mut gpu).map_err(with_log)?;
        println!("SUBMIT_3D over vhost-user: {} round trips", o.iters);
        let s = submit_vhost(&mut gpu, o.iters / 10, o.iters).map_err(with_log)?;
        (t, s)
    };
    drop(serve);

    let vtest = daemon(&bin, "vtest", &o.daemon_args, "vhost-report-vtest")?;
    println!("SUBMIT_CMD2 over vtest: {} round trips", o.iters);
    let submit_vtest = submit_vtest(vtest.socket(), o.iters / 10, o.iters)
        .map_err(|e| format!("{e}\ndaemon log:\n{}", vtest.log()))?;
    drop(vtest);

    println!(
        "vkQueueSubmit + fence, native lavapipe: {} round trips",
        o.iters
    );
    let mut submit_native: Vec<Duration> = {
        let g = Gpu::new()?;
        latency(&g, o.iters, o.iters / 10)?
    }
    .into_iter()
    .map(Duration::from_nanos)
    .collect();
    submit_native.sort_unstable();

    let r = Report {
        two_d,
        submit_vhost,
        submit_vtest,
        submit_native,
        load_before,
        load_after: loadavg(),
    };
    std::fs::create_dir_all(&o.out)?;
    let csv = o.out.join("vhost_throughput.csv");
    let svg = o.out.join("vhost_throughput.svg");
    write_csv(&r, &csv)?;
    write_svg(&r, &svg)?;

    println!();
    println!(
        "{:<28} {:<11} {:>7} {:>9} {:>9} {:>9} {:>7} {:>9}",
        COLUMNS[0],
        COLUMNS[1],
        COLUMNS[2],
        COLUMNS[3],
        COLUMNS[4],
        COLUMNS[5],
        COLUMNS[6],
        COLUMNS[7]
    );
    for c in rows(&r) {
        println!(
            "{:<28} {:<11} {:>7} {:>9} {:>9} {:>9} {:>7} {:>9}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        );
    }
    println!(
        "load average (1 min): {:.2} before, {:.2} after; {} CPUs",
        r.load_before,
        r.load_after,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!("wrote {} and {}", csv.display(), svg.display());
    Ok(())
}
