//! nestor as a library: describe a VM, boot it, and read how it ended.
//!
//!     cargo run -p vmm --example embed
//!
//! The VM is the one `nestor run --cmdline probe=boot --memory 128M` would build: the
//! bundled unikernel checking its CPUs and memory. The same description can come from a
//! config file (`vmm::config_file::load`) or JSON text (`vmm::config_file::parse`).
//!
//! `run_vm` blocks until the guest ends and installs the VMM thread's seccomp filter on the
//! thread that calls it (unless the configuration turns seccomp off), so an embedder gives
//! it a thread of its own, as here.

use vmm::cli::RunArgs;
use vmm::config_file;

fn main() {
    let args = RunArgs {
        cmdline: Some("probe=boot".into()),
        memory: 128 << 20,
        timeout: Some(60),
        ..RunArgs::default()
    };
    println!("booting:\n{}", config_file::to_json(&args));
    let vm = std::thread::spawn(move || -> Result<u8, vmm::VmmError> {
        let config = args.into_config()?;
        vmm::run_vm(config, vmm::Start::now(), vmm::HeadStart::none())
    });
    match vm.join() {
        Ok(Ok(status)) => {
            println!("the guest ended with exit status {status}");
            std::process::exit(i32::from(status));
        }
        Ok(Err(e)) => {
            eprintln!("nestor: {e}");
            std::process::exit(i32::from(e.exit_status()));
        }
        Err(_) => {
            eprintln!("the VM thread panicked");
            std::process::exit(1);
        }
    }
}
