//! Decode + dispatch throughput of the Venus wire format (issue 2, section 5).
//!
//! Streams are built with the driver-side encoders (`args.encode`), exactly as a guest
//! driver would put them on the wire, then decoded and dispatched by
//! `vulkan_proto::dispatch_command` to a handler that does nothing ([`NoOp`]), with object
//! ids translated through a hash table of live objects ([`IdTable`], the way a renderer
//! keeps them) or the identity map (`RawIds`, decoder cost only).
//!
//! * [`compute_stream`]: a compute app's command buffer: per dispatch, bind descriptor
//!   sets, push constants, dispatch and a pipeline barrier; a pipeline bind every 8
//!   dispatches and a buffer copy every 4.
//! * [`submit_stream`]: vkQueueSubmit and vkUpdateDescriptorSets, one submit per four
//!   descriptor updates.
//! * [`dispatch_only_stream`]: back-to-back vkCmdDispatch, the smallest realistic command
//!   (28 bytes), for the "small commands per second" target.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use ash::vk::{self, Handle};
use vulkan_proto::args::{
    CmdBindDescriptorSetsArgs, CmdBindPipelineArgs, CmdCopyBufferArgs, CmdDispatchArgs,
    CmdPipelineBarrierArgs, CmdPushConstantsArgs, QueueSubmitArgs, UpdateDescriptorSetsArgs,
};
use vulkan_proto::{
    dispatch_command, Arena, CommandFlags, Decoder, Dispatch, DispatchError, Encoder, HandleMap,
    ObjectId, RawIds,
};

/// Bytes of wire data per stream: about one Venus ring buffer (128 KiB).
pub const STREAM_BYTES: usize = 128 << 10;

/// A multiplicative hasher for u64 keys (ids are small counters; SipHash would dominate
/// the lookup for no benefit, and a renderer would not use it either).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Live objects by guest id: type and host handle, checked on every lookup.
#[derive(Debug, Default, Clone)]
pub struct IdTable {
    map: HashMap<u64, (vk::ObjectType, u64), BuildHasherDefault<IdHasher>>,
}

impl IdTable {
    /// Registers `id` as an object of type `ty`; its host handle is made up (pointer-like).
    pub fn insert(&mut self, ty: vk::ObjectType, id: u64) {
        self.map.insert(id, (ty, 0x5600_0000_0000 | (id << 6)));
    }
}

impl HandleMap for IdTable {
    fn lookup(&self, ty: vk::ObjectType, id: ObjectId) -> Option<u64> {
        match self.map.get(&id.0) {
            Some(&(t, host)) if t == ty => Some(host),
            _ => None,
        }
    }
}

/// A handler that accepts the benchmarked commands and does nothing else.
#[derive(Debug)]
pub struct NoOp<M> {
    ids: M,
    /// Commands handled (keeps the calls observable).
    pub handled: u64,
}

impl<M> NoOp<M> {
    /// A handler translating ids with `ids`.
    pub fn new(ids: M) -> Self {
        Self { ids, handled: 0 }
    }
}

// SAFETY: no handler touches its arguments, so every raw pointer in them still points into
// the command arena, where the decoder put it.
unsafe impl<M: HandleMap> Dispatch for NoOp<M> {
    fn handles(&self) -> &dyn HandleMap {
        &self.ids
    }

    fn write_reply(
        &mut self,
        _command: vulkan_proto::CommandType,
        _reply: &[u8],
    ) -> Result<(), DispatchError> {
        Ok(())
    }

    fn cmd_bind_pipeline(&mut self, _: &mut CmdBindPipelineArgs<'_>) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }

    fn cmd_bind_descriptor_sets(
        &mut self,
        _: &mut CmdBindDescriptorSetsArgs<'_>,
    ) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }

    fn cmd_push_constants(
        &mut self,
        _: &mut CmdPushConstantsArgs<'_>,
    ) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }

    fn cmd_dispatch(&mut self, _: &mut CmdDispatchArgs<'_>) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }

    fn cmd_pipeline_barrier(
        &mut self,
        _: &mut CmdPipelineBarrierArgs<'_>,
    ) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }

    fn cmd_copy_buffer(&mut self, _: &mut CmdCopyBufferArgs<'_>) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }

    fn queue_submit(&mut self, _: &mut QueueSubmitArgs<'_>) -> Result<vk::Result, DispatchError> {
        self.handled += 1;
        Ok(vk::Result::SUCCESS)
    }

    fn update_descriptor_sets(
        &mut self,
        _: &mut UpdateDescriptorSetsArgs<'_>,
    ) -> Result<(), DispatchError> {
        self.handled += 1;
        Ok(())
    }
}

