//! The exit port: the guest writes a status byte and nestor exits with it.

use crate::bus::BusDevice;
use crate::vm_control::{VmControl, VmExitReason};

pub struct ExitPort {
    control: VmControl,
}

impl ExitPort {
    pub fn new(control: VmControl) -> Self {
        Self { control }
    }
}

impl BusDevice for ExitPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&status) = data.first() {
            self.control.request_exit(VmExitReason::ExitPort(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_write_ends_the_vm_with_the_byte_as_status() {
        let control = VmControl::new(Instant::now()).unwrap();
        let mut port = ExitPort::new(control.clone());
        port.write(0, &[]);
        assert!(!control.is_stopping());
        port.write(0, &[3, 9]);
        assert_eq!(control.exit_reason(), Some(VmExitReason::ExitPort(3)));
    }
}
