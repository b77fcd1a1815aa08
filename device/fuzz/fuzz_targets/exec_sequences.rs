//! Structured Venus command sequences on the real executor and lavapipe: the input
//! decodes into high-level operations (create, bind, map, record, submit, wait,
//! destroy, …) on two contexts of one VM, each encoded as a valid command stream and
//! run through `Context::submit`. A failed context is replaced; the process must never
//! die. The harness is shared with `device/tests/exec_fuzz_replay.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/common/exec_ops.rs"]
mod exec_ops;

libfuzzer_sys::fuzz_target!(
    init: {
        exec_ops::use_lavapipe();
        // One llvmpipe thread per device keeps an iteration cheap on a shared machine.
        if std::env::var_os("LP_NUM_THREADS").is_none() {
            std::env::set_var("LP_NUM_THREADS", "1");
        }
    },
    |data: &[u8]| {
        let _ = exec_ops::run(data);
    }
);
