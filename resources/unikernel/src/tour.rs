//! The default run: show what the guest was given, then power off.

use crate::acpi::Acpi;
use crate::clock::tsc_frequency;
use crate::kprintln;
use crate::pci::scan_bus;
use crate::start_info::StartInfo;
use unikernel::memmap::{guest_memory_bytes, ram_bytes, RAM, RESERVED};
use unikernel::text::hex;

const MIB: u64 = 1 << 20;

fn region_kind(kind: u32) -> &'static str {
    match kind {
        RAM => "ram",
        RESERVED => "reserved",
        3 => "acpi",
        4 => "nvs",
        _ => "other",
    }
}

fn memory(info: &StartInfo) {
    kprintln!("memory map: ", info.regions().count(), " entries");
    for r in info.regions() {
        let last = r.end().saturating_sub(1);
        kprintln!(
            "  ",
            hex(r.addr, 12),
            "-",
            hex(last, 12),
            " ",
            region_kind(r.kind)
        );
    }
    kprintln!(
        "  RAM ",
        ram_bytes(info.regions()) / MIB,
        " MiB in type 1 entries, ",
        guest_memory_bytes(info.regions()) / MIB,
        " MiB guest memory"
    );
}

fn cpus(acpi: Option<&Acpi>) {
    match acpi.and_then(Acpi::cpus) {
        Some(cpus) => kprintln!("cpus: ", cpus.total(), " (ACPI MADT)"),
        None => kprintln!("cpus: no MADT"),
    }
}

fn pci() {
    kprintln!("pci bus 0:");
    let mut count = 0;
    scan_bus(0, |f| {
        count += 1;
        kprintln!(
            "  00:",
            hex(f.bdf.device as u64, 2),
            ".",
            f.bdf.function,
            " ",
            hex(f.vendor as u64, 4),
            ":",
            hex(f.device as u64, 4),
            " class ",
            hex(f.class as u64, 6)
        );
    });
    if count == 0 {
        kprintln!("  no devices");
    }
}

/// Prints the tour and returns the ACPI sleep control port to power off through.
pub fn run(info: &StartInfo) -> Option<u16> {
    memory(info);
    let acpi = Acpi::locate(info.rsdp_paddr());
    if acpi.is_none() {
        kprintln!("acpi: no RSDP/XSDT found");
    }
    cpus(acpi.as_ref());
    kprintln!("cmdline: ", info.cmdline().as_str());
    pci();
    let (hz, source) = tsc_frequency();
    kprintln!("tsc: ", hz / 1_000_000, " MHz (", source.name(), ")");
    acpi.as_ref().and_then(Acpi::sleep_control_port)
}
