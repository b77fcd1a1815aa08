//! CSV and SVG output for the Venus overhead numbers (`venus_report`).

use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use crate::qos_plot::{fmt_f, line_chart, Chart, Csv, PlotError, Series};
use crate::venus::{median, quantile};

/// Throughput target (Venus / native) at submissions of at least 1 ms.
pub const TARGET_RATIO_LARGE: f64 = 0.95;
/// Throughput target at 0.2 ms submissions (issue 15: 95 % at depth 1).
pub const TARGET_RATIO_SMALL: f64 = 0.95;
/// Largest submission size (ms) held to the small-submission target.
pub const SMALL_BELOW_MS: f64 = 1.0;
/// Largest added p50 round trip, µs.
pub const TARGET_ADDED_P50_US: f64 = 50.0;
/// Largest added p99 round trip, µs.
pub const TARGET_ADDED_P99_US: f64 = 200.0;

/// One throughput point with both modes, one repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct OverheadRow {
    /// Requested device time per submission, ms.
    pub target_ms: f64,
    /// Calibrated native device time per submission, ms.
    pub device_ms: f64,
    /// Workgroups per dispatch.
    pub groups: u32,
    /// Loop rounds per invocation.
    pub iters: u32,
    /// Submissions in flight.
    pub depth: usize,
    /// Repetition index.
    pub rep: usize,
    /// Native submissions per second.
    pub native: f64,
    /// Venus submissions per second.
    pub venus: f64,
    /// Work units (invocations × iterations) per submission.
    pub units: u64,
}

impl OverheadRow {
    /// Venus / native throughput.
    pub fn ratio(&self) -> f64 {
        self.venus / self.native
    }

    /// The target ratio for this size.
    pub fn target(&self) -> f64 {
        if self.target_ms < SMALL_BELOW_MS {
            TARGET_RATIO_SMALL
        } else {
            TARGET_RATIO_LARGE
        }
    }
}

/// Latency samples of one mode and repetition, in ns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyRun {
    /// `native` or `venus` (one-fill round trips), `native-empty` or `venus-empty`.
    pub mode: &'static str,
    /// Repetition index.
    pub rep: usize,
    /// Round trips, ns (any order).
    pub samples: Vec<u64>,
}

/// Percentiles of a latency sample set, µs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyStats {
    /// Sample count.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencyStats {
    /// Statistics of `samples` (ns).
    #[allow(
        clippy::cast_precision_loss,
        reason = "nanosecond samples and counts are far below 2^52"
    )]
    pub fn of(samples: &[u64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let us = |q: f64| quantile(&s, q) as f64 / 1e3;
        let sum: u64 = s.iter().sum();
        Self {
            n: s.len(),
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: s.last().map_or(0.0, |&m| m as f64 / 1e3),
            mean: sum as f64 / s.len().max(1) as f64 / 1e3,
        }
    }
}

/// Writes the throughput rows as CSV.
pub fn write_overhead_csv(rows: &[OverheadRow], path: &Path) -> Result<(), PlotError> {
    let mut csv = Csv::new(&[
        "target_ms",
        "device_ms",
        "groups",
        "iters",
        "depth",
        "rep",
        "work_units_per_submission",
        "native_submissions_per_s",
        "venus_submissions_per_s",
        "native_units_per_s",
        "venus_units_per_s",
        "ratio",
    ]);
    #[allow(clippy::cast_precision_loss, reason = "work units are far below 2^52")]
    for r in rows {
        let units = r.units as f64;
        csv.row(vec![
            fmt_f(r.target_ms, 1),
            fmt_f(r.device_ms, 3),
            r.groups.to_string(),
            r.iters.to_string(),
            r.depth.to_string(),
            r.rep.to_string(),
            r.units.to_string(),
            fmt_f(r.native, 2),
            fmt_f(r.venus, 2),
            fmt_f(r.native * units, 0),
            fmt_f(r.venus * units, 0),
            fmt_f(r.ratio(), 4),
        ]);
    }
    csv.write(path)
}

/// Writes per-run and pooled latency percentiles as CSV.
pub fn write_latency_csv(runs: &[LatencyRun], path: &Path) -> Result<(), PlotError> {
    let mut csv = Csv::new(&[
        "mode", "rep", "n", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us",
    ]);
    let mut push = |mode: &str, rep: String, st: LatencyStats| {
        csv.row(vec![
            mode.to_owned(),
            rep,
            st.n.to_string(),
            fmt_f(st.p50, 1),
            fmt_f(st.p90, 1),
            fmt_f(st.p99, 1),
            fmt_f(st.p999, 1),
            fmt_f(st.max, 1),
            fmt_f(st.mean, 1),
        ]);
    };
    for r in runs {
        push(r.mode, r.rep.to_string(), LatencyStats::of(&r.samples));
    }
    for mode in ["native", "venus"] {
        push(
            mode,
            "all".to_owned(),
            LatencyStats::of(&pooled(runs, mode)),
        );
    }
    csv.write(path)
}

