//! Command-handler tests, independent of vhost: requests are byte vectors, guest
//! memory is an anonymous `GuestMemoryMmap`, the renderer is a fake that records calls
//! and leaves fences pending until the test signals them.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::ids::{BlobId, ResourceId, RingIdx};
use crate::renderer::{ContextError, ResourceError};
use crate::virtio_gpu::backing::BackingError;
use crate::virtio_gpu::display::Cursor;
use crate::virtio_gpu::fence::Timeline;
use crate::virtio_gpu::protocol::encode;
use crate::virtio_gpu::render::{BlobMemory, Capset, RenderError, SubmitStatus};

#[derive(Debug, Default)]
struct Calls {
    log: Vec<String>,
}

#[derive(Debug)]
struct FakeMem(u64, std::os::fd::OwnedFd);

impl BlobMemory for FakeMem {
    fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.1.as_fd()
    }
    fn size(&self) -> u64 {
        self.0
    }
    fn read(&self, _offset: u64, dst: &mut [u8]) -> bool {
        dst.fill(0x7f);
        true
    }
}

struct Fake {
    capsets: Vec<Capset>,
    calls: Arc<Mutex<Calls>>,
}

impl RenderBackend for Fake {
    fn capsets(&self) -> &[Capset] {
        &self.capsets
    }
    fn create_context(
        &mut self,
        ctx: ContextId,
        capset: CapsetId,
        name: &str,
    ) -> Result<(), RenderError> {
        self.calls
            .lock()
            .expect("lock")
            .log
            .push(format!("create {ctx} {capset} {name}"));
        Ok(())
    }
    fn destroy_context(&mut self, ctx: ContextId) {
        self.calls
            .lock()
            .expect("lock")
            .log
            .push(format!("destroy {ctx}"));
    }
    fn submit(
        &mut self,
        ctx: ContextId,
        _ticket: Ticket,
        cmds: Vec<u8>,
    ) -> Result<SubmitStatus, RenderError> {
        self.calls
            .lock()
            .expect("lock")
            .log
            .push(format!("submit {ctx} {cmds:?}"));
        Ok(SubmitStatus::Done)
    }
    fn create_blob(
        &mut self,
        _ctx: ContextId,
        _res: ResourceId,
        _blob: BlobId,
        size: u64,
    ) -> Result<Arc<dyn BlobMemory>, RenderError> {
        Ok(Arc::new(FakeMem(
            size,
            crate::sys::create_memfd("fake-blob", 4096).expect("memfd"),
        )))
    }
    fn destroy_blob(&mut self, _ctx: ContextId, res: ResourceId) {
        self.calls
            .lock()
            .expect("lock")
            .log
            .push(format!("destroy_blob {res}"));
    }
    fn attach_blob(
        &mut self,
        owner: ContextId,
        res: ResourceId,
        ctx: ContextId,
    ) -> Result<(), RenderError> {
        self.calls
            .lock()
            .expect("lock")
            .log
            .push(format!("attach {res} {owner}->{ctx}"));
        Ok(())
    }
    fn detach_blob(&mut self, res: ResourceId, ctx: ContextId) {
        self.calls
            .lock()
            .expect("lock")
            .log
            .push(format!("detach {res} {ctx}"));
    }
    fn create_fence(
        &mut self,
        _ctx: ContextId,
        _timeline: Timeline,
        _fence: FenceId,
    ) -> FenceStatus {
        FenceStatus::Pending
    }
}

#[derive(Default)]
struct RecMapper {
    calls: Mutex<Vec<(bool, u64, u64)>>,
}

impl ShmMapper for RecMapper {
    fn map(
        &self,
        off: u64,
        _fd: BorrowedFd<'_>,
        _fo: u64,
        len: u64,
        _w: bool,
    ) -> std::result::Result<(), String> {
        self.calls.lock().expect("lock").push((true, off, len));
        Ok(())
    }
    fn unmap(&self, off: u64, len: u64) -> std::result::Result<(), String> {
        self.calls.lock().expect("lock").push((false, off, len));
        Ok(())
    }
}

struct Rig {
    h: GpuHandler,
    mem: GuestMemoryMmap,
    signals: FenceSignals,
    calls: Arc<Mutex<Calls>>,
    mapper: Arc<RecMapper>,
}

const MEM_BASE: u64 = 0x10000;
const MEM_SIZE: usize = 0x40000;

