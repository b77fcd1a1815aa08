//! `vtest-vhost-bridge --vhost-socket PATH --vtest-socket PATH [--timeout-secs N]`:
//! serves Mesa's vtest protocol and forwards it as virtio-gpu commands to a
//! `vhost-user-vgpu serve` backend (see `vgpu_tests::bridge`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (mut vhost, mut vtest, mut timeout) = (None, None, 120u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--vhost-socket", Some(v)) => vhost = Some(PathBuf::from(v)),
            ("--vtest-socket", Some(v)) => vtest = Some(PathBuf::from(v)),
            ("--timeout-secs", Some(v)) => match v.parse() {
                Ok(t) => timeout = t,
                Err(_) => vhost = None,
            },
            _ => vhost = None,
        }
    }
    let (Some(vhost), Some(vtest)) = (vhost, vtest) else {
        log::error!(
            "usage: vtest-vhost-bridge --vhost-socket PATH --vtest-socket PATH [--timeout-secs N]"
        );
        return ExitCode::FAILURE;
    };
    match vgpu_tests::bridge::run(&vhost, &vtest, Duration::from_secs(timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
