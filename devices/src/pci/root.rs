//! The root of bus 0: which function answers at which BDF, and where its BARs sit on the
//! MMIO bus. Both configuration mechanisms (CF8/CFC and ECAM) end up here.
//!
//! # Locking
//!
//! vCPUs reach a function through the configuration windows and through its BARs at once, so
//! a function that holds its own lock for long (a slow reset) must stall only the vCPUs that
//! touch that function. Locks nest in this order only, outermost first:
//!
//! 1. a function's lock (`SharedPciDevice`);
//! 2. that function's BAR placements (`pci::placement`), locked only while holding 1, to
//!    put its BARs on the MMIO bus or take them off after a command or BAR register write;
//! 3. the MMIO bus's ranges lock, taken under 2 to insert or remove a BAR, and for a moment
//!    by every access to find its device; the bus never holds it while a device runs;
//! 4. a function's MSI-X state, taken under 1 by its table and capability emulation;
//! 5. a virtio function's IOTLB write lock (`dma::DeviceTlb`), taken under 1 to pause or
//!    revoke the device's DMA; it waits only for copies in flight (see `dma` for its order).
//!
//! The table of functions is fixed once the root is shared (adding functions takes
//! `&mut self`), so finding a function takes no lock at all, and no lock is ever held while
//! waiting for a function's lock. The CF8/CFC and ECAM windows keep no lock of their own
//! across an access either. Nothing may block under a function's lock: it is held for one
//! register access or one BAR move, and what blocks there stalls that function's vCPUs.

use std::sync::{Arc, Mutex};

use super::device::{IoEventRegistry, PciDevice};
use super::host_bridge::HostBridge;
use super::placement::{affects_decoding, BarPlacement, BarPlacer, ExcludedRange, PlacementError};
use super::{Bdf, DEVICES_PER_BUS};
use crate::bus::Bus;

pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

#[derive(Debug, thiserror::Error)]
pub enum PciRootError {
    #[error("all {DEVICES_PER_BUS} device numbers on bus 0 are taken")]
    NoFreeSlot,
    #[error("device number {0} is not reserved or already in use")]
    SlotUnavailable(u8),
    #[error("cannot place BAR {bar} of {bdf} at {address:#x}: {source}")]
    Bar {
        bdf: Bdf,
        bar: usize,
        address: u64,
        source: PlacementError,
    },
}

/// A function on the bus and where its BARs decode.
struct Function {
    bdf: Bdf,
    device: SharedPciDevice,
    /// Locked only under `device`'s lock.
    placements: Mutex<Vec<BarPlacement>>,
}

impl Function {
    fn new(bdf: Bdf, device: SharedPciDevice) -> Self {
        Self {
            bdf,
            device,
            placements: Mutex::new(Vec::new()),
        }
    }
}

enum Slot {
    Free,
    Reserved,
    Function(Function),
}

/// Bus 0 of segment 0.
pub struct PciRoot {
    /// Fixed once the root is shared, so lookups need no lock.
    slots: Vec<Slot>,
    placer: BarPlacer,
}

impl PciRoot {
    /// A bus with the host bridge at 00:00.0. Without `ioevents`, queue notifications reach
    /// devices through the MMIO bus instead (tests).
    pub fn new(mmio_bus: Arc<Bus>, ioevents: Option<Arc<dyn IoEventRegistry>>) -> Self {
        let mut slots: Vec<Slot> = (0..DEVICES_PER_BUS).map(|_| Slot::Free).collect();
        let host_bridge = Arc::new(Mutex::new(HostBridge::new()));
        slots[0] = Slot::Function(Function::new(Bdf::new(0, 0, 0), host_bridge));
        Self {
            slots,
            placer: BarPlacer {
                mmio_bus,
                ioevents,
                excluded: Vec::new(),
            },
        }
    }

    /// Keeps BARs off `[base, base + len)`, which `owner` (guest RAM, the local APIC...)
    /// decodes without the MMIO bus knowing.
    pub fn exclude_range(&mut self, base: u64, len: u64, owner: &'static str) {
        self.placer
            .excluded
            .push(ExcludedRange { base, len, owner });
    }

