//! `vhost-user-vgpu`: parse arguments, validate them into a config, run.

mod args;

use std::process::ExitCode;

use clap::Parser;
use vgpu_device::error_chain;
use vgpu_device::vtest::probe;

fn run(args: args::Args) -> Result<(), Box<dyn std::error::Error>> {
    let plan = match args.command {
        args::Command::Vtest(vtest) => args::Plan::try_from(*vtest)?,
        args::Command::Serve(serve) => args::Plan::try_from(*serve)?,
        args::Command::Ctl { socket, request } => {
            let answer = vgpu_device::qos::control_request(&socket, &request.join(" "))?;
            #[allow(clippy::print_stdout)] // the command's output is its purpose
            {
                print!("{answer}");
            }
            if answer.starts_with("error:") {
                return Err(answer.trim_end().into());
            }
            return Ok(());
        }
        args::Command::Probe { socket } => {
            let report = probe::probe(&socket)?;
            #[allow(clippy::print_stdout)] // the demo client's output is its purpose
            {
                print!("{report}");
            }
            return Ok(());
        }
    };
    // Every VM's front doors in one process; returns once a signal stopped them
    // (exit status 0), or with the error that ended a vhost-user listener.
    vgpu_device::daemon::run(&plan.config, plan.options)?;
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // The hidden worker subcommand (a vtest connection in its own process) is
    // dispatched before clap: the daemon is its only caller.
    if std::env::args().nth(1).as_deref() == Some(vgpu_device::worker::WORKER_SUBCOMMAND) {
        return vgpu_device::worker::child::worker_main(std::env::args().skip(2));
    }
    match run(args::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}
