//! Structured executor fuzzing, shared by the cargo-fuzz target
//! `device/fuzz/fuzz_targets/exec_sequences.rs` and the replay test
//! `device/tests/exec_fuzz_replay.rs`.
//!
//! The input decodes (with `arbitrary`) into a list of [`Step`]s: high-level Vulkan
//! operations (allocate, create, bind, map, record, submit, wait, destroy, …) on one of
//! two contexts of one VM. Object ids come from a small pool of slots, picked through
//! [`Ref`]s that mostly name a live object of the right type in the same context, and
//! sometimes a destroyed one, one of the other context (its ids are the same numbers,
//! so the other context's table must refuse them), an arbitrary slot or NULL. Each step
//! is encoded as a valid Venus command stream with the generated `vulkan_proto`
//! encoders and run on the real [`VenusExecutor`] through [`Context::submit`] on
//! lavapipe. A step that fails its context (a protocol error: the expected answer to
//! most invalid use) replaces that context with a fresh one; the daemon process must
//! survive everything.
//!
//! Kept out of the generator on purpose (guest-legal behaviour that only stalls the
//! fuzzer, see `device/fuzz/README.md`): waits on semaphores nobody signals (queues
//! that never drain), `vkCmdWaitEvents`, huge dispatches, and allocations above the
//! VM quota set here.

use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use ash::vk::{self, Handle};
use vgpu_device::ids::{BlobId, ContextId, ResourceId};
use vgpu_device::renderer::venus::{VenusFactory, VenusLimits};
use vgpu_device::renderer::{Context, ContextConfig, ExecutorFactory};
use vgpu_device::sys::SharedMemory;
use vulkan_proto::args::*;
use vulkan_proto::cs::Encoder;
use vulkan_proto::CommandFlags;

/// The compute shader every pipeline uses (`tests/shaders/add_const.comp`: one
/// storage buffer at set 0 binding 0, 12 bytes of push constants).
pub const SHADER: &[u8] = include_bytes!("../../../tests/shaders/add_const.spv");

/// Steps decoded from one input at most.
pub const MAX_STEPS: usize = 48;
/// Object slots per context (ids `SLOT_BASE..SLOT_BASE + SLOTS`).
pub const SLOTS: usize = 24;
const SLOT_BASE: u64 = 0x1000;
const INSTANCE: u64 = 0x10;
const PHYSICAL: u64 = 0x11;
const DEVICE: u64 = 0x12;
const QUEUE: u64 = 0x13;
/// The VM quota: allocations above it are answered `VK_ERROR_OUT_OF_DEVICE_MEMORY`.
const MEMORY_MIB: u64 = 96;
/// Longest wait a step asks for (ns).
const MAX_WAIT_NS: u64 = 20_000_000;

/// Points the Vulkan loader at lavapipe unless the caller chose a driver, and keeps the
/// loader and driver loaded for the life of the process: otherwise every iteration's
/// last context unloads them and the next one pays lavapipe's (LLVM's) start-up again.
pub fn use_lavapipe() {
    if std::env::var_os("VK_DRIVER_FILES").is_none() {
        std::env::set_var("VK_DRIVER_FILES", "/usr/share/vulkan/icd.d/lvp_icd.json");
    }
    vgpu_device::renderer::venus::preload_host_driver().expect("the host Vulkan loader loads");
}

/// What kind of object a slot holds (in the generator's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Buffer,
    Shader,
    SetLayout,
    PipelineLayout,
    Pipeline,
    DescriptorPool,
    DescriptorSet,
    CommandPool,
    CommandBuffer,
    Fence,
    Semaphore,
    TimelineSemaphore,
    Event,
}

/// A reference to an object: mostly a live one of the wanted kind in this context.
#[derive(Clone, Copy, Debug)]
pub struct Ref(u8);

impl<'a> Arbitrary<'a> for Ref {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(Self(u.arbitrary()?))
    }
}

/// A wait-semaphore reference: a binary semaphore with a signal pending, NULL, or an
/// id that is no live semaphore here (never one nobody signals: that blocks a queue).
#[derive(Clone, Copy, Debug)]
pub struct WaitRef(u8);

impl<'a> Arbitrary<'a> for WaitRef {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        Ok(Self(u.arbitrary()?))
    }
}

/// A size: mostly small or page-sized, sometimes 0, huge or odd.
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl<'a> Arbitrary<'a> for Size {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let v = match u.int_in_range(0u8..=15)? {
            0 => 0,
            1 => 4,
            2 => 64,
            3 => 256,
            4 | 5 => 4096,
            6 => 65536,
            7 => 1 << 20,
            8 => 16 << 20,
            9 => vk::WHOLE_SIZE,
            10 => 1 << 40,
            11 => u64::from(u.arbitrary::<u16>()?),
            12 => u64::from(u.arbitrary::<u32>()?),
            13 => 3,
            14 => 4095,
            _ => 8192,
        };
        Ok(Self(v))
    }
}

/// An offset: mostly 0 or aligned, sometimes unaligned or past the end.
#[derive(Clone, Copy, Debug)]
pub struct Offset(pub u64);

impl<'a> Arbitrary<'a> for Offset {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let v = match u.int_in_range(0u8..=9)? {
            0..=3 => 0,
            4 => 256,
            5 => 4096,
            6 => 1,
            7 => u64::from(u.arbitrary::<u16>()?) * 4,
            8 => u64::MAX - 3,
            _ => u64::from(u.arbitrary::<u32>()?),
        };
        Ok(Self(v))
    }
}

/// `VkApplicationInfo::apiVersion` of a (re)created instance.
#[derive(Clone, Copy, Debug)]
pub struct ApiVersion(pub u32);

impl<'a> Arbitrary<'a> for ApiVersion {
    fn arbitrary(u: &mut Unstructured<'a>) -> ArbResult<Self> {
        let v = match u.int_in_range(0u8..=7)? {
            0 => 0,
            1 => vk::API_VERSION_1_0,
            2 => vk::API_VERSION_1_1,
            3 => vk::API_VERSION_1_2,
            4 | 5 => vk::API_VERSION_1_3,
            6 => vk::make_api_version(0, 0, u.int_in_range(0..=9)?, 0),
            _ => u.arbitrary()?,
        };
        Ok(Self(v))
    }
}

