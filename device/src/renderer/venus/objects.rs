//! The per-context object table: guest object id → (type, host handle, owner), plus the
//! host-side state behind instances, devices and host-visible memory.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use ash::vk;

use super::bind::{BindError, BindTarget, MemoryInfo, Object as BindObject};
use super::bounds::{ImageInfo, PassInfo, RenderState, SetLayoutInfo, ViewInfo};
use super::fns::DeviceFns;
use super::lifetime::HostObject;
use super::limits::MemoryCharge;
use super::{Result, VenusError};
use crate::sys::SharedMemory;

/// A framebuffer's attachment count, imageless flag and size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FramebufferInfo {
    pub(crate) attachments: u32,
    pub(crate) imageless: bool,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) layers: u32,
}

impl FramebufferInfo {
    /// The whole framebuffer as a render area.
    pub(crate) fn area(&self) -> vk::Rect2D {
        vk::Rect2D {
            offset: vk::Offset2D::default(),
            extent: vk::Extent2D {
                width: self.width,
                height: self.height,
            },
        }
    }
}

/// A host instance and the loader entry it was created from.
pub(crate) struct InstanceState {
    /// Keeps the loader library loaded as long as the instance lives.
    pub(crate) _entry: Arc<ash::Entry>,
    pub(crate) instance: ash::Instance,
    /// The `apiVersion` the host instance was created with.
    pub(crate) api_version: u32,
}

impl Drop for InstanceState {
    fn drop(&mut self) {
        // SAFETY: the last reference is gone: every device created from it holds one
        // (`DeviceState::_instance`), so they are all destroyed (or leaked, and the
        // reference with them); the tables and physical devices held the others. So a
        // guest's vkDestroyInstance while its devices live only takes the instance out
        // of the tables, and the host instance goes after its last device (destroying
        // it first was undefined behaviour in the loader and driver).
        unsafe { self.instance.destroy_instance(None) };
    }
}

impl std::fmt::Debug for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceState")
            .field("instance", &self.instance.handle())
            .finish_non_exhaustive()
    }
}

/// A host device, its function tables and what the handlers need to know about it.
pub(crate) struct DeviceState {
    pub(crate) device: ash::Device,
    /// Keeps the instance alive while the device lives.
    pub(crate) _instance: Arc<InstanceState>,
    pub(crate) memory: vk::PhysicalDeviceMemoryProperties,
    /// `VK_EXT_external_memory_host` is enabled: host-visible allocations are memfds.
    pub(crate) host_pointer_import: bool,
    pub(crate) min_import_alignment: u64,
    /// (family, queue count, flags) of every queue the device was created with.
    pub(crate) queues: Vec<(u32, u32, vk::DeviceQueueCreateFlags)>,
    /// The physical device's limits (array bounds the handlers check).
    pub(crate) limits: vk::PhysicalDeviceLimits,
    /// `maxTransformFeedbackBuffers` (0 without `VK_EXT_transform_feedback`).
    pub(crate) max_xfb_buffers: u32,
    /// Entry points `ash::Device` does not load safely.
    pub(crate) fns: DeviceFns,
    /// Mappings of host-visible memory the guest never freed, taken out of the tables
    /// by `vkDestroyDevice`: the driver's imports point into them until the device is
    /// destroyed (this struct's `Drop`, which runs before its fields drop), or forever
    /// if the device is leaked.
    pub(crate) orphan_memories: Mutex<Vec<Arc<HostMemory>>>,
    /// The core version whose entry points the device has: the lower of its instance's
    /// and its physical device's.
    pub(crate) api_version: u32,
    /// Timestamp pairs around accounted submissions (device time, `stamps.rs`).
    pub(crate) stamps: super::stamps::Stamps,
}

impl Drop for DeviceState {
    #[allow(clippy::multiple_unsafe_ops_per_block)] // the stamp pools, then the device: one teardown
    fn drop(&mut self) {
        // SAFETY: the last reference is gone: every child's drop action (which holds
        // one) has run, every submission's fence retired (`Waiting` holds one), and the
        // destroyer drained the queues before letting go of its own (a device whose
        // queues did not drain is leaked with `mem::forget` instead). Children the
        // guest left behind were destroyed by `vkDestroyDevice`'s caller contract or
        // by teardown. The stamp pools go first: every submission that used them
        // retired (each holds a reference to this state).
        unsafe {
            self.stamps.destroy(&self.device);
            self.device.destroy_device(None);
        }
    }
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState")
            .field("device", &self.device.handle())
            .field("host_pointer_import", &self.host_pointer_import)
            .finish_non_exhaustive()
    }
}

/// A host-visible allocation backed by a memfd the guest maps (venus-wire §6.3).
#[derive(Debug)]
pub(crate) struct HostMemory {
    pub(crate) fd: OwnedFd,
    /// The host mapping the driver imported; unmapped when this drops, after the
    /// `VkDeviceMemory` is freed.
    pub(crate) _map: SharedMemory,
    /// memfd size (allocationSize rounded up to the import alignment).
    pub(crate) size: u64,
    /// The VM's blob-budget slot the fd (a memfd, or a duplicate of a resource's fd)
    /// holds.
    pub(crate) _fd_charge: Option<crate::renderer::fds::FdCharge>,
}