fn rig() -> Rig {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let signals = FenceSignals::new(Arc::new(|| {}));
    let fake = Fake {
        capsets: vec![Capset {
            id: CapsetId::VENUS,
            max_version: 1,
            bytes: (0..160u8).collect(),
        }],
        calls: Arc::clone(&calls),
    };
    let config = HandlerConfig {
        shm_size: 1 << 20,
        max_2d_bytes: 1 << 20,
        ..HandlerConfig::default()
    };
    let mut h = GpuHandler::new(config, Box::new(fake), signals.clone());
    let mapper = Arc::new(RecMapper::default());
    h.set_mapper(mapper.clone());
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(MEM_BASE), MEM_SIZE)]).expect("memory");
    Rig {
        h,
        mem,
        signals,
        calls,
        mapper,
    }
}

impl Rig {
    fn send(&mut self, bytes: &[u8]) -> Reply {
        self.h.process(&self.mem, &mut SliceReader::new(bytes))
    }
    fn resp(&mut self, bytes: &[u8]) -> u32 {
        let r = self.send(bytes);
        u32::from_le_bytes([r.bytes[0], r.bytes[1], r.bytes[2], r.bytes[3]])
    }
}

const OK: u32 = RespType::OkNodata as u32;

fn cmd(c: CommandType, words: &[u32]) -> Vec<u8> {
    encode::simple(c, words)
}

fn ctx_cmd(c: CommandType, ctx: u32, words: &[u32]) -> Vec<u8> {
    let mut v = encode::hdr(c, 0, 0, ctx, 0);
    encode::words(&mut v, words);
    v
}

fn attach(res: u32, entries: &[(u64, u32)]) -> Vec<u8> {
    let mut v = cmd(
        CommandType::ResourceAttachBacking,
        &[res, u32::try_from(entries.len()).expect("small")],
    );
    for (addr, length) in entries {
        v.extend_from_slice(
            &MemEntry {
                addr: *addr,
                length: *length,
            }
            .encode(),
        );
    }
    v
}

fn ctx_create(ctx: u32, capset: u32) -> Vec<u8> {
    let mut v = ctx_cmd(CommandType::CtxCreate, ctx, &[4, capset]);
    let mut name = [0u8; 64];
    name[..4].copy_from_slice(b"test");
    v.extend_from_slice(&name);
    v
}

#[test]
fn display_info_reports_one_enabled_1280x800_scanout() {
    let mut r = rig();
    let reply = r.send(&cmd(CommandType::GetDisplayInfo, &[]));
    assert_eq!(reply.bytes.len(), 408);
    let w = |o: usize| u32::from_le_bytes(reply.bytes[o..o + 4].try_into().expect("4"));
    assert_eq!(w(0), RespType::OkDisplayInfo as u32);
    assert_eq!((w(24 + 8), w(24 + 12), w(24 + 16)), (1280, 800, 1));
    assert_eq!(w(48 + 16), 0, "scanout 1 disabled");
}

#[test]
fn get_edid_answers_valid_block_and_rejects_unknown_scanout() {
    let mut r = rig();
    let reply = r.send(&cmd(CommandType::GetEdid, &[0, 0]));
    assert_eq!(reply.bytes.len(), 24 + 8 + 1024);
    assert_eq!(
        &reply.bytes[32..40],
        &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]
    );
    assert_eq!(
        r.resp(&cmd(CommandType::GetEdid, &[1, 0])),
        RespType::ErrInvalidScanoutId as u32
    );
}

#[test]
fn capset_info_by_index_and_capset_by_id() {
    let mut r = rig();
    let info = r.send(&cmd(CommandType::GetCapsetInfo, &[0, 0]));
    assert_eq!(&info.bytes[24..36], &[4, 0, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0]);
    assert_eq!(
        r.resp(&cmd(CommandType::GetCapsetInfo, &[1, 0])),
        RespType::ErrInvalidParameter as u32
    );
    let caps = r.send(&cmd(CommandType::GetCapset, &[4, 1]));
    assert_eq!(caps.bytes.len(), 24 + 160);
    assert_eq!(caps.bytes[24..], (0..160u8).collect::<Vec<_>>()[..]);
    // Index 0 is not capset id 0.
    assert_eq!(
        r.resp(&cmd(CommandType::GetCapset, &[0, 0])),
        RespType::ErrInvalidParameter as u32
    );
    assert_eq!(
        r.resp(&cmd(CommandType::GetCapset, &[4, 2])),
        RespType::ErrInvalidParameter as u32
    );
}

