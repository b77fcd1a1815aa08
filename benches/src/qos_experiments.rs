//! The simulated QoS experiments of issue 5 (see `docs/qos/README.md`).
//!
//! 1. Two VMs at a 2:1 share, saturating closed loops: achieved throughput ratio and device
//!    utilisation per policy and batch size, symmetric and asymmetric batches.
//! 2. Latency isolation: an online VM (1 ms Poisson jobs at 5 % load) next to an offline
//!    VM saturating with 1–100 ms batches; online p50/p99 per policy and alone.

use std::thread;

use vgpu_scheduler::sim::{self, report::percentile, Report, Scenario, SimVm, Workload};
use vgpu_scheduler::{GpuConfig, LatencyClass, Policy, Share, VmConfig, VmId};

/// One millisecond in ns.
pub const MS: u64 = 1_000_000;

/// The batch sizes of experiment 1, in µs.
pub const BATCHES_US: [u64; 9] = [
    200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
];

/// The offline batch sizes of experiment 2, in ms.
pub const OFFLINE_BATCHES_MS: [u64; 7] = [1, 2, 5, 10, 20, 50, 100];

/// VM ids used by both experiments.
pub const VM_A: VmId = VmId(1);
/// The second VM (share 1 in experiment 1, the offline VM in experiment 2).
pub const VM_B: VmId = VmId(2);

/// How long and how often to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Simulated length of each experiment-1 run.
    pub ratio_duration_ns: u64,
    /// Simulated length of each experiment-2 run.
    pub latency_duration_ns: u64,
    /// Start of the measurement window (warm-up excluded).
    pub warmup_ns: u64,
    /// One run per seed; results report the median and the worst seed.
    pub seeds: Vec<u64>,
}

impl Settings {
    /// The settings behind the committed figures.
    pub fn full() -> Settings {
        Settings {
            ratio_duration_ns: 31_000 * MS,
            latency_duration_ns: 121_000 * MS,
            warmup_ns: 1_000 * MS,
            seeds: vec![1, 2, 3, 4, 5],
        }
    }

    /// A quick pass (shorter runs, one seed) for trying changes.
    pub fn quick() -> Settings {
        Settings {
            ratio_duration_ns: 6_000 * MS,
            latency_duration_ns: 31_000 * MS,
            warmup_ns: 1_000 * MS,
            seeds: vec![1],
        }
    }
}

/// The GPU controls each policy runs with. Best-effort is the baseline "what the GPU does
/// on its own": every submission goes straight to the device (a deep FIFO, no pipelining
/// budget). The other policies use the arbiter's defaults (depth 2, 2 ms slice and
/// pipelining budget).
pub fn gpu_for(policy: Policy) -> GpuConfig {
    match policy {
        Policy::BestEffort => GpuConfig {
            in_flight_depth: 64,
            pipeline_ns: u64::MAX,
            ..GpuConfig::DEFAULT
        },
        _ => GpuConfig::DEFAULT,
    }
}

fn share(numerator: u32, denominator: u32) -> Share {
    Share::ratio(numerator, denominator)
        .unwrap_or_else(|e| panic!("share {numerator}/{denominator}: {e}"))
}

/// Experiment 1's scenario: VM A (share 2/3) and VM B (share 1/3) saturating with
/// batches of `batch_a_ns` and `batch_b_ns`.
pub fn ratio_scenario(
    policy: Policy,
    (batch_a_ns, batch_b_ns): (u64, u64),
    outstanding: u32,
    settings: &Settings,
    seed: u64,
) -> Scenario {
    let closed = |batch_ns| Workload::ClosedLoop {
        batch_ns,
        outstanding,
        think_ns: 2_000,
    };
    let vms = vec![
        SimVm::new(VM_A, VmConfig::new(share(2, 3)), closed(batch_a_ns)),
        SimVm::new(VM_B, VmConfig::new(share(1, 3)), closed(batch_b_ns)),
    ];
    let mut s = Scenario::new(policy, vms, settings.ratio_duration_ns, seed);
    s.gpu = gpu_for(policy);
    s
}