#[derive(Clone, Copy, Debug)]
struct Object {
    ty: vk::ObjectType,
    raw: u64,
    /// Host handle of the owner (instance, device, pool), 0 for instances.
    parent: u64,
}

/// Everything one context's executor owns.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) entry: Option<Arc<ash::Entry>>,
    objects: HashMap<u64, Object>,
    by_host: HashMap<(i32, u64), u64>,
    instances: HashMap<u64, Arc<InstanceState>>,
    /// Host physical device → owning instance.
    physical: HashMap<u64, Arc<InstanceState>>,
    devices: HashMap<u64, Arc<DeviceState>>,
    /// Host queue / command buffer → owning device.
    dispatchable: HashMap<u64, Arc<DeviceState>>,
    /// Guest id → the host object's lifetime handle (device children only).
    hosts: HashMap<u64, Arc<HostObject>>,
    /// Objects taken out of the tables during commands, dropped (which may run host
    /// destroy calls) by the executor after the lock is released.
    graveyard: Vec<Arc<HostObject>>,
    /// Objects created since the executor last looked: they get to hold what the
    /// command that created them used.
    fresh: Vec<Arc<HostObject>>,
    /// Guest memory id → memfd backing.
    pub(crate) memories: HashMap<u64, Arc<HostMemory>>,
    /// Guest memory id → what it costs its VM's quota (credited when removed).
    charges: HashMap<u64, MemoryCharge>,
    /// Guest memory id → its size and type (bind checks).
    memory_infos: HashMap<u64, MemoryInfo>,
    /// Guest buffer or image id → the host's memory requirements and what is bound.
    bind_targets: HashMap<u64, BindTarget>,
    /// Guest buffer id → `VkBufferCreateInfo::size` (bounds of indirect arguments).
    buffer_sizes: HashMap<u64, u64>,
    /// Guest image id → what the transfer bounds checks need.
    image_infos: HashMap<u64, ImageInfo>,
    /// Guest render pass id → its attachment, clear and subpass counts.
    render_passes: HashMap<u64, PassInfo>,
    /// Guest framebuffer id → its attachment count, imageless flag and size.
    framebuffers: HashMap<u64, FramebufferInfo>,
    /// Guest image view id → base-level size and layers.
    views: HashMap<u64, ViewInfo>,
    /// Host command buffer → where it records (render area for clears).
    render_states: HashMap<u64, RenderState>,
    /// Host command buffer → the bind points (`1 << vk::PipelineBindPoint`) with a
    /// pipeline bound since its last begin or reset.
    bound_pipelines: HashMap<u64, u32>,
    /// Guest query pool id → (queryCount, values per query).
    query_pools: HashMap<u64, (u32, u64)>,
    /// Guest descriptor set layout id → its bindings.
    set_layouts: HashMap<u64, Arc<SetLayoutInfo>>,
    /// Guest descriptor set id → (layout bindings, variable descriptor count).
    descriptor_sets: HashMap<u64, (Arc<SetLayoutInfo>, u32)>,
    /// Guest pipeline layout id → its set layouts (NULL ones as `None`).
    pipeline_layouts: HashMap<u64, Arc<Vec<Option<Arc<SetLayoutInfo>>>>>,
    /// Host queue → (owning device, the lock every submission to it takes: ring
    /// threads and the context stream's fences share queues).
    queue_locks: HashMap<u64, (u64, Arc<Mutex<()>>)>,
    /// `VkDeviceQueueTimelineInfoMESA::ringIdx` → (host device, host queue).
    timelines: HashMap<u32, (u64, u64)>,
}

/// A queue ready for submission: its device and its submission lock.
pub(crate) struct QueueRef {
    pub(crate) device: Arc<DeviceState>,
    pub(crate) queue: vk::Queue,
    pub(crate) lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("objects", &self.objects.len())
            .finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Live host instances.
    pub(crate) fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// Live host devices.
    pub(crate) fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Typed lookup for the decoder: id 0 is NULL; unknown or wrong-typed is `None`.
    pub(crate) fn lookup(&self, ty: vk::ObjectType, id: u64) -> Option<u64> {
        if id == 0 {
            return Some(0);
        }
        self.objects.get(&id).filter(|o| o.ty == ty).map(|o| o.raw)
    }

    /// The guest id bound to a host handle.
    pub(crate) fn guest_id(&self, ty: vk::ObjectType, raw: u64) -> Option<u64> {
        self.by_host.get(&(ty.as_raw(), raw)).copied()
    }

    pub(crate) fn check_free(&self, id: u64) -> Result<()> {
        if self.objects.contains_key(&id) {
            return Err(VenusError::DuplicateId(id));
        }
        Ok(())
    }