#[test]
fn two_d_pipeline_produces_the_written_frame() {
    let mut r = rig();
    // 4x2 B8G8R8X8 resource; backing split in two guest ranges.
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 4, 2])),
        OK
    );
    let pattern: Vec<u8> = (0..32u8).collect();
    r.mem
        .write_slice(&pattern[..12], GuestAddress(MEM_BASE + 0x100))
        .expect("write");
    r.mem
        .write_slice(&pattern[12..], GuestAddress(MEM_BASE + 0x2000))
        .expect("write");
    assert_eq!(
        r.resp(&attach(
            1,
            &[(MEM_BASE + 0x100, 12), (MEM_BASE + 0x2000, 20)]
        )),
        OK
    );
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, 4, 2, 0, 0, 1, 0]
        )),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::SetScanout, &[0, 0, 4, 2, 0, 1])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceFlush, &[0, 0, 4, 2, 1, 0])),
        OK
    );
    let frame = r.h.display().frame(ScanoutId(0)).expect("frame");
    assert_eq!((frame.width, frame.height), (4, 2));
    let expected: Vec<u8> = pattern
        .chunks(4)
        .flat_map(|p| [p[2], p[1], p[0], 255])
        .collect();
    assert_eq!(frame.rgba, expected);
}

#[test]
fn unknown_resource_ids_get_invalid_resource_id() {
    let mut r = rig();
    let e = RespType::ErrInvalidResourceId as u32;
    assert_eq!(r.resp(&cmd(CommandType::ResourceUnref, &[9, 0])), e);
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceFlush, &[0, 0, 1, 1, 9, 0])),
        e
    );
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, 1, 1, 0, 0, 9, 0]
        )),
        e
    );
    assert_eq!(
        r.resp(&cmd(CommandType::SetScanout, &[0, 0, 1, 1, 0, 9])),
        e
    );
    assert_eq!(r.resp(&attach(9, &[])), e);
    assert_eq!(r.resp(&cmd(CommandType::ResourceAssignUuid, &[9, 0])), e);
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[0, 2, 4, 4])),
        e,
        "id 0"
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 4, 4])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 4, 4])),
        e,
        "duplicate"
    );
}

#[test]
fn hostile_sizes_are_refused_before_allocating() {
    let mut r = rig();
    let p = RespType::ErrInvalidParameter as u32;
    // 16384x16384x4 = 1 GiB > 1 MiB budget.
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 16384, 16384])),
        RespType::ErrOutOfMemory as u32
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 0x10000, 1])),
        p
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[2, 2, 8, 8])),
        OK
    );
    // nr_entries far beyond the bytes present.
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceAttachBacking, &[2, 100_000])),
        p
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceAttachBacking, &[2, u32::MAX])),
        p
    );
    // Rectangle overflowing u32.
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[u32::MAX, 0, 2, 1, 0, 0, 2, 0]
        )),
        p
    );
    // SUBMIT_3D larger than the chain.
    assert_eq!(r.resp(&ctx_create(1, 4)), OK);
    assert_eq!(
        r.resp(&ctx_cmd(CommandType::Submit3d, 1, &[u32::MAX, 0])),
        p
    );
    assert_eq!(
        r.resp(&ctx_cmd(CommandType::Submit3d, 1, &[8, u32::MAX])),
        p
    );
    // Blob sizes.
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[5, 2, 1, 0, 0, 0, 0, 0]
        )),
        p
    );
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[5, 2, 1, 0, 0, 0, u32::MAX, u32::MAX]
        )),
        p
    );
}

#[test]
fn out_of_range_backing_and_transfer_past_backing_are_refused() {
    let mut r = rig();
    let p = RespType::ErrInvalidParameter as u32;
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 4, 4])),
        OK
    );
    assert_eq!(r.resp(&attach(1, &[(0x100, 64)])), p, "below guest memory");
    assert_eq!(
        r.resp(&attach(1, &[(MEM_BASE + MEM_SIZE as u64 - 8, 64)])),
        p,
        "crosses the end"
    );
    assert_eq!(r.resp(&attach(1, &[(u64::MAX - 8, 64)])), p, "wraps");
    assert_eq!(r.resp(&attach(1, &[(MEM_BASE, 16)])), OK);
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, 4, 4, 0, 0, 1, 0]
        )),
        p
    );
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, 4, 1, u32::MAX, u32::MAX, 1, 0]
        )),
        p
    );
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, 4, 1, 0, 0, 1, 0]
        )),
        OK
    );
}