/// One point of experiment 1.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioPoint {
    /// The policy.
    pub policy: Policy,
    /// Submissions each VM keeps outstanding (closed-loop depth).
    pub outstanding: u32,
    /// VM A's batch size.
    pub batch_a_ns: u64,
    /// VM B's batch size.
    pub batch_b_ns: u64,
    /// Work ratio A/B per seed.
    pub ratios: Vec<f64>,
    /// Device utilisation per seed.
    pub utils: Vec<f64>,
    /// Utilisation relative to best-effort (FIFO) at the same batches and seed.
    pub util_vs_fifo: Vec<f64>,
}

impl RatioPoint {
    /// Median ratio over seeds.
    pub fn ratio(&self) -> f64 {
        median(&self.ratios)
    }

    /// The ratio furthest from 2.0.
    pub fn worst_ratio(&self) -> f64 {
        self.ratios
            .iter()
            .copied()
            .max_by(|a, b| (a - 2.0).abs().total_cmp(&(b - 2.0).abs()))
            .unwrap_or(f64::NAN)
    }

    /// The lowest utilisation relative to FIFO.
    pub fn worst_util_vs_fifo(&self) -> f64 {
        self.util_vs_fifo
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }
}

/// Median of a non-empty slice (NaN if empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `f` over `items` on all available cores, keeping the order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = thread::available_parallelism().map_or(1, |n| n.get());
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let chunk = items.len().div_ceil(workers.max(1)).max(1);
    thread::scope(|scope| {
        for (slots, chunk_items) in out.chunks_mut(chunk).zip(items.chunks(chunk)) {
            let f = &f;
            scope.spawn(move || {
                for (slot, item) in slots.iter_mut().zip(chunk_items) {
                    *slot = Some(f(item));
                }
            });
        }
    });
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| panic!("worker did not produce a result")))
        .collect()
}

fn run(s: &Scenario) -> Report {
    sim::run(s).unwrap_or_else(|e| panic!("simulation failed: {e}"))
}

/// Experiment 1 for the given `(batch_a, batch_b)` pairs: every policy, every seed, with
/// `outstanding` submissions kept queued by each VM.
pub fn ratio_sweep(pairs: &[(u64, u64)], outstanding: u32, settings: &Settings) -> Vec<RatioPoint> {
    let mut runs = Vec::new();
    for &(a, b) in pairs {
        for policy in Policy::ALL {
            for &seed in &settings.seeds {
                runs.push((policy, a, b, seed));
            }
        }
    }
    let t0 = settings.warmup_ns;
    let t1 = settings.ratio_duration_ns;
    let results = par_map(&runs, |&(policy, a, b, seed)| {
        let r = run(&ratio_scenario(policy, (a, b), outstanding, settings, seed));
        let ratio = r.work_ns(VM_A, t0, t1) / r.work_ns(VM_B, t0, t1);
        (ratio, r.busy_fraction(t0, t1))
    });
    let mut points: Vec<RatioPoint> = Vec::new();
    for (&(policy, a, b, _), &(ratio, util)) in runs.iter().zip(&results) {
        match points.last_mut() {
            Some(p) if p.policy == policy && p.batch_a_ns == a && p.batch_b_ns == b => {
                p.ratios.push(ratio);
                p.utils.push(util);
            }
            _ => points.push(RatioPoint {
                policy,
                outstanding,
                batch_a_ns: a,
                batch_b_ns: b,
                ratios: vec![ratio],
                utils: vec![util],
                util_vs_fifo: Vec::new(),
            }),
        }
    }
    let fifo: Vec<(u64, u64, Vec<f64>)> = points
        .iter()
        .filter(|p| p.policy == Policy::BestEffort)
        .map(|p| (p.batch_a_ns, p.batch_b_ns, p.utils.clone()))
        .collect();
    for p in &mut points {
        if let Some((_, _, base)) = fifo
            .iter()
            .find(|(a, b, _)| *a == p.batch_a_ns && *b == p.batch_b_ns)
        {
            p.util_vs_fifo = p.utils.iter().zip(base).map(|(u, f)| u / f).collect();
        }
    }
    points
}

/// The symmetric batch pairs of experiment 1.
pub fn symmetric_pairs() -> Vec<(u64, u64)> {
    BATCHES_US
        .iter()
        .map(|&us| (us * 1_000, us * 1_000))
        .collect()
}