    pub(crate) fn bind(
        &mut self,
        id: u64,
        ty: vk::ObjectType,
        raw: u64,
        parent: u64,
    ) -> Result<()> {
        if id == 0 {
            return Err(VenusError::ZeroId(ty));
        }
        self.check_free(id)?;
        if self.by_host.contains_key(&(ty.as_raw(), raw)) {
            return Err(VenusError::Invalid(
                "host object already bound to another id",
            ));
        }
        self.objects.insert(id, Object { ty, raw, parent });
        self.by_host.insert((ty.as_raw(), raw), id);
        if has_host_object(ty) {
            let host = HostObject::new(ty, raw);
            self.fresh.push(Arc::clone(&host));
            self.hosts.insert(id, host);
        }
        Ok(())
    }

    /// The lifetime handle behind guest `id` of type `ty` (a decoder lookup).
    pub(crate) fn host_by_id(&self, ty: vk::ObjectType, id: u64) -> Option<Arc<HostObject>> {
        self.hosts.get(&id).filter(|h| h.ty == ty).cloned()
    }

    /// Forgets a host object and returns its lifetime handle (also kept in the
    /// graveyard until the command ends, so it drops outside the lock).
    pub(crate) fn unbind_host(&mut self, ty: vk::ObjectType, raw: u64) -> Option<Arc<HostObject>> {
        let id = self.guest_id(ty, raw)?;
        let host = self.hosts.get(&id).cloned();
        self.unbind(ty, raw);
        host
    }

    /// Objects removed from the tables since the last call (drop them unlocked).
    pub(crate) fn take_graveyard(&mut self) -> Vec<Arc<HostObject>> {
        std::mem::take(&mut self.graveyard)
    }

    /// Objects created since the last call.
    pub(crate) fn take_fresh(&mut self) -> Vec<Arc<HostObject>> {
        std::mem::take(&mut self.fresh)
    }

    pub(crate) fn unbind(&mut self, ty: vk::ObjectType, raw: u64) -> Option<u64> {
        let id = self.by_host.remove(&(ty.as_raw(), raw))?;
        self.objects.remove(&id);
        if let Some(host) = self.hosts.remove(&id) {
            self.graveyard.push(host);
        }
        self.memories.remove(&id);
        self.charges.remove(&id);
        self.memory_infos.remove(&id);
        self.bind_targets.remove(&id);
        self.buffer_sizes.remove(&id);
        self.image_infos.remove(&id);
        self.render_passes.remove(&id);
        self.framebuffers.remove(&id);
        self.views.remove(&id);
        self.render_states.remove(&raw);
        self.bound_pipelines.remove(&raw);
        self.query_pools.remove(&id);
        self.set_layouts.remove(&id);
        self.descriptor_sets.remove(&id);
        self.pipeline_layouts.remove(&id);
        self.dispatchable.remove(&raw);
        Some(id)
    }

    /// Forgets every object of type `ty` owned by `parent` (pool resets and destroys).
    pub(crate) fn unbind_children(&mut self, ty: vk::ObjectType, parent: u64) {
        let raws: Vec<u64> = self
            .objects
            .values()
            .filter(|o| o.ty == ty && o.parent == parent)
            .map(|o| o.raw)
            .collect();
        for raw in raws {
            self.unbind(ty, raw);
        }
    }

    /// Host handles of every object of type `ty` owned by `parent`.
    pub(crate) fn children(&self, ty: vk::ObjectType, parent: u64) -> Vec<u64> {
        self.objects
            .values()
            .filter(|o| o.ty == ty && o.parent == parent)
            .map(|o| o.raw)
            .collect()
    }

    /// Takes the quota charge of guest memory `id` out of the table, so that it is
    /// credited back when the caller drops it (when the host memory is really freed),
    /// not when the guest id goes.
    pub(crate) fn take_memory_charge(&mut self, id: u64) -> Option<MemoryCharge> {
        self.charges.remove(&id)
    }

    /// Records what memory just bound to guest `id` costs its VM.
    pub(crate) fn set_memory_charge(&mut self, id: u64, charge: MemoryCharge) {
        if self.objects.contains_key(&id) {
            self.charges.insert(id, charge);
        }
    }

    /// Records the size and type of device memory just bound to guest `id`.
    pub(crate) fn set_memory_info(&mut self, id: u64, info: MemoryInfo) {
        if self.objects.contains_key(&id) {
            self.memory_infos.insert(id, info);
        }
    }

    /// Records the host's memory requirements of a buffer or image just bound to `id`.
    pub(crate) fn set_bind_target(&mut self, id: u64, target: BindTarget) {
        if self.objects.contains_key(&id) {
            self.bind_targets.insert(id, target);
        }
    }

    /// How many planes of the image with host handle `raw` bind separately.
    pub(crate) fn bind_planes(&self, raw: u64) -> usize {
        self.guest_id(vk::ObjectType::IMAGE, raw)
            .and_then(|id| self.bind_targets.get(&id))
            .map_or(1, BindTarget::planes)
    }

