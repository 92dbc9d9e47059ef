//! Interrupt sinks that remember what the device raised, for the targets to check.

use std::io;
use std::sync::Mutex;

use devices::interrupt::{MsiInterruptGroup, MsiMessage};
use devices::virtio::VirtioInterrupt;

/// Counts queue and configuration interrupts.
#[derive(Default)]
pub struct CountingInterrupt {
    pub queues: Mutex<Vec<u16>>,
    pub config: Mutex<usize>,
}

impl CountingInterrupt {
    pub fn queue_count(&self) -> usize {
        self.queues.lock().unwrap().len()
    }
}

impl VirtioInterrupt for CountingInterrupt {
    fn notify_queue(&self, queue_index: u16) {
        self.queues.lock().unwrap().push(queue_index);
    }

    fn notify_config(&self) {
        *self.config.lock().unwrap() += 1;
    }
}

/// Records MSI routes and the vectors fired.
#[derive(Default)]
pub struct RecordingGroup {
    pub routes: Mutex<Vec<(u16, Option<MsiMessage>)>>,
    pub fired: Mutex<Vec<u16>>,
}

impl RecordingGroup {
    pub fn take_fired(&self) -> Vec<u16> {
        std::mem::take(&mut *self.fired.lock().unwrap())
    }

    pub fn take_routes(&self) -> Vec<(u16, Option<MsiMessage>)> {
        std::mem::take(&mut *self.routes.lock().unwrap())
    }
}

impl MsiInterruptGroup for RecordingGroup {
    fn set_route(&self, vector: u16, message: Option<MsiMessage>) -> io::Result<()> {
        self.routes.lock().unwrap().push((vector, message));
        Ok(())
    }

    fn trigger(&self, vector: u16) -> io::Result<()> {
        self.fired.lock().unwrap().push(vector);
        Ok(())
    }
}
