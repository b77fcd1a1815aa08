//! Device creation (guest extensions the host lacks or the renderer emulates are
//! stripped, the renderer's own host extensions injected, robustness features forced
//! on: `robustness.rs`), queues, destruction.

use std::ffi::{c_char, CStr};
use std::sync::{Arc, PoisonError};

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    CreateDeviceArgs, DestroyDeviceArgs, DeviceWaitIdleArgs, GetDeviceQueue2Args,
    GetDeviceQueueArgs,
};
use vulkan_proto::args::{
    GetCalibratedTimestampsEXTArgs, GetDeviceGroupPeerMemoryFeaturesArgs, GetPrivateDataArgs,
    SetPrivateDataArgs,
};

use super::fns::DeviceFns;
use super::instance::has_extension;
use super::objects::DeviceState;
use super::physical_device::{required, EMULATED_DEVICE_EXTENSIONS, HOST_DEVICE_EXTENSIONS};
use super::robustness::{self, Forced, HostRobustness, ROBUSTNESS2};
use super::stamps::Stamps;
use super::{raw, Handler, Limit, Result, VenusError};

/// Timelines a context may bind (virtio-gpu ring_idx 0..=63).
const MAX_RING_IDX: u32 = 64;

/// `VK_STRUCTURE_TYPE_DEVICE_QUEUE_TIMELINE_INFO_MESA`.
pub(super) const STYPE_DEVICE_QUEUE_TIMELINE_INFO_MESA: vk::StructureType =
    vk::StructureType::from_raw(1_000_384_005);

