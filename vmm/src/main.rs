//! nestor: a small KVM virtual machine monitor with a paravirtual IOMMU.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use vmm::cli::{Cli, Command};
use vmm::{run_vm, HeadStart, Start, VmmError};

fn main() -> ExitCode {
    let started = Start::now();
    one_malloc_arena();
    // For a VM, clap parses on the boot vCPU's thread while KVM makes the VM.
    let (head_start, parsed) = if wants_vm(std::env::args_os().skip(1)) {
        let (head_start, parsed) = HeadStart::begin(Cli::try_parse);
        (Some(head_start), parsed)
    } else {
        (None, Cli::try_parse())
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    vmm::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => args
            .into_config()
            .map_err(VmmError::from)
            .and_then(|config| {
                let head_start = head_start.unwrap_or_else(HeadStart::none);
                run_vm(config, started, head_start)
            }),
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

/// Every thread allocates from glibc's one main arena. By default each thread that first
/// allocates makes an arena of its own, with mmap, munmap and mprotect calls that, with a
/// second thread running, make the kernel interrupt the other CPU; the boot vCPU's thread
/// parses the command line while this one makes the VM, and its arena made that parse about
/// 0.1 ms longer and the VM's RAM registration slower (docs/startup.md). nestor's threads
/// allocate little once the guest runs, and then mostly from glibc's per-thread cache.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt sets a tunable of the allocator; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Whether the command line asks for a VM: its subcommand is `run`, and it does not ask for
/// help or the version. A guess made before parsing; when clap then rejects the command
/// line, a thread was started and a VM made for nothing, which the exit closes.
fn wants_vm(args: impl Iterator<Item = OsString>) -> bool {
    let mut is_run = None;
    for arg in args {
        let arg = arg.to_string_lossy();
        if matches!(&*arg, "-h" | "--help" | "-V" | "--version") {
            return false;
        }
        // Only the global -v flags, which take no value, may come before the subcommand.
        if is_run.is_none() && !arg.starts_with('-') {
            is_run = Some(arg == "run");
        }
    }
    is_run == Some(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wants(args: &[&str]) -> bool {
        wants_vm(args.iter().map(OsString::from))
    }

    #[test]
    fn only_run_without_help_or_version_wants_a_vm() {
        assert!(wants(&["run"]));
        assert!(wants(&["-vv", "run", "--memory", "128M"]));
        assert!(wants(&["run", "--config", "vm.json"]));
        assert!(!wants(&[]));
        assert!(!wants(&["config", "--kernel", "run"]));
        assert!(!wants(&["help", "run"]));
        assert!(!wants(&["run", "--help"]));
        assert!(!wants(&["-V"]));
        assert!(!wants(&["-v"]));
    }
}
