//! OS leaf modules: shared-memory mappings (the only `unsafe` in the crate), memfds,
//! eventfds and `SCM_RIGHTS` fd passing; heap trimming (`trim.rs`, one libc call).

pub mod fd;
pub mod shm;
pub mod trim;

pub use fd::{create_eventfd, create_memfd, recv_fd, send_fd, signal_eventfd, FdError};
pub use shm::{SharedMemory, ShmError};
pub use trim::trim_heap;
