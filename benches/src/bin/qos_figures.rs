//! Regenerates the QoS figures of issue 5 under `docs/qos/` and checks the targets.
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin qos_figures            # full run, ~10 s
//! cargo run -p vgpu-benches --release --bin qos_figures -- --quick # shorter, 1 seed
//! cargo run -p vgpu-benches --release --bin qos_figures -- --out DIR
//! ```
//!
//! Prints a summary table and exits with status 1 if a target is missed (a benchmark
//! check, not a test).

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the summary table"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use plotters::chart::SeriesLabelPosition;
use vgpu_benches::qos_decision::time_cycles;
use vgpu_benches::qos_experiments::{
    asymmetric_pairs, latency_sweep, median, ratio_sweep, symmetric_pairs, LatencyPoint,
    RatioPoint, Settings, Setup, MS,
};
use vgpu_benches::qos_plot::{fmt_f, line_chart, Chart, Csv, PlotError, Series};
use vgpu_scheduler::Policy;

const DECISION_VMS: [u32; 5] = [1, 4, 16, 64, 256];
const DECISION_TARGET_NS: f64 = 2_000.0;

#[allow(
    clippy::cast_precision_loss,
    reason = "simulated durations are far below 2^53 ns"
)]
fn ms(ns: u64) -> f64 {
    ns as f64 / MS as f64
}

fn colour(policy: Policy) -> usize {
    match policy {
        Policy::BestEffort => 0,
        Policy::EqualShare => 1,
        Policy::FixedShare => 2,
        Policy::Burst => 3,
    }
}

/// Target checks collected while writing the figures.
#[derive(Default)]
struct Checks {
    lines: Vec<(String, String, bool)>,
}

impl Checks {
    fn add(&mut self, what: String, measured: String, ok: bool) {
        self.lines.push((what, measured, ok));
    }

    fn all_ok(&self) -> bool {
        self.lines.iter().all(|l| l.2)
    }
}