/// All samples of `mode`.
pub fn pooled(runs: &[LatencyRun], mode: &str) -> Vec<u64> {
    runs.iter()
        .filter(|r| r.mode == mode)
        .flat_map(|r| r.samples.iter().copied())
        .collect()
}

/// Median ratio per (depth, size), in size order.
pub fn median_ratios(rows: &[OverheadRow], depth: usize) -> Vec<(f64, f64)> {
    let mut sizes: Vec<f64> = rows
        .iter()
        .filter(|r| r.depth == depth)
        .map(|r| r.device_ms)
        .collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    sizes
        .into_iter()
        .map(|ms| {
            let ratios: Vec<f64> = rows
                .iter()
                .filter(|r| r.depth == depth && r.device_ms.total_cmp(&ms).is_eq())
                .map(OverheadRow::ratio)
                .collect();
            (ms, median(&ratios))
        })
        .collect()
}

/// Venus/native throughput (%) against device time per submission, one line per depth,
/// with the targets dashed.
pub fn write_overhead_svg(
    rows: &[OverheadRow],
    depths: &[usize],
    path: &Path,
) -> Result<(), PlotError> {
    let mut series = Vec::new();
    let mut lo = 100.0f64;
    for (i, &d) in depths.iter().enumerate() {
        let points: Vec<(f64, f64)> = median_ratios(rows, d)
            .into_iter()
            .map(|(ms, r)| (ms, r * 100.0))
            .collect();
        lo = points.iter().map(|p| p.1).fold(lo, f64::min);
        series.push(Series {
            label: format!("Venus / native, {d} submission(s) in flight (median)"),
            points,
            colour: i + 1,
            dashed: false,
        });
    }
    series.push(Series {
        label: "target (90 % below 1 ms, 95 % from 1 ms)".to_owned(),
        points: vec![(0.1, 90.0), (1.0, 90.0), (1.0, 95.0), (40.0, 95.0)],
        colour: 0,
        dashed: true,
    });
    let chart = Chart {
        title: "Compute throughput through Venus vs native lavapipe (LP_NUM_THREADS=1)",
        x_label: "device time per submission, ms (native calibration)",
        y_label: "Venus / native throughput, %",
        x_range: (0.1, 40.0),
        y_range: ((lo - 5.0).floor().min(80.0), 105.0),
        log_x: true,
        log_y: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, &chart, &series)
}

/// Cumulative distribution of submit → fence round trips, native and Venus.
#[allow(
    clippy::cast_precision_loss,
    reason = "nanosecond samples and counts are far below 2^52"
)]
pub fn write_latency_svg(runs: &[LatencyRun], path: &Path) -> Result<(), PlotError> {
    let mut series = Vec::new();
    let mut hi = 1.0f64;
    let mut lo = f64::MAX;
    for (i, mode) in ["native", "venus", "native-empty", "venus-empty"]
        .iter()
        .enumerate()
    {
        let mut s = pooled(runs, mode);
        if s.is_empty() {
            continue;
        }
        s.sort_unstable();
        let n = s.len().max(1);
        let step = (n / 400).max(1);
        let mut points: Vec<(f64, f64)> = s
            .iter()
            .enumerate()
            .filter(|(k, _)| k % step == 0 || *k + 1 == n)
            .map(|(k, &v)| (v as f64 / 1e3, (k + 1) as f64 * 100.0 / n as f64))
            .collect();
        points.dedup_by(|a, b| a.0 == b.0);
        hi = points.iter().map(|p| p.0).fold(hi, f64::max);
        lo = points.iter().map(|p| p.0).fold(lo, f64::min);
        let st = LatencyStats::of(&s);
        series.push(Series {
            label: format!("{mode}: p50 {:.0} µs, p99 {:.0} µs", st.p50, st.p99),
            points,
            colour: i % 2 + 1,
            dashed: i >= 2,
        });
    }
    let chart = Chart {
        title: "Submit → fence round trip: one fill (solid), empty (dashed); LP_NUM_THREADS=1",
        x_label: "round trip, µs",
        y_label: "cumulative %",
        x_range: ((lo * 0.8).max(1.0), hi * 1.2),
        y_range: (0.0, 100.5),
        log_x: true,
        log_y: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, &chart, &series)
}
