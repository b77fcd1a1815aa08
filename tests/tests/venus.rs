//! End-to-end: vulkaninfo and ash compute programs natively on lavapipe and through
//! Venus (Mesa's virtio ICD over vtest) to our daemon, plus failure isolation.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use vgpu_device::ids::CapsetId;
use vgpu_device::vtest::client::{Batch, VtestClient};
use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_compute-app");
const TIMEOUT: Duration = Duration::from_secs(240);

fn run_app(mode: Mode<'_>, cases: &[&str]) -> Output {
    let mut cmd = client(APP, mode);
    cmd.args(cases);
    run_with_timeout(cmd, TIMEOUT).expect("run compute-app")
}

#[test]
fn compute_suite_matches_native() {
    let daemon = Daemon::start(DAEMON, "compute").expect("daemon");
    let native = run_app(Mode::Native, &[]);
    assert!(
        native.status.success(),
        "native run failed: {}",
        text(&native)
    );
    let venus = run_app(Mode::Venus(daemon.socket()), &[]);
    assert!(
        venus.status.success(),
        "Venus run failed: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    let out = String::from_utf8_lossy(&venus.stdout).into_owned();
    assert!(out.contains("device Virtio-GPU Venus (llvmpipe"), "{out}");
    assert!(out.contains("api 1.3."), "{out}");
    assert_eq!(case_lines(&native).len(), vgpu_tests::apps::CASES.len());
    assert_eq!(case_lines(&native), case_lines(&venus), "results differ");
}

#[test]
fn eight_concurrent_clients() {
    let daemon = Daemon::start(DAEMON, "concurrent").expect("daemon");
    let cases = ["saxpy", "prefix_sum", "timeline", "host_writes", "fences"];
    let native = run_app(Mode::Native, &cases);
    assert!(native.status.success(), "{}", text(&native));
    let sock = daemon.socket().to_path_buf();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || run_app(Mode::Venus(&sock), &cases))
        })
        .collect();
    for h in handles {
        let o = h.join().expect("join");
        assert!(
            o.status.success(),
            "{}\ndaemon log:\n{}",
            text(&o),
            daemon.log()
        );
        assert_eq!(case_lines(&o), case_lines(&native));
    }
}

/// Bad clients lose only their own context while a good client's compute finishes.
#[test]
fn failures_are_isolated() {
    let daemon = Daemon::start(DAEMON, "isolation").expect("daemon");
    let sock = daemon.socket().to_path_buf();
    let good = {
        let sock = sock.clone();
        std::thread::spawn(move || run_app(Mode::Venus(&sock), &["matmul", "prefix_sum", "fences"]))
    };
    // 1. A client killed mid-stream.
    let mut victim = client(APP, Mode::Venus(&sock))
        .arg("matmul")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn victim");
    std::thread::sleep(Duration::from_millis(300));
    let _ = victim.kill();
    let _ = victim.wait();
    // 2. A corrupted stream: a valid command, then random bytes.
    let mut bad = ready_client(&sock);
    let mut cmds = vgpu_device::vtest::client::venus::enumerate_instance_version();
    let mut x = 0x1234_5678u32;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        cmds.extend_from_slice(&x.to_le_bytes());
    }
    bad.submit_cmd2(&[Batch {
        cmds: &cmds,
        ..Batch::default()
    }])
    .expect("send");
    assert!(
        bad.wait_closed(Duration::from_secs(10)).expect("read"),
        "corrupted stream kept"
    );
    // 3. An unknown object id: vkDestroyInstance(instance 999).
    let mut bad = ready_client(&sock);
    let mut cmds = Vec::new();
    for w in [1u32, 0, 999, 0, 0, 0] {
        cmds.extend_from_slice(&w.to_le_bytes());
    }
    bad.submit_cmd2(&[Batch {
        cmds: &cmds,
        ..Batch::default()
    }])
    .expect("send");
    assert!(
        bad.wait_closed(Duration::from_secs(10)).expect("read"),
        "unknown id kept"
    );

    let o = good.join().expect("join");
    assert!(
        o.status.success(),
        "good client failed: {}\ndaemon log:\n{}",
        text(&o),
        daemon.log()
    );
    let native = run_app(Mode::Native, &["matmul", "prefix_sum", "fences"]);
    assert_eq!(case_lines(&o), case_lines(&native));
    let log = daemon.log();
    assert!(
        log.contains("vkDestroyInstance"),
        "no clear line for the unknown id:\n{log}"
    );
}

