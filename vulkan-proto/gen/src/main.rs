//! Generator for the `vulkan-proto` crate: reads the Vulkan and Venus registry XML and writes
//! `vulkan-proto/src/generated/`, plus the device crate's generated Venus handlers
//! (`device/src/renderer/venus/forward.rs` and `fns.rs`).
//!
//! ```text
//! cargo run -p vulkan-proto-gen -- --registry ../shared/registry            # regenerate
//! cargo run -p vulkan-proto-gen -- --registry ../shared/registry --check    # drift check
//! ```

mod emit;
mod emit_formats;
mod emit_testgen;
mod emit_venus;
mod model;
mod policy;
mod xml;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use sha2::{Digest, Sha256};

const INPUTS: &[(&str, &str)] = &[
    ("vk.xml", "vk"),
    ("VK_EXT_command_serialization.xml", "ext"),
    ("VK_MESA_venus_protocol.xml", "mesa"),
];

struct Args {
    registry: PathBuf,
    out: PathBuf,
    device_out: PathBuf,
    check: bool,
    stats: bool,
}

fn parse_args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        registry: root.join("../shared/registry"),
        out: root.join("vulkan-proto/src/generated"),
        device_out: root.join("device/src/renderer/venus"),
        check: false,
        stats: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--registry" => a.registry = it.next().ok_or("--registry needs a path")?.into(),
            "--out" => a.out = it.next().ok_or("--out needs a path")?.into(),
            "--device-out" => {
                a.device_out = it.next().ok_or("--device-out needs a path")?.into();
            }
            "--check" => a.check = true,
            "--stats" => a.stats = true,
            "-h" | "--help" => {
                return Err(
                    "usage: vulkan-proto-gen [--registry DIR] [--out DIR] [--device-out DIR] [--check] [--stats]"
                        .into(),
                )
            }
            o => return Err(format!("unknown argument {o}")),
        }
    }
    Ok(a)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if !args.registry.join("vk.xml").exists() {
        if args.check {
            eprintln!(
                "vulkan-proto-gen: drift check SKIPPED: registry XML not found at {} \
                 (it lives in ../shared/registry beside the checkout in CI and development)",
                args.registry.display()
            );
            return Ok(());
        }
        return Err(format!(
            "registry XML not found at {}",
            args.registry.display()
        ));
    }
    let mut reg = xml::Registry::default();
    let mut hashes = Vec::new();
    for (file, origin) in INPUTS {
        let path = args.registry.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        hashes.push((file.to_string(), hex(&Sha256::digest(text.as_bytes()))));
        reg.add_file(&text, origin)
            .map_err(|e| format!("{file}: {e}"))?;
    }
    let mut proto = model::build(&reg)?;
    model::settle_lifetimes(&mut proto);
    if args.stats {
        eprintln!(
            "commands: {} serialized, {} not serialized, {} command-type names; structs: {}; enums: {}; extensions: {}",
            proto.commands.len(),
            proto.not_serialized.len(),
            proto.all_command_types.len(),
            proto.structs.len(),
            proto.enums.len(),
            proto.extensions.len()
        );
    }
    let mut files = emit::emit_all(&proto, &hashes)?;
    files.push((
        "formats.rs".to_owned(),
        emit_formats::formats_file(&reg, &proto, &hashes)?,
    ));
    let device_files = emit_venus::device_files(&reg, &proto, &hashes)?;
    let tmp = std::env::temp_dir().join(format!("vulkan-proto-gen-{}", std::process::id()));
    let (target, device_target) = if args.check {
        let _ = std::fs::remove_dir_all(&tmp);
        (tmp.join("proto"), tmp.join("device"))
    } else {
        (args.out.clone(), args.device_out.clone())
    };
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&device_target).map_err(|e| e.to_string())?;
    if !args.check {
        // Remove stale files so a renamed family does not linger (only in the all-generated
        // directory: the device directory holds hand-written files too).
        if let Ok(rd) = std::fs::read_dir(&target) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "rs") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let mut paths = Vec::new();
    for (dir, list) in [(&target, &files), (&device_target, &device_files)] {
        for (name, text) in list {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            paths.push(p);
        }
    }
    rustfmt(&paths)?;
    let total = files.len() + device_files.len();
    if args.check {
        let mut stale = String::new();
        let mut diff = |a: &Path, b: &Path| -> Result<(), String> {
            let out = Command::new("diff")
                .arg("-ru")
                .arg(a)
                .arg(b)
                .output()
                .map_err(|e| format!("diff: {e}"))?;
            if !out.status.success() {
                stale.push_str(&String::from_utf8_lossy(&out.stdout));
                if out.stdout.is_empty() {
                    stale.push_str(&String::from_utf8_lossy(&out.stderr));
                }
            }
            Ok(())
        };
        let mut r = diff(&args.out, &target);
        for (name, _) in &device_files {
            if r.is_ok() {
                r = diff(&args.device_out.join(name), &device_target.join(name));
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        r?;
        if !stale.is_empty() {
            let shown: String = stale.lines().take(200).collect::<Vec<_>>().join("\n");
            return Err(format!(
                "generated code is stale; regenerate with `cargo run -p vulkan-proto-gen`\n{shown}"
            ));
        }
        eprintln!("vulkan-proto-gen: generated code is up to date ({total} files)");
    } else {
        eprintln!(
            "vulkan-proto-gen: wrote {} files to {} and {} to {}",
            files.len(),
            args.out.display(),
            device_files.len(),
            args.device_out.display()
        );
    }
    Ok(())
}

fn rustfmt(paths: &[PathBuf]) -> Result<(), String> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rustfmt.toml");
    let status = Command::new("rustfmt")
        .arg("--edition")
        .arg("2021")
        .arg("--config-path")
        .arg(&config)
        .args(paths)
        .status()
        .map_err(|e| format!("rustfmt: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("rustfmt failed on the generated code".into())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vulkan-proto-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
