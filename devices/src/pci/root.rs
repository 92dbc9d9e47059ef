//! The root of bus 0: which function answers at which BDF, and where its BARs sit on the
//! MMIO bus. Both configuration mechanisms (CF8/CFC and ECAM) end up here.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::config::BarMove;
use super::device::{IoEventRegistry, PciDevice};
use super::host_bridge::HostBridge;
use super::{Bdf, DEVICES_PER_BUS};
use crate::bus::{Bus, BusDevice, BusError};

pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

#[derive(Debug, thiserror::Error)]
pub enum PciRootError {
    #[error("all {DEVICES_PER_BUS} device numbers on bus 0 are taken")]
    NoFreeSlot,
    #[error("device number {0} is not reserved or already in use")]
    SlotUnavailable(u8),
    #[error("cannot place BAR {bar} of {bdf} on the MMIO bus: {source}")]
    Bar {
        bdf: Bdf,
        bar: usize,
        source: BusError,
    },
    #[error("cannot register the notification eventfds of {bdf}: {source}")]
    IoEvent { bdf: Bdf, source: std::io::Error },
}

enum Slot {
    Free,
    Reserved,
    Device {
        device: SharedPciDevice,
        /// Where each BAR is on the MMIO bus (index -> address), which may lag behind the
        /// config space when the guest asked for an impossible move.
        mapped: Vec<(usize, u64)>,
    },
}

/// Routes a BAR's MMIO to its device.
struct BarRegion {
    device: SharedPciDevice,
    bar: usize,
}

impl BusDevice for BarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.device.lock().unwrap().read_bar(self.bar, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.device
            .lock()
            .unwrap()
            .write_bar(self.bar, offset, data);
    }
}

/// Bus 0 of segment 0.
pub struct PciRoot {
    slots: Vec<Slot>,
    mmio_bus: Arc<Bus>,
    ioevents: Option<Arc<dyn IoEventRegistry>>,
}

