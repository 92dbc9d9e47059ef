//! FADT: a hardware-reduced platform with sleep control/status and reset registers in PIO.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use super::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

// Kept equal to devices::legacy::ports; arch does not depend on devices.
const SLEEP_CONTROL_PORT: u64 = 0x3c0;
const SLEEP_STATUS_PORT: u64 = 0x3c1;
const RESET_PORT: u64 = 0x3c4;
const RESET_VALUE: u8 = 0x0e;

fn io_byte(port: u64) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, port)
}

pub(super) fn build(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .dsdt_64(dsdt_addr);
    fadt.sleep_control_reg = io_byte(SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_byte(SLEEP_STATUS_PORT);
    fadt.reset_reg = io_byte(RESET_PORT);
    fadt.reset_value = RESET_VALUE;
    to_bytes(&fadt.finalize())
}
