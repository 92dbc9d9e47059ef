//! The boot-timer port: each guest write is timestamped relative to nestor's start.
//!
//! Guests mark milestones (first instruction, init reached) with a byte code; nestor reports
//! them with `--boot-timer`, so boot cost is measured from inside one process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::BusDevice;
use crate::vm_control::VmControl;

/// A milestone written by the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootMark {
    pub code: u8,
    pub since_start: Duration,
}

/// At most this many marks are kept, so a looping guest cannot grow nestor's memory.
pub const MAX_BOOT_MARKS: usize = 64;

pub struct BootTimer {
    control: VmControl,
    marks: Arc<Mutex<Vec<BootMark>>>,
}

impl BootTimer {
    pub fn new(control: VmControl) -> Self {
        Self {
            control,
            marks: Arc::default(),
        }
    }

    /// A handle to the marks recorded so far, for reporting after the VM ends.
    pub fn marks(&self) -> Arc<Mutex<Vec<BootMark>>> {
        self.marks.clone()
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&code) = data.first() else { return };
        let mut marks = self.marks.lock().unwrap();
        if marks.len() < MAX_BOOT_MARKS {
            marks.push(BootMark {
                code,
                since_start: self.control.started().elapsed(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn records_marks_in_order_and_bounded() {
        let mut timer = BootTimer::new(VmControl::new(Instant::now()).unwrap());
        let marks = timer.marks();
        for code in 0..=255u8 {
            timer.write(0, &[code]);
        }
        let marks = marks.lock().unwrap();
        assert_eq!(marks.len(), MAX_BOOT_MARKS);
        assert_eq!(marks[0].code, 0);
        assert!(marks
            .windows(2)
            .all(|w| w[0].since_start <= w[1].since_start));
    }
}
