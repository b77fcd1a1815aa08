//! A hostile Vulkan application for `tests/tests/isolation_memfd.rs`: it holds a mapped
//! host-visible buffer, then reopens every daemon memfd mapped into this process (the
//! Venus driver's rings and reply streams, `vgpu-shmem`, and the buffer's device
//! memory, `vgpu-device-memory`) through `/proc/self/map_files` and tries to shrink,
//! grow and re-seal it. Without seals a shrink would make the daemon's next touch of
//! those pages raise SIGBUS, killing every client. It then keeps using its device.
//!
//! Prints `device`/`api` lines, one `memfd <name> <inode> size <bytes> shrink <r> grow
//! <r> seal <r>` line per memfd (`r` is `ok` or the errno name; `unreachable <why>` if
//! the file could not be reopened), then `<case> <digest> <bytes>` lines like
//! `compute-app`: `held` (the held buffer copied on the device after the attack), then
//! the named cases. Natively there are no daemon memfds, so only the case lines appear.
//! Reopening `/proc/self/map_files` needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use ash::vk;
use vgpu_tests::apps::{digest, run_case, AppResult, Gpu};

/// Bytes of the buffer held across the attack.
const HELD: u64 = 1 << 20;
/// Cases run after the attack.
const CASES: &[&str] = &["saxpy", "host_writes", "fences"];

/// One daemon memfd mapped into this process.
struct Mapping {
    range: String,
    inode: u64,
    name: String,
}

/// Daemon memfds (`/memfd:vgpu-…`) in `/proc/self/maps`, one per inode.
fn daemon_memfds() -> AppResult<Vec<Mapping>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(inode), Some(path)) = (fields.first(), fields.get(4), fields.get(5))
        else {
            continue;
        };
        let Some(name) = path.strip_prefix("/memfd:vgpu-") else {
            continue;
        };
        let inode: u64 = inode.parse()?;
        if seen.insert(inode) {
            out.push(Mapping {
                range: (*range).to_owned(),
                inode,
                name: format!("vgpu-{name}"),
            });
        }
    }
    Ok(out)
}

fn outcome(r: rustix::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) if e == rustix::io::Errno::PERM => "EPERM".into(),
        Err(e) => format!("errno{}", e.raw_os_error()),
    }
}

/// Tries to resize and re-seal one memfd; returns its report line.
fn attack(m: &Mapping) -> String {
    let path = format!("/proc/self/map_files/{}", m.range);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => return format!("memfd {} {} unreachable {e}", m.name, m.inode),
    };
    let size = rustix::fs::fstat(&file).map_or(-1, |s| s.st_size);
    let grown = u64::try_from(size)
        .unwrap_or(0)
        .saturating_mul(2)
        .max(1 << 20);
    let shrink = outcome(rustix::fs::ftruncate(&file, 0));
    let grow = outcome(rustix::fs::ftruncate(&file, grown));
    let seal = outcome(rustix::fs::fcntl_add_seals(
        &file,
        rustix::fs::SealFlags::FUTURE_WRITE,
    ));
    format!(
        "memfd {} {} size {size} shrink {shrink} grow {grow} seal {seal}",
        m.name, m.inode
    )
}

/// Copies the held buffer on the device and checks the copy and the mapping still hold
/// `pattern` (the daemon touched the attacked pages).
fn held_copy(g: &Gpu, held: &vgpu_tests::apps::Buf, pattern: &[u8]) -> AppResult<Vec<u8>> {
    let dst = g.buffer(HELD)?;
    g.run(|cb| {
        let region = [vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: HELD,
        }];
        // SAFETY: recording command buffer; both buffers live and `HELD` bytes long.
        unsafe {
            g.device
                .cmd_copy_buffer(cb, held.buffer, dst.buffer, &region)
        };
    })?;
    let copied = dst.read();
    g.destroy_buf(dst);
    if held.read() != pattern {
        return Err("the held mapping changed".into());
    }
    if copied != pattern {
        return Err("the device copy of the held buffer differs".into());
    }
    Ok(copied)
}

fn run() -> AppResult<()> {
    let g = Gpu::new()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "device {}", g.name)?;
    let v = g.api_version;
    writeln!(
        out,
        "api {}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )?;
    let held = g.buffer(HELD)?;
    let pattern: Vec<u8> = (0..HELD)
        .map(|i| u8::try_from(i * 13 % 251).unwrap_or(0))
        .collect();
    held.write(&pattern);
    for m in daemon_memfds()? {
        writeln!(out, "{}", attack(&m))?;
    }
    out.flush()?;
    let bytes = held_copy(&g, &held, &pattern)?;
    writeln!(out, "held {:016x} {}", digest(&bytes), bytes.len())?;
    g.destroy_buf(held);
    for case in CASES {
        let bytes = run_case(&g, case)?;
        writeln!(out, "{case} {:016x} {}", digest(&bytes), bytes.len())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "memfd-attacker: {e}");
            ExitCode::FAILURE
        }
    }
}
