//! The split hint (issue 13): a guest submission estimated to hold the device longer
//! than one [`SLICE_NS`] is submitted to the host in parts, each granted by the QoS
//! arbiter on its own, so another VM's work can run between them.
//!
//! Where a submission may be cut: **between the command buffers of a batch**, and
//! only if nothing is chained to it
//! (no `pNext`, not protected: a chained struct may count the command buffers, as a
//! device group submit does). The piece before a cut signals a binary semaphore of
//! ours that the piece after it waits on (all commands), so every piece of the batch
//! still runs after the batch's waits; the batch's waits stay on its first piece
//! and its signals on its last, which covers the earlier pieces (a semaphore
//! signal's first scope is everything earlier in submission order). Not between
//! batches: see [`Part`].
//!
//! The guest's fence goes with the last part (a fence signal's first scope is every
//! command submitted before it on the queue). One command buffer is never cut: its
//! device time is what it is, so a submission of one long command buffer is granted
//! whole, as are submissions a VM makes alone under a lease or under best-effort
//! (nothing to share the device with, or no arbitration).

use std::ops::Range;

use ash::vk;

use super::bounds::regions;
use super::objects::DeviceState;
use super::raw;
use std::sync::Arc;

/// The device time a part aims at, ns: an online VM waits for at most about this
/// much of an offline VM's split submission (plus one command buffer).
pub(super) const SLICE_NS: u64 = 4_000_000;
/// At most this many parts per submission (each costs a grant round trip and a
/// marker fence).
pub(super) const MAX_PARTS: usize = 64;

/// A run of one batch's command buffers that goes to the host in one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Piece {
    /// The batch (index into the submission's batches).
    pub(super) batch: usize,
    /// Its command buffers in this piece.
    pub(super) cbs: Range<usize>,
    /// The batch's first piece (carries its waits).
    pub(super) first: bool,
    /// The batch's last piece (carries its signals).
    pub(super) last: bool,
}

impl Piece {
    /// The whole batch in one piece (its `pNext` kept).
    pub(super) fn whole(&self) -> bool {
        self.first && self.last
    }
}

/// A part: the pieces submitted together under one grant. Parts are cut only
/// between the command buffers of one batch, never between batches: Mesa's Venus
/// driver appends batches of its own (one command buffer each, fence and semaphore
/// feedback) after the application's, and a part of just those would cost a grant
/// round trip for no device time and hold the guest's fence behind another VM's
/// work (measured: under burst, an online job then waited two offline batches).
pub(super) type Part = Vec<Piece>;

/// Plans the parts of a submission whose batches have command buffers of estimated
/// device time `costs[i][j]` (ns), of which batch `i` may be cut between command
/// buffers where `cuttable(i)`: a cut comes once the part holds at least `slice` of
/// work, never leaving less than a quarter slice behind it in the batch (a short tail
/// such as Mesa's feedback command buffer stays with the piece before), and every
/// piece holds at least one command buffer. A batch that may not be cut goes whole,
/// into the part of whatever precedes it. One part means: submit as it is (no
/// batches: one empty part, for the fence).
pub(super) fn plan(costs: &[Vec<u64>], cuttable: impl Fn(usize) -> bool, slice: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut part: Part = Vec::new();
    let mut acc = 0u64;
    for (batch, c) in costs.iter().enumerate() {
        let count = c.len();
        let sum = c.iter().fold(0u64, |a, &x| a.saturating_add(x));
        if count == 0 || !cuttable(batch) {
            part.push(Piece {
                batch,
                cbs: 0..count,
                first: true,
                last: true,
            });
            acc = acc.saturating_add(sum);
            continue;
        }
        // `tail`: the batch's work from command buffer `j` on.
        let mut tail = sum;
        let mut from = 0;
        for (j, &cost) in c.iter().enumerate() {
            if j > from && acc >= slice && tail >= slice / 4 {
                part.push(Piece {
                    batch,
                    cbs: from..j,
                    first: from == 0,
                    last: false,
                });
                parts.push(std::mem::take(&mut part));
                acc = 0;
                from = j;
            }
            acc = acc.saturating_add(cost);
            tail = tail.saturating_sub(cost);
        }
        part.push(Piece {
            batch,
            cbs: from..count,
            first: from == 0,
            last: true,
        });
    }
    if !part.is_empty() || parts.is_empty() {
        parts.push(part);
    }
    parts
}

