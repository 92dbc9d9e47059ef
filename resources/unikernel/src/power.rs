//! Leaving the VM: the exit port and ACPI power-off.

use crate::io::{halt_forever, outb};

/// A byte written here ends the VM; nestor exits with it as its status.
pub const EXIT_PORT: u16 = 0xf4;
/// The hardware-reduced ACPI sleep control register when the FADT does not say otherwise.
pub const DEFAULT_SLEEP_CONTROL_PORT: u16 = 0x3c0;
/// SLP_EN (bit 5) with SLP_TYP 5 (bits 4:2): enter S5.
const SLEEP_S5: u8 = 0x34;

/// Guest exit statuses.
pub const EXIT_OK: u8 = 0;
pub const EXIT_PROBE_FAILED: u8 = 1;
pub const EXIT_CRASH: u8 = 3;

pub fn exit(status: u8) -> ! {
    outb(EXIT_PORT, status);
    halt_forever()
}

/// Asks for S5 through the ACPI sleep control register; returns if the VM goes on.
pub fn enter_s5(sleep_control_port: u16) {
    outb(sleep_control_port, SLEEP_S5);
}

/// Powers off through the ACPI sleep control register; falls back to the exit port.
pub fn power_off(sleep_control_port: u16) -> ! {
    enter_s5(sleep_control_port);
    exit(EXIT_OK)
}