/// The guest objects the streams refer to. Ids are small counters, as Mesa hands them out.
#[derive(Debug, Clone)]
pub struct Objects {
    /// The device.
    pub device: vk::Device,
    /// The queue.
    pub queue: vk::Queue,
    /// The command buffers.
    pub command_buffers: Vec<vk::CommandBuffer>,
    /// Compute pipelines.
    pub pipelines: Vec<vk::Pipeline>,
    /// The pipeline layout.
    pub layout: vk::PipelineLayout,
    /// Descriptor sets.
    pub sets: Vec<vk::DescriptorSet>,
    /// Buffers.
    pub buffers: Vec<vk::Buffer>,
    /// Semaphores.
    pub semaphores: Vec<vk::Semaphore>,
    /// The fence.
    pub fence: vk::Fence,
}

impl Objects {
    /// A set of objects, and the id table that knows them.
    pub fn new() -> (Self, IdTable) {
        let mut table = IdTable::default();
        let mut next = 0u64;
        let mut id = |table: &mut IdTable, ty: vk::ObjectType| {
            next += 1;
            table.insert(ty, next);
            next
        };
        let device = vk::Device::from_raw(id(&mut table, vk::ObjectType::DEVICE));
        let queue = vk::Queue::from_raw(id(&mut table, vk::ObjectType::QUEUE));
        let command_buffers = (0..4)
            .map(|_| vk::CommandBuffer::from_raw(id(&mut table, vk::ObjectType::COMMAND_BUFFER)))
            .collect();
        let pipelines = (0..4)
            .map(|_| vk::Pipeline::from_raw(id(&mut table, vk::ObjectType::PIPELINE)))
            .collect();
        let layout = vk::PipelineLayout::from_raw(id(&mut table, vk::ObjectType::PIPELINE_LAYOUT));
        let sets = (0..16)
            .map(|_| vk::DescriptorSet::from_raw(id(&mut table, vk::ObjectType::DESCRIPTOR_SET)))
            .collect();
        let buffers = (0..16)
            .map(|_| vk::Buffer::from_raw(id(&mut table, vk::ObjectType::BUFFER)))
            .collect();
        let semaphores = (0..4)
            .map(|_| vk::Semaphore::from_raw(id(&mut table, vk::ObjectType::SEMAPHORE)))
            .collect();
        let fence = vk::Fence::from_raw(id(&mut table, vk::ObjectType::FENCE));
        let objects = Self {
            device,
            queue,
            command_buffers,
            pipelines,
            layout,
            sets,
            buffers,
            semaphores,
            fence,
        };
        (objects, table)
    }
}

/// An encoded stream and what it holds.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Short name (CSV key).
    pub name: &'static str,
    /// The wire bytes.
    pub bytes: Vec<u8>,
    /// Commands in `bytes`.
    pub commands: u64,
}

/// Repeats `unit` (which appends some commands and returns how many) until the stream
/// holds about [`STREAM_BYTES`].
fn fill(name: &'static str, mut unit: impl FnMut(&mut Encoder, usize) -> u64) -> Stream {
    let mut e = Encoder::new();
    let mut commands = 0;
    let mut i = 0;
    while e.len() < STREAM_BYTES {
        commands += unit(&mut e, i);
        i += 1;
    }
    Stream {
        name,
        bytes: e.into_bytes(),
        commands,
    }
}

/// A compute app's command buffer (see the module docs for the proportions).
pub fn compute_stream(o: &Objects) -> Stream {
    fill("compute_cmdbuf", |e, i| compute_unit(e, o, i))
}

