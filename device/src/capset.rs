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

impl VenusProtocolInfo {
    /// The table generated from the registry (`vulkan_proto::info`): Mesa 25.0.7's
    /// protocol (wire format 1, vk.xml 1.3.269, serialization spec 1, Venus protocol
    /// spec 2) and the mask of its 118 extensions.
    pub fn generated() -> Self {
        use vulkan_proto::info;
        Self {
            wire_format_version: info::WIRE_FORMAT_VERSION,
            vk_xml_version: info::VK_XML_VERSION,
            vk_ext_command_serialization_spec_version:
                info::VK_EXT_COMMAND_SERIALIZATION_SPEC_VERSION,
            vk_mesa_venus_protocol_spec_version: info::VK_MESA_VENUS_PROTOCOL_SPEC_VERSION,
            vk_extension_mask: info::VK_EXTENSION_MASK,
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
    fn generated_table_gives_mesa_25_capset() {
        let bytes = VenusCapset::new(&VenusProtocolInfo::generated())
            .expect("generated table is valid")
            .to_bytes();
        assert_eq!(word(&bytes, 0), 1);
        assert_eq!(word(&bytes, 4), 0x0040_310d, "vk.xml 1.3.269");
        assert_eq!(word(&bytes, 12), 2);
        // Mesa 25.0.7's 118 extensions plus the valid bit (venus-wire.md §2).
        let bits: u32 = (0..32).map(|i| word(&bytes, 20 + i * 4).count_ones()).sum();
        assert_eq!(bits, 119);
        assert_eq!(word(&bytes, 20), 0x2000_8001);
    }

    #[test]
    fn capset_rejects_mask_without_valid_bit() {
        let mut info = info();
        info.vk_extension_mask[0] = 0x8000;
        assert_eq!(VenusCapset::new(&info), Err(CapsetError::MaskNotValid));
    }
}
