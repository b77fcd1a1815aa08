//! Descriptor set layouts, pools, sets, updates and update templates.

use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    AllocateDescriptorSetsArgs, CreateDescriptorSetLayoutArgs, DestroyDescriptorPoolArgs,
    FreeDescriptorSetsArgs, ResetDescriptorPoolArgs, UpdateDescriptorSetsArgs,
};

use super::bounds::{self, SetLayoutInfo};
use super::lifetime::HostObject;
use super::physical_device::required;
use super::{raw, Handler, Result, VenusError};

/// Rejects writes whose descriptor type needs an array the guest did not send (the
/// driver would read through NULL).
pub(super) fn check_write(w: &vk::WriteDescriptorSet<'_>) -> Result<()> {
    use vk::DescriptorType as T;
    if w.descriptor_count == 0 {
        return Ok(());
    }
    let ok = match w.descriptor_type {
        T::SAMPLER
        | T::COMBINED_IMAGE_SAMPLER
        | T::SAMPLED_IMAGE
        | T::STORAGE_IMAGE
        | T::INPUT_ATTACHMENT => !w.p_image_info.is_null(),
        T::UNIFORM_BUFFER
        | T::STORAGE_BUFFER
        | T::UNIFORM_BUFFER_DYNAMIC
        | T::STORAGE_BUFFER_DYNAMIC => !w.p_buffer_info.is_null(),
        T::UNIFORM_TEXEL_BUFFER | T::STORAGE_TEXEL_BUFFER => !w.p_texel_buffer_view.is_null(),
        T::INLINE_UNIFORM_BLOCK => !w.p_next.is_null(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(VenusError::Invalid(
            "descriptor write without the array its type needs",
        ))
    }
}

impl Handler<'_, '_> {
    pub(super) fn create_descriptor_set_layout(
        &mut self,
        args: &mut CreateDescriptorSetLayoutArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        let id = self.new_id(args.p_set_layout.as_deref())?;
        // SAFETY: the decoder built `pBindings` with `bindingCount` entries in the arena.
        let bindings = unsafe { bounds::regions(info.p_bindings, info.binding_count) };
        // SAFETY: the chain was decoded into this command's arena.
        let flags = unsafe {
            raw::find_in_chain(
                info.p_next,
                vk::StructureType::DESCRIPTOR_SET_LAYOUT_BINDING_FLAGS_CREATE_INFO,
            )
        }
        .cast::<vk::DescriptorSetLayoutBindingFlagsCreateInfo<'_>>();
        // SAFETY: NULL or the flags struct (its sType) in the arena, with its array.
        let flags = match unsafe { flags.as_ref() } {
            // SAFETY: as above.
            Some(f) => unsafe { bounds::regions(f.p_binding_flags, f.binding_count) },
            None => &[],
        };
        let layout = SetLayoutInfo::new(bindings, flags);
        // SAFETY: live device; `info` lives in the arena with translated samplers.
        let r = self.create_child(args.device, args.p_set_layout.as_deref(), |d| unsafe {
            d.device.create_descriptor_set_layout(info, None)
        })?;
        self.lock().set_set_layout_info(id, layout);
        Ok(r)
    }

    /// Checks every write and copy against the bindings of its sets.
    fn check_updates(
        &self,
        writes: &[vk::WriteDescriptorSet<'_>],
        copies: &[vk::CopyDescriptorSet<'_>],
    ) -> Result<()> {
        let st = self.lock();
        let set = |h: vk::DescriptorSet| {
            st.descriptor_set_info(h.as_raw())
                .ok_or(VenusError::Invalid("descriptor update of an unknown set"))
        };
        for w in writes {
            check_write(w)?;
            let (layout, variable) = set(w.dst_set)?;
            layout.check_span(
                w.dst_binding,
                w.dst_array_element,
                w.descriptor_count,
                Some(w.descriptor_type),
                variable,
            )?;
        }
        for c in copies {
            let (src, src_var) = set(c.src_set)?;
            let (dst, dst_var) = set(c.dst_set)?;
            let a = src.check_span(
                c.src_binding,
                c.src_array_element,
                c.descriptor_count,
                None,
                src_var,
            )?;
            let b = dst.check_span(
                c.dst_binding,
                c.dst_array_element,
                c.descriptor_count,
                Some(a),
                dst_var,
            )?;
            if a != b {
                return Err(VenusError::Invalid("descriptor copy between types"));
            }
        }
        Ok(())
    }

    pub(super) fn destroy_descriptor_pool(
        &mut self,
        args: &mut DestroyDescriptorPoolArgs<'_>,
    ) -> Result<()> {
        let pool = args.descriptor_pool.as_raw();
        // The sets leave the tables with no host call of their own (destroying the
        // pool frees them); each holds the pool, so a set in use keeps it alive.
        self.lock()
            .unbind_children(vk::ObjectType::DESCRIPTOR_SET, pool);
        // SAFETY: a live pool of this device, now out of the tables with its sets,
        // none of which is used any more when the last reference drops.
        self.destroy_child(args.device, args.descriptor_pool, |d, h| unsafe {
            d.device.destroy_descriptor_pool(h, None);
        })
    }

    pub(super) fn reset_descriptor_pool(
        &mut self,
        args: &mut ResetDescriptorPoolArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let pool = args.descriptor_pool.as_raw();
        // Every set of the pool still alive on the host, freed ones a command buffer
        // or submission still holds included.
        let sets = self
            .pinned(vk::ObjectType::DESCRIPTOR_POOL, pool)
            .map(|p| p.children())
            .unwrap_or_default();
        // Resetting frees every set at once: not under running work.
        let r = self.reset_exclusive(
            &sets,
            "descriptor pool reset while a set of it is in use by a pending submission",
            || {
                self.lock()
                    .unbind_children(vk::ObjectType::DESCRIPTOR_SET, pool);
                // The reset frees those too.
                if let Some(p) = self.pinned(vk::ObjectType::DESCRIPTOR_POOL, pool) {
                    p.take_freed();
                }
                // SAFETY: live device and pool; no set of it is in use by a pending
                // submission or can be submitted during the call (claimed).
                unsafe {
                    dev.device
                        .reset_descriptor_pool(args.descriptor_pool, args.flags)
                }
            },
        )?;
        // Their slots no longer point anywhere (the host sets are gone).
        // Sets the guest had freed but something still held: the host freed them
        // now, so their deferred free must not run.
        let cleared: Vec<_> = sets
            .iter()
            .map(|s| {
                s.cancel_drop_action();
                s.clear_slots()
            })
            .collect();
        drop(cleared);
        Ok(match r {
            Ok(()) => vk::Result::SUCCESS,
            Err(e) => e,
        })
    }

    pub(super) fn allocate_descriptor_sets(
        &mut self,
        args: &mut AllocateDescriptorSetsArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_allocate_info, "pAllocateInfo")?;
        // Make room first: sets freed earlier whose last holder has let go.
        let _ = self.free_deferred_sets(info.descriptor_pool);
        let slots = required(args.p_descriptor_sets.as_deref(), "pDescriptorSets")?;
        if slots.len() != info.descriptor_set_count as usize {
            return Err(VenusError::Invalid(
                "pDescriptorSets length differs from descriptorSetCount",
            ));
        }
        if info.p_set_layouts.is_null() && info.descriptor_set_count > 0 {
            return Err(VenusError::Null {
                what: "pSetLayouts",
            });
        }
        {
            let st = self.lock();
            for s in slots {
                if s.as_raw() == 0 {
                    return Err(VenusError::ZeroId(vk::ObjectType::DESCRIPTOR_SET));
                }
                st.check_free(s.as_raw())?;
            }
            self.check_room(&st, slots.len())?;
        }
        let ids: Vec<u64> = slots.iter().map(|s| s.as_raw()).collect();
        // SAFETY: the decoder built `pSetLayouts` with `descriptorSetCount` entries.
        let layouts = unsafe { bounds::regions(info.p_set_layouts, info.descriptor_set_count) };
        // SAFETY: the chain was decoded into this command's arena.
        let variable = unsafe {
            raw::find_in_chain(
                info.p_next,
                vk::StructureType::DESCRIPTOR_SET_VARIABLE_DESCRIPTOR_COUNT_ALLOCATE_INFO,
            )
        }
        .cast::<vk::DescriptorSetVariableDescriptorCountAllocateInfo<'_>>();
        // SAFETY: NULL or the struct (its sType) in the arena, with its array.
        let variable = match unsafe { variable.as_ref() } {
            // SAFETY: as above.
            Some(v) => unsafe { bounds::regions(v.p_descriptor_counts, v.descriptor_set_count) },
            None => &[],
        };
        if !variable.is_empty() && variable.len() != layouts.len() {
            return Err(VenusError::Invalid(
                "variable descriptor counts differ from descriptorSetCount",
            ));
        }
        let infos: Vec<_> = {
            let st = self.lock();
            layouts
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let info = st
                        .set_layout_info(l.as_raw())
                        .ok_or(VenusError::Invalid("unknown descriptor set layout"))?;
                    let var = if info.has_variable() {
                        variable.get(i).copied().unwrap_or(0)
                    } else {
                        0
                    };
                    Ok((info, var))
                })
                .collect::<Result<_>>()?
        };
        let dev = self.device(args.device)?;
        // SAFETY: live device; `info` lives in the arena with translated handles.
        match unsafe { dev.device.allocate_descriptor_sets(info) } {
            Ok(sets) => {
                let mut st = self.lock();
                for ((id, s), (layout, var)) in ids.iter().zip(&sets).zip(infos) {
                    st.bind(
                        *id,
                        vk::ObjectType::DESCRIPTOR_SET,
                        s.as_raw(),
                        info.descriptor_pool.as_raw(),
                    )?;
                    st.set_descriptor_set_info(*id, layout, var);
                }
                Ok(vk::Result::SUCCESS)
            }
            Err(e) => Ok(e),
        }
    }

    pub(super) fn free_descriptor_sets(
        &mut self,
        args: &mut FreeDescriptorSetsArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        let sets = args.p_descriptor_sets.unwrap_or(&[]);
        let pool = args.descriptor_pool;
        let hosts: Vec<_> = {
            let mut st = self.lock();
            sets.iter()
                .filter_map(|s| st.unbind_host(vk::ObjectType::DESCRIPTOR_SET, s.as_raw()))
                .collect()
        };
        // Each is freed when its last user lets go (a command buffer that binds it, a
        // pending submission) and the guest next uses the pool (externally
        // synchronized: see `free_deferred_command_buffers`). A set holds its pool, so
        // the pool outlives it.
        if let Some(pool_host) = self.pinned(vk::ObjectType::DESCRIPTOR_POOL, pool.as_raw()) {
            for host in hosts {
                let pool_host = Arc::clone(&pool_host);
                let raw = host.raw;
                host.destroy_on_drop(Box::new(move || pool_host.defer_child_free(raw)));
            }
        }
        drop(dev);
        Ok(self.free_deferred_sets(pool))
    }

    /// Frees on the host the sets of `pool` the guest freed and nothing holds any more
    /// (called by commands that use the pool).
    fn free_deferred_sets(&self, pool: vk::DescriptorPool) -> vk::Result {
        let Some(host) = self.pinned(vk::ObjectType::DESCRIPTOR_POOL, pool.as_raw()) else {
            return vk::Result::SUCCESS;
        };
        let due: Vec<vk::DescriptorSet> = host
            .take_freed()
            .into_iter()
            .map(vk::DescriptorSet::from_raw)
            .collect();
        if due.is_empty() {
            return vk::Result::SUCCESS;
        }
        let Some(dev) = self.pool_device(vk::ObjectType::DESCRIPTOR_POOL, pool.as_raw()) else {
            return vk::Result::SUCCESS;
        };
        // SAFETY: sets of this live pool (pinned for this command, which uses the pool
        // under the guest's external synchronization), out of the tables and unused.
        match unsafe { dev.device.free_descriptor_sets(pool, &due) } {
            Ok(()) => vk::Result::SUCCESS,
            Err(e) => e,
        }
    }

    pub(super) fn update_descriptor_sets(
        &mut self,
        args: &mut UpdateDescriptorSetsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let writes = args.p_descriptor_writes.unwrap_or(&[]);
        let copies = args.p_descriptor_copies.unwrap_or(&[]);
        self.check_updates(writes, copies)?;
        // SAFETY: live device; writes and copies live in the arena with translated
        // handles, and every write has the array its type needs (checked above).
        unsafe { dev.device.update_descriptor_sets(writes, copies) };
        self.record_descriptor_objects(writes, copies);
        Ok(())
    }

    /// Makes each written set hold what its slots now point to (until rewritten or
    /// freed), so a buffer, view or sampler the set still names is not destroyed on
    /// the host while a submission binding the set may run.
    fn record_descriptor_objects(
        &self,
        writes: &[vk::WriteDescriptorSet<'_>],
        copies: &[vk::CopyDescriptorSet<'_>],
    ) {
        let mut old = Vec::new();
        for w in writes {
            let Some(set) = self.pinned(vk::ObjectType::DESCRIPTOR_SET, w.dst_set.as_raw()) else {
                continue;
            };
            for (objects, i) in self.write_objects(w).into_iter().zip(0u32..) {
                let Some(elem) = w.dst_array_element.checked_add(i) else {
                    break;
                };
                old.push(set.write_slot((w.dst_binding, elem), objects));
            }
        }
        for c in copies {
            let src = self.pinned(vk::ObjectType::DESCRIPTOR_SET, c.src_set.as_raw());
            let dst = self.pinned(vk::ObjectType::DESCRIPTOR_SET, c.dst_set.as_raw());
            let (Some(src), Some(dst)) = (src, dst) else {
                continue;
            };
            for i in 0..c.descriptor_count {
                let (Some(s), Some(d)) = (
                    c.src_array_element.checked_add(i),
                    c.dst_array_element.checked_add(i),
                ) else {
                    break;
                };
                let objects = src.slot((c.src_binding, s));
                old.push(dst.write_slot((c.dst_binding, d), objects));
            }
        }
        drop(old);
    }

    /// The pinned objects each element of write `w` points to, one list per element
    /// (none for inline uniform blocks, whose descriptorCount counts bytes).
    fn write_objects(&self, w: &vk::WriteDescriptorSet<'_>) -> Vec<Vec<Arc<HostObject>>> {
        use vk::DescriptorType as T;
        let pin = |ty, raw: u64| self.pinned(ty, raw).into_iter();
        let n = w.descriptor_count;
        match w.descriptor_type {
            T::UNIFORM_BUFFER
            | T::STORAGE_BUFFER
            | T::UNIFORM_BUFFER_DYNAMIC
            | T::STORAGE_BUFFER_DYNAMIC => {
                // SAFETY: check_updates refused a NULL array for these types, and the
                // decoder built it with descriptorCount entries in the arena.
                let infos = unsafe { bounds::regions(w.p_buffer_info, n) };
                infos
                    .iter()
                    .map(|b| pin(vk::ObjectType::BUFFER, b.buffer.as_raw()).collect())
                    .collect()
            }
            T::SAMPLER
            | T::COMBINED_IMAGE_SAMPLER
            | T::SAMPLED_IMAGE
            | T::STORAGE_IMAGE
            | T::INPUT_ATTACHMENT => {
                // SAFETY: as above, for pImageInfo.
                let infos = unsafe { bounds::regions(w.p_image_info, n) };
                infos
                    .iter()
                    .map(|im| {
                        pin(vk::ObjectType::SAMPLER, im.sampler.as_raw())
                            .chain(pin(vk::ObjectType::IMAGE_VIEW, im.image_view.as_raw()))
                            .collect()
                    })
                    .collect()
            }
            T::UNIFORM_TEXEL_BUFFER | T::STORAGE_TEXEL_BUFFER => {
                // SAFETY: as above, for pTexelBufferView.
                let views = unsafe { bounds::regions(w.p_texel_buffer_view, n) };
                views
                    .iter()
                    .map(|v| pin(vk::ObjectType::BUFFER_VIEW, v.as_raw()).collect())
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}