impl Handler<'_, '_> {
    pub(super) fn create_device(&mut self, args: &mut CreateDeviceArgs<'_>) -> Result<vk::Result> {
        let id = self.new_id(args.p_device.as_deref())?;
        let max = self.exec.account.limits().max_devices as usize;
        if self.lock().device_count() >= max {
            return Err(self.limit_reached(Limit::Devices));
        }
        let pd = args.physical_device;
        let inst = self.physical(pd)?;
        let guest = required(args.p_create_info, "pCreateInfo")?;
        // SAFETY: live physical device.
        let host_exts = match unsafe { inst.instance.enumerate_device_extension_properties(pd) } {
            Ok(v) => v,
            Err(e) => return Ok(e),
        };
        // SAFETY: the names array was decoded into this command's arena with this count.
        let wanted = unsafe {
            raw::cstr_array(
                guest.pp_enabled_extension_names,
                guest.enabled_extension_count,
            )
        };
        let mut names: Vec<&CStr> = wanted
            .into_iter()
            .filter(|n| !EMULATED_DEVICE_EXTENSIONS.contains(n) && has_extension(&host_exts, n))
            .collect();
        for ext in HOST_DEVICE_EXTENSIONS {
            if has_extension(&host_exts, ext) && !names.contains(ext) {
                names.push(ext);
            }
        }
        let robust = HostRobustness::query(&inst, pd, &host_exts);
        if robust.needs_robustness2() && !names.contains(&ROBUSTNESS2) {
            names.push(ROBUSTNESS2);
        }
        let host_pointer_import = names.contains(&c"VK_EXT_external_memory_host");
        let ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut info = *guest;
        // Device layers are deprecated and ignored by the loader; Mesa never sends any.
        info.enabled_extension_count = u32::try_from(ptrs.len()).unwrap_or(0);
        info.pp_enabled_extension_names = ptrs.as_ptr();
        let mut forced = Forced::default();
        // SAFETY: `info` is a copy of the guest's create info, whose chain was decoded
        // into this command's arena and is not borrowed elsewhere; `forced` stays in
        // place until vkCreateDevice returns.
        unsafe { robustness::force(&mut info, &robust, &mut forced) };
        log::debug!(
            "venus: {}: host device robustness {robust:?}",
            self.exec.ctx
        );
        // SAFETY: live physical device; `info`, its queue infos and chains (arena) and
        // `ptrs` (pointing at arena strings and 'static names) live across the call.
        let device = match unsafe { inst.instance.create_device(pd, &info, None) } {
            Ok(d) => d,
            Err(e) => return Ok(e),
        };
        // SAFETY: live physical device.
        let memory = unsafe { inst.instance.get_physical_device_memory_properties(pd) };
        let mut host_props = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
        if host_pointer_import {
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut host_props);
            // SAFETY: live physical device; the chain is a local, well-formed one.
            unsafe { inst.instance.get_physical_device_properties2(pd, &mut p2) };
        }
        let queues = if guest.p_queue_create_infos.is_null() {
            Vec::new()
        } else {
            // SAFETY: the queue create infos were decoded into the arena with this count.
            unsafe {
                std::slice::from_raw_parts(
                    guest.p_queue_create_infos,
                    guest.queue_create_info_count as usize,
                )
            }
            .iter()
            .map(|q| (q.queue_family_index, q.queue_count, q.flags))
            .collect()
        };
        // SAFETY: live physical device.
        let pd_props = unsafe { inst.instance.get_physical_device_properties(pd) };
        let limits = pd_props.limits;
        let mut xfb = vk::PhysicalDeviceTransformFeedbackPropertiesEXT::default();
        let has_xfb = names.contains(&c"VK_EXT_transform_feedback");
        if has_xfb {
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut xfb);
            // SAFETY: live physical device; the chain is a local, well-formed one.
            unsafe { inst.instance.get_physical_device_properties2(pd, &mut p2) };
        }
        let fns = DeviceFns::load(&inst.instance, device.handle());
        // SAFETY: live physical device.
        let families = unsafe {
            inst.instance
                .get_physical_device_queue_family_properties(pd)
        };
        let stamps = Stamps::new(
            families.iter().map(|f| f.timestamp_valid_bits).collect(),
            limits.timestamp_period,
        );
        let raw_dev = device.handle().as_raw();
        let state = Arc::new(DeviceState {
            device,
            _instance: Arc::clone(&inst),
            memory,
            host_pointer_import,
            min_import_alignment: host_props.min_imported_host_pointer_alignment.max(4096),
            queues,
            limits,
            max_xfb_buffers: if has_xfb {
                xfb.max_transform_feedback_buffers
            } else {
                0
            },
            fns,
            orphan_memories: std::sync::Mutex::default(),
            api_version: inst.api_version.min(pd_props.api_version),
            stamps,
        });
        let mut st = self.lock();
        // Checked again under the lock: another stream may have created one meanwhile.
        let bound = if st.device_count() >= max {
            Err(self.limit_reached(Limit::Devices))
        } else {
            st.bind(
                id,
                vk::ObjectType::DEVICE,
                raw_dev,
                inst.instance.handle().as_raw(),
            )
        };
        if let Err(e) = bound {
            drop(st);
            // The only reference: dropping it destroys the device nothing else knows.
            drop(state);
            return Err(e);
        }
        st.add_device(raw_dev, state);
        Ok(vk::Result::SUCCESS)
    }

    pub(super) fn destroy_device(&mut self, args: &mut DestroyDeviceArgs<'_>) -> Result<()> {
        let raw_dev = args.device.as_raw();
        if raw_dev == 0 {
            return Ok(());
        }
        let (dev, queues, queue_locks) = {
            let mut st = self.lock();
            if !st.has_device(raw_dev) {
                return Err(VenusError::NoState {
                    ty: vk::ObjectType::DEVICE,
                    raw: raw_dev,
                });
            }
            let queues: Vec<vk::Queue> = st.queues_of(raw_dev).iter().map(|q| q.queue).collect();
            // Memory the guest did not free stays imported until the host device is
            // destroyed, and its pending work may still write it: the mappings go with
            // the device, not with the table entries (unmapping them here was a
            // SIGSEGV in lavapipe's queue thread).
            let memories = st.take_memories_of(raw_dev);
            let dev = st.remove_device(raw_dev).ok_or(VenusError::NoState {
                ty: vk::ObjectType::DEVICE,
                raw: raw_dev,
            })?;
            dev.orphan_memories
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(memories);
            (dev, queues, st.take_queue_locks(raw_dev))
        };
        // Wait out submissions in progress on other threads (they re-check that the
        // device is live under these locks), then the ring fences queued on it.
        let guards: Vec<_> = queue_locks
            .iter()
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        self.exec.retirer.flush_device(raw_dev);
        if !super::retire::drain_queues(&dev, &queues, super::retire::DRAIN_LIMIT) {
            // Valid usage requires idle queues here; destroying a device under running
            // work hangs or crashes the driver, so this guest's device is leaked.
            log::warn!(
                "venus: {}: vkDestroyDevice with a queue that does not drain; leaking it",
                self.exec.ctx
            );
            std::mem::forget(dev);
            return Ok(());
        }
        // The device is out of the tables, no submission is in progress or can start
        // (the locks are held and the device is gone from the tables), and its fences
        // are retired. The host device is destroyed when the last reference drops:
        // here, or after the last child a command on another ring still holds.
        drop(dev);
        drop(guards);
        Ok(())
    }

    pub(super) fn device_wait_idle(
        &mut self,
        args: &mut DeviceWaitIdleArgs<'_>,
    ) -> Result<vk::Result> {
        self.device(args.device)?;
        // Every queue of the device, one after the other, each wait sliced so a
        // stopping context gives up (see `wait_queue_idle`).
        let queues = self.lock().queues_of(args.device.as_raw());
        for q in queues {
            let r = self.wait_queue_idle(&q);
            if r != vk::Result::SUCCESS {
                return Ok(r);
            }
        }
        Ok(vk::Result::SUCCESS)
    }

    pub(super) fn get_device_queue(&mut self, _args: &mut GetDeviceQueueArgs<'_>) -> Result<()> {
        // As in vkr: queues must carry their ring through vkGetDeviceQueue2.
        Err(VenusError::Unsupported(
            "vkGetDeviceQueue (Venus guests use vkGetDeviceQueue2)",
        ))
    }

    pub(super) fn get_device_queue2(&mut self, args: &mut GetDeviceQueue2Args<'_>) -> Result<()> {
        let id = self.new_id(args.p_queue.as_deref())?;
        let dev = self.device(args.device)?;
        let guest = required(args.p_queue_info, "pQueueInfo")?;
        let known = dev.queues.iter().any(|&(family, count, flags)| {
            family == guest.queue_family_index && guest.queue_index < count && flags == guest.flags
        });
        if !known {
            return Err(VenusError::Invalid(
                "vkGetDeviceQueue2 for a queue the device lacks",
            ));
        }
        let mut info = *guest;
        // The ring index names the queue's fence timeline (virtio-gpu ring_idx); the
        // host driver must not see the MESA struct.
        // SAFETY: the chain was decoded into this command's arena and is not borrowed.
        let ring = unsafe { raw::queue_timeline_ring(info.p_next) };
        if ring.is_some_and(|r| r >= MAX_RING_IDX) {
            return Err(VenusError::Invalid("ringIdx above the timeline count"));
        }
        // SAFETY: as above.
        info.p_next =
            unsafe { raw::strip_chain(info.p_next, &[STYPE_DEVICE_QUEUE_TIMELINE_INFO_MESA]) };
        // SAFETY: live device; `info` is well formed. An out-of-range family/index is
        // the guest's valid-usage violation, which lavapipe answers with NULL.
        let queue = unsafe { dev.device.get_device_queue2(&info) };
        if queue == vk::Queue::null() {
            return Err(VenusError::Invalid("no such queue"));
        }
        dev.stamps.register(queue.as_raw(), info.queue_family_index);
        let mut st = self.lock();
        st.add_queue(args.device.as_raw(), queue.as_raw(), ring)?;
        st.bind(
            id,
            vk::ObjectType::QUEUE,
            queue.as_raw(),
            args.device.as_raw(),
        )?;
        st.add_dispatchable(queue.as_raw(), dev);
        Ok(())
    }
}

