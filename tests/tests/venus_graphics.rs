//! End-to-end offscreen graphics and descriptor indexing: the `graphics-app` cases run
//! natively on lavapipe and through Venus (Mesa's virtio ICD over vtest to our daemon);
//! every output byte (the 64×64 RGBA8 pixels, the compute results) must match.

use std::process::Output;
use std::time::Duration;

use vgpu_tests::harness::{client, output_text as text, run_with_timeout, Daemon, Mode};

const DAEMON: &str = env!("CARGO_BIN_EXE_venus-daemon");
const APP: &str = env!("CARGO_BIN_EXE_graphics-app");
const TIMEOUT: Duration = Duration::from_secs(240);

fn run_app(mode: Mode<'_>, cases: &[&str]) -> Output {
    let mut cmd = client(APP, mode);
    cmd.args(cases);
    run_with_timeout(cmd, TIMEOUT).expect("run graphics-app")
}

/// `(case, "digest length")` per case line.
type Results = Vec<(String, String)>;

fn results(o: &Output) -> Results {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("device ") && !l.starts_with("api "))
        .filter_map(|l| {
            let mut parts = l.splitn(2, ' ');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

fn native_and_venus(tag: &str, cases: &[&str]) -> (Results, Results) {
    let daemon = Daemon::start(DAEMON, tag).expect("daemon");
    let native = run_app(Mode::Native, cases);
    assert!(
        native.status.success(),
        "native run failed: {}",
        text(&native)
    );
    let venus = run_app(Mode::Venus(daemon.socket()), cases);
    assert!(
        venus.status.success(),
        "Venus run failed: {}\ndaemon log:\n{}",
        text(&venus),
        daemon.log()
    );
    let out = String::from_utf8_lossy(&venus.stdout).into_owned();
    assert!(out.contains("device Virtio-GPU Venus (llvmpipe"), "{out}");
    let (n, v) = (results(&native), results(&venus));
    assert_eq!(n.len(), cases.len(), "{}", text(&native));
    (n, v)
}

/// (a) render pass 1 and 2 (imageless framebuffer) and (b) dynamic rendering draw the
/// same indexed, textured quad: identical pixels natively and through Venus, and
/// identical between the three paths.
#[test]
fn textured_quad_matches_native() {
    let cases = [
        "quad_render_pass",
        "quad_render_pass2",
        "quad_dynamic_rendering",
    ];
    let (native, venus) = native_and_venus("quad", &cases);
    assert_eq!(native, venus, "pixels differ between native and Venus");
    assert!(
        native.iter().all(|(_, r)| *r == native[0].1),
        "render paths disagree: {native:?}"
    );
}

/// (c) a partially bound, variable-count, update-after-bind storage-buffer array
/// indexed non-uniformly in a compute shader.
#[test]
fn descriptor_indexing_matches_native() {
    let (native, venus) = native_and_venus("descidx", &["descriptor_indexing"]);
    assert_eq!(native, venus, "results differ between native and Venus");
}

/// 4× MSAA color + depth with dynamic rendering: depth-stencil image clear, depth test
/// with a dynamic compare op, vkCmdClearAttachments, an indirect-count draw rejected by
/// the depth test, vkCmdResolveImage2, vkCmdClearColorImage and a linear vkCmdBlitImage;
/// the resolved and blitted pixels must equal native.
#[test]
fn msaa_depth_and_transfers_match_native() {
    let (native, venus) = native_and_venus("msaa", &["msaa_depth_transfer"]);
    assert_eq!(native, venus, "pixels differ between native and Venus");
}

/// Extension state through Venus: push descriptors, vertex input set at record time,
/// viewport/scissor with count, extended_dynamic_state3 (polygon mode, depth clamp,
/// samples, sample mask, alpha to coverage, blend enable/equation, write mask), constant
/// blending and vkCmdDrawMultiIndexedEXT; pixels equal to native.
#[test]
fn extension_dynamic_state_matches_native() {
    let (native, venus) = native_and_venus("extdyn", &["ext_dynamic_state"]);
    assert_eq!(native, venus, "pixels differ between native and Venus");
}

/// Misuse Mesa's Venus driver forwards unchecked (an indirect draw past the end of its
/// buffer; a buffer-to-image copy outside both objects; a descriptor write past the end
/// of its binding; a render area larger than its attachment) fails only that client's
/// context with a log line naming the command and the reason; the daemon goes on
/// serving a good client.
#[test]
fn out_of_bounds_graphics_commands_fail_only_their_context() {
    let daemon = Daemon::start(DAEMON, "hostile").expect("daemon");
    let expected = [
        (
            "hostile_indirect",
            "vkCmdDrawIndirect: handler failed: indirect range outside the buffer",
        ),
        (
            "hostile_copy",
            "vkCmdCopyBufferToImage: handler failed: region outside the image",
        ),
        (
            "hostile_descriptor",
            "vkUpdateDescriptorSets: handler failed: descriptor array element out of range",
        ),
        (
            "hostile_render_area",
            "vkCmdBeginRendering: handler failed: attachment smaller than the render area",
        ),
    ];
    assert_eq!(
        expected.len(),
        vgpu_tests::apps::graphics::HOSTILE_CASES.len()
    );
    for (case, line) in expected {
        let o = run_app(Mode::Venus(daemon.socket()), &[case]);
        assert!(!o.status.success(), "{case} succeeded: {}", text(&o));
        assert!(
            daemon.log().contains(line),
            "{case}: no '{line}' in the daemon log:\n{}",
            daemon.log()
        );
    }
    let good = run_app(Mode::Venus(daemon.socket()), &["quad_render_pass"]);
    assert!(
        good.status.success(),
        "good client after the hostile ones: {}\ndaemon log:\n{}",
        text(&good),
        daemon.log()
    );
}
