//! The per-context ALIVE monitor (venus-wire.md §5.4).
//!
//! The guest's watchdog clears ALIVE and aborts if it is not set again in time, even
//! while a ring thread is legitimately blocked in a long host call. So a separate
//! thread ORs ALIVE into the status word of every ring created with a
//! `VkRingMonitorInfoMESA`, at the smallest reporting period requested.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ring::STATUS_ALIVE;
use crate::ids::{ContextId, RingId};
use crate::sys::SharedMemory;

/// Shortest period honoured; a guest asking for less gets this. Mesa asks for 3 s and
/// looks at ALIVE only at its watchdog warnings (seconds apart), so 10 ms loses it
/// nothing, while a 1 µs request no longer wakes the monitor 1000 times a second.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// A status word to keep alive.
#[derive(Debug)]
pub(crate) struct StatusWord {
    pub(crate) mem: Arc<SharedMemory>,
    pub(crate) offset: u64,
}

impl StatusWord {
    /// ORs `bits` into the guest-visible status word.
    pub(crate) fn set(&self, bits: u32) {
        // Bounds and alignment were validated at ring creation; an error here is
        // impossible, and there is nothing better to do than skip the write.
        let _ = self.mem.fetch_or_u32(self.offset, bits, Ordering::SeqCst);
    }

    fn set_alive(&self) {
        self.set(STATUS_ALIVE);
    }
}

enum MonitorMsg {
    Watch {
        ring: RingId,
        status: StatusWord,
        period: Duration,
    },
    Unwatch(RingId),
}

/// Owns the monitor thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct MonitorHandle {
    tx: Option<Sender<MonitorMsg>>,
    thread: Option<JoinHandle<()>>,
}

impl MonitorHandle {
    pub(crate) fn spawn(ctx: ContextId) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("vgpu-alive-{}", ctx.0))
            .spawn(move || monitor_main(rx))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn watch(&self, ring: RingId, status: StatusWord, period_us: u32) {
        let period = Duration::from_micros(u64::from(period_us)).max(MIN_PERIOD);
        if let Some(tx) = &self.tx {
            let _ = tx.send(MonitorMsg::Watch {
                ring,
                status,
                period,
            });
        }
    }

    pub(crate) fn unwatch(&self, ring: RingId) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(MonitorMsg::Unwatch(ring));
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("renderer: ALIVE monitor thread panicked");
            }
        }
    }
}

fn monitor_main(rx: Receiver<MonitorMsg>) {
    let mut watched: HashMap<RingId, (StatusWord, Duration)> = HashMap::new();
    let mut deadline = Instant::now();
    loop {
        let period = watched.values().map(|(_, p)| *p).min();
        let msg = match period {
            None => match rx.recv() {
                Ok(msg) => Ok(msg),
                Err(_) => return,
            },
            Some(period) => {
                let now = Instant::now();
                if now >= deadline {
                    for (status, _) in watched.values() {
                        status.set_alive();
                    }
                    deadline = now + period;
                }
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            }
        };
        match msg {
            Ok(MonitorMsg::Watch {
                ring,
                status,
                period,
            }) => {
                status.set_alive();
                let faster = watched.values().all(|(_, p)| period < *p);
                watched.insert(ring, (status, period));
                if faster {
                    // Report at the new rate right away rather than after the old period.
                    deadline = Instant::now() + period;
                }
            }
            Ok(MonitorMsg::Unwatch(ring)) => {
                watched.remove(&ring);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