impl PciRoot {
    /// A bus with the host bridge at 00:00.0. Without `ioevents`, queue notifications reach
    /// devices through the MMIO bus instead (tests).
    pub fn new(mmio_bus: Arc<Bus>, ioevents: Option<Arc<dyn IoEventRegistry>>) -> Self {
        let mut slots: Vec<Slot> = (0..DEVICES_PER_BUS).map(|_| Slot::Free).collect();
        slots[0] = Slot::Device {
            device: Arc::new(Mutex::new(HostBridge::new())),
            mapped: Vec::new(),
        };
        Self {
            slots,
            mmio_bus,
            ioevents,
        }
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

    /// Puts `device` at the reserved `bdf` and its BARs on the MMIO bus.
    pub fn add_device(&mut self, bdf: Bdf, device: SharedPciDevice) -> Result<(), PciRootError> {
        let number = usize::from(bdf.device);
        if bdf.bus != 0
            || bdf.function != 0
            || !matches!(self.slots.get(number), Some(Slot::Reserved))
        {
            return Err(PciRootError::SlotUnavailable(bdf.device));
        }
        let mut mapped = Vec::new();
        let bars = device.lock().unwrap().bars();
        for bar in bars {
            let region = Arc::new(Mutex::new(BarRegion {
                device: device.clone(),
                bar: bar.index,
            }));
            self.mmio_bus
                .insert(region, bar.address, bar.size)
                .map_err(|source| PciRootError::Bar {
                    bdf,
                    bar: bar.index,
                    source,
                })?;
            if let Some(ioevents) = &self.ioevents {
                let dev = device.lock().unwrap();
                for (offset, fd) in dev.ioeventfds(bar.index) {
                    ioevents
                        .register(fd, bar.address + offset)
                        .map_err(|source| PciRootError::IoEvent { bdf, source })?;
                }
            }
            mapped.push((bar.index, bar.address));
        }
        self.slots[number] = Slot::Device { device, mapped };
        Ok(())
    }

    fn device(&self, bdf: Bdf) -> Option<&SharedPciDevice> {
        if bdf.bus != 0 || bdf.function != 0 {
            return None;
        }
        match self.slots.get(usize::from(bdf.device))? {
            Slot::Device { device, .. } => Some(device),
            _ => None,
        }
    }

    /// A configuration read of register `reg`; all-ones where no function answers.
    pub fn config_read(&self, bdf: Bdf, reg: usize) -> u32 {
        match self.device(bdf) {
            Some(device) => device.lock().unwrap().read_config_register(reg),
            None => u32::MAX,
        }
    }

    /// A configuration write; carries out any BAR move it causes.
    pub fn config_write(&mut self, bdf: Bdf, reg: usize, offset: usize, data: &[u8]) {
        let Some(device) = self.device(bdf).cloned() else {
            return;
        };
        let moved = device
            .lock()
            .unwrap()
            .write_config_register(reg, offset, data);
        if let Some(moved) = moved {
            self.move_bar(bdf, &device, moved);
        }
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
    pub fn config_write_bytes(&mut self, bdf: Bdf, offset: usize, data: &[u8]) {
        let within = offset % 4;
        if matches!(data.len(), 1 | 2 | 4) && within + data.len() <= 4 {
            self.config_write(bdf, offset / 4, within, data);
        }
    }

    fn move_bar(&mut self, bdf: Bdf, device: &SharedPciDevice, moved: BarMove) {
        let Some(Slot::Device { mapped, .. }) = self.slots.get_mut(usize::from(bdf.device)) else {
            return;
        };
        let Some(entry) = mapped.iter_mut().find(|(bar, _)| *bar == moved.bar) else {
            return;
        };
        let current = entry.1;
        let mut dev = device.lock().unwrap();
        let fds: Vec<(u64, &EventFd)> = dev.ioeventfds(moved.bar);
        let ioevents = self.ioevents.as_ref();
        let reregister = |base: u64, register: bool| {
            for (offset, fd) in &fds {
                let Some(ioevents) = ioevents else { return };
                let addr = base.wrapping_add(*offset);
                let result = if register {
                    ioevents.register(fd, addr)
                } else {
                    ioevents.unregister(fd, addr)
                };
                if let Err(e) = result {
                    log::warn!("{bdf}: ioeventfd at {addr:#x}: {e}");
                }
            }
        };
        reregister(current, false);
        match self.mmio_bus.relocate(current, moved.new) {
            Ok(()) => {
                reregister(moved.new, true);
                entry.1 = moved.new;
                drop(fds);
                dev.bar_moved(moved.bar, current, moved.new);
            }
            Err(e) => {
                // The guest asked for an overlapping or impossible range: the BAR keeps
                // decoding where it was.
                log::warn!(
                    "{bdf}: BAR {} cannot move to {:#x}: {e}",
                    moved.bar,
                    moved.new
                );
                reregister(current, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{BarRegionKind, PciConfiguration, PciIdentity};
    use crate::pci::device::PciBar;

    /// A function with one 4 KiB BAR0 that records accesses and has one ioeventfd at 0x10.
    pub(crate) struct TestFunction {
        pub config: PciConfiguration,
        pub notify: EventFd,
        pub last_write: Option<(u64, Vec<u8>)>,
    }

    impl TestFunction {
        pub fn new(address: u64) -> Self {
            let mut config = PciConfiguration::new(PciIdentity {
                vendor: 0x1234,
                device: 0x5678,
                class: 0xff_00_00,
                revision: 0,
                subsystem_vendor: 0,
                subsystem: 0,
            });
            config
                .add_memory_bar(0, BarRegionKind::Memory32, 0x1000, address, false)
                .unwrap();
            Self {
                config,
                notify: EventFd::new(0).unwrap(),
                last_write: None,
            }
        }
    }

    impl PciDevice for TestFunction {
        fn read_config_register(&mut self, reg: usize) -> u32 {
            self.config.read_reg(reg)
        }
        fn write_config_register(
            &mut self,
            reg: usize,
            offset: usize,
            data: &[u8],
        ) -> Option<BarMove> {
            self.config.write_reg(reg, offset, data)
        }
        fn bars(&self) -> Vec<PciBar> {
            let (address, size) = self.config.bar(0).unwrap();
            vec![PciBar {
                index: 0,
                address,
                size,
            }]
        }
        fn read_bar(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write_bar(&mut self, _bar: usize, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
        fn ioeventfds(&self, _bar: usize) -> Vec<(u64, &EventFd)> {
            vec![(0x10, &self.notify)]
        }
    }

    #[derive(Default)]
    pub(crate) struct IoEventLog(pub Mutex<Vec<(bool, u64)>>);

    impl IoEventRegistry for IoEventLog {
        fn register(&self, _fd: &EventFd, address: u64) -> std::io::Result<()> {
            self.0.lock().unwrap().push((true, address));
            Ok(())
        }
        fn unregister(&self, _fd: &EventFd, address: u64) -> std::io::Result<()> {
            self.0.lock().unwrap().push((false, address));
            Ok(())
        }
    }

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
        assert_eq!(*log.0.lock().unwrap(), vec![(true, 0xc000_0010)]);
        let mut buf = [0u8; 1];
        assert!(bus.read(0xc000_0004, &mut buf));
        assert_eq!(buf, [4]);

        // Sizing does not move anything.
        root.config_write(bdf, 4, 0, &u32::MAX.to_le_bytes());
        assert_eq!(root.config_read(bdf, 4), 0xffff_f000);
        root.config_write(bdf, 4, 0, &0xc000_0000u32.to_le_bytes());
        assert!(bus.read(0xc000_0004, &mut buf));

        root.config_write(bdf, 4, 0, &0xc010_0000u32.to_le_bytes());
        assert!(!bus.read(0xc000_0004, &mut buf));
        assert!(bus.write(0xc010_0008, &[9]));
        assert_eq!(dev.lock().unwrap().last_write, Some((8, vec![9])));
        assert_eq!(
            log.0.lock().unwrap()[1..],
            [(false, 0xc000_0010), (true, 0xc010_0010)]
        );

        // A move onto another device's range is refused; the BAR keeps decoding in place.
        let other = Arc::new(Mutex::new(crate::legacy::I8042::new(
            crate::VmControl::new(std::time::Instant::now()).unwrap(),
        )));
        bus.insert(other, 0xc020_0000, 0x1000).unwrap();
        root.config_write(bdf, 4, 0, &0xc020_0000u32.to_le_bytes());
        assert!(bus.write(0xc010_0008, &[7]));
        assert_eq!(dev.lock().unwrap().last_write, Some((8, vec![7])));
        // And a later valid move starts from where it really is.
        root.config_write(bdf, 4, 0, &0xc030_0000u32.to_le_bytes());
        assert!(bus.write(0xc030_0000, &[1]));
        assert_eq!(log.0.lock().unwrap().last(), Some(&(true, 0xc030_0010)));
    }
}
