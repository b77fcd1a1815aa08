//! End-to-end: per-VM limits against the vtest daemon (each connection is a VM) —
//! the device-memory quota through the real Mesa Venus driver, and the per-context
//! object limits with a raw client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use vgpu_tests::bridge::launch::VhostChain;
use vgpu_tests::harness::{
    case_lines, client, output_text as text, run_with_timeout, Daemon, Mode,
};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const QUOTA_APP: &str = env!("CARGO_BIN_EXE_quota-app");
const COMPUTE_APP: &str = env!("CARGO_BIN_EXE_compute-app");
const SERVE: &str = env!("CARGO_BIN_EXE_vhost-serve-daemon");
const BRIDGE: &str = env!("CARGO_BIN_EXE_vtest-vhost-bridge");
const TIMEOUT: Duration = Duration::from_secs(240);

/// The quota the daemon runs with, and the chunk the app allocates (three fit, the
/// fourth does not).
const QUOTA_MIB: u64 = 64;
const CHUNK_MIB: u64 = 20;

fn daemon(tag: &str, flags: &[&str]) -> Daemon {
    let mut cmd = Command::new(DAEMON);
    cmd.args(flags);
    Daemon::start_command(cmd, tag).expect("daemon")
}

/// `quota-app` through Venus. Mesa allocates asynchronously by default, so a refused
/// allocation would only show when the memory is first used;
/// `VN_PERF=no_async_mem_alloc` makes Mesa wait for the host's answer.
fn quota_app(socket: &Path, hold: bool) -> Command {
    let mut cmd = client(QUOTA_APP, Mode::Venus(socket));
    cmd.env("VN_PERF", "no_async_mem_alloc")
        .arg(CHUNK_MIB.to_string());
    if hold {
        cmd.arg("hold");
    }
    cmd
}

/// The value after `key ` on its line of `out`.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

/// Starts `quota-app … hold` on `socket` and returns it with its output up to
/// `holding` (it then holds all it could allocate).
fn hold_quota(socket: &Path) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = quota_app(socket, true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holding client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut held = String::new();
    while !held.ends_with("holding\n") {
        let mut line = String::new();
        if lines.read_line(&mut line).expect("read") == 0 {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!(
                "holding client ended early ({:?}):\n{held}\n{err}",
                child.wait()
            );
        }
        held.push_str(&line);
    }
    (child, lines, held)
}

/// Closes a holding client's stdin (it frees a chunk, allocates it again and exits)
/// and returns the rest of its output.
fn release(child: &mut Child, lines: BufReader<ChildStdout>) -> String {
    drop(child.stdin.take());
    let mut rest = String::new();
    for line in lines.lines() {
        rest.push_str(&line.expect("read"));
        rest.push('\n');
    }
    assert!(child.wait().expect("wait").success(), "{rest}");
    rest
}