/// Object types that private data may be attached to through a device (everything
/// but instances, physical devices and the device itself, handled apart).
fn private_data_target(ty: vk::ObjectType) -> bool {
    !matches!(
        ty,
        vk::ObjectType::UNKNOWN | vk::ObjectType::INSTANCE | vk::ObjectType::PHYSICAL_DEVICE
    )
}

impl Handler<'_, '_> {
    /// The host handle of the object a private-data command names by guest id and
    /// type, checked to be `device` or one of its children.
    fn private_data_object(
        &self,
        device: vk::Device,
        ty: vk::ObjectType,
        id: u64,
        slot: vk::PrivateDataSlot,
    ) -> Result<u64> {
        if !private_data_target(ty) {
            return Err(VenusError::Invalid("private data on a non-device object"));
        }
        let st = self.lock();
        let raw = st
            .lookup(ty, id)
            .filter(|&r| r != 0)
            .ok_or(VenusError::Invalid("private data on an unknown object"))?;
        let dev = device.as_raw();
        let owned = if ty == vk::ObjectType::DEVICE {
            raw == dev
        } else {
            st.owner_device(ty, raw) == Some(dev)
        };
        if !owned || st.owner_device(vk::ObjectType::PRIVATE_DATA_SLOT, slot.as_raw()) != Some(dev)
        {
            return Err(VenusError::ForeignHandle(ty));
        }
        Ok(raw)
    }