/// One command recorded into a command buffer.
#[derive(Arbitrary, Clone, Debug)]
pub enum Cmd {
    Fill {
        buf: Ref,
        offset: Offset,
        size: Size,
        data: u32,
    },
    Update {
        buf: Ref,
        offset: Offset,
        words: u8,
    },
    Copy {
        src: Ref,
        dst: Ref,
        src_offset: Offset,
        dst_offset: Offset,
        size: Size,
    },
    BindPipeline {
        pipeline: Ref,
    },
    BindSet {
        layout: Ref,
        set: Ref,
    },
    Push {
        layout: Ref,
        mul: u32,
        add: u32,
        n: u16,
    },
    Dispatch {
        x: u8,
        y: u8,
        z: u8,
    },
    Barrier {
        buf: Option<Ref>,
    },
}

/// One high-level operation.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    AllocateMemory {
        slot: u8,
        size: Size,
        type_index: u8,
    },
    FreeMemory {
        mem: Ref,
    },
    CreateBuffer {
        slot: u8,
        size: Size,
        usage: u8,
    },
    BindBufferMemory {
        buf: Ref,
        mem: Ref,
        offset: Offset,
    },
    /// Export the memory as a blob, map it and write `fill` over `len` bytes.
    MapMemory {
        mem: Ref,
        len: Size,
        fill: u8,
    },
    UnmapMemory {
        mem: Ref,
    },
    CreateShaderModule {
        slot: u8,
    },
    CreateSetLayout {
        slot: u8,
        count: u8,
    },
    CreatePipelineLayout {
        slot: u8,
        set_layout: Ref,
    },
    CreatePipeline {
        slot: u8,
        shader: Ref,
        layout: Ref,
    },
    CreateDescriptorPool {
        slot: u8,
        max_sets: u8,
    },
    AllocateDescriptorSet {
        slot: u8,
        pool: Ref,
        layout: Ref,
    },
    UpdateDescriptorSet {
        set: Ref,
        buf: Ref,
        offset: Offset,
        range: Size,
    },
    FreeDescriptorSet {
        pool: Ref,
        set: Ref,
    },
    ResetDescriptorPool {
        pool: Ref,
    },
    CreateCommandPool {
        slot: u8,
    },
    AllocateCommandBuffer {
        slot: u8,
        pool: Ref,
    },
    Record {
        cb: Ref,
        cmds: Vec<Cmd>,
    },
    ResetCommandPool {
        pool: Ref,
    },
    FreeCommandBuffer {
        pool: Ref,
        cb: Ref,
    },
    Submit {
        cbs: Vec<Ref>,
        wait: Vec<WaitRef>,
        signal: Vec<Ref>,
        fence: Option<Ref>,
        v2: bool,
    },
    CreateFence {
        slot: u8,
        signaled: bool,
    },
    WaitForFences {
        fences: Vec<Ref>,
        all: bool,
        timeout_ms: u8,
    },
    ResetFences {
        fences: Vec<Ref>,
    },
    GetFenceStatus {
        fence: Ref,
    },
    CreateSemaphore {
        slot: u8,
        timeline: bool,
    },
    SignalSemaphore {
        sem: Ref,
        value: u8,
    },
    WaitSemaphores {
        sems: Vec<Ref>,
        value: u8,
    },
    GetSemaphoreCounter {
        sem: Ref,
    },
    CreateEvent {
        slot: u8,
    },
    SetEvent {
        event: Ref,
    },
    ResetEvent {
        event: Ref,
    },
    GetEventStatus {
        event: Ref,
    },
    Destroy {
        what: Ref,
        kind: u8,
    },
    QueueWaitIdle,
    DeviceWaitIdle,
    DestroyDevice,
    DestroyInstance,
    /// Drop this context and start a fresh one whose instance asks for `api`.
    Reconnect {
        api: ApiVersion,
    },
}

/// An operation on context 0 or 1.
#[derive(Arbitrary, Clone, Debug)]
pub struct Step {
    pub second: bool,
    pub op: Op,
}

/// Decodes up to [`MAX_STEPS`] steps (a trailing partial step is dropped).
pub fn decode(data: &[u8]) -> Vec<Step> {
    let mut u = Unstructured::new(data);
    let mut steps = Vec::new();
    while !u.is_empty() && steps.len() < MAX_STEPS {
        match Step::arbitrary(&mut u) {
            Ok(s) => steps.push(s),
            Err(_) => break,
        }
    }
    steps
}

/// The generator's view of one context: what each slot holds.
#[derive(Clone, Debug, Default)]
struct Model {
    slots: [Option<Kind>; SLOTS],
    /// Binary semaphores with a signal pending.
    signaled: [bool; SLOTS],
    device: bool,
    instance: bool,
    /// Blobs exported from memory: (resource, memory slot).
    blobs: Vec<(u32, usize)>,
}

fn slot_id(slot: usize) -> u64 {
    SLOT_BASE + slot as u64
}

impl Model {
    fn live(&self, kind: Kind) -> Vec<usize> {
        (0..SLOTS)
            .filter(|&s| self.slots[s] == Some(kind))
            .collect()
    }

    /// The guest id `r` names for an object of `kind`.
    fn pick(&self, other: &Model, r: Ref, kind: Kind) -> u64 {
        let v = usize::from(r.0);
        let mine = self.live(kind);
        match r.0 {
            0..=199 if !mine.is_empty() => slot_id(mine[v % mine.len()]),
            200..=219 => {
                let theirs = other.live(kind);
                if theirs.is_empty() {
                    slot_id(v % SLOTS)
                } else {
                    slot_id(theirs[v % theirs.len()])
                }
            }
            248..=255 => 0,
            _ => slot_id(v % SLOTS),
        }
    }

    fn pick_wait(&self, w: WaitRef) -> Option<u64> {
        let pending: Vec<usize> = (0..SLOTS)
            .filter(|&s| self.signaled[s] && self.slots[s] == Some(Kind::Semaphore))
            .collect();
        match w.0 {
            0..=199 if !pending.is_empty() => {
                Some(slot_id(pending[usize::from(w.0) % pending.len()]))
            }
            0..=199 => None,
            200..=229 => Some(0),
            // No live object of this context: refused by the decoder.
            _ => Some(0xdead_0000 + u64::from(w.0)),
        }
    }

    fn slot_of(id: u64) -> Option<usize> {
        id.checked_sub(SLOT_BASE)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s < SLOTS)
    }

    fn clear(&mut self, id: u64) {
        if let Some(s) = Self::slot_of(id) {
            self.slots[s] = None;
            self.signaled[s] = false;
        }
    }

    fn create(&mut self, slot: u8, kind: Kind) -> Option<u64> {
        let s = usize::from(slot) % SLOTS;
        if self.slots[s].is_some() {
            // Reusing a live id: refused (DuplicateId), the context fails.
            return Some(slot_id(s));
        }
        self.slots[s] = Some(kind);
        Some(slot_id(s))
    }
}