/// A VM sees its quota as the heap size, can allocate up to it and no further
/// (`VK_ERROR_OUT_OF_DEVICE_MEMORY`), and can allocate again after a free; a second VM
/// in the same daemon, while the first holds its whole quota, gets the same quota and
/// runs the compute suite with the same results as native lavapipe.
#[test]
fn quota_is_the_heap_and_each_vm_has_its_own() {
    let daemon = daemon("quota", &["--memory-mib", &QUOTA_MIB.to_string()]);
    let (mut first, lines, held) = hold_quota(daemon.socket());
    let quota = QUOTA_MIB << 20;
    assert_eq!(
        field(&held, "heap"),
        Some(quota.to_string().as_str()),
        "{held}"
    );
    let fit = QUOTA_MIB / CHUNK_MIB;
    assert_eq!(
        field(&held, "allocated"),
        Some(fit.to_string().as_str()),
        "{held}"
    );
    assert_eq!(
        field(&held, "failed"),
        Some("ERROR_OUT_OF_DEVICE_MEMORY"),
        "{held}"
    );

    // The first VM holds its whole quota; the second still gets all of its own.
    let second =
        run_with_timeout(quota_app(daemon.socket(), false), TIMEOUT).expect("second client");
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    assert_eq!(
        field(&out, "heap"),
        Some(quota.to_string().as_str()),
        "{out}"
    );
    assert_eq!(
        field(&out, "allocated"),
        Some(fit.to_string().as_str()),
        "{out}"
    );
    assert_eq!(field(&out, "realloc"), Some("SUCCESS"), "{out}");

    let native = run_with_timeout(client(COMPUTE_APP, Mode::Native), TIMEOUT).expect("native");
    assert!(native.status.success(), "{}", text(&native));
    let venus = run_with_timeout(client(COMPUTE_APP, Mode::Venus(daemon.socket())), TIMEOUT)
        .expect("compute through Venus");
    assert!(
        venus.status.success(),
        "{}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    assert_eq!(case_lines(&native), case_lines(&venus), "results differ");

    // Closing stdin lets the first client free a chunk and allocate it again.
    let rest = release(&mut first, lines);
    assert_eq!(field(&rest, "realloc"), Some("SUCCESS"), "{rest}");
    let log = daemon.log();
    assert!(
        log.contains("device-memory quota of 64 MiB reached"),
        "no log line for the refusal:\n{log}"
    );
}

/// A raw Venus client: commands encoded with `vulkan_proto` from `ash` values, sent on
/// the context stream, replies read back from a shared-memory reply stream.
mod raw {
    use std::path::Path;
    use std::time::Duration;

    use ash::vk::{self, Handle};
    use vgpu_device::ids::{BlobId, CapsetId, ResourceId};
    use vgpu_device::sys::SharedMemory;
    use vgpu_device::vtest::client::{venus, Batch, VtestClient};
    use vgpu_device::vtest::protocol::BLOB_FLAG_MAPPABLE;
    use vulkan_proto::args::{
        AllocateMemoryArgs, CreateDeviceArgs, CreateFenceArgs, CreateInstanceArgs,
        DestroyDeviceArgs, EnumeratePhysicalDevicesArgs, FreeMemoryArgs,
        GetPhysicalDeviceMemoryProperties2Args,
    };
    use vulkan_proto::{Arena, CommandFlags, Cx, Decoder, Encoder, RawIds};

    /// Reply stream size.
    const REPLY_SIZE: u64 = 1 << 20;
    pub const INSTANCE: u64 = 0x10;
    pub const PHYSICAL: u64 = 0x11;
    pub const DEVICE: u64 = 0x12;

    /// A connected vtest client with a Venus context and a reply stream.
    pub struct Client {
        pub vtest: VtestClient,
        reply: ResourceId,
        map: SharedMemory,
    }

    impl Client {
        pub fn connect(path: &Path) -> Self {
            let mut vtest = VtestClient::connect(path).expect("connect");
            vtest.handshake("raw-venus").expect("handshake");
            vtest.context_init(CapsetId::VENUS).expect("context init");
            let (reply, fd) = vtest
                .create_blob(BLOB_FLAG_MAPPABLE, REPLY_SIZE, BlobId::SHMEM)
                .expect("reply blob");
            let map = SharedMemory::map(&fd, REPLY_SIZE).expect("map");
            Self { vtest, reply, map }
        }

        /// Runs `cmds` on the context stream with replies written from offset 0, and
        /// returns the reply bytes once the daemon has run them (a PING answered after
        /// the submission), or `None` if it closed the connection.
        pub fn run(&mut self, cmds: &[u8]) -> Option<Vec<u8>> {
            let mut stream = venus::set_reply_stream(self.reply, 0, REPLY_SIZE);
            stream.extend_from_slice(cmds);
            self.vtest
                .submit_cmd2(&[Batch {
                    cmds: &stream,
                    ..Batch::default()
                }])
                .ok()?;
            self.vtest.send(10, &[]).ok()?;
            self.vtest.read_reply(10).ok()?;
            let mut out = vec![0u8; usize::try_from(REPLY_SIZE).expect("size")];
            self.map.read(0, &mut out).expect("read replies");
            Some(out)
        }

        /// Whether the daemon dropped the connection within `timeout`.
        #[allow(dead_code)]
        pub fn closed(&mut self, timeout: Duration) -> bool {
            self.vtest.wait_closed(timeout).unwrap_or(true)
        }
    }

    /// vkCreateInstance of guest id `id` (reply requested when `reply`).
    pub fn create_instance(e: &mut Encoder, id: u64, reply: bool) {
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
        let ici = vk::InstanceCreateInfo::default().application_info(&app);
        let mut instance = vk::Instance::from_raw(id);
        let flags = if reply {
            CommandFlags::GENERATE_REPLY
        } else {
            CommandFlags::NONE
        };
        // SAFETY: every pointer refers to the locals above, alive across the encode.
        unsafe {
            CreateInstanceArgs {
                p_create_info: Some(&ici),
                p_instance: Some(&mut instance),
                _marker: Default::default(),
            }
            .encode(e, flags);
        }
    }

    /// Instance [`INSTANCE`], its first physical device [`PHYSICAL`], and device
    /// [`DEVICE`] with one queue of family 0.
    #[allow(clippy::multiple_unsafe_ops_per_block)] // one encode sequence, one contract
    pub fn instance_and_device(e: &mut Encoder) {
        create_instance(e, INSTANCE, false);
        let mut count = 1u32;
        let mut physical = [vk::PhysicalDevice::from_raw(PHYSICAL)];
        let priorities = [1.0f32];
        let qci = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let dci = vk::DeviceCreateInfo::default().queue_create_infos(&qci);
        let mut device = vk::Device::from_raw(DEVICE);
        // SAFETY: every pointer refers to the locals above, alive across the encode.
        unsafe {
            EnumeratePhysicalDevicesArgs {
                instance: vk::Instance::from_raw(INSTANCE),
                p_physical_device_count: Some(&mut count),
                p_physical_devices: Some(&mut physical),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::NONE);
            CreateDeviceArgs {
                physical_device: physical[0],
                p_create_info: Some(&dci),
                p_device: Some(&mut device),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::NONE);
        }
    }

    /// vkAllocateMemory of `size` bytes of type 0 as guest id `id`.
    pub fn allocate_memory(e: &mut Encoder, id: u64, size: u64) {
        let info = vk::MemoryAllocateInfo::default()
            .allocation_size(size)
            .memory_type_index(0);
        let mut mem = vk::DeviceMemory::from_raw(id);
        // SAFETY: every pointer refers to the locals above, alive across the encode.
        unsafe {
            AllocateMemoryArgs {
                device: vk::Device::from_raw(DEVICE),
                p_allocate_info: Some(&info),
                p_memory: Some(&mut mem),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::NONE);
        }
    }

    /// vkFreeMemory of guest id `id`.
    pub fn free_memory(e: &mut Encoder, id: u64) {
        // SAFETY: no pointers.
        unsafe {
            FreeMemoryArgs {
                device: vk::Device::from_raw(DEVICE),
                memory: vk::DeviceMemory::from_raw(id),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::NONE);
        }
    }

    /// vkDestroyDevice of guest id `id`.
    pub fn destroy_device(e: &mut Encoder, id: u64) {
        // SAFETY: no pointers.
        unsafe {
            DestroyDeviceArgs {
                device: vk::Device::from_raw(id),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::NONE);
        }
    }

    /// vkCreateFence of guest id `id`, reply requested.
    pub fn create_fence(e: &mut Encoder, id: u64) {
        let info = vk::FenceCreateInfo::default();
        let mut fence = vk::Fence::from_raw(id);
        // SAFETY: every pointer refers to the locals above, alive across the encode.
        unsafe {
            CreateFenceArgs {
                device: vk::Device::from_raw(DEVICE),
                p_create_info: Some(&info),
                p_fence: Some(&mut fence),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::GENERATE_REPLY);
        }
    }

    /// vkGetPhysicalDeviceMemoryProperties2 of [`PHYSICAL`] with
    /// `VkPhysicalDeviceMemoryBudgetPropertiesEXT` chained, reply requested.
    pub fn query_memory(e: &mut Encoder) {
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: every pointer refers to the locals above, alive across the encode.
        unsafe {
            GetPhysicalDeviceMemoryProperties2Args {
                physical_device: vk::PhysicalDevice::from_raw(PHYSICAL),
                p_memory_properties: Some(&mut props),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::GENERATE_REPLY);
        }
    }

    /// (heap 0 size, heap 0 budget, heap 0 usage) from a [`query_memory`] reply at the
    /// start of `replies`.
    pub fn memory_reply(replies: &[u8]) -> (u64, u64, u64) {
        let arena = Arena::default();
        let cx = Cx::new(&arena, &RawIds);
        let mut args = GetPhysicalDeviceMemoryProperties2Args::default();
        let mut d = Decoder::new(replies);
        args.decode_reply(&mut d, &cx)
            .expect("memory properties reply");
        let props = args.p_memory_properties.expect("properties");
        let mut node = props.p_next.cast::<vk::BaseOutStructure<'_>>().cast_const();
        let mut budget = None;
        while !node.is_null() {
            // SAFETY: the decoder built this chain in `arena`, alive here; every node
            // starts with sType/pNext.
            let base = unsafe { &*node };
            if base.s_type == vk::StructureType::PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT {
                // SAFETY: the decoder builds a node of this sType as that struct.
                let b = unsafe { &*node.cast::<vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'_>>() };
                budget = Some((b.heap_budget[0], b.heap_usage[0]));
            }
            node = base.p_next.cast_const();
        }
        let (b, u) = budget.expect("budget struct in the reply");
        (props.memory_properties.memory_heaps[0].size, b, u)
    }

    /// Which create command replies are decoded.
    #[derive(Clone, Copy, Debug)]
    pub enum Created {
        Instance,
        Device,
        Fence,
    }

    /// The results of `n` consecutive create replies of `kind` at the start of
    /// `replies`.
    pub fn create_results(replies: &[u8], n: usize, kind: Created) -> Vec<vk::Result> {
        let arena = Arena::default();
        let cx = Cx::new(&arena, &RawIds);
        let mut d = Decoder::new(replies);
        (0..n)
            .map(|_| {
                match kind {
                    Created::Instance => CreateInstanceArgs::default().decode_reply(&mut d, &cx),
                    Created::Device => CreateDeviceArgs::default().decode_reply(&mut d, &cx),
                    Created::Fence => CreateFenceArgs::default().decode_reply(&mut d, &cx),
                }
                .expect("create reply")
            })
            .collect()
    }

    /// vkCreateDevice of guest id `id` on [`PHYSICAL`], one queue of family 0, reply
    /// requested.
    pub fn create_device(e: &mut Encoder, id: u64) {
        let priorities = [1.0f32];
        let qci = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let dci = vk::DeviceCreateInfo::default().queue_create_infos(&qci);
        let mut device = vk::Device::from_raw(id);
        // SAFETY: every pointer refers to the locals above, alive across the encode.
        unsafe {
            CreateDeviceArgs {
                physical_device: vk::PhysicalDevice::from_raw(PHYSICAL),
                p_create_info: Some(&dci),
                p_device: Some(&mut device),
                _marker: Default::default(),
            }
            .encode(e, CommandFlags::GENERATE_REPLY);
        }
    }
}

/// `VK_EXT_memory_budget` through the protocol (Mesa 25.0.7 does not pass the
/// extension to applications, so a raw client asks): heap size and budget are the
/// quota, usage is this VM's own allocations, and another VM's allocations change
/// neither.
#[test]
fn memory_budget_reports_the_vms_own_usage() {
    let daemon = daemon("budget", &["--memory-mib", &QUOTA_MIB.to_string()]);
    let quota = QUOTA_MIB << 20;
    let mut a = raw::Client::connect(daemon.socket());
    let mut b = raw::Client::connect(daemon.socket());
    for c in [&mut a, &mut b] {
        let mut e = vulkan_proto::Encoder::new();
        raw::instance_and_device(&mut e);
        raw::query_memory(&mut e);
        let r = c.run(e.as_bytes()).expect("setup");
        assert_eq!(raw::memory_reply(&r), (quota, quota, 0));
    }
    let mut e = vulkan_proto::Encoder::new();
    raw::allocate_memory(&mut e, 0x100, 16 << 20);
    raw::query_memory(&mut e);
    let r = a.run(e.as_bytes()).expect("allocate");
    assert_eq!(raw::memory_reply(&r), (quota, quota, 16 << 20));

    let mut e = vulkan_proto::Encoder::new();
    raw::query_memory(&mut e);
    let r = b.run(e.as_bytes()).expect("bystander query");
    assert_eq!(
        raw::memory_reply(&r),
        (quota, quota, 0),
        "another VM's usage"
    );

    let mut e = vulkan_proto::Encoder::new();
    raw::free_memory(&mut e, 0x100);
    raw::query_memory(&mut e);
    let r = a.run(e.as_bytes()).expect("free");
    assert_eq!(
        raw::memory_reply(&r),
        (quota, quota, 0),
        "freed memory gives it back"
    );
}

/// `vkCreateInstance` commands the hostile client puts in one submission.
const FLOOD: usize = 3000;
/// How far above its baseline the daemon's RSS may stay once a hostile client left.
const RSS_BOUND_KIB: u64 = 64 << 10;

/// RSS of the daemon in KiB once it has settled: the lowest reading within `wait`
/// that is at most `target` (or the last one).
fn settled_rss(daemon: &Daemon, target: u64, wait: Duration) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let rss = daemon.rss_kib().expect("daemon RSS");
        if rss <= target || start.elapsed() > wait {
            return rss;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon's RSS after a client created one instance and left (the loader and the
/// host driver loaded): the baseline hostile clients are measured against.
fn warm_baseline(daemon: &Daemon) -> u64 {
    let mut warm = raw::Client::connect(daemon.socket());
    let mut e = vulkan_proto::Encoder::new();
    raw::create_instance(&mut e, 1, true);
    let r = warm.run(e.as_bytes()).expect("warm-up");
    assert_eq!(
        raw::create_results(&r, 1, raw::Created::Instance),
        [ash::vk::Result::SUCCESS]
    );
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    daemon.rss_kib().expect("daemon RSS")
}

/// Sends [`FLOOD`] vkCreateInstance in one submission and returns their results.
fn instance_flood(c: &mut raw::Client) -> Vec<ash::vk::Result> {
    let mut e = vulkan_proto::Encoder::new();
    for i in 0..FLOOD {
        raw::create_instance(&mut e, 0x1000 + i as u64, true);
    }
    let r = c.run(e.as_bytes()).expect("flood replies");
    raw::create_results(&r, FLOOD, raw::Created::Instance)
}

/// Instances the flood test allows: enough (about 1.6 GiB of lavapipe heap) that the
/// daemon's RSS would stay far above its baseline if teardown leaked them or the
/// allocator kept their memory.
const FLOOD_MAX_INSTANCES: usize = 1000;

/// A client creating thousands of instances in one submission gets
/// `VK_ERROR_INITIALIZATION_FAILED` past the limit, with a bounded number of log lines;
/// a bystander's compute is unaffected; and once the hostile client hangs up the
/// daemon's RSS returns to within [`RSS_BOUND_KIB`] of its baseline.
#[test]
fn instance_flood_is_refused_past_the_limit_and_reclaimed() {
    let max = FLOOD_MAX_INSTANCES;
    let daemon = daemon("flood", &["--max-instances", &max.to_string()]);
    let baseline = warm_baseline(&daemon);
    let sock = daemon.socket().to_path_buf();
    let bystander = std::thread::spawn(move || {
        let mut cmd = client(COMPUTE_APP, Mode::Venus(&sock));
        cmd.args(["saxpy", "matmul", "fences"]);
        run_with_timeout(cmd, TIMEOUT).expect("bystander")
    });
    let mut hostile = raw::Client::connect(daemon.socket());
    let results = instance_flood(&mut hostile);
    let peak = daemon.rss_kib().expect("daemon RSS");
    assert!(
        results[..max]
            .iter()
            .all(|&r| r == ash::vk::Result::SUCCESS),
        "{:?}",
        &results[..max]
    );
    assert!(results[max..]
        .iter()
        .all(|&r| r == ash::vk::Result::ERROR_INITIALIZATION_FAILED));
    drop(hostile);

    let o = bystander.join().expect("join");
    assert!(
        o.status.success(),
        "{}\ndaemon log:\n{}",
        text(&o),
        daemon.log()
    );
    let mut native = client(COMPUTE_APP, Mode::Native);
    native.args(["saxpy", "matmul", "fences"]);
    let native = run_with_timeout(native, TIMEOUT).expect("native");
    assert_eq!(
        case_lines(&native),
        case_lines(&o),
        "bystander results differ"
    );

    let after = settled_rss(&daemon, baseline + RSS_BOUND_KIB, Duration::from_secs(30));
    eprintln!("daemon RSS: baseline {baseline} KiB, peak {peak} KiB, after {after} KiB");
    assert!(
        after <= baseline + RSS_BOUND_KIB,
        "RSS {after} KiB after the hostile client left (peak {peak} KiB), baseline \
         {baseline} KiB"
    );
    let log = daemon.log();
    let lines = log.matches("instance limit of 1000 reached").count();
    assert!((1..=8).contains(&lines), "{lines} limit lines:\n{log}");
}

/// A client past the per-context object limit gets `VK_ERROR_OUT_OF_HOST_MEMORY` for
/// each further create; another client in the same daemon has its own count.
#[test]
fn object_flood_is_refused_past_the_limit() {
    const MAX: usize = 100;
    let daemon = daemon("objects", &["--max-objects", &MAX.to_string()]);
    let fences = |c: &mut raw::Client, first: u64, n: usize| {
        let mut e = vulkan_proto::Encoder::new();
        for i in 0..n {
            raw::create_fence(&mut e, first + i as u64);
        }
        let r = c.run(e.as_bytes()).expect("fence replies");
        raw::create_results(&r, n, raw::Created::Fence)
    };
    let mut hostile = raw::Client::connect(daemon.socket());
    let mut e = vulkan_proto::Encoder::new();
    raw::instance_and_device(&mut e);
    hostile.run(e.as_bytes()).expect("setup");
    let results = fences(&mut hostile, 0x1000, 2 * MAX);
    let ok = results
        .iter()
        .take_while(|&&r| r == ash::vk::Result::SUCCESS)
        .count();
    // Instance, physical device and device count too.
    assert_eq!(ok + 3, MAX, "{results:?}");
    assert!(results[ok..]
        .iter()
        .all(|&r| r == ash::vk::Result::ERROR_OUT_OF_HOST_MEMORY));

    let mut bystander = raw::Client::connect(daemon.socket());
    let mut e = vulkan_proto::Encoder::new();
    raw::instance_and_device(&mut e);
    bystander.run(e.as_bytes()).expect("bystander setup");
    let results = fences(&mut bystander, 0x1000, MAX / 2);
    assert!(results.iter().all(|&r| r == ash::vk::Result::SUCCESS));
    assert!(daemon.log().contains("object limit of 100 reached"));
}

/// Through vhost-user every context of one frontend belongs to its VM: a second
/// client of the same frontend shares the quota the first one holds, and gets it back
/// once the first one's context is gone.
#[test]
fn vhost_user_frontend_contexts_share_one_quota() {
    let config = std::env::temp_dir().join(format!("vgpu-quota-{}.toml", std::process::id()));
    std::fs::write(&config, format!("[defaults]\nmemory_mib = {QUOTA_MIB}\n"))
        .expect("config file");
    let path = config.to_str().expect("utf-8 path");
    let chain =
        VhostChain::start(SERVE, &["--config", path], BRIDGE, "quota-vhost").expect("chain");
    let _ = std::fs::remove_file(&config);
    let quota = (QUOTA_MIB << 20).to_string();
    let fit = (QUOTA_MIB / CHUNK_MIB).to_string();
    let (mut first, lines, held) = hold_quota(chain.vtest_socket());
    assert_eq!(field(&held, "heap"), Some(quota.as_str()), "{held}");
    assert_eq!(field(&held, "allocated"), Some(fit.as_str()), "{held}");

    let second =
        run_with_timeout(quota_app(chain.vtest_socket(), false), TIMEOUT).expect("second client");
    assert!(
        second.status.success(),
        "{}\n{}",
        text(&second),
        chain.logs()
    );
    let out = String::from_utf8_lossy(&second.stdout);
    assert_eq!(field(&out, "heap"), Some(quota.as_str()), "{out}");
    assert_eq!(
        field(&out, "allocated"),
        Some("0"),
        "{out}\n{}",
        chain.logs()
    );
    assert_eq!(
        field(&out, "failed"),
        Some("ERROR_OUT_OF_DEVICE_MEMORY"),
        "{out}"
    );

    let rest = release(&mut first, lines);
    assert_eq!(field(&rest, "realloc"), Some("SUCCESS"), "{rest}");
    // The first context's teardown (after its client left) gives its quota back.
    let start = std::time::Instant::now();
    let third = loop {
        let o = run_with_timeout(quota_app(chain.vtest_socket(), false), TIMEOUT)
            .expect("third client");
        assert!(o.status.success(), "{}\n{}", text(&o), chain.logs());
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if field(&out, "allocated") == Some(fit.as_str()) || start.elapsed() > TIMEOUT {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(field(&third, "allocated"), Some(fit.as_str()), "{third}");
}

/// A client past the per-context device limit gets `VK_ERROR_TOO_MANY_OBJECTS`, and
/// can create a device again once it destroyed one.
#[test]
fn device_limit_answers_too_many_objects() {
    let daemon = daemon("devices", &["--max-devices", "2"]);
    let mut c = raw::Client::connect(daemon.socket());
    let mut e = vulkan_proto::Encoder::new();
    raw::instance_and_device(&mut e);
    for id in [0x200, 0x201] {
        raw::create_device(&mut e, id);
    }
    let r = c.run(e.as_bytes()).expect("devices");
    assert_eq!(
        raw::create_results(&r, 2, raw::Created::Device),
        [
            ash::vk::Result::SUCCESS,
            ash::vk::Result::ERROR_TOO_MANY_OBJECTS
        ]
    );
    let mut e = vulkan_proto::Encoder::new();
    raw::destroy_device(&mut e, 0x200);
    raw::create_device(&mut e, 0x202);
    let r = c.run(e.as_bytes()).expect("device after a destroy");
    assert_eq!(
        raw::create_results(&r, 1, raw::Created::Device),
        [ash::vk::Result::SUCCESS]
    );
    assert!(daemon.log().contains("device limit of 2 reached"));
}
