//! Venus overhead report (issue 3, "Benchmarks"): the same compute workload natively on
//! lavapipe and through Venus (Mesa's virtio ICD over vtest to `vhost-user-vgpu vtest`),
//! in the same run, each measurement in its own child process.
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin venus_report             # ~4 min
//! cargo run -p vgpu-benches --release --bin venus_report -- --quick  # ~40 s, 1 repetition
//! cargo run -p vgpu-benches --release --bin venus_report -- --reps 5 --window 3 --out DIR
//! ```
//!
//! Writes `docs/bench/venus_overhead.{csv,svg}` and `docs/bench/venus_latency.{csv,svg}`
//! and prints a summary with the targets. lavapipe runs with `LP_NUM_THREADS=1` in both
//! the native client and the daemon. Under `cargo run` it first builds the daemon
//! (`cargo build -p vgpu-device --bin vhost-user-vgpu`, same profile and target dir);
//! otherwise it expects `vhost-user-vgpu` beside its own executable, or `--daemon PATH`.
//! `--daemon-arg ARG` (repeatable) adds ARG to the daemon's `vtest` command line (e.g.
//! `--daemon-arg --isolation --daemon-arg thread`), so two daemons or two settings can
//! be compared run against run.
//! Exit status 0 whether or not the targets are met: this is a measurement, not a test.

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the summary table"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use vgpu_benches::venus::{device_ms, latency_of, median, throughput, RoundTrip, SpinCache, Work};
use vgpu_benches::venus_plot::{
    median_ratios, pooled, write_latency_csv, write_latency_svg, write_overhead_csv,
    write_overhead_svg, LatencyRun, LatencyStats, OverheadRow, TARGET_ADDED_P50_US,
    TARGET_ADDED_P99_US,
};
use vgpu_tests::apps::Gpu;
use vgpu_tests::harness::{children, client, run_with_timeout, Daemon, Mode};