/// Encodes one generated command with no reply requested.
macro_rules! emit {
    ($e:expr, $args:expr) => {{
        let args = $args;
        // SAFETY: every pointer in the arguments refers to locals of the enclosing
        // function that live across this encode, and each count matches its array.
        unsafe { args.encode($e, CommandFlags::NONE) }
    }};
}

fn h<T: Handle>(raw: u64) -> T {
    T::from_raw(raw)
}

fn device() -> vk::Device {
    h(DEVICE)
}

/// Instance (asking for `api`), the first physical device, a device with one queue
/// of family 0 and timeline semaphores, and that queue through vkGetDeviceQueue2.
fn prologue(e: &mut Encoder, api: u32) {
    let app = vk::ApplicationInfo::default().api_version(api);
    let ici = vk::InstanceCreateInfo::default().application_info(&app);
    let mut instance = h::<vk::Instance>(INSTANCE);
    let mut count = 1u32;
    let mut physical = [h::<vk::PhysicalDevice>(PHYSICAL)];
    let priorities = [1.0f32];
    let qci = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(0)
        .queue_priorities(&priorities)];
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default().timeline_semaphore(true);
    let dci = vk::DeviceCreateInfo::default()
        .queue_create_infos(&qci)
        .push_next(&mut f12);
    let mut dev = device();
    let qi = vk::DeviceQueueInfo2::default().queue_family_index(0);
    let mut queue = h::<vk::Queue>(QUEUE);
    emit!(
        e,
        CreateInstanceArgs {
            p_create_info: Some(&ici),
            p_instance: Some(&mut instance),
            _marker: Default::default(),
        }
    );
    emit!(
        e,
        EnumeratePhysicalDevicesArgs {
            instance,
            p_physical_device_count: Some(&mut count),
            p_physical_devices: Some(&mut physical),
            _marker: Default::default(),
        }
    );
    emit!(
        e,
        CreateDeviceArgs {
            physical_device: physical[0],
            p_create_info: Some(&dci),
            p_device: Some(&mut dev),
            _marker: Default::default(),
        }
    );
    emit!(
        e,
        GetDeviceQueue2Args {
            device: dev,
            p_queue_info: Some(&qi),
            p_queue: Some(&mut queue),
            _marker: Default::default(),
        }
    );
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Steps decoded and run.
    pub steps: usize,
    /// Steps that failed their context (a protocol error; the context was replaced).
    pub failed: usize,
    /// Contexts created (two, plus one per failure or reconnect).
    pub contexts: usize,
}

struct Slot {
    ctx: Context,
    model: Model,
    next_resource: u32,
}

/// Two contexts of one VM, replaced when they fail.
pub struct Runner {
    factory: VenusFactory,
    slots: [Option<Slot>; 2],
    next_ctx: u32,
    report: Report,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    pub fn new() -> Self {
        let limits = VenusLimits {
            memory_mib: Some(MEMORY_MIB),
            ..VenusLimits::default()
        };
        Self {
            factory: VenusFactory::per_vm("fuzz".to_owned(), limits),
            slots: [None, None],
            next_ctx: 1,
            report: Report::default(),
        }
    }

    fn open(&mut self, api: u32) -> Slot {
        let id = ContextId(self.next_ctx);
        self.next_ctx += 1;
        self.report.contexts += 1;
        let exec = self
            .factory
            .create(id)
            .expect("the Venus factory never fails");
        let mut ctx = Context::new(id, ContextConfig::default(), exec);
        ctx.set_fatal_hook(Box::new(|_, _| {}));
        let mut e = Encoder::new();
        prologue(&mut e, api);
        let ok = ctx.submit(&e.into_bytes()).is_ok();
        Slot {
            ctx,
            model: Model {
                device: ok,
                instance: ok,
                ..Model::default()
            },
            next_resource: 1,
        }
    }

    /// Runs every step of `data` on two fresh contexts, dropped at the end.
    pub fn run(&mut self, data: &[u8]) -> Report {
        let steps = decode(data);
        self.report = Report::default();
        self.slots = [
            Some(self.open(vk::API_VERSION_1_3)),
            Some(self.open(vk::API_VERSION_1_3)),
        ];
        for step in steps {
            self.step(&step);
        }
        self.slots = [None, None];
        self.report.clone()
    }

    fn step(&mut self, step: &Step) {
        self.report.steps += 1;
        let i = usize::from(step.second);
        if let Op::Reconnect { api } = step.op {
            self.slots[i] = None;
            self.slots[i] = Some(self.open(api.0));
            return;
        }
        let [a, b] = &mut self.slots;
        let (me, other) = if i == 0 { (a, b) } else { (b, a) };
        let (Some(me), Some(other)) = (me.as_mut(), other.as_ref()) else {
            return;
        };
        let ok = run_op(me, &other.model, &step.op);
        if !ok {
            self.report.failed += 1;
            self.slots[i] = None;
            self.slots[i] = Some(self.open(vk::API_VERSION_1_3));
        }
    }
}

/// Encodes and submits `op` on `me`; false if the context failed.
fn run_op(me: &mut Slot, other: &Model, op: &Op) -> bool {
    let mut e = Encoder::new();
    match op {
        Op::MapMemory { mem, len, fill } => return map_memory(me, other, *mem, *len, *fill),
        Op::UnmapMemory { mem } => {
            let id = me.model.pick(other, *mem, Kind::Memory);
            if let Some(s) = Model::slot_of(id) {
                for (res, _) in me.model.blobs.iter().filter(|(_, m)| *m == s) {
                    let _ = me.ctx.destroy_resource(ResourceId(*res));
                }
                me.model.blobs.retain(|(_, m)| *m != s);
            }
            emit!(
                &mut e,
                UnmapMemoryArgs {
                    device: device(),
                    memory: h(id),
                    _marker: Default::default(),
                }
            );
        }
        _ => encode_op(&mut e, &mut me.model, other, op),
    }
    me.ctx.submit(&e.into_bytes()).is_ok()
}

/// Exports memory as a blob resource, maps its fd and writes to it (what a guest does
/// with a mapping of host-visible memory).
fn map_memory(me: &mut Slot, other: &Model, mem: Ref, len: Size, fill: u8) -> bool {
    let id = me.model.pick(other, mem, Kind::Memory);
    let res = ResourceId(me.next_resource);
    me.next_resource += 1;
    let size = len.0.clamp(1, 1 << 24);
    // A refused export is an error for the front door, not a context failure.
    let Ok(r) = me.ctx.create_blob(res, BlobId(id), size) else {
        return true;
    };
    if let Some(s) = Model::slot_of(id) {
        me.model.blobs.push((res.0, s));
    }
    if let Ok(map) = SharedMemory::map(r.fd(), r.size()) {
        let n = usize::try_from(r.size().min(64 << 10)).unwrap_or(0);
        let _ = map.write(0, &vec![fill; n]);
    }
    !me.ctx.is_fatal()
}