#[test]
fn short_header_body_and_unknown_command_get_errors() {
    let mut r = rig();
    assert_eq!(r.resp(&[0u8; 10]), RespType::ErrUnspec as u32);
    let mut short = cmd(CommandType::ResourceCreate2d, &[1, 2, 4]);
    short.truncate(24 + 12);
    assert_eq!(r.resp(&short), RespType::ErrInvalidParameter as u32);
    assert_eq!(
        r.resp(&encode::hdr(CommandType::GetDisplayInfo, 0, 0, 0, 0)[..8]),
        RespType::ErrUnspec as u32
    );
    let mut unknown = encode::hdr(CommandType::GetDisplayInfo, 0, 0, 0, 0);
    unknown[0] = 0x77;
    assert_eq!(r.resp(&unknown), RespType::ErrUnspec as u32);
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate3d, &[0; 12])),
        RespType::ErrUnspec as u32
    );
    assert_eq!(
        r.resp(&cmd(CommandType::TransferFromHost3d, &[0; 12])),
        RespType::ErrUnspec as u32
    );
}

#[test]
fn contexts_route_to_the_renderer_and_check_ids() {
    let mut r = rig();
    let c = RespType::ErrInvalidContextId as u32;
    assert_eq!(r.resp(&ctx_create(0, 4)), c, "ctx 0");
    assert_eq!(
        r.resp(&ctx_create(3, 9)),
        RespType::ErrInvalidParameter as u32,
        "capset not offered"
    );
    assert_eq!(r.resp(&ctx_create(3, 0)), OK, "default capset");
    assert_eq!(r.resp(&ctx_create(3, 4)), c, "duplicate");
    let mut submit = ctx_cmd(CommandType::Submit3d, 3, &[4, 0]);
    submit.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(r.resp(&submit), OK);
    assert_eq!(r.resp(&ctx_cmd(CommandType::Submit3d, 4, &[0, 0])), c);
    assert_eq!(r.resp(&ctx_cmd(CommandType::CtxDestroy, 3, &[])), OK);
    assert_eq!(r.resp(&ctx_cmd(CommandType::CtxDestroy, 3, &[])), c);
    assert_eq!(
        r.calls.lock().expect("lock").log,
        vec![
            "create ctx3 capset4 test",
            "submit ctx3 [1, 2, 3, 4]",
            "destroy ctx3"
        ]
    );
}

#[test]
fn fences_release_per_ring_in_order_with_gaps() {
    let mut r = rig();
    assert_eq!(r.resp(&ctx_create(1, 4)), OK);
    let fenced = |ring: u8, id: u64| {
        let mut v = encode::hdr(
            CommandType::Submit3d,
            FLAG_FENCE | FLAG_INFO_RING_IDX,
            id,
            1,
            ring,
        );
        encode::words(&mut v, &[0, 0]);
        v
    };
    let mut parked = Vec::new();
    for (i, (ring, id)) in [(0u8, 3u64), (1, 4), (0, 7), (1, 10), (0, 12)]
        .into_iter()
        .enumerate()
    {
        let reply = r.send(&fenced(ring, id));
        assert_eq!(
            &reply.bytes[4..8],
            &3u32.to_le_bytes(),
            "fence flags copied"
        );
        let tok = UsedToken {
            queue: 0,
            head: u16::try_from(i).expect("small"),
            len: 24,
        };
        parked.extend(r.h.complete(reply.fence, tok));
    }
    assert!(parked.is_empty(), "nothing signalled yet");
    let heads = |v: Vec<UsedToken>| v.into_iter().map(|t| t.head).collect::<Vec<_>>();
    r.signals
        .signal(Timeline::Ring(ContextId(1), RingIdx(0)), FenceId(8));
    assert_eq!(heads(r.h.poll().released), vec![0, 2]);
    r.signals
        .signal(Timeline::Ring(ContextId(1), RingIdx(1)), FenceId(10));
    assert_eq!(heads(r.h.poll().released), vec![1, 3]);
    r.signals
        .signal(Timeline::Ring(ContextId(1), RingIdx(0)), FenceId(12));
    assert_eq!(heads(r.h.poll().released), vec![4]);
}

