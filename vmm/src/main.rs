//! nestor: a small KVM virtual machine monitor with a paravirtual IOMMU.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use vmm::cli::{Cli, Command};
use vmm::{run_vm, Start, VmmError};

fn main() -> ExitCode {
    let started = Start::now();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    vmm::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => args
            .into_config()
            .map_err(VmmError::from)
            .and_then(|config| run_vm(config, started)),
        Command::Config(args) => print_config(args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            vmm::logging::stderr_line(format_args!("nestor: error: {e}"));
            ExitCode::from(e.exit_status())
        }
    }
}

/// `nestor config`: the options as a config file, the file's own options when one is named.
fn print_config(args: vmm::cli::RunArgs) -> Result<u8, VmmError> {
    let args = match &args.config {
        Some(path) => vmm::config_file::load(path)
            .map_err(|e| VmmError::from(vmm::config::ConfigError::from(e)))?,
        None => args,
    };
    // A closed stdout (`nestor config ... | head -c0`) is not worth a panic.
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        vmm::config_file::to_json(&args)
    );
    Ok(0)
}

/// clap's errors span several lines; a user gets one, plus where to look.
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            vmm::logging::stderr_line(format_args!("nestor: error: {first} (see nestor --help)"));
            ExitCode::from(2)
        }
    }
}
