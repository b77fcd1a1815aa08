//! Bounds of transfer regions: a driver such as lavapipe copies with plain `memcpy`,
//! so a guest region outside a buffer or image would read or write host memory. The
//! handlers check every region of buffer↔image copies, image copies, blits and
//! resolves against the sizes recorded at creation (buffer size; image type, format,
//! extent, mip levels, layers). Texel blocks come from `vulkan_proto::format_info`,
//! generated from vk.xml's `<formats>`, so every format on the wire can be sized.

use ash::vk;
use vulkan_proto::{format_info, FormatInfo};

use super::{Result, VenusError};

/// What the bounds checks need to know about an image (from its create info).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ImageInfo {
    pub(crate) ty: vk::ImageType,
    pub(crate) format: vk::Format,
    pub(crate) extent: vk::Extent3D,
    pub(crate) mip_levels: u32,
    pub(crate) array_layers: u32,
}

impl ImageInfo {
    pub(crate) fn new(info: &vk::ImageCreateInfo<'_>) -> Self {
        Self {
            ty: info.image_type,
            format: info.format,
            extent: info.extent,
            mip_levels: info.mip_levels,
            array_layers: info.array_layers,
        }
    }

    /// The extent of mip level `mip` (the caller checked `mip < mip_levels`).
    fn mip_extent(&self, mip: u32) -> [u64; 3] {
        let e = |v: u32| u64::from(v.checked_shr(mip).unwrap_or(0).max(1));
        [
            e(self.extent.width),
            e(self.extent.height),
            e(self.extent.depth),
        ]
    }

    /// Checks a subresource (mip level and layer range) and returns its layer count.
    fn layers(&self, s: &vk::ImageSubresourceLayers) -> Result<u64> {
        if s.mip_level >= self.mip_levels {
            return Err(VenusError::Invalid("mip level out of range"));
        }
        let count = if s.layer_count == vk::REMAINING_ARRAY_LAYERS {
            self.array_layers.saturating_sub(s.base_array_layer)
        } else {
            s.layer_count
        };
        if count == 0
            || u64::from(s.base_array_layer) + u64::from(count) > u64::from(self.array_layers)
        {
            return Err(VenusError::Invalid("array layers out of range"));
        }
        Ok(u64::from(count))
    }

    /// Checks that the box `offset + extent` of `s` lies inside the image, or inside the
    /// plane whose width and height are the image's divided by `div`; returns the layer
    /// count.
    fn check_box(
        &self,
        s: &vk::ImageSubresourceLayers,
        offset: vk::Offset3D,
        extent: vk::Extent3D,
        div: [u64; 2],
    ) -> Result<u64> {
        let layers = self.layers(s)?;
        let [w, h, d] = self.mip_extent(s.mip_level);
        let mip = [(w / div[0]).max(1), (h / div[1]).max(1), d];
        let o = [offset.x, offset.y, offset.z];
        let e = [extent.width, extent.height, extent.depth];
        for i in 0..3 {
            let start = u64::try_from(o[i]).map_err(|_| VenusError::Invalid("negative offset"))?;
            if start + u64::from(e[i]) > mip[i] {
                return Err(VenusError::Invalid("region outside the image"));
            }
        }
        Ok(layers)
    }

    /// Checks the two corners of a blit region.
    pub(crate) fn check_corners(
        &self,
        s: &vk::ImageSubresourceLayers,
        corners: &[vk::Offset3D; 2],
    ) -> Result<()> {
        self.layers(s)?;
        let mip = self.mip_extent(s.mip_level);
        for c in corners {
            for (v, max) in [c.x, c.y, c.z].into_iter().zip(mip) {
                let v = u64::try_from(v).map_err(|_| VenusError::Invalid("negative offset"))?;
                if v > max {
                    return Err(VenusError::Invalid("blit corner outside the image"));
                }
            }
        }
        Ok(())
    }