/// The submission as it is: one part of every batch whole (`counts`: their
/// command buffers).
pub(super) fn whole(counts: impl Iterator<Item = usize>) -> Vec<Part> {
    vec![counts
        .enumerate()
        .map(|(batch, n)| Piece {
            batch,
            cbs: 0..n,
            first: true,
            last: true,
        })
        .collect()]
}

/// The slice to cut a submission of estimated `total_ns` at, or `None` where it fits
/// one [`SLICE_NS`] (then it goes whole). At most about [`MAX_PARTS`] parts.
pub(super) fn slice_for(total_ns: u64) -> Option<u64> {
    (total_ns > SLICE_NS).then(|| SLICE_NS.max(total_ns / MAX_PARTS as u64))
}

/// For every piece of `parts` in order: the chain semaphore (an index into the
/// submission's own semaphores) it waits on and the one it signals. A piece that is
/// not its batch's first waits on what the piece before it signals; one that is not
/// its batch's last signals a fresh one. Returns them and how many semaphores.
pub(super) fn links(parts: &[Part]) -> (Vec<Link>, usize) {
    let mut out = Vec::new();
    let mut next = 0usize;
    let mut previous = None;
    for piece in parts.iter().flatten() {
        let wait = if piece.first { None } else { previous };
        let signal = if piece.last {
            None
        } else {
            next += 1;
            Some(next - 1)
        };
        previous = signal;
        out.push(Link { wait, signal });
    }
    (out, next)
}

/// A piece's chain semaphores (indices), see [`links`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Link {
    pub(super) wait: Option<usize>,
    pub(super) signal: Option<usize>,
}

/// The first and last piece of `part` with command buffers, for the timestamp pair,
/// if both may be bracketed (`plain(batch)` for a whole batch; a cut piece has no
/// `pNext` by construction).
pub(super) fn stamp_pieces(
    part: &[Piece],
    plain: impl Fn(usize) -> bool,
) -> Option<(usize, usize)> {
    let ok = |i: usize| !part[i].whole() || plain(part[i].batch);
    let first = (0..part.len()).find(|&i| !part[i].cbs.is_empty())?;
    let last = (0..part.len()).rev().find(|&i| !part[i].cbs.is_empty())?;
    (ok(first) && ok(last)).then_some((first, last))
}

/// The command-buffer list of a stamped piece: `begin` in front when it is the part's
/// first stamped piece, `end` after when it is the last (both for a lone one).
fn bracket<T: Copy>(cbs: &[T], begin: Option<T>, end: Option<T>) -> Vec<T> {
    begin
        .into_iter()
        .chain(cbs.iter().copied())
        .chain(end)
        .collect()
}

/// The timestamp command buffers for piece `i` of a part stamped around `span`.
fn stamps_at(
    i: usize,
    span: Option<(usize, usize)>,
    stamps: Option<(vk::CommandBuffer, vk::CommandBuffer)>,
) -> (Option<vk::CommandBuffer>, Option<vk::CommandBuffer>) {
    match (span, stamps) {
        (Some((first, last)), Some((begin, end))) => {
            ((i == first).then_some(begin), (i == last).then_some(end))
        }
        _ => (None, None),
    }
}

/// A part to submit: its pieces, their [`Link`]s (one each) and the submission's
/// chain semaphores the links name.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartRef<'a> {
    pub(super) pieces: &'a [Piece],
    pub(super) links: &'a [Link],
    pub(super) chain: &'a [vk::Semaphore],
}

/// Every piece's command-buffer list (`cbs` of it, as `T`), the part's stamp pair
/// (`wrap`ped) in front of the first and after the last of `span`.
fn piece_lists<'a, T: Copy + 'a>(
    part: &[Piece],
    span: Option<(usize, usize)>,
    stamps: Option<(vk::CommandBuffer, vk::CommandBuffer)>,
    cbs: impl Fn(&Piece) -> &'a [T],
    wrap: impl Fn(vk::CommandBuffer) -> T,
) -> Vec<Vec<T>> {
    part.iter()
        .enumerate()
        .map(|(i, p)| {
            let (begin, end) = stamps_at(i, span, stamps);
            bracket(cbs(p), begin.map(&wrap), end.map(&wrap))
        })
        .collect()
}

