//! Just enough of the i8042 keyboard controller for Linux to probe it and reset through it.

use crate::bus::BusDevice;
use crate::vm_control::{VmControl, VmExitReason};

const COMMAND: u64 = 4;
const CMD_PULSE_RESET: u8 = 0xfe;

pub struct I8042 {
    control: VmControl,
}

impl I8042 {
    pub fn new(control: VmControl) -> Self {
        Self { control }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: no output pending, input buffer empty; the data port reads 0.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND && data.first() == Some(&CMD_PULSE_RESET) {
            self.control.request_exit(VmExitReason::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn pulse_reset_ends_the_vm() {
        let c = VmControl::new(Instant::now()).unwrap();
        let mut kbd = I8042::new(c.clone());
        kbd.write(0, &[CMD_PULSE_RESET]); // the data port
        assert!(!c.is_stopping());
        kbd.write(COMMAND, &[CMD_PULSE_RESET]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
    }
}