/// Submission sizes, ms of native device time.
const SIZES_MS: [f64; 4] = [0.2, 1.0, 5.0, 20.0];
/// Workgroups per dispatch (64 invocations each).
const GROUPS: u32 = 64;
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Clone)]
struct Opts {
    out: PathBuf,
    reps: usize,
    window: Duration,
    warmup: Duration,
    latency_iters: usize,
    latency_reps: usize,
    depths: Vec<usize>,
    daemon: Option<PathBuf>,
    daemon_args: Vec<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "venus_report child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match parse(&args).and_then(|o| report(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "venus_report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Res<Opts> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        out: manifest.parent().unwrap_or(manifest).join("docs/bench"),
        reps: 5,
        window: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        latency_iters: 3000,
        latency_reps: 2,
        depths: vec![1, 2, 4],
        daemon: None,
        daemon_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => {
                o.reps = 1;
                o.window = Duration::from_millis(500);
                o.latency_iters = 2000;
                o.latency_reps = 1;
            }
            "--out" => o.out = PathBuf::from(val()?),
            "--reps" => o.reps = val()?.parse()?,
            "--window" => o.window = Duration::from_secs_f64(val()?.parse()?),
            "--latency-iters" => o.latency_iters = val()?.parse()?,
            "--depths" => {
                o.depths = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--daemon" => o.daemon = Some(PathBuf::from(val()?)),
            "--daemon-arg" => o.daemon_args.push(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

/// Child side: `--child <device-name check> <command> ...`, printing one line per result.
fn child(args: &[String]) -> Res<()> {
    let g = Gpu::new()?;
    let mut cache = SpinCache::default();
    let result = child_requests(&g, &mut cache, args);
    cache.destroy(&g);
    result
}

fn child_requests(g: &Gpu, cache: &mut SpinCache, args: &[String]) -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "device {}", g.name)?;
    match args.first().map(String::as_str) {
        // calibrate: fits device ms = a + b·iters at GROUPS and prints `cal` lines.
        Some("calibrate") => {
            let w = |iters| Work {
                groups: GROUPS,
                iters,
            };
            // Warm the pipeline and the CPU clocks.
            device_ms(g, cache, w(1), Duration::from_millis(300))?;
            // Median of three short runs: the machine is shared and noisy.
            let mut ms = |iters| -> Res<f64> {
                let win = Duration::from_millis(250);
                let v = [
                    device_ms(g, cache, w(iters), win)?,
                    device_ms(g, cache, w(iters), win)?,
                    device_ms(g, cache, w(iters), win)?,
                ];
                Ok(median(&v))
            };
            let (i0, i1) = (1u32, 8000u32);
            let t0 = ms(i0)?;
            let t1 = ms(i1)?;
            let slope = ((t1 - t0) / f64::from(i1 - i0)).max(1e-6);
            let fixed = t0 - slope * f64::from(i0);
            writeln!(out, "fit fixed_ms={fixed:.4} ms_per_iter={slope:.6}")?;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive loop count well inside u32"
            )]
            let to_iters = |x: f64| x.round().clamp(1.0, 1e7) as u32;
            for target in SIZES_MS {
                let mut iters = to_iters((target - fixed) / slope);
                // Two correction steps from measurements at the estimate, each moving
                // at most halfway to zero or doubling, so one noisy sample cannot derail it.
                let mut got = ms(iters)?;
                for _ in 0..2 {
                    let next = f64::from(iters) + (target - got) / slope;
                    iters = to_iters(next.clamp(f64::from(iters) / 2.0, f64::from(iters) * 2.0));
                    got = ms(iters)?;
                }
                writeln!(out, "cal {target} {GROUPS} {iters} {got:.4}")?;
            }
        }
        // serve: one request per stdin line, answered on stdout, so that native and
        // Venus measurements can alternate point by point between two live clients.
        //   tp <groups> <iters> <depth> <warmup_s> <window_s> → `tp <submissions> <ns>`
        //   lat <iterations> <warmup> <fill|empty>           → `lat <ns>`… then `end`
        Some("serve") => {
            out.flush()?;
            for line in std::io::stdin().lines() {
                let line = line?;
                let f: Vec<&str> = line.split_whitespace().collect();
                match f[..] {
                    ["tp", groups, iters, depth, warmup, window] => {
                        let work = Work {
                            groups: groups.parse()?,
                            iters: iters.parse()?,
                        };
                        let t = throughput(
                            g,
                            cache,
                            work,
                            depth.parse()?,
                            Duration::from_secs_f64(warmup.parse()?),
                            Duration::from_secs_f64(window.parse()?),
                        )?;
                        writeln!(out, "tp {} {}", t.submissions, t.elapsed.as_nanos())?;
                    }
                    ["lat", n, warmup, kind] => {
                        let kind = match kind {
                            "fill" => RoundTrip::Fill,
                            "empty" => RoundTrip::Empty,
                            other => return Err(format!("bad round trip {other:?}").into()),
                        };
                        for s in latency_of(g, n.parse()?, warmup.parse()?, kind)? {
                            writeln!(out, "lat {s}")?;
                        }
                        writeln!(out, "end")?;
                    }
                    _ => return Err(format!("bad request {line:?}").into()),
                }
                out.flush()?;
            }
        }
        _ => return Err("unknown child command".into()),
    }
    Ok(())
}

