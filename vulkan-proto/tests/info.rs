//! The capset inputs: versions and the extension mask computed from the extension table.

use vulkan_proto::info;

#[test]
fn versions_match_mesa_25_0_7() {
    assert_eq!(info::WIRE_FORMAT_VERSION, 1);
    assert_eq!(
        info::VK_XML_VERSION,
        ash::vk::make_api_version(0, 1, 3, 269)
    );
    assert_eq!(info::VK_EXT_COMMAND_SERIALIZATION_SPEC_VERSION, 1);
    assert_eq!(info::VK_MESA_VENUS_PROTOCOL_SPEC_VERSION, 2);
    assert_eq!(info::EXTENSIONS.len(), 118);
    assert_eq!(info::SERIALIZED_COMMAND_COUNT, 271);
}

#[test]
fn extension_mask_equals_mesa_25_0_7_words() {
    // Recomputed from Mesa's vn_protocol_driver_info.h (venus-wire reference §2).
    let expected: [u32; 16] = [
        0x2000_8001,
        0x3040_2000,
        0x005f_6bcb,
        0xc256_60c0,
        0xe01a_2819,
        0x8265_060c,
        0x4131_0162,
        0xd0c4_600c,
        0x8620_1454,
        0x0800_0549,
        0x0035_0842,
        0xc400_0233,
        0x5002_0703,
        0x0000_0080,
        0x0081_0140,
        0x0010_8000,
    ];
    assert_eq!(&info::VK_EXTENSION_MASK[..16], &expected);
    assert!(info::VK_EXTENSION_MASK[16..].iter().all(|w| *w == 0));
}

#[test]
fn mask_bits_are_exactly_the_table() {
    let bits: u32 = info::VK_EXTENSION_MASK.iter().map(|w| w.count_ones()).sum();
    assert_eq!(bits as usize, info::EXTENSIONS.len() + 1);
    for e in info::EXTENSIONS {
        let n = e.number as usize;
        assert_ne!(
            info::VK_EXTENSION_MASK[n / 32] & (1 << (n % 32)),
            0,
            "{}",
            e.name
        );
    }
}

#[test]
fn extension_lookup() {
    let e = info::extension("VK_MESA_venus_protocol").expect("venus");
    assert_eq!((e.number, e.spec_version), (385, 2));
    assert_eq!(info::extension("VK_KHR_surface"), None);
    assert!(info::EXTENSIONS.windows(2).all(|w| w[0].name < w[1].name));
}