/// One `vkQueueSubmit`'s or `vkQueueSubmit2`'s batches, as the split sees them.
pub(super) trait Batches {
    /// How this submit call lists a command buffer.
    type Listed: Copy;
    /// How many batches.
    fn batches(&self) -> usize;
    /// The command buffers of batch `i`, as the guest listed them.
    fn listed(&self, i: usize) -> &[Self::Listed];
    /// The host handle of a listed command buffer.
    fn handle(cb: &Self::Listed) -> vk::CommandBuffer;
    /// One of our command buffers (a stamp), listed.
    fn ours(cb: vk::CommandBuffer) -> Self::Listed;
    /// Command buffers of batch `i`.
    fn command_buffers(&self, i: usize) -> usize {
        self.listed(i).len()
    }
    /// The (host) handle of command buffer `j` of batch `i`.
    fn command_buffer(&self, i: usize, j: usize) -> u64 {
        self.listed(i)
            .get(j)
            .map_or(0, |cb| vk::Handle::as_raw(Self::handle(cb)))
    }
    /// Whether batch `i` may be cut between its command buffers (nothing chained,
    /// not protected).
    fn cuttable(&self, i: usize) -> bool;
    /// Whether the submission may be split at all: no wait in it may be waiting
    /// for a signal not yet submitted (a timeline wait before its signal). Such a
    /// wait could hold a part on the device until the stall bound for every later
    /// part, where the whole submission pays that once.
    fn may_split(&self) -> bool;
    /// Whether batch `i`, whole, may get the timestamp pair around its command
    /// buffers (nothing chained whose meaning depends on them).
    fn stampable(&self, i: usize) -> bool;
    /// Submits `part` and `fence`; `stamps` (begin, end) go around the part's command buffers and must
    /// be given only where [`stamp_pieces`] found a span.
    ///
    /// # Safety
    ///
    /// `device` is live, `queue` one of its queues under the caller's submission
    /// lock, every handle in the batches translated and pinned until the work
    /// retires, `chain` live binary semaphores of the device that nothing else uses,
    /// and the stamp command buffers of the queue's family and in no other pending
    /// submission.
    unsafe fn submit_part(
        &self,
        device: &ash::Device,
        queue: vk::Queue,
        part: PartRef<'_>,
        fence: vk::Fence,
        stamps: Option<(vk::CommandBuffer, vk::CommandBuffer)>,
    ) -> ash::prelude::VkResult<()>;
}

/// Each piece's command-buffer list for submitting `part` of `b` (with the stamp
/// pair around the stampable span, where `stamps` are given), or `None` where the
/// part is the whole submission unstamped: submitted as the guest sent it, without
/// copying.
fn part_lists<B: Batches + ?Sized>(
    b: &B,
    part: &[Piece],
    stamps: Option<(vk::CommandBuffer, vk::CommandBuffer)>,
) -> Option<Vec<Vec<B::Listed>>> {
    let span = stamps.and_then(|_| stamp_pieces(part, |i| b.stampable(i)));
    let untouched = span.is_none() && part.len() == b.batches() && part.iter().all(Piece::whole);
    (!untouched).then(|| {
        let cbs = |p: &Piece| b.listed(p.batch).get(p.cbs.clone()).unwrap_or(&[]);
        piece_lists(part, span, stamps, cbs, B::ours)
    })
}

/// The stage our chain semaphores are waited at: everything.
static ALL_COMMANDS: [vk::PipelineStageFlags; 1] = [vk::PipelineStageFlags::ALL_COMMANDS];