#[test]
fn host3d_blob_maps_unmaps_and_rejects_bad_offsets() {
    let mut r = rig();
    let p = RespType::ErrInvalidParameter as u32;
    assert_eq!(r.resp(&ctx_create(1, 4)), OK);
    // res 5: HOST3D, MAPPABLE, blob_id 0, 5000 bytes.
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[5, 2, 1, 0, 0, 0, 5000, 0]
        )),
        OK
    );
    let map = |off: u64| {
        let mut v = cmd(CommandType::ResourceMapBlob, &[5, 0]);
        v.extend_from_slice(&off.to_le_bytes());
        v
    };
    assert_eq!(r.resp(&map(100)), p, "unaligned");
    assert_eq!(r.resp(&map(1 << 20)), p, "outside region");
    let reply = r.send(&map(0x3000));
    assert_eq!(
        &reply.bytes[..4],
        &(RespType::OkMapInfo as u32).to_le_bytes()
    );
    assert_eq!(&reply.bytes[24..28], &MAP_CACHE_CACHED.to_le_bytes());
    assert_eq!(r.resp(&map(0x8000)), p, "already mapped");
    assert_eq!(r.resp(&cmd(CommandType::ResourceUnmapBlob, &[5, 0])), OK);
    assert_eq!(r.resp(&cmd(CommandType::ResourceUnmapBlob, &[5, 0])), p);
    assert_eq!(
        *r.mapper.calls.lock().expect("lock"),
        vec![(true, 0x3000, 8192), (false, 0x3000, 8192)]
    );
    // Not mappable.
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[6, 2, 2, 0, 0, 0, 4096, 0]
        )),
        OK
    );
    assert_eq!(r.resp(&cmd(CommandType::ResourceMapBlob, &[6, 0, 0, 0])), p);
    // HOST3D needs a context; HOST3D_GUEST needs guest pages as well.
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            9,
            &[7, 2, 1, 0, 0, 0, 4096, 0]
        )),
        RespType::ErrInvalidContextId as u32
    );
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[7, 3, 1, 0, 0, 0, 4096, 0]
        )),
        p,
        "HOST3D_GUEST without entries"
    );
    let mut hg = ctx_cmd(
        CommandType::ResourceCreateBlob,
        1,
        &[7, 3, 1, 1, 0, 0, 4096, 0],
    );
    hg.extend_from_slice(
        &MemEntry {
            addr: MEM_BASE + 0x6000,
            length: 4096,
        }
        .encode(),
    );
    assert_eq!(r.resp(&hg), OK, "HOST3D_GUEST with its pages");
    let reply = r.send(&cmd(CommandType::ResourceMapBlob, &[7, 0, 0x6000, 0]));
    assert_eq!(
        u32::from_le_bytes(reply.bytes[0..4].try_into().expect("4")),
        RespType::OkMapInfo as u32,
        "its host memory maps"
    );
}

#[test]
fn attaching_a_host_blob_shares_it_with_the_other_context() {
    let mut r = rig();
    assert_eq!(r.resp(&ctx_create(1, 4)), OK);
    assert_eq!(r.resp(&ctx_create(2, 4)), OK);
    assert_eq!(
        r.resp(&ctx_cmd(
            CommandType::ResourceCreateBlob,
            1,
            &[5, 2, 3, 0, 0, 0, 4096, 0]
        )),
        OK
    );
    let attach = ctx_cmd(CommandType::CtxAttachResource, 2, &[5, 0]);
    assert_eq!(r.resp(&attach), OK);
    assert_eq!(r.resp(&attach), OK, "attaching twice is harmless");
    // The owner attaching its own blob shares nothing.
    assert_eq!(
        r.resp(&ctx_cmd(CommandType::CtxAttachResource, 1, &[5, 0])),
        OK
    );
    assert_eq!(
        r.resp(&ctx_cmd(CommandType::CtxDetachResource, 2, &[5, 0])),
        OK
    );
    assert_eq!(r.resp(&attach), OK);
    assert_eq!(r.resp(&cmd(CommandType::ResourceUnref, &[5, 0])), OK);
    let log: Vec<String> = r
        .calls
        .lock()
        .expect("lock")
        .log
        .iter()
        .filter(|l| l.contains("res5"))
        .cloned()
        .collect();
    assert_eq!(
        log,
        [
            "attach res5 ctx1->ctx2",
            "detach res5 ctx2",
            "attach res5 ctx1->ctx2",
            "detach res5 ctx2",
            "destroy_blob res5",
        ]
    );
    // Unknown resource and unknown context.
    assert_eq!(
        r.resp(&ctx_cmd(CommandType::CtxAttachResource, 2, &[99, 0])),
        RespType::ErrInvalidResourceId as u32
    );
    assert_eq!(
        r.resp(&ctx_cmd(CommandType::CtxAttachResource, 7, &[5, 0])),
        RespType::ErrInvalidContextId as u32
    );
}

