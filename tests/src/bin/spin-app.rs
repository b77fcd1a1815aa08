//! A saturating compute client for the QoS tests: `spin-app GROUPS ITERS SECONDS
//! [DEPTH [CBS]]` resubmits a spin dispatch (GROUPS workgroups of 64 invocations, ITERS
//! xorshift rounds each) in a closed loop with DEPTH (default 2) submissions in flight,
//! so its VM always has work queued, for SECONDS; each submission is CBS (default 1)
//! command buffers, one dispatch each into a buffer of its own. Then it checks every
//! buffer against the CPU and prints `submissions N`. Exits 1 on any failure.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ash::vk;
use vgpu_tests::apps::{spv, AppResult, Gpu};

fn spin_cpu(i: u32, iters: u32) -> u32 {
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
    }
    x
}

fn run(groups: u32, iters: u32, seconds: f64, depth: usize, cbs: usize) -> AppResult<u64> {
    let g = Gpu::new()?;
    let pipe = g.pipeline(spv::SPIN, 1, 8, None, vk::PipelineCache::null())?;
    let n = groups.checked_mul(64).ok_or("too many groups")?;
    let push = [iters.to_le_bytes(), 0u32.to_le_bytes()].concat();
    let mut slots = Vec::new();
    for _ in 0..depth {
        let mut bufs = Vec::new();
        let mut list = Vec::new();
        for _ in 0..cbs {
            let buf = g.buffer(u64::from(n) * 4)?;
            let set = g.set(&pipe, &[&buf])?;
            let cb = g.command_buffer()?;
            // SAFETY: fresh primary command buffer from the harness's pool; reusable
            // (no ONE_TIME_SUBMIT) since it is resubmitted once its submission
            // completes.
            unsafe {
                g.device
                    .begin_command_buffer(cb, &vk::CommandBufferBeginInfo::default())?;
            }
            g.dispatch(cb, &pipe, set, &push, [groups, 1, 1]);
            // SAFETY: recording command buffer.
            unsafe { g.device.end_command_buffer(cb)? };
            bufs.push(buf);
            list.push(cb);
        }
        slots.push((bufs, list, g.fence()?));
    }
    let wait = |fence: vk::Fence| -> AppResult<()> {
        // SAFETY: live fence with a pending submission.
        unsafe { g.device.wait_for_fences(&[fence], true, u64::MAX)? };
        // SAFETY: signalled, so no pending submission uses it.
        unsafe { g.device.reset_fences(&[fence])? };
        Ok(())
    };
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut submitted, mut completed) = (0usize, 0u64);
    while Instant::now() < until {
        let (_, list, fence) = &slots[submitted % depth];
        if submitted >= depth {
            wait(*fence)?;
            completed += 1;
        }
        g.submit(list, *fence)?;
        submitted += 1;
    }
    for k in submitted.saturating_sub(depth)..submitted {
        wait(slots[k % depth].2)?;
        completed += 1;
    }
    for (bufs, _, fence) in slots {
        for buf in bufs {
            let out = buf.read();
            for i in [0, n / 2, n - 1] {
                let at = usize::try_from(i)? * 4;
                let got = u32::from_le_bytes(out[at..at + 4].try_into()?);
                if got != spin_cpu(i, iters) {
                    return Err(
                        format!("invocation {i}: {got:#x} != {:#x}", spin_cpu(i, iters)).into(),
                    );
                }
            }
            g.destroy_buf(buf);
        }
        // SAFETY: every submission was waited for.
        unsafe { g.device.destroy_fence(fence, None) };
    }
    g.destroy_pipe(pipe);
    Ok(completed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| -> Option<(u32, u32, f64, usize, usize)> {
        let opt = |i: usize, default: usize| match args.get(i) {
            Some(v) => v.parse().ok(),
            None => Some(default),
        };
        Some((
            args.first()?.parse().ok()?,
            args.get(1)?.parse().ok()?,
            args.get(2)?.parse().ok()?,
            opt(3, 2)?,
            opt(4, 1)?,
        ))
    })();
    let Some((groups, iters, seconds, depth, cbs)) = parsed else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: spin-app GROUPS ITERS SECONDS [DEPTH [CBS]]"
        );
        return ExitCode::FAILURE;
    };
    let depth = depth.clamp(1, 16);
    // The harness's descriptor pool holds 64 sets: one per buffer.
    let cbs = cbs.clamp(1, 64 / depth);
    match run(groups.max(1), iters, seconds, depth, cbs) {
        Ok(n) => {
            let _ = writeln!(std::io::stdout(), "submissions {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "spin-app: {e}");
            ExitCode::FAILURE
        }
    }
}
