//! The Venus capset (capset id 4): `struct virgl_renderer_capset_venus`.
//!
//! The versions and the extension mask are inputs taken from `vulkan-proto`'s generated
//! info table ([`VenusProtocolInfo`]); nothing here is typed by hand except the transport
//! capabilities this renderer implements.

/// Size in bytes of `struct virgl_renderer_capset_venus`.
pub const VENUS_CAPSET_SIZE: usize = 160;

/// Number of `u32` words in the extension mask.
pub const EXTENSION_MASK_WORDS: usize = 32;

/// Errors building a capset.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapsetError {
    /// Bit 0 of the extension mask means "mask valid"; without it the guest assumes
    /// every extension is supported, which the decoder cannot honour.
    #[error("extension mask bit 0 (mask valid) is clear")]
    MaskNotValid,
    /// The wire format version must be non-zero.
    #[error("wire format version is 0")]
    NoWireFormat,
}

/// Protocol facts that come from the generated Venus protocol table
/// (`vulkan_proto::info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VenusProtocolInfo {
    /// `VN_WIRE_FORMAT_VERSION` (1).
    pub wire_format_version: u32,
    /// `VK_MAKE_API_VERSION` of the vk.xml the protocol was generated from.
    pub vk_xml_version: u32,
    /// `VK_EXT_command_serialization` spec version.
    pub vk_ext_command_serialization_spec_version: u32,
    /// `VK_MESA_venus_protocol` spec version.
    pub vk_mesa_venus_protocol_spec_version: u32,
    /// Extension mask: bit N set if extension number N is on the wire; bit 0 = valid.
    pub vk_extension_mask: [u32; EXTENSION_MASK_WORDS],
}

/// Extension numbers of the transport layer itself: `VK_EXT_command_serialization`
/// (384) and `VK_MESA_venus_protocol` (385).
pub const TRANSPORT_EXTENSION_NUMBERS: [u32; 2] = [384, 385];

/// Builds an extension mask from extension numbers: bit N for extension N, plus bit 0
/// ("mask valid"). Numbers beyond the mask (≥ 1024) are ignored.
pub fn extension_mask(numbers: impl IntoIterator<Item = u32>) -> [u32; EXTENSION_MASK_WORDS] {
    let mut mask = [0u32; EXTENSION_MASK_WORDS];
    mask[0] = 1;
    for n in numbers {
        if let Some(word) = mask.get_mut((n / 32) as usize) {
            *word |= 1 << (n % 32);
        }
    }
    mask
}

impl VenusProtocolInfo {
    /// Interim table for the bring-up executor
    /// ([`crate::renderer::transport::TransportOnlyExecutor`]), used until
    /// `vulkan_proto::info` is published: the protocol versions Mesa 25.0.7 speaks (wire
    /// format 1, vk.xml 1.3.269, serialization spec 1, Venus protocol spec 2) and a mask
    /// naming only the transport extensions, since that executor decodes nothing else.
    pub fn transport_only() -> Self {
        Self {
            wire_format_version: 1,
            vk_xml_version: (1 << 22) | (3 << 12) | 269,
            vk_ext_command_serialization_spec_version: 1,
            vk_mesa_venus_protocol_spec_version: 2,
            vk_extension_mask: extension_mask(TRANSPORT_EXTENSION_NUMBERS),
        }
    }
}

/// `struct virgl_renderer_capset_venus`, field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VenusCapset {
    /// Must equal the guest's wire format version.
    pub wire_format_version: u32,
    /// Caps the API version the guest reports.
    pub vk_xml_version: u32,
    /// Clamped by the guest.
    pub vk_ext_command_serialization_spec_version: u32,
    /// Clamped by the guest to 2; at 2 TLS rings may chain `VkRingPriorityInfoMESA`.
    pub vk_mesa_venus_protocol_spec_version: u32,
    /// All shared memory for rings and replies uses blob id 0.
    pub supports_blob_id_0: u32,
    /// See [`VenusProtocolInfo::vk_extension_mask`].
    pub vk_extension_mask1: [u32; EXTENSION_MASK_WORDS],
    /// Blocking waits may run on ring threads.
    pub allow_vk_wait_syncs: u32,
    /// One timeline (`ring_idx`) per guest VkQueue.
    pub supports_multiple_timelines: u32,
    /// virtio-gpu only; 0.
    pub use_guest_vram: u32,
}

