//! Replays the fuzz corpus on the stable toolchain, without the fuzzer: every committed seed
//! (`fuzz/seeds/`) and every regression input (`fuzz/regressions/`) goes through the same
//! harness code the cargo-fuzz targets run (`tests/common/harness.rs`), plus a
//! deterministic sweep of hostile mutations over every command.
//!
//! Regenerate the seeds with
//! `VGPU_WRITE_SEEDS=1 cargo test -p vulkan-proto --test fuzz_replay seeds_match`.

mod common;

use std::path::{Path, PathBuf};

use common::harness::{
    golden_streams, mutate_seed, run_mutated, run_stream, Outcome, ACCEPTED_COMMANDS, FUZZ_BUDGET,
    MAX_OPS, MUTATE_HEADER, OP_BYTES,
};
use vulkan_proto::generated::testgen::{sample_request, COMMAND_TYPES};

/// Sample seeds per command type in `seeds/decode_stream/`.
const SAMPLE_SEEDS: u64 = 2;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read corpus file");
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Every seed file, as the generator and the golden streams make it today.
fn expected_seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let root = fuzz_dir().join("seeds");
    let stream = root.join("decode_stream");
    let mutate = root.join("mutate_valid");
    let mut out = Vec::new();
    for (name, bytes) in golden_streams() {
        out.push((stream.join(format!("{name}.bin")), bytes));
    }
    for &ty in COMMAND_TYPES {
        for seed in 0..SAMPLE_SEEDS {
            let bytes = sample_request(ty, seed).expect("sample request");
            out.push((stream.join(format!("sample-{ty:03}-{seed}.bin")), bytes));
        }
    }
    // Mixed streams: eight commands back to back, as a command buffer would carry them.
    for mix in 0..4u64 {
        let mut bytes = Vec::new();
        for k in 0..8u64 {
            let i =
                usize::try_from((mix * 37 + k * 11) % COMMAND_TYPES.len() as u64).expect("index");
            bytes.extend(sample_request(COMMAND_TYPES[i], mix * 8 + k).expect("sample"));
        }
        out.push((stream.join(format!("mix-{mix}.bin")), bytes));
    }
    for (i, &ty) in COMMAND_TYPES.iter().enumerate() {
        let idx = u16::try_from(i).expect("fewer than 65536 commands");
        out.push((
            mutate.join(format!("cmd-{ty:03}.bin")),
            mutate_seed(idx, 0, 0),
        ));
    }
    out
}

fn check_invariants(what: &str, o: &Outcome) {
    assert!(o.consumed <= o.len, "{what}: read past the end: {o:?}");
    assert!(
        o.peak_arena <= FUZZ_BUDGET,
        "{what}: arena over budget: {o:?}"
    );
}

#[test]
fn seeds_match_the_generator() {
    let expected = expected_seeds();
    if std::env::var_os("VGPU_WRITE_SEEDS").is_some() {
        for (path, bytes) in &expected {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write seed");
        }
    }
    let mut stale = Vec::new();
    for (path, bytes) in &expected {
        if std::fs::read(path).ok().as_ref() != Some(bytes) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "{} seed files missing or stale (first: {:?}); regenerate with \
         VGPU_WRITE_SEEDS=1 cargo test -p vulkan-proto --test fuzz_replay seeds_match",
        stale.len(),
        stale.first()
    );
}

#[test]
fn golden_streams_have_their_observed_sizes_and_dispatch_completely() {
    let golden = golden_streams();
    let size = |n: &str| golden.iter().find(|g| g.0 == n).map(|g| g.1.len());
    assert_eq!(size("golden-create-instance"), Some(140));
    assert_eq!(size("golden-create-ring-mesa"), Some(140));
    assert_eq!(size("golden-set-reply-command-stream-mesa"), Some(36));
    assert_eq!(size("golden-enumerate-physical-devices"), Some(36));
    for (name, bytes) in &golden {
        let o = run_stream(bytes);
        assert_eq!(o.error, None, "{name}");
        assert_eq!(o.consumed, bytes.len(), "{name}");
    }
    let startup = run_stream(&golden.last().expect("startup").1);
    assert_eq!(startup.commands, 6);
    // vkEnumerateInstanceVersion, vkCreateInstance, vkEnumeratePhysicalDevices and
    // vkDestroyInstance ask for replies; the two ring commands do not.
    assert_eq!(startup.replies, 4);
}

#[test]
fn every_command_dispatches_through_the_accepting_handler() {
    assert_eq!(ACCEPTED_COMMANDS, COMMAND_TYPES.len());
    for &ty in COMMAND_TYPES {
        for seed in 0..4 {
            let bytes = sample_request(ty, seed).expect("sample request");
            let o = run_stream(&bytes);
            assert_eq!(o.error, None, "type {ty} seed {seed}");
            assert_eq!((o.commands, o.replies), (1, 1), "type {ty} seed {seed}");
            assert_eq!(o.consumed, bytes.len(), "type {ty} seed {seed}");
        }
    }
}

#[test]
fn decode_stream_seeds_dispatch_and_regressions_do_not_panic() {
    let seeds = files_in(&fuzz_dir().join("seeds/decode_stream"));
    assert!(
        seeds.len() > COMMAND_TYPES.len(),
        "only {} seeds",
        seeds.len()
    );
    for (path, bytes) in &seeds {
        let o = run_stream(bytes);
        let what = path.display().to_string();
        check_invariants(&what, &o);
        assert_eq!(o.error, None, "{what}: a seed must be a valid stream");
        assert_eq!(o.consumed, bytes.len(), "{what}");
    }
    for (path, bytes) in files_in(&fuzz_dir().join("regressions/decode_stream")) {
        check_invariants(&path.display().to_string(), &run_stream(&bytes));
    }
}

#[test]
fn mutate_valid_seeds_dispatch_and_regressions_do_not_panic() {
    let seeds = files_in(&fuzz_dir().join("seeds/mutate_valid"));
    assert_eq!(seeds.len(), COMMAND_TYPES.len());
    for (path, bytes) in &seeds {
        let o = run_mutated(bytes);
        let what = path.display().to_string();
        check_invariants(&what, &o);
        assert_eq!((o.error.as_deref(), o.commands), (None, 1), "{what}");
    }
    for (path, bytes) in files_in(&fuzz_dir().join("regressions/mutate_valid")) {
        check_invariants(&path.display().to_string(), &run_mutated(&bytes));
    }
}

/// splitmix64, for a deterministic sweep.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn hostile_mutations_of_every_command_never_panic() {
    let mut state = 0x5eed_u64;
    let (mut runs, mut failed) = (0usize, 0usize);
    for i in 0..COMMAND_TYPES.len() {
        let idx = u16::try_from(i).expect("index");
        for case in 0..24u16 {
            let mut input = mutate_seed(idx, case % 3, u8::try_from(case % 4).expect("opts"));
            let n_ops = 1 + usize::try_from(next(&mut state) % 4).expect("small");
            for _ in 0..n_ops * OP_BYTES {
                input.push(next(&mut state).to_le_bytes()[0]);
            }
            assert!(input.len() <= MUTATE_HEADER + MAX_OPS * OP_BYTES);
            let o = run_mutated(&input);
            check_invariants(&format!("input {input:02x?}"), &o);
            runs += 1;
            failed += usize::from(o.error.is_some());
        }
    }
    // The mutations must actually hurt: most runs end in a decode error.
    assert!(
        failed * 2 > runs,
        "only {failed} of {runs} mutated requests failed to decode"
    );
}
