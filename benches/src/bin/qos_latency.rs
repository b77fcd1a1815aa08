//! Latency isolation on the real path (issue 13): an online VM sending short compute
//! jobs (~1 ms of device time, one every 20 ms: 5 % load) beside an offline VM that
//! saturates the device with 20 ms or 100 ms batches, two in flight. Both are real
//! Mesa Venus client processes on lavapipe (`LP_NUM_THREADS=1`), each a VM of one
//! `vhost-user-vgpu vtest --config` daemon (worker processes, the default), the online
//! VM `latency = "interactive"`, shares 50/50 without caps. Reported: the online jobs'
//! submit→fence p50/p99 alone and beside each offline batch size, under every policy,
//! against the issue's target p99 ≤ alone p99 + one offline batch + 2 ms.
//!
//! ```text
//! cargo run -p vgpu-benches --release --bin qos_latency                 # ~4 min
//! cargo run -p vgpu-benches --release --bin qos_latency -- --window 5 --out DIR --daemon PATH --policies burst
//! cargo run -p vgpu-benches --release --bin qos_latency -- --offline-cbs 20 --out DIR   # split hint
//! ```
//!
//! Writes `qos_latency_real.csv`, `qos_latency_real.svg` and `qos_latency_real.txt`
//! under `docs/qos/` (beside the simulated `qos_latency.*`).

#![allow(
    clippy::print_stdout,
    reason = "this binary's job is to print the report"
)]
#![allow(clippy::cast_precision_loss, reason = "latencies in ns far below 2^52")]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plotters::chart::SeriesLabelPosition;
use vgpu_benches::daemon_bin::daemon_binary;
use vgpu_benches::qos_client::{
    bench_main, common_option, loadavg, qos_docs_dir, run_child, spawn_child, Res, GROUPS,
};
use vgpu_benches::qos_daemon::Daemon;
use vgpu_benches::qos_plot::{fmt_f, line_chart, Chart, Csv, Series};
use vgpu_tests::harness::{socket_path, Mode};

const POLICIES: [&str; 4] = ["best-effort", "equal-share", "fixed-share", "burst"];
/// Device time of one online job, ms.
const ONLINE_MS: f64 = 1.0;
/// One online job every this many ms (5 % load).
const PERIOD_MS: f64 = 20.0;
/// Offline batch sizes, ms.
const OFFLINE_MS: [f64; 2] = [20.0, 100.0];

struct Opts {
    out: PathBuf,
    daemon: Option<PathBuf>,
    window: Duration,
    /// Only these policies (`--policies a,b`; all by default).
    policies: Vec<String>,
    /// The offline VM's batches as this many command buffers (`--offline-cbs N`; 1 by
    /// default): where the arbiter grants a submission in parts (the split hint),
    /// the online VM waits for a part, not a batch.
    offline_cbs: u32,
}

