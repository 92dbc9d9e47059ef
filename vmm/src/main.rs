//! nestor: a small KVM virtual machine monitor with a paravirtual IOMMU.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use vmm::cli::{Cli, Command};
use vmm::{run_vm, VmmError};

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    vmm::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => args
            .into_config()
            .map_err(VmmError::from)
            .and_then(|config| run_vm(config, started)),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("nestor: error: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