fn ratio_figures(
    out: &std::path::Path,
    d4: &[RatioPoint],
    d1: &[RatioPoint],
    checks: &mut Checks,
) -> Result<(), PlotError> {
    let mut csv = Csv::new(&[
        "outstanding",
        "policy",
        "batch_a_ms",
        "batch_b_ms",
        "ratio_median",
        "ratio_worst",
        "ratio_min",
        "ratio_max",
        "util_median",
        "util_vs_fifo_min",
        "seeds",
    ]);
    for p in d4.iter().chain(d1) {
        let min = p.ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = p.ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        csv.row(vec![
            p.outstanding.to_string(),
            p.policy.name().to_owned(),
            fmt_f(ms(p.batch_a_ns), 1),
            fmt_f(ms(p.batch_b_ns), 1),
            fmt_f(p.ratio(), 4),
            fmt_f(p.worst_ratio(), 4),
            fmt_f(min, 4),
            fmt_f(max, 4),
            fmt_f(median(&p.utils), 4),
            fmt_f(p.worst_util_vs_fifo(), 4),
            p.ratios.len().to_string(),
        ]);
    }
    csv.write(&out.join("qos_ratio.csv"))?;

    // Figure 1: symmetric batches.
    let symmetric = |pts: &[RatioPoint], policy: Policy| -> Vec<(f64, f64)> {
        pts.iter()
            .filter(|p| p.policy == policy && p.batch_a_ns == p.batch_b_ns)
            .map(|p| (ms(p.batch_a_ns), p.ratio()))
            .collect()
    };
    // Fixed-share last so that it is drawn on top of burst (they coincide at 4 outstanding).
    let draw_order = [
        Policy::BestEffort,
        Policy::EqualShare,
        Policy::Burst,
        Policy::FixedShare,
    ];
    let mut series: Vec<Series> = draw_order
        .iter()
        .map(|&policy| Series {
            label: format!("{} (4 outstanding)", policy.name()),
            points: symmetric(d4, policy),
            colour: colour(policy),
            dashed: false,
        })
        .collect();
    for policy in [Policy::FixedShare, Policy::Burst] {
        series.push(Series {
            label: format!("{} (1 outstanding)", policy.name()),
            points: symmetric(d1, policy),
            colour: colour(policy),
            dashed: true,
        });
    }
    series.push(Series {
        label: "configured 2:1".to_owned(),
        points: vec![(0.15, 2.0), (130.0, 2.0)],
        colour: 6,
        dashed: true,
    });
    line_chart(
        &out.join("qos_ratio.svg"),
        &Chart {
            title: "Two VMs at a 2:1 share: achieved throughput ratio vs batch size",
            x_label: "batch size (ms, both VMs)",
            y_label: "work ratio A/B",
            x_range: (0.15, 130.0),
            y_range: (0.0, 2.6),
            log_x: true,
            log_y: false,
            legend: SeriesLabelPosition::LowerRight,
        },
        &series,
    )?;

    // Figure 1b: unequal batch sizes (x = A's batch / B's batch; 1 = both 1 ms).
    let asym = |policy: Policy| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = d4
            .iter()
            .filter(|p| p.policy == policy && (p.batch_a_ns != p.batch_b_ns || p.batch_a_ns == MS))
            .map(|p| (ms(p.batch_a_ns) / ms(p.batch_b_ns), p.ratio()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let mut series: Vec<Series> = Policy::ALL
        .iter()
        .map(|&policy| Series {
            label: policy.name().to_owned(),
            points: asym(policy),
            colour: colour(policy),
            dashed: false,
        })
        .collect();
    series.push(Series {
        label: "configured 2:1".to_owned(),
        points: vec![(0.03, 2.0), (35.0, 2.0)],
        colour: 6,
        dashed: true,
    });
    line_chart(
        &out.join("qos_ratio_asymmetric.svg"),
        &Chart {
            title: "2:1 share with unequal batches (1 ms vs 20 ms)",
            x_label: "A's batch / B's batch (0.05 = A 1 ms, B 20 ms; 20 = A 20 ms, B 1 ms)",
            y_label: "work ratio A/B",
            x_range: (0.03, 35.0),
            y_range: (0.02, 50.0),
            log_x: true,
            log_y: true,
            legend: SeriesLabelPosition::UpperLeft,
        },
        &series,
    )?;

    // Targets.
    for p in d4.iter().filter(|p| p.policy == Policy::FixedShare) {
        let biggest = p.batch_a_ns.max(p.batch_b_ns);
        let tol = if biggest <= 50 * MS { 0.02 } else { 0.05 };
        let err = (p.worst_ratio() / 2.0 - 1.0).abs();
        checks.add(
            format!(
                "fixed-share ratio, A {} ms / B {} ms: |R/2-1| <= {:.0}%",
                fmt_f(ms(p.batch_a_ns), 1),
                fmt_f(ms(p.batch_b_ns), 1),
                tol * 100.0
            ),
            format!(
                "R median {} worst {} ({}%)",
                fmt_f(p.ratio(), 4),
                fmt_f(p.worst_ratio(), 4),
                fmt_f(err * 100.0, 2)
            ),
            err <= tol,
        );
    }
    for policy in [Policy::Burst, Policy::BestEffort] {
        let worst = d4
            .iter()
            .filter(|p| p.policy == policy)
            .min_by(|a, b| a.worst_util_vs_fifo().total_cmp(&b.worst_util_vs_fifo()));
        if let Some(p) = worst {
            let u = p.worst_util_vs_fifo();
            checks.add(
                format!("{} utilisation >= 98% of FIFO (worst batch)", policy.name()),
                format!(
                    "{}% at A {} ms / B {} ms",
                    fmt_f(u * 100.0, 2),
                    fmt_f(ms(p.batch_a_ns), 1),
                    fmt_f(ms(p.batch_b_ns), 1)
                ),
                u >= 0.98,
            );
        }
    }
    Ok(())
}

fn latency_figures(
    out: &std::path::Path,
    points: &[LatencyPoint],
    checks: &mut Checks,
) -> Result<(), PlotError> {
    let alone = |batch: u64| {
        points
            .iter()
            .find(|p| p.setup == Setup::Alone && p.offline_batch_ns == batch)
            .map_or(0, |p| p.p99_ns)
    };
    let mut csv = Csv::new(&[
        "setup",
        "offline_batch_ms",
        "online_p50_ms",
        "online_p99_ms",
        "online_p999_ms",
        "samples",
        "offline_device_share",
        "target_p99_ms",
        "meets_target",
    ]);
    for p in points {
        let target = alone(p.offline_batch_ns) + p.offline_batch_ns + MS;
        csv.row(vec![
            p.setup.name().to_owned(),
            fmt_f(ms(p.offline_batch_ns), 0),
            fmt_f(ms(p.p50_ns), 3),
            fmt_f(ms(p.p99_ns), 3),
            fmt_f(ms(p.p999_ns), 3),
            p.samples.to_string(),
            fmt_f(p.offline_util, 4),
            fmt_f(ms(target), 3),
            (p.p99_ns <= target).to_string(),
        ]);
        if let Setup::With(policy) = p.setup {
            if policy != Policy::BestEffort {
                checks.add(
                    format!(
                        "online p99 with {} offline {} ms <= alone + batch + 1 ms",
                        policy.name(),
                        ms(p.offline_batch_ns)
                    ),
                    format!(
                        "{} ms (target {} ms)",
                        fmt_f(ms(p.p99_ns), 3),
                        fmt_f(ms(target), 3)
                    ),
                    p.p99_ns <= target,
                );
            }
        }
    }
    csv.write(&out.join("qos_latency.csv"))?;

    let mut series = Vec::new();
    for (i, setup) in Setup::ALL.iter().enumerate() {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.setup == *setup)
            .map(|p| (ms(p.offline_batch_ns), ms(p.p99_ns)))
            .collect();
        series.push(Series {
            label: format!("online p99, {}", setup.name()),
            points: pts,
            colour: match setup {
                Setup::Alone => 5,
                Setup::With(p) => colour(*p),
            },
            dashed: false,
        });
        let _ = i;
    }
    let target: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.setup == Setup::Alone)
        .map(|p| {
            (
                ms(p.offline_batch_ns),
                ms(p.p99_ns + p.offline_batch_ns + MS),
            )
        })
        .collect();
    series.push(Series {
        label: "target: alone p99 + batch + 1 ms".to_owned(),
        points: target,
        colour: 6,
        dashed: true,
    });
    line_chart(
        &out.join("qos_latency.svg"),
        &Chart {
            title: "Online VM (1 ms jobs, 5% load) next to a saturating offline VM",
            x_label: "offline batch size (ms)",
            y_label: "online p99 latency (ms)",
            x_range: (0.8, 130.0),
            y_range: (1.0, 1000.0),
            log_x: true,
            log_y: true,
            legend: SeriesLabelPosition::UpperLeft,
        },
        &series,
    )?;
    Ok(())
}