    /// Checks a bind of `plane` of object `raw` (a buffer or image host handle) to
    /// `memory` at `offset` on `device` (see `bind.rs`) and records it as bound.
    pub(crate) fn bind_memory(
        &mut self,
        (ty, raw): (vk::ObjectType, u64),
        plane: usize,
        memory: u64,
        offset: u64,
        device: u64,
    ) -> std::result::Result<(), BindError> {
        let id = self.guest_id(ty, raw).unwrap_or(0);
        let object = BindObject { ty, id };
        let mem_id = self
            .guest_id(vk::ObjectType::DEVICE_MEMORY, memory)
            .filter(|_| memory != 0);
        let mem = mem_id
            .and_then(|m| self.memory_infos.get(&m))
            .copied()
            .ok_or_else(|| BindError::UnknownMemory {
                object: object.to_string(),
            })?;
        if self.owner_device(ty, raw) != Some(device)
            || self.owner_device(vk::ObjectType::DEVICE_MEMORY, memory) != Some(device)
        {
            return Err(BindError::ForeignDevice {
                object: object.to_string(),
            });
        }
        self.bind_targets
            .get_mut(&id)
            .ok_or_else(|| BindError::UnknownObject(object.to_string()))?
            .bind(object, plane, &mem, offset)
    }

    /// Records the size of a buffer just bound to guest `id`.
    pub(crate) fn set_buffer_size(&mut self, id: u64, size: u64) {
        if self.objects.contains_key(&id) {
            self.buffer_sizes.insert(id, size);
        }
    }

    /// The size of the buffer with host handle `raw`.
    pub(crate) fn buffer_size(&self, raw: u64) -> Option<u64> {
        let id = self.guest_id(vk::ObjectType::BUFFER, raw)?;
        self.buffer_sizes.get(&id).copied()
    }

    /// Records what the bounds checks need about an image just bound to guest `id`.
    pub(crate) fn set_image_info(&mut self, id: u64, info: ImageInfo) {
        if self.objects.contains_key(&id) {
            self.image_infos.insert(id, info);
        }
    }

    /// The recorded info of the image with host handle `raw`.
    pub(crate) fn image_info(&self, raw: u64) -> Option<ImageInfo> {
        let id = self.guest_id(vk::ObjectType::IMAGE, raw)?;
        self.image_infos.get(&id).copied()
    }

    /// Records the counts of a render pass just bound to guest `id`.
    pub(crate) fn set_pass_info(&mut self, id: u64, info: PassInfo) {
        if self.objects.contains_key(&id) {
            self.render_passes.insert(id, info);
        }
    }

    /// The counts of the render pass with host handle `raw`.
    pub(crate) fn pass_info(&self, raw: u64) -> Option<PassInfo> {
        let id = self.guest_id(vk::ObjectType::RENDER_PASS, raw)?;
        self.render_passes.get(&id).copied()
    }

    /// Records a framebuffer just bound to guest `id`.
    pub(crate) fn set_framebuffer_info(&mut self, id: u64, info: FramebufferInfo) {
        if self.objects.contains_key(&id) {
            self.framebuffers.insert(id, info);
        }
    }

    /// The framebuffer with host handle `raw`.
    pub(crate) fn framebuffer_info(&self, raw: u64) -> Option<FramebufferInfo> {
        let id = self.guest_id(vk::ObjectType::FRAMEBUFFER, raw)?;
        self.framebuffers.get(&id).copied()
    }

    /// Records an image view just bound to guest `id`.
    pub(crate) fn set_view_info(&mut self, id: u64, info: ViewInfo) {
        if self.objects.contains_key(&id) {
            self.views.insert(id, info);
        }
    }

    /// The image view with host handle `raw`.
    pub(crate) fn view_info(&self, raw: u64) -> Option<ViewInfo> {
        let id = self.guest_id(vk::ObjectType::IMAGE_VIEW, raw)?;
        self.views.get(&id).copied()
    }

    /// Sets (or with `None` clears) where command buffer `cb` (host handle) records.
    pub(crate) fn set_render_state(&mut self, cb: u64, state: Option<RenderState>) {
        match state {
            Some(s) => self.render_states.insert(cb, s),
            None => self.render_states.remove(&cb),
        };
    }

    /// Command buffer `cb` (host handle) has a pipeline bound at `point`.
    pub(crate) fn bind_pipeline(&mut self, cb: u64, point: vk::PipelineBindPoint) {
        if let Some(bit) = bind_point_bit(point) {
            *self.bound_pipelines.entry(cb).or_default() |= bit;
        }
    }

    /// Command buffer `cb` (host handle) begins or is reset: nothing is bound.
    pub(crate) fn clear_pipelines(&mut self, cb: u64) {
        self.bound_pipelines.remove(&cb);
    }

    /// Whether `cb` (host handle) has a pipeline bound at `point` since its last
    /// begin or reset.
    pub(crate) fn has_pipeline(&self, cb: u64, point: vk::PipelineBindPoint) -> bool {
        bind_point_bit(point)
            .is_some_and(|bit| self.bound_pipelines.get(&cb).is_some_and(|b| b & bit != 0))
    }

