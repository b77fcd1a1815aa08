//! `vgpu-device`: the vhost-user-vgpu daemon's library.
//!
//! - [`renderer`]: the renderer core (contexts, resources, rings, reply streams) and
//!   the [`renderer::StreamExecutor`] seam where the Venus decoder plugs in.
//! - [`vtest`]: the vtest front door (Mesa's vtest protocol v3 on a unix socket).
//! - [`capset`]: the Venus capset, built from the protocol table.
//! - [`virtio_gpu`] and [`vhost_user`]: the virtio-gpu device and its vhost-user front
//!   door (`serve`).
//! - [`shutdown`]: orderly exit on SIGTERM/SIGINT for both front doors.
//! - [`sys`]: OS leaf modules (shared memory, memfd, eventfd, fd passing); the only
//!   `unsafe` code lives in [`sys::shm`].

#[cfg(not(target_os = "linux"))]
compile_error!("vgpu-device needs Linux (memfd, SCM_RIGHTS, eventfd)");
#[cfg(not(target_endian = "little"))]
compile_error!("the Venus wire format is little-endian and mapped in place");

pub mod capset;
pub mod config;
pub mod daemon;
pub mod ids;
pub mod qos;
pub mod ratelimit;
pub mod renderer;
pub mod shutdown;
pub mod sys;
pub mod vhost_user;
pub mod virtio_gpu;
pub mod vtest;
pub mod worker;

/// The low 32 bits of `v` (wire dword `lo` of a `lo, hi` pair).
pub fn lo32(v: u64) -> u32 {
    (v & 0xffff_ffff) as u32
}

/// The high 32 bits of `v`.
pub fn hi32(v: u64) -> u32 {
    (v >> 32) as u32
}

/// Formats an error with its sources, joined by ": " (the cause is never repeated in
/// a message; callers print the chain).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