    pub(super) fn set_private_data(
        &mut self,
        args: &mut SetPrivateDataArgs<'_>,
    ) -> Result<vk::Result> {
        let (dev, f) = self.dev_fn(args.device, |t| t.set_private_data, "vkSetPrivateData")?;
        let raw = self.private_data_object(
            args.device,
            args.object_type,
            args.object_handle,
            args.private_data_slot,
        )?;
        // SAFETY: live device, slot and object of this device.
        Ok(unsafe {
            f(
                dev.device.handle(),
                args.object_type,
                raw,
                args.private_data_slot,
                args.data,
            )
        })
    }

    pub(super) fn get_private_data(&mut self, args: &mut GetPrivateDataArgs<'_>) -> Result<()> {
        let (dev, f) = self.dev_fn(args.device, |t| t.get_private_data, "vkGetPrivateData")?;
        let raw = self.private_data_object(
            args.device,
            args.object_type,
            args.object_handle,
            args.private_data_slot,
        )?;
        let out = required(args.p_data.as_deref_mut(), "pData")?;
        // SAFETY: live device, slot and object of this device; `out` lives in the arena.
        unsafe {
            f(
                dev.device.handle(),
                args.object_type,
                raw,
                args.private_data_slot,
                out,
            );
        }
        Ok(())
    }

    pub(super) fn get_device_group_peer_memory_features(
        &mut self,
        args: &mut GetDeviceGroupPeerMemoryFeaturesArgs<'_>,
    ) -> Result<()> {
        let out = required(
            args.p_peer_memory_features.as_deref_mut(),
            "pPeerMemoryFeatures",
        )?;
        let (dev, f) = self.dev_fn(
            args.device,
            |t| t.get_device_group_peer_memory_features,
            "vkGetDeviceGroupPeerMemoryFeatures",
        )?;
        // Devices are created from one physical device each.
        if args.heap_index >= dev.memory.memory_heap_count
            || args.local_device_index != 0
            || args.remote_device_index != 0
        {
            return Err(VenusError::Invalid("heap or device index out of range"));
        }
        // SAFETY: live device; indices in range; `out` lives in the arena.
        unsafe {
            f(
                dev.device.handle(),
                args.heap_index,
                args.local_device_index,
                args.remote_device_index,
                out,
            );
        }
        Ok(())
    }

    pub(super) fn get_calibrated_timestamps_ext(
        &mut self,
        args: &mut GetCalibratedTimestampsEXTArgs<'_>,
    ) -> Result<vk::Result> {
        let infos = args.p_timestamp_infos.unwrap_or(&[]);
        let out = required(args.p_timestamps.as_deref_mut(), "pTimestamps")?;
        let n = infos.len();
        if out.len() != n || n != args.timestamp_count as usize {
            return Err(VenusError::Invalid(
                "timestamp arrays differ from timestampCount",
            ));
        }
        let out = out.as_mut_ptr();
        let dev_ptr = required(args.p_max_deviation.as_deref_mut(), "pMaxDeviation")?;
        let (dev, f) = self.dev_fn(
            args.device,
            |t| t.get_calibrated_timestamps_ext,
            "vkGetCalibratedTimestampsEXT",
        )?;
        // SAFETY: live device; both arrays hold timestampCount elements in the arena.
        Ok(unsafe {
            f(
                dev.device.handle(),
                args.timestamp_count,
                infos.as_ptr(),
                out,
                dev_ptr,
            )
        })
    }
}