    /// The base-level size and layer count of a view of `range` (checked).
    pub(crate) fn view(&self, range: &vk::ImageSubresourceRange) -> Result<ViewInfo> {
        self.check_range(range)?;
        let [w, h, d] = self.mip_extent(range.base_mip_level);
        let layers = if self.ty == vk::ImageType::TYPE_3D {
            d
        } else if range.layer_count == vk::REMAINING_ARRAY_LAYERS {
            u64::from(self.array_layers.saturating_sub(range.base_array_layer))
        } else {
            u64::from(range.layer_count)
        };
        let c = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(ViewInfo {
            width: c(w),
            height: c(h),
            layers: c(layers),
        })
    }

    /// Checks one subresource (mip level, layer) exists.
    pub(crate) fn check_subresource(&self, mip: u32, layer: u32) -> Result<()> {
        if mip >= self.mip_levels || layer >= self.array_layers {
            return Err(VenusError::Invalid("subresource out of range"));
        }
        Ok(())
    }

    /// Checks a subresource range (clears and barriers).
    pub(crate) fn check_range(&self, r: &vk::ImageSubresourceRange) -> Result<()> {
        let levels = if r.level_count == vk::REMAINING_MIP_LEVELS {
            self.mip_levels.saturating_sub(r.base_mip_level)
        } else {
            r.level_count
        };
        let layers = if r.layer_count == vk::REMAINING_ARRAY_LAYERS {
            self.array_layers.saturating_sub(r.base_array_layer)
        } else {
            r.layer_count
        };
        if levels == 0
            || layers == 0
            || u64::from(r.base_mip_level) + u64::from(levels) > u64::from(self.mip_levels)
            || u64::from(r.base_array_layer) + u64::from(layers) > u64::from(self.array_layers)
        {
            return Err(VenusError::Invalid("subresource range out of range"));
        }
        Ok(())
    }
}

/// The size of an image view's base level and its layer count (framebuffer and
/// rendering attachments must cover the render area and layers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViewInfo {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) layers: u32,
}

impl ViewInfo {
    /// Checks that the view covers `area` (non-negative offsets) and `layers` layers.
    pub(crate) fn covers(&self, area: &vk::Rect2D, layers: u32) -> Result<()> {
        let end = |o: i32, e: u32| {
            u64::try_from(o)
                .ok()
                .map(|o| o + u64::from(e))
                .ok_or(VenusError::Invalid("negative render area offset"))
        };
        if end(area.offset.x, area.extent.width)? > u64::from(self.width)
            || end(area.offset.y, area.extent.height)? > u64::from(self.height)
            || layers > self.layers
        {
            return Err(VenusError::Invalid(
                "attachment smaller than the render area",
            ));
        }
        Ok(())
    }
}

/// Where a command buffer records, for vkCmdClearAttachments.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RenderState {
    /// Inside a render pass instance with this area and layer count.
    Inside(vk::Rect2D, u32),
    /// A secondary command buffer continuing a render pass whose area it cannot know.
    Inherited,
}

/// Checks clear rects against the render area and layer count.
pub(crate) fn check_clear_rects(
    area: &vk::Rect2D,
    layers: u32,
    rects: &[vk::ClearRect],
) -> Result<()> {
    let lo = |o: i32| i64::from(o);
    let hi = |o: i32, e: u32| i64::from(o) + i64::from(e);
    for r in rects {
        if lo(r.rect.offset.x) < lo(area.offset.x)
            || lo(r.rect.offset.y) < lo(area.offset.y)
            || hi(r.rect.offset.x, r.rect.extent.width) > hi(area.offset.x, area.extent.width)
            || hi(r.rect.offset.y, r.rect.extent.height) > hi(area.offset.y, area.extent.height)
            || u64::from(r.base_array_layer) + u64::from(r.layer_count) > u64::from(layers)
        {
            return Err(VenusError::Invalid("clear rect outside the render area"));
        }
    }
    Ok(())
}