impl VenusCapset {
    /// Builds the capset this renderer reports from the protocol table.
    pub fn new(info: &VenusProtocolInfo) -> Result<Self, CapsetError> {
        if info.vk_extension_mask[0] & 1 == 0 {
            return Err(CapsetError::MaskNotValid);
        }
        if info.wire_format_version == 0 {
            return Err(CapsetError::NoWireFormat);
        }
        Ok(Self {
            wire_format_version: info.wire_format_version,
            vk_xml_version: info.vk_xml_version,
            vk_ext_command_serialization_spec_version: info
                .vk_ext_command_serialization_spec_version,
            vk_mesa_venus_protocol_spec_version: info.vk_mesa_venus_protocol_spec_version,
            supports_blob_id_0: 1,
            vk_extension_mask1: info.vk_extension_mask,
            allow_vk_wait_syncs: 1,
            supports_multiple_timelines: 1,
            use_guest_vram: 0,
        })
    }

    /// The 160 wire bytes (little-endian u32s).
    pub fn to_bytes(&self) -> [u8; VENUS_CAPSET_SIZE] {
        let mut words = Vec::with_capacity(VENUS_CAPSET_SIZE / 4);
        words.extend_from_slice(&[
            self.wire_format_version,
            self.vk_xml_version,
            self.vk_ext_command_serialization_spec_version,
            self.vk_mesa_venus_protocol_spec_version,
            self.supports_blob_id_0,
        ]);
        words.extend_from_slice(&self.vk_extension_mask1);
        words.extend_from_slice(&[
            self.allow_vk_wait_syncs,
            self.supports_multiple_timelines,
            self.use_guest_vram,
        ]);
        let mut out = [0u8; VENUS_CAPSET_SIZE];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> VenusProtocolInfo {
        let mut mask = [0u32; EXTENSION_MASK_WORDS];
        mask[0] = 1 | (1 << 15);
        mask[12] = 2;
        VenusProtocolInfo {
            wire_format_version: 1,
            vk_xml_version: (1 << 22) | (3 << 12) | 269,
            vk_ext_command_serialization_spec_version: 1,
            vk_mesa_venus_protocol_spec_version: 2,
            vk_extension_mask: mask,
        }
    }

    fn word(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes([
            bytes[offset],
            bytes[offset + 1],
            bytes[offset + 2],
            bytes[offset + 3],
        ])
    }

    #[test]
    fn capset_fields_land_at_venus_hw_offsets() {
        let bytes = VenusCapset::new(&info()).expect("valid info").to_bytes();
        assert_eq!(word(&bytes, 0), 1);
        assert_eq!(word(&bytes, 4), 0x0040_310d);
        assert_eq!(word(&bytes, 8), 1);
        assert_eq!(word(&bytes, 12), 2);
        assert_eq!(word(&bytes, 16), 1);
        assert_eq!(word(&bytes, 20), 1 | (1 << 15));
        assert_eq!(word(&bytes, 20 + 12 * 4), 2);
        assert_eq!(word(&bytes, 148), 1);
        assert_eq!(word(&bytes, 152), 1);
        assert_eq!(word(&bytes, 156), 0);
    }

    #[test]
    fn extension_mask_sets_valid_bit_and_numbered_bits() {
        let mask = extension_mask([384, 385, 2000]);
        assert_eq!(mask[0], 1);
        assert_eq!(mask[12], 0b11);
        assert_eq!(mask.iter().map(|w| w.count_ones()).sum::<u32>(), 3);
    }

    #[test]
    fn capset_rejects_mask_without_valid_bit() {
        let mut info = info();
        info.vk_extension_mask[0] = 0x8000;
        assert_eq!(VenusCapset::new(&info), Err(CapsetError::MaskNotValid));
    }
}