/// Dispatch number `i` of [`compute_stream`] with the commands around it; returns how many
/// commands it appended.
pub fn compute_unit(e: &mut Encoder, o: &Objects, i: usize) -> u64 {
    let cb = o.command_buffers[0];
    let push = [0x3f80_0000u32, 64, 64, 1].map(u32::to_le_bytes).concat();
    let mut n = 0;
    if i.is_multiple_of(8) {
        let a = CmdBindPipelineArgs {
            command_buffer: cb,
            pipeline_bind_point: vk::PipelineBindPoint::COMPUTE,
            pipeline: o.pipelines[(i / 8) % o.pipelines.len()],
            ..Default::default()
        };
        // SAFETY: no raw pointers are involved.
        unsafe { a.encode(e, CommandFlags::NONE) };
        n += 1;
    }
    let sets = [o.sets[(2 * i) % 16], o.sets[(2 * i + 1) % 16]];
    let offsets = [256u32];
    let a = CmdBindDescriptorSetsArgs {
        command_buffer: cb,
        pipeline_bind_point: vk::PipelineBindPoint::COMPUTE,
        layout: o.layout,
        first_set: 0,
        descriptor_set_count: 2,
        p_descriptor_sets: Some(&sets),
        dynamic_offset_count: 1,
        p_dynamic_offsets: Some(&offsets),
        ..Default::default()
    };
    // SAFETY: the slices are locals alive for the call.
    unsafe { a.encode(e, CommandFlags::NONE) };
    let a = CmdPushConstantsArgs {
        command_buffer: cb,
        layout: o.layout,
        stage_flags: vk::ShaderStageFlags::COMPUTE,
        offset: 0,
        size: 16,
        p_values: Some(&push),
        ..Default::default()
    };
    // SAFETY: as above.
    unsafe { a.encode(e, CommandFlags::NONE) };
    let a = CmdDispatchArgs {
        command_buffer: cb,
        group_count_x: 64,
        group_count_y: 64,
        group_count_z: 1,
        ..Default::default()
    };
    // SAFETY: no raw pointers are involved.
    unsafe { a.encode(e, CommandFlags::NONE) };
    let barrier = [vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::SHADER_WRITE)
        .dst_access_mask(vk::AccessFlags::SHADER_READ)];
    let a = CmdPipelineBarrierArgs {
        command_buffer: cb,
        src_stage_mask: vk::PipelineStageFlags::COMPUTE_SHADER,
        dst_stage_mask: vk::PipelineStageFlags::COMPUTE_SHADER,
        memory_barrier_count: 1,
        p_memory_barriers: Some(&barrier),
        ..Default::default()
    };
    // SAFETY: the barrier array is a local with a NULL pNext.
    unsafe { a.encode(e, CommandFlags::NONE) };
    n += 4;
    if i % 4 == 3 {
        let region = [vk::BufferCopy {
            src_offset: 0,
            dst_offset: 4096,
            size: 1 << 20,
        }];
        let a = CmdCopyBufferArgs {
            command_buffer: cb,
            src_buffer: o.buffers[i % 16],
            dst_buffer: o.buffers[(i + 1) % 16],
            region_count: 1,
            p_regions: Some(&region),
            ..Default::default()
        };
        // SAFETY: the region array is a local.
        unsafe { a.encode(e, CommandFlags::NONE) };
        n += 1;
    }
    n
}

/// vkQueueSubmit and vkUpdateDescriptorSets, one submit per four descriptor updates.
///
/// With `mesa_nulls`, the writes are encoded as Mesa sends them: `pImageInfo` and
/// `pTexelBufferView` NULL (array size 0) next to a non-zero `descriptorCount` (Venus
/// clears the pointers a descriptor type ignores). Without it, those arrays are filled with
/// NULL-handle elements, a workaround for decoders that reject the NULL form.
pub fn submit_stream(o: &Objects, mesa_nulls: bool) -> Stream {
    let name = if mesa_nulls {
        "submit_update_mix"
    } else {
        "submit_update_mix_padded"
    };
    let images = [vk::DescriptorImageInfo::default()];
    let views = [vk::BufferView::null()];
    fill(name, |e, i| {
        let set = o.sets[i % 16];
        let infos = [
            vk::DescriptorBufferInfo {
                buffer: o.buffers[i % 16],
                offset: 0,
                range: 65536,
            },
            vk::DescriptorBufferInfo {
                buffer: o.buffers[(i + 3) % 16],
                offset: 256,
                range: vk::WHOLE_SIZE,
            },
        ];
        let mut writes = [
            vk::WriteDescriptorSet::default()
                .dst_set(set)
                .dst_binding(0)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&infos[..1]),
            vk::WriteDescriptorSet::default()
                .dst_set(set)
                .dst_binding(1)
                .descriptor_type(vk::DescriptorType::UNIFORM_BUFFER)
                .buffer_info(&infos[1..]),
        ];
        if !mesa_nulls {
            for w in &mut writes {
                w.p_image_info = images.as_ptr();
                w.p_texel_buffer_view = views.as_ptr();
            }
        }
        let a = UpdateDescriptorSetsArgs {
            device: o.device,
            descriptor_write_count: 2,
            p_descriptor_writes: Some(&writes),
            ..Default::default()
        };
        // SAFETY: every pointer in `writes` refers to locals alive for the call.
        unsafe { a.encode(e, CommandFlags::NONE) };
        if i % 4 != 3 {
            return 1;
        }
        let wait = [o.semaphores[i % 4]];
        let stages = [vk::PipelineStageFlags::COMPUTE_SHADER];
        let signal = [o.semaphores[(i + 1) % 4]];
        let cbs = [o.command_buffers[i % 4]];
        let submits = [vk::SubmitInfo::default()
            .wait_semaphores(&wait)
            .wait_dst_stage_mask(&stages)
            .command_buffers(&cbs)
            .signal_semaphores(&signal)];
        let a = QueueSubmitArgs {
            queue: o.queue,
            submit_count: 1,
            p_submits: Some(&submits),
            fence: o.fence,
            ..Default::default()
        };
        // SAFETY: every pointer in `submits` refers to locals alive for the call.
        unsafe { a.encode(e, CommandFlags::NONE) };
        2
    })
}

