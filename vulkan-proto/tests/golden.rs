//! Golden streams observed on the wire from Mesa 25.0.7's Venus driver (see
//! `guest-driver-notes/` and the venus-wire reference): each decodes to the right values,
//! and the driver-side encoder, fed ordinary `ash` values, reproduces it byte for byte.

use ash::vk::{self, Handle};
use vulkan_proto::args::*;
use vulkan_proto::cs::{Arena, Cx, Decoder, Encoder, RawIds};
use vulkan_proto::{CommandFlags, CommandType};

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn u64w(v: u64) -> [u32; 2] {
    let b = v.to_le_bytes();
    [
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    ]
}

/// vkCreateInstance as vulkaninfo sends it (140 bytes).
fn create_instance_stream() -> Vec<u8> {
    let mut w = vec![0, 1]; // type 0, GENERATE_REPLY
    w.extend([1, 0]); // pCreateInfo present
    w.extend([1, 0, 0]); // sType INSTANCE_CREATE_INFO, pNext NULL
    w.push(0); // flags
    w.extend([1, 0]); // pApplicationInfo present
    w.extend([0, 0, 0]); // sType APPLICATION_INFO, pNext NULL
    w.extend([11, 0]); // pApplicationName: 11 bytes
    let mut b = words(&w);
    b.extend(b"vulkaninfo\0\0"); // + 1 byte of padding
    let mut w = vec![1]; // applicationVersion
    w.extend([0, 0]); // pEngineName NULL
    w.push(0); // engineVersion
    w.push(vk::make_api_version(0, 1, 3, 239)); // 0x004030ef
    w.extend([0, 0, 0]); // enabledLayerCount 0, ppEnabledLayerNames NULL
    w.extend([0, 0, 0]); // enabledExtensionCount 0, ppEnabledExtensionNames NULL
    w.extend([0, 0]); // pAllocator NULL
    w.extend([1, 0, 1, 0]); // pInstance present, id 1
    b.extend(words(&w));
    b
}

fn decode_body<'a, T>(
    bytes: &[u8],
    cx: &Cx<'a, '_>,
    f: impl FnOnce(&mut Decoder<'_>, &Cx<'a, '_>) -> vulkan_proto::cs::Result<T>,
) -> (u32, u32, T) {
    let mut d = Decoder::new(bytes);
    let ty = d.u32().expect("type");
    let flags = d.u32().expect("flags");
    let v = f(&mut d, cx).expect("decode");
    assert_eq!(d.remaining(), 0, "bytes left after decode");
    (ty, flags, v)
}

#[test]
fn create_instance_decodes_to_vulkaninfo_values() {
    let bytes = create_instance_stream();
    assert_eq!(bytes.len(), 140);
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (ty, flags, args) = decode_body(&bytes, &cx, CreateInstanceArgs::decode);
    assert_eq!(ty, CommandType::CREATE_INSTANCE.0);
    assert_eq!(flags, 1);
    let ci = args.p_create_info.expect("create info");
    assert_eq!(ci.enabled_extension_count, 0);
    // SAFETY: the decoder allocated the application info in `arena`, alive here.
    let app = unsafe { ci.p_application_info.as_ref() }.expect("application info");
    // SAFETY: the decoder made a NUL-terminated string in `arena`.
    let name = unsafe { core::ffi::CStr::from_ptr(app.p_application_name) };
    assert_eq!(name.to_str(), Ok("vulkaninfo"));
    assert!(app.p_engine_name.is_null());
    assert_eq!(app.application_version, 1);
    assert_eq!(app.api_version, 0x0040_30ef);
    assert_eq!(args.p_instance.as_deref().map(|i| i.as_raw()), Some(1));
}