/// Runs this executable as a child in `mode` and returns its stdout lines.
fn run_child(mode: Mode<'_>, args: &[String]) -> Res<Vec<String>> {
    let exe = std::env::current_exe()?;
    let mut cmd = client(exe.to_str().ok_or("non-UTF-8 executable path")?, mode);
    cmd.env("LP_NUM_THREADS", "1").arg("--child").args(args);
    let out = run_with_timeout(cmd, CHILD_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "child {args:?} ({mode:?}) failed: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let device = lines.first().map_or("", String::as_str);
    let venus = matches!(mode, Mode::Venus(_));
    if venus != device.contains("Venus") {
        return Err(format!("child ran on the wrong driver: {device}").into());
    }
    Ok(lines)
}

/// A live `--child serve` client.
#[derive(Debug)]
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn spawn(mode: Mode<'_>) -> Res<Self> {
        let exe = std::env::current_exe()?;
        let mut cmd = client(exe.to_str().ok_or("non-UTF-8 executable path")?, mode);
        cmd.env("LP_NUM_THREADS", "1")
            .args(["--child", "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().ok_or("no child stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
        let mut c = Self {
            child,
            stdin,
            stdout,
        };
        let device = c.line()?;
        if matches!(mode, Mode::Venus(_)) != device.contains("Venus") {
            return Err(format!("client runs on the wrong driver: {device}").into());
        }
        println!("{mode:?} client: {device}");
        Ok(c)
    }

    fn line(&mut self) -> Res<String> {
        let mut l = String::new();
        if self.stdout.read_line(&mut l)? == 0 {
            return Err("client exited (see its stderr above)".into());
        }
        Ok(l.trim_end().to_owned())
    }

    /// Submissions per second for a `tp` request.
    fn rate(&mut self, req: &str) -> Res<f64> {
        writeln!(self.stdin, "{req}")?;
        let l = self.line()?;
        let f: Vec<&str> = l.split_whitespace().collect();
        let ["tp", subs, ns] = f[..] else {
            return Err(format!("bad reply {l:?}").into());
        };
        Ok(subs.parse::<f64>()? / (ns.parse::<f64>()? / 1e9))
    }

    /// Round trips (ns) for a `lat` request.
    fn latency(&mut self, req: &str) -> Res<Vec<u64>> {
        writeln!(self.stdin, "{req}")?;
        let mut v = Vec::new();
        loop {
            let l = self.line()?;
            if l == "end" {
                return Ok(v);
            }
            v.push(l.strip_prefix("lat ").ok_or("bad reply")?.parse()?);
        }
    }

    fn finish(self) -> Res<()> {
        drop(self.stdin);
        let status = self.child.wait_with_output()?.status;
        if status.success() {
            Ok(())
        } else {
            Err(format!("client exited with {status}").into())
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
struct Point {
    target_ms: f64,
    device_ms: f64,
    iters: u32,
}

fn report(o: &Opts) -> Res<()> {
    let bin = vgpu_benches::daemon_bin::daemon_binary(o.daemon.as_deref())?;
    std::fs::create_dir_all(&o.out)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("vtest")
        .args(&o.daemon_args)
        .env("LP_NUM_THREADS", "1")
        .env("RUST_LOG", "warn");
    let daemon = Daemon::start_command(cmd, "bench")?;
    let sock = daemon.socket().to_path_buf();
    let venus = Mode::Venus(&sock);
    println!(
        "daemon: {} vtest {} (LP_NUM_THREADS=1)",
        bin.display(),
        o.daemon_args.join(" ")
    );
    println!("load average before: {}", loadavg());

    // 1. Calibrate natively.
    let cal = run_child(Mode::Native, &["calibrate".to_owned()])?;
    let mut points = Vec::new();
    for l in &cal {
        if let Some(rest) = l.strip_prefix("fit ") {
            println!("calibration (native, {GROUPS} workgroups × 64): {rest}");
        }
        if let Some(rest) = l.strip_prefix("cal ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let [target, _groups, iters, ms] = f[..] {
                points.push(Point {
                    target_ms: target.parse()?,
                    device_ms: ms.parse()?,
                    iters: iters.parse()?,
                });
            }
        }
    }
    for p in &points {
        println!(
            "  size {:>4} ms: {} iterations → {:.3} ms measured",
            p.target_ms, p.iters, p.device_ms
        );
    }

    // 2. Throughput: two live clients, native and Venus, alternating point by point
    // (order swapped every other point), so each pair sees the same machine load.
    let mut native = Client::spawn(Mode::Native)?;
    let mut guest = Client::spawn(venus)?;
    let (warm, win) = (o.warmup.as_secs_f64(), o.window.as_secs_f64());
    let mut rows = Vec::new();
    let mut k = 0usize;
    for rep in 0..o.reps {
        println!("throughput repetition {}/{} …", rep + 1, o.reps);
        for &depth in &o.depths {
            for p in &points {
                let req = format!("tp {GROUPS} {} {depth} {warm} {win}", p.iters);
                k += 1;
                let (nat, ven) = if k.is_multiple_of(2) {
                    let n = native.rate(&req)?;
                    (n, guest.rate(&req)?)
                } else {
                    let v = guest.rate(&req)?;
                    (native.rate(&req)?, v)
                };
                rows.push(OverheadRow {
                    target_ms: p.target_ms,
                    device_ms: p.device_ms,
                    groups: GROUPS,
                    iters: p.iters,
                    depth,
                    rep,
                    native: nat,
                    venus: ven,
                    units: Work {
                        groups: GROUPS,
                        iters: p.iters,
                    }
                    .units(),
                });
            }
        }
    }

    // 3. Latency, in alternating chunks of 500 round trips, for a one-fill command
    // buffer and for an empty submission.
    let chunks = o.latency_iters.div_ceil(500).max(1);
    let mut runs = Vec::new();
    for (kind, nat_mode, ven_mode) in LATENCY_KINDS {
        for rep in 0..o.latency_reps {
            println!(
                "latency ({kind}) repetition {}/{} …",
                rep + 1,
                o.latency_reps
            );
            let mut nat = Vec::new();
            let mut ven = Vec::new();
            for c in 0..chunks {
                let req = format!("lat {} 50 {kind}", o.latency_iters.div_ceil(chunks));
                if c.is_multiple_of(2) {
                    nat.extend(native.latency(&req)?);
                    ven.extend(guest.latency(&req)?);
                } else {
                    ven.extend(guest.latency(&req)?);
                    nat.extend(native.latency(&req)?);
                }
            }
            runs.push(LatencyRun {
                mode: nat_mode,
                rep,
                samples: nat,
            });
            runs.push(LatencyRun {
                mode: ven_mode,
                rep,
                samples: ven,
            });
        }
    }

    // 4. The daemon's CPU while both clients stay connected and quiet.
    let idle = idle_cpu(daemon.pid(), IDLE_SETTLE, IDLE_WINDOW);
    native.finish()?;
    guest.finish()?;
    println!("load average after: {}", loadavg());
    let log = daemon.log();
    drop(daemon);

    write_overhead_csv(&rows, &o.out.join("venus_overhead.csv"))?;
    write_overhead_svg(&rows, &o.depths, &o.out.join("venus_overhead.svg"))?;
    write_latency_csv(&runs, &o.out.join("venus_latency.csv"))?;
    write_latency_svg(&runs, &o.out.join("venus_latency.svg"))?;
    summary(o, &rows, &runs);
    print_guest_polling(&rows);
    match idle {
        Ok(pct) => println!(
            "Idle daemon (vtest daemon + its workers, two clients connected and quiet, {:.0} s after {:.0} s): {pct:.2} % of one core",
            IDLE_WINDOW.as_secs_f64(),
            IDLE_SETTLE.as_secs_f64()
        ),
        Err(e) => println!("Idle daemon CPU: not measured ({e})"),
    }
    if !log.trim().is_empty() {
        println!("daemon log (warnings and errors):\n{log}");
    }
    println!(
        "wrote {}/venus_{{overhead,latency}}.{{csv,svg}}",
        o.out.display()
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn summary(o: &Opts, rows: &[OverheadRow], runs: &[LatencyRun]) {
    println!();
    println!(
        "Throughput, Venus / native (work = invocations × iterations; {} repetition(s) of {:.1} s; median [min–max]):",
        o.reps,
        o.window.as_secs_f64()
    );
    println!(
        "{:>6} {:>9} {:>6} {:>12} {:>12} {:>22} {:>7} {:>5}",
        "depth", "size ms", "iters", "native sub/s", "venus sub/s", "ratio", "target", ""
    );
    for &d in &o.depths {
        for (ms, med) in median_ratios(rows, d) {
            let sel: Vec<&OverheadRow> = rows
                .iter()
                .filter(|r| r.depth == d && r.device_ms.total_cmp(&ms).is_eq())
                .collect();
            let Some(first) = sel.first() else { continue };
            let ratios: Vec<f64> = sel.iter().map(|r| r.ratio()).collect();
            let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
            let hi = ratios.iter().copied().fold(f64::MIN, f64::max);
            let nat = median(&sel.iter().map(|r| r.native).collect::<Vec<_>>());
            let ven = median(&sel.iter().map(|r| r.venus).collect::<Vec<_>>());
            let target = first.target();
            println!(
                "{:>6} {:>9.3} {:>6} {:>12.1} {:>12.1} {:>7.1} % [{:>5.1}–{:>5.1}] {:>5.0} % {:>5}",
                d,
                ms,
                first.iters,
                nat,
                ven,
                med * 100.0,
                lo * 100.0,
                hi * 100.0,
                target * 100.0,
                verdict(med >= target)
            );
        }
    }
    for (kind, nat_mode, ven_mode) in LATENCY_KINDS {
        let nat_s = pooled(runs, nat_mode);
        let ven_s = pooled(runs, ven_mode);
        let nat = LatencyStats::of(&nat_s);
        let ven = LatencyStats::of(&ven_s);
        println!();
        println!(
            "Submit → fence round trip ({}), {} samples per mode:",
            match kind {
                "fill" => "one 4-byte vkCmdFillBuffer",
                _ => "empty submission, fence only",
            },
            nat.n
        );
        println!(
            "{:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>14}",
            "mode", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "> 150 µs", "fast p50 µs"
        );
        for (name, s, raw) in [("native", nat, &nat_s), ("venus", ven, &ven_s)] {
            let m = Modes::of(raw);
            println!(
                "{:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} % {:>14.1}",
                name,
                s.p50,
                s.p90,
                s.p99,
                s.p999,
                s.max,
                m.slow_fraction * 100.0,
                m.fast_p50_us
            );
        }
        let (mn, mv) = (Modes::of(&nat_s), Modes::of(&ven_s));
        let d50 = ven.p50 - nat.p50;
        let d99 = ven.p99 - nat.p99;
        let fast = mv.fast_p50_us - mn.fast_p50_us;
        println!(
            "added p50 {d50:+.1} µs (target ≤ +{TARGET_ADDED_P50_US:.0}) {}; added p99 {d99:+.1} µs (target ≤ +{TARGET_ADDED_P99_US:.0}) {}",
            verdict(d50 <= TARGET_ADDED_P50_US),
            verdict(d99 <= TARGET_ADDED_P99_US)
        );
        if mv.fast_n > 0 {
            println!(
                "fast mode (samples ≤ {SLOW_MODE_US:.0} µs; {} of {} Venus samples): added p50 {fast:+.1} µs (target ≤ +{TARGET_FAST_ADDED_P50_US:.0}) {}",
                mv.fast_n,
                ven.n,
                verdict(fast <= TARGET_FAST_ADDED_P50_US)
            );
        } else {
            println!("fast mode: no Venus sample at or below {SLOW_MODE_US:.0} µs");
        }
    }
    println!(
        "Caveat: a shared, noisy 2-core machine; lavapipe with LP_NUM_THREADS=1; see the per-repetition spread."
    );
}

/// The round trips measured: request word, native and Venus run labels.
const LATENCY_KINDS: [(&str, &str, &str); 2] = [
    ("fill", "native", "venus"),
    ("empty", "native-empty", "venus-empty"),
];

/// A round trip above this is in the guest's slow mode: its `vkWaitForFences` went to
/// sleep (Mesa's `vn_relax`: 16 yields, then sleeps of 160 µs and more).
const SLOW_MODE_US: f64 = 150.0;
/// Added p50 round trip in the fast mode (issue 15).
const TARGET_FAST_ADDED_P50_US: f64 = 15.0;
/// Quiet time before the idle CPU window (the rings go idle after their 1 ms timeout).
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// The idle CPU window.
const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// Fast/slow split of round-trip samples at [`SLOW_MODE_US`].
struct Modes {
    slow_fraction: f64,
    fast_n: usize,
    fast_p50_us: f64,
}

impl Modes {
    #[allow(
        clippy::cast_precision_loss,
        reason = "sample counts and nanoseconds far below 2^52"
    )]
    fn of(samples: &[u64]) -> Self {
        let limit = SLOW_MODE_US * 1e3;
        let mut fast: Vec<u64> = samples
            .iter()
            .copied()
            .filter(|&ns| (ns as f64) <= limit)
            .collect();
        fast.sort_unstable();
        let slow = samples.len() - fast.len();
        Self {
            slow_fraction: if samples.is_empty() {
                0.0
            } else {
                slow as f64 / samples.len() as f64
            },
            fast_n: fast.len(),
            fast_p50_us: if fast.is_empty() {
                f64::NAN
            } else {
                vgpu_benches::venus::quantile(&fast, 0.5) as f64 / 1e3
            },
        }
    }
}

/// CPU time (ns) of `pid` and its descendants, from every thread's `schedstat`.
fn cpu_ns_tree(pid: u32) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            total += tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        stack.extend(children(p));
    }
    total
}

/// The daemon's CPU use (percent of one core) over `window`, after `settle`.
#[allow(
    clippy::cast_precision_loss,
    reason = "nanosecond totals far below 2^52"
)]
fn idle_cpu(pid: u32, settle: Duration, window: Duration) -> Res<f64> {
    std::thread::sleep(settle);
    let (c0, t0) = (cpu_ns_tree(pid), Instant::now());
    if c0 == 0 {
        return Err("no /proc schedstat for the daemon".into());
    }
    std::thread::sleep(window);
    let (c1, dt) = (cpu_ns_tree(pid), t0.elapsed());
    Ok(c1.saturating_sub(c0) as f64 / dt.as_nanos() as f64 * 100.0)
}