    /// Where command buffer `cb` (host handle) records.
    pub(crate) fn render_state(&self, cb: u64) -> Option<RenderState> {
        self.render_states.get(&cb).copied()
    }

    /// Records (queryCount, values per query) of a pool just bound to guest `id`.
    pub(crate) fn set_query_pool_info(&mut self, id: u64, count: u32, values: u64) {
        if self.objects.contains_key(&id) {
            self.query_pools.insert(id, (count, values));
        }
    }

    /// (queryCount, values per query) of the pool with host handle `raw`.
    pub(crate) fn query_pool_info(&self, raw: u64) -> Option<(u32, u64)> {
        let id = self.guest_id(vk::ObjectType::QUERY_POOL, raw)?;
        self.query_pools.get(&id).copied()
    }

    /// Records the bindings of a set layout just bound to guest `id`.
    pub(crate) fn set_set_layout_info(&mut self, id: u64, info: SetLayoutInfo) {
        if self.objects.contains_key(&id) {
            self.set_layouts.insert(id, Arc::new(info));
        }
    }

    /// The bindings of the set layout with host handle `raw`.
    pub(crate) fn set_layout_info(&self, raw: u64) -> Option<Arc<SetLayoutInfo>> {
        let id = self.guest_id(vk::ObjectType::DESCRIPTOR_SET_LAYOUT, raw)?;
        self.set_layouts.get(&id).cloned()
    }

    /// Records the layout and variable count of a set just bound to guest `id`.
    pub(crate) fn set_descriptor_set_info(
        &mut self,
        id: u64,
        layout: Arc<SetLayoutInfo>,
        variable: u32,
    ) {
        if self.objects.contains_key(&id) {
            self.descriptor_sets.insert(id, (layout, variable));
        }
    }

    /// The layout and variable count of the set with host handle `raw`.
    pub(crate) fn descriptor_set_info(&self, raw: u64) -> Option<(Arc<SetLayoutInfo>, u32)> {
        let id = self.guest_id(vk::ObjectType::DESCRIPTOR_SET, raw)?;
        self.descriptor_sets.get(&id).cloned()
    }

    /// Records the set layouts of a pipeline layout just bound to guest `id`.
    pub(crate) fn set_pipeline_layout_info(
        &mut self,
        id: u64,
        sets: Vec<Option<Arc<SetLayoutInfo>>>,
    ) {
        if self.objects.contains_key(&id) {
            self.pipeline_layouts.insert(id, Arc::new(sets));
        }
    }

    /// The set layouts of the pipeline layout with host handle `raw`.
    pub(crate) fn pipeline_layout_info(
        &self,
        raw: u64,
    ) -> Option<Arc<Vec<Option<Arc<SetLayoutInfo>>>>> {
        let id = self.guest_id(vk::ObjectType::PIPELINE_LAYOUT, raw)?;
        self.pipeline_layouts.get(&id).cloned()
    }

    /// The host device that owns host object `raw` of type `ty` (command buffers and
    /// descriptor sets through their pools); `None` if it is not in the tables.
    pub(crate) fn owner_device(&self, ty: vk::ObjectType, raw: u64) -> Option<u64> {
        let id = self.guest_id(ty, raw)?;
        let parent = self.objects.get(&id)?.parent;
        let pool_ty = match ty {
            vk::ObjectType::COMMAND_BUFFER => vk::ObjectType::COMMAND_POOL,
            vk::ObjectType::DESCRIPTOR_SET => vk::ObjectType::DESCRIPTOR_POOL,
            _ => return Some(parent),
        };
        let pool = self.guest_id(pool_ty, parent)?;
        Some(self.objects.get(&pool)?.parent)
    }

    pub(crate) fn add_instance(&mut self, raw: u64, state: Arc<InstanceState>) {
        self.instances.insert(raw, state);
    }

    pub(crate) fn add_physical(&mut self, raw: u64, owner: Arc<InstanceState>) {
        self.physical.insert(raw, owner);
    }

    pub(crate) fn add_device(&mut self, raw: u64, state: Arc<DeviceState>) {
        self.devices.insert(raw, state);
    }

    pub(crate) fn add_dispatchable(&mut self, raw: u64, owner: Arc<DeviceState>) {
        self.dispatchable.insert(raw, owner);
    }

    /// Registers a host queue of `device` (idempotent) and, with `ring`, binds that
    /// timeline to it. A ring already bound to another queue is refused.
    pub(crate) fn add_queue(&mut self, device: u64, queue: u64, ring: Option<u32>) -> Result<()> {
        if let Some(ring) = ring {
            match self.timelines.get(&ring) {
                Some(&(_, q)) if q != queue => {
                    return Err(VenusError::Invalid(
                        "ringIdx already bound to another queue",
                    ))
                }
                _ => {
                    self.timelines.insert(ring, (device, queue));
                }
            }
        }
        self.queue_locks
            .entry(queue)
            .or_insert_with(|| (device, Arc::default()));
        Ok(())
    }

