//! vhost-user throughput (issue 4, "Throughput benchmark"): the guest-driver side of
//! two measurements, run against `vhost-user-vgpu` processes on lavapipe.
//!
//! - [`two_d`]: a 1920×1080 B8G8R8X8 resource with guest backing, shown on scanout 0;
//!   each frame is TRANSFER_TO_HOST_2D of the whole resource followed by
//!   RESOURCE_FLUSH, each command waited for, one at a time, as the Linux driver's
//!   `drm_fb_helper` dirty worker does. The frontend is the bridge's
//!   [`GuestDriver`] (memfd guest memory, split virtqueues) in this process, talking to
//!   `vhost-user-vgpu serve` in another.
//! - [`submit_vhost`] / [`submit_vtest`]: the round trip of a 16-byte Venus stream
//!   (`vkEnumerateInstanceVersion` without GENERATE_REPLY: decoded, dispatched, no reply
//!   stream or ring needed). Over vhost-user: SUBMIT_3D with FLAG_FENCE |
//!   INFO_RING_IDX on ring 0 in a Venus context, timed until its response, which the
//!   device holds until the fence has signalled. Over vtest: SUBMIT_CMD2 on ring 0
//!   followed by PING_PROTOCOL_VERSION, timed until the ping's reply (the vtest front
//!   door runs the stream before it reads the next message).

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use plotters::prelude::SeriesLabelPosition;
use vgpu_device::ids::CapsetId;
use vgpu_device::virtio_gpu::protocol::{
    encode, CommandType, Format, RespType, FLAG_FENCE, FLAG_INFO_RING_IDX,
};
use vgpu_device::vtest::client::{Batch, VtestClient};
use vgpu_device::vtest::protocol::cmd;
use vgpu_tests::bridge::frontend::{GuestDriver, MAX_DATA, PAYLOAD_ADDR};

use crate::qos_plot::{fmt_f, line_chart, Chart, Csv, PlotError, Series};

/// Frame width.
pub const WIDTH: u32 = 1920;
/// Frame height.
pub const HEIGHT: u32 = 1080;
/// Bytes per frame (B8G8R8X8).
pub const FRAME_BYTES: usize = WIDTH as usize * HEIGHT as usize * 4;
/// Venus `vkEnumerateInstanceVersion` command type.
const ENUMERATE_INSTANCE_VERSION: u32 = 137;
/// Resource id of the 2D frame.
const FRAME_RESOURCE: u32 = 1;
/// Context id of the Venus context.
const VENUS_CTX: u32 = 1;

fn other(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

/// The benchmarked Venus stream: `vkEnumerateInstanceVersion` with no reply requested.
pub fn noop_stream() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&ENUMERATE_INSTANCE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out
}

/// Sends a command that must answer OK_NODATA.
fn ok(gpu: &mut GuestDriver, what: &str, c: &[u8], data: &[u8]) -> io::Result<()> {
    let r = gpu.command(c, data, 24)?;
    if r.is(RespType::OkNodata) {
        Ok(())
    } else {
        Err(other(format!("{what} answered {:#x}", r.resp)))
    }
}

/// A rectangle `x, y, w, h` as words.
fn rect(w: u32, h: u32) -> [u32; 4] {
    [0, 0, w, h]
}

/// A 2D run's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoD {
    /// Frames completed in the measured window.
    pub frames: u64,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Per-frame time (TRANSFER + FLUSH), sorted.
    pub frame_times: Vec<Duration>,
}

impl TwoD {
    /// Frames per second.
    #[allow(
        clippy::cast_precision_loss,
        reason = "frame counts are far below 2^52"
    )]
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Guest pixels moved per second, MB/s (10^6 bytes).
    #[allow(clippy::cast_precision_loss, reason = "frame bytes are far below 2^52")]
    pub fn mb_per_s(&self) -> f64 {
        self.fps() * FRAME_BYTES as f64 / 1e6
    }
}

