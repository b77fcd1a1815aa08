//! OS leaf modules: shared-memory mappings (`shm.rs`), sealed memfds and the check on
//! foreign memory fds (`memfd.rs`), eventfds and `SCM_RIGHTS` fd passing (`fd.rs`),
//! heap trimming (`trim.rs`, one libc call), worker-process plumbing (`process.rs`:
//! fd placement before exec, `close_range`, pidfds, rlimits, no_new_privs) and the
//! worker's seccomp filter (`seccomp.rs`). `shm.rs`, `trim.rs` and `process.rs` hold
//! the only `unsafe` under `sys/`.

pub mod fd;
pub mod memfd;
pub mod process;
pub mod seccomp;
pub mod shm;
pub mod thread;
pub mod trim;

pub use fd::{create_eventfd, recv_fd, send_fd, signal_eventfd, FdError};
pub use memfd::{check_sealed, create_memfd};
pub use process::ProcessError;
pub use seccomp::SeccompError;
pub use shm::{SharedMemory, ShmError};
pub use trim::trim_heap;