    /// A live queue and its lock.
    pub(crate) fn queue(&self, queue: u64) -> Option<QueueRef> {
        let (device, lock) = self.queue_locks.get(&queue)?;
        Some(QueueRef {
            device: self.devices.get(device)?.clone(),
            queue: vk::Handle::from_raw(queue),
            lock: Arc::clone(lock),
        })
    }

    /// Every registered queue of `device`.
    pub(crate) fn queues_of(&self, device: u64) -> Vec<QueueRef> {
        self.queue_locks
            .iter()
            .filter(|(_, (d, _))| *d == device)
            .filter_map(|(&q, _)| self.queue(q))
            .collect()
    }

    /// The queue bound to timeline `ring`, if any.
    pub(crate) fn timeline_queue(&self, ring: u32) -> Option<QueueRef> {
        let &(_, queue) = self.timelines.get(&ring)?;
        self.queue(queue)
    }

    /// Removes and returns the submission locks of `device`'s queues (taken by the
    /// destroyer to wait out submissions in progress).
    pub(crate) fn take_queue_locks(&mut self, device: u64) -> Vec<Arc<Mutex<()>>> {
        let mut out = Vec::new();
        self.queue_locks.retain(|_, (d, lock)| {
            if *d == device {
                out.push(Arc::clone(lock));
                false
            } else {
                true
            }
        });
        out
    }

    /// Whether `device` is still live.
    pub(crate) fn has_device(&self, device: u64) -> bool {
        self.devices.contains_key(&device)
    }

    pub(crate) fn instance(&self, h: vk::Instance) -> Result<Arc<InstanceState>> {
        let raw = vk::Handle::as_raw(h);
        self.instances
            .get(&raw)
            .cloned()
            .ok_or(VenusError::NoState {
                ty: vk::ObjectType::INSTANCE,
                raw,
            })
    }

    pub(crate) fn physical(&self, h: vk::PhysicalDevice) -> Result<Arc<InstanceState>> {
        let raw = vk::Handle::as_raw(h);
        self.physical.get(&raw).cloned().ok_or(VenusError::NoState {
            ty: vk::ObjectType::PHYSICAL_DEVICE,
            raw,
        })
    }

    pub(crate) fn device(&self, h: vk::Device) -> Result<Arc<DeviceState>> {
        let raw = vk::Handle::as_raw(h);
        self.devices.get(&raw).cloned().ok_or(VenusError::NoState {
            ty: vk::ObjectType::DEVICE,
            raw,
        })
    }

    pub(crate) fn device_of(&self, ty: vk::ObjectType, raw: u64) -> Result<Arc<DeviceState>> {
        self.dispatchable
            .get(&raw)
            .cloned()
            .ok_or(VenusError::NoState { ty, raw })
    }

    /// Takes the mappings of `device`'s host-visible memory out of the tables (before
    /// [`State::remove_device`], which would drop them), to be kept until the device
    /// itself is destroyed.
    pub(crate) fn take_memories_of(&mut self, device: u64) -> Vec<Arc<HostMemory>> {
        let ids: Vec<u64> = self
            .objects
            .iter()
            .filter(|(_, o)| o.parent == device && o.ty == vk::ObjectType::DEVICE_MEMORY)
            .map(|(&id, _)| id)
            .collect();
        ids.iter()
            .filter_map(|id| self.memories.remove(id))
            .collect()
    }

    /// Removes a device and every table entry of its children (the host objects must
    /// already be gone or be destroyed by the caller).
    pub(crate) fn remove_device(&mut self, raw: u64) -> Option<Arc<DeviceState>> {
        let dev = self.devices.remove(&raw)?;
        self.timelines.retain(|_, (d, _)| *d != raw);
        let owned: Vec<(vk::ObjectType, u64)> = self
            .objects
            .values()
            .filter(|o| o.parent == raw)
            .map(|o| (o.ty, o.raw))
            .collect();
        for (ty, child) in owned {
            // Grandchildren (command buffers, descriptor sets) hang off pools.
            self.unbind_children(vk::ObjectType::COMMAND_BUFFER, child);
            self.unbind_children(vk::ObjectType::DESCRIPTOR_SET, child);
            self.unbind(ty, child);
        }
        self.unbind(vk::ObjectType::DEVICE, raw);
        Some(dev)
    }

    /// Removes an instance, its physical devices and its table entries.
    pub(crate) fn remove_instance(&mut self, raw: u64) -> Option<Arc<InstanceState>> {
        let inst = self.instances.remove(&raw)?;
        let phys: Vec<u64> = self
            .physical
            .iter()
            .filter(|(_, owner)| Arc::ptr_eq(owner, &inst))
            .map(|(&p, _)| p)
            .collect();
        for p in phys {
            self.physical.remove(&p);
            self.unbind(vk::ObjectType::PHYSICAL_DEVICE, p);
        }
        self.unbind(vk::ObjectType::INSTANCE, raw);
        Some(inst)
    }

