//! Worker-process cost (issue 12, "Benchmarks"): the same daemon binary with
//! `--isolation process` (no pool, then a pool of one idle worker) and
//! `--isolation thread`, in the same run.
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin worker_report              # ~1 min
//! cargo run -p vgpu-benches --release --bin worker_report -- --out DIR
//! ```
//!
//! Measures, per mode:
//! - context start: connect → first reply (the handshake's PROTOCOL_VERSION), and
//!   connect → a reply after CONTEXT_INIT (raw vtest client, 30 connections);
//! - memory per context: a worker's RSS and PSS, and the daemon's RSS growth, with 4
//!   raw contexts held, then with 4 Mesa Venus clients holding an instance and a
//!   device each;
//! - submit→fence latency through Mesa (an empty-ish `vkQueueSubmit` + wait), 3
//!   alternating repetitions of 2,000 submissions per mode.
//!
//! Writes `worker_isolation.csv` (`metric,mode,value,unit`) to `docs/bench/` (or
//! `--out`) and prints it. lavapipe runs with `LP_NUM_THREADS=1`. Exit status 0
//! whatever the numbers: a measurement, not a test.

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the table"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use vgpu_benches::venus::{latency, quantile};
use vgpu_device::ids::CapsetId;
use vgpu_device::vtest::client::VtestClient;
use vgpu_tests::apps::Gpu;
use vgpu_tests::harness::{client, run_with_timeout, Daemon, Mode};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// (label, `--isolation`, `--worker-pool`).
const MODES: [(&str, &str, usize); 3] = [
    ("process", "process", 0),
    ("process-pool1", "process", 1),
    ("thread", "thread", 0),
];
const STARTS: usize = 30;
const HELD: usize = 4;
const LAT_ITERS: usize = 2000;
const LAT_WARMUP: usize = 200;
const LAT_REPS: usize = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        _ => report(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "worker_report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Client side, run through Mesa's Venus driver: `latency` prints one sample (ns)
/// per line; `hold` creates a device, prints `ready` and waits for stdin to close.
fn child(args: &[String]) -> Res<()> {
    let g = Gpu::new()?;
    let mut out = std::io::stdout().lock();
    match args.first().map(String::as_str) {
        Some("latency") => {
            for s in latency(&g, LAT_ITERS, LAT_WARMUP)? {
                writeln!(out, "{s}")?;
            }
        }
        Some("hold") => {
            writeln!(out, "ready")?;
            out.flush()?;
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        other => return Err(format!("unknown child request {other:?}").into()),
    }
    Ok(())
}

fn kib_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn raw_context(socket: &Path) -> Res<(VtestClient, Duration, Duration)> {
    let t0 = Instant::now();
    let mut c = VtestClient::connect(socket)?;
    c.handshake("worker-report")?;
    let first = t0.elapsed();
    c.context_init(CapsetId::VENUS)?;
    c.get_capset(CapsetId::VENUS, 0)?;
    Ok((c, first, t0.elapsed()))
}

/// Adds `metric,mode,value,unit` rows for one mode.
fn measure(
    bin: &Path,
    (mode, isolation, pool): (&str, &str, usize),
    rows: &mut Vec<String>,
) -> Res<()> {
    let mut cmd = Command::new(bin);
    cmd.arg("vtest")
        .arg("--isolation")
        .arg(isolation)
        .arg("--worker-pool")
        .arg(pool.to_string())
        .env("LP_NUM_THREADS", "1")
        .env("RUST_LOG", "warn");
    let daemon = Daemon::start_command(cmd, &format!("workers-{mode}"))?;
    let socket = daemon.socket().to_path_buf();
    let mut row = |metric: &str, value: f64, unit: &str| {
        rows.push(format!("{metric},{mode},{value:.3},{unit}"));
    };

    // Context start.
    let (mut first, mut ready) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let (c, f, r) = raw_context(&socket)?;
        first.push(f);
        ready.push(r);
        drop(c);
        // Long enough for the pool to start the next idle worker.
        std::thread::sleep(Duration::from_millis(200));
    }
    row("start_first_reply_p50", median_ms(first), "ms");
    row("start_context_ready_p50", median_ms(ready), "ms");

    // Memory with raw contexts held.
    std::thread::sleep(Duration::from_millis(300));
    let base = kib_field(daemon.pid(), "status", "VmRSS:").unwrap_or(0);
    let idle_workers = children(daemon.pid()).len();
    let held: Vec<VtestClient> = (0..HELD)
        .map(|_| raw_context(&socket).map(|(c, _, _)| c))
        .collect::<Res<_>>()?;
    std::thread::sleep(Duration::from_millis(300));
    memory_rows(&daemon, base, "idle", idle_workers, &mut row);
    drop(held);
    std::thread::sleep(Duration::from_millis(500));

    // Memory with Mesa clients holding a device each.
    let base = kib_field(daemon.pid(), "status", "VmRSS:").unwrap_or(0);
    let idle_workers = children(daemon.pid()).len();
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("non-UTF-8 executable path")?;
    let mut holders: Vec<Child> = Vec::new();
    for _ in 0..HELD {
        let mut c = client(exe, Mode::Venus(&socket));
        c.env("LP_NUM_THREADS", "1")
            .args(["--child", "hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(format!("hold child said {line:?}").into());
        }
        holders.push(child);
    }
    std::thread::sleep(Duration::from_millis(300));
    memory_rows(&daemon, base, "device", idle_workers, &mut row);
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.wait();
    }

    // Submit → fence latency.
    let mut samples = Vec::new();
    for _ in 0..LAT_REPS {
        let mut c = client(exe, Mode::Venus(&socket));
        c.env("LP_NUM_THREADS", "1").args(["--child", "latency"]);
        let out = run_with_timeout(c, Duration::from_secs(300))?;
        if !out.status.success() {
            return Err(format!(
                "latency child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        samples.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.parse::<u64>().ok()),
        );
    }
    samples.sort_unstable();
    #[allow(clippy::cast_precision_loss, reason = "µs figures")]
    let us = |q| quantile(&samples, q) as f64 / 1e3;
    row("submit_fence_p50", us(0.5), "us");
    row("submit_fence_p99", us(0.99), "us");
    Ok(())
}

/// Rows for the daemon's RSS growth per context and the workers' RSS/PSS (the
/// busiest ones: pooled idle workers, `idle_workers` of them, are left out).
fn memory_rows(
    daemon: &Daemon,
    base: u64,
    what: &str,
    idle_workers: usize,
    row: &mut impl FnMut(&str, f64, &str),
) {
    let now = kib_field(daemon.pid(), "status", "VmRSS:").unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "KiB figures")]
    let per = |total: u64| total as f64 / HELD as f64 / 1024.0;
    row(
        &format!("daemon_rss_growth_per_context_{what}"),
        per(now.saturating_sub(base)),
        "MiB",
    );
    let mut workers: Vec<(u32, u64)> = children(daemon.pid())
        .into_iter()
        .map(|p| (p, kib_field(p, "status", "VmRSS:").unwrap_or(0)))
        .collect();
    workers.sort_by_key(|&(_, rss)| std::cmp::Reverse(rss));
    // The contexts' workers; pooled idle ones beyond them are left out.
    workers.truncate(HELD.max(workers.len().saturating_sub(idle_workers)));
    let workers: Vec<u32> = workers.into_iter().map(|(p, _)| p).collect();
    if !workers.is_empty() {
        let rss: u64 = workers
            .iter()
            .filter_map(|&p| kib_field(p, "status", "VmRSS:"))
            .sum();
        let pss: u64 = workers
            .iter()
            .filter_map(|&p| kib_field(p, "smaps_rollup", "Pss:"))
            .sum();
        #[allow(clippy::cast_precision_loss, reason = "KiB figures")]
        let avg = |total: u64| total as f64 / workers.len() as f64 / 1024.0;
        row(&format!("worker_rss_{what}"), avg(rss), "MiB");
        row(&format!("worker_pss_{what}"), avg(pss), "MiB");
    }
}

fn report(args: &[String]) -> Res<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = manifest.parent().unwrap_or(manifest).join("docs/bench");
    let mut daemon = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a value")?),
            "--daemon" => daemon = Some(PathBuf::from(it.next().ok_or("--daemon needs a value")?)),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let bin = vgpu_benches::daemon_bin::daemon_binary(daemon.as_deref())?;
    let mut rows = vec!["metric,mode,value,unit".to_owned()];
    for mode in MODES {
        measure(&bin, mode, &mut rows)?;
    }
    std::fs::create_dir_all(&out)?;
    let csv = out.join("worker_isolation.csv");
    std::fs::write(&csv, rows.join("\n") + "\n")?;
    for r in &rows {
        println!("{r}");
    }
    println!("wrote {}", csv.display());
    Ok(())
}
