//! Replays the executor fuzz corpus on the stable toolchain, without libFuzzer: every
//! file under `device/fuzz/seeds/exec_sequences/` and
//! `device/fuzz/regressions/exec_sequences/` goes through the same decoding and
//! execution code the cargo-fuzz target `exec_sequences` runs (`common/exec_ops.rs`),
//! on the real Venus executor and lavapipe. The process must survive every sequence,
//! and afterwards a fresh context of the same VM must still do real work and read
//! back what the GPU wrote.
//!
//! Each regression file is named after the bug it reproduced (see
//! `device/fuzz/README.md`); before its fix it killed this process.

#[path = "common/exec_ops.rs"]
mod exec_ops;

use std::path::{Path, PathBuf};

use exec_ops::{Runner, PROBE_PATTERN};

fn corpus_files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join("exec_sequences");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
        .collect();
    out.sort();
    out
}

/// Runs every file of `kind`, then checks a bystander context still works.
fn replay(kind: &str) -> usize {
    exec_ops::use_lavapipe();
    let files = corpus_files(kind);
    let mut runner = Runner::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let steps = exec_ops::decode(&bytes).len();
        let report = runner.run(&bytes);
        assert_eq!(
            report.steps,
            steps,
            "{}: not every step ran",
            path.display()
        );
        assert!(
            report.contexts >= 2 + report.failed,
            "{}: a failed context was not replaced: {report:?}",
            path.display()
        );
        let words = exec_ops::probe(&mut runner)
            .unwrap_or_else(|e| panic!("after {}: a fresh context fails: {e}", path.display()));
        assert!(
            words.iter().all(|&w| w == PROBE_PATTERN),
            "after {}: the probe read back {:#x?}",
            path.display(),
            &words[..4]
        );
    }
    files.len()
}

#[test]
fn seeds_run_and_a_fresh_context_still_works() {
    let n = replay("seeds");
    assert!(n >= 8, "expected the committed seeds, found {n}");
}

#[test]
fn regressions_run_and_a_fresh_context_still_works() {
    let n = replay("regressions");
    assert!(
        n >= 1,
        "expected the committed regression inputs, found {n}"
    );
}

#[test]
fn a_valid_sequence_runs_clean() {
    exec_ops::use_lavapipe();
    // No steps: only the two prologues, which must not fail.
    let report = exec_ops::run(&[]);
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.contexts, 2, "{report:?}");
}
