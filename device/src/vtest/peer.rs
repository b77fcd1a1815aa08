//! Who is on the other end of a vtest connection (`SO_PEERCRED`), for the per-peer
//! connection limits.
//!
//! Until VMs exist in the daemon's configuration, a "peer" is the connecting process
//! (pid) and its user (uid). The pid limit stops one process from taking every slot
//! with connections that idle legally between messages; the uid limit (off by
//! default: every test and CI client shares one uid) models one VM per uid, as VMMs
//! that run each VM under its own user do.

use std::os::unix::net::UnixStream;

/// The credentials the kernel recorded when the peer connected. A peer in another
/// pid namespace that ours cannot see reports pid 0, so all such peers share one
/// per-pid budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Process id (0 if the kernel gave none).
    pub(crate) pid: i32,
    /// User id.
    pub(crate) uid: u32,
}

impl Peer {
    /// The peer of `stream`; `None` if the kernel cannot say (not expected on a
    /// connected unix socket).
    pub(crate) fn of(stream: &UnixStream) -> Option<Self> {
        let cred = rustix::net::sockopt::socket_peercred(stream).ok()?;
        Some(Self {
            pid: cred.pid.as_raw_pid(),
            uid: cred.uid.as_raw(),
        })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} uid {}", self.pid, self.uid)
    }
}
