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
fn check_write(w: &vk::WriteDescriptorSet<'_>) -> Result<()> {
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

/// `vkUpdateDescriptorSets` decoded by hand.
///
/// The generated decoder (vulkan-proto) treats `VkWriteDescriptorSet::pImageInfo`,
/// `pBufferInfo` and `pTexelBufferView` as required arrays, but Mesa sends the two that
/// the descriptor type does not use as NULL (count 0 on the wire) with a non-zero
/// `descriptorCount`, so every real update fails to decode. Until the generator marks
/// them optional, this decoder handles the command: same wire format (venus-wire §3),
/// same typed id lookups, and the inline-uniform-block chain struct.
pub(super) mod wire {
    use ash::vk;
    use ash::vk::Handle;
    use vulkan_proto::{Decoder, HandleMap, ObjectId};

    use super::check_write;
    use crate::renderer::venus::{Result, VenusError};

    /// `VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_INLINE_UNIFORM_BLOCK`.
    const STYPE_INLINE_UNIFORM_BLOCK: i32 = 1_000_138_002;
    /// Upper bound on writes/copies/descriptors per command (guards allocations; the
    /// byte size of the command bounds them further).
    const MAX_ITEMS: u64 = 1 << 16;

    fn bad(reason: &'static str) -> VenusError {
        VenusError::Invalid(reason)
    }

    struct Reader<'d, 'h> {
        d: Decoder<'d>,
        ids: &'h dyn HandleMap,
    }

    impl Reader<'_, '_> {
        fn u32(&mut self) -> Result<u32> {
            self.d
                .u32()
                .map_err(|_| bad("truncated vkUpdateDescriptorSets"))
        }
        fn i32(&mut self) -> Result<i32> {
            self.d
                .i32()
                .map_err(|_| bad("truncated vkUpdateDescriptorSets"))
        }
        fn u64(&mut self) -> Result<u64> {
            self.d
                .u64()
                .map_err(|_| bad("truncated vkUpdateDescriptorSets"))
        }
        fn handle(&mut self, ty: vk::ObjectType) -> Result<u64> {
            let id = self.u64()?;
            self.ids.lookup(ty, ObjectId(id)).ok_or(bad(
                "unknown or wrong-typed object id in vkUpdateDescriptorSets",
            ))
        }
        /// An array count that must be 0 (NULL) or `expected`.
        fn count(&mut self, expected: u64) -> Result<u64> {
            let n = self.u64()?;
            if n != 0 && n != expected {
                return Err(bad("array size differs from its count"));
            }
            if n > MAX_ITEMS || n.saturating_mul(4) > self.d.remaining() as u64 {
                return Err(bad("array larger than the command"));
            }
            Ok(n)
        }
        fn pnext_end(&mut self) -> Result<()> {
            if self.u64()? != 0 {
                return Err(bad("unexpected pNext in VkCopyDescriptorSet"));
            }
            Ok(())
        }
    }

    /// One decoded write, owning its arrays.
    #[derive(Default)]
    pub(in crate::renderer::venus) struct Write {
        set: u64,
        binding: u32,
        element: u32,
        count: u32,
        ty: i32,
        images: Vec<vk::DescriptorImageInfo>,
        buffers: Vec<vk::DescriptorBufferInfo>,
        texels: Vec<vk::BufferView>,
        inline: Option<Vec<u8>>,
    }

    /// The decoded command.
    pub(in crate::renderer::venus) struct Update {
        pub(in crate::renderer::venus) device: vk::Device,
        pub(in crate::renderer::venus) wants_reply: bool,
        pub(in crate::renderer::venus) consumed: usize,
        writes: Vec<Write>,
        copies: Vec<vk::CopyDescriptorSet<'static>>,
    }

    /// Decodes `vkUpdateDescriptorSets` at the start of `cmds` (header included).
    pub(in crate::renderer::venus) fn decode(cmds: &[u8], ids: &dyn HandleMap) -> Result<Update> {
        let mut r = Reader {
            d: Decoder::new(cmds),
            ids,
        };
        let _ty = r.u32()?;
        let flags = r.u32()?;
        let device = vk::Device::from_raw(r.handle(vk::ObjectType::DEVICE)?);
        if device == vk::Device::null() {
            return Err(VenusError::Null { what: "device" });
        }
        let write_count = r.u32()?;
        let n = r.count(u64::from(write_count))?;
        let mut writes = Vec::new();
        for _ in 0..n {
            if r.i32()? != vk::StructureType::WRITE_DESCRIPTOR_SET.as_raw() {
                return Err(bad("bad sType in VkWriteDescriptorSet"));
            }
            let mut w = Write::default();
            let mut inline_chain = false;
            while r.u64()? != 0 {
                if r.i32()? != STYPE_INLINE_UNIFORM_BLOCK || inline_chain {
                    return Err(bad("unsupported pNext in VkWriteDescriptorSet"));
                }
                inline_chain = true;
            }
            if inline_chain {
                let size = r.u32()?;
                let len = r.count(u64::from(size))?;
                let bytes =
                    r.d.take(
                        usize::try_from(len)
                            .map_err(|_| bad("inline data too large"))?
                            .next_multiple_of(4),
                    )
                    .map_err(|_| bad("truncated inline uniform data"))?;
                let len = usize::try_from(len).map_err(|_| bad("inline data too large"))?;
                w.inline = Some(bytes.get(..len).unwrap_or_default().to_vec());
            }
            w.set = r.handle(vk::ObjectType::DESCRIPTOR_SET)?;
            w.binding = r.u32()?;
            w.element = r.u32()?;
            w.count = r.u32()?;
            w.ty = r.i32()?;
            for _ in 0..r.count(u64::from(w.count))? {
                w.images.push(vk::DescriptorImageInfo {
                    sampler: vk::Sampler::from_raw(r.handle(vk::ObjectType::SAMPLER)?),
                    image_view: vk::ImageView::from_raw(r.handle(vk::ObjectType::IMAGE_VIEW)?),
                    image_layout: vk::ImageLayout::from_raw(r.i32()?),
                });
            }
            for _ in 0..r.count(u64::from(w.count))? {
                w.buffers.push(vk::DescriptorBufferInfo {
                    buffer: vk::Buffer::from_raw(r.handle(vk::ObjectType::BUFFER)?),
                    offset: r.u64()?,
                    range: r.u64()?,
                });
            }
            for _ in 0..r.count(u64::from(w.count))? {
                w.texels.push(vk::BufferView::from_raw(
                    r.handle(vk::ObjectType::BUFFER_VIEW)?,
                ));
            }
            writes.push(w);
        }
        let copy_count = r.u32()?;
        let n = r.count(u64::from(copy_count))?;
        let mut copies = Vec::new();
        for _ in 0..n {
            if r.i32()? != vk::StructureType::COPY_DESCRIPTOR_SET.as_raw() {
                return Err(bad("bad sType in VkCopyDescriptorSet"));
            }
            r.pnext_end()?;
            copies.push(vk::CopyDescriptorSet {
                src_set: vk::DescriptorSet::from_raw(r.handle(vk::ObjectType::DESCRIPTOR_SET)?),
                src_binding: r.u32()?,
                src_array_element: r.u32()?,
                dst_set: vk::DescriptorSet::from_raw(r.handle(vk::ObjectType::DESCRIPTOR_SET)?),
                dst_binding: r.u32()?,
                dst_array_element: r.u32()?,
                descriptor_count: r.u32()?,
                ..Default::default()
            });
        }
        Ok(Update {
            device,
            wants_reply: flags & 1 != 0,
            consumed: r.d.position(),
            writes,
            copies,
        })
    }

    impl Update {
        /// Runs the update on `device`.
        pub(in crate::renderer::venus) fn apply(&self, device: &ash::Device) -> Result<()> {
            let mut inline_structs: Vec<vk::WriteDescriptorSetInlineUniformBlock<'_>> = self
                .writes
                .iter()
                .map(|w| {
                    let data = w.inline.as_deref().unwrap_or_default();
                    vk::WriteDescriptorSetInlineUniformBlock::default().data(data)
                })
                .collect();
            let mut out = Vec::with_capacity(self.writes.len());
            for (w, inline) in self.writes.iter().zip(inline_structs.iter_mut()) {
                let mut v = vk::WriteDescriptorSet {
                    dst_set: vk::DescriptorSet::from_raw(w.set),
                    dst_binding: w.binding,
                    dst_array_element: w.element,
                    descriptor_count: w.count,
                    descriptor_type: vk::DescriptorType::from_raw(w.ty),
                    ..Default::default()
                };
                if !w.images.is_empty() {
                    v.p_image_info = w.images.as_ptr();
                }
                if !w.buffers.is_empty() {
                    v.p_buffer_info = w.buffers.as_ptr();
                }
                if !w.texels.is_empty() {
                    v.p_texel_buffer_view = w.texels.as_ptr();
                }
                if w.inline.is_some() {
                    if inline.data_size != w.count {
                        return Err(bad("inline uniform data size differs from descriptorCount"));
                    }
                    v.p_next = std::ptr::from_mut(inline).cast_const().cast();
                }
                check_write(&v)?;
                out.push(v);
            }
            // SAFETY: live device; every handle was looked up in this context's tables,
            // and every array a write's type needs is present with descriptorCount
            // elements (checked by `count` and `check_write`); all storage outlives the
            // call.
            unsafe { device.update_descriptor_sets(&out, &self.copies) };
            Ok(())
        }
    }
}
