//! OS leaf modules: shared-memory mappings (`shm.rs`, the only `unsafe` under `sys/`),
//! sealed memfds and the check on foreign memory fds (`memfd.rs`), eventfds and
//! `SCM_RIGHTS` fd passing (`fd.rs`).

pub mod fd;
pub mod memfd;
pub mod shm;

pub use fd::{create_eventfd, recv_fd, send_fd, signal_eventfd, FdError};
pub use memfd::{check_sealed, create_memfd};
pub use shm::{SharedMemory, ShmError};
