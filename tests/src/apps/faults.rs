//! Fault-injection cases for the worker-process tests (`crash-app`): a compute shader
//! that indexes a descriptor array far out of range (lavapipe dereferences a
//! descriptor past the set and the worker gets SIGSEGV), one that never ends (the
//! GPU-hang watchdog kills the worker), and a busy loop of checked dispatches (the
//! test kills the worker under it). Every compute case of [`super::CASES`] runs too,
//! so the same client can show it works again afterwards.

use std::time::{Duration, Instant};

use ash::vk;

use super::{run_case, saxpy, AppResult, Gpu, CASES};

/// SPIR-V of the fault shaders (GLSL beside them in `tests/shaders/`).
pub mod spv {
    /// Writes through `inputs[idx]` of a two-element array, `idx` a push constant.
    pub const CRASH_DESC_INDEX: &[u8] = include_bytes!("../../shaders/crash_desc_index.spv");
    /// Spins until `o[1]` turns non-zero, which never happens.
    pub const HANG_FOREVER: &[u8] = include_bytes!("../../shaders/hang_forever.spv");
}

/// The out-of-range index `desc_crash` uses (`CRASH_INDEX` overrides it): on
/// lavapipe (Mesa 25.0.7, LLVM 15) 4096, 65536, 131072 and 2^20 each SIGSEGV the
/// driver; some larger ones happen to land in mapped memory.
const DEFAULT_CRASH_INDEX: u32 = 65536;

/// The fault cases (besides the compute cases).
pub const FAULT_CASES: &[&str] = &["desc_crash", "hang", "busy"];

/// How long `busy` keeps dispatching.
const BUSY_FOR: Duration = Duration::from_secs(60);

/// Runs a fault case or a compute case by name.
pub fn run_fault_case(g: &Gpu, name: &str) -> AppResult<Vec<u8>> {
    match name {
        "desc_crash" => desc_crash(g),
        "hang" => hang(g),
        "busy" => busy(g),
        other if CASES.contains(&other) => run_case(g, other),
        other => Err(format!("unknown case {other}").into()),
    }
}

/// Out-of-range descriptor-array index; returns only if the driver survived it.
fn desc_crash(g: &Gpu) -> AppResult<Vec<u8>> {
    let out = g.buffer(64)?;
    let input = g.buffer(64)?;
    let p = g.pipeline_with_counts(
        spv::CRASH_DESC_INDEX,
        &[1, 2],
        4,
        None,
        vk::PipelineCache::null(),
    )?;
    let set = g.set(&p, &[&out, &input])?;
    let idx: u32 = std::env::var("CRASH_INDEX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CRASH_INDEX);
    g.run(|cb| g.dispatch(cb, &p, set, &idx.to_le_bytes(), [64, 1, 1]))?;
    Ok(out.read())
}

/// A dispatch that never ends; returns only if something ended it.
fn hang(g: &Gpu) -> AppResult<Vec<u8>> {
    let out = g.buffer(64)?;
    out.write(&[0u8; 64]);
    let p = g.pipeline(spv::HANG_FOREVER, 1, 0, None, vk::PipelineCache::null())?;
    let set = g.set(&p, &[&out])?;
    g.run(|cb| g.dispatch(cb, &p, set, &[], [1, 1, 1]))?;
    Ok(out.read())
}

/// Checked saxpy dispatches for [`BUSY_FOR`] (the test kills the worker meanwhile).
fn busy(g: &Gpu) -> AppResult<Vec<u8>> {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < BUSY_FOR {
        last = saxpy(g)?;
        // Each run takes a descriptor set from the app's pool of 64: Venus refuses
        // the 65th (ERROR_OUT_OF_POOL_MEMORY after about 3 s) where lavapipe does not.
        g.free_sets()?;
    }
    Ok(last)
}