    /// Takes the lowest free device number, so the same command line gives the same BDFs.
    pub fn reserve_slot(&mut self) -> Result<Bdf, PciRootError> {
        let number = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Free))
            .ok_or(PciRootError::NoFreeSlot)?;
        self.slots[number] = Slot::Reserved;
        Ok(Bdf::new(0, number as u8, 0))
    }

    /// Puts `device` at the reserved `bdf`; its BARs go on the MMIO bus once its memory
    /// decoding is on.
    pub fn add_device(&mut self, bdf: Bdf, device: SharedPciDevice) -> Result<(), PciRootError> {
        let number = usize::from(bdf.device);
        if bdf.bus != 0
            || bdf.function != 0
            || !matches!(self.slots.get(number), Some(Slot::Reserved))
        {
            return Err(PciRootError::SlotUnavailable(bdf.device));
        }
        let function = Function::new(bdf, device);
        if let Some((bar, address, source)) = self.update_bars(&function) {
            return Err(PciRootError::Bar {
                bdf,
                bar,
                address,
                source,
            });
        }
        self.slots[number] = Slot::Function(function);
        Ok(())
    }

    fn function(&self, bdf: Bdf) -> Option<&Function> {
        if bdf.bus != 0 || bdf.function != 0 {
            return None;
        }
        match self.slots.get(usize::from(bdf.device))? {
            Slot::Function(function) => Some(function),
            _ => None,
        }
    }

    /// A configuration read of register `reg`; all-ones where no function answers.
    pub fn config_read(&self, bdf: Bdf, reg: usize) -> u32 {
        match self.function(bdf) {
            Some(function) => function.device.lock().unwrap().read_config_register(reg),
            None => u32::MAX,
        }
    }

    /// A configuration write; then the function's BARs decode where its registers say.
    pub fn config_write(&self, bdf: Bdf, reg: usize, offset: usize, data: &[u8]) {
        let Some(function) = self.function(bdf) else {
            return;
        };
        let mut device = function.device.lock().unwrap();
        // Placement follows the registers, so the move the device reports is not needed.
        let _ = device.write_config_register(reg, offset, data);
        if affects_decoding(reg) {
            let mut placements = function.placements.lock().unwrap();
            // A refusal is logged once by the placer; the guest sees a BAR that does not
            // decode, as with a conflicting address on real hardware.
            let _ = self
                .placer
                .update(bdf, &function.device, &mut *device, &mut placements);
        }
    }

    fn update_bars(&self, function: &Function) -> Option<super::placement::Refusal> {
        let mut device = function.device.lock().unwrap();
        let mut placements = function.placements.lock().unwrap();
        self.placer.update(
            function.bdf,
            &function.device,
            &mut *device,
            &mut placements,
        )
    }

    /// A read of 1, 2 or 4 bytes at byte `offset` of `bdf`'s configuration space; accesses
    /// that cross a dword read as all-ones.
    pub fn config_read_bytes(&self, bdf: Bdf, offset: usize, data: &mut [u8]) {
        data.fill(0xff);
        let within = offset % 4;
        if !matches!(data.len(), 1 | 2 | 4) || within + data.len() > 4 {
            return;
        }
        let value = self.config_read(bdf, offset / 4).to_le_bytes();
        data.copy_from_slice(&value[within..within + data.len()]);
    }

    /// A write of 1, 2 or 4 bytes at byte `offset`; accesses that cross a dword are dropped.
    pub fn config_write_bytes(&self, bdf: Bdf, offset: usize, data: &[u8]) {
        let within = offset % 4;
        if matches!(data.len(), 1 | 2 | 4) && within + data.len() <= 4 {
            self.config_write(bdf, offset / 4, within, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::testing::{IoEventLog, TestFunction};

    #[test]
    fn slots_are_handed_out_in_order_after_the_host_bridge() {
        let mut root = PciRoot::new(Arc::new(Bus::new()), None);
        assert_eq!(root.config_read(Bdf::new(0, 0, 0), 0), 0x0d57_8086);
        assert_eq!(root.reserve_slot().unwrap(), Bdf::new(0, 1, 0));
        assert_eq!(root.reserve_slot().unwrap(), Bdf::new(0, 2, 0));
        assert_eq!(root.config_read(Bdf::new(0, 1, 0), 0), u32::MAX);
        assert_eq!(root.config_read(Bdf::new(0, 0, 1), 0), u32::MAX);
        assert_eq!(root.config_read(Bdf::new(1, 0, 0), 0), u32::MAX);
        assert!(root
            .add_device(
                Bdf::new(0, 5, 0),
                Arc::new(Mutex::new(TestFunction::new(0xc000_0000)))
            )
            .is_err());
    }

    #[test]
    fn bar_moves_carry_the_bus_range_and_ioeventfds() {
        let bus = Arc::new(Bus::new());
        let log = Arc::new(IoEventLog::default());
        let mut root = PciRoot::new(bus.clone(), Some(log.clone()));
        let bdf = root.reserve_slot().unwrap();
        let dev = Arc::new(Mutex::new(TestFunction::new(0xc000_0000)));
        root.add_device(bdf, dev.clone()).unwrap();
        root.config_write(bdf, 1, 0, &[0x2]);
        assert_eq!(*log.0.lock().unwrap(), vec![(true, 0xc000_0010)]);
        let mut buf = [0u8; 1];
        assert!(bus.read(0xc000_0004, &mut buf));
        assert_eq!(buf, [4]);

        // Sizing with decoding off, as drivers do, touches nothing on the bus.
        root.config_write(bdf, 1, 0, &[0]);
        root.config_write(bdf, 4, 0, &u32::MAX.to_le_bytes());
        assert_eq!(root.config_read(bdf, 4), 0xffff_f000);
        root.config_write(bdf, 4, 0, &0xc000_0000u32.to_le_bytes());
        root.config_write(bdf, 1, 0, &[0x2]);
        assert!(bus.read(0xc000_0004, &mut buf));
        assert!(!bus.read(0xffff_f004, &mut buf));
        log.0.lock().unwrap().clear();

        root.config_write(bdf, 4, 0, &0xc010_0000u32.to_le_bytes());
        assert!(!bus.read(0xc000_0004, &mut buf));
        assert!(bus.write(0xc010_0008, &[9]));
        assert_eq!(dev.lock().unwrap().last_write, Some((8, vec![9])));
        assert_eq!(
            *log.0.lock().unwrap(),
            [(false, 0xc000_0010), (true, 0xc010_0010)]
        );

        // A move onto another device's range is refused: the BAR leaves the bus rather than
        // decode where its register no longer says, and its ioeventfd goes with it.
        let other = Arc::new(Mutex::new(crate::legacy::I8042::new(
            crate::VmControl::new(std::time::Instant::now()).unwrap(),
        )));
        bus.insert(other, 0xc020_0000, 0x1000).unwrap();
        root.config_write(bdf, 4, 0, &0xc020_0000u32.to_le_bytes());
        assert!(!bus.write(0xc010_0008, &[7]));
        assert_eq!(dev.lock().unwrap().last_write, Some((8, vec![9])));
        assert_eq!(log.0.lock().unwrap().last(), Some(&(false, 0xc010_0010)));
        // A later valid move puts it back.
        root.config_write(bdf, 4, 0, &0xc030_0000u32.to_le_bytes());
        assert!(bus.write(0xc030_0000, &[1]));
        assert_eq!(log.0.lock().unwrap().last(), Some(&(true, 0xc030_0010)));
        // The function heard of every placement the root made, and of no refused one.
        assert_eq!(
            dev.lock().unwrap().placed,
            [
                Some(0xc000_0000),
                None,
                Some(0xc000_0000),
                None,
                Some(0xc010_0000),
                None,
                Some(0xc030_0000),
            ]
        );
    }
}
