//! Hostile input: truncations and corruptions of valid encodings of every command must give
//! an error (or a clean decode), never a panic, an over-read or an allocation beyond the
//! budget; targeted corruptions give the specific error.

use ash::vk::{self, Handle};
use proptest::prelude::*;
use vulkan_proto::args::*;
use vulkan_proto::cs::{Arena, Cx, DecodeError, Decoder, DispatchError, Encoder, RawIds};
use vulkan_proto::generated::testgen::{sample_request, COMMAND_TYPES};
use vulkan_proto::{dispatch_command, CommandFlags, Dispatch, HandleMap, ObjectId};

/// Accepts nothing: every command is "unsupported", so a clean decode is visible as
/// `DispatchError::Unsupported` and a bad one as `DispatchError::Decode`.
struct Reject;

// SAFETY: no handler touches the arguments, so every pointer stays as decoded.
unsafe impl Dispatch for Reject {
    fn handles(&self) -> &dyn HandleMap {
        &RawIds
    }
}

fn dispatch(bytes: &[u8], budget: usize) -> (Result<(), DispatchError>, usize) {
    let mut d = Decoder::new(bytes);
    let mut arena = Arena::new(budget);
    let mut reply = Encoder::new();
    let r = dispatch_command(&mut Reject, &mut d, &mut arena, &mut reply).map(|_| ());
    assert!(d.position() <= bytes.len());
    (r, d.position())
}

