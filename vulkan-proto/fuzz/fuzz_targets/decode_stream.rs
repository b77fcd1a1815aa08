//! Arbitrary bytes through `dispatch_command`, command after command, until an error or
//! the end: an accepting handler, an id map that knows some ids, a 1 MiB arena. Must never
//! panic. The harness is shared with `tests/fuzz_replay.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/common/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run_stream(data);
});