/// What render pass begins and pipeline creation check about a render pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PassInfo {
    /// `attachmentCount`.
    pub(crate) attachments: u32,
    /// One past the highest attachment index with a CLEAR load op (the clear values
    /// the driver reads at begin).
    pub(crate) clears: u32,
    /// `subpassCount`.
    pub(crate) subpasses: u32,
}

impl PassInfo {
    /// From the attachment load ops (v1 or v2 descriptions, as (load, stencil load)).
    pub(crate) fn new(
        ops: impl Iterator<Item = (vk::AttachmentLoadOp, vk::AttachmentLoadOp)>,
        subpasses: u32,
    ) -> Self {
        let mut attachments = 0u32;
        let mut clears = 0u32;
        for (load, stencil) in ops {
            attachments = attachments.saturating_add(1);
            if load == vk::AttachmentLoadOp::CLEAR || stencil == vk::AttachmentLoadOp::CLEAR {
                clears = attachments;
            }
        }
        Self {
            attachments,
            clears,
            subpasses,
        }
    }
}

/// The format a copy of `aspect` of a `format` image reads or writes, and how much
/// smaller than the image that format's plane is (width, height divisors): a plane of a
/// multi-planar format is accessed as its own single-plane format (`PLANE_i` aspects
/// only); every other format as itself.
fn accessed(format: vk::Format, aspect: vk::ImageAspectFlags) -> Result<(FormatInfo, [u64; 2])> {
    let info = format_info(format).ok_or(VenusError::Invalid(
        "buffer/image copy with a format the renderer cannot size",
    ))?;
    if info.planes.is_empty() {
        return Ok((info, [1, 1]));
    }
    const PLANES: [vk::ImageAspectFlags; 3] = [
        vk::ImageAspectFlags::PLANE_0,
        vk::ImageAspectFlags::PLANE_1,
        vk::ImageAspectFlags::PLANE_2,
    ];
    let plane = PLANES
        .iter()
        .position(|p| *p == aspect)
        .and_then(|i| info.planes.get(i))
        .ok_or(VenusError::Invalid(
            "multi-planar copy without one plane aspect of the format",
        ))?;
    let plane_info = format_info(plane.format)
        .filter(|p| p.planes.is_empty())
        .ok_or(VenusError::Invalid(
            "plane of a format the renderer cannot size",
        ))?;
    Ok((
        plane_info,
        [
            u64::from(plane.width_divisor.max(1)),
            u64::from(plane.height_divisor.max(1)),
        ],
    ))
}

/// Bytes one texel block of `aspect` of `info` takes in a buffer: a depth or stencil
/// aspect is copied on its own at its own size (D16 → 2, D24 and D32 → 4, S8 → 1);
/// colour formats (and planes, which `accessed` already resolved) by whole blocks.
fn buffer_block_bytes(info: &FormatInfo, aspect: vk::ImageAspectFlags) -> Result<u64> {
    let bytes = if info.is_depth_stencil() {
        match aspect {
            vk::ImageAspectFlags::DEPTH => info.depth_copy_size(),
            vk::ImageAspectFlags::STENCIL => info.stencil_copy_size(),
            _ => None,
        }
        .ok_or(VenusError::Invalid(
            "depth/stencil buffer copy without one aspect of the format",
        ))?
    } else if aspect == vk::ImageAspectFlags::COLOR
        || aspect == vk::ImageAspectFlags::PLANE_0
        || aspect == vk::ImageAspectFlags::PLANE_1
        || aspect == vk::ImageAspectFlags::PLANE_2
    {
        info.block_size
    } else {
        return Err(VenusError::Invalid(
            "colour buffer copy with a non-colour aspect",
        ));
    };
    Ok(u64::from(bytes))
}

