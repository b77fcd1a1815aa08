//! Device time measured on the device (issue 13): a pair of timestamp queries around
//! each submission the QoS arbiter granted (and charges for). The renderer puts a
//! command buffer of its own that writes a top-of-pipe timestamp in front of the
//! guest's first command buffer and one that writes a bottom-of-pipe timestamp after
//! its last; when the retire fence signals, the difference of the two, times
//! `timestampPeriod`, is the submission's device time. Best-effort submissions are
//! not stamped: on lavapipe the two extra command buffers cost about a third of the
//! throughput of 0.2 ms batches at depth 1 (issue 15), and best-effort only reports
//! device time for the figures, by completion timing.
//!
//! Each host queue gets, on its first stamped submission, a query pool of
//! [`SLOTS`] pairs and a command pool with one pre-recorded begin and end command
//! buffer per pair (the begin one resets its pair first). A slot is in use from the
//! submit until the submission retires. Where a queue family has no timestamps, the
//! pool cannot be made, all slots are busy, or the batch carries `pNext` structs whose
//! meaning depends on its command-buffer count (device groups, protected submits, …),
//! the submission goes unstamped and the gate falls back to completion timing.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ash::vk;

/// Timestamp pairs per queue (submissions in flight that can be stamped at once).
pub(crate) const SLOTS: u32 = 64;

/// The stamping state of one device's queues.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// `timestampValidBits` per queue family index (0: no timestamps).
    valid_bits: Vec<u32>,
    /// `timestampPeriod`, ns per tick.
    period_ns: f64,
    queues: Mutex<HashMap<u64, QueueStamps>>,
}

/// One queue's pools; created on its first stamped submission.
#[derive(Debug)]
struct QueueStamps {
    family: u32,
    pools: Option<Pools>,
    /// Creating the pools failed once: do not try on every submission.
    failed: bool,
}

#[derive(Debug)]
struct Pools {
    query_pool: vk::QueryPool,
    cmd_pool: vk::CommandPool,
    begin: Vec<vk::CommandBuffer>,
    end: Vec<vk::CommandBuffer>,
    free: Vec<u32>,
    /// The bits of a timestamp that count (`timestampValidBits`).
    mask: u64,
}

/// One taken timestamp pair: its two command buffers and its index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    queue: u64,
    index: u32,
    /// Goes before the guest's first command buffer.
    pub(crate) begin: vk::CommandBuffer,
    /// Goes after the guest's last command buffer.
    pub(crate) end: vk::CommandBuffer,
}

impl Stamps {
    /// The stamping state of a device whose queue families have `valid_bits` and
    /// whose timestamps tick every `period_ns`.
    pub(crate) fn new(valid_bits: Vec<u32>, period_ns: f32) -> Self {
        Self {
            valid_bits,
            period_ns: f64::from(period_ns),
            queues: Mutex::default(),
        }
    }