/// Creates the 1920×1080 frame with backing in the payload area (filled with a
/// gradient) and shows it on scanout 0.
pub fn setup_2d(gpu: &mut GuestDriver) -> io::Result<()> {
    if FRAME_BYTES > MAX_DATA {
        return Err(other("frame larger than the payload area"));
    }
    let mut pixels = vec![0u8; FRAME_BYTES];
    for (i, px) in pixels.chunks_exact_mut(4).enumerate() {
        let (x, y) = (i % WIDTH as usize, i / WIDTH as usize);
        // Low bytes of x, y and x ^ y: a gradient with some structure.
        px.copy_from_slice(&[
            x.to_le_bytes()[0],
            y.to_le_bytes()[0],
            (x ^ y).to_le_bytes()[0],
            0,
        ]);
    }
    gpu.write_guest(PAYLOAD_ADDR, &pixels)?;
    let c = encode::simple(
        CommandType::ResourceCreate2d,
        &[FRAME_RESOURCE, Format::B8G8R8X8Unorm as u32, WIDTH, HEIGHT],
    );
    ok(gpu, "RESOURCE_CREATE_2D", &c, &[])?;
    let mut c = encode::simple(CommandType::ResourceAttachBacking, &[FRAME_RESOURCE, 1]);
    c.extend_from_slice(&PAYLOAD_ADDR.to_le_bytes());
    encode::words(&mut c, &[u32::try_from(FRAME_BYTES).map_err(other)?, 0]);
    ok(gpu, "RESOURCE_ATTACH_BACKING", &c, &[])?;
    let mut c = encode::simple(CommandType::SetScanout, &rect(WIDTH, HEIGHT));
    encode::words(&mut c, &[0, FRAME_RESOURCE]);
    ok(gpu, "SET_SCANOUT", &c, &[])
}

/// One frame: TRANSFER_TO_HOST_2D of the whole resource, then RESOURCE_FLUSH.
pub fn frame(gpu: &mut GuestDriver) -> io::Result<()> {
    let mut c = encode::simple(CommandType::TransferToHost2d, &rect(WIDTH, HEIGHT));
    c.extend_from_slice(&0u64.to_le_bytes());
    encode::words(&mut c, &[FRAME_RESOURCE, 0]);
    ok(gpu, "TRANSFER_TO_HOST_2D", &c, &[])?;
    let mut c = encode::simple(CommandType::ResourceFlush, &rect(WIDTH, HEIGHT));
    encode::words(&mut c, &[FRAME_RESOURCE, 0]);
    ok(gpu, "RESOURCE_FLUSH", &c, &[])
}

