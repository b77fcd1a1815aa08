//! A real Linux guest on the vhost-user front door: QEMU 10.0.2 (TCG) with
//! `vhost-user-gpu-pci` on `vhost-user-vgpu serve`, a Debian kernel and a busybox initramfs
//! (`scripts/guest/build-initramfs.sh`). The guest's virtio-gpu driver probes and lists our
//! capset, a static program issues DRM virtgpu ioctls and draws a known pattern on the
//! framebuffer, and the daemon's headless display (SIGUSR1 → PNG) must show exactly it.
//!
//! Needs qemu-system-x86 from bookworm-backports, gcc, cpio and network access to Debian's
//! archive the first time (downloads are cached in build/guest-cache), so it is ignored by
//! default; `scripts/test.sh` runs it with `--ignored`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The guest's pattern: 8 vertical bars (XRGB), as in vgpu-guest-check.c.
const BARS: [u32; 8] = [
    0x00ff_ffff,
    0x00ff_ff00,
    0x0000_ffff,
    0x0000_ff00,
    0x00ff_00ff,
    0x00ff_0000,
    0x0000_00ff,
    0,
];

fn line_with<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(needle))
}

#[test]
#[ignore = "boots a QEMU guest (~20 s, needs qemu-system-x86 and the cached guest image); run by scripts/test.sh"]
fn linux_guest_probes_lists_capsets_and_shows_its_framebuffer() {
    let root = repo();
    let work = root.join("build/qemu-guest-test");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("frames")).expect("mkdir");

    let status = Command::new(root.join("scripts/guest/build-initramfs.sh"))
        .arg(root.join("build/guest"))
        .current_dir(&root)
        .status()
        .expect("build-initramfs.sh");
    assert!(status.success(), "building the guest image failed");

    let sock = work.join("gpu.sock");
    let config = work.join("serve.conf");
    std::fs::write(
        &config,
        format!("frame_dir = {}\n", work.join("frames").display()),
    )
    .expect("config");
    let log = std::fs::File::create(work.join("daemon.log")).expect("log");
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_vhost-user-vgpu"))
            .args(["serve", "--socket"])
            .arg(&sock)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("daemon"),
    );
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let status = Command::new(root.join("scripts/guest/run-qemu.sh"))
        .arg(&sock)
        .arg(work.join("run"))
        .arg(root.join("build/guest"))
        .env("VGPU_DAEMON_PID", daemon.0.id().to_string())
        .current_dir(&root)
        .status()
        .expect("run-qemu.sh");
    let serial = std::fs::read_to_string(work.join("run/serial.log")).unwrap_or_default();
    assert!(status.success(), "guest did not finish:\n{serial}");
    drop(daemon);
    let daemon_log = std::fs::read_to_string(work.join("daemon.log")).unwrap_or_default();

    // The guest driver's probe: features as QEMU 10.0.2 passes them (no RESOURCE_BLOB,
    // no CONTEXT_INIT), one capset (Venus, id 4, 160 bytes), the fbdev console.
    for needle in [
        "[drm] features: +virgl +edid -resource_blob -host_visible",
        "[drm] features: -context_init",
        "[drm] number of cap sets: 1",
        "[drm] cap set 0: id 4, max-version 1, max-size 160",
        "Initialized virtio_gpu",
        "fb0: virtio_gpudrmfb",
    ] {
        assert!(
            serial.contains(needle),
            "guest log lacks {needle:?}:\n{serial}"
        );
    }

    // DRM ioctls from the guest program.
    let expect_param = |name: &str, value: &str| {
        let l = line_with(&serial, &format!("CHECK getparam_{name} ")).unwrap_or("");
        assert!(
            l.ends_with(&format!("value {value}")),
            "getparam {name}: {l:?}"
        );
    };
    expect_param("3D_FEATURES", "1");
    expect_param("CAPSET_QUERY_FIX", "1");
    expect_param("RESOURCE_BLOB", "0");
    expect_param("HOST_VISIBLE", "0");
    expect_param("CONTEXT_INIT", "0");
    expect_param("SUPPORTED_CAPSET_IDs", "16"); // 1 << 4: Venus only
    let caps = line_with(&serial, "CHECK get_caps_venus").unwrap_or("");
    let want = format!(
        "wire {} vkxml 0x{:08x} ser {} venus {} blob0 1 mask0 0x{:08x}",
        vulkan_proto::info::WIRE_FORMAT_VERSION,
        vulkan_proto::info::VK_XML_VERSION,
        vulkan_proto::info::VK_EXT_COMMAND_SERIALIZATION_SPEC_VERSION,
        vulkan_proto::info::VK_MESA_VENUS_PROTOCOL_SPEC_VERSION,
        vulkan_proto::info::VK_EXTENSION_MASK[0]
    );
    assert!(
        caps.ends_with(&want),
        "Venus capset as the guest read it: {caps:?}, want {want:?}"
    );
    for ok in [
        "drm_open",
        "dumb_create",
        "dumb_map_write",
        "dumb_destroy",
        "fb_draw",
    ] {
        let l = line_with(&serial, &format!("CHECK {ok} ")).unwrap_or("");
        assert!(l.contains(" ok"), "{ok}: {l:?}\n{serial}");
    }
    // With VIRGL negotiated, DRM_IOCTL_VIRTGPU_RESOURCE_CREATE becomes RESOURCE_CREATE_3D,
    // which we refuse cleanly (there is no virgl renderer).
    assert!(
        daemon_log.contains("unsupported: virgl 3D resources"),
        "no clean refusal of RESOURCE_CREATE_3D in the daemon log:\n{daemon_log}"
    );

    // What the guest shows: the headless frame written on SIGUSR1.
    let png = work.join("frames/scanout-0.png");
    let decoder = png::Decoder::new(std::fs::File::open(&png).expect("scanout PNG"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!((info.width, info.height), (1280, 800));
    let px = |x: u32, y: u32| {
        let i = usize::try_from((y * info.width + x) * 4).expect("index");
        (u32::from(buf[i]) << 16) | (u32::from(buf[i + 1]) << 8) | u32::from(buf[i + 2])
    };
    let mut mismatches = 0;
    for (bar, want) in (0u32..).zip(BARS.iter()) {
        let x = (bar * info.width) / 8 + info.width / 16;
        for y in [100, 400, 700] {
            if px(x, y) != *want {
                mismatches += 1;
            }
        }
    }
    assert_eq!(mismatches, 0, "scanout does not show the guest's bars");
}
