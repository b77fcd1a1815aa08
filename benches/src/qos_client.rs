//! The client side of the real-path QoS benches (`qos_real`, `qos_latency`): each bench
//! binary re-executes itself as `--child REQUEST…`, natively or through Venus, and the
//! child runs one request on the device the loader picks:
//!
//! - `calibrate MS…`: iterations of the spin batch for each device time in ms;
//! - `spin GROUPS ITERS SECONDS`: saturate, two submissions in flight;
//! - `tsspin GROUPS ITERS SECONDS`: one batch at a time, timestamps around each;
//! - `lat N WARMUP`: tiny-batch submit→fence round trips;
//! - `paced GROUPS ITERS PERIOD_MS SECONDS`: one batch every period (an online job),
//!   each one's submit→fence time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, ExitCode, Stdio};
use std::time::{Duration, Instant};

use vgpu_tests::apps::Gpu;
use vgpu_tests::harness::{client, Mode};

use crate::venus::{device_ms, latency, median, paced, quantile, throughput, SpinCache, Work};

/// Result of the benches' client and parent steps.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Workgroups (of 64 invocations) per spin batch.
pub const GROUPS: u32 = 16;

/// Where the QoS benches write their figures unless told otherwise: the workspace's
/// `docs/qos/`.
pub fn qos_docs_dir() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("docs/qos")
}

/// The options every real-path QoS bench takes: `--out DIR` and `--daemon PATH`.
/// Returns whether `arg` was one of them (its value taken from `rest`).
pub fn common_option<'a>(
    arg: &str,
    rest: &mut impl Iterator<Item = &'a String>,
    out: &mut std::path::PathBuf,
    daemon: &mut Option<std::path::PathBuf>,
) -> Res<bool> {
    match arg {
        "--out" => *out = rest.next().ok_or("--out DIR")?.into(),
        "--daemon" => *daemon = Some(rest.next().ok_or("--daemon PATH")?.into()),
        _ => return Ok(false),
    }
    Ok(true)
}

