//! Power-off and reset: the ACPI hardware-reduced registers and the 0xcf9 reset control.

use crate::bus::BusDevice;
use crate::legacy::ports::{
    ACPI_RESET_REGISTER, ACPI_RESET_VALUE, ACPI_S5_SLEEP_TYPE, ACPI_SLEEP_CONTROL,
};
use crate::vm_control::{VmControl, VmExitReason};

const SLEEP_ENABLE: u8 = 1 << 5;
const SLEEP_TYPE_SHIFT: u8 = 2;
const SLEEP_TYPE_MASK: u8 = 0x7;

/// Sleep control, sleep status and reset registers, at 0x3c0..0x3c5.
pub struct AcpiPowerControl {
    control: VmControl,
}

impl AcpiPowerControl {
    pub fn new(control: VmControl) -> Self {
        Self { control }
    }
}

impl BusDevice for AcpiPowerControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        const RESET_OFFSET: u64 = ACPI_RESET_REGISTER - ACPI_SLEEP_CONTROL;
        match offset {
            RESET_OFFSET if value == ACPI_RESET_VALUE => {
                self.control.request_exit(VmExitReason::Reset);
            }
            0 => {
                let sleep_type = (value >> SLEEP_TYPE_SHIFT) & SLEEP_TYPE_MASK;
                if value & SLEEP_ENABLE != 0 && sleep_type == ACPI_S5_SLEEP_TYPE {
                    self.control.request_exit(VmExitReason::PowerOff);
                }
            }
            _ => {}
        }
    }
}

/// The 0xcf9 reset control register.
pub struct ResetControl {
    control: VmControl,
}

impl ResetControl {
    pub fn new(control: VmControl) -> Self {
        Self { control }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        // Bit 2 starts the reset; bit 1 selects hard reset. Both mean "end the VM" here.
        if data.first().is_some_and(|v| v & 0x4 != 0) {
            self.control.request_exit(VmExitReason::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn control() -> VmControl {
        VmControl::new(Instant::now()).unwrap()
    }

    #[test]
    fn s5_powers_off_other_sleep_states_do_not() {
        let c = control();
        let mut acpi = AcpiPowerControl::new(c.clone());
        acpi.write(0, &[SLEEP_ENABLE | (3 << SLEEP_TYPE_SHIFT)]);
        acpi.write(0, &[5 << SLEEP_TYPE_SHIFT]);
        assert!(!c.is_stopping());
        acpi.write(0, &[0x34]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::PowerOff));
    }

    #[test]
    fn acpi_reset_register_needs_the_advertised_value() {
        let c = control();
        let mut acpi = AcpiPowerControl::new(c.clone());
        acpi.write(4, &[0x1]);
        assert!(!c.is_stopping());
        acpi.write(4, &[ACPI_RESET_VALUE]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
    }

    #[test]
    fn cf9_resets_on_bit_2() {
        let c = control();
        let mut cf9 = ResetControl::new(c.clone());
        cf9.write(0, &[0x2]);
        assert!(!c.is_stopping());
        cf9.write(0, &[0x6]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
    }
}