/// The asymmetric batch pairs of experiment 1 (1 ms vs 20 ms, both ways).
pub fn asymmetric_pairs() -> Vec<(u64, u64)> {
    vec![(MS, 20 * MS), (20 * MS, MS)]
}

/// Who runs next to the online VM in experiment 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The online VM alone (under burst, default controls).
    Alone,
    /// With the offline VM under this policy.
    With(Policy),
}

impl Setup {
    /// All setups in report order.
    pub const ALL: [Setup; 5] = [
        Setup::Alone,
        Setup::With(Policy::BestEffort),
        Setup::With(Policy::EqualShare),
        Setup::With(Policy::FixedShare),
        Setup::With(Policy::Burst),
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Alone => "alone",
            Setup::With(p) => p.name(),
        }
    }
}

/// Experiment 2's scenario. The online VM is interactive with a 25 % share, the offline VM
/// a batch VM with 75 % (equal-share ignores both and gives each half).
pub fn latency_scenario(
    setup: Setup,
    offline_batch_ns: u64,
    settings: &Settings,
    seed: u64,
) -> Scenario {
    let online = SimVm::new(
        VM_A,
        VmConfig::new(share(1, 4)).with_latency(LatencyClass::Interactive),
        Workload::Poisson {
            job_ns: MS,
            load: 0.05,
        },
    );
    let offline = SimVm::new(
        VM_B,
        VmConfig::new(share(3, 4)),
        Workload::saturating(offline_batch_ns),
    );
    let (policy, vms) = match setup {
        Setup::Alone => (Policy::Burst, vec![online]),
        Setup::With(p) => (p, vec![online, offline]),
    };
    let mut s = Scenario::new(policy, vms, settings.latency_duration_ns, seed);
    s.gpu = gpu_for(policy);
    s
}

/// One point of experiment 2 (latencies pooled over seeds).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyPoint {
    /// Who ran next to the online VM.
    pub setup: Setup,
    /// The offline batch size.
    pub offline_batch_ns: u64,
    /// Online p50.
    pub p50_ns: u64,
    /// Online p99.
    pub p99_ns: u64,
    /// Online p99.9.
    pub p999_ns: u64,
    /// Online samples.
    pub samples: usize,
    /// Offline VM's share of device time (median over seeds; 0 alone).
    pub offline_util: f64,
}

/// Experiment 2: every setup, every offline batch size, latencies pooled over seeds.
pub fn latency_sweep(settings: &Settings) -> Vec<LatencyPoint> {
    let mut runs = Vec::new();
    for setup in Setup::ALL {
        for &b in &OFFLINE_BATCHES_MS {
            for &seed in &settings.seeds {
                runs.push((setup, b * MS, seed));
            }
        }
    }
    let t0 = settings.warmup_ns;
    let t1 = settings.latency_duration_ns;
    let results = par_map(&runs, |&(setup, batch, seed)| {
        let r = run(&latency_scenario(setup, batch, settings, seed));
        let lat = r.latencies_ns(VM_A, t0, t1);
        #[allow(
            clippy::cast_precision_loss,
            reason = "simulated durations are far below 2^53 ns"
        )]
        let util = r.device_ns_in(VM_B, t0, t1) as f64 / (t1 - t0) as f64;
        (lat, util)
    });
    let mut points = Vec::new();
    for setup in Setup::ALL {
        for &b in &OFFLINE_BATCHES_MS {
            let mut lat = Vec::new();
            let mut utils = Vec::new();
            for (&(s, batch, _), (l, u)) in runs.iter().zip(&results) {
                if s == setup && batch == b * MS {
                    lat.extend_from_slice(l);
                    utils.push(*u);
                }
            }
            lat.sort_unstable();
            points.push(LatencyPoint {
                setup,
                offline_batch_ns: b * MS,
                p50_ns: percentile(&lat, 0.50),
                p99_ns: percentile(&lat, 0.99),
                p999_ns: percentile(&lat, 0.999),
                samples: lat.len(),
                offline_util: median(&utils),
            });
        }
    }
    points
}
