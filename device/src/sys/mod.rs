//! OS leaf modules: shared-memory mappings (`shm.rs`), sealed memfds and the check on
//! foreign memory fds (`memfd.rs`), eventfds and `SCM_RIGHTS` fd passing (`fd.rs`), and
//! heap trimming (`trim.rs`, one libc call). `shm.rs` and `trim.rs` hold the only
//! `unsafe` under `sys/`.

pub mod fd;
pub mod memfd;
pub mod shm;
pub mod trim;

pub use fd::{create_eventfd, recv_fd, send_fd, signal_eventfd, FdError};
pub use memfd::{check_sealed, create_memfd};
pub use shm::{SharedMemory, ShmError};
pub use trim::trim_heap;