/// Back-to-back vkCmdDispatch.
pub fn dispatch_only_stream(o: &Objects) -> Stream {
    let cb = o.command_buffers[0];
    fill("cmd_dispatch_only", |e, i| {
        let a = CmdDispatchArgs {
            command_buffer: cb,
            group_count_x: u32::try_from(i % 256).unwrap_or(0) + 1,
            group_count_y: 1,
            group_count_z: 1,
            ..Default::default()
        };
        // SAFETY: no raw pointers are involved.
        unsafe { a.encode(e, CommandFlags::NONE) };
        1
    })
}

/// Whether `bytes` decodes and dispatches completely with `table`.
pub fn decodes(bytes: &[u8], table: &IdTable) -> bool {
    let mut h = NoOp::new(table.clone());
    let (mut arena, mut reply) = (Arena::default(), Encoder::new());
    let mut d = Decoder::new(bytes);
    while d.remaining() > 0 {
        if dispatch_command(&mut h, &mut d, &mut arena, &mut reply).is_err() {
            return false;
        }
    }
    true
}

/// All benchmarked streams and the id table that knows their objects. The submit mix is
/// encoded as Mesa sends it if the decoder accepts that, else in the padded form (see
/// [`submit_stream`]; its name then ends in `_padded`).
pub fn streams() -> (Vec<Stream>, IdTable) {
    let (o, table) = Objects::new();
    let mesa = submit_stream(&o, true);
    let submit = if decodes(&mesa.bytes, &table) {
        mesa
    } else {
        submit_stream(&o, false)
    };
    (
        vec![compute_stream(&o), submit, dispatch_only_stream(&o)],
        table,
    )
}

/// Decodes and dispatches the whole of `bytes`; returns the number of commands.
///
/// # Panics
///
/// If the stream does not decode (the benchmark streams always do).
pub fn decode_all<H: Dispatch>(
    h: &mut H,
    bytes: &[u8],
    arena: &mut Arena,
    reply: &mut Encoder,
) -> u64 {
    let mut d = Decoder::new(bytes);
    let mut n = 0;
    while d.remaining() > 0 {
        if let Err(e) = dispatch_command(h, &mut d, arena, reply) {
            panic!(
                "benchmark stream failed to decode at byte {}: {e:?}",
                d.position()
            );
        }
        n += 1;
    }
    n
}

/// How object ids are translated during a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// [`IdTable`]: hash lookup with a type check, as a renderer does.
    Table,
    /// `RawIds`: the id is the handle (decoder cost alone).
    Identity,
}

impl Ids {
    /// CSV name.
    pub fn name(self) -> &'static str {
        match self {
            Ids::Table => "hash_table",
            Ids::Identity => "identity",
        }
    }
}

/// One throughput measurement.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Stream name.
    pub stream: &'static str,
    /// Id translation used.
    pub ids: Ids,
    /// Stream size in bytes.
    pub bytes: usize,
    /// Commands in the stream.
    pub commands: u64,
    /// Median time for one pass over the stream.
    pub pass: Duration,
}