impl Batches for [vk::SubmitInfo<'_>] {
    type Listed = vk::CommandBuffer;

    fn batches(&self) -> usize {
        self.len()
    }

    fn listed(&self, i: usize) -> &[vk::CommandBuffer] {
        let b = &self[i];
        // SAFETY: the decoder built the array in the arena with the count beside it.
        unsafe { regions(b.p_command_buffers, b.command_buffer_count) }
    }

    fn handle(cb: &vk::CommandBuffer) -> vk::CommandBuffer {
        *cb
    }

    fn ours(cb: vk::CommandBuffer) -> vk::CommandBuffer {
        cb
    }

    fn cuttable(&self, i: usize) -> bool {
        self[i].p_next.is_null()
    }

    fn may_split(&self) -> bool {
        // Timeline values need a chained struct: without one every wait is on a
        // binary semaphore, whose signal was submitted before it (a valid-usage
        // rule the host driver relies on too).
        self.iter().all(|b| b.p_next.is_null())
    }

    fn stampable(&self, i: usize) -> bool {
        // SAFETY: the decoder built each chain in the arena.
        unsafe {
            raw::chain_only(
                self[i].p_next,
                &[vk::StructureType::TIMELINE_SEMAPHORE_SUBMIT_INFO],
            )
        }
    }

    unsafe fn submit_part(
        &self,
        device: &ash::Device,
        queue: vk::Queue,
        part: PartRef<'_>,
        fence: vk::Fence,
        stamps: Option<(vk::CommandBuffer, vk::CommandBuffer)>,
    ) -> ash::prelude::VkResult<()> {
        let PartRef {
            pieces: part,
            links,
            chain,
        } = part;
        let Some(lists) = part_lists(self, part, stamps) else {
            // SAFETY: the caller's contract.
            return unsafe { device.queue_submit(queue, self, fence) };
        };
        let infos: Vec<vk::SubmitInfo<'_>> = part
            .iter()
            .zip(links)
            .zip(&lists)
            .map(|((p, link), list)| {
                let mut s = self[p.batch].command_buffers(list);
                if let Some(w) = link.wait {
                    s = s
                        .wait_semaphores(chain.get(w..=w).unwrap_or(&[]))
                        .wait_dst_stage_mask(&ALL_COMMANDS);
                }
                if let Some(sig) = link.signal {
                    s = s.signal_semaphores(chain.get(sig..=sig).unwrap_or(&[]));
                }
                s
            })
            .collect();
        // SAFETY: the caller's contract; `lists` and `infos` live until it returns.
        unsafe { device.queue_submit(queue, &infos, fence) }
    }
}

impl<'a> Batches for [vk::SubmitInfo2<'a>] {
    type Listed = vk::CommandBufferSubmitInfo<'a>;

    fn batches(&self) -> usize {
        self.len()
    }

    fn listed(&self, i: usize) -> &[vk::CommandBufferSubmitInfo<'a>] {
        let b = &self[i];
        // SAFETY: the decoder built the array in the arena with the count beside it.
        unsafe { regions(b.p_command_buffer_infos, b.command_buffer_info_count) }
    }

    fn handle(cb: &vk::CommandBufferSubmitInfo<'a>) -> vk::CommandBuffer {
        cb.command_buffer
    }

    fn ours(cb: vk::CommandBuffer) -> vk::CommandBufferSubmitInfo<'a> {
        vk::CommandBufferSubmitInfo::default().command_buffer(cb)
    }

    fn cuttable(&self, i: usize) -> bool {
        self[i].p_next.is_null() && !self[i].flags.contains(vk::SubmitFlags::PROTECTED)
    }

    fn stampable(&self, i: usize) -> bool {
        self.cuttable(i)
    }

    fn may_split(&self) -> bool {
        // A wait for value 0 is met at once (timeline semaphores start at 0 or
        // above); a binary semaphore's value is ignored and given as 0 by Mesa.
        self.iter().all(|b| {
            // SAFETY: the decoder built the array in the arena with the count beside it.
            let waits = unsafe { regions(b.p_wait_semaphore_infos, b.wait_semaphore_info_count) };
            waits.iter().all(|w| w.value == 0)
        })
    }

    unsafe fn submit_part(
        &self,
        device: &ash::Device,
        queue: vk::Queue,
        part: PartRef<'_>,
        fence: vk::Fence,
        stamps: Option<(vk::CommandBuffer, vk::CommandBuffer)>,
    ) -> ash::prelude::VkResult<()> {
        let PartRef {
            pieces: part,
            links,
            chain,
        } = part;
        let Some(lists) = part_lists(self, part, stamps) else {
            // SAFETY: the caller's contract.
            return unsafe { device.queue_submit2(queue, self, fence) };
        };
        let sem = |s| {
            [vk::SemaphoreSubmitInfo::default()
                .semaphore(s)
                .stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS)]
        };
        let chain2: Vec<[vk::SemaphoreSubmitInfo<'_>; 1]> = chain.iter().map(|&s| sem(s)).collect();
        let infos: Vec<vk::SubmitInfo2<'_>> = part
            .iter()
            .zip(links)
            .zip(&lists)
            .map(|((p, link), list)| {
                let mut s = self[p.batch].command_buffer_infos(list);
                if let Some(w) = link.wait.and_then(|w| chain2.get(w)) {
                    s = s.wait_semaphore_infos(w);
                }
                if let Some(sig) = link.signal.and_then(|sig| chain2.get(sig)) {
                    s = s.signal_semaphore_infos(sig);
                }
                s
            })
            .collect();
        // SAFETY: as for `vkQueueSubmit` above.
        unsafe { device.queue_submit2(queue, &infos, fence) }
    }
}