/// The `main` of a bench that re-executes itself as its clients: `--child REQUEST…`
/// runs [`child`], anything else runs `run` with the arguments; an error is printed
/// after the bench's `name` and fails the process.
pub fn bench_main(name: &str, run: impl FnOnce(&[String]) -> Res<()>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, r) = match args.split_first() {
        Some((first, rest)) if first == "--child" => (" child", child(rest)),
        _ => ("", run(&args)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{name}{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one child request (the arguments after `--child`) on the device the loader
/// picks, printing `device NAME` and then the request's result lines.
pub fn child(args: &[String]) -> Res<()> {
    let g = Gpu::new()?;
    let mut cache = SpinCache::default();
    let r = child_request(&g, &mut cache, args);
    cache.destroy(&g);
    r
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a positive loop count well inside u32"
)]
pub fn to_iters(x: f64) -> u32 {
    x.round().clamp(1.0, 1e8) as u32
}

fn child_request(g: &Gpu, cache: &mut SpinCache, args: &[String]) -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "device {}", g.name)?;
    out.flush()?;
    let w = |iters| Work {
        groups: GROUPS,
        iters,
    };
    match args.first().map(String::as_str) {
        Some("calibrate") => {
            device_ms(g, cache, w(1), Duration::from_millis(300))?;
            let mut ms = |iters: u32| -> Res<f64> {
                // Long batches need fewer rounds to average.
                let win = Duration::from_millis(400);
                let v = [
                    device_ms(g, cache, w(iters), win)?,
                    device_ms(g, cache, w(iters), win)?,
                    device_ms(g, cache, w(iters), win)?,
                ];
                Ok(median(&v))
            };
            let (i0, i1) = (1u32, 20_000u32);
            let (t0, t1) = (ms(i0)?, ms(i1)?);
            let slope = ((t1 - t0) / f64::from(i1 - i0)).max(1e-7);
            let fixed = t0 - slope * f64::from(i0);
            writeln!(out, "fit fixed_ms={fixed:.4} ms_per_iter={slope:.7}")?;
            for target in &args[1..] {
                let target: f64 = target.parse()?;
                let mut iters = to_iters((target - fixed) / slope);
                let mut got = ms(iters)?;
                for _ in 0..2 {
                    let next = f64::from(iters) + (target - got) / slope;
                    iters = to_iters(next.clamp(f64::from(iters) / 2.0, f64::from(iters) * 2.0));
                    got = ms(iters)?;
                }
                writeln!(out, "cal {target} {iters} {got:.4}")?;
            }
        }
        Some("spin") => {
            let [groups, iters, seconds] = &args[1..] else {
                return Err("spin GROUPS ITERS SECONDS".into());
            };
            let work = Work {
                groups: groups.parse()?,
                iters: iters.parse()?,
            };
            let t = throughput(
                g,
                cache,
                work,
                2,
                Duration::ZERO,
                Duration::from_secs_f64(seconds.parse()?),
            )?;
            writeln!(out, "tp {} {}", t.submissions, t.elapsed.as_nanos())?;
        }
        // spincbs GROUPS ITERS CBS SECONDS: two submissions in flight, each CBS command
        // buffers of one dispatch; prints `tp <submissions> <ns>`.
        Some("spincbs") => {
            let [groups, iters, cbs, seconds] = &args[1..] else {
                return Err("spincbs GROUPS ITERS CBS SECONDS".into());
            };
            let (n, elapsed) = spin_cbs(
                g,
                Work {
                    groups: groups.parse()?,
                    iters: iters.parse()?,
                },
                cbs.parse::<usize>()?.clamp(1, 256),
                Duration::from_secs_f64(seconds.parse()?),
            )?;
            writeln!(out, "tp {n} {}", elapsed.as_nanos())?;
        }
        // tsspin GROUPS ITERS SECONDS: one batch at a time, each with timestamps at its
        // start and end; prints `ts <batches> <sum of timestamp deltas in ns>`.
        Some("tsspin") => {
            let [groups, iters, seconds] = &args[1..] else {
                return Err("tsspin GROUPS ITERS SECONDS".into());
            };
            let (n, sum) = timestamped(
                g,
                Work {
                    groups: groups.parse()?,
                    iters: iters.parse()?,
                },
                Duration::from_secs_f64(seconds.parse()?),
            )?;
            writeln!(out, "ts {n} {sum}")?;
            // Stay attached a moment so the parent can read the daemon's figures.
            out.flush()?;
            std::thread::sleep(Duration::from_secs(1));
        }
        Some("paced") => {
            let [groups, iters, period_ms, seconds] = &args[1..] else {
                return Err("paced GROUPS ITERS PERIOD_MS SECONDS".into());
            };
            let mut s = paced(
                g,
                cache,
                Work {
                    groups: groups.parse()?,
                    iters: iters.parse()?,
                },
                Duration::from_secs_f64(period_ms.parse::<f64>()? / 1e3),
                Duration::from_secs_f64(seconds.parse()?),
            )?;
            s.sort_unstable();
            writeln!(
                out,
                "paced n={} p50={} p99={} max={}",
                s.len(),
                quantile(&s, 0.5),
                quantile(&s, 0.99),
                s.last().copied().unwrap_or(0)
            )?;
        }
        Some("lat") => {
            let [n, warmup] = &args[1..] else {
                return Err("lat N WARMUP".into());
            };
            let mut s = latency(g, n.parse()?, warmup.parse()?)?;
            s.sort_unstable();
            writeln!(
                out,
                "lat p50={} p99={}",
                quantile(&s, 0.5),
                quantile(&s, 0.99)
            )?;
        }
        _ => return Err("unknown child command".into()),
    }
    Ok(())
}

/// Runs `work` one batch at a time for `window`, each batch bracketed by timestamps
/// (written by the device at the top and bottom of the pipe); returns the batch count
/// and the summed timestamp deltas in ns.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "timestamp deltas in ns fit u64"
)]
fn timestamped(g: &Gpu, work: Work, window: Duration) -> Res<(u64, u64)> {
    use ash::vk;
    use vgpu_tests::apps::spv;
    let pipe = g.pipeline(spv::SPIN, 1, 8, None, vk::PipelineCache::null())?;
    let buf = g.buffer(u64::from(work.groups) * 64 * 4)?;
    let set = g.set(&pipe, &[&buf])?;
    let push = [work.iters.to_le_bytes(), 0u32.to_le_bytes()].concat();
    let qinfo = vk::QueryPoolCreateInfo::default()
        .query_type(vk::QueryType::TIMESTAMP)
        .query_count(2);
    // SAFETY: live device.
    let pool = unsafe { g.device.create_query_pool(&qinfo, None)? };
    let cb = crate::venus::record_reusable(g, |cb| {
        // SAFETY: recording command buffer; the pool has two queries.
        unsafe { g.device.cmd_reset_query_pool(cb, pool, 0, 2) };
        // SAFETY: as above, reset in this command buffer.
        unsafe {
            g.device
                .cmd_write_timestamp(cb, vk::PipelineStageFlags::TOP_OF_PIPE, pool, 0);
        }
        g.dispatch(cb, &pipe, set, &push, [work.groups, 1, 1]);
        // SAFETY: as above.
        unsafe {
            g.device
                .cmd_write_timestamp(cb, vk::PipelineStageFlags::BOTTOM_OF_PIPE, pool, 1);
        }
    })?;
    let fence = g.fence()?;
    let (mut n, mut sum) = (0u64, 0u64);
    let until = Instant::now() + window;
    while Instant::now() < until {
        g.submit(&[cb], fence)?;
        // SAFETY: live fence with a pending submission.
        unsafe { g.device.wait_for_fences(&[fence], true, u64::MAX)? };
        // SAFETY: signalled, unused.
        unsafe { g.device.reset_fences(&[fence])? };
        let mut ts = [0u64; 2];
        // SAFETY: live pool; both queries were written by the completed batch.
        unsafe {
            g.device.get_query_pool_results(
                pool,
                0,
                &mut ts,
                vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
            )?;
        }
        let ns = (ts[1].saturating_sub(ts[0]) as f64 * f64::from(g.timestamp_period)) as u64;
        sum += ns;
        n += 1;
    }
    // SAFETY: nothing pending (the last fence was waited for).
    unsafe { g.device.destroy_fence(fence, None) };
    // SAFETY: as above.
    unsafe { g.device.destroy_query_pool(pool, None) };
    g.destroy_pipe(pipe);
    g.destroy_buf(buf);
    Ok((n, sum))
}

