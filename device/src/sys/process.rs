//! Process plumbing for worker processes: placing inherited fds at fixed numbers in a
//! child (`dup2` between `fork` and `exec`), closing every other fd, pidfds, and the
//! no-new-privileges and fd-count limits a sandboxed worker runs under.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// First fd number the staging copies use in the child, above any target.
const STAGING_FLOOR: RawFd = 64;

/// Errors of these calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `pidfd_open` failed.
    #[error("pidfd_open failed")]
    Pidfd(#[source] std::io::Error),
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("setting no_new_privs failed")]
    NoNewPrivs(#[source] std::io::Error),
    /// `setrlimit` failed.
    #[error("setting RLIMIT_{which} failed")]
    Rlimit {
        /// Which limit.
        which: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `close_range` failed.
    #[error("closing inherited fds failed")]
    CloseRange(#[source] std::io::Error),
    /// An fd that should have been inherited is not there.
    #[error("inherited fd {0} is not usable")]
    Inherited(RawFd, #[source] std::io::Error),
    /// A target fd number is not below the staging floor.
    #[error("target fd {0} is not in 3..{STAGING_FLOOR}")]
    BadTarget(RawFd),
}

/// Makes `cmd`'s child start with each `(fd, target)` open at fd number `target`
/// (not close-on-exec) and nothing else but stdin/stdout/stderr (every other fd of
/// the daemon is close-on-exec). The fds stay owned by the caller's `Command`
/// closure until it is dropped.
pub fn inherit_fds(cmd: &mut Command, fds: Vec<(OwnedFd, RawFd)>) -> Result<(), ProcessError> {
    if let Some(&(_, bad)) = fds.iter().find(|(_, t)| !(3..STAGING_FLOOR).contains(t)) {
        return Err(ProcessError::BadTarget(bad));
    }
    let raw: Vec<(RawFd, RawFd)> = fds.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
    let mut staged: Vec<RawFd> = vec![-1; raw.len()];
    let mut hook = move || {
        // Two passes, so a source that happens to sit at another entry's target
        // number is copied away before that target is overwritten.
        for (i, (src, _)) in raw.iter().enumerate() {
            // SAFETY: runs in the forked child before exec, where only
            // async-signal-safe calls are allowed; fcntl is one. `src` is an fd the
            // closure's owner keeps open (the `OwnedFd`s moved into this closure's
            // environment live until the `Command` is dropped), so it is valid in the
            // child, which inherited the whole fd table.
            let copy = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, STAGING_FLOOR) };
            if copy < 0 {
                return Err(std::io::Error::last_os_error());
            }
            staged[i] = copy;
        }
        for (i, (_, target)) in raw.iter().enumerate() {
            // SAFETY: as above (dup2 is async-signal-safe); `staged[i]` was just
            // created in this child, and `target` is a small number the caller chose,
            // overwriting whatever the child had there. dup2 clears FD_CLOEXEC on the
            // new fd, so it survives exec.
            if unsafe { libc::dup2(staged[i], *target) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // Keep the fds alive as long as the command (the hook refers to their numbers).
    let keep = fds;
    // SAFETY: the hook only calls fcntl and dup2, both async-signal-safe, and
    // allocates nothing (its vectors were allocated before fork).
    unsafe {
        cmd.pre_exec(move || {
            let _ = &keep;
            hook()
        });
    }
    Ok(())
}

/// Closes every fd from `first` up (`close_range(first, ~0, 0)`).
pub fn close_fds_from(first: u32) -> Result<(), ProcessError> {
    // SAFETY: close_range takes plain integers and touches only this process's fd
    // table. The caller (a worker at start-up) owns no `OwnedFd` at or above
    // `first`, so no Rust owner is left holding a closed number.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if r < 0 {
        return Err(ProcessError::CloseRange(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A pidfd for child `pid` (readable once it has exited).
pub fn pidfd(pid: u32) -> Result<OwnedFd, ProcessError> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| ProcessError::Pidfd(std::io::Error::other("bad pid")))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| ProcessError::Pidfd(e.into()))
}

/// `PR_SET_NO_NEW_PRIVS`: no exec can gain privileges (and seccomp may be installed
/// without `CAP_SYS_ADMIN`).
pub fn set_no_new_privs() -> Result<(), ProcessError> {
    rustix::thread::set_no_new_privs(true).map_err(|e| ProcessError::NoNewPrivs(e.into()))
}

/// Sets `RLIMIT_NOFILE` (soft and hard) to `n`.
pub fn limit_open_files(n: u64) -> Result<(), ProcessError> {
    set_limit(rustix::process::Resource::Nofile, "NOFILE", n)
}

/// Sets `RLIMIT_AS` (soft and hard) to `bytes`.
pub fn limit_address_space(bytes: u64) -> Result<(), ProcessError> {
    set_limit(rustix::process::Resource::As, "AS", bytes)
}

fn set_limit(
    resource: rustix::process::Resource,
    which: &'static str,
    n: u64,
) -> Result<(), ProcessError> {
    let limit = rustix::process::Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    rustix::process::setrlimit(resource, limit).map_err(|e| ProcessError::Rlimit {
        which,
        source: e.into(),
    })
}

/// The fd numbers this process has open (from `/proc/self/fd`), sorted.
pub fn open_fds() -> std::io::Result<Vec<RawFd>> {
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

/// Takes ownership of fd `n`, inherited from the parent at a number agreed on the
/// command line, and makes it close-on-exec. Fails if `n` is not open.
pub fn take_inherited_fd(n: RawFd) -> Result<OwnedFd, ProcessError> {
    if n < 3 {
        return Err(ProcessError::BadTarget(n));
    }
    // SAFETY: F_GETFD only reads the fd's flags; an unopened number gives EBADF.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(ProcessError::Inherited(n, std::io::Error::last_os_error()));
    }
    // SAFETY: `n` is open (checked above) and, by the spawn protocol, placed there
    // by the parent for this process alone; nothing else in this process owns it
    // (it is taken once, at start-up, before any other code opens files).
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| ProcessError::Inherited(n, e.into()))?;
    Ok(fd)
}

/// Ends the process at once with `code` (`_exit`): no atexit handlers, no static
/// destructors, so a worker whose driver threads are still running cannot crash
/// on its way out.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes an int and never returns; skipping destructors is the
    // point (the kernel reclaims every resource of the process).
    unsafe { libc::_exit(code) }
}

/// `ptrace(PTRACE_TRACEME)` (the sandbox self-test's probe); returns its result.
pub fn ptrace_traceme() -> i64 {
    // SAFETY: PTRACE_TRACEME takes no pointers; it only lets the parent trace this
    // process.
    unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }
}