fn decision_figures(
    out: &std::path::Path,
    quick: bool,
    checks: &mut Checks,
) -> Result<(), PlotError> {
    let (samples, iters) = if quick { (11, 5_000) } else { (31, 20_000) };
    let mut csv = Csv::new(&["policy", "vms", "median_ns", "min_ns", "max_ns"]);
    let mut series = Vec::new();
    for policy in Policy::ALL {
        let mut pts = Vec::new();
        for vms in DECISION_VMS {
            let (med, min, max) = time_cycles(policy, vms, samples, iters);
            csv.row(vec![
                policy.name().to_owned(),
                vms.to_string(),
                fmt_f(med, 1),
                fmt_f(min, 1),
                fmt_f(max, 1),
            ]);
            pts.push((f64::from(vms), med));
            if vms == 64 {
                checks.add(
                    format!("{} decision path, 64 VMs, median <= 2 us", policy.name()),
                    format!("{} ns", fmt_f(med, 0)),
                    med <= DECISION_TARGET_NS,
                );
            }
        }
        series.push(Series {
            label: policy.name().to_owned(),
            points: pts,
            colour: colour(policy),
            dashed: false,
        });
    }
    series.push(Series {
        label: "target 2 us".to_owned(),
        points: vec![(1.0, DECISION_TARGET_NS), (256.0, DECISION_TARGET_NS)],
        colour: 6,
        dashed: true,
    });
    csv.write(&out.join("qos_decision.csv"))?;
    line_chart(
        &out.join("qos_decision.svg"),
        &Chart {
            title: "Arbiter per-submission path (grant + complete + submit), all VMs backlogged",
            x_label: "attached VMs",
            y_label: "median ns per submission",
            x_range: (0.8, 320.0),
            y_range: (10.0, 10_000.0),
            log_x: true,
            log_y: true,
            legend: SeriesLabelPosition::UpperLeft,
        },
        &series,
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/qos")),
            PathBuf::from,
        );
    let settings = if quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        println!("cannot create {}: {e}", out.display());
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    let mut pairs = symmetric_pairs();
    pairs.extend(asymmetric_pairs());
    let d4 = ratio_sweep(&pairs, 4, &settings);
    let d1 = ratio_sweep(&pairs, 1, &settings);
    let latency = latency_sweep(&settings);
    let mut checks = Checks::default();
    let result = ratio_figures(&out, &d4, &d1, &mut checks)
        .and_then(|()| latency_figures(&out, &latency, &mut checks))
        .and_then(|()| decision_figures(&out, quick, &mut checks));
    if let Err(e) = result {
        println!("error: {e}");
        return ExitCode::from(2);
    }

    let shown = out.canonicalize().unwrap_or_else(|_| out.clone());
    println!("QoS figures written to {}", shown.display());
    println!(
        "settings: {} seeds, {} s ratio runs, {} s latency runs, {} s warm-up; took {:.1} s",
        settings.seeds.len(),
        settings.ratio_duration_ns / 1_000 / MS,
        settings.latency_duration_ns / 1_000 / MS,
        settings.warmup_ns / 1_000 / MS,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("ratio A/B (2:1 share, 4 outstanding; median over seeds)");
    println!(
        "{:>14} {:>12} {:>12} {:>12} {:>12}",
        "A/B batch ms", "best-effort", "equal-share", "fixed-share", "burst"
    );
    for &(a, b) in &pairs {
        let cell = |policy: Policy| {
            d4.iter()
                .find(|p| p.policy == policy && p.batch_a_ns == a && p.batch_b_ns == b)
                .map_or_else(String::new, |p| fmt_f(p.ratio(), 3))
        };
        println!(
            "{:>14} {:>12} {:>12} {:>12} {:>12}",
            format!("{}/{}", ms(a), ms(b)),
            cell(Policy::BestEffort),
            cell(Policy::EqualShare),
            cell(Policy::FixedShare),
            cell(Policy::Burst)
        );
    }
    println!();
    println!("online p99 ms (p50 in brackets) vs offline batch");
    print!("{:>12}", "setup");
    for b in vgpu_benches::qos_experiments::OFFLINE_BATCHES_MS {
        print!(" {:>16}", format!("{b} ms"));
    }
    println!();
    for setup in Setup::ALL {
        print!("{:>12}", setup.name());
        for p in latency.iter().filter(|p| p.setup == setup) {
            print!(
                " {:>16}",
                format!("{} ({})", fmt_f(ms(p.p99_ns), 2), fmt_f(ms(p.p50_ns), 2))
            );
        }
        println!();
    }
    println!();
    println!("targets");
    for (what, measured, ok) in &checks.lines {
        println!(
            "  [{}] {what}: {measured}",
            if *ok { " ok " } else { "MISS" }
        );
    }
    if checks.all_ok() {
        println!("all targets met");
        ExitCode::SUCCESS
    } else {
        println!("some targets missed");
        ExitCode::from(1)
    }
}
