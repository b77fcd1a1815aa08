//! Random command sequences against the handler: whatever a guest sends, every request
//! gets exactly one well-formed response, nothing panics, caps hold, and a device
//! reset leaves nothing behind.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::ids::{BlobId, ResourceId};
use crate::virtio_gpu::fence::Timeline;
use crate::virtio_gpu::render::{BlobMemory, Capset, RenderError, SubmitStatus};

const MEM_BASE: u64 = 0x10000;
const MEM_SIZE: usize = 0x20000;

/// A renderer that accepts everything and completes fences at random.
struct Chaos {
    capsets: Vec<Capset>,
    signals: FenceSignals,
    fail_every: u32,
    calls: u32,
}

#[derive(Debug)]
struct Mem(u64, std::os::fd::OwnedFd);

impl BlobMemory for Mem {
    fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.1.as_fd()
    }
    fn size(&self) -> u64 {
        self.0
    }
    fn read(&self, _offset: u64, dst: &mut [u8]) -> bool {
        dst.fill(0x33);
        true
    }
}

impl Chaos {
    fn tick(&mut self) -> bool {
        self.calls = self.calls.wrapping_add(1);
        self.fail_every != 0 && self.calls.is_multiple_of(self.fail_every)
    }
}

impl RenderBackend for Chaos {
    fn capsets(&self) -> &[Capset] {
        &self.capsets
    }
    fn create_context(&mut self, ctx: ContextId, _: CapsetId, _: &str) -> Result<(), RenderError> {
        if self.tick() {
            return Err(RenderError::NoContext(ctx));
        }
        Ok(())
    }
    fn destroy_context(&mut self, _: ContextId) {}
    fn submit(
        &mut self,
        ctx: ContextId,
        ticket: Ticket,
        _: Vec<u8>,
    ) -> Result<SubmitStatus, RenderError> {
        if self.tick() {
            return Err(RenderError::NoContext(ctx));
        }
        // Half the streams run "later": report them finished at once through the sink.
        if self.calls.is_multiple_of(2) {
            self.signals.submitted(ticket, Ok(()));
            return Ok(SubmitStatus::Queued);
        }
        Ok(SubmitStatus::Done)
    }
    fn create_blob(
        &mut self,
        ctx: ContextId,
        _: ResourceId,
        _: BlobId,
        size: u64,
    ) -> Result<Arc<dyn BlobMemory>, RenderError> {
        if self.tick() {
            return Err(RenderError::NoContext(ctx));
        }
        let fd = crate::sys::create_memfd("hostile-blob", 4096)
            .map_err(|_| RenderError::NoContext(ctx))?;
        Ok(Arc::new(Mem(size, fd)))
    }
    fn destroy_blob(&mut self, _: ContextId, _: ResourceId) {}
    fn attach_blob(
        &mut self,
        _: ContextId,
        _: ResourceId,
        _: ContextId,
    ) -> Result<(), RenderError> {
        Ok(())
    }
    fn create_fence(&mut self, _: ContextId, timeline: Timeline, fence: FenceId) -> FenceStatus {
        if self.tick() {
            // Completes later, reported through the sink.
            self.signals.signal(timeline, fence);
            FenceStatus::Pending
        } else if self.calls.is_multiple_of(3) {
            // Never completes: its responses stay parked until the reset.
            FenceStatus::Pending
        } else {
            FenceStatus::Signalled
        }
    }
}

#[derive(Default)]
struct Maps(Mutex<Vec<(u64, u64)>>);

impl ShmMapper for Maps {
    fn map(&self, off: u64, _: BorrowedFd<'_>, _: u64, len: u64, _: bool) -> Result<(), String> {
        self.0.lock().map_err(|e| e.to_string())?.push((off, len));
        Ok(())
    }
    fn unmap(&self, off: u64, _: u64) -> Result<(), String> {
        let mut v = self.0.lock().map_err(|e| e.to_string())?;
        v.retain(|&(o, _)| o != off);
        Ok(())
    }
}

/// One request: a command type (mostly valid), header fields, body words biased
/// towards small ids and sizes, and extra trailing bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let types = prop_oneof![
        8 => 0x100u32..=0x10d,
        6 => 0x200u32..=0x209,
        2 => 0x300u32..=0x301,
        1 => any::<u32>(),
    ];
    let word = prop_oneof![
        6 => 0u32..8,
        2 => 0u32..0x2_0000,
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ];
    (
        types,
        0u32..4,                            // flags: FENCE, INFO_RING_IDX
        0u64..16,                           // fence id
        0u32..4,                            // ctx id
        0u8..3,                             // ring idx
        prop::collection::vec(word, 0..24), // body words
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(ty, flags, fence, ctx, ring, words, tail)| {
            let mut v = CtrlHdr {
                type_: ty,
                flags,
                fence_id: fence,
                ctx_id: ctx,
                ring_idx: ring,
            }
            .encode()
            .to_vec();
            for w in words {
                v.extend_from_slice(&w.to_le_bytes());
            }
            v.extend(tail);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_command_sequence_gets_one_response_each_and_resets_clean(
        reqs in prop::collection::vec(request(), 1..60),
        fail_every in 0u32..5,
    ) {
        let signals = FenceSignals::new(Arc::new(|| {}));
        let chaos = Chaos {
            capsets: vec![Capset { id: CapsetId::VENUS, max_version: 1, bytes: vec![7; 160] }],
            signals: signals.clone(),
            fail_every,
            calls: 0,
        };
        let config = HandlerConfig {
            shm_size: 1 << 20,
            max_2d_bytes: 1 << 20,
            max_parked: 4,
            ..HandlerConfig::default()
        };
        let mut h = GpuHandler::new(config, Box::new(chaos), signals);
        h.set_mapper(Arc::new(Maps::default()));
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(MEM_BASE), MEM_SIZE)])
            .expect("memory");
        mem.write_slice(&[0x5a; 64], GuestAddress(MEM_BASE)).expect("write");
        let mut answered = 0usize;
        let mut pending = std::collections::HashSet::new();
        for (i, req) in reqs.iter().enumerate() {
            let reply = h.process(&mem, &mut SliceReader::new(req));
            let head = u16::try_from(i).expect("small");
            let token = UsedToken { queue: 0, head, len: 0 };
            if let Some(t) = reply.pending {
                prop_assert!(reply.bytes.is_empty());
                pending.insert(t);
            } else {
                let ty = u32::from_le_bytes([reply.bytes[0], reply.bytes[1], reply.bytes[2], reply.bytes[3]]);
                prop_assert!((0x1100..=0x1106).contains(&ty) || (0x1200..=0x1205).contains(&ty),
                    "response type {ty:#x}");
                answered += h.complete(reply.fence, token).len();
            }
            let polled = h.poll();
            answered += polled.released.len();
            for f in polled.finished {
                prop_assert!(pending.remove(&f.ticket), "finished an unknown ticket");
                prop_assert!(f.bytes.len() >= CTRL_HDR_SIZE);
                answered += h.complete(f.fence, UsedToken { queue: 0, head: 0, len: 0 }).len();
            }
            prop_assert!(h.fences.parked() <= 4);
        }
        prop_assert!(pending.is_empty(), "queued streams all finished: {pending:?}");
        // What is still parked comes back on reset; then nothing is left.
        answered += h.reset().len();
        prop_assert_eq!(answered, reqs.len());
        prop_assert_eq!(h.resources.len(), 0);
        prop_assert_eq!(h.contexts.len(), 0);
        prop_assert_eq!(h.in_flight(), 0);
    }
}