#[test]
fn guest_blob_scanout_shows_guest_pixels() {
    let mut r = rig();
    let px: Vec<u8> = (0..16u8).collect(); // 2x2 R8G8B8A8
    r.mem
        .write_slice(&px, GuestAddress(MEM_BASE + 0x4000))
        .expect("write");
    let mut create = cmd(CommandType::ResourceCreateBlob, &[8, 1, 0, 1, 0, 0, 16, 0]);
    create.extend_from_slice(
        &MemEntry {
            addr: MEM_BASE + 0x4000,
            length: 16,
        }
        .encode(),
    );
    assert_eq!(r.resp(&create), OK);
    // rect, scanout, res, w, h, format 67, pad, strides, offsets
    let set = cmd(
        CommandType::SetScanoutBlob,
        &[0, 0, 2, 2, 0, 8, 2, 2, 67, 0, 8, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(r.resp(&set), OK);
    assert_eq!(r.h.display().frame(ScanoutId(0)).expect("frame").rgba, px);
    let too_big = cmd(
        CommandType::SetScanoutBlob,
        &[0, 0, 2, 2, 0, 8, 2, 3, 67, 0, 8, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(r.resp(&too_big), RespType::ErrInvalidParameter as u32);
}

#[test]
fn cursor_commands_update_scanout_cursor() {
    let mut r = rig();
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 64, 64])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::UpdateCursor, &[0, 10, 20, 0, 1, 3, 4, 0])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::MoveCursor, &[0, 30, 40, 0, 0, 0, 0, 0])),
        OK
    );
    let c = &r.h.display().get(ScanoutId(0)).expect("scanout").cursor;
    assert_eq!(
        (c.resource_id, c.x, c.y, c.hot_x, c.hot_y),
        (1, 30, 40, 3, 4)
    );
    assert_eq!(
        r.resp(&cmd(CommandType::MoveCursor, &[5, 0, 0, 0, 0, 0, 0, 0])),
        RespType::ErrInvalidScanoutId as u32
    );
}

/// Creates `res` (`format`, `w` × `h`), backs it with `pixels` at `MEM_BASE` and
/// transfers the whole resource to the host.
fn upload_2d(r: &mut Rig, res: u32, format: u32, (w, h): (u32, u32), pixels: &[u8]) {
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[res, format, w, h])),
        OK
    );
    r.mem
        .write_slice(pixels, GuestAddress(MEM_BASE))
        .expect("write");
    let len = u32::try_from(pixels.len()).expect("small");
    assert_eq!(r.resp(&attach(res, &[(MEM_BASE, len)])), OK);
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, w, h, 0, 0, res, 0]
        )),
        OK
    );
}

/// A distinct B8G8R8A8 pixel for (x, y): bytes B, G, R, A.
fn bgra_pattern(x: u32, y: u32) -> [u8; 4] {
    let b = |v: u32| u8::try_from(v & 0xff).expect("masked");
    [b(x * 3), b(y * 5), b(x ^ y), b(0x80 | x)]
}

fn bgra_image(w: u32, h: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| bgra_pattern(x, y)))
        .collect()
}

fn cursor_of(r: &Rig) -> Cursor {
    r.h.display()
        .get(ScanoutId(0))
        .expect("scanout")
        .cursor
        .clone()
}

#[test]
fn update_cursor_captures_a_64x64_bgra_resource_as_argb() {
    let mut r = rig();
    upload_2d(&mut r, 7, 1, (64, 64), &bgra_image(64, 64));
    assert_eq!(
        r.resp(&cmd(CommandType::UpdateCursor, &[0, 10, 20, 0, 7, 3, 4, 0])),
        OK
    );
    let c = cursor_of(&r);
    let image = c.image.expect("2D cursor has an image");
    let argb = image.argb();
    // B8G8R8A8 bytes [B, G, R, A] are the ARGB integer 0xAARRGGBB.
    let [b, g, rd, a] = bgra_pattern(5, 9);
    assert_eq!(argb[9 * 64 + 5], u32::from_be_bytes([a, rd, g, b]));
    assert_eq!(argb[0], 0x8000_0000);
    assert_eq!(argb[64 * 64 - 1], 0xbf00_3bbd);
    let expected: Vec<u32> = (0..64)
        .flat_map(|y| (0..64).map(move |x| u32::from_le_bytes(bgra_pattern(x, y))))
        .collect();
    assert_eq!(argb.as_slice(), expected.as_slice());
    assert_eq!((c.hot_x, c.hot_y, c.x, c.y), (3, 4, 10, 20));
}

#[test]
fn a_32x32_cursor_is_padded_with_transparent_pixels() {
    let mut r = rig();
    upload_2d(&mut r, 7, 1, (32, 32), &bgra_image(32, 32));
    assert_eq!(
        r.resp(&cmd(CommandType::UpdateCursor, &[0, 0, 0, 0, 7, 0, 0, 0])),
        OK
    );
    let image = cursor_of(&r).image.expect("image");
    let argb = image.argb();
    for (y, row) in (0..64u32).zip(argb.chunks_exact(64)) {
        for (x, px) in (0..64u32).zip(row) {
            let want = if x < 32 && y < 32 {
                u32::from_le_bytes(bgra_pattern(x, y))
            } else {
                0
            };
            assert_eq!(*px, want, "pixel ({x}, {y})");
        }
    }
}