/// Runs submissions of `cbs` command buffers, each one dispatch of `work` (all into
/// one buffer: the bench wants the device busy, not the results), two in flight, for
/// `window`; returns the completed submissions and the time taken.
fn spin_cbs(g: &Gpu, work: Work, cbs: usize, window: Duration) -> Res<(u64, Duration)> {
    use ash::vk;
    use vgpu_tests::apps::spv;
    let pipe = g.pipeline(spv::SPIN, 1, 8, None, vk::PipelineCache::null())?;
    let buf = g.buffer(u64::from(work.groups) * 64 * 4)?;
    let set = g.set(&pipe, &[&buf])?;
    let push = [work.iters.to_le_bytes(), 0u32.to_le_bytes()].concat();
    let mut slots = Vec::new();
    for _ in 0..2 {
        let list = (0..cbs)
            .map(|_| {
                crate::venus::record_reusable(g, |cb| {
                    g.dispatch(cb, &pipe, set, &push, [work.groups, 1, 1]);
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        slots.push((list, g.fence()?));
    }
    let wait = |fence: vk::Fence| -> Res<()> {
        // SAFETY: live fence with a pending submission.
        unsafe { g.device.wait_for_fences(&[fence], true, u64::MAX)? };
        // SAFETY: signalled, unused.
        unsafe { g.device.reset_fences(&[fence])? };
        Ok(())
    };
    let start = Instant::now();
    let (mut submitted, mut completed) = (0usize, 0u64);
    while start.elapsed() < window {
        let (list, fence) = &slots[submitted % 2];
        if submitted >= 2 {
            wait(*fence)?;
            completed += 1;
        }
        g.submit(list, *fence)?;
        submitted += 1;
    }
    let elapsed = start.elapsed();
    for k in submitted.saturating_sub(2)..submitted {
        wait(slots[k % 2].1)?;
    }
    for (_, fence) in slots {
        // SAFETY: every submission was waited for.
        unsafe { g.device.destroy_fence(fence, None) };
    }
    g.destroy_pipe(pipe);
    g.destroy_buf(buf);
    Ok((completed, elapsed))
}

/// Starts this executable as a client (`--child ARGS`) in `mode`, with
/// `LP_NUM_THREADS=1`; returns it and its stdout.
pub fn spawn_child(mode: Mode<'_>, args: &[String]) -> Res<(Child, BufReader<ChildStdout>)> {
    let exe = std::env::current_exe()?;
    let mut cmd = client(exe.to_str().ok_or("non-UTF-8 executable path")?, mode);
    let mut c = cmd
        .env("LP_NUM_THREADS", "1")
        .arg("--child")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = BufReader::new(c.stdout.take().ok_or("no child stdout")?);
    Ok((c, out))
}

/// Runs a child to completion and returns its lines after `device`; fails if it ran
/// on the other driver than `mode` asks for.
pub fn run_child(mode: Mode<'_>, args: &[String]) -> Res<Vec<String>> {
    let (mut c, out) = spawn_child(mode, args)?;
    let lines: Vec<String> = out.lines().collect::<Result<_, _>>()?;
    if !c.wait()?.success() {
        return Err(format!("child {args:?} failed").into());
    }
    let venus = matches!(mode, Mode::Venus(_));
    let device = lines.first().map_or("", String::as_str);
    if venus != device.contains("Venus") {
        return Err(format!("child ran on the wrong driver: {device}").into());
    }
    Ok(lines.into_iter().skip(1).collect())
}

/// The 1-minute load average, as `/proc/loadavg` prints it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
