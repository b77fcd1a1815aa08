//! Descriptor set layouts, pools, sets, updates and update templates.

use ash::vk;
use ash::vk::Handle;
use vulkan_proto::args::{
    AllocateDescriptorSetsArgs, CreateDescriptorPoolArgs, CreateDescriptorSetLayoutArgs,
    CreateDescriptorUpdateTemplateArgs, DestroyDescriptorPoolArgs, DestroyDescriptorSetLayoutArgs,
    DestroyDescriptorUpdateTemplateArgs, FreeDescriptorSetsArgs, GetDescriptorSetLayoutSupportArgs,
    ResetDescriptorPoolArgs, UpdateDescriptorSetsArgs,
};

use super::physical_device::required;
use super::{Handler, Result, VenusError};

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
        // SAFETY: live device; `info` lives in the arena with translated samplers.
        self.create_child(args.device, args.p_set_layout.as_deref(), |d| unsafe {
            d.device.create_descriptor_set_layout(info, None)
        })
    }

    pub(super) fn destroy_descriptor_set_layout(
        &mut self,
        args: &mut DestroyDescriptorSetLayoutArgs<'_>,
    ) -> Result<()> {
        // SAFETY: a live set layout of this device, now out of the tables.
        self.destroy_child(args.device, args.descriptor_set_layout, |d, h| unsafe {
            d.device.destroy_descriptor_set_layout(h, None);
        })
    }

    pub(super) fn get_descriptor_set_layout_support(
        &mut self,
        args: &mut GetDescriptorSetLayoutSupportArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let info = required(args.p_create_info, "pCreateInfo")?;
        let out = required(args.p_support.as_deref_mut(), "pSupport")?;
        // SAFETY: live device; chains live in the arena.
        unsafe { dev.device.get_descriptor_set_layout_support(info, out) };
        Ok(())
    }

    pub(super) fn create_descriptor_pool(
        &mut self,
        args: &mut CreateDescriptorPoolArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        // SAFETY: live device; `info` lives in the arena.
        self.create_child(args.device, args.p_descriptor_pool.as_deref(), |d| unsafe {
            d.device.create_descriptor_pool(info, None)
        })
    }

    pub(super) fn destroy_descriptor_pool(
        &mut self,
        args: &mut DestroyDescriptorPoolArgs<'_>,
    ) -> Result<()> {
        let pool = args.descriptor_pool.as_raw();
        self.lock()
            .unbind_children(vk::ObjectType::DESCRIPTOR_SET, pool);
        // SAFETY: a live pool of this device, now out of the tables with its sets.
        self.destroy_child(args.device, args.descriptor_pool, |d, h| unsafe {
            d.device.destroy_descriptor_pool(h, None);
        })
    }

    pub(super) fn reset_descriptor_pool(
        &mut self,
        args: &mut ResetDescriptorPoolArgs<'_>,
    ) -> Result<vk::Result> {
        let dev = self.device(args.device)?;
        self.lock().unbind_children(
            vk::ObjectType::DESCRIPTOR_SET,
            args.descriptor_pool.as_raw(),
        );
        // SAFETY: live device and pool.
        Ok(
            match unsafe {
                dev.device
                    .reset_descriptor_pool(args.descriptor_pool, args.flags)
            } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            },
        )
    }

    pub(super) fn allocate_descriptor_sets(
        &mut self,
        args: &mut AllocateDescriptorSetsArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_allocate_info, "pAllocateInfo")?;
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
        }
        let ids: Vec<u64> = slots.iter().map(|s| s.as_raw()).collect();
        let dev = self.device(args.device)?;
        // SAFETY: live device; `info` lives in the arena with translated handles.
        match unsafe { dev.device.allocate_descriptor_sets(info) } {
            Ok(sets) => {
                let mut st = self.lock();
                for (id, s) in ids.iter().zip(&sets) {
                    st.bind(
                        *id,
                        vk::ObjectType::DESCRIPTOR_SET,
                        s.as_raw(),
                        info.descriptor_pool.as_raw(),
                    )?;
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
        {
            let mut st = self.lock();
            for s in sets {
                st.unbind(vk::ObjectType::DESCRIPTOR_SET, s.as_raw());
            }
        }
        let live: Vec<vk::DescriptorSet> = sets.iter().copied().filter(|s| !s.is_null()).collect();
        if live.is_empty() {
            return Ok(vk::Result::SUCCESS);
        }
        // SAFETY: live device, pool and sets, now out of the tables.
        Ok(
            match unsafe { dev.device.free_descriptor_sets(args.descriptor_pool, &live) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            },
        )
    }

    pub(super) fn update_descriptor_sets(
        &mut self,
        args: &mut UpdateDescriptorSetsArgs<'_>,
    ) -> Result<()> {
        let dev = self.device(args.device)?;
        let writes = args.p_descriptor_writes.unwrap_or(&[]);
        for w in writes {
            check_write(w)?;
        }
        let copies = args.p_descriptor_copies.unwrap_or(&[]);
        // SAFETY: live device; writes and copies live in the arena with translated
        // handles, and every write has the array its type needs (checked above).
        unsafe { dev.device.update_descriptor_sets(writes, copies) };
        Ok(())
    }

    pub(super) fn create_descriptor_update_template(
        &mut self,
        args: &mut CreateDescriptorUpdateTemplateArgs<'_>,
    ) -> Result<vk::Result> {
        let info = required(args.p_create_info, "pCreateInfo")?;
        // SAFETY: live device; `info` lives in the arena with translated handles.
        self.create_child(
            args.device,
            args.p_descriptor_update_template.as_deref(),
            |d| unsafe { d.device.create_descriptor_update_template(info, None) },
        )
    }

    pub(super) fn destroy_descriptor_update_template(
        &mut self,
        args: &mut DestroyDescriptorUpdateTemplateArgs<'_>,
    ) -> Result<()> {
        // SAFETY: a live template of this device, now out of the tables.
        self.destroy_child(
            args.device,
            args.descriptor_update_template,
            |d, h| unsafe {
                d.device.destroy_descriptor_update_template(h, None);
            },
        )
    }
}