fn kind_of(k: u8) -> Kind {
    const ALL: [Kind; 14] = [
        Kind::Memory,
        Kind::Buffer,
        Kind::Shader,
        Kind::SetLayout,
        Kind::PipelineLayout,
        Kind::Pipeline,
        Kind::DescriptorPool,
        Kind::DescriptorSet,
        Kind::CommandPool,
        Kind::CommandBuffer,
        Kind::Fence,
        Kind::Semaphore,
        Kind::TimelineSemaphore,
        Kind::Event,
    ];
    ALL[usize::from(k) % ALL.len()]
}

#[allow(clippy::too_many_lines)] // one arm per operation
fn encode_op(e: &mut Encoder, m: &mut Model, other: &Model, op: &Op) {
    let dev = device();
    let md = Default::default;
    match op {
        Op::AllocateMemory {
            slot,
            size,
            type_index,
        } => {
            let Some(id) = m.create(*slot, Kind::Memory) else {
                return;
            };
            let info = vk::MemoryAllocateInfo::default()
                .allocation_size(size.0)
                .memory_type_index(u32::from(*type_index % 4));
            let mut mem = h::<vk::DeviceMemory>(id);
            emit!(
                e,
                AllocateMemoryArgs {
                    device: dev,
                    p_allocate_info: Some(&info),
                    p_memory: Some(&mut mem),
                    _marker: md(),
                }
            );
        }
        Op::FreeMemory { mem } => {
            let id = m.pick(other, *mem, Kind::Memory);
            m.clear(id);
            emit!(
                e,
                FreeMemoryArgs {
                    device: dev,
                    memory: h(id),
                    _marker: md()
                }
            );
        }
        Op::CreateBuffer { slot, size, usage } => {
            let Some(id) = m.create(*slot, Kind::Buffer) else {
                return;
            };
            let usage = match usage % 4 {
                0 => vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
                1 => vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_DST,
                2 => {
                    vk::BufferUsageFlags::STORAGE_BUFFER
                        | vk::BufferUsageFlags::TRANSFER_SRC
                        | vk::BufferUsageFlags::TRANSFER_DST
                }
                _ => vk::BufferUsageFlags::from_raw(u32::from(*usage)),
            };
            let info = vk::BufferCreateInfo::default().size(size.0).usage(usage);
            let mut buf = h::<vk::Buffer>(id);
            emit!(
                e,
                CreateBufferArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_buffer: Some(&mut buf),
                    _marker: md(),
                }
            );
        }
        Op::BindBufferMemory { buf, mem, offset } => {
            emit!(
                e,
                BindBufferMemoryArgs {
                    device: dev,
                    buffer: h(m.pick(other, *buf, Kind::Buffer)),
                    memory: h(m.pick(other, *mem, Kind::Memory)),
                    memory_offset: offset.0,
                    _marker: md(),
                }
            );
        }
        Op::MapMemory { .. } | Op::UnmapMemory { .. } | Op::Reconnect { .. } => {}
        Op::CreateShaderModule { slot } => {
            let Some(id) = m.create(*slot, Kind::Shader) else {
                return;
            };
            let words: Vec<u32> = SHADER
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let info = vk::ShaderModuleCreateInfo::default().code(&words);
            let mut module = h::<vk::ShaderModule>(id);
            emit!(
                e,
                CreateShaderModuleArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_shader_module: Some(&mut module),
                    _marker: md(),
                }
            );
        }
        Op::CreateSetLayout { slot, count } => {
            let Some(id) = m.create(*slot, Kind::SetLayout) else {
                return;
            };
            let bindings = [vk::DescriptorSetLayoutBinding::default()
                .binding(0)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(u32::from(count % 3).max(1))
                .stage_flags(vk::ShaderStageFlags::COMPUTE)];
            let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
            let mut layout = h::<vk::DescriptorSetLayout>(id);
            emit!(
                e,
                CreateDescriptorSetLayoutArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_set_layout: Some(&mut layout),
                    _marker: md(),
                }
            );
        }
        Op::CreatePipelineLayout { slot, set_layout } => {
            let set = h::<vk::DescriptorSetLayout>(m.pick(other, *set_layout, Kind::SetLayout));
            let Some(id) = m.create(*slot, Kind::PipelineLayout) else {
                return;
            };
            let sets = [set];
            let ranges = [vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .size(12)];
            let info = vk::PipelineLayoutCreateInfo::default()
                .set_layouts(&sets)
                .push_constant_ranges(&ranges);
            let mut layout = h::<vk::PipelineLayout>(id);
            emit!(
                e,
                CreatePipelineLayoutArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_pipeline_layout: Some(&mut layout),
                    _marker: md(),
                }
            );
        }
        Op::CreatePipeline {
            slot,
            shader,
            layout,
        } => {
            let module = h::<vk::ShaderModule>(m.pick(other, *shader, Kind::Shader));
            let layout = h::<vk::PipelineLayout>(m.pick(other, *layout, Kind::PipelineLayout));
            let Some(id) = m.create(*slot, Kind::Pipeline) else {
                return;
            };
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let infos = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(layout)];
            let mut pipelines = [h::<vk::Pipeline>(id)];
            emit!(
                e,
                CreateComputePipelinesArgs {
                    device: dev,
                    pipeline_cache: vk::PipelineCache::null(),
                    create_info_count: 1,
                    p_create_infos: Some(&infos),
                    p_pipelines: Some(&mut pipelines),
                    _marker: md(),
                }
            );
        }
        Op::CreateDescriptorPool { slot, max_sets } => {
            let Some(id) = m.create(*slot, Kind::DescriptorPool) else {
                return;
            };
            let sizes = [vk::DescriptorPoolSize::default()
                .ty(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(8)];
            let info = vk::DescriptorPoolCreateInfo::default()
                .flags(vk::DescriptorPoolCreateFlags::FREE_DESCRIPTOR_SET)
                .max_sets(u32::from(max_sets % 5).max(1))
                .pool_sizes(&sizes);
            let mut pool = h::<vk::DescriptorPool>(id);
            emit!(
                e,
                CreateDescriptorPoolArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_descriptor_pool: Some(&mut pool),
                    _marker: md(),
                }
            );
        }
        Op::AllocateDescriptorSet { slot, pool, layout } => {
            let pool = h::<vk::DescriptorPool>(m.pick(other, *pool, Kind::DescriptorPool));
            let layouts = [h::<vk::DescriptorSetLayout>(m.pick(
                other,
                *layout,
                Kind::SetLayout,
            ))];
            let Some(id) = m.create(*slot, Kind::DescriptorSet) else {
                return;
            };
            let info = vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(pool)
                .set_layouts(&layouts);
            let mut sets = [h::<vk::DescriptorSet>(id)];
            emit!(
                e,
                AllocateDescriptorSetsArgs {
                    device: dev,
                    p_allocate_info: Some(&info),
                    p_descriptor_sets: Some(&mut sets),
                    _marker: md(),
                }
            );
        }
        Op::UpdateDescriptorSet {
            set,
            buf,
            offset,
            range,
        } => {
            let infos = [vk::DescriptorBufferInfo::default()
                .buffer(h(m.pick(other, *buf, Kind::Buffer)))
                .offset(offset.0)
                .range(range.0)];
            let writes = [vk::WriteDescriptorSet::default()
                .dst_set(h(m.pick(other, *set, Kind::DescriptorSet)))
                .dst_binding(0)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&infos)];
            emit!(
                e,
                UpdateDescriptorSetsArgs {
                    device: dev,
                    descriptor_write_count: 1,
                    p_descriptor_writes: Some(&writes),
                    descriptor_copy_count: 0,
                    p_descriptor_copies: None,
                    _marker: md(),
                }
            );
        }
        Op::FreeDescriptorSet { pool, set } => {
            let set_id = m.pick(other, *set, Kind::DescriptorSet);
            let sets = [h::<vk::DescriptorSet>(set_id)];
            m.clear(set_id);
            emit!(
                e,
                FreeDescriptorSetsArgs {
                    device: dev,
                    descriptor_pool: h(m.pick(other, *pool, Kind::DescriptorPool)),
                    descriptor_set_count: 1,
                    p_descriptor_sets: Some(&sets),
                    _marker: md(),
                }
            );
        }
        Op::ResetDescriptorPool { pool } => {
            // The pool's sets are gone (the model does not know which pool they came
            // from, so it forgets every set; later uses are foreign ids, refused).
            for s in m.live(Kind::DescriptorSet) {
                m.slots[s] = None;
            }
            emit!(
                e,
                ResetDescriptorPoolArgs {
                    device: dev,
                    descriptor_pool: h(m.pick(other, *pool, Kind::DescriptorPool)),
                    flags: vk::DescriptorPoolResetFlags::empty(),
                    _marker: md(),
                }
            );
        }
        Op::CreateCommandPool { slot } => {
            let Some(id) = m.create(*slot, Kind::CommandPool) else {
                return;
            };
            let info = vk::CommandPoolCreateInfo::default()
                .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER)
                .queue_family_index(0);
            let mut pool = h::<vk::CommandPool>(id);
            emit!(
                e,
                CreateCommandPoolArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_command_pool: Some(&mut pool),
                    _marker: md(),
                }
            );
        }
        Op::AllocateCommandBuffer { slot, pool } => {
            let pool = h::<vk::CommandPool>(m.pick(other, *pool, Kind::CommandPool));
            let Some(id) = m.create(*slot, Kind::CommandBuffer) else {
                return;
            };
            let info = vk::CommandBufferAllocateInfo::default()
                .command_pool(pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1);
            let mut cbs = [h::<vk::CommandBuffer>(id)];
            emit!(
                e,
                AllocateCommandBuffersArgs {
                    device: dev,
                    p_allocate_info: Some(&info),
                    p_command_buffers: Some(&mut cbs),
                    _marker: md(),
                }
            );
        }
        Op::Record { cb, cmds } => {
            let cb = h::<vk::CommandBuffer>(m.pick(other, *cb, Kind::CommandBuffer));
            let begin = vk::CommandBufferBeginInfo::default();
            emit!(
                e,
                BeginCommandBufferArgs {
                    command_buffer: cb,
                    p_begin_info: Some(&begin),
                    _marker: md(),
                }
            );
            for c in cmds.iter().take(8) {
                encode_cmd(e, m, other, cb, c);
            }
            emit!(
                e,
                EndCommandBufferArgs {
                    command_buffer: cb,
                    _marker: md()
                }
            );
        }
        Op::ResetCommandPool { pool } => {
            emit!(
                e,
                ResetCommandPoolArgs {
                    device: dev,
                    command_pool: h(m.pick(other, *pool, Kind::CommandPool)),
                    flags: vk::CommandPoolResetFlags::empty(),
                    _marker: md(),
                }
            );
        }
        Op::FreeCommandBuffer { pool, cb } => {
            let cb_id = m.pick(other, *cb, Kind::CommandBuffer);
            let cbs = [h::<vk::CommandBuffer>(cb_id)];
            m.clear(cb_id);
            emit!(
                e,
                FreeCommandBuffersArgs {
                    device: dev,
                    command_pool: h(m.pick(other, *pool, Kind::CommandPool)),
                    command_buffer_count: 1,
                    p_command_buffers: Some(&cbs),
                    _marker: md(),
                }
            );
        }
        Op::Submit {
            cbs,
            wait,
            signal,
            fence,
            v2,
        } => {
            encode_submit(e, m, other, (cbs, wait, signal, *fence), *v2);
        }
        Op::CreateFence { slot, signaled } => {
            let Some(id) = m.create(*slot, Kind::Fence) else {
                return;
            };
            let flags = if *signaled {
                vk::FenceCreateFlags::SIGNALED
            } else {
                vk::FenceCreateFlags::empty()
            };
            let info = vk::FenceCreateInfo::default().flags(flags);
            let mut fence = h::<vk::Fence>(id);
            emit!(
                e,
                CreateFenceArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_fence: Some(&mut fence),
                    _marker: md(),
                }
            );
        }
        Op::WaitForFences {
            fences,
            all,
            timeout_ms,
        } => {
            let list: Vec<vk::Fence> = fences
                .iter()
                .take(4)
                .map(|r| h(m.pick(other, *r, Kind::Fence)))
                .collect();
            emit!(
                e,
                WaitForFencesArgs {
                    device: dev,
                    fence_count: u32::try_from(list.len()).unwrap_or(0),
                    p_fences: Some(&list),
                    wait_all: u32::from(*all),
                    timeout: (u64::from(*timeout_ms) * 1_000_000).min(MAX_WAIT_NS),
                    _marker: md(),
                }
            );
        }
        Op::ResetFences { fences } => {
            let list: Vec<vk::Fence> = fences
                .iter()
                .take(4)
                .map(|r| h(m.pick(other, *r, Kind::Fence)))
                .collect();
            emit!(
                e,
                ResetFencesArgs {
                    device: dev,
                    fence_count: u32::try_from(list.len()).unwrap_or(0),
                    p_fences: Some(&list),
                    _marker: md(),
                }
            );
        }
        Op::GetFenceStatus { fence } => {
            emit!(
                e,
                GetFenceStatusArgs {
                    device: dev,
                    fence: h(m.pick(other, *fence, Kind::Fence)),
                    _marker: md(),
                }
            );
        }
        Op::CreateSemaphore { slot, timeline } => {
            let kind = if *timeline {
                Kind::TimelineSemaphore
            } else {
                Kind::Semaphore
            };
            let Some(id) = m.create(*slot, kind) else {
                return;
            };
            let mut tci = vk::SemaphoreTypeCreateInfo::default()
                .semaphore_type(vk::SemaphoreType::TIMELINE)
                .initial_value(0);
            let mut info = vk::SemaphoreCreateInfo::default();
            if *timeline {
                info = info.push_next(&mut tci);
            }
            let mut sem = h::<vk::Semaphore>(id);
            emit!(
                e,
                CreateSemaphoreArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_semaphore: Some(&mut sem),
                    _marker: md(),
                }
            );
        }
        Op::SignalSemaphore { sem, value } => {
            let info = vk::SemaphoreSignalInfo::default()
                .semaphore(h(m.pick(other, *sem, Kind::TimelineSemaphore)))
                .value(u64::from(*value));
            emit!(
                e,
                SignalSemaphoreArgs {
                    device: dev,
                    p_signal_info: Some(&info),
                    _marker: md(),
                }
            );
        }
        Op::WaitSemaphores { sems, value } => {
            let list: Vec<vk::Semaphore> = sems
                .iter()
                .take(3)
                .map(|r| h(m.pick(other, *r, Kind::TimelineSemaphore)))
                .collect();
            let values = vec![u64::from(*value); list.len()];
            let info = vk::SemaphoreWaitInfo::default()
                .semaphores(&list)
                .values(&values);
            emit!(
                e,
                WaitSemaphoresArgs {
                    device: dev,
                    p_wait_info: Some(&info),
                    timeout: MAX_WAIT_NS,
                    _marker: md(),
                }
            );
        }
        Op::GetSemaphoreCounter { sem } => {
            let mut value = 0u64;
            emit!(
                e,
                GetSemaphoreCounterValueArgs {
                    device: dev,
                    semaphore: h(m.pick(other, *sem, Kind::TimelineSemaphore)),
                    p_value: Some(&mut value),
                    _marker: md(),
                }
            );
        }
        Op::CreateEvent { slot } => {
            let Some(id) = m.create(*slot, Kind::Event) else {
                return;
            };
            let info = vk::EventCreateInfo::default();
            let mut event = h::<vk::Event>(id);
            emit!(
                e,
                CreateEventArgs {
                    device: dev,
                    p_create_info: Some(&info),
                    p_event: Some(&mut event),
                    _marker: md(),
                }
            );
        }
        Op::SetEvent { event } => {
            let event = h(m.pick(other, *event, Kind::Event));
            emit!(
                e,
                SetEventArgs {
                    device: dev,
                    event,
                    _marker: md()
                }
            );
        }
        Op::ResetEvent { event } => {
            let event = h(m.pick(other, *event, Kind::Event));
            emit!(
                e,
                ResetEventArgs {
                    device: dev,
                    event,
                    _marker: md()
                }
            );
        }
        Op::GetEventStatus { event } => {
            let event = h(m.pick(other, *event, Kind::Event));
            emit!(
                e,
                GetEventStatusArgs {
                    device: dev,
                    event,
                    _marker: md()
                }
            );
        }
        Op::Destroy { what, kind } => encode_destroy(e, m, other, *what, kind_of(*kind)),
        Op::QueueWaitIdle => {
            emit!(
                e,
                QueueWaitIdleArgs {
                    queue: h(QUEUE),
                    _marker: md()
                }
            );
        }
        Op::DeviceWaitIdle => {
            emit!(
                e,
                DeviceWaitIdleArgs {
                    device: dev,
                    _marker: md()
                }
            );
        }
        Op::DestroyDevice => {
            // Destroyed while its work may still run: the executor must wait for it.
            m.device = false;
            m.slots = Default::default();
            m.signaled = Default::default();
            emit!(
                e,
                DestroyDeviceArgs {
                    device: dev,
                    _marker: md()
                }
            );
        }
        Op::DestroyInstance => {
            // Possibly while its device lives (invalid usage a guest can send).
            m.instance = false;
            emit!(
                e,
                DestroyInstanceArgs {
                    instance: h(INSTANCE),
                    _marker: md()
                }
            );
        }
    }
}

