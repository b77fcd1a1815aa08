//! Structure-aware: the input picks a valid request (`testgen::sample_request`, by command
//! index and seed) and a list of mutations (truncate, flip bytes, words set to 0,
//! 0xffffffff, 2^63, bad sTypes, off-by-one counts, duplicated or deleted words); the
//! mutated stream goes through the same dispatch loop as `decode_stream`. Input layout:
//! `harness::run_mutated`.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/common/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::run_mutated(data);
});