/// Checks one buffer↔image region against the image and the buffer size.
pub(crate) fn check_buffer_image(
    img: &ImageInfo,
    buffer_size: u64,
    r: &vk::BufferImageCopy,
) -> Result<()> {
    let aspect = r.image_subresource.aspect_mask;
    let (info, div) = accessed(img.format, aspect)?;
    let bytes = buffer_block_bytes(&info, aspect)?;
    let layers = img.check_box(&r.image_subresource, r.image_offset, r.image_extent, div)?;
    let e = r.image_extent;
    if e.width == 0 || e.height == 0 || e.depth == 0 {
        return Err(VenusError::Invalid("empty copy region"));
    }
    let [bw, bh, bd] = info.block_extent.map(|v| u64::from(v.max(1)));
    let row = if r.buffer_row_length == 0 {
        e.width
    } else {
        r.buffer_row_length
    };
    let height = if r.buffer_image_height == 0 {
        e.height
    } else {
        r.buffer_image_height
    };
    if row < e.width || height < e.height {
        return Err(VenusError::Invalid(
            "buffer row length or image height too small",
        ));
    }
    let blocks = |v: u32, b: u64| u64::from(v).div_ceil(b);
    let (row_b, height_b) = (blocks(row, bw), blocks(height, bh));
    let (w_b, h_b) = (blocks(e.width, bw), blocks(e.height, bh));
    let slices = if img.ty == vk::ImageType::TYPE_3D {
        blocks(e.depth, bd)
    } else {
        layers
    };
    let overflow = VenusError::Invalid("copy region size overflows");
    // Index of the last block + 1, then bytes.
    let end_blocks = (slices - 1)
        .checked_mul(height_b)
        .and_then(|v| v.checked_add(h_b - 1))
        .and_then(|v| v.checked_mul(row_b))
        .and_then(|v| v.checked_add(w_b))
        .ok_or(overflow)?;
    let end = end_blocks
        .checked_mul(bytes)
        .and_then(|v| v.checked_add(r.buffer_offset))
        .ok_or(VenusError::Invalid("copy region size overflows"))?;
    if end > buffer_size {
        return Err(VenusError::Invalid("copy region outside the buffer"));
    }
    Ok(())
}

/// Checks one image→image region (copies and resolves): `extent` is in source texels;
/// the destination box is scaled by the block-size ratio (compressed ↔ uncompressed).
pub(crate) fn check_image_copy(
    src: &ImageInfo,
    dst: &ImageInfo,
    (src_sub, src_offset): (&vk::ImageSubresourceLayers, vk::Offset3D),
    (dst_sub, dst_offset): (&vk::ImageSubresourceLayers, vk::Offset3D),
    extent: vk::Extent3D,
) -> Result<()> {
    let (s_info, s_div) = accessed(src.format, src_sub.aspect_mask)?;
    let (d_info, d_div) = accessed(dst.format, dst_sub.aspect_mask)?;
    src.check_box(src_sub, src_offset, extent, s_div)?;
    let [sbw, sbh, _] = s_info.block_extent.map(|v| u64::from(v.max(1)));
    let [dbw, dbh, _] = d_info.block_extent.map(|v| u64::from(v.max(1)));
    let scale = |v: u32, s: u64, d: u64| {
        u32::try_from(u64::from(v).div_ceil(s).saturating_mul(d)).unwrap_or(u32::MAX)
    };
    let dst_extent = vk::Extent3D {
        width: scale(extent.width, sbw, dbw),
        height: scale(extent.height, sbh, dbh),
        depth: extent.depth,
    };
    dst.check_box(dst_sub, dst_offset, dst_extent, d_div)?;
    Ok(())
}

/// A `VkBufferImageCopy2` as the v1 struct (same fields, no chain).
pub(crate) fn region_v1(r: &vk::BufferImageCopy2<'_>) -> vk::BufferImageCopy {
    vk::BufferImageCopy {
        buffer_offset: r.buffer_offset,
        buffer_row_length: r.buffer_row_length,
        buffer_image_height: r.buffer_image_height,
        image_subresource: r.image_subresource,
        image_offset: r.image_offset,
        image_extent: r.image_extent,
    }
}

