//! Venus overhead workloads (issue 3, "Benchmarks"): the client side that runs in a child
//! process, natively on lavapipe or through Venus, whichever ICD the loader picks.
//!
//! - [`throughput`]: an integer xorshift-loop compute shader (iteration count as a push
//!   constant, 64-wide workgroups) resubmitted in a closed loop with `depth`
//!   submissions in flight; work is counted as invocations × iterations.
//! - [`latency`]: `vkQueueSubmit` of a tiny command buffer (one 4-byte fill) and
//!   `vkWaitForFences`, one at a time, timed on the host clock.
//!
//! The device is `vgpu_tests::apps::Gpu`, the same `ash` harness the end-to-end tests use.

use std::collections::hash_map::{Entry, HashMap};
use std::time::{Duration, Instant};

use ash::vk;
use vgpu_tests::apps::{AppResult, Buf, Gpu, Pipe};

/// SPIR-V of `benches/shaders/venus_spin.comp`.
pub const SPIN_SPV: &[u8] = include_bytes!("../shaders/venus_spin.spv");

/// Invocations per workgroup of the spin shader.
pub const LOCAL_SIZE: u32 = 64;

/// One submission's work: `groups` workgroups of 64 invocations, `iters` loop rounds each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Work {
    /// Workgroups per dispatch.
    pub groups: u32,
    /// Loop rounds per invocation.
    pub iters: u32,
}

impl Work {
    /// Invocations × iterations.
    pub fn units(&self) -> u64 {
        u64::from(self.groups) * u64::from(LOCAL_SIZE) * u64::from(self.iters)
    }
}

/// A throughput run's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// Submissions completed inside the measured window.
    pub submissions: u64,
    /// Length of the measured window.
    pub elapsed: Duration,
}

