//! `loadgen rig`: the set-up the load scripts share, as commands the shell library
//! `scripts/lib/rig.sh` calls: starting a server on a free port and waiting until it is
//! ready (`start`), the CPU seconds of processes and Redis servers (`cpu`), figures
//! read from a scenario's JSON result (`field`), WeChat Pay's keys (`pay-keys`), the
//! soak's verdict on its samples (`soak-verdict`) and what each entry point answered
//! during a fault (`fault-figures`). What stays in shell (builds, the scratch
//! database, Redis servers, clean-up) is in that library.

mod cpu;
mod fault_figures;
mod field;
mod pay_keys;
mod soak_verdict;
mod start;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Start a server (LISTEN_ADDR, METRICS_ADDR and PORT set to free ports), wait until
    /// its readiness path answers 2xx, print "PID PORT METRICS_PORT" and leave it running.
    Start(start::Args),
    /// CPU seconds (user + system) of each process, then of each Redis server (its own
    /// INFO cpu), on one line.
    Cpu(cpu::Args),
    /// Figures of a scenario's result (the last line of its output, a JSON object), one
    /// per line.
    Field(field::Args),
    /// WeChat Pay's keys for a run, written to a directory; prints the replicas' settings.
    PayKeys(pay_keys::Args),
    /// The soak's verdict on its samples (JSON lines): per series, whether it levelled off.
    SoakVerdict(soak_verdict::Args),
    /// What each entry point answered during each fault, from `soak --answers`.
    FaultFigures(fault_figures::Args),
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Start(args) => start::run(args).await,
        Command::Cpu(args) => cpu::run(args).await,
        Command::Field(args) => field::run(args),
        Command::PayKeys(args) => pay_keys::run(args),
        Command::SoakVerdict(args) => soak_verdict::run(args),
        Command::FaultFigures(args) => fault_figures::run(args),
    }
}