/// The regions of a `*2` info struct (`count` entries at `ptr`, as the decoder built
/// them in the arena).
///
/// # Safety
///
/// `ptr` must be NULL (then `count` is treated as 0) or point to `count` live values.
pub(crate) unsafe fn regions<'a, T>(ptr: *const T, count: u32) -> &'a [T] {
    if ptr.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `count` live values at `ptr`.
    unsafe { std::slice::from_raw_parts(ptr, count as usize) }
}

/// One binding of a descriptor set layout.
#[derive(Clone, Copy, Debug)]
struct BindingInfo {
    binding: u32,
    ty: vk::DescriptorType,
    count: u32,
    /// `VARIABLE_DESCRIPTOR_COUNT`: the set's allocation gives the real count.
    variable: bool,
}

/// The bindings of a descriptor set layout, sorted by binding number: what the driver
/// indexes with a write's binding, array element and count.
#[derive(Debug, Default)]
pub(crate) struct SetLayoutInfo {
    bindings: Vec<BindingInfo>,
}

impl SetLayoutInfo {
    /// From the create info's bindings and (optional) per-binding flags.
    pub(crate) fn new(
        bindings: &[vk::DescriptorSetLayoutBinding<'_>],
        flags: &[vk::DescriptorBindingFlags],
    ) -> Self {
        let mut v: Vec<BindingInfo> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| BindingInfo {
                binding: b.binding,
                ty: b.descriptor_type,
                count: b.descriptor_count,
                variable: flags.get(i).is_some_and(|f| {
                    f.contains(vk::DescriptorBindingFlags::VARIABLE_DESCRIPTOR_COUNT)
                }),
            })
            .collect();
        v.sort_by_key(|b| b.binding);
        Self { bindings: v }
    }

    /// Whether the layout has a variable-count binding.
    pub(crate) fn has_variable(&self) -> bool {
        self.bindings.iter().any(|b| b.variable)
    }

    fn count(b: &BindingInfo, variable: u32) -> u64 {
        if b.variable {
            u64::from(variable.min(b.count))
        } else {
            u64::from(b.count)
        }
    }

    /// Checks that `count` descriptors from (`binding`, `element`) fit the set, rolling
    /// over into the following bindings of the same type as Vulkan allows; returns the
    /// type of `binding`. With `ty`, the binding must have that type (or be mutable).
    pub(crate) fn check_span(
        &self,
        binding: u32,
        element: u32,
        count: u32,
        ty: Option<vk::DescriptorType>,
        variable: u32,
    ) -> Result<vk::DescriptorType> {
        let i = self
            .bindings
            .iter()
            .position(|b| b.binding == binding)
            .ok_or(VenusError::Invalid("descriptor binding not in the layout"))?;
        let first = self.bindings[i];
        if let Some(t) = ty {
            if t != first.ty && first.ty != vk::DescriptorType::MUTABLE_EXT {
                return Err(VenusError::Invalid(
                    "descriptor type differs from the binding",
                ));
            }
        }
        let mut capacity = Self::count(&first, variable)
            .checked_sub(u64::from(element))
            .ok_or(VenusError::Invalid("descriptor array element out of range"))?;
        let mut prev = first.binding;
        for b in &self.bindings[i + 1..] {
            if capacity >= u64::from(count) {
                break;
            }
            if b.binding != prev.wrapping_add(1) || b.ty != first.ty {
                break;
            }
            capacity += Self::count(b, variable);
            prev = b.binding;
        }
        if u64::from(count) > capacity {
            return Err(VenusError::Invalid("descriptors beyond the binding"));
        }
        Ok(first.ty)
    }