fn encode_destroy(e: &mut Encoder, m: &mut Model, other: &Model, what: Ref, kind: Kind) {
    let dev = device();
    let md = Default::default;
    let id = m.pick(other, what, kind);
    m.clear(id);
    match kind {
        Kind::Memory => emit!(
            e,
            FreeMemoryArgs {
                device: dev,
                memory: h(id),
                _marker: md()
            }
        ),
        Kind::Buffer => emit!(
            e,
            DestroyBufferArgs {
                device: dev,
                buffer: h(id),
                _marker: md()
            }
        ),
        Kind::Shader => emit!(
            e,
            DestroyShaderModuleArgs {
                device: dev,
                shader_module: h(id),
                _marker: md(),
            }
        ),
        Kind::SetLayout => emit!(
            e,
            DestroyDescriptorSetLayoutArgs {
                device: dev,
                descriptor_set_layout: h(id),
                _marker: md(),
            }
        ),
        Kind::PipelineLayout => emit!(
            e,
            DestroyPipelineLayoutArgs {
                device: dev,
                pipeline_layout: h(id),
                _marker: md(),
            }
        ),
        Kind::Pipeline => emit!(
            e,
            DestroyPipelineArgs {
                device: dev,
                pipeline: h(id),
                _marker: md()
            }
        ),
        Kind::DescriptorPool => {
            for s in m.live(Kind::DescriptorSet) {
                m.slots[s] = None;
            }
            emit!(
                e,
                DestroyDescriptorPoolArgs {
                    device: dev,
                    descriptor_pool: h(id),
                    _marker: md(),
                }
            );
        }
        Kind::CommandPool => {
            for s in m.live(Kind::CommandBuffer) {
                m.slots[s] = None;
            }
            emit!(
                e,
                DestroyCommandPoolArgs {
                    device: dev,
                    command_pool: h(id),
                    _marker: md()
                }
            );
        }
        Kind::Fence => emit!(
            e,
            DestroyFenceArgs {
                device: dev,
                fence: h(id),
                _marker: md()
            }
        ),
        Kind::Semaphore | Kind::TimelineSemaphore => {
            emit!(
                e,
                DestroySemaphoreArgs {
                    device: dev,
                    semaphore: h(id),
                    _marker: md()
                }
            );
        }
        Kind::Event => emit!(
            e,
            DestroyEventArgs {
                device: dev,
                event: h(id),
                _marker: md()
            }
        ),
        // Sets and command buffers are freed through their pools (FreeDescriptorSet,
        // FreeCommandBuffer); here their pool is named with them.
        Kind::DescriptorSet | Kind::CommandBuffer => {}
    }
}