impl Measurement {
    /// Seconds per pass.
    fn secs(&self) -> f64 {
        self.pass.as_secs_f64()
    }

    /// Wire megabytes (10^6 bytes) decoded per second.
    #[allow(
        clippy::cast_precision_loss,
        reason = "stream sizes are far below 2^53"
    )]
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs() / 1e6
    }

    /// Commands decoded and dispatched per second.
    #[allow(
        clippy::cast_precision_loss,
        reason = "command counts are far below 2^53"
    )]
    pub fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.secs()
    }

    /// Nanoseconds per command.
    pub fn ns_per_command(&self) -> f64 {
        1e9 / self.commands_per_s()
    }

    /// Average command size on the wire.
    #[allow(
        clippy::cast_precision_loss,
        reason = "stream sizes are far below 2^53"
    )]
    pub fn bytes_per_command(&self) -> f64 {
        self.bytes as f64 / self.commands as f64
    }
}

/// Times `stream` with `ids`: `trials` trials of at least `trial` each; the median pass time.
pub fn measure(
    stream: &Stream,
    table: &IdTable,
    ids: Ids,
    trials: usize,
    trial: Duration,
) -> Measurement {
    let mut arena = Arena::default();
    let mut reply = Encoder::new();
    let mut times = Vec::with_capacity(trials);
    let mut run = |h: &mut dyn FnMut() -> u64| {
        for _ in 0..3 {
            h();
        }
        for _ in 0..trials.max(1) {
            let start = Instant::now();
            let mut passes = 0u32;
            while start.elapsed() < trial {
                let n = h();
                assert_eq!(n, stream.commands, "{}: command count", stream.name);
                passes += 1;
            }
            times.push(start.elapsed() / passes);
        }
    };
    match ids {
        Ids::Table => {
            let mut h = NoOp::new(table.clone());
            run(&mut || {
                decode_all(
                    &mut h,
                    std::hint::black_box(&stream.bytes),
                    &mut arena,
                    &mut reply,
                )
            });
        }
        Ids::Identity => {
            let mut h = NoOp::new(RawIds);
            run(&mut || {
                decode_all(
                    &mut h,
                    std::hint::black_box(&stream.bytes),
                    &mut arena,
                    &mut reply,
                )
            });
        }
    }
    times.sort();
    Measurement {
        stream: stream.name,
        ids,
        bytes: stream.bytes.len(),
        commands: stream.commands,
        pass: times[times.len() / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_decode_completely_with_both_id_maps() {
        let (streams, table) = streams();
        let mut arena = Arena::default();
        let mut reply = Encoder::new();
        for s in &streams {
            assert!(s.bytes.len() >= STREAM_BYTES, "{}", s.name);
            let mut h = NoOp::new(table.clone());
            assert_eq!(
                decode_all(&mut h, &s.bytes, &mut arena, &mut reply),
                s.commands
            );
            assert_eq!(h.handled, s.commands, "{}", s.name);
            let mut h = NoOp::new(RawIds);
            assert_eq!(
                decode_all(&mut h, &s.bytes, &mut arena, &mut reply),
                s.commands
            );
        }
    }

    #[test]
    fn compute_stream_has_the_documented_proportions() {
        let (o, table) = Objects::new();
        let mut e = Encoder::new();
        // 8 dispatches: 1 bind pipeline, 8 x (sets, push, dispatch, barrier), 2 copies.
        let n: u64 = (0..8).map(|i| compute_unit(&mut e, &o, i)).sum();
        assert_eq!(n, 35);
        let mut h = NoOp::new(table);
        let (mut arena, mut reply) = (Arena::default(), Encoder::new());
        assert_eq!(decode_all(&mut h, e.as_bytes(), &mut arena, &mut reply), 35);
        // vkCmdDispatch is 28 bytes: header, command buffer id, three counts.
        assert_eq!(dispatch_only_stream(&o).bytes.len() % 28, 0);
    }

    #[test]
    fn id_table_checks_types() {
        let (o, table) = Objects::new();
        let id = ObjectId(o.fence.as_raw());
        assert!(table.lookup(vk::ObjectType::FENCE, id).is_some());
        assert_eq!(table.lookup(vk::ObjectType::BUFFER, id), None);
        assert_eq!(table.lookup(vk::ObjectType::FENCE, ObjectId(9999)), None);
    }
}
