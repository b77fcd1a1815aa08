//! Texel-block facts about every `VkFormat` the protocol knows, generated from vk.xml's
//! `<formats>` element ([`format_info`]). A renderer sizes buffer↔image copies with it:
//! a copy moves whole blocks of [`FormatInfo::block_size`] bytes covering
//! [`FormatInfo::block_extent`] texels; depth and stencil aspects are copied on their
//! own with [`FormatInfo::depth_copy_size`] / [`FormatInfo::stencil_copy_size`] bytes per
//! texel; each plane of a multi-planar format is copied as its [`PlaneInfo::format`] at
//! the plane's reduced size.

use ash::vk;

pub use crate::generated::formats::format_info;

/// One `<format>` of vk.xml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormatInfo {
    /// The enum value name (`VK_FORMAT_R8G8B8A8_UNORM`).
    pub name: &'static str,
    /// The compatibility class (`32-bit`, `BC1_RGB`, `D24S8`, …).
    pub class: &'static str,
    /// Bytes per texel block (for multi-planar formats, of all planes together).
    pub block_size: u32,
    /// Texels per block.
    pub texels_per_block: u32,
    /// Block width, height and depth in texels (1, 1, 1 for uncompressed formats).
    pub block_extent: [u32; 3],
    /// Bits per packed unit (0 if not packed).
    pub packed: u32,
    /// A block-compressed format.
    pub compressed: bool,
    /// Bits of the depth component (0 without depth).
    pub depth_bits: u32,
    /// Bits of the stencil component (0 without stencil).
    pub stencil_bits: u32,
    /// The planes of a multi-planar format, by plane index (empty otherwise).
    pub planes: &'static [PlaneInfo],
}

/// One plane of a multi-planar format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlaneInfo {
    /// The plane's width is the image's divided by this.
    pub width_divisor: u32,
    /// The plane's height is the image's divided by this.
    pub height_divisor: u32,
    /// The single-plane format the plane is accessed (and copied) as.
    pub format: vk::Format,
}

impl FormatInfo {
    /// Whether the format has a depth or stencil component.
    pub fn is_depth_stencil(&self) -> bool {
        self.depth_bits > 0 || self.stencil_bits > 0
    }

    /// Bytes per texel of the depth aspect in a buffer (Vulkan's buffer↔image copy rules:
    /// D16 → 2; D24, packed in 32 bits, and D32 → 4); `None` without depth.
    pub fn depth_copy_size(&self) -> Option<u32> {
        (self.depth_bits > 0).then(|| self.depth_bits.div_ceil(8).next_power_of_two())
    }

    /// Bytes per texel of the stencil aspect in a buffer (S8 → 1); `None` without
    /// stencil.
    pub fn stencil_copy_size(&self) -> Option<u32> {
        (self.stencil_bits > 0).then(|| self.stencil_bits.div_ceil(8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::enums::valid_format;

    /// Every value `valid_format` accepts: core values below 1000 and extension values
    /// `1_000_000_000 + (extension - 1) × 1000 + offset` (the registry's only scheme).
    fn wire_formats() -> Vec<i32> {
        let core = 0..1000;
        let ext = (0..1000).flat_map(|e| (0..1000).map(move |o| 1_000_000_000 + e * 1000 + o));
        core.chain(ext).filter(|v| valid_format(*v)).collect()
    }

    #[test]
    fn every_wire_format_but_undefined_has_info() {
        let all = wire_formats();
        assert!(
            all.len() > 185,
            "core and extension formats are on the wire"
        );
        for v in all {
            let f = vk::Format::from_raw(v);
            let info = format_info(f);
            if f == vk::Format::UNDEFINED {
                assert!(info.is_none());
            } else {
                let info = info.unwrap_or_else(|| panic!("no format_info for {f:?}"));
                assert!(info.block_size > 0, "{}", info.name);
                assert!(info.block_extent.iter().all(|e| *e > 0), "{}", info.name);
            }
        }
    }

    #[test]
    fn unknown_values_have_no_info() {
        assert_eq!(format_info(vk::Format::from_raw(-1)), None);
        let past = wire_formats()
            .into_iter()
            .filter(|v| *v < 1000)
            .max()
            .unwrap_or(0)
            + 1;
        assert_eq!(format_info(vk::Format::from_raw(past)), None);
    }

    #[test]
    fn maintenance5_and_4444_formats_are_sized() {
        let size = |f| format_info(f).map(|i| (i.block_size, i.block_extent));
        assert_eq!(size(vk::Format::A8_UNORM_KHR), Some((1, [1, 1, 1])));
        assert_eq!(
            size(vk::Format::A1B5G5R5_UNORM_PACK16_KHR),
            Some((2, [1, 1, 1]))
        );
        assert_eq!(
            size(vk::Format::A4R4G4B4_UNORM_PACK16),
            Some((2, [1, 1, 1]))
        );
        assert_eq!(
            size(vk::Format::A4B4G4R4_UNORM_PACK16),
            Some((2, [1, 1, 1]))
        );
        assert_eq!(size(vk::Format::BC7_UNORM_BLOCK), Some((16, [4, 4, 1])));
        assert_eq!(
            size(vk::Format::ASTC_12X10_SRGB_BLOCK),
            Some((16, [12, 10, 1]))
        );
        assert_eq!(size(vk::Format::G8B8G8R8_422_UNORM), Some((4, [2, 1, 1])));
    }

    #[test]
    fn depth_stencil_aspects_use_their_copy_sizes() {
        let sizes = |f| format_info(f).map(|i| (i.depth_copy_size(), i.stencil_copy_size()));
        assert_eq!(sizes(vk::Format::D16_UNORM), Some((Some(2), None)));
        assert_eq!(
            sizes(vk::Format::X8_D24_UNORM_PACK32),
            Some((Some(4), None))
        );
        assert_eq!(
            sizes(vk::Format::D24_UNORM_S8_UINT),
            Some((Some(4), Some(1)))
        );
        assert_eq!(
            sizes(vk::Format::D32_SFLOAT_S8_UINT),
            Some((Some(4), Some(1)))
        );
        assert_eq!(sizes(vk::Format::S8_UINT), Some((None, Some(1))));
        assert_eq!(sizes(vk::Format::R8_UNORM), Some((None, None)));
    }

    #[test]
    fn planes_name_their_copy_formats() {
        let info = format_info(vk::Format::G8_B8R8_2PLANE_420_UNORM).expect("known");
        assert_eq!(info.planes.len(), 2);
        assert_eq!(info.planes[0].format, vk::Format::R8_UNORM);
        assert_eq!(info.planes[1].format, vk::Format::R8G8_UNORM);
        assert_eq!(
            (info.planes[1].width_divisor, info.planes[1].height_divisor),
            (2, 2)
        );
        let three = format_info(vk::Format::G16_B16_R16_3PLANE_444_UNORM).expect("known");
        assert_eq!(three.planes.len(), 3);
        assert!(three
            .planes
            .iter()
            .all(|p| p.format == vk::Format::R16_UNORM));
    }
}
