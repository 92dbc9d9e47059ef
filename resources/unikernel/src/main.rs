//! nestor's bundled guest: a freestanding x86_64 PVH unikernel.
//!
//! Without `probe=` on its command line it prints a short tour of what it was given
//! (memory map, CPUs, cmdline, PCI devices) and powers off; with `probe=...` it runs
//! self-test scenarios (see `probes/`) and exits through port 0xf4 with their verdict.

#![no_std]
#![no_main]
// Probe failures carry their reason inline (there is no allocator); returns are rare.
#![allow(clippy::result_large_err)]

mod acpi;
mod apic;
mod boot;
mod clock;
mod ecam;
mod edu;
mod idt;
mod io;
mod mem;
mod pci;
mod power;
mod probes;
mod serial;
mod smp;
mod start_info;
mod tour;
mod virtio_iommu;
mod virtio_pci;

use power::{exit, power_off, DEFAULT_SLEEP_CONTROL_PORT, EXIT_CRASH};
use start_info::StartInfo;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Called by the entry code in long mode, on the boot stack, interrupts off.
#[no_mangle]
extern "C" fn kernel_main() -> ! {
    idt::install();
    serial::init();
    kprintln!("nestor unikernel ", VERSION);
    let Some(info) = StartInfo::at(boot::start_info_paddr()) else {
        kprintln!("no PVH start info (bad magic)");
        exit(EXIT_CRASH);
    };
    let cmdline = info.cmdline();
    if cmdline.wants_probes() {
        probes::run_requested(&probes::Context {
            start_info: info,
            cmdline,
        });
    }
    let port = tour::run(&info).unwrap_or(DEFAULT_SLEEP_CONTROL_PORT);
    kprintln!("power off");
    power_off(port)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprint!("\nPANIC");
    if let Some(message) = info.message().as_str() {
        kprint!(": ", message);
    }
    if let Some(at) = info.location() {
        kprint!(" at ", at.file(), ":", at.line());
    }
    kprintln!();
    exit(EXIT_CRASH)
}