/// The binary semaphores that order the pieces of cut batches (see [`links`]),
/// destroyed when dropped: with the submission's other objects, once the marker
/// fence after its last part has signalled (or at once if nothing was submitted).
pub(super) struct Chain {
    device: Option<Arc<DeviceState>>,
    semaphores: Vec<vk::Semaphore>,
}

impl Chain {
    /// `n` new binary semaphores of `device` (none, and no call, for 0).
    ///
    /// # Safety
    ///
    /// `device` is live.
    pub(super) unsafe fn create(device: &Arc<DeviceState>, n: usize) -> Result<Self, vk::Result> {
        let mut chain = Self {
            device: (n > 0).then(|| Arc::clone(device)),
            semaphores: Vec::with_capacity(n),
        };
        for _ in 0..n {
            // SAFETY: live device (the caller's contract).
            let s = unsafe {
                device
                    .device
                    .create_semaphore(&vk::SemaphoreCreateInfo::default(), None)
            }?;
            chain.semaphores.push(s);
        }
        Ok(chain)
    }

    pub(super) fn semaphores(&self) -> &[vk::Semaphore] {
        &self.semaphores
    }

    pub(super) fn is_empty(&self) -> bool {
        self.semaphores.is_empty()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let Some(device) = &self.device else { return };
        for &s in &self.semaphores {
            // SAFETY: dropped only when no pending work uses them (never submitted,
            // or the marker fence after the last part signalled; a submission given
            // up on leaks its chain), on the live device that made them (a device
            // destroyer flushes the retire thread first).
            unsafe { device.device.destroy_semaphore(s, None) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        bracket, links, part_lists, plan, slice_for, stamp_pieces, whole, Batches, Link, Piece,
        MAX_PARTS, SLICE_NS,
    };

    #[test]
    fn both_submit_calls_list_their_command_buffers_and_stamps_alike() {
        use ash::vk::{self, Handle};
        let cbs: Vec<vk::CommandBuffer> = (1..=3).map(vk::CommandBuffer::from_raw).collect();
        let infos: Vec<vk::CommandBufferSubmitInfo<'_>> = cbs
            .iter()
            .map(|&c| vk::CommandBufferSubmitInfo::default().command_buffer(c))
            .collect();
        let v1 = [vk::SubmitInfo::default().command_buffers(&cbs)];
        let v2 = [vk::SubmitInfo2::default().command_buffer_infos(&infos)];
        let (v1, v2) = (&v1[..], &v2[..]);
        for (n, h) in [
            (v1.command_buffers(0), v1.command_buffer(0, 1)),
            (v2.command_buffers(0), v2.command_buffer(0, 1)),
        ] {
            assert_eq!((n, h), (3, 2));
        }
        assert_eq!(v2.command_buffer(0, 9), 0, "past the end");
        let all = whole([3usize].into_iter());
        // Whole and unstamped: submitted as sent.
        assert!(part_lists(v1, &all[0], None).is_none());
        assert!(part_lists(v2, &all[0], None).is_none());
        // Stamped: the pair around the guest's command buffers.
        let stamps = Some((
            vk::CommandBuffer::from_raw(100),
            vk::CommandBuffer::from_raw(101),
        ));
        let raw1 = |l: Vec<Vec<vk::CommandBuffer>>| -> Vec<Vec<u64>> {
            l.iter()
                .map(|p| p.iter().map(|c| c.as_raw()).collect())
                .collect()
        };
        let raw2 = |l: Vec<Vec<vk::CommandBufferSubmitInfo<'_>>>| -> Vec<Vec<u64>> {
            l.iter()
                .map(|p| p.iter().map(|c| c.command_buffer.as_raw()).collect())
                .collect()
        };
        let want = vec![vec![100, 1, 2, 3, 101]];
        assert_eq!(
            part_lists(v1, &all[0], stamps).map(raw1),
            Some(want.clone())
        );
        assert_eq!(part_lists(v2, &all[0], stamps).map(raw2), Some(want));
        // A cut piece lists only its own command buffers.
        let cut = [Piece {
            batch: 0,
            cbs: 1..3,
            first: false,
            last: true,
        }];
        assert_eq!(part_lists(v1, &cut, None).map(raw1), Some(vec![vec![2, 3]]));
        assert_eq!(part_lists(v2, &cut, None).map(raw2), Some(vec![vec![2, 3]]));
    }

    #[test]
    fn bracket_puts_begin_first_and_end_last() {
        assert_eq!(bracket(&[5, 6], Some(1), Some(9)), vec![1, 5, 6, 9]);
        assert_eq!(bracket(&[5], Some(1), None), vec![1, 5]);
        assert_eq!(bracket(&[7, 8], None, Some(9)), vec![7, 8, 9]);
    }

    fn piece(batch: usize, from: usize, to: usize, first: bool, last: bool) -> Piece {
        Piece {
            batch,
            cbs: from..to,
            first,
            last,
        }
    }

    /// `n` command buffers of `ms` each, per batch.
    fn ms(batches: &[&[u64]]) -> Vec<Vec<u64>> {
        batches
            .iter()
            .map(|b| b.iter().map(|&m| m * 1_000_000).collect())
            .collect()
    }

    #[test]
    fn a_cuttable_batch_is_cut_once_a_part_holds_a_slice() {
        // Five 2 ms command buffers at a 4 ms slice: 2 + 2 + 1.
        let parts = plan(&ms(&[&[2, 2, 2, 2, 2]]), |_| true, SLICE_NS);
        assert_eq!(
            parts,
            vec![
                vec![piece(0, 0, 2, true, false)],
                vec![piece(0, 2, 4, false, false)],
                vec![piece(0, 4, 5, false, true)],
            ]
        );
        let (l, n) = links(&parts);
        assert_eq!(n, 2);
        assert_eq!(
            l,
            vec![
                Link {
                    wait: None,
                    signal: Some(0)
                },
                Link {
                    wait: Some(0),
                    signal: Some(1)
                },
                Link {
                    wait: Some(1),
                    signal: None
                },
            ]
        );
    }

    #[test]
    fn batches_that_may_not_be_cut_go_whole_and_parts_end_only_inside_batches() {
        // Batch 1 has a pNext: whole, even though it is longer than a slice; batch
        // 3's first piece joins the part before it.
        let parts = plan(&ms(&[&[1], &[9, 9], &[], &[5, 5, 5]]), |i| i != 1, SLICE_NS);
        assert_eq!(
            parts,
            vec![
                vec![
                    piece(0, 0, 1, true, true),
                    piece(1, 0, 2, true, true),
                    piece(2, 0, 0, true, true),
                    piece(3, 0, 1, true, false)
                ],
                vec![piece(3, 1, 2, false, false)],
                vec![piece(3, 2, 3, false, true)],
            ]
        );
        let (l, n) = links(&parts);
        assert_eq!(n, 2);
        assert_eq!(l[3].signal, Some(0));
        assert_eq!(l[4].wait, Some(0));
        assert!(l[..3]
            .iter()
            .all(|k| k.wait.is_none() && k.signal.is_none()));
    }

    #[test]
    fn a_short_tail_stays_with_the_piece_before() {
        // Mesa's fence feedback command buffer after a 100 ms one: not cut off.
        let c = vec![vec![100_000_000, 20_000]];
        assert_eq!(plan(&c, |_| true, SLICE_NS).len(), 1);
        // Until it is known to be short, it costs what the others do: cut.
        assert_eq!(plan(&ms(&[&[50, 50]]), |_| true, SLICE_NS).len(), 2);
        // Twenty 5 ms ones and the short tail: twenty parts, the tail in the last.
        let mut c = ms(&[&[5; 20]]);
        c[0].push(20_000);
        let parts = plan(&c, |_| true, SLICE_NS);
        assert_eq!(parts.len(), 20);
        assert_eq!(parts[19], vec![piece(0, 19, 21, false, true)]);
    }

    #[test]
    fn every_command_buffer_is_in_exactly_one_piece_in_order() {
        let sizes = [3usize, 0, 7, 1, 12, 2];
        for cost_ms in 1..12u64 {
            let costs: Vec<Vec<u64>> = sizes.iter().map(|&n| vec![cost_ms * 700_000; n]).collect();
            let parts = plan(&costs, |i| i % 2 == 0, SLICE_NS);
            let pieces: Vec<&Piece> = parts.iter().flatten().collect();
            let mut at = (0usize, 0usize);
            for p in &pieces {
                if p.batch != at.0 {
                    assert_eq!(at.1, sizes[at.0], "batch {} incomplete", at.0);
                    assert_eq!(p.batch, at.0 + 1);
                    at = (p.batch, 0);
                }
                assert_eq!(p.cbs.start, at.1);
                assert!(!p.cbs.is_empty() || sizes[p.batch] == 0);
                assert_eq!(p.first, p.cbs.start == 0);
                assert_eq!(p.last, p.cbs.end == sizes[p.batch]);
                at.1 = p.cbs.end;
            }
            assert_eq!(at, (sizes.len() - 1, sizes[sizes.len() - 1]));
            assert!(parts.iter().all(|p| !p.is_empty()));
            // Every cut is inside a batch.
            for w in parts.windows(2) {
                let (a, b) = (&w[0][w[0].len() - 1], &w[1][0]);
                assert!(a.batch == b.batch && !a.last && !b.first, "{a:?} | {b:?}");
            }
        }
    }

    #[test]
    fn no_batches_is_one_empty_part() {
        assert_eq!(plan(&[], |_| true, SLICE_NS), vec![Vec::<Piece>::new()]);
        assert_eq!(whole(std::iter::empty()), vec![Vec::<Piece>::new()]);
        assert_eq!(
            whole([2, 0].into_iter()),
            vec![vec![piece(0, 0, 2, true, true), piece(1, 0, 0, true, true)]]
        );
    }

    #[test]
    fn a_submission_within_a_slice_goes_whole_and_parts_are_bounded() {
        assert_eq!(slice_for(SLICE_NS), None);
        assert_eq!(slice_for(SLICE_NS + 1), Some(SLICE_NS));
        assert_eq!(slice_for(u64::MAX), Some(u64::MAX / MAX_PARTS as u64));
        // A second of 1 µs command buffers: about MAX_PARTS parts, not 250.
        let c = vec![vec![1_000u64; 1_000_000]];
        let parts = plan(&c, |_| true, slice_for(1_000_000_000).unwrap_or(0));
        assert!(parts.len() <= MAX_PARTS + 1, "{}", parts.len());
    }

    #[test]
    fn stamps_go_around_pieces_with_command_buffers_that_may_be_bracketed() {
        let part = vec![
            piece(0, 0, 0, true, true),
            piece(1, 0, 2, true, true),
            piece(2, 0, 3, true, false),
        ];
        assert_eq!(stamp_pieces(&part, |_| true), Some((1, 2)));
        // Batch 1 is whole and chains something: no stamps.
        assert_eq!(stamp_pieces(&part, |b| b != 1), None);
        // Batch 2 is cut, so its pNext-less piece may be bracketed whatever `plain`
        // says of the whole batch.
        assert_eq!(stamp_pieces(&part[2..], |_| false), Some((0, 0)));
    }
}
