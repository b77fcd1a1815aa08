use super::*;

fn err(text: &str) -> String {
    match parse(text, "config.toml") {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(e) => crate::error_chain(&e),
    }
}

const TWO_VMS: &str = r#"
policy = "fixed-share"

[vtest]
max_clients = 8

[defaults]
memory_mib = 512
max_blobs = 100

[[vm]]
name = "a"
vtest_socket = "/tmp/a.vtest"
share = 30
cap = 50
latency = "interactive"

[[vm]]
name = "b"
vhost_user_socket = "/tmp/b.sock"
memory_mib = 64
gpu_timeout_ms = 2000
num_scanouts = 2
offer_virgl = false
"#;

#[test]
fn two_vms_take_defaults_and_their_own_keys() {
    let c = parse(TWO_VMS, "config.toml").expect("valid");
    assert_eq!(c.policy, Policy::FixedShare);
    assert_eq!(c.vtest.max_clients, 8);
    let (a, b) = (&c.vms[0], &c.vms[1]);
    assert_eq!(a.name.as_str(), "a");
    assert_eq!(a.vtest_socket.as_deref(), Some(Path::new("/tmp/a.vtest")));
    assert_eq!(a.limits.memory_mib, Some(512));
    assert_eq!(a.fds.max_blobs, Some(100));
    assert_eq!(a.qos.share, Share::from_percent(30.0).expect("share"));
    assert_eq!(a.qos.cap, Some(Share::from_percent(50.0).expect("cap")));
    assert_eq!(a.qos.latency, LatencyClass::Interactive);
    assert_eq!(a.gpu_timeout, super::super::DEFAULT_GPU_TIMEOUT);
    assert_eq!(b.limits.memory_mib, Some(64));
    assert_eq!(b.gpu_timeout, Duration::from_millis(2000));
    assert_eq!(b.device.handler.num_scanouts, 2);
    assert!(!b.device.offer_virgl);
    // b has no share: it gets what a leaves.
    assert_eq!(b.qos.share, Share::from_percent(70.0).expect("share"));
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../../../docs/config.example.toml");
    let c = parse(text, "config.example.toml").expect("the example config is valid");
    assert!(c.vms.len() >= 2, "{c:?}");
}

#[test]
fn unknown_key_in_a_vm_names_line_column_vm_and_key() {
    let text = "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/a\"\nshares = 3\n";
    assert_eq!(
        err(text),
        "config.toml line 4, column 1: vm \"a\": unknown key \"shares\""
    );
}