#[test]
fn a_larger_rgbx_cursor_is_clipped_and_made_opaque() {
    let mut r = rig();
    // 80 × 70 R8G8B8X8 (134): bytes R, G, B, X; X becomes alpha 0xff.
    let pixels: Vec<u8> = (0..70u32)
        .flat_map(|y| (0..80u32).flat_map(move |x| bgra_pattern(x, y)))
        .collect();
    upload_2d(&mut r, 9, 134, (80, 70), &pixels);
    assert_eq!(
        r.resp(&cmd(CommandType::UpdateCursor, &[0, 0, 0, 0, 9, 0, 0, 0])),
        OK
    );
    let image = cursor_of(&r).image.expect("image");
    let argb = image.argb();
    // Row 1, column 63: bytes of pattern (63, 1) read as R, G, B.
    let [rd, g, b, _] = bgra_pattern(63, 1);
    assert_eq!(argb[64 + 63], u32::from_be_bytes([0xff, rd, g, b]));
    // Row 63 is source row 63, not a neighbour of the clipped columns.
    let [rd, g, b, _] = bgra_pattern(0, 63);
    assert_eq!(argb[63 * 64], u32::from_be_bytes([0xff, rd, g, b]));
}

#[test]
fn cursor_generation_changes_on_update_not_on_move_and_unref_drops_the_image() {
    let mut r = rig();
    upload_2d(&mut r, 7, 1, (64, 64), &bgra_image(64, 64));
    let update = cmd(CommandType::UpdateCursor, &[0, 1, 2, 0, 7, 0, 0, 0]);
    assert_eq!(r.resp(&update), OK);
    let first = cursor_of(&r).generation;
    assert_eq!(
        r.resp(&cmd(CommandType::MoveCursor, &[0, 8, 9, 0, 0, 0, 0, 0])),
        OK
    );
    assert_eq!(cursor_of(&r).generation, first);
    assert_eq!(r.resp(&update), OK);
    assert_ne!(cursor_of(&r).generation, first);
    assert_eq!(r.resp(&cmd(CommandType::ResourceUnref, &[7, 0])), OK);
    let c = cursor_of(&r);
    assert_eq!((c.resource_id, c.image), (0, None));
}

#[test]
fn a_blob_cursor_has_no_image_and_a_hidden_cursor_neither() {
    let mut r = rig();
    r.mem
        .write_slice(&[0xffu8; 4096], GuestAddress(MEM_BASE))
        .expect("write");
    let mut blob = cmd(
        CommandType::ResourceCreateBlob,
        &[5, 1, 0, 1, 0, 0, 4096, 0],
    );
    blob.extend_from_slice(
        &MemEntry {
            addr: MEM_BASE,
            length: 4096,
        }
        .encode(),
    );
    assert_eq!(r.resp(&blob), OK);
    assert_eq!(
        r.resp(&cmd(CommandType::UpdateCursor, &[0, 4, 4, 0, 5, 0, 0, 0])),
        OK
    );
    let c = cursor_of(&r);
    assert_eq!((c.resource_id, c.image), (5, None));
    assert_eq!(
        r.resp(&cmd(CommandType::UpdateCursor, &[0, 4, 4, 0, 0, 0, 0, 0])),
        OK
    );
    assert_eq!(cursor_of(&r).image, None);
}

#[test]
fn unref_of_a_shown_resource_disables_the_scanout_and_reset_clears_all() {
    let mut r = rig();
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceCreate2d, &[1, 2, 4, 4])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::SetScanout, &[0, 0, 4, 4, 0, 1])),
        OK
    );
    assert_eq!(r.resp(&cmd(CommandType::ResourceUnref, &[1, 0])), OK);
    assert_eq!(
        r.h.display()
            .get(ScanoutId(0))
            .expect("scanout")
            .resource_id,
        0
    );
    assert_eq!(r.resp(&ctx_create(2, 4)), OK);
    r.h.reset();
    assert_eq!(
        r.resp(&ctx_create(2, 4)),
        OK,
        "contexts are gone after reset"
    );
}

