//! The worker's seccomp-bpf allow-list, built with `seccompiler` and installed on
//! every thread (TSYNC) after the host driver is loaded. A call outside the list
//! kills the whole worker with `SIGSYS`; the daemon reports it like any other death.
//!
//! Three filters are stacked (the kernel applies the strictest answer):
//! 1. `clone3` → `ENOSYS` (its flags sit behind a pointer BPF cannot read; glibc
//!    then falls back to `clone`, whose flags can be checked); everything else
//!    allowed.
//! 2. `openat`/`open` with `O_WRONLY`, `O_RDWR`, `O_CREAT` or `O_TRUNC`, and
//!    `creat` → `EACCES` (lavapipe probes `/dev/udmabuf` read-write and must see a
//!    failure, not die); everything else allowed.
//! 3. The allow-list, with argument checks: `clone` only with `CLONE_THREAD`;
//!    `openat`/`open` (read-only after filter 2: the Vulkan loader re-reads the
//!    ICD manifests and re-opens the driver library on every `vkCreateInstance`);
//!    `socket`,
//!    `connect`, `bind`, `ptrace`, `execve` and everything else not listed kill.
//!
//! See DESIGN.md "Worker sandbox" for why each call is there and what a real GPU
//! driver would add (the render node's `open` and its DRM ioctls).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors building or installing the filter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// This architecture has no filter.
    #[error("no seccomp filter for this architecture")]
    Arch,
    /// Building the filter failed.
    #[error("building the seccomp filter failed: {0}")]
    Build(String),
    /// Installing it failed.
    #[error("installing the seccomp filter failed: {0}")]
    Install(String),
}

/// Calls a lavapipe worker makes after the driver is loaded, allowed without
/// argument checks (found with `strace -f -c` on workers running the compute and
/// graphics suites; see DESIGN.md).
const ALLOWED: &[libc::c_long] = &[
    // memory: the heap, the driver's mappings, LLVM's JIT (mmap/mprotect with
    // PROT_EXEC), shared blobs
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_ftruncate,
    // fd I/O on fds it already holds (the client socket, the control socket,
    // memfds, eventfds) and read-only files
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_pwrite64,
    libc::SYS_writev,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_ioctl,
    libc::SYS_eventfd2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    // sockets it already holds: messages, fd passing, timeouts, shutdown
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    // threads and synchronisation (clone itself is checked below)
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_setscheduler,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    // signals (abort() raises SIGABRT on itself; Rust's stack-overflow guard)
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    // time, identity, randomness
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
    libc::SYS_prctl,
];

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conds).map_err(|e| SeccompError::Build(e.to_string()))
}

fn masked_eq(arg: u8, mask: u64, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
    .map_err(|e| SeccompError::Build(e.to_string()))
}

fn arch() -> Result<TargetArch, SeccompError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| SeccompError::Arch)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch()?)
        .map_err(|e| SeccompError::Build(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Build(e.to_string()))
}

/// The three programs, in installation order.
fn programs() -> Result<[BpfProgram; 3], SeccompError> {
    let errno = |e: i32| SeccompAction::Errno(u32::try_from(e).unwrap_or(1));
    let no_clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        errno(libc::ENOSYS),
    )?;
    let any_write_bit = |arg| -> Result<Vec<SeccompRule>, SeccompError> {
        [libc::O_WRONLY, libc::O_RDWR, libc::O_CREAT, libc::O_TRUNC]
            .into_iter()
            .map(|bit| {
                let bit = u64::try_from(bit).unwrap_or(0);
                rule(vec![masked_eq(arg, bit, bit)?])
            })
            .collect()
    };
    let no_write_opens = compile(
        BTreeMap::from([
            (libc::SYS_openat, any_write_bit(2)?),
            (libc::SYS_open, any_write_bit(1)?),
            (libc::SYS_creat, vec![]),
        ]),
        SeccompAction::Allow,
        errno(libc::EACCES),
    )?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let thread = u64::try_from(libc::CLONE_THREAD).unwrap_or(0);
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![masked_eq(0, thread, thread)?])?],
    );
    // Opens pass here; the second filter answers every write-open EACCES (a kill
    // here would override that answer: the strictest result of all filters wins).
    rules.insert(libc::SYS_openat, Vec::new());
    rules.insert(libc::SYS_open, Vec::new());
    let allow_list = compile(rules, SeccompAction::KillProcess, SeccompAction::Allow)?;
    Ok([no_clone3, no_write_opens, allow_list])
}

/// Installs the filters on every thread of the process. Needs no_new_privs (or
/// `CAP_SYS_ADMIN`) first.
pub fn install_worker_filter() -> Result<(), SeccompError> {
    for program in programs()? {
        seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_architecture() {
        let programs = programs().expect("filters build");
        assert!(programs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn the_allow_list_has_no_process_creation_or_network_calls() {
        for denied in [
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_ptrace,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
        ] {
            assert!(!ALLOWED.contains(&denied), "syscall {denied} is allowed");
        }
    }
}