#[test]
fn unknown_top_level_and_table_keys_are_refused() {
    assert_eq!(
        err("\n\npolicyy = \"burst\"\n"),
        "config.toml line 3, column 1: unknown key \"policyy\""
    );
    assert_eq!(
        err("[vtest]\nmax_client = 3\n"),
        "config.toml line 2, column 1: [vtest]: unknown key \"max_client\""
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_key() {
    let text = "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/a\"\nmax_rings = \"four\"\n";
    let e = err(text);
    assert!(
        e.starts_with("config.toml line 4, column 13: vm \"a\": key \"max_rings\": invalid type"),
        "{e}"
    );
}

#[test]
fn an_out_of_range_value_names_its_position_and_range() {
    let text = "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/a\"\n\nmax_rings = 0\n";
    assert_eq!(
        err(text),
        "config.toml line 5, column 13: vm \"a\": key \"max_rings\" must be in 1..=1024"
    );
    assert_eq!(
        err("policy = \"fair\"\n"),
        "config.toml line 1, column 10: key \"policy\" must be best-effort, equal-share, \
         fixed-share or burst"
    );
}

#[test]
fn a_toml_syntax_error_names_the_line() {
    let e = err("[[vm]]\nname = \"a\n");
    assert!(e.starts_with("config.toml line 2, column "), "{e}");
}

#[test]
fn duplicate_names_and_sockets_are_refused() {
    let names = "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/1\"\n\
                 [[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/2\"\n";
    assert_eq!(
        err(names),
        "config.toml line 5, column 8: vm \"a\": VM name \"a\" is used twice"
    );
    let sockets = "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/1\"\n\
                   [[vm]]\nname = \"b\"\nvhost_user_socket = \"/tmp/1\"\n";
    assert_eq!(
        err(sockets),
        "config.toml line 6, column 21: vm \"b\": key \"vhost_user_socket\": socket /tmp/1 \
         is used twice"
    );
}

#[test]
fn a_vm_needs_a_name_and_a_socket() {
    let e = err("[[vm]]\nvtest_socket = \"/tmp/1\"\n");
    assert!(e.contains("missing key \"name\""), "{e}");
    let e = err("[[vm]]\nname = \"a\"\n");
    assert!(
        e.contains("needs a vhost_user_socket or a vtest_socket"),
        "{e}"
    );
    let e = err("[[vm]]\nname = \"a b\"\nvtest_socket = \"/tmp/1\"\n");
    assert!(e.contains("key \"name\" must be"), "{e}");
}

#[test]
fn shares_past_the_whole_gpu_are_refused() {
    let text = "[[vm]]\nname = \"a\"\nvtest_socket = \"/tmp/1\"\nshare = 60\n\
                [[vm]]\nname = \"b\"\nvtest_socket = \"/tmp/2\"\nshare = 50\n";
    let e = err(text);
    assert!(e.contains("invalid QoS settings"), "{e}");
    assert!(e.contains("more than the whole GPU"), "{e}");
}

#[test]
fn sockets_belong_in_vm_tables_not_defaults() {
    let e = err("[defaults]\nvtest_socket = \"/tmp/1\"\n");
    assert_eq!(
        e,
        "config.toml line 2, column 16: [defaults]: key \"vtest_socket\" belongs in a [[vm]] \
         table, not in [defaults]"
    );
}

#[test]
fn metrics_must_be_loopback_or_unix() {
    let c = parse("metrics = \"127.0.0.1:9100\"\n", "c").expect("loopback");
    assert!(matches!(c.metrics, Some(MetricsListen::Tcp(_))));
    let c = parse("metrics = \"unix:/tmp/m.sock\"\n", "c").expect("unix");
    assert!(matches!(c.metrics, Some(MetricsListen::Unix(_))));
    assert!(err("metrics = \"0.0.0.0:9100\"\n").contains("loopback"));
}

#[test]
fn an_empty_file_is_the_defaults() {
    let c = parse("", "c").expect("empty");
    assert!(c.vms.is_empty());
    assert_eq!(c.policy, Policy::BestEffort);
    assert_eq!(c.vtest, VtestSettings::default());
}

#[test]
fn the_worker_table_sets_isolation_pool_sandbox_and_fd_limit() {
    let c = parse("", "config.toml").expect("valid");
    assert_eq!(c.worker, super::super::WorkerConfig::default());
    assert_eq!(c.worker.isolation, crate::worker::Isolation::Process);
    let c = parse(
        "[worker]\nisolation = \"thread\"\nsandbox = false\npool = 0\nmax_open_files = 128\n",
        "config.toml",
    )
    .expect("valid");
    assert_eq!(c.worker.isolation, crate::worker::Isolation::Thread);
    assert!(!c.worker.sandbox);
    assert_eq!(c.worker.pool, 0);
    assert_eq!(c.worker.max_open_files, 128);
}

#[test]
fn bad_worker_keys_name_line_and_key() {
    assert_eq!(
        err("[worker]\n\nisolation = \"fork\"\n"),
        "config.toml line 3, column 13: [worker]: key \"isolation\" must be \"process\" or \"thread\""
    );
    assert_eq!(
        err("[worker]\npool = 65\n"),
        "config.toml line 2, column 8: [worker]: key \"pool\" must be in 0..=64"
    );
    assert_eq!(
        err("[worker]\ngpu_timeout_ms = 5\n"),
        "config.toml line 2, column 1: [worker]: unknown key \"gpu_timeout_ms\""
    );
}

#[test]
fn a_vms_gpu_timeout_is_its_workers_watchdog_deadline() {
    let c = parse(TWO_VMS, "config.toml").expect("valid");
    let b = &c.vms[1];
    let v = crate::vtest::VtestConfig::for_vm(
        PathBuf::from("/tmp/b.vtest"),
        &c.vtest,
        &c.worker,
        b,
        b.limits,
    );
    assert_eq!(v.worker.gpu_timeout, Duration::from_millis(2000));
    assert_eq!(v.isolation, crate::worker::Isolation::Process);
    assert_eq!(v.worker.pool, c.worker.pool);
}