    /// Destroys everything the guest left behind: per device, wait idle, destroy its
    /// children in dependency order, destroy it; then the instances.
    pub(crate) fn teardown(mut self) {
        // Memory mappings go only after their devices (and so their allocations) are gone.
        let memories = std::mem::take(&mut self.memories);
        let devices: Vec<u64> = self.devices.keys().copied().collect();
        let mut leaked_devices = false;
        for raw in devices {
            let children: Vec<Object> = self
                .objects
                .values()
                .filter(|o| o.parent == raw)
                .copied()
                .collect();
            let queues: Vec<vk::Queue> = self.queues_of(raw).iter().map(|q| q.queue).collect();
            // Taken out before the tables forget the memory (which would credit it).
            let memory_ids: Vec<u64> = children
                .iter()
                .filter(|o| o.ty == vk::ObjectType::DEVICE_MEMORY)
                .filter_map(|o| self.guest_id(o.ty, o.raw))
                .collect();
            let charges: Vec<MemoryCharge> = memory_ids
                .iter()
                .filter_map(|id| self.charges.remove(id))
                .collect();
            let Some(dev) = self.remove_device(raw) else {
                continue;
            };
            // The device's lifetime handles, out of the tables with their entries.
            let handles = self.take_graveyard();
            if !destroy_device_tree(&dev, &queues, children, handles) {
                std::mem::forget(dev);
                leaked_devices = true;
                continue;
            }
            if Arc::strong_count(&dev) > 1 {
                // Still referenced (a reference cycle through command buffers that
                // execute each other): leak it rather than destroy it too early.
                log::warn!("venus: a device is still referenced at teardown; leaking it");
                std::mem::forget(dev);
                leaked_devices = true;
                // The leaked memory stays charged to the VM: it is still held.
                std::mem::forget(charges);
            }
            // Otherwise the last reference drops here and destroys the device.
        }
        if leaked_devices {
            // Destroying an instance with a live device is undefined; keep both (and
            // their memory mappings, which the leaked device may still use).
            std::mem::forget(memories);
            std::mem::forget(self.instances);
            return;
        }
        drop(memories);
        let instances: Vec<u64> = self.instances.keys().copied().collect();
        for raw in instances {
            // Every device of this context was destroyed above: the last reference
            // drops here and destroys the host instance (`InstanceState`'s `Drop`).
            drop(self.remove_instance(raw));
        }
    }
}

/// Whether objects of type `ty` get a [`HostObject`] (device children; instances,
/// physical devices, devices and queues have their own lifetimes).
fn has_host_object(ty: vk::ObjectType) -> bool {
    !matches!(
        ty,
        vk::ObjectType::INSTANCE
            | vk::ObjectType::PHYSICAL_DEVICE
            | vk::ObjectType::DEVICE
            | vk::ObjectType::QUEUE
    )
}

/// Order in which leftover objects are destroyed (users before what they use).
const TEARDOWN_ORDER: &[vk::ObjectType] = &[
    vk::ObjectType::COMMAND_POOL,
    vk::ObjectType::PIPELINE,
    vk::ObjectType::PIPELINE_LAYOUT,
    vk::ObjectType::PIPELINE_CACHE,
    vk::ObjectType::SHADER_MODULE,
    vk::ObjectType::FRAMEBUFFER,
    vk::ObjectType::RENDER_PASS,
    vk::ObjectType::DESCRIPTOR_POOL,
    vk::ObjectType::DESCRIPTOR_UPDATE_TEMPLATE,
    vk::ObjectType::DESCRIPTOR_SET_LAYOUT,
    vk::ObjectType::SAMPLER,
    vk::ObjectType::SAMPLER_YCBCR_CONVERSION,
    vk::ObjectType::PRIVATE_DATA_SLOT,
    vk::ObjectType::QUERY_POOL,
    vk::ObjectType::EVENT,
    vk::ObjectType::SEMAPHORE,
    vk::ObjectType::FENCE,
    vk::ObjectType::BUFFER_VIEW,
    vk::ObjectType::IMAGE_VIEW,
    vk::ObjectType::BUFFER,
    vk::ObjectType::IMAGE,
    vk::ObjectType::DEVICE_MEMORY,
];

/// Destroys a device and its children once its queues drained; false (and nothing
/// destroyed: the device and its objects are leaked) if they did not within
/// [`DRAIN_LIMIT`](super::retire::DRAIN_LIMIT) — a guest can block a queue forever
/// (a wait on a semaphore it never signals), and destroying a device with a busy queue
/// hangs or crashes the host driver, which would harm every other context.
fn destroy_device_tree(
    dev: &DeviceState,
    queues: &[vk::Queue],
    children: Vec<Object>,
    handles: Vec<Arc<HostObject>>,
) -> bool {
    if !super::retire::drain_queues(dev, queues, super::retire::DRAIN_LIMIT) {
        // Leak the objects the guest destroyed too: their host calls would run under
        // the running work.
        std::mem::forget(handles);
        log::warn!(
            "venus: a device's queue did not drain within {:?}; leaking the device and its \
             objects instead of destroying them under running work",
            super::retire::DRAIN_LIMIT
        );
        return false;
    }
    // The device is idle: objects the guest destroyed while others still held them
    // (memory freed before its buffer, a set freed under a recorded command buffer)
    // go first, while the pools and objects they name still exist.
    drop(handles);
    for ty in TEARDOWN_ORDER {
        for o in children.iter().filter(|o| o.ty == *ty) {
            // SAFETY: each handle is a live host object of type `ty` created from `d`
            // by this context and removed from the tables above, so no other command
            // can use it; the device is idle, so the GPU no longer uses it either, and
            // dependents were destroyed earlier in TEARDOWN_ORDER.
            unsafe { destroy_object(dev, o.ty, o.raw) };
        }
    }
    // The device itself is destroyed when its last reference drops (`DeviceState`'s
    // `Drop`), after every child.
    true
}