fn ready_client(path: &Path) -> VtestClient {
    let mut c = VtestClient::connect(path).expect("connect");
    c.handshake("bad-client").expect("handshake");
    c.context_init(CapsetId::VENUS).expect("context init");
    c
}

fn vulkaninfo_json(mode: Mode<'_>, dir: &Path) -> Value {
    std::fs::create_dir_all(dir).expect("dir");
    let mut cmd = client("vulkaninfo", mode);
    cmd.arg("--json").current_dir(dir);
    let o = run_with_timeout(cmd, TIMEOUT).expect("vulkaninfo");
    assert!(o.status.success(), "vulkaninfo --json: {}", text(&o));
    let file = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("json report");
    serde_json::from_slice(&std::fs::read(file.path()).expect("read")).expect("parse")
}

fn flatten(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| flatten(x, format!("{path}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| flatten(x, format!("{path}/{i}"), out)),
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// Every accepted difference between native lavapipe and lavapipe through Venus, by
/// path prefix, with the reason.
const ALLOW: &[(&str, &str)] = &[
    (
        "/properties/VkPhysicalDeviceProperties/deviceName",
        "Venus reports `Virtio-GPU Venus (<host name>)` (checked below)",
    ),
    (
        "/properties/VkPhysicalDeviceProperties/apiVersion",
        "capped to the protocol's vk.xml 1.3.269 (checked below)",
    ),
    (
        "/properties/VkPhysicalDeviceProperties/driverVersion",
        "the guest driver reports its own Mesa version",
    ),
    (
        "/properties/VkPhysicalDeviceProperties/pipelineCacheUUID",
        "the guest driver derives its own cache UUID",
    ),
    (
        "/properties/VkPhysicalDeviceIDProperties/deviceUUID",
        "the guest driver derives its own UUIDs",
    ),
    (
        "/properties/VkPhysicalDeviceIDProperties/driverUUID",
        "the guest driver derives its own UUIDs",
    ),
    (
        "/properties/VkPhysicalDeviceVulkan11Properties/deviceUUID",
        "the guest driver derives its own UUIDs",
    ),
    (
        "/properties/VkPhysicalDeviceVulkan11Properties/driverUUID",
        "the guest driver derives its own UUIDs",
    ),
    (
        "/properties/VkPhysicalDeviceDriverProperties/",
        "the driver is venus (driverID, name, info, conformance)",
    ),
    (
        "/properties/VkPhysicalDeviceVulkan12Properties/driver",
        "the driver is venus",
    ),
    (
        "/properties/VkPhysicalDeviceVulkan12Properties/conformanceVersion",
        "the driver is venus",
    ),
    (
        "/features/VkPhysicalDeviceFeatures/sparse",
        "sparse resources are not forwarded (vkQueueBindSparse is rejected)",
    ),
    (
        "/properties/VkPhysicalDeviceProperties/sparseProperties",
        "sparse resources are not forwarded",
    ),
    (
        "/properties/VkPhysicalDeviceProperties/limits/sparseAddressSpaceSize",
        "sparse resources are not forwarded",
    ),
    (
        "/extensions/VK_KHR_maintenance1",
        "promoted to core; the guest driver lists it with specVersion 0",
    ),
    (
        "/extensions/VK_KHR_maintenance2",
        "promoted to core; the guest driver lists it with specVersion 0",
    ),
    (
        "/extensions/VK_KHR_maintenance3",
        "promoted to core; the guest driver lists it with specVersion 0",
    ),
    (
        "/extensions/VK_KHR_external_memory_fd",
        "the guest driver hides fd/dma-buf memory sharing over vtest",
    ),
    (
        "/extensions/VK_EXT_external_memory_dma_buf",
        "the guest driver hides fd/dma-buf memory sharing over vtest",
    ),
    (
        "/extensions/VK_EXT_memory_budget",
        "not passed through by the Venus guest driver",
    ),
    (
        "/extensions/VK_EXT_device_memory_report",
        "implemented by the Venus guest driver itself",
    ),
    (
        "/extensions/VK_EXT_physical_device_drm",
        "implemented by the Venus guest driver itself",
    ),
    (
        "/extensions/VK_EXT_tooling_info",
        "implemented by the Venus guest driver itself",
    ),
    (
        "/features/VkPhysicalDeviceDeviceMemoryReportFeaturesEXT",
        "implemented by the Venus guest driver itself",
    ),
    (
        "/properties/VkPhysicalDeviceDrmPropertiesEXT",
        "implemented by the Venus guest driver itself",
    ),
    (
        "/properties/VkPhysicalDeviceExternalMemoryHostPropertiesEXT",
        "VK_EXT_external_memory_host is not in the protocol (the renderer uses it itself)",
    ),
];

/// Feature/property structs of extensions outside the protocol (absent through Venus).
const NOT_IN_PROTOCOL_STRUCTS: &[&str] = &[
    "AccelerationStructure",
    "DescriptorBuffer",
    "GlobalPriorityQuery",
    "MemoryPriority",
    "MeshShader",
    "MultisampledRenderToSingleSampled",
    "PageableDeviceLocalMemory",
    "PipelineProtectedAccess",
    "PipelineRobustness",
    "RayQuery",
    "RayTracing",
    "ShaderAtomicFloat",
    "SwapchainMaintenance1",
    "YcbcrImageArrays",
    "SubpassResolvePerformanceQuery",
    "GlobalPriority",
];

fn allowed(path: &str) -> Option<&'static str> {
    if let Some((_, why)) = ALLOW.iter().find(|(p, _)| path.starts_with(p)) {
        return Some(why);
    }
    if let Some(ext) = path.strip_prefix("/extensions/") {
        let name = ext.split('/').next().unwrap_or_default();
        if vulkan_proto_known(name) {
            return None;
        }
        return Some("extension not in the Venus protocol (vk.xml 1.3.269, 118 extensions)");
    }
    path.split('/')
        .any(|seg| seg.starts_with("Vk") && NOT_IN_PROTOCOL_STRUCTS.iter().any(|s| seg.contains(s)))
        .then_some("struct of an extension outside the Venus protocol")
}

fn vulkan_proto_known(name: &str) -> bool {
    vulkan_proto::info::extension(name).is_some()
}

#[test]
fn vulkaninfo_matches_native_modulo_allow_list() {
    let daemon = Daemon::start(DAEMON, "vulkaninfo").expect("daemon");
    let o = run_with_timeout(client("vulkaninfo", Mode::Venus(daemon.socket())), TIMEOUT)
        .expect("vulkaninfo");
    assert!(
        o.status.success(),
        "vulkaninfo through Venus: {}\ndaemon log:\n{}",
        text(&o),
        daemon.log()
    );
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("Virtio-GPU Venus (llvmpipe"), "deviceName");
    let tmp = std::env::temp_dir().join(format!("vgpu-vulkaninfo-{}", std::process::id()));
    let native = vulkaninfo_json(Mode::Native, &tmp.join("native"));
    let venus = vulkaninfo_json(Mode::Venus(daemon.socket()), &tmp.join("venus"));
    let _ = std::fs::remove_dir_all(&tmp);
    let dev = |v: &Value| v["capabilities"]["device"].clone();
    let (n, v) = (dev(&native), dev(&venus));
    let props = &v["properties"]["VkPhysicalDeviceProperties"];
    let api = props["apiVersion"].as_u64().expect("apiVersion");
    assert_eq!(
        (api >> 22, (api >> 12) & 0x3ff),
        (1, 3),
        "apiVersion {api:#x}"
    );
    assert!(props["deviceName"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Virtio-GPU Venus (llvmpipe"));
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten(&n, String::new(), &mut fa);
    flatten(&v, String::new(), &mut fb);
    let mut unexplained = Vec::new();
    for key in fa.keys().chain(fb.keys()) {
        if fa.get(key) != fb.get(key) && allowed(key).is_none() {
            unexplained.push(format!(
                "{key}: native {:?} venus {:?}",
                fa.get(key),
                fb.get(key)
            ));
        }
    }
    unexplained.dedup();
    assert!(
        unexplained.is_empty(),
        "differences without an allow-list entry:\n{}",
        unexplained.join("\n")
    );
}