#[test]
fn well_formed_refusals_are_classified_refused() {
    let errors = [
        CommandError::Resource(42),
        CommandError::Context(3),
        CommandError::Parameter("capset index out of range"),
        CommandError::Unsupported("virgl 3D resources"),
        CommandError::Render(RenderError::NoContext(ContextId(9))),
        CommandError::Render(RenderError::Core(ContextError::Resource(
            ResourceError::Unknown(ResourceId(5)),
        ))),
    ];
    assert_eq!(errors.map(|e| e.severity()), [Severity::Refused; 6]);
}

#[test]
fn garbled_input_is_classified_malformed() {
    let errors = [
        CommandError::NoHeader(4),
        CommandError::Protocol(ProtocolError::UnknownCommand(0x1234)),
        CommandError::Protocol(ProtocolError::Short {
            cmd: CommandType::ResourceCreate2d,
            need: 40,
            have: 30,
        }),
        CommandError::Backing(BackingError::OutOfRange {
            index: 0,
            addr: 0xffff_0000,
            len: 64,
        }),
    ];
    assert_eq!(errors.map(|e| e.severity()), [Severity::Malformed; 4]);
}

#[test]
fn host_failures_and_caps_are_classified_host() {
    let errors = [
        CommandError::Map("frontend refused SHMEM_MAP (1)".to_owned()),
        CommandError::OutOfMemory("2D resources"),
        CommandError::Backing(BackingError::Read(0x1000)),
        CommandError::Render(RenderError::Core(ContextError::Resource(
            ResourceError::TooMany(8),
        ))),
    ];
    assert_eq!(errors.map(|e| e.severity()), [Severity::Host; 4]);
}

#[test]
fn refused_commands_leave_the_warning_budget_alone() {
    let mut r = rig();
    let flush_unknown = cmd(CommandType::ResourceFlush, &[0, 0, 1, 1, 42, 0]);
    for _ in 0..20 {
        assert_eq!(
            r.resp(&flush_unknown),
            RespType::ErrInvalidResourceId as u32
        );
    }
    assert_eq!(
        r.h.warn.check(),
        Some(0),
        "no warning was rate-limited away"
    );
}

#[test]
fn malformed_commands_spend_the_warning_budget() {
    let mut r = rig();
    for _ in 0..20 {
        assert_eq!(r.resp(&[1, 1, 0, 0]), RespType::ErrUnspec as u32);
    }
    assert_eq!(
        r.h.warn.check(),
        None,
        "10 warnings per 5 s, the rest suppressed"
    );
}

/// A RESOURCE_FLUSH re-reads only its rectangle (clipped to what the scanout shows):
/// pixels outside it keep what the previous flush showed.
#[test]
fn flush_rereads_only_its_rectangle_of_the_scanout() {
    let mut r = rig();
    let (w, h) = (8u32, 6u32);
    let old = bgra_image(w, h);
    upload_2d(&mut r, 1, 2, (w, h), &old);
    // The scanout shows the resource's (2, 1) 5x4 rectangle.
    assert_eq!(
        r.resp(&cmd(CommandType::SetScanout, &[2, 1, 5, 4, 0, 1])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceFlush, &[0, 0, w, h, 1, 0])),
        OK
    );
    // New pixels everywhere in the resource, then flushes of (3, 2) 2x1 and of
    // (0, 0) 3x2, which overlaps the shown rectangle only at (2, 1).
    let new = vec![0x11u8; old.len()];
    r.mem
        .write_slice(&new, GuestAddress(MEM_BASE))
        .expect("write");
    assert_eq!(
        r.resp(&cmd(
            CommandType::TransferToHost2d,
            &[0, 0, w, h, 0, 0, 1, 0]
        )),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceFlush, &[3, 2, 2, 1, 1, 0])),
        OK
    );
    assert_eq!(
        r.resp(&cmd(CommandType::ResourceFlush, &[0, 0, 3, 2, 1, 0])),
        OK
    );
    let frame = r.h.display().frame(ScanoutId(0)).expect("frame");
    assert_eq!((frame.width, frame.height), (5, 4));
    for fy in 0..4u32 {
        for fx in 0..5u32 {
            let (x, y) = (fx + 2, fy + 1);
            let fresh = (fy == 1 && (1..3).contains(&fx)) || (fx == 0 && fy == 0);
            let p = if fresh {
                [0x11, 0x11, 0x11, 0x11]
            } else {
                bgra_pattern(x, y)
            };
            let i = usize::try_from((fy * 5 + fx) * 4).expect("small");
            assert_eq!(
                frame.rgba[i..i + 4],
                [p[2], p[1], p[0], 255],
                "frame pixel ({fx}, {fy}), fresh: {fresh}"
            );
        }
    }
}