fn main() -> ExitCode {
    bench_main("qos_latency", |args| parse(args).and_then(|o| report(&o)))
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        out: qos_docs_dir(),
        daemon: None,
        window: Duration::from_secs(8),
        policies: POLICIES.iter().map(|p| (*p).to_owned()).collect(),
        offline_cbs: 1,
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
            "--policies" => {
                let list = it.next().ok_or("--policies NAME,NAME")?;
                o.policies = list.split(',').map(str::to_owned).collect();
                if let Some(bad) = o.policies.iter().find(|p| !POLICIES.contains(&p.as_str())) {
                    return Err(format!("unknown policy {bad:?}").into());
                }
            }
            "--offline-cbs" => {
                o.offline_cbs = it
                    .next()
                    .ok_or("--offline-cbs N")?
                    .parse::<u32>()?
                    .clamp(1, 256);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

/// One online run's figures, ns.
#[derive(Clone, Copy, Debug)]
struct Online {
    n: u64,
    p50: u64,
    p99: u64,
    max: u64,
}

/// `(submissions, device_ms)` of the VM named `name`, from `list`.
fn figures_of(d: &Daemon, name: &str) -> Res<(u64, f64)> {
    let list = d.ctl("list")?;
    let line = list
        .lines()
        .find(|l| l.contains(&format!("name={name:?}")))
        .ok_or_else(|| format!("no VM {name} in {list}"))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or("0")
            .to_owned()
    };
    Ok((
        field("submissions=").parse().unwrap_or(0),
        field("device_ms=").parse().unwrap_or(0.0),
    ))
}

/// The online VM's jobs for `window` (through `socket`).
fn online(socket: &Path, iters: u32, window: Duration) -> Res<Online> {
    let (mut c, out) = spawn_child(
        Mode::Venus(socket),
        &[
            "paced".into(),
            GROUPS.to_string(),
            iters.to_string(),
            PERIOD_MS.to_string(),
            format!("{:.1}", window.as_secs_f64()),
        ],
    )?;
    let lines: Vec<String> = out.lines().collect::<Result<_, _>>()?;
    if !c.wait()?.success() {
        return Err("the online client failed".into());
    }
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("paced "))
        .ok_or("no paced line")?;
    let field = |k: &str| -> Res<u64> {
        Ok(line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .ok_or("missing field")?
            .parse()?)
    };
    Ok(Online {
        n: field("n=")?,
        p50: field("p50=")?,
        p99: field("p99=")?,
        max: field("max=")?,
    })
}

