//! The generated dispatch step: decode, call the handler, encode the reply only when asked.

use ash::vk::{self, Handle};
use vulkan_proto::args::*;
use vulkan_proto::cs::{Arena, Decoder, DispatchError, Encoder, RawIds};
use vulkan_proto::{dispatch_command, CommandFlags, CommandType, Dispatch, HandleMap};

#[derive(Default)]
struct Recorder {
    calls: Vec<CommandType>,
    replies: Vec<(CommandType, Vec<u8>)>,
}

// SAFETY: handlers only write plain values into output slots the decoder allocated.
unsafe impl Dispatch for Recorder {
    fn handles(&self) -> &dyn HandleMap {
        &RawIds
    }

    fn write_reply(&mut self, command: CommandType, reply: &[u8]) -> Result<(), DispatchError> {
        self.replies.push((command, reply.to_vec()));
        Ok(())
    }

    fn enumerate_instance_version(
        &mut self,
        args: &mut EnumerateInstanceVersionArgs<'_>,
    ) -> Result<vk::Result, DispatchError> {
        self.calls.push(CommandType::ENUMERATE_INSTANCE_VERSION);
        if let Some(v) = args.p_api_version.as_deref_mut() {
            *v = vk::make_api_version(0, 1, 3, 269);
        }
        Ok(vk::Result::SUCCESS)
    }

    fn destroy_instance(
        &mut self,
        args: &mut DestroyInstanceArgs<'_>,
    ) -> Result<(), DispatchError> {
        assert_eq!(args.instance.as_raw(), 1);
        self.calls.push(CommandType::DESTROY_INSTANCE);
        Ok(())
    }
}

fn encode(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
    let mut e = Encoder::new();
    f(&mut e);
    e.into_bytes()
}

#[test]
fn a_stream_dispatches_command_by_command_with_replies_only_when_asked() {
    let mut stream = Vec::new();
    let mut v = 0u32;
    let ver = EnumerateInstanceVersionArgs {
        p_api_version: Some(&mut v),
        ..Default::default()
    };
    // SAFETY: no raw pointers.
    stream.extend(encode(|e| unsafe {
        ver.encode(e, CommandFlags::GENERATE_REPLY)
    }));
    let destroy = DestroyInstanceArgs {
        instance: vk::Instance::from_raw(1),
        ..Default::default()
    };
    // SAFETY: no raw pointers.
    stream.extend(encode(|e| unsafe { destroy.encode(e, CommandFlags::NONE) }));
    // SAFETY: no raw pointers.
    stream.extend(encode(|e| unsafe {
        destroy.encode(e, CommandFlags::GENERATE_REPLY)
    }));

    let mut h = Recorder::default();
    let mut d = Decoder::new(&stream);
    let mut arena = Arena::default();
    let mut reply = Encoder::new();
    let mut ends = Vec::new();
    while d.remaining() > 0 {
        dispatch_command(&mut h, &mut d, &mut arena, &mut reply).expect("dispatch");
        ends.push(d.position());
    }
    assert_eq!(ends, vec![16, 40, 64]);
    assert_eq!(
        h.calls,
        vec![
            CommandType::ENUMERATE_INSTANCE_VERSION,
            CommandType::DESTROY_INSTANCE,
            CommandType::DESTROY_INSTANCE
        ]
    );
    assert_eq!(h.replies.len(), 2);
    let mut want = Vec::new();
    for w in [137u32, 0, 1, 0, vk::make_api_version(0, 1, 3, 269)] {
        want.extend(w.to_le_bytes());
    }
    assert_eq!(
        h.replies[0],
        (CommandType::ENUMERATE_INSTANCE_VERSION, want)
    );
    assert_eq!(
        h.replies[1],
        (CommandType::DESTROY_INSTANCE, 1u32.to_le_bytes().to_vec())
    );
}

#[test]
fn unimplemented_commands_are_unsupported_and_name_themselves() {
    let a = DestroyBufferArgs {
        device: vk::Device::from_raw(3),
        ..Default::default()
    };
    // SAFETY: no raw pointers.
    let bytes = encode(|e| unsafe { a.encode(e, CommandFlags::NONE) });
    let mut h = Recorder::default();
    let mut arena = Arena::default();
    let err = dispatch_command(
        &mut h,
        &mut Decoder::new(&bytes),
        &mut arena,
        &mut Encoder::new(),
    )
    .expect_err("unsupported");
    assert!(matches!(
        err,
        DispatchError::Unsupported(CommandType::DESTROY_BUFFER)
    ));
    assert_eq!(err.to_string(), "unsupported command vkDestroyBuffer");
}