/// Runs frames for `warmup`, then for `window`, closed loop.
pub fn two_d(gpu: &mut GuestDriver, warmup: Duration, window: Duration) -> io::Result<TwoD> {
    let start = Instant::now();
    while start.elapsed() < warmup {
        frame(gpu)?;
    }
    let mut frame_times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < window {
        let t = Instant::now();
        frame(gpu)?;
        frame_times.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    frame_times.sort_unstable();
    Ok(TwoD {
        frames: u64::try_from(frame_times.len()).unwrap_or(u64::MAX),
        elapsed,
        frame_times,
    })
}

/// Creates Venus context [`VENUS_CTX`] (CTX_CREATE with CONTEXT_INIT = Venus capset).
pub fn create_venus_context(gpu: &mut GuestDriver) -> io::Result<()> {
    let name = b"vhost_report";
    let mut c = encode::hdr(CommandType::CtxCreate, 0, 0, VENUS_CTX, 0);
    encode::words(
        &mut c,
        &[u32::try_from(name.len()).map_err(other)?, CapsetId::VENUS.0],
    );
    let mut debug_name = [0u8; 64];
    debug_name[..name.len()].copy_from_slice(name);
    c.extend_from_slice(&debug_name);
    ok(gpu, "CTX_CREATE", &c, &[])
}

/// `iters` fenced SUBMIT_3D round trips (after `warmup` untimed ones); sorted times.
pub fn submit_vhost(
    gpu: &mut GuestDriver,
    warmup: usize,
    iters: usize,
) -> io::Result<Vec<Duration>> {
    let stream = noop_stream();
    let size = u32::try_from(stream.len()).map_err(other)?;
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup.saturating_add(iters) {
        let fence = u64::try_from(i).map_err(other)?.saturating_add(1);
        let mut c = encode::hdr(
            CommandType::Submit3d,
            FLAG_FENCE | FLAG_INFO_RING_IDX,
            fence,
            VENUS_CTX,
            0,
        );
        encode::words(&mut c, &[size, 0]);
        let t = Instant::now();
        let r = gpu.command(&c, &stream, 24)?;
        let dt = t.elapsed();
        if !r.is(RespType::OkNodata) {
            return Err(other(format!("SUBMIT_3D answered {:#x}", r.resp)));
        }
        let echoed = u64::from(r.le32(8)) | (u64::from(r.le32(12)) << 32);
        if r.le32(4) & FLAG_FENCE == 0 || echoed != fence {
            return Err(other(format!("SUBMIT_3D response lacks fence {fence}")));
        }
        if i >= warmup {
            times.push(dt);
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// `iters` SUBMIT_CMD2 + PING round trips over vtest (after `warmup` untimed ones);
/// sorted times.
pub fn submit_vtest(socket: &Path, warmup: usize, iters: usize) -> io::Result<Vec<Duration>> {
    let e = |e: vgpu_device::vtest::client::ClientError| other(vgpu_device::error_chain(&e));
    let mut client = VtestClient::connect(socket).map_err(e)?;
    client.handshake("vhost_report").map_err(e)?;
    client.context_init(CapsetId::VENUS).map_err(e)?;
    let stream = noop_stream();
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup.saturating_add(iters) {
        let t = Instant::now();
        client
            .submit_cmd2(&[Batch {
                cmds: &stream,
                ..Batch::default()
            }])
            .map_err(e)?;
        client.send(cmd::PING_PROTOCOL_VERSION, &[]).map_err(e)?;
        client.read_reply(cmd::PING_PROTOCOL_VERSION).map_err(e)?;
        let dt = t.elapsed();
        if i >= warmup {
            times.push(dt);
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "ranks are small, q is clamped to 0..=1"
)]
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

/// Everything one report run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The 2D run over vhost-user.
    pub two_d: TwoD,
    /// SUBMIT_3D round trips over vhost-user, sorted.
    pub submit_vhost: Vec<Duration>,
    /// SUBMIT_CMD2 + reply round trips over vtest, sorted.
    pub submit_vtest: Vec<Duration>,
    /// Native lavapipe `vkQueueSubmit` of a one-fill command buffer + fence wait in
    /// this process, sorted (what a submit round trip costs with no forwarding).
    pub submit_native: Vec<Duration>,
    /// 1-minute load average before the run (the machine is shared).
    pub load_before: f64,
    /// 1-minute load average after the run.
    pub load_after: f64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One table row: benchmark, path, samples, p50, p99, mean, unit, and the throughput.
#[allow(
    clippy::cast_precision_loss,
    reason = "sample counts are far below 2^52"
)]
fn row(bench: &str, path: &str, sorted: &[Duration], extra: &[(&str, f64)]) -> Vec<String> {
    let n = sorted.len();
    let mean = if n == 0 {
        0.0
    } else {
        sorted.iter().map(|d| us(*d)).sum::<f64>() / n as f64
    };
    let find = |k: &str| {
        extra
            .iter()
            .find(|(name, _)| *name == k)
            .map_or_else(String::new, |(_, v)| fmt_f(*v, 1))
    };
    vec![
        bench.to_owned(),
        path.to_owned(),
        n.to_string(),
        fmt_f(us(quantile(sorted, 0.5)), 1),
        fmt_f(us(quantile(sorted, 0.99)), 1),
        fmt_f(mean, 1),
        find("fps"),
        find("mb_s"),
    ]
}

/// The rows of the CSV (and of the printed table).
pub fn rows(r: &Report) -> Vec<Vec<String>> {
    vec![
        row(
            "2d_1920x1080_transfer_flush",
            "vhost-user",
            &r.two_d.frame_times,
            &[("fps", r.two_d.fps()), ("mb_s", r.two_d.mb_per_s())],
        ),
        row("submit_3d_round_trip", "vhost-user", &r.submit_vhost, &[]),
        row("submit_3d_round_trip", "vtest", &r.submit_vtest, &[]),
        row("queue_submit_round_trip", "native", &r.submit_native, &[]),
    ]
}

/// Column names of [`rows`].
pub const COLUMNS: [&str; 8] = [
    "benchmark",
    "path",
    "samples",
    "p50_us",
    "p99_us",
    "mean_us",
    "fps",
    "mb_per_s",
];

/// Writes `vhost_throughput.csv`.
pub fn write_csv(r: &Report, path: &Path) -> Result<(), PlotError> {
    let mut csv = Csv::new(&COLUMNS);
    for cells in rows(r) {
        csv.row(cells);
    }
    csv.write(path)
}

/// Cumulative distribution points (µs, %), thinned to about 400.
#[allow(
    clippy::cast_precision_loss,
    reason = "sample counts are far below 2^52"
)]
fn cdf(sorted: &[Duration]) -> Vec<(f64, f64)> {
    let n = sorted.len().max(1);
    let step = (n / 400).max(1);
    let mut points: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .filter(|(k, _)| k % step == 0 || *k + 1 == n)
        .map(|(k, d)| (us(*d), (k + 1) as f64 * 100.0 / n as f64))
        .collect();
    points.dedup_by(|a, b| a.0 == b.0);
    points
}

/// Writes `vhost_throughput.svg`: distributions of the 2D frame time and of both
/// SUBMIT round trips on one log axis.
pub fn write_svg(r: &Report, path: &Path) -> Result<(), PlotError> {
    let sets = [
        (
            format!(
                "2D 1080p TRANSFER+FLUSH, vhost-user: {:.0} fps, {:.0} MB/s",
                r.two_d.fps(),
                r.two_d.mb_per_s()
            ),
            &r.two_d.frame_times,
        ),
        (
            format!(
                "SUBMIT_3D + fence, vhost-user: p50 {:.0} µs, p99 {:.0} µs",
                us(quantile(&r.submit_vhost, 0.5)),
                us(quantile(&r.submit_vhost, 0.99))
            ),
            &r.submit_vhost,
        ),
        (
            format!(
                "SUBMIT_CMD2 + reply, vtest: p50 {:.0} µs, p99 {:.0} µs",
                us(quantile(&r.submit_vtest, 0.5)),
                us(quantile(&r.submit_vtest, 0.99))
            ),
            &r.submit_vtest,
        ),
        (
            format!(
                "vkQueueSubmit + fence, native lavapipe: p50 {:.0} µs, p99 {:.0} µs",
                us(quantile(&r.submit_native, 0.5)),
                us(quantile(&r.submit_native, 0.99))
            ),
            &r.submit_native,
        ),
    ];
    let mut series = Vec::new();
    let (mut lo, mut hi) = (f64::MAX, 1.0f64);
    for (i, (label, samples)) in sets.into_iter().enumerate() {
        let points = cdf(samples);
        hi = points.iter().map(|p| p.0).fold(hi, f64::max);
        lo = points.iter().map(|p| p.0).fold(lo, f64::min);
        series.push(Series {
            label,
            points,
            colour: i + 1,
            dashed: false,
        });
    }
    let chart = Chart {
        title: "vhost-user: 1080p frame time and SUBMIT round trip (2 shared cores)",
        x_label: "time per frame / round trip, µs",
        y_label: "cumulative %",
        x_range: ((lo * 0.8).clamp(1.0, 1e9), hi * 1.2),
        y_range: (0.0, 100.5),
        log_x: true,
        log_y: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, &chart, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_micros(50));
        assert_eq!(quantile(&s, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&s, 1.0), Duration::from_micros(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_stream_is_sixteen_bytes() {
        assert_eq!(noop_stream().len(), 16);
    }
}
