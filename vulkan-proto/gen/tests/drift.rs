//! Drift check: the checked-in generated code (`vulkan-proto/src/generated/` and the device
//! crate's `device/src/renderer/venus/{forward,fns}.rs`) is exactly what the generator writes
//! from `../shared/registry`. A stale or hand-edited generated file fails this test; without
//! the registry the check is skipped, and says so.

use std::path::Path;
use std::process::Command;

#[test]
fn generated_code_is_what_the_generator_writes() {
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/registry");
    if !registry.join("vk.xml").exists() {
        eprintln!(
            "drift check SKIPPED: registry XML not found at {} (it lives in ../shared/registry \
             beside the checkout in CI and development)",
            registry.display()
        );
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vulkan-proto-gen"))
        .arg("--check")
        .arg("--registry")
        .arg(&registry)
        .output()
        .expect("the generator runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("up to date"), "{stderr}");
}
