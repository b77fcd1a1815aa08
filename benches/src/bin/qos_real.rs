//! qGPU's figure on the real path: two real Mesa Venus client processes on lavapipe
//! (`LP_NUM_THREADS=1`), each a vtest VM of `vhost-user-vgpu vtest --qos-policy P`,
//! both saturating (two submissions in flight) with spin batches of a fixed device time,
//! at a 2:1 share; the achieved ratio per batch size and policy. Plus unequal batches
//! (1 ms vs 20 ms) and the cost of scheduling (one VM alone, fixed-share 100 % vs no
//! scheduler, throughput and submit→fence p50).
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin qos_real            # all sizes, ~10 min
//! cargo run -p vgpu-benches --release --bin qos_real -- --quick # 4 sizes, shorter windows
//! cargo run -p vgpu-benches --release --bin qos_real -- --sizes 1,20 --out DIR --daemon PATH
//! cargo run -p vgpu-benches --release --bin qos_real -- --cost-only --cost-reps 7
//! ```
//!
//! Writes `qos_real_ratio.csv`, `qos_real_ratio.svg`, `qos_real_cost.csv` and
//! `qos_real_report.txt` under `docs/qos/` (beside the simulated `qos_ratio.*`);
//! `--cost-only` runs only the cost of scheduling and writes `qos_real_cost.csv` and
//! `qos_real_cost_report.txt`.
//!
//! The ratio is counted in batches completed by each VM in a window (both VMs' batches
//! are the same calibrated size; for unequal batches, batches × calibrated size), read
//! from the daemon's control socket (`list`), so it does not depend on the daemon's own
//! device-time measurement; that measurement is reported beside it.

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the report"
)]
#![allow(
    clippy::cast_precision_loss,
    reason = "counts and durations far below 2^52"
)]

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use plotters::chart::SeriesLabelPosition;
use vgpu_benches::daemon_bin::daemon_binary;
use vgpu_benches::qos_client::{
    bench_main, common_option, loadavg, qos_docs_dir, run_child, spawn_child, Res, GROUPS,
};
use vgpu_benches::qos_daemon::Daemon;
use vgpu_benches::qos_plot::{fmt_f, line_chart, Chart, Csv, Series};
use vgpu_benches::venus::median;
use vgpu_tests::harness::Mode;

const SIZES_MS: [f64; 9] = [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];
const QUICK_SIZES_MS: [f64; 4] = [0.5, 2.0, 20.0, 100.0];
const POLICIES: [&str; 4] = ["best-effort", "equal-share", "fixed-share", "burst"];

/// Alternating rounds per size of the cost-of-scheduling comparison (`--cost-reps`).
const COST_REPS: usize = 3;

struct Opts {
    out: PathBuf,
    daemon: Option<PathBuf>,
    sizes: Vec<f64>,
    window: Duration,
    settle: Duration,
    /// Only the cost of scheduling (`--cost-only`).
    cost_only: bool,
    /// Alternating rounds per size of the cost comparison.
    cost_reps: usize,
}