fn encode_cmd(e: &mut Encoder, m: &Model, other: &Model, cb: vk::CommandBuffer, c: &Cmd) {
    let md = Default::default;
    match c {
        Cmd::Fill {
            buf,
            offset,
            size,
            data,
        } => emit!(
            e,
            CmdFillBufferArgs {
                command_buffer: cb,
                dst_buffer: h(m.pick(other, *buf, Kind::Buffer)),
                dst_offset: offset.0,
                size: size.0,
                data: *data,
                _marker: md(),
            }
        ),
        Cmd::Update { buf, offset, words } => {
            let bytes = vec![0x5au8; usize::from(*words).max(1) * 4];
            emit!(
                e,
                CmdUpdateBufferArgs {
                    command_buffer: cb,
                    dst_buffer: h(m.pick(other, *buf, Kind::Buffer)),
                    dst_offset: offset.0,
                    data_size: bytes.len() as u64,
                    p_data: Some(&bytes),
                    _marker: md(),
                }
            );
        }
        Cmd::Copy {
            src,
            dst,
            src_offset,
            dst_offset,
            size,
        } => {
            let regions = [vk::BufferCopy {
                src_offset: src_offset.0,
                dst_offset: dst_offset.0,
                size: size.0,
            }];
            emit!(
                e,
                CmdCopyBufferArgs {
                    command_buffer: cb,
                    src_buffer: h(m.pick(other, *src, Kind::Buffer)),
                    dst_buffer: h(m.pick(other, *dst, Kind::Buffer)),
                    region_count: 1,
                    p_regions: Some(&regions),
                    _marker: md(),
                }
            );
        }
        Cmd::BindPipeline { pipeline } => emit!(
            e,
            CmdBindPipelineArgs {
                command_buffer: cb,
                pipeline_bind_point: vk::PipelineBindPoint::COMPUTE,
                pipeline: h(m.pick(other, *pipeline, Kind::Pipeline)),
                _marker: md(),
            }
        ),
        Cmd::BindSet { layout, set } => {
            let sets = [h::<vk::DescriptorSet>(m.pick(
                other,
                *set,
                Kind::DescriptorSet,
            ))];
            emit!(
                e,
                CmdBindDescriptorSetsArgs {
                    command_buffer: cb,
                    pipeline_bind_point: vk::PipelineBindPoint::COMPUTE,
                    layout: h(m.pick(other, *layout, Kind::PipelineLayout)),
                    first_set: 0,
                    descriptor_set_count: 1,
                    p_descriptor_sets: Some(&sets),
                    dynamic_offset_count: 0,
                    p_dynamic_offsets: None,
                    _marker: md(),
                }
            );
        }
        Cmd::Push {
            layout,
            mul,
            add,
            n,
        } => {
            let mut values = Vec::with_capacity(12);
            for v in [*mul, *add, u32::from(*n)] {
                values.extend_from_slice(&v.to_le_bytes());
            }
            emit!(
                e,
                CmdPushConstantsArgs {
                    command_buffer: cb,
                    layout: h(m.pick(other, *layout, Kind::PipelineLayout)),
                    stage_flags: vk::ShaderStageFlags::COMPUTE,
                    offset: 0,
                    size: 12,
                    p_values: Some(&values),
                    _marker: md(),
                }
            );
        }
        // Small groups only: a huge dispatch is a GPU hang, the watchdog's business.
        Cmd::Dispatch { x, y, z } => emit!(
            e,
            CmdDispatchArgs {
                command_buffer: cb,
                group_count_x: u32::from(x % 4),
                group_count_y: u32::from(y % 3),
                group_count_z: u32::from(z % 2),
                _marker: md(),
            }
        ),
        Cmd::Barrier { buf } => {
            let global = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
                .dst_access_mask(vk::AccessFlags::MEMORY_READ)];
            let buffers: Vec<vk::BufferMemoryBarrier<'_>> = buf
                .iter()
                .map(|b| {
                    vk::BufferMemoryBarrier::default()
                        .buffer(h(m.pick(other, *b, Kind::Buffer)))
                        .size(vk::WHOLE_SIZE)
                        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                })
                .collect();
            emit!(
                e,
                CmdPipelineBarrierArgs {
                    command_buffer: cb,
                    src_stage_mask: vk::PipelineStageFlags::ALL_COMMANDS,
                    dst_stage_mask: vk::PipelineStageFlags::ALL_COMMANDS,
                    dependency_flags: vk::DependencyFlags::empty(),
                    memory_barrier_count: 1,
                    p_memory_barriers: Some(&global),
                    buffer_memory_barrier_count: u32::try_from(buffers.len()).unwrap_or(0),
                    p_buffer_memory_barriers: Some(&buffers),
                    image_memory_barrier_count: 0,
                    p_image_memory_barriers: None,
                    _marker: md(),
                }
            );
        }
    }
}

