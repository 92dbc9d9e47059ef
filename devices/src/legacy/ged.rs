//! The ACPI Generic Event Device (ACPI0013): how a hardware-reduced platform tells the guest
//! about a power-button press.
//!
//! One 32-bit MMIO register holds the pending events; a whole-register read returns them
//! and clears them. The host sets a bit and raises the GED's interrupt; the DSDT's `_EVT`
//! method reads the register and notifies the power-button device (PNP0C0C), which the
//! guest's ACPI button driver turns into a power-off request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::bus::ConcurrentBusDevice;

/// The event register's bit for a power-button press (the DSDT's `_EVT` tests it).
pub const GED_POWER_BUTTON: u32 = 1 << 0;
/// Bytes of MMIO the device decodes: the one event register.
pub const GED_REGISTER_LEN: u64 = 4;

/// Events raised and not yet read by the guest.
#[derive(Default)]
struct PendingEvents(AtomicU32);

/// The device on the MMIO bus.
pub struct GenericEventDevice {
    pending: Arc<PendingEvents>,
}

/// The host's side: raises events (the API thread holds one).
#[derive(Clone)]
pub struct PowerButton {
    pending: Arc<PendingEvents>,
    irq: Arc<EventFd>,
}

/// A new device and the handle that presses its power button. `irq` is the eventfd
/// registered for the GSI the DSDT gives the GED.
pub fn generic_event_device(irq: EventFd) -> (GenericEventDevice, PowerButton) {
    let pending = Arc::new(PendingEvents::default());
    let button = PowerButton {
        pending: pending.clone(),
        irq: Arc::new(irq),
    };
    (GenericEventDevice { pending }, button)
}

impl PowerButton {
    /// Marks a press pending and interrupts the guest. Presses the guest has not read yet
    /// merge into one, as on real hardware.
    pub fn press(&self) -> std::io::Result<()> {
        self.pending.0.fetch_or(GED_POWER_BUTTON, Ordering::SeqCst);
        self.irq.write(1)
    }
}

impl ConcurrentBusDevice for GenericEventDevice {
    fn read(&self, offset: u64, data: &mut [u8]) {
        // Only a whole, aligned read takes the events: a narrower one would lose the bits
        // it did not return.
        if offset == 0 && data.len() == GED_REGISTER_LEN as usize {
            let events = self.pending.0.swap(0, Ordering::SeqCst);
            data.copy_from_slice(&events.to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    /// The register is read-only.
    fn write(&self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn device() -> (GenericEventDevice, PowerButton, EventFd) {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let seen = irq.try_clone().unwrap();
        let (ged, button) = generic_event_device(irq);
        (ged, button, seen)
    }

    fn read_register(ged: &GenericEventDevice) -> u32 {
        let mut data = [0xffu8; 4];
        ged.read(0, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn a_press_interrupts_and_is_read_once() {
        let (ged, button, irq) = device();
        assert_eq!(read_register(&ged), 0);
        assert!(irq.read().is_err(), "no interrupt before a press");
        button.press().unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(read_register(&ged), GED_POWER_BUTTON);
        assert_eq!(read_register(&ged), 0, "the read cleared the event");
    }

    #[test]
    fn unread_presses_merge_and_each_interrupts() {
        let (ged, button, irq) = device();
        button.press().unwrap();
        button.clone().press().unwrap();
        assert_eq!(irq.read().unwrap(), 2);
        assert_eq!(read_register(&ged), GED_POWER_BUTTON);
        assert_eq!(read_register(&ged), 0);
    }

    #[test]
    fn partial_reads_and_writes_leave_the_events_pending() {
        let (ged, button, _irq) = device();
        button.press().unwrap();
        let mut byte = [0xffu8; 1];
        ged.read(0, &mut byte);
        assert_eq!(byte, [0]);
        let mut word = [0xffu8; 4];
        ged.read(2, &mut word[..2]);
        assert_eq!(word, [0, 0, 0xff, 0xff]);
        ged.write(0, &0u32.to_le_bytes());
        let mut wide = [0xffu8; 8];
        ged.read(0, &mut wide);
        assert_eq!(wide, [0; 8]);
        assert_eq!(read_register(&ged), GED_POWER_BUTTON);
    }
}