impl Throughput {
    /// Completed submissions per second.
    #[allow(
        clippy::cast_precision_loss,
        reason = "submission counts are far below 2^52"
    )]
    pub fn per_second(&self) -> f64 {
        self.submissions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A recorded command buffer that may be submitted again once it completes (no
/// `ONE_TIME_SUBMIT`, unlike `Gpu::record`).
pub fn record_reusable(g: &Gpu, f: impl FnOnce(vk::CommandBuffer)) -> AppResult<vk::CommandBuffer> {
    let cb = g.command_buffer()?;
    // SAFETY: fresh primary command buffer from the harness's pool.
    unsafe {
        g.device
            .begin_command_buffer(cb, &vk::CommandBufferBeginInfo::default())?
    };
    f(cb);
    // SAFETY: recording command buffer.
    unsafe { g.device.end_command_buffer(cb)? };
    Ok(cb)
}

/// The spin pipeline with `depth` buffers, sets and reusable command buffers.
#[derive(Debug)]
pub struct Spin {
    pipe: Pipe,
    bufs: Vec<Buf>,
    cbs: Vec<vk::CommandBuffer>,
    fences: Vec<vk::Fence>,
}

impl Spin {
    fn new(g: &Gpu, work: Work, depth: usize) -> AppResult<Self> {
        let pipe = g.pipeline(SPIN_SPV, 1, 8, None, vk::PipelineCache::null())?;
        let mut bufs = Vec::new();
        let mut cbs = Vec::new();
        let mut fences = Vec::new();
        for slot in 0..depth {
            let buf = g.buffer(u64::from(work.groups * LOCAL_SIZE) * 4)?;
            let set = g.set(&pipe, &[&buf])?;
            let seed = u32::try_from(slot)?;
            let push = [work.iters.to_le_bytes(), seed.to_le_bytes()].concat();
            cbs.push(record_reusable(g, |cb| {
                g.dispatch(cb, &pipe, set, &push, [work.groups, 1, 1]);
            })?);
            bufs.push(buf);
            fences.push(g.fence()?);
        }
        Ok(Self {
            pipe,
            bufs,
            cbs,
            fences,
        })
    }

    fn wait(&self, g: &Gpu, slot: usize) -> AppResult<()> {
        let f = [self.fences[slot]];
        // SAFETY: live fence with a pending submission.
        unsafe { g.device.wait_for_fences(&f, true, u64::MAX)? };
        // SAFETY: signalled fence, no pending submission uses it.
        unsafe { g.device.reset_fences(&f)? };
        Ok(())
    }

    fn destroy(self, g: &Gpu) {
        // SAFETY: waiting has no precondition beyond a live device.
        let _ = unsafe { g.device.device_wait_idle() };
        for f in self.fences {
            // SAFETY: idle device; nothing uses the fence.
            unsafe { g.device.destroy_fence(f, None) };
        }
        g.destroy_pipe(self.pipe);
        for b in self.bufs {
            g.destroy_buf(b);
        }
    }
}

/// Spin pipelines by (work, depth), created once per client: descriptor sets come from
/// a small pool that the harness never frees.
#[derive(Debug, Default)]
pub struct SpinCache {
    spins: HashMap<(Work, usize), Spin>,
}

impl SpinCache {
    /// The spin set-up for `work` with `depth` submissions in flight.
    pub fn get(&mut self, g: &Gpu, work: Work, depth: usize) -> AppResult<&Spin> {
        let depth = depth.max(1);
        Ok(match self.spins.entry((work, depth)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Spin::new(g, work, depth)?),
        })
    }

    /// Destroys every pipeline and buffer (after the device is idle).
    pub fn destroy(self, g: &Gpu) {
        for (_, spin) in self.spins {
            spin.destroy(g);
        }
    }
}

/// Runs `work` in a closed loop with `depth` submissions in flight: `warmup` first (not
/// counted), then counts completions until `window` has passed.
pub fn throughput(
    g: &Gpu,
    cache: &mut SpinCache,
    work: Work,
    depth: usize,
    warmup: Duration,
    window: Duration,
) -> AppResult<Throughput> {
    let depth = depth.max(1);
    let spin = cache.get(g, work, depth)?;
    let mut submitted = 0u64;
    let mut completed = 0u64;
    let mut start: Option<(Instant, u64)> = None;
    let begin = Instant::now();
    let result = loop {
        let slot = usize::try_from(submitted % depth as u64)?;
        if submitted >= depth as u64 {
            spin.wait(g, slot)?;
            completed += 1;
            let now = Instant::now();
            match start {
                None if now - begin >= warmup => start = Some((now, completed)),
                Some((t0, c0)) if now - t0 >= window => {
                    break Throughput {
                        submissions: completed - c0,
                        elapsed: now - t0,
                    };
                }
                _ => {}
            }
        }
        g.submit(&[spin.cbs[slot]], spin.fences[slot])?;
        submitted += 1;
    };
    // Drain the submissions still in flight so the fences are unsignalled again.
    for k in submitted.saturating_sub(depth as u64)..submitted {
        if k >= completed {
            spin.wait(g, usize::try_from(k % depth as u64)?)?;
        }
    }
    Ok(result)
}

/// Device time of one submission of `work`, measured as the steady-state period with two
/// submissions in flight (so no host round trip is included), in milliseconds.
pub fn device_ms(g: &Gpu, cache: &mut SpinCache, work: Work, window: Duration) -> AppResult<f64> {
    let t = throughput(g, cache, work, 2, window / 4, window)?;
    Ok(1e3 / t.per_second())
}

/// Unrecorded jobs before [`paced`] starts its clock.
const PACED_WARMUP: usize = 5;

/// An online job stream: one submission of `work` at a time, started every `period` (on
/// a fixed schedule; one that would start late starts at once), for `window`. Returns
/// each submission's submit → fence-signalled time in nanoseconds.
pub fn paced(
    g: &Gpu,
    cache: &mut SpinCache,
    work: Work,
    period: Duration,
    window: Duration,
) -> AppResult<Vec<u64>> {
    let spin = cache.get(g, work, 1)?;
    // A few unrecorded jobs first: the first submissions of a pipeline are slower.
    for _ in 0..PACED_WARMUP {
        g.submit(&[spin.cbs[0]], spin.fences[0])?;
        spin.wait(g, 0)?;
    }
    let mut samples = Vec::new();
    let begin = Instant::now();
    let mut next = begin;
    while next - begin < window {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let t0 = Instant::now();
        g.submit(&[spin.cbs[0]], spin.fences[0])?;
        spin.wait(g, 0)?;
        samples.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        next = (next + period).max(t0);
    }
    Ok(samples)
}

/// Submit → fence round trips (ns), one `vkCmdFillBuffer` of 4 bytes per submission.
pub fn latency(g: &Gpu, iterations: usize, warmup: usize) -> AppResult<Vec<u64>> {
    latency_of(g, iterations, warmup, RoundTrip::Fill)
}

/// What a round-trip sample submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundTrip {
    /// One command buffer with one 4-byte `vkCmdFillBuffer`.
    Fill,
    /// No command buffer at all: the fence alone.
    Empty,
}

/// Submit → fence round trips (ns) of `kind`: submit, `vkWaitForFences`, reset, on the
/// client's clock; `warmup` samples are dropped.
pub fn latency_of(
    g: &Gpu,
    iterations: usize,
    warmup: usize,
    kind: RoundTrip,
) -> AppResult<Vec<u64>> {
    let buf = g.buffer(256)?;
    let cb = record_reusable(g, |cb| {
        // SAFETY: recording command buffer; 4-byte slot inside the buffer.
        unsafe { g.device.cmd_fill_buffer(cb, buf.buffer, 0, 4, 0x5eed) };
    })?;
    let cbs: &[vk::CommandBuffer] = match kind {
        RoundTrip::Fill => &[cb],
        RoundTrip::Empty => &[],
    };
    let fence = g.fence()?;
    let f = [fence];
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let t0 = Instant::now();
        g.submit(cbs, fence)?;
        // SAFETY: live fence with a pending submission.
        unsafe { g.device.wait_for_fences(&f, true, u64::MAX)? };
        let dt = t0.elapsed();
        // SAFETY: signalled fence, not in use.
        unsafe { g.device.reset_fences(&f)? };
        if i >= warmup {
            samples.push(u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    // SAFETY: nothing pending.
    unsafe { g.device.destroy_fence(fence, None) };
    g.destroy_buf(buf);
    Ok(samples)
}

/// The `q`-quantile (0..=1) of `sorted` by nearest rank.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rank arithmetic on small sample counts"
)]
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of floats (NaN-free input).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn work_units() {
        let w = Work {
            groups: 2,
            iters: 10,
        };
        assert_eq!(w.units(), 1280);
    }
}