#[test]
fn every_truncation_of_every_command_is_a_decode_error() {
    let mut checked = 0usize;
    for &ty in COMMAND_TYPES {
        for seed in 0..3 {
            let bytes = sample_request(ty, seed).expect("sample");
            let (full, used) = dispatch(&bytes, 16 << 20);
            assert!(
                matches!(full, Err(DispatchError::Unsupported(t)) if t.0 == ty),
                "type {ty} seed {seed}: full request did not decode: {full:?}"
            );
            assert_eq!(used, bytes.len(), "type {ty}: decode left bytes");
            for len in 0..bytes.len() {
                let (r, _) = dispatch(&bytes[..len], 16 << 20);
                assert!(
                    matches!(r, Err(DispatchError::Decode(_))),
                    "type {ty} seed {seed}: truncation to {len} of {} gave {r:?}",
                    bytes.len()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "only {checked} truncations checked");
}

#[test]
fn every_word_blown_up_to_2_pow_63_never_panics() {
    for &ty in COMMAND_TYPES {
        let bytes = sample_request(ty, 7).expect("sample");
        for at in (8..bytes.len().saturating_sub(7)).step_by(4) {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&(1u64 << 63).to_le_bytes());
            let (r, _) = dispatch(&b, 1 << 20);
            // Either a decode error or a clean decode of a still-valid value (a 64-bit scalar
            // may legally hold 2^63); never a panic or an allocation past the 1 MiB budget.
            assert!(matches!(
                r,
                Err(DispatchError::Decode(_) | DispatchError::Unsupported(_))
            ));
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Word(usize, u32),
    Wide(usize, u64),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u32),
                Just(u32::MAX),
                Just(0x7fff_ffff),
                Just(1_000_000_007),
                any::<u32>()
            ]
        )
            .prop_map(|(a, w)| Mutation::Word(a, w)),
        (
            any::<usize>(),
            prop_oneof![
                Just(1u64 << 63),
                Just(u64::MAX),
                Just(1u64 << 32),
                any::<u64>()
            ]
        )
            .prop_map(|(a, w)| Mutation::Wide(a, w)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *m {
        Mutation::Flip(a, x) => bytes[a % n] ^= x,
        Mutation::Word(a, w) if n >= 4 => {
            let at = (a % (n / 4)) * 4;
            bytes[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
        Mutation::Wide(a, w) if n >= 8 => {
            let at = (a % ((n - 4) / 4)) * 4;
            bytes[at..at + 8].copy_from_slice(&w.to_le_bytes());
        }
        Mutation::Truncate(a) => bytes.truncate(a % n),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_corruptions_never_panic(
        pick in 0..COMMAND_TYPES.len(),
        seed in 0u64..1000,
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let ty = COMMAND_TYPES[pick];
        let mut bytes = sample_request(ty, seed).expect("sample");
        for m in &muts {
            apply(&mut bytes, m);
        }
        let (r, used) = dispatch(&bytes, 1 << 20);
        prop_assert!(used <= bytes.len());
        prop_assert!(matches!(r, Err(DispatchError::Decode(_) | DispatchError::Unsupported(_))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (r, used) = dispatch(&bytes, 1 << 20);
        prop_assert!(used <= bytes.len());
        prop_assert!(r.is_err());
    }
}

fn decode_err(bytes: &[u8]) -> DecodeError {
    match dispatch(bytes, 1 << 20).0 {
        Err(DispatchError::Decode(e)) => e,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn unknown_and_unserialized_command_types_carry_the_number() {
    assert!(matches!(
        decode_err(&words(&[999, 0])),
        DecodeError::UnknownCommand { ty: 999, .. }
    ));
    // vkGetInstanceProcAddr (9) exists but is never on the wire.
    assert!(matches!(
        decode_err(&words(&[9, 0])),
        DecodeError::UnknownCommand { ty: 9, .. }
    ));
    assert!(matches!(
        decode_err(&words(&[137, 2, 1, 0])),
        DecodeError::BadCommandFlags { flags: 2, .. }
    ));
}

fn create_instance_with(app_stype: u32, ext_count: u32, ext_array: u64) -> Vec<u8> {
    let mut w = vec![0, 1, 1, 0, 1, 0, 0, 0, 1, 0, app_stype, 0, 0];
    w.extend([0, 0, 0, 0, 0, 0]); // name NULL, appVersion, engine NULL, engineVersion
    w.push(0); // apiVersion
    w.extend([0, 0, 0]); // layers
    w.push(ext_count);
    let b = ext_array.to_le_bytes();
    w.extend([
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    ]);
    w.extend([0, 0, 1, 0, 1, 0]);
    words(&w)
}

#[test]
fn targeted_corruptions_give_specific_errors() {
    // A valid baseline first.
    assert!(matches!(
        dispatch(&create_instance_with(0, 0, 0), 1 << 20).0,
        Err(DispatchError::Unsupported(_))
    ));
    assert!(matches!(
        decode_err(&create_instance_with(7, 0, 0)),
        DecodeError::BadSType {
            expected: 0,
            found: 7,
            ..
        }
    ));
    assert!(matches!(
        decode_err(&create_instance_with(0, 3, 1 << 63)),
        DecodeError::ArraySize { expected: 3, found, .. } if found == 1 << 63
    ));
    assert!(matches!(
        decode_err(&create_instance_with(0, u32::MAX, u64::from(u32::MAX))),
        DecodeError::TooManyElements { .. }
    ));
    assert!(matches!(
        decode_err(&create_instance_with(0, 2, 0)),
        DecodeError::NullArray { count: 2, .. }
    ));
}

#[test]
fn bad_enum_values_are_rejected() {
    let ci = vk::ImageCreateInfo {
        format: vk::Format::from_raw(0x7fff_0000),
        ..Default::default()
    };
    let mut image = vk::Image::from_raw(2);
    let a = CreateImageArgs {
        device: vk::Device::from_raw(1),
        p_create_info: Some(&ci),
        p_image: Some(&mut image),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: `ci` holds no pointers.
    unsafe { a.encode(&mut e, CommandFlags::NONE) };
    assert!(matches!(
        decode_err(e.as_bytes()),
        DecodeError::BadEnum {
            ty: "VkFormat",
            value: 0x7fff_0000,
            ..
        }
    ));
}

/// Knows id 5 as a device and id 6 as a buffer.
struct Strict;

impl HandleMap for Strict {
    fn lookup(&self, ty: vk::ObjectType, id: ObjectId) -> Option<u64> {
        match (ty, id.0) {
            (vk::ObjectType::DEVICE, 5) => Some(0x5000),
            (vk::ObjectType::BUFFER, 6) => Some(0x6000),
            _ => None,
        }
    }
}

fn destroy_buffer(device: u64, buffer: u64) -> Vec<u8> {
    let a = DestroyBufferArgs {
        device: vk::Device::from_raw(device),
        buffer: vk::Buffer::from_raw(buffer),
        ..Default::default()
    };
    let mut e = Encoder::new();
    // SAFETY: no pointers.
    unsafe { a.encode(&mut e, CommandFlags::NONE) };
    e.into_bytes()
}

fn decode_strict(bytes: &[u8]) -> Result<(u64, u64), DecodeError> {
    let arena = Arena::default();
    let cx = Cx::new(&arena, &Strict);
    let mut d = Decoder::new(bytes);
    d.u32()?;
    d.u32()?;
    let a = DestroyBufferArgs::decode(&mut d, &cx)?;
    Ok((a.device.as_raw(), a.buffer.as_raw()))
}

#[test]
fn object_ids_are_typed_and_checked() {
    assert_eq!(decode_strict(&destroy_buffer(5, 6)), Ok((0x5000, 0x6000)));
    assert_eq!(decode_strict(&destroy_buffer(5, 0)), Ok((0x5000, 0)));
    assert!(matches!(
        decode_strict(&destroy_buffer(5, 99)),
        Err(DecodeError::UnknownObject {
            ty: vk::ObjectType::BUFFER,
            id: 99,
            ..
        })
    ));
    // Right id, wrong type.
    assert!(matches!(
        decode_strict(&destroy_buffer(6, 6)),
        Err(DecodeError::UnknownObject {
            ty: vk::ObjectType::DEVICE,
            id: 6,
            ..
        })
    ));
    // The dispatchable first handle may not be NULL.
    assert!(matches!(
        decode_strict(&destroy_buffer(0, 6)),
        Err(DecodeError::NullRequired { .. })
    ));
}

#[test]
fn a_very_long_pnext_chain_is_rejected_without_recursion() {
    // vkGetPhysicalDeviceFeatures2 whose output skeleton chain has 100 000 headers.
    let ty = vulkan_proto::CommandType::GET_PHYSICAL_DEVICE_FEATURES2.0;
    let mut w = vec![ty, 1, 1, 0, 1, 0, 1_000_059_000];
    for _ in 0..100_000 {
        w.extend([1, 0, 1_000_120_000]); // VkPhysicalDeviceVariablePointersFeatures
    }
    w.extend([0, 0]);
    let e = decode_err(&words(&w));
    assert!(
        matches!(e, DecodeError::ChainTooLong { max: 128, .. }),
        "{e:?}"
    );
}

#[test]
fn huge_output_arrays_hit_the_budget_not_the_allocator() {
    // vkEnumeratePhysicalDevices claiming 2^31 output slots: only the size is on the wire.
    let n = 1u32 << 31;
    let bytes = words(&[2, 1, 1, 0, 1, 0, n, n, 0]);
    assert!(matches!(decode_err(&bytes), DecodeError::Budget { .. }));
}

#[test]
fn the_decoder_state_is_sticky_after_a_failure() {
    let bytes = words(&[1]);
    let mut d = Decoder::new(&bytes);
    assert!(matches!(d.u64(), Err(DecodeError::Truncated { .. })));
    assert!(d.is_fatal());
    assert_eq!(d.u32(), Err(DecodeError::Fatal));
}