#[test]
fn create_instance_encoder_reproduces_the_golden_bytes() {
    let name = c"vulkaninfo";
    let app = vk::ApplicationInfo::default()
        .application_name(name)
        .application_version(1)
        .api_version(vk::make_api_version(0, 1, 3, 239));
    let ci = vk::InstanceCreateInfo::default().application_info(&app);
    let mut instance = vk::Instance::from_raw(1);
    let args = CreateInstanceArgs {
        p_create_info: Some(&ci),
        p_instance: Some(&mut instance),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: every pointer in `ci` refers to locals alive for this call.
    unsafe { args.encode(&mut e, CommandFlags::GENERATE_REPLY) };
    assert_eq!(e.as_bytes(), create_instance_stream().as_slice());
}

#[test]
fn create_instance_reply_is_24_bytes_and_round_trips() {
    let bytes = create_instance_stream();
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (_, _, args) = decode_body(&bytes, &cx, CreateInstanceArgs::decode);
    let mut e = Encoder::new();
    // SAFETY: `args` was decoded into `arena`, alive here.
    unsafe { args.encode_reply(&mut e, vk::Result::SUCCESS) };
    let mut expect = vec![0u32, 0];
    expect.extend([1, 0, 1, 0]);
    assert_eq!(e.as_bytes(), words(&expect).as_slice());
    assert_eq!(e.len(), 24);
    let mut mine = CreateInstanceArgs::default();
    let mut d = Decoder::new(e.as_bytes());
    let ret = mine.decode_reply(&mut d, &cx).expect("reply");
    assert_eq!(ret, vk::Result::SUCCESS);
    assert_eq!(mine.p_instance.map(|i| i.as_raw()), Some(1));
}

#[test]
fn enumerate_instance_version_request_and_reply() {
    let req = words(&[137, 1, 1, 0]);
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (ty, _, args) = decode_body(&req, &cx, EnumerateInstanceVersionArgs::decode);
    assert_eq!(CommandType(ty).name(), Some("vkEnumerateInstanceVersion"));
    assert!(args.p_api_version.is_some());
    let mut api = 0u32;
    let a = EnumerateInstanceVersionArgs {
        p_api_version: Some(&mut api),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { a.encode(&mut e, CommandFlags::GENERATE_REPLY) };
    assert_eq!(e.as_bytes(), req.as_slice());

    let mut api = vk::make_api_version(0, 1, 3, 269);
    let a = EnumerateInstanceVersionArgs {
        p_api_version: Some(&mut api),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { a.encode_reply(&mut e, vk::Result::SUCCESS) };
    assert_eq!(
        e.as_bytes(),
        words(&[137, 0, 1, 0, vk::make_api_version(0, 1, 3, 269)]).as_slice()
    );
    assert_eq!(e.len(), 20);
}

#[test]
fn enumerate_physical_devices_count_query_and_reply() {
    let req = words(&[2, 1, 1, 0, 1, 0, 0, 0, 0]);
    assert_eq!(req.len(), 36);
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (_, _, args) = decode_body(&req, &cx, EnumeratePhysicalDevicesArgs::decode);
    assert_eq!(args.instance.as_raw(), 1);
    assert_eq!(args.p_physical_device_count.as_deref().copied(), Some(0));
    assert!(args.p_physical_devices.is_none());

    let mut count = 0u32;
    let a = EnumeratePhysicalDevicesArgs {
        instance: vk::Instance::from_raw(1),
        p_physical_device_count: Some(&mut count),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { a.encode(&mut e, CommandFlags::GENERATE_REPLY) };
    assert_eq!(e.as_bytes(), req.as_slice());

    let mut n = 1u32;
    let a = EnumeratePhysicalDevicesArgs {
        p_physical_device_count: Some(&mut n),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { a.encode_reply(&mut e, vk::Result::SUCCESS) };
    assert_eq!(e.as_bytes(), words(&[2, 0, 1, 0, 1, 0, 0]).as_slice());
    assert_eq!(e.len(), 28);
}

#[test]
fn destroy_instance_request_and_void_reply() {
    let req = words(&[1, 1, 1, 0, 0, 0]);
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (_, _, args) = decode_body(&req, &cx, DestroyInstanceArgs::decode);
    assert_eq!(args.instance.as_raw(), 1);
    let mut e = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { args.encode(&mut e, CommandFlags::GENERATE_REPLY) };
    assert_eq!(e.as_bytes(), req.as_slice());
    let mut r = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { args.encode_reply(&mut r, ()) };
    assert_eq!(r.as_bytes(), 1u32.to_le_bytes().as_slice());
}

fn create_ring_stream() -> Vec<u8> {
    let ring = 0x5642_dca8_fa00u64;
    let mut w = vec![188, 0];
    w.extend(u64w(ring));
    w.extend([1, 0]); // pCreateInfo present
    w.push(1_000_384_000); // VK_STRUCTURE_TYPE_RING_CREATE_INFO_MESA
    w.extend([1, 0, 1_000_384_006]); // pNext: RING_MONITOR_INFO
    w.extend([0, 0]); // its pNext: end
    w.push(3_000_000); // maxReportingPeriodMicroseconds
    w.extend([0, 1]); // flags, resourceId
    for v in [
        0u64, 131_268, 1_000_000, 0, 64, 128, 192, 131_072, 131_264, 4,
    ] {
        w.extend(u64w(v));
    }
    words(&w)
}

#[test]
fn create_ring_with_monitor_decodes_and_reencodes() {
    let bytes = create_ring_stream();
    assert_eq!(bytes.len(), 140);
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (ty, flags, args) = decode_body(&bytes, &cx, CreateRingMESAArgs::decode);
    assert_eq!((ty, flags), (188, 0));
    assert_eq!(args.ring, 0x5642_dca8_fa00);
    let ci = args.p_create_info.expect("create info");
    assert_eq!(ci.resource_id, 1);
    assert_eq!(ci.size, 131_268);
    assert_eq!(ci.idle_timeout, 1_000_000);
    assert_eq!(
        (ci.head_offset, ci.tail_offset, ci.status_offset),
        (0, 64, 128)
    );
    assert_eq!((ci.buffer_offset, ci.buffer_size), (192, 131_072));
    assert_eq!((ci.extra_offset, ci.extra_size), (131_264, 4));
    // SAFETY: the decoder built the chain in `arena`.
    let mon = unsafe {
        ci.p_next
            .cast::<vulkan_proto::generated::types::RingMonitorInfoMESA<'_>>()
            .as_ref()
    }
    .expect("monitor info");
    assert_eq!(mon.s_type.as_raw(), 1_000_384_006);
    assert_eq!(mon.max_reporting_period_microseconds, 3_000_000);
    assert!(mon.p_next.is_null());

    let mut e = Encoder::new();
    // SAFETY: decoded into `arena`, alive here.
    unsafe { args.encode(&mut e, CommandFlags::NONE) };
    assert_eq!(e.as_bytes(), bytes.as_slice());
}

#[test]
fn set_reply_command_stream_is_36_bytes() {
    use vulkan_proto::generated::types::CommandStreamDescriptionMESA;
    let desc = CommandStreamDescriptionMESA {
        resource_id: 2,
        offset: 20,
        size: 24,
    };
    let a = SetReplyCommandStreamMESAArgs {
        p_stream: Some(&desc),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: no raw pointers are involved.
    unsafe { a.encode(&mut e, CommandFlags::NONE) };
    let mut w = vec![178, 0, 1, 0, 2];
    w.extend(u64w(20));
    w.extend(u64w(24));
    assert_eq!(e.as_bytes(), words(&w).as_slice());
    assert_eq!(e.len(), 36);
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (_, _, back) = decode_body(e.as_bytes(), &cx, SetReplyCommandStreamMESAArgs::decode);
    let s = back.p_stream.expect("stream");
    assert_eq!((s.resource_id, s.offset, s.size), (2, 20, 24));
}

#[test]
fn update_descriptor_sets_with_null_unused_info_arrays_decodes() {
    // Mesa sends the info arrays a descriptor type does not use as NULL with the shared
    // non-zero descriptorCount (vk.xml marks them noautovalidity).
    let buffer_info = [vk::DescriptorBufferInfo {
        buffer: vk::Buffer::from_raw(7),
        offset: 0,
        range: 64,
    }];
    let write = vk::WriteDescriptorSet {
        dst_set: vk::DescriptorSet::from_raw(5),
        descriptor_count: 1,
        descriptor_type: vk::DescriptorType::STORAGE_BUFFER,
        p_buffer_info: buffer_info.as_ptr(),
        ..Default::default()
    };
    let writes = [write];
    let a = UpdateDescriptorSetsArgs {
        device: vk::Device::from_raw(1),
        descriptor_write_count: 1,
        p_descriptor_writes: Some(&writes),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: `writes` and `buffer_info` are alive for the call.
    unsafe { a.encode(&mut e, CommandFlags::NONE) };
    let arena = Arena::default();
    let cx = Cx::new(&arena, &RawIds);
    let (_, _, back) = decode_body(e.as_bytes(), &cx, UpdateDescriptorSetsArgs::decode);
    let w = &back.p_descriptor_writes.expect("writes")[0];
    assert!(w.p_image_info.is_null());
    assert!(w.p_texel_buffer_view.is_null());
    // SAFETY: decoded into `arena`.
    let bi = unsafe { w.p_buffer_info.as_ref() }.expect("buffer info");
    assert_eq!((bi.buffer.as_raw(), bi.range), (7, 64));
}