type SubmitParts<'a> = (&'a [Ref], &'a [WaitRef], &'a [Ref], Option<Ref>);

fn encode_submit(e: &mut Encoder, m: &mut Model, other: &Model, parts: SubmitParts<'_>, v2: bool) {
    let (cbs, wait, signal, fence) = parts;
    let cbs: Vec<vk::CommandBuffer> = cbs
        .iter()
        .take(3)
        .map(|r| h(m.pick(other, *r, Kind::CommandBuffer)))
        .collect();
    let waits: Vec<vk::Semaphore> = wait
        .iter()
        .take(2)
        .filter_map(|w| m.pick_wait(*w))
        .map(h)
        .collect();
    let signals: Vec<vk::Semaphore> = signal
        .iter()
        .take(2)
        .map(|r| h(m.pick(other, *r, Kind::Semaphore)))
        .collect();
    let fence: vk::Fence = fence.map_or(vk::Fence::null(), |r| h(m.pick(other, r, Kind::Fence)));
    for s in &waits {
        if let Some(i) = Model::slot_of(s.as_raw()) {
            m.signaled[i] = false;
        }
    }
    for s in &signals {
        if let Some(i) = Model::slot_of(s.as_raw()) {
            if m.slots[i] == Some(Kind::Semaphore) {
                m.signaled[i] = true;
            }
        }
    }
    let md = Default::default;
    if v2 {
        let cb_infos: Vec<vk::CommandBufferSubmitInfo<'_>> = cbs
            .iter()
            .map(|&cb| vk::CommandBufferSubmitInfo::default().command_buffer(cb))
            .collect();
        let sem = |s: &vk::Semaphore| {
            vk::SemaphoreSubmitInfo::default()
                .semaphore(*s)
                .stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS)
        };
        let wait_infos: Vec<vk::SemaphoreSubmitInfo<'_>> = waits.iter().map(sem).collect();
        let signal_infos: Vec<vk::SemaphoreSubmitInfo<'_>> = signals.iter().map(sem).collect();
        let submits = [vk::SubmitInfo2::default()
            .command_buffer_infos(&cb_infos)
            .wait_semaphore_infos(&wait_infos)
            .signal_semaphore_infos(&signal_infos)];
        emit!(
            e,
            QueueSubmit2Args {
                queue: h(QUEUE),
                submit_count: 1,
                p_submits: Some(&submits),
                fence,
                _marker: md(),
            }
        );
    } else {
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; waits.len()];
        let submits = [vk::SubmitInfo::default()
            .command_buffers(&cbs)
            .wait_semaphores(&waits)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signals)];
        emit!(
            e,
            QueueSubmitArgs {
                queue: h(QUEUE),
                submit_count: 1,
                p_submits: Some(&submits),
                fence,
                _marker: md(),
            }
        );
    }
}