fn main() -> ExitCode {
    bench_main("qos_real", |args| parse(args).and_then(|o| report(&o)))
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        out: qos_docs_dir(),
        daemon: None,
        sizes: SIZES_MS.to_vec(),
        window: Duration::from_secs(3),
        settle: Duration::from_millis(1000),
        cost_only: false,
        cost_reps: COST_REPS,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if common_option(a, &mut it, &mut o.out, &mut o.daemon)? {
            continue;
        }
        match a.as_str() {
            "--quick" => {
                o.sizes = QUICK_SIZES_MS.to_vec();
                o.window = Duration::from_secs(2);
                o.settle = Duration::from_millis(600);
            }
            "--sizes" => {
                o.sizes = it
                    .next()
                    .ok_or("--sizes MS,MS,…")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--cost-only" => o.cost_only = true,
            "--cost-reps" => {
                o.cost_reps = it.next().ok_or("--cost-reps N")?.parse()?;
                if o.cost_reps == 0 {
                    return Err("--cost-reps must be at least 1".into());
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------
// Parent side.

/// One two-VM measurement.
struct Pair {
    batches: [u64; 2],
    device_ms: [f64; 2],
}

/// Runs VM A (`iters_a`, share 2/3) and VM B (`iters_b`, share 1/3) saturating under
/// `policy`, and counts each one's batches over the window.
fn pair(d: &Daemon, policy: &str, iters: [u32; 2], o: &Opts) -> Res<Pair> {
    let seconds = (o.settle + o.window).as_secs_f64() + 6.0;
    let spin = |it: u32| {
        spawn_child(
            Mode::Venus(&d.socket),
            &[
                "spin".into(),
                GROUPS.to_string(),
                it.to_string(),
                format!("{seconds:.1}"),
            ],
        )
    };
    let (mut a, _ao) = spin(iters[0])?;
    let vm_a = d.new_vm(&[])?;
    let (mut b, _bo) = spin(iters[1])?;
    let vm_b = d.new_vm(std::slice::from_ref(&vm_a))?;
    let (cap_a, cap_b) = match policy {
        "fixed-share" => ("66.7", "33.3"),
        _ => ("none", "none"),
    };
    d.ctl(&format!("set {vm_b} share=33.3 cap={cap_b}"))?;
    d.ctl(&format!("set {vm_a} share=66.7 cap={cap_a}"))?;
    std::thread::sleep(o.settle);
    let get = |l: &[(String, u64, f64)], vm: &str| {
        l.iter()
            .find(|(v, _, _)| v == vm)
            .map_or((0, 0.0), |(_, s, t)| (*s, *t))
    };
    let before = d.list()?;
    std::thread::sleep(o.window);
    let after = d.list()?;
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    d.wait_empty()?;
    let delta = |vm: &str| {
        let (s0, t0) = get(&before, vm);
        let (s1, t1) = get(&after, vm);
        (s1.saturating_sub(s0), t1 - t0)
    };
    let (da, db) = (delta(&vm_a), delta(&vm_b));
    Ok(Pair {
        batches: [da.0, db.0],
        device_ms: [da.1, db.1],
    })
}

fn colour(policy: &str) -> usize {
    match policy {
        "best-effort" => 0,
        "equal-share" => 1,
        "fixed-share" => 2,
        _ => 3,
    }
}

#[allow(clippy::too_many_lines, reason = "one report, read top to bottom")]
fn report(o: &Opts) -> Res<()> {
    let bin = daemon_binary(o.daemon.as_deref())?;
    std::fs::create_dir_all(&o.out)?;
    let mut text = String::new();
    let mut say = |s: String| {
        println!("{s}");
        text.push_str(&s);
        text.push('\n');
    };
    say(format!(
        "qos_real: lavapipe, LP_NUM_THREADS=1, {GROUPS} workgroups x 64 invocations per batch; \
         load average {} at start",
        loadavg()
    ));
    // Calibrate natively: iterations per batch size.
    let mut args = vec!["calibrate".to_owned()];
    args.extend(o.sizes.iter().map(|s| s.to_string()));
    args.push("1".into());
    args.push("20".into());
    let cal = run_child(Mode::Native, &args)?;
    let mut iters = Vec::new();
    for l in &cal {
        say(format!("  {l}"));
        if let ["cal", size, it, got] = l.split_whitespace().collect::<Vec<_>>()[..] {
            iters.push((
                size.parse::<f64>()?,
                it.parse::<u32>()?,
                got.parse::<f64>()?,
            ));
        }
    }
    let iters_for = |ms: f64| {
        iters
            .iter()
            .find(|(s, _, _)| (s - ms).abs() < 1e-9)
            .map(|&(_, i, got)| (i, got))
            .ok_or("uncalibrated size")
    };

    // The 2:1 figure.
    let mut csv = Csv::new(&[
        "policy",
        "batch_ms",
        "batches_a",
        "batches_b",
        "ratio",
        "device_ms_a",
        "device_ms_b",
        "device_ratio",
        "loadavg",
    ]);
    let mut series = Vec::new();
    let policies: &[&str] = if o.cost_only { &[] } else { &POLICIES };
    for &policy in policies {
        let d = Daemon::start(&bin, policy)?;
        let mut points = Vec::new();
        for &size in &o.sizes {
            let (it, _) = iters_for(size)?;
            let p = pair(&d, policy, [it, it], o)?;
            let r = p.batches[0] as f64 / p.batches[1].max(1) as f64;
            let dr = p.device_ms[0] / p.device_ms[1].max(1e-9);
            let load = loadavg();
            say(format!(
                "{policy:12} {size:6} ms  batches {:6} : {:6}  ratio {r:.3}  (daemon device time \
                 {:.0} : {:.0} ms, {dr:.3})  load {load}",
                p.batches[0], p.batches[1], p.device_ms[0], p.device_ms[1]
            ));
            csv.row(vec![
                policy.into(),
                size.to_string(),
                p.batches[0].to_string(),
                p.batches[1].to_string(),
                fmt_f(r, 4),
                fmt_f(p.device_ms[0], 1),
                fmt_f(p.device_ms[1], 1),
                fmt_f(dr, 4),
                load,
            ]);
            points.push((size, r));
        }
        // Unequal batches: A 1 ms, B 20 ms; the ratio is in device time (batches ×
        // calibrated size).
        let (i1, t1) = iters_for(1.0)?;
        let (i20, t20) = iters_for(20.0)?;
        let p = pair(&d, policy, [i1, i20], o)?;
        let r = (p.batches[0] as f64 * t1) / (p.batches[1] as f64 * t20).max(1e-9);
        say(format!(
            "{policy:12} 1 ms vs 20 ms  batches {} : {}  device-time ratio {r:.3}  load {}",
            p.batches[0],
            p.batches[1],
            loadavg()
        ));
        csv.row(vec![
            policy.into(),
            "1vs20".into(),
            p.batches[0].to_string(),
            p.batches[1].to_string(),
            fmt_f(r, 4),
            fmt_f(p.device_ms[0], 1),
            fmt_f(p.device_ms[1], 1),
            fmt_f(p.device_ms[0] / p.device_ms[1].max(1e-9), 4),
            loadavg(),
        ]);
        series.push(Series {
            label: policy.into(),
            points,
            colour: colour(policy),
            dashed: false,
        });
    }
    let (lo, hi) = (
        o.sizes.first().copied().unwrap_or(0.2),
        o.sizes.last().copied().unwrap_or(100.0),
    );
    series.push(Series {
        label: "target 2.0".into(),
        points: vec![(lo, 2.0), (hi, 2.0)],
        colour: 6,
        dashed: true,
    });
    if !o.cost_only {
        csv.write(&o.out.join("qos_real_ratio.csv"))?;
        line_chart(
            &o.out.join("qos_real_ratio.svg"),
            &Chart {
                title: "Two Venus VMs at a 2:1 share on lavapipe: achieved ratio",
                x_label: "batch device time (ms)",
                y_label: "batches of VM A / batches of VM B",
                x_range: (lo * 0.8, hi * 1.25),
                y_range: (0.0, 3.0),
                log_x: true,
                log_y: false,
                legend: SeriesLabelPosition::LowerRight,
            },
            &series,
        )?;
    }

    // Cost of scheduling: one VM alone, best-effort (no gate) vs fixed-share 100 %.
    let mut cost = Csv::new(&[
        "batch_ms",
        "none_per_s",
        "fixed100_per_s",
        "throughput_ratio",
        "loadavg",
    ]);
    let none = Daemon::start(&bin, "best-effort")?;
    let fixed = Daemon::start(&bin, "fixed-share")?;
    let alone = |d: &Daemon, it: u32, fixed100: bool| -> Res<f64> {
        let secs = o.window.as_secs_f64();
        let (mut c, out) = spawn_child(
            Mode::Venus(&d.socket),
            &[
                "spin".into(),
                GROUPS.to_string(),
                it.to_string(),
                format!("{secs:.1}"),
            ],
        )?;
        if fixed100 {
            let vm = d.new_vm(&[])?;
            d.ctl(&format!("set {vm} share=100 cap=100"))?;
        }
        let lines: Vec<String> = out.lines().collect::<Result<_, _>>()?;
        c.wait()?;
        d.wait_empty()?;
        let tp = lines
            .iter()
            .find_map(|l| l.strip_prefix("tp "))
            .ok_or("no throughput line")?;
        let f: Vec<f64> = tp
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        Ok(f.first().copied().unwrap_or(0.0) / (f.get(1).copied().unwrap_or(1.0) / 1e9))
    };
    // Paired: `cost_reps` alternating rounds, the median of each (one round each gave
    // ±5 % between neighbouring sizes on a quiet machine, and single 0.2 ms rounds
    // vary by ±10 %).
    for &size in &o.sizes {
        let (it, _) = iters_for(size)?;
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for _ in 0..o.cost_reps {
            xs.push(alone(&none, it, false)?);
            ys.push(alone(&fixed, it, true)?);
        }
        let (a, b) = (median(&xs), median(&ys));
        let load = loadavg();
        say(format!(
            "cost {size:6} ms  no scheduler {a:8.1}/s  fixed-share 100 % {b:8.1}/s  ratio {:.3}  \
             (medians of {} alternating rounds: none {}; fixed {})  load {load}",
            b / a.max(1e-9),
            o.cost_reps,
            rounds(&xs),
            rounds(&ys)
        ));
        cost.row(vec![
            size.to_string(),
            fmt_f(a, 2),
            fmt_f(b, 2),
            fmt_f(b / a.max(1e-9), 4),
            load,
        ]);
    }
    let lat = |d: &Daemon, fixed100: bool| -> Res<String> {
        let (mut c, out) = spawn_child(
            Mode::Venus(&d.socket),
            &["lat".into(), "2000".into(), "200".into()],
        )?;
        if fixed100 {
            let vm = d.new_vm(&[])?;
            d.ctl(&format!("set {vm} share=100 cap=100"))?;
        }
        let lines: Vec<String> = out.lines().collect::<Result<_, _>>()?;
        c.wait()?;
        d.wait_empty()?;
        Ok(lines
            .iter()
            .find_map(|l| l.strip_prefix("lat "))
            .unwrap_or("?")
            .to_owned())
    };
    let (l_none, l_fixed) = (lat(&none, false)?, lat(&fixed, true)?);
    say(format!(
        "submit->fence ns, tiny batch: no scheduler {l_none}; fixed-share 100 % {l_fixed}"
    ));
    cost.write(&o.out.join("qos_real_cost.csv"))?;
    let sizes: &[f64] = if o.cost_only { &[] } else { &o.sizes };
    // Device time two ways, one VM alone under fixed-share, one batch at a time: what
    // the daemon charged (timestamps of its own around each granted batch, or
    // completion timing where it cannot stamp) vs the client's timestamps around its
    // dispatch inside the batch.
    for &size in sizes {
        let (it, _) = iters_for(size)?;
        let secs = o.window.as_secs_f64();
        let (mut c, out) = spawn_child(
            Mode::Venus(&fixed.socket),
            &[
                "tsspin".into(),
                GROUPS.to_string(),
                it.to_string(),
                format!("{secs:.1}"),
            ],
        )?;
        let vm = fixed.new_vm(&[])?;
        let mut lines = Vec::new();
        for l in out.lines() {
            let l = l?;
            let done = l.starts_with("ts ");
            lines.push(l);
            if done {
                break;
            }
        }
        let daemon = fixed
            .list()?
            .into_iter()
            .find(|(v, _, _)| *v == vm)
            .map(|(_, s, t)| (s, t));
        c.wait()?;
        fixed.wait_empty()?;
        let ts = lines
            .iter()
            .find_map(|l| l.strip_prefix("ts "))
            .ok_or("no timestamp line")?;
        let f: Vec<f64> = ts
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let ts_ms =
            f.get(1).copied().unwrap_or(0.0) / 1e6 / f.first().copied().unwrap_or(1.0).max(1.0);
        if let Some((subs, dev_ms)) = daemon {
            let per = dev_ms / (subs.max(1) as f64);
            say(format!(
                "device time {size:6} ms batch: client's timestamps {ts_ms:.4} ms, daemon charged {per:.4} ms per batch ({:+.1} %), {subs} batches, load {}",
                (per / ts_ms.max(1e-9) - 1.0) * 100.0,
                loadavg()
            ));
        }
    }
    let mut tail = String::new();
    let _ = write!(tail, "load average {} at end", loadavg());
    say(tail);
    let report = if o.cost_only {
        "qos_real_cost_report.txt"
    } else {
        "qos_real_report.txt"
    };
    std::fs::write(o.out.join(report), text)?;
    Ok(())
}

/// Each round's figure, `a/b/c` per second (one decimal below 100/s).
fn rounds(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| {
            if *x < 100.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.0}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
