//! Shares on the real path, as figures (issue 13): four real Mesa Venus client
//! processes on lavapipe (`LP_NUM_THREADS=1`), each a VM of one `vhost-user-vgpu
//! vtest` daemon, all saturating with spin batches of one calibrated size, at shares
//! 40/30/20/10 under fixed-share and burst; and the live change: two VMs at 2:1 moved
//! to 1:3 with `ctl set` mid-run, the ratio over time around the change.
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin qos_shares            # ~2 min
//! cargo run -p vgpu-benches --release --bin qos_shares -- --out DIR --daemon PATH
//! ```
//!
//! Writes `qos_shares.csv`, `qos_shares.svg`, `qos_live.csv`, `qos_live.svg` and
//! `qos_shares_report.txt` under `docs/qos/`. Shares are counted in batches completed
//! (every VM's batches are the same calibrated size), read from the daemon's control
//! socket, so they do not depend on the daemon's own device-time measurement.

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the report"
)]
#![allow(
    clippy::cast_precision_loss,
    reason = "counts and durations far below 2^52"
)]

use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, ExitCode};
use std::time::{Duration, Instant};

use plotters::chart::SeriesLabelPosition;
use vgpu_benches::daemon_bin::daemon_binary;
use vgpu_benches::qos_client::{
    bench_main, common_option, loadavg, qos_docs_dir, run_child, spawn_child, Res, GROUPS,
};
use vgpu_benches::qos_daemon::Daemon;
use vgpu_benches::qos_plot::{fmt_f, line_chart, Chart, Csv, Series};
use vgpu_tests::harness::Mode;

/// Batch sizes of the four-VM figure, ms.
const SIZES_MS: [f64; 4] = [0.5, 2.0, 5.0, 20.0];
/// The four VMs' shares, percent.
const SHARES: [f64; 4] = [40.0, 30.0, 20.0, 10.0];
/// Policies of the four-VM figure (the ones where a share is a share).
const POLICIES: [&str; 2] = ["fixed-share", "burst"];
/// Batch size of the live change, ms.
const LIVE_MS: f64 = 5.0;
/// How often the live change's counts are sampled.
const SAMPLE: Duration = Duration::from_millis(100);
/// Width of the moving window the live ratio is computed over.
const LIVE_WINDOW: Duration = Duration::from_millis(500);

struct Opts {
    out: PathBuf,
    daemon: Option<PathBuf>,
    window: Duration,
    settle: Duration,
}