/// The guest driver's fence polling on this machine, measured the way Mesa 25.0.7's
/// `vn_relax` polls (16 `sched_yield`s, then sleeps asked at 160 µs), and the depth-1
/// throughput it allows even if the host took no time at all: the guest sees a
/// completion only at its next poll.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "small positive microsecond figures"
)]
fn print_guest_polling(rows: &[OverheadRow]) {
    let reps = 200u32;
    let t = Instant::now();
    for _ in 0..reps {
        for _ in 0..16 {
            std::thread::yield_now();
        }
    }
    let yields_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    let t = Instant::now();
    for _ in 0..reps {
        std::thread::sleep(Duration::from_micros(160));
    }
    let sleep_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    println!();
    println!(
        "Guest fence polling on this machine (Mesa 25.0.7 vn_relax): 16 yields {yields_us:.1} µs, then each sleep asked at 160 µs lasts {sleep_us:.1} µs"
    );
    println!("Depth-1 ceiling if the host added nothing (the guest sees completion at its first poll after the native period):");
    let mut sizes: Vec<f64> = rows
        .iter()
        .filter(|r| r.depth == 1)
        .map(|r| r.device_ms)
        .collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    for ms in sizes {
        let sel: Vec<f64> = rows
            .iter()
            .filter(|r| r.depth == 1 && r.device_ms.total_cmp(&ms).is_eq())
            .map(|r| r.native)
            .collect();
        let period_us = 1e6 / median(&sel);
        // Sleeps of 160 µs for the first 16, then 320 µs (vn_relax doubles every
        // power of two of its iteration count).
        // Sleep i (from 16 on) is asked at 160 µs << (log2(i) - 4) and oversleeps
        // by what the 160 µs sleep measured above oversleeps.
        let mut t_us = yields_us;
        let mut i = 16u32;
        while t_us < period_us && i < 1 << 12 {
            let shift = (31 - i.leading_zeros()).saturating_sub(4);
            t_us += 160.0 * f64::from(1u32 << shift) + (sleep_us - 160.0);
            i += 1;
        }
        println!(
            "  {ms:>7.3} ms: native period {period_us:>8.1} µs, first guest poll after it at {t_us:>8.1} µs → at most {:.1} % of native",
            period_us / t_us * 100.0
        );
    }
}