/// Ids of [`probe`]'s objects.
const PROBE_MEM: u64 = 0x2001;
const PROBE_BUF: u64 = 0x2002;
const PROBE_POOL: u64 = 0x2003;
const PROBE_CB: u64 = 0x2004;
const PROBE_FENCE: u64 = 0x2005;
/// What [`probe`] fills its buffer with.
pub const PROBE_PATTERN: u32 = 0xa5c3_5a3c;

/// A fresh context on `runner`'s VM does real work: fills a host-visible buffer on
/// the GPU, waits for its fence and reads the memory back through an exported blob.
/// Returns the words read, or why it could not.
#[allow(clippy::too_many_lines)] // one command sequence
pub fn probe(runner: &mut Runner) -> Result<Vec<u32>, String> {
    const SIZE: u64 = 4096;
    let mut slot = runner.open(vk::API_VERSION_1_3);
    if !slot.model.device {
        return Err("prologue failed".into());
    }
    let dev = device();
    let md = Default::default;
    let mut e = Encoder::new();
    let mai = vk::MemoryAllocateInfo::default()
        .allocation_size(SIZE)
        .memory_type_index(0);
    let mut mem = h::<vk::DeviceMemory>(PROBE_MEM);
    let bci = vk::BufferCreateInfo::default()
        .size(SIZE)
        .usage(vk::BufferUsageFlags::TRANSFER_DST);
    let mut buf = h::<vk::Buffer>(PROBE_BUF);
    let pci = vk::CommandPoolCreateInfo::default().queue_family_index(0);
    let mut pool = h::<vk::CommandPool>(PROBE_POOL);
    let aci = vk::CommandBufferAllocateInfo::default()
        .command_pool(pool)
        .level(vk::CommandBufferLevel::PRIMARY)
        .command_buffer_count(1);
    let cb = h::<vk::CommandBuffer>(PROBE_CB);
    let mut cbs = [cb];
    let begin = vk::CommandBufferBeginInfo::default();
    let fci = vk::FenceCreateInfo::default();
    let mut fence = h::<vk::Fence>(PROBE_FENCE);
    let cb_list = [cb];
    let submits = [vk::SubmitInfo::default().command_buffers(&cb_list)];
    let fences = [fence];
    emit!(
        &mut e,
        AllocateMemoryArgs {
            device: dev,
            p_allocate_info: Some(&mai),
            p_memory: Some(&mut mem),
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        CreateBufferArgs {
            device: dev,
            p_create_info: Some(&bci),
            p_buffer: Some(&mut buf),
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        BindBufferMemoryArgs {
            device: dev,
            buffer: buf,
            memory: mem,
            memory_offset: 0,
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        CreateCommandPoolArgs {
            device: dev,
            p_create_info: Some(&pci),
            p_command_pool: Some(&mut pool),
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        AllocateCommandBuffersArgs {
            device: dev,
            p_allocate_info: Some(&aci),
            p_command_buffers: Some(&mut cbs),
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        BeginCommandBufferArgs {
            command_buffer: cb,
            p_begin_info: Some(&begin),
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        CmdFillBufferArgs {
            command_buffer: cb,
            dst_buffer: buf,
            dst_offset: 0,
            size: vk::WHOLE_SIZE,
            data: PROBE_PATTERN,
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        EndCommandBufferArgs {
            command_buffer: cb,
            _marker: md()
        }
    );
    emit!(
        &mut e,
        CreateFenceArgs {
            device: dev,
            p_create_info: Some(&fci),
            p_fence: Some(&mut fence),
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        QueueSubmitArgs {
            queue: h(QUEUE),
            submit_count: 1,
            p_submits: Some(&submits),
            fence,
            _marker: md(),
        }
    );
    emit!(
        &mut e,
        WaitForFencesArgs {
            device: dev,
            fence_count: 1,
            p_fences: Some(&fences),
            wait_all: 1,
            timeout: 10_000_000_000,
            _marker: md(),
        }
    );
    slot.ctx
        .submit(&e.into_bytes())
        .map_err(|err| format!("probe stream failed: {}", vgpu_device::error_chain(&err)))?;
    let res = slot
        .ctx
        .create_blob(ResourceId(1), BlobId(PROBE_MEM), SIZE)
        .map_err(|err| format!("export failed: {}", vgpu_device::error_chain(&err)))?;
    let map = SharedMemory::map(res.fd(), res.size()).map_err(|err| err.to_string())?;
    let mut bytes = vec![0u8; 4096];
    map.read(0, &mut bytes).map_err(|err| err.to_string())?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Runs `data` on two fresh contexts; the fuzz target's and the replay test's entry.
pub fn run(data: &[u8]) -> Report {
    Runner::new().run(data)
}