    /// Dynamic uniform/storage buffer descriptors in the layout (one offset each).
    pub(crate) fn dynamic_count(&self) -> u64 {
        self.bindings
            .iter()
            .filter(|b| {
                matches!(
                    b.ty,
                    vk::DescriptorType::UNIFORM_BUFFER_DYNAMIC
                        | vk::DescriptorType::STORAGE_BUFFER_DYNAMIC
                )
            })
            .map(|b| u64::from(b.count))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(format: vk::Format, w: u32, h: u32, mips: u32, layers: u32) -> ImageInfo {
        ImageInfo {
            ty: vk::ImageType::TYPE_2D,
            format,
            extent: vk::Extent3D {
                width: w,
                height: h,
                depth: 1,
            },
            mip_levels: mips,
            array_layers: layers,
        }
    }

    fn region(offset: u64, w: u32, h: u32, mip: u32) -> vk::BufferImageCopy {
        vk::BufferImageCopy {
            buffer_offset: offset,
            buffer_row_length: 0,
            buffer_image_height: 0,
            image_subresource: vk::ImageSubresourceLayers {
                aspect_mask: vk::ImageAspectFlags::COLOR,
                mip_level: mip,
                base_array_layer: 0,
                layer_count: 1,
            },
            image_offset: vk::Offset3D::default(),
            image_extent: vk::Extent3D {
                width: w,
                height: h,
                depth: 1,
            },
        }
    }

    #[test]
    fn buffer_image_regions() {
        let i = img(vk::Format::R8G8B8A8_UNORM, 64, 64, 2, 1);
        check_buffer_image(&i, 64 * 64 * 4, &region(0, 64, 64, 0)).expect("in bounds");
        assert!(check_buffer_image(&i, 64 * 64 * 4 - 1, &region(0, 64, 64, 0)).is_err());
        assert!(check_buffer_image(&i, 64 * 64 * 4, &region(4, 64, 64, 0)).is_err());
        assert!(check_buffer_image(&i, 1 << 20, &region(0, 65, 64, 0)).is_err());
        check_buffer_image(&i, 1 << 20, &region(0, 32, 32, 1)).expect("in bounds");
        assert!(check_buffer_image(&i, 1 << 20, &region(0, 33, 32, 1)).is_err());
        assert!(check_buffer_image(&i, 1 << 20, &region(0, 1, 1, 2)).is_err());
        let mut r = region(u64::MAX - 3, 1, 1, 0);
        assert!(check_buffer_image(&i, u64::MAX, &r).is_err());
        r = region(0, 16, 16, 0);
        r.image_offset.x = -1;
        assert!(check_buffer_image(&i, 1 << 20, &r).is_err());
        r = region(0, 16, 16, 0);
        r.image_subresource.layer_count = 2;
        assert!(check_buffer_image(&i, 1 << 20, &r).is_err());
        let bc = img(vk::Format::BC1_RGB_UNORM_BLOCK, 16, 16, 1, 1);
        check_buffer_image(&bc, 128, &region(0, 16, 16, 0)).expect("in bounds");
        assert!(check_buffer_image(&bc, 127, &region(0, 16, 16, 0)).is_err());
        let ycbcr = img(vk::Format::G8_B8R8_2PLANE_420_UNORM, 16, 16, 1, 1);
        assert!(check_buffer_image(&ycbcr, 1 << 20, &region(0, 16, 16, 0)).is_err());
    }

    fn aspect_region(aspect: vk::ImageAspectFlags, w: u32, h: u32) -> vk::BufferImageCopy {
        let mut r = region(0, w, h, 0);
        r.image_subresource.aspect_mask = aspect;
        r
    }

    #[test]
    fn formats_past_184_are_sized_from_the_registry_table() {
        for (format, bytes) in [
            (vk::Format::A8_UNORM_KHR, 1),
            (vk::Format::A1B5G5R5_UNORM_PACK16_KHR, 2),
            (vk::Format::A4R4G4B4_UNORM_PACK16, 2),
            (vk::Format::A4B4G4R4_UNORM_PACK16, 2),
            (vk::Format::R16G16_S10_5_NV, 4),
        ] {
            let i = img(format, 16, 16, 1, 1);
            check_buffer_image(&i, 16 * 16 * bytes, &region(0, 16, 16, 0))
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert!(
                check_buffer_image(&i, 16 * 16 * bytes - 1, &region(0, 16, 16, 0)).is_err(),
                "{format:?} one byte short"
            );
        }
    }

    #[test]
    fn depth_and_stencil_aspects_use_their_buffer_sizes() {
        let (d, s) = (vk::ImageAspectFlags::DEPTH, vk::ImageAspectFlags::STENCIL);
        for (format, depth, stencil) in [
            (vk::Format::D16_UNORM, Some(2), None),
            (vk::Format::X8_D24_UNORM_PACK32, Some(4), None),
            (vk::Format::D24_UNORM_S8_UINT, Some(4), Some(1)),
            (vk::Format::D32_SFLOAT_S8_UINT, Some(4), Some(1)),
            (vk::Format::S8_UINT, None, Some(1)),
        ] {
            let i = img(format, 8, 8, 1, 1);
            for (aspect, size) in [(d, depth), (s, stencil)] {
                let r = aspect_region(aspect, 8, 8);
                match size {
                    Some(b) => {
                        check_buffer_image(&i, 64 * b, &r)
                            .unwrap_or_else(|e| panic!("{format:?} {aspect:?}: {e}"));
                        assert!(check_buffer_image(&i, 64 * b - 1, &r).is_err());
                    }
                    None => assert!(check_buffer_image(&i, 1 << 20, &r).is_err()),
                }
            }
            for aspect in [d | s, vk::ImageAspectFlags::COLOR] {
                let r = aspect_region(aspect, 8, 8);
                assert!(
                    check_buffer_image(&i, 1 << 20, &r).is_err(),
                    "{format:?} {aspect:?}"
                );
            }
        }
    }

    #[test]
    fn planes_are_copied_at_their_own_size_and_format() {
        let i = img(vk::Format::G8_B8R8_2PLANE_420_UNORM, 16, 16, 1, 1);
        let p0 = aspect_region(vk::ImageAspectFlags::PLANE_0, 16, 16);
        check_buffer_image(&i, 256, &p0).expect("plane 0: 16x16 R8");
        assert!(check_buffer_image(&i, 255, &p0).is_err());
        let p1 = aspect_region(vk::ImageAspectFlags::PLANE_1, 8, 8);
        check_buffer_image(&i, 128, &p1).expect("plane 1: 8x8 R8G8");
        assert!(check_buffer_image(&i, 127, &p1).is_err());
        let too_wide = aspect_region(vk::ImageAspectFlags::PLANE_1, 9, 8);
        assert!(check_buffer_image(&i, 1 << 20, &too_wide).is_err());
        let p2 = aspect_region(vk::ImageAspectFlags::PLANE_2, 1, 1);
        assert!(
            check_buffer_image(&i, 1 << 20, &p2).is_err(),
            "two planes only"
        );
        let color = aspect_region(vk::ImageAspectFlags::COLOR, 1, 1);
        let rgba = img(vk::Format::R8G8B8A8_UNORM, 4, 4, 1, 1);
        check_buffer_image(&rgba, 4, &color).expect("colour aspect");
        let depth = aspect_region(vk::ImageAspectFlags::DEPTH, 1, 1);
        assert!(check_buffer_image(&rgba, 1 << 20, &depth).is_err());
    }

    #[test]
    fn image_copies_scale_by_block_extent_and_plane() {
        let sub = |aspect| vk::ImageSubresourceLayers {
            aspect_mask: aspect,
            mip_level: 0,
            base_array_layer: 0,
            layer_count: 1,
        };
        let color = sub(vk::ImageAspectFlags::COLOR);
        let o = vk::Offset3D::default();
        let ext = |w, h| vk::Extent3D {
            width: w,
            height: h,
            depth: 1,
        };
        let bc = img(vk::Format::BC1_RGB_UNORM_BLOCK, 16, 16, 1, 1);
        let small = img(vk::Format::R32G32_UINT, 4, 4, 1, 1);
        check_image_copy(&bc, &small, (&color, o), (&color, o), ext(16, 16))
            .expect("16x16 texels of BC1 are 4x4 blocks");
        check_image_copy(&small, &bc, (&color, o), (&color, o), ext(4, 4))
            .expect("4x4 texels of RG32 fill 4x4 BC1 blocks");
        let yuv = img(vk::Format::G8_B8R8_2PLANE_420_UNORM, 16, 16, 1, 1);
        let rg = img(vk::Format::R8G8_UNORM, 8, 8, 1, 1);
        let p1 = sub(vk::ImageAspectFlags::PLANE_1);
        check_image_copy(&yuv, &rg, (&p1, o), (&color, o), ext(8, 8)).expect("plane 1 is 8x8");
        assert!(check_image_copy(&yuv, &rg, (&p1, o), (&color, o), ext(16, 16)).is_err());
        assert!(check_image_copy(&yuv, &rg, (&color, o), (&color, o), ext(8, 8)).is_err());
    }

    #[test]
    fn descriptor_spans() {
        let b = |binding, ty, count| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(binding)
                .descriptor_type(ty)
                .descriptor_count(count)
        };
        let sb = vk::DescriptorType::STORAGE_BUFFER;
        let l = SetLayoutInfo::new(
            &[
                b(0, sb, 2),
                b(1, sb, 3),
                b(3, vk::DescriptorType::SAMPLER, 1),
                b(4, sb, 8),
            ],
            &[
                vk::DescriptorBindingFlags::empty(),
                vk::DescriptorBindingFlags::empty(),
                vk::DescriptorBindingFlags::empty(),
                vk::DescriptorBindingFlags::VARIABLE_DESCRIPTOR_COUNT,
            ],
        );
        l.check_span(0, 0, 2, Some(sb), 0).expect("fits");
        l.check_span(0, 1, 4, Some(sb), 0)
            .expect("rolls over into binding 1");
        l.check_span(0, 1, 5, Some(sb), 0).expect_err("rejected");
        assert!(
            l.check_span(1, 0, 4, Some(sb), 0).is_err(),
            "binding 2 is missing"
        );
        l.check_span(2, 0, 1, Some(sb), 0).expect_err("rejected");
        l.check_span(3, 0, 1, Some(sb), 0)
            .expect_err("type differs");
        l.check_span(4, 0, 5, Some(sb), 5)
            .expect("variable count 5");
        l.check_span(4, 0, 6, Some(sb), 5).expect_err("rejected");
        assert!(
            l.check_span(4, 0, 1, Some(sb), 0).is_err(),
            "variable count 0"
        );
        l.check_span(0, u32::MAX, 1, Some(sb), 0)
            .expect_err("rejected");
        assert!(l.has_variable());
        assert_eq!(l.dynamic_count(), 0);
    }