    /// Notes that host queue `queue` belongs to `family` (idempotent).
    pub(crate) fn register(&self, queue: u64, family: u32) {
        self.lock().entry(queue).or_insert(QueueStamps {
            family,
            pools: None,
            failed: false,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, QueueStamps>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a free timestamp pair of `queue`, creating its pools on first use.
    /// `None`: this submission goes unstamped.
    ///
    /// # Safety
    ///
    /// `device` is the live device these stamps belong to, and the caller holds
    /// `queue`'s submission lock (the command buffers it returns are submitted on it).
    pub(crate) unsafe fn take(&self, device: &ash::Device, queue: u64) -> Option<Slot> {
        let mut queues = self.lock();
        let q = queues.get_mut(&queue)?;
        if q.pools.is_none() && !q.failed {
            let bits = self.valid_bits.get(q.family as usize).copied().unwrap_or(0);
            if bits == 0 {
                q.failed = true;
                return None;
            }
            // SAFETY: live device (the caller's contract).
            match unsafe { Pools::create(device, q.family, bits) } {
                Ok(p) => q.pools = Some(p),
                Err(e) => {
                    log::debug!("venus: no timestamp pool for a queue ({e}); completion timing");
                    q.failed = true;
                }
            }
        }
        let pools = q.pools.as_mut()?;
        let index = pools.free.pop()?;
        Some(Slot {
            queue,
            index,
            begin: pools.begin[index as usize],
            end: pools.end[index as usize],
        })
    }

    /// The device time between `slot`'s two timestamps, and the slot back to its
    /// queue. `None` if the results cannot be read (then the caller uses completion
    /// timing).
    ///
    /// # Safety
    ///
    /// `device` is the live device these stamps belong to, and the submission that
    /// used `slot` has completed (its retire fence signalled).
    pub(crate) unsafe fn finish(&self, device: &ash::Device, slot: Slot) -> Option<u64> {
        let mut queues = self.lock();
        let pools = queues.get_mut(&slot.queue)?.pools.as_mut()?;
        let mask = pools.mask;
        let mut ticks = [0u64; 2];
        // SAFETY: live device and query pool; both queries of the pair were written by
        // the completed submission, so no wait is needed; `ticks` holds two results.
        let read = unsafe {
            device.get_query_pool_results(
                pools.query_pool,
                slot.index * 2,
                &mut ticks,
                vk::QueryResultFlags::TYPE_64,
            )
        };
        pools.free.push(slot.index);
        drop(queues);
        read.ok()?;
        let elapsed = ticks[1].wrapping_sub(ticks[0]) & mask;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "tick counts of one submission; the product is a positive duration"
        )]
        let ns = (elapsed as f64 * self.period_ns) as u64;
        Some(ns)
    }

    /// Frees `slot` whose submission never reached the queue.
    pub(crate) fn give_back(&self, slot: Slot) {
        if let Some(p) = self
            .lock()
            .get_mut(&slot.queue)
            .and_then(|q| q.pools.as_mut())
        {
            p.free.push(slot.index);
        }
    }

    /// Destroys every queue's pools.
    ///
    /// # Safety
    ///
    /// `device` is the live device these stamps belong to and none of its queues has
    /// work pending that uses them (the device is being destroyed).
    #[allow(clippy::multiple_unsafe_ops_per_block)] // a queue's two pools, one contract
    pub(crate) unsafe fn destroy(&self, device: &ash::Device) {
        for (_, q) in self.lock().drain() {
            if let Some(p) = q.pools {
                // SAFETY: the caller's contract; destroying the command pool frees its
                // command buffers.
                unsafe {
                    device.destroy_command_pool(p.cmd_pool, None);
                    device.destroy_query_pool(p.query_pool, None);
                }
            }
        }
    }
}

impl Pools {
    /// A query pool of [`SLOTS`] pairs and the recorded begin/end command buffers.
    ///
    /// # Safety
    ///
    /// `device` is live and `family` one of its queue families.
    #[allow(clippy::multiple_unsafe_ops_per_block)] // unwinding two fresh pools, one contract
    unsafe fn create(device: &ash::Device, family: u32, bits: u32) -> Result<Self, vk::Result> {
        let qinfo = vk::QueryPoolCreateInfo::default()
            .query_type(vk::QueryType::TIMESTAMP)
            .query_count(SLOTS * 2);
        // SAFETY: live device; well-formed create info.
        let query_pool = unsafe { device.create_query_pool(&qinfo, None) }?;
        let pinfo = vk::CommandPoolCreateInfo::default().queue_family_index(family);
        // SAFETY: as above.
        let cmd_pool = match unsafe { device.create_command_pool(&pinfo, None) } {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: just created, unused.
                unsafe { device.destroy_query_pool(query_pool, None) };
                return Err(e);
            }
        };
        let pools = Self {
            query_pool,
            cmd_pool,
            begin: Vec::new(),
            end: Vec::new(),
            free: (0..SLOTS).rev().collect(),
            mask: if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            },
        };
        // SAFETY: live device; the pools were made on it.
        match unsafe { pools.record(device) } {
            Ok((begin, end)) => Ok(Self {
                begin,
                end,
                ..pools
            }),
            Err(e) => {
                // SAFETY: nothing was submitted; the command pool frees its buffers.
                unsafe {
                    device.destroy_command_pool(cmd_pool, None);
                    device.destroy_query_pool(query_pool, None);
                }
                Err(e)
            }
        }
    }

    /// Records the begin (reset the pair, top-of-pipe stamp) and end (bottom-of-pipe
    /// stamp) command buffer of every slot.
    ///
    /// # Safety
    ///
    /// `device` is live and owns both pools.
    #[allow(clippy::type_complexity)]
    #[allow(clippy::multiple_unsafe_ops_per_block)] // recording one slot's two buffers
    unsafe fn record(
        &self,
        device: &ash::Device,
    ) -> Result<(Vec<vk::CommandBuffer>, Vec<vk::CommandBuffer>), vk::Result> {
        let alloc = vk::CommandBufferAllocateInfo::default()
            .command_pool(self.cmd_pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(SLOTS * 2);
        // SAFETY: live device and pool.
        let cbs = unsafe { device.allocate_command_buffers(&alloc) }?;
        let (begin, end) = cbs.split_at(SLOTS as usize);
        for slot in 0..SLOTS {
            let (b, e) = (begin[slot as usize], end[slot as usize]);
            let first = slot * 2;
            let info = vk::CommandBufferBeginInfo::default();
            // SAFETY: fresh primary command buffers of this device, recorded once and
            // only ever submitted afterwards (simultaneous use is not needed: a slot is
            // in one submission at a time); the queries are inside the pool.
            unsafe {
                device.begin_command_buffer(b, &info)?;
                device.cmd_reset_query_pool(b, self.query_pool, first, 2);
                device.cmd_write_timestamp(
                    b,
                    vk::PipelineStageFlags::TOP_OF_PIPE,
                    self.query_pool,
                    first,
                );
                device.end_command_buffer(b)?;
                device.begin_command_buffer(e, &info)?;
                device.cmd_write_timestamp(
                    e,
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                    self.query_pool,
                    first + 1,
                );
                device.end_command_buffer(e)?;
            }
        }
        Ok((begin.to_vec(), end.to_vec()))
    }
}