fn main() -> ExitCode {
    bench_main("qos_shares", |args| parse(args).and_then(|o| report(&o)))
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        out: qos_docs_dir(),
        daemon: None,
        window: Duration::from_secs(4),
        settle: Duration::from_millis(1000),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if common_option(a, &mut it, &mut o.out, &mut o.daemon)? {
            continue;
        }
        match a.as_str() {
            "--window" => {
                o.window = Duration::from_secs_f64(it.next().ok_or("--window SECONDS")?.parse()?);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

/// A saturating client: the process, its stdout (kept open: it writes its figures
/// there at the end) and its VM's name.
type Spinner = (Child, BufReader<ChildStdout>, String);

/// `n` saturating spin clients on `d`, each attached as a new VM, in start order.
fn spinners(d: &Daemon, iters: u32, n: usize, seconds: f64) -> Res<Vec<Spinner>> {
    let mut out: Vec<Spinner> = Vec::new();
    for _ in 0..n {
        let (c, stdout) = spawn_child(
            Mode::Venus(&d.socket),
            &[
                "spin".into(),
                GROUPS.to_string(),
                iters.to_string(),
                format!("{seconds:.1}"),
            ],
        )?;
        let known: Vec<String> = out.iter().map(|(_, _, v)| v.clone()).collect();
        let vm = d.new_vm(&known)?;
        out.push((c, stdout, vm));
    }
    Ok(out)
}

fn stop(d: &Daemon, clients: Vec<Spinner>) -> Res<()> {
    for (mut c, _, _) in clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    d.wait_empty()
}

/// Completed batches per VM, in the order of `vms`.
fn counts(d: &Daemon, vms: &[&str]) -> Res<Vec<u64>> {
    let list = d.list()?;
    Ok(vms
        .iter()
        .map(|vm| {
            list.iter()
                .find(|(v, _, _)| v == vm)
                .map_or(0, |(_, s, _)| *s)
        })
        .collect())
}

/// The share setting for `pct` under `policy` (fixed-share: capped at it).
fn set_share(d: &Daemon, vm: &str, pct: f64, policy: &str) -> Res<()> {
    let cap = if policy == "fixed-share" {
        format!("{pct}")
    } else {
        "none".into()
    };
    d.ctl(&format!("set {vm} share={pct} cap={cap}"))?;
    Ok(())
}

/// Four VMs at [`SHARES`] saturating with batches of `iters`: each one's share of the
/// batches completed in the window, percent.
fn four(d: &Daemon, policy: &str, iters: u32, o: &Opts) -> Res<Vec<f64>> {
    let seconds = (o.settle + o.window).as_secs_f64() + 8.0;
    let clients = spinners(d, iters, SHARES.len(), seconds)?;
    // Lower every share first so the new ones always fit.
    for (_, _, vm) in &clients {
        set_share(d, vm, 1.0, policy)?;
    }
    for ((_, _, vm), &pct) in clients.iter().zip(&SHARES) {
        set_share(d, vm, pct, policy)?;
    }
    std::thread::sleep(o.settle);
    let vms: Vec<&str> = clients.iter().map(|(_, _, v)| v.as_str()).collect();
    let before = counts(d, &vms)?;
    std::thread::sleep(o.window);
    let after = counts(d, &vms)?;
    stop(d, clients)?;
    let done: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total = done.iter().sum::<u64>().max(1) as f64;
    Ok(done.iter().map(|&n| n as f64 * 100.0 / total).collect())
}

/// Two VMs at 2:1, changed to 1:3 after `before`: `(seconds since the change, A:B
/// ratio over the last LIVE_WINDOW)` per sample.
fn live(d: &Daemon, iters: u32, before: Duration, after: Duration) -> Res<Vec<(f64, f64)>> {
    let seconds = (before + after).as_secs_f64() + 8.0;
    let clients = spinners(d, iters, 2, seconds)?;
    let (a, b) = (clients[0].2.clone(), clients[1].2.clone());
    set_share(d, &b, 33.3, "fixed-share")?;
    set_share(d, &a, 66.7, "fixed-share")?;
    let vms = [a.as_str(), b.as_str()];
    let mut samples: Vec<(Instant, Vec<u64>)> = Vec::new();
    let start = Instant::now();
    let mut changed: Option<Instant> = None;
    while start.elapsed() < before + after {
        if changed.is_none() && start.elapsed() >= before {
            // 2:1 → 1:3: A down first so the shares always fit.
            set_share(d, &a, 25.0, "fixed-share")?;
            set_share(d, &b, 75.0, "fixed-share")?;
            changed = Some(Instant::now());
        }
        samples.push((Instant::now(), counts(d, &vms)?));
        std::thread::sleep(SAMPLE);
    }
    stop(d, clients)?;
    let changed = changed.ok_or("the change was never made")?;
    let mut out = Vec::new();
    for (k, (t, c)) in samples.iter().enumerate() {
        let Some((_, c0)) = samples[..k]
            .iter()
            .rev()
            .find(|(t0, _)| t.duration_since(*t0) >= LIVE_WINDOW)
        else {
            continue;
        };
        let da = c[0].saturating_sub(c0[0]) as f64;
        let db = c[1].saturating_sub(c0[1]) as f64;
        if db > 0.0 {
            let since = if *t >= changed {
                t.duration_since(changed).as_secs_f64()
            } else {
                -changed.duration_since(*t).as_secs_f64()
            };
            out.push((since, da / db));
        }
    }
    Ok(out)
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
        "qos_shares: lavapipe, LP_NUM_THREADS=1, {GROUPS} workgroups x 64 invocations per \
         batch; window {:.0} s; load average {} at start",
        o.window.as_secs_f64(),
        loadavg()
    ));
    let mut args = vec!["calibrate".to_owned()];
    args.extend(SIZES_MS.iter().map(|s| s.to_string()));
    let cal = run_child(Mode::Native, &args)?;
    let mut iters = Vec::new();
    for l in &cal {
        say(format!("  {l}"));
        if let ["cal", size, it, _] = l.split_whitespace().collect::<Vec<_>>()[..] {
            iters.push((size.parse::<f64>()?, it.parse::<u32>()?));
        }
    }
    let iters_for = |ms: f64| {
        iters
            .iter()
            .find(|(s, _)| (s - ms).abs() < 1e-9)
            .map(|&(_, i)| i)
            .ok_or("uncalibrated size")
    };

    let mut csv = Csv::new(&[
        "policy",
        "batch_ms",
        "vm",
        "share_pct",
        "achieved_pct",
        "error_of_share_pct",
        "loadavg",
    ]);
    let mut series = Vec::new();
    for (k, policy) in POLICIES.iter().enumerate() {
        let d = Daemon::start(&bin, policy)?;
        let mut per_vm: Vec<Vec<(f64, f64)>> = vec![Vec::new(); SHARES.len()];
        for &size in &SIZES_MS {
            let got = four(&d, policy, iters_for(size)?, o)?;
            let load = loadavg();
            let errs: Vec<f64> = got
                .iter()
                .zip(&SHARES)
                .map(|(g, s)| (g - s) / s * 100.0)
                .collect();
            say(format!(
                "{policy:12} {size:5} ms  achieved {}  (error of each share {})  load {load}",
                got.iter()
                    .map(|g| format!("{g:5.1} %"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                errs.iter()
                    .map(|e| format!("{e:+.1} %"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
            for (v, ((g, s), e)) in got.iter().zip(&SHARES).zip(&errs).enumerate() {
                csv.row(vec![
                    (*policy).to_owned(),
                    size.to_string(),
                    v.to_string(),
                    s.to_string(),
                    fmt_f(*g, 2),
                    fmt_f(*e, 2),
                    load.clone(),
                ]);
                per_vm[v].push((size, *g));
            }
        }
        for (v, points) in per_vm.into_iter().enumerate() {
            series.push(Series {
                label: format!("{policy} {} %", SHARES[v]),
                points,
                colour: v,
                dashed: k > 0,
            });
        }
    }
    csv.write(&o.out.join("qos_shares.csv"))?;
    line_chart(
        &o.out.join("qos_shares.svg"),
        &Chart {
            title: "Four Venus VMs at 40/30/20/10 on lavapipe: achieved share",
            x_label: "batch device time (ms)",
            y_label: "share of batches completed (%)",
            x_range: (SIZES_MS[0] * 0.8, SIZES_MS[SIZES_MS.len() - 1] * 1.25),
            y_range: (0.0, 50.0),
            log_x: true,
            log_y: false,
            legend: SeriesLabelPosition::UpperRight,
        },
        &series,
    )?;

    // The live change.
    let d = Daemon::start(&bin, "fixed-share")?;
    let before = Duration::from_secs(3);
    let points = live(&d, iters_for(LIVE_MS)?, before, Duration::from_secs(4))?;
    drop(d);
    // Settled: from the first sample after which every ratio stays within ±10 % of
    // 1:3 (the window then holds only time after the change).
    let target = 1.0 / 3.0;
    let settled = points
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| *t >= 0.0)
        .find(|(k, _)| {
            points[*k..]
                .iter()
                .all(|(_, r)| (r - target).abs() <= target * 0.1)
        })
        .map(|(_, (t, _))| *t);
    let before_ratio: Vec<f64> = points
        .iter()
        .filter(|(t, _)| *t < 0.0)
        .map(|(_, r)| *r)
        .collect();
    let mean_before = before_ratio.iter().sum::<f64>() / before_ratio.len().max(1) as f64;
    say(format!(
        "live change ({LIVE_MS} ms batches, fixed-share): A:B {mean_before:.3} before (target \
         2.0); 1:3 target {target:.3} held within ±10 % from {} s after the change \
         (ratio over a moving {} ms window)  load {}",
        settled.map_or("never".into(), |t| format!("{t:.2}")),
        LIVE_WINDOW.as_millis(),
        loadavg()
    ));
    let mut live_csv = Csv::new(&["seconds_since_change", "ratio_a_to_b"]);
    for (t, r) in &points {
        live_csv.row(vec![fmt_f(*t, 3), fmt_f(*r, 4)]);
    }
    live_csv.write(&o.out.join("qos_live.csv"))?;
    let (lo, hi) = (
        points.first().map_or(-3.0, |p| p.0),
        points.last().map_or(4.0, |p| p.0),
    );
    line_chart(
        &o.out.join("qos_live.svg"),
        &Chart {
            title: "Live change of shares, 2:1 to 1:3 via ctl (fixed-share, 5 ms batches)",
            x_label: "seconds since the change",
            y_label: "batches of A / batches of B (500 ms window)",
            x_range: (lo, hi),
            y_range: (0.0, 3.0),
            log_x: false,
            log_y: false,
            legend: SeriesLabelPosition::UpperRight,
        },
        &[
            Series {
                label: "achieved".into(),
                points: points.clone(),
                colour: 2,
                dashed: false,
            },
            Series {
                label: "target".into(),
                points: vec![(lo, 2.0), (0.0, 2.0), (0.0, target), (hi, target)],
                colour: 6,
                dashed: true,
            },
        ],
    )?;
    say(format!("load average {} at end", loadavg()));
    std::fs::write(o.out.join("qos_shares_report.txt"), text)?;
    Ok(())
}