    #[test]
    fn ranges_and_corners() {
        let i = img(vk::Format::R8G8B8A8_UNORM, 64, 32, 3, 2);
        let r = |b, l, bl, lc| vk::ImageSubresourceRange {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            base_mip_level: b,
            level_count: l,
            base_array_layer: bl,
            layer_count: lc,
        };
        i.check_range(&r(0, 3, 0, 2)).expect("in bounds");
        let rest = r(1, vk::REMAINING_MIP_LEVELS, 1, vk::REMAINING_ARRAY_LAYERS);
        i.check_range(&rest).expect("in bounds");
        assert!(i
            .check_range(&r(3, vk::REMAINING_MIP_LEVELS, 0, 1))
            .is_err());
        assert!(i.check_range(&r(0, 1, 1, 2)).is_err());
        assert!(i.check_range(&r(u32::MAX, 2, 0, 1)).is_err());
        let s = vk::ImageSubresourceLayers {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            mip_level: 1,
            base_array_layer: 0,
            layer_count: 1,
        };
        let c = |x, y| vk::Offset3D { x, y, z: 1 };
        i.check_corners(&s, &[c(0, 0), c(32, 16)])
            .expect("in bounds");
        assert!(i.check_corners(&s, &[c(0, 0), c(33, 16)]).is_err());
        assert!(i.check_corners(&s, &[c(-1, 0), c(1, 1)]).is_err());
    }
}