/// Destroys one device child by type.
///
/// One `unsafe` block covers the dispatch on the type: every arm is a single destroy
/// call under the same contract.
///
/// # Safety
///
/// `raw` must be a live host object of type `ty` created from `dev`, not in use.
#[allow(clippy::multiple_unsafe_ops_per_block)] // one destroy call per match arm
unsafe fn destroy_object(dev: &DeviceState, ty: vk::ObjectType, raw: u64) {
    use vk::Handle;
    let d = &dev.device;
    let handle = d.handle();
    // SAFETY: forwarded from the caller for every arm.
    unsafe {
        match ty {
            vk::ObjectType::COMMAND_POOL => {
                d.destroy_command_pool(vk::CommandPool::from_raw(raw), None)
            }
            vk::ObjectType::PIPELINE => d.destroy_pipeline(vk::Pipeline::from_raw(raw), None),
            vk::ObjectType::PIPELINE_LAYOUT => {
                d.destroy_pipeline_layout(vk::PipelineLayout::from_raw(raw), None);
            }
            vk::ObjectType::PIPELINE_CACHE => {
                d.destroy_pipeline_cache(vk::PipelineCache::from_raw(raw), None);
            }
            vk::ObjectType::SHADER_MODULE => {
                d.destroy_shader_module(vk::ShaderModule::from_raw(raw), None);
            }
            vk::ObjectType::FRAMEBUFFER => {
                d.destroy_framebuffer(vk::Framebuffer::from_raw(raw), None)
            }
            vk::ObjectType::RENDER_PASS => {
                d.destroy_render_pass(vk::RenderPass::from_raw(raw), None)
            }
            vk::ObjectType::DESCRIPTOR_POOL => {
                d.destroy_descriptor_pool(vk::DescriptorPool::from_raw(raw), None);
            }
            vk::ObjectType::DESCRIPTOR_UPDATE_TEMPLATE => d.destroy_descriptor_update_template(
                vk::DescriptorUpdateTemplate::from_raw(raw),
                None,
            ),
            vk::ObjectType::DESCRIPTOR_SET_LAYOUT => {
                d.destroy_descriptor_set_layout(vk::DescriptorSetLayout::from_raw(raw), None);
            }
            vk::ObjectType::SAMPLER => d.destroy_sampler(vk::Sampler::from_raw(raw), None),
            vk::ObjectType::QUERY_POOL => d.destroy_query_pool(vk::QueryPool::from_raw(raw), None),
            vk::ObjectType::EVENT => d.destroy_event(vk::Event::from_raw(raw), None),
            vk::ObjectType::SEMAPHORE => d.destroy_semaphore(vk::Semaphore::from_raw(raw), None),
            vk::ObjectType::FENCE => d.destroy_fence(vk::Fence::from_raw(raw), None),
            vk::ObjectType::BUFFER_VIEW => {
                d.destroy_buffer_view(vk::BufferView::from_raw(raw), None)
            }
            vk::ObjectType::IMAGE_VIEW => d.destroy_image_view(vk::ImageView::from_raw(raw), None),
            vk::ObjectType::BUFFER => d.destroy_buffer(vk::Buffer::from_raw(raw), None),
            vk::ObjectType::IMAGE => d.destroy_image(vk::Image::from_raw(raw), None),
            vk::ObjectType::DEVICE_MEMORY => d.free_memory(vk::DeviceMemory::from_raw(raw), None),
            vk::ObjectType::SAMPLER_YCBCR_CONVERSION => {
                if let Some(f) = dev.fns.destroy_sampler_ycbcr_conversion {
                    f(
                        handle,
                        vk::SamplerYcbcrConversion::from_raw(raw),
                        std::ptr::null(),
                    );
                }
            }
            vk::ObjectType::PRIVATE_DATA_SLOT => {
                if let Some(f) = dev.fns.destroy_private_data_slot {
                    f(handle, vk::PrivateDataSlot::from_raw(raw), std::ptr::null());
                }
            }
            _ => {}
        }
    }
}

/// The bit of a bind point in `State::bound_pipelines` (graphics, compute; the ray
/// tracing point and others the protocol cannot reach have none).
fn bind_point_bit(point: vk::PipelineBindPoint) -> Option<u32> {
    match point {
        vk::PipelineBindPoint::GRAPHICS => Some(1),
        vk::PipelineBindPoint::COMPUTE => Some(2),
        _ => None,
    }
}
