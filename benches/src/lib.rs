//! Benchmarks and figure generators for vgpu. Nothing here is part of the test pass/fail.
//!
//! QoS (issue 5): [`qos_experiments`] builds and runs the simulated experiments,
//! [`qos_plot`] writes their CSV and SVG figures, [`qos_decision`] times the arbiter's
//! decision path. The binary `qos_figures` runs them all and checks the targets; the
//! criterion bench `qos_decision` measures the decision cost with 64 VMs.
//!
//! Wire format (issue 2): [`decode`] builds Venus streams with the driver-side encoders and
//! times decode + dispatch; [`decode_plot`] writes the CSV and chart. The binary
//! `decode_report` writes `docs/bench/`; the criterion bench is `decode_throughput`.
//!
//! Venus overhead (issue 3): [`venus`] is the client workload (compute throughput and
//! submit → fence latency) run natively and through Venus; [`venus_plot`] writes the CSV
//! and charts. The binary `venus_report` runs both modes against the daemon.
//!
//! QoS on the real path (issue 13): [`qos_client`] is the Venus client side and
//! [`qos_daemon`] the daemon side of the binaries `qos_real` (2:1 per batch size, the
//! cost of scheduling) and `qos_latency` (an online VM beside an offline one).

pub mod daemon_bin;
pub mod decode;
pub mod decode_plot;
pub mod qos_client;
pub mod qos_daemon;
pub mod qos_decision;
pub mod qos_experiments;
pub mod qos_plot;
pub mod venus;
pub mod venus_plot;
pub mod vhost;
