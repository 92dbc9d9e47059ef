//! The fixed I/O ports of a nestor guest (see docs/guest-contract.md).

pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_LEN: u64 = 8;
pub const COM1_GSI: u32 = 4;
/// The Generic Event Device's interrupt (its register is in MMIO: arch::layout::GED_START).
/// Past the ISA range, so it reaches the IOAPIC only: a guest that never set up the legacy
/// PIC (whose vectors start at 0) does not take it as an exception.
pub const GED_GSI: u32 = 16;

pub const I8042_DATA: u64 = 0x60;
/// 0x60-0x64 as one range; only the data and command ports are meaningful.
pub const I8042_LEN: u64 = 5;

pub const PCI_CONFIG_ADDRESS: u64 = 0xcf8;
pub const PCI_CONFIG_LEN: u64 = 8;

/// Inside the PCI configuration ports: the PCI config-port device must own 0xcf8-0xcff and
/// hand 1-byte accesses at 0xcf9 to `ResetControl`, since bus ranges cannot overlap.
pub const RESET_CONTROL: u64 = 0xcf9;

/// ACPI hardware-reduced sleep control (0x3c0), sleep status (0x3c1) and reset (0x3c4).
pub const ACPI_SLEEP_CONTROL: u64 = 0x3c0;
pub const ACPI_SLEEP_STATUS: u64 = 0x3c1;
pub const ACPI_RESET_REGISTER: u64 = 0x3c4;
pub const ACPI_REGISTERS_LEN: u64 = 5;
/// Value the guest writes to the ACPI reset register.
pub const ACPI_RESET_VALUE: u8 = 0x0e;
/// The `_S5_` sleep type nestor's DSDT advertises.
pub const ACPI_S5_SLEEP_TYPE: u8 = 5;

pub const EXIT_PORT: u64 = 0xf4;
pub const BOOT_TIMER_PORT: u64 = 0x440;