/// The online VM beside the offline VM saturating with `iters` batches.
fn beside(d: &Daemon, sockets: &[PathBuf; 2], jobs: (u32, u32), o: &Opts) -> Res<Online> {
    let seconds = o.window.as_secs_f64() + 8.0;
    let (mut off, _out) = spawn_child(
        Mode::Venus(&sockets[1]),
        &[
            "spincbs".into(),
            GROUPS.to_string(),
            jobs.1.to_string(),
            o.offline_cbs.to_string(),
            format!("{seconds:.1}"),
        ],
    )?;
    // Saturating once it has completed a few batches.
    let (s0, _) = figures_of(d, "offline")?;
    let start = Instant::now();
    while figures_of(d, "offline")?.0 < s0 + 3 {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = off.kill();
            let _ = off.wait();
            return Err("the offline client did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = online(&sockets[0], jobs.0, o.window);
    let _ = off.kill();
    let _ = off.wait();
    // Let its context go before the next run.
    std::thread::sleep(Duration::from_millis(500));
    r
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
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
        "qos_latency: lavapipe, LP_NUM_THREADS=1, {GROUPS} workgroups x 64 invocations per \
         batch; online {ONLINE_MS} ms jobs every {PERIOD_MS} ms; offline batches of {} \
         command buffers; window {:.0} s; load average {} at start",
        o.offline_cbs,
        o.window.as_secs_f64(),
        loadavg()
    ));
    // The offline batch is `offline_cbs` command buffers of an equal share of it.
    let per_cb = |off_ms: f64| off_ms / f64::from(o.offline_cbs);
    let mut args = vec!["calibrate".to_owned(), ONLINE_MS.to_string()];
    args.extend(OFFLINE_MS.iter().map(|&m| per_cb(m).to_string()));
    let cal = run_child(Mode::Native, &args)?;
    let mut iters = Vec::new();
    for l in &cal {
        say(format!("  {l}"));
        if let ["cal", size, it, _] = l.split_whitespace().collect::<Vec<_>>()[..] {
            iters.push((size.parse::<f64>()?, it.parse::<u32>()?));
        }
    }
    let iters_for = |want: f64| -> Res<u32> {
        iters
            .iter()
            .find(|(s, _)| (s - want).abs() < 1e-9)
            .map(|&(_, i)| i)
            .ok_or_else(|| "uncalibrated size".into())
    };
    let online_iters = iters_for(ONLINE_MS)?;

    let mut csv = Csv::new(&[
        "policy",
        "offline_batch_ms",
        "jobs",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "alone_p99_ms",
        "target_p99_ms",
        "met",
        "loadavg",
    ]);
    let mut series = Vec::new();
    let mut ymax: f64 = 1.0;
    for (k, policy) in POLICIES.iter().enumerate() {
        if !o.policies.iter().any(|p| p == policy) {
            continue;
        }
        let sockets = [
            socket_path(&format!("qos-lat-online-{k}")),
            socket_path(&format!("qos-lat-offline-{k}")),
        ];
        let control = socket_path(&format!("qos-lat-ctl-{k}"));
        let config = format!(
            "policy = {policy:?}\ncontrol_socket = {control:?}\n\n\
             [[vm]]\nname = \"online\"\nvtest_socket = {:?}\nshare = 50\nlatency = \"interactive\"\n\n\
             [[vm]]\nname = \"offline\"\nvtest_socket = {:?}\nshare = 50\nlatency = \"batch\"\n",
            sockets[0], sockets[1]
        );
        let d = Daemon::start_config(&bin, &config, &sockets, &control)?;
        let alone = online(&sockets[0], online_iters, o.window)?;
        say(format!(
            "{policy:12} alone            jobs {:5}  p50 {:7.3} ms  p99 {:7.3} ms  max {:7.3} ms  load {}",
            alone.n,
            ms(alone.p50),
            ms(alone.p99),
            ms(alone.max),
            loadavg()
        ));
        csv.row(vec![
            (*policy).to_owned(),
            "0".into(),
            alone.n.to_string(),
            fmt_f(ms(alone.p50), 3),
            fmt_f(ms(alone.p99), 3),
            fmt_f(ms(alone.max), 3),
            fmt_f(ms(alone.p99), 3),
            String::new(),
            String::new(),
            loadavg(),
        ]);
        let mut points = vec![(0.0, ms(alone.p99))];
        for &off_ms in &OFFLINE_MS {
            let r = beside(&d, &sockets, (online_iters, iters_for(per_cb(off_ms))?), o)?;
            let target = ms(alone.p99) + off_ms + 2.0;
            let met = ms(r.p99) <= target;
            say(format!(
                "{policy:12} beside {off_ms:5} ms  jobs {:5}  p50 {:7.3} ms  p99 {:7.3} ms  max {:7.3} ms  target p99 <= {target:.1} ms: {}  load {}",
                r.n,
                ms(r.p50),
                ms(r.p99),
                ms(r.max),
                if met { "met" } else { "NOT met" },
                loadavg()
            ));
            csv.row(vec![
                (*policy).to_owned(),
                off_ms.to_string(),
                r.n.to_string(),
                fmt_f(ms(r.p50), 3),
                fmt_f(ms(r.p99), 3),
                fmt_f(ms(r.max), 3),
                fmt_f(ms(alone.p99), 3),
                fmt_f(target, 3),
                met.to_string(),
                loadavg(),
            ]);
            points.push((off_ms, ms(r.p99)));
            ymax = ymax.max(ms(r.p99)).max(target);
        }
        series.push(Series {
            label: format!("{policy} p99"),
            points,
            colour: k,
            dashed: false,
        });
    }
    series.push(Series {
        label: "target: alone p99 + one offline batch + 2 ms (best-effort's alone)".into(),
        points: std::iter::once(0.0)
            .chain(OFFLINE_MS)
            .map(|x| {
                let alone = series
                    .first()
                    .and_then(|s| s.points.first())
                    .map_or(0.0, |p| p.1);
                (x, alone + x + if x > 0.0 { 2.0 } else { 0.0 })
            })
            .collect(),
        colour: 4,
        dashed: true,
    });
    csv.write(&o.out.join("qos_latency_real.csv"))?;
    line_chart(
        &o.out.join("qos_latency_real.svg"),
        &Chart {
            title: "Online 1 ms jobs (5 % load) beside an offline VM: p99 submit->fence",
            x_label: "offline batch (ms of device time; 0 = online alone)",
            y_label: "online p99 (ms)",
            x_range: (0.0, 105.0),
            y_range: (0.0, ymax * 1.15),
            log_x: false,
            log_y: false,
            legend: SeriesLabelPosition::UpperLeft,
        },
        &series,
    )?;
    say(format!("load average {} at end", loadavg()));
    std::fs::write(o.out.join("qos_latency_real.txt"), text)?;
    Ok(())
}
