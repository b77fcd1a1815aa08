//! The CLI refuses a bad TOML config before serving anything, and its error names the
//! file, line, column, VM and key.

use std::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_vhost-user-vgpu");

/// Runs `vhost-user-vgpu <door> --config FILE` on `text`; returns (success, stderr).
fn run_with(door: &str, tag: &str, text: &str) -> (bool, String, String) {
    let file = std::env::temp_dir().join(format!("vgpu-config-{}-{tag}.toml", std::process::id()));
    std::fs::write(&file, text).expect("write config");
    let out = Command::new(CLI)
        .arg(door)
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "error")
        .output()
        .expect("run the CLI");
    let _ = std::fs::remove_file(&file);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file.display().to_string(),
    )
}

#[test]
fn bad_config_files_name_the_line_and_the_key() {
    let cases = [
        (
            "unknown-vm-key",
            "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/x\"\nshares = 3\n",
            "line 4, column 1: vm \"a\": unknown key \"shares\"",
        ),
        (
            "out-of-range",
            "[vtest]\nmax_clients = 0\n",
            "line 2, column 15: [vtest]: key \"max_clients\" must be in 1..=4096",
        ),
        (
            "duplicate-name",
            "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/x\"\n\
             [[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/y\"\n",
            "line 5, column 8: vm \"a\": VM name \"a\" is used twice",
        ),
        (
            "wrong-type",
            "policy = \"burst\"\n[[vm]]\nname = \"b\"\nvhost_user_socket = \"/tmp/z\"\n\
             width = \"wide\"\n",
            "line 5, column 9: vm \"b\": key \"width\": invalid type: string \"wide\"",
        ),
        (
            "unknown-top-key",
            "polcy = \"burst\"\n",
            "line 1, column 1: unknown key \"polcy\"",
        ),
    ];
    for (door, (tag, text, expected)) in ["serve", "vtest"].iter().cycle().zip(cases) {
        let (ok, stderr, file) = run_with(door, tag, text);
        assert!(!ok, "{door} accepted {tag}: {stderr}");
        assert!(
            stderr.contains(&format!("{file} {expected}")),
            "{door} {tag}: expected `{file} {expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn socket_shorthand_with_a_config_that_lists_vms_is_refused() {
    let file = std::env::temp_dir().join(format!("vgpu-config-{}-short.toml", std::process::id()));
    std::fs::write(&file, "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/x\"\n").expect("write");
    let out = Command::new(CLI)
        .args([
            "vtest",
            "--socket",
            "/tmp/vgpu-never-bound.sock",
            "--config",
        ])
        .arg(&file)
        .output()
        .expect("run the CLI");
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("may not list [[vm]] tables"), "{stderr}");
}
