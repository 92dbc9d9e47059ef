//! An address bus: non-overlapping ranges, each served by one device.
//!
//! The same type serves the PIO and the MMIO bus. A device sees offsets relative to the start
//! of the range it was inserted at, so it does not care where the guest placed it.
//!
//! The ranges lock is held only to find, add or remove an entry, never while a device
//! handles an access, so a slow device stalls only the vCPUs that touch it. A
//! [`BusDevice`] is serialised by a mutex of its own; a [`ConcurrentBusDevice`] does its own
//! locking (the PCI configuration windows and BARs: see `pci::root` for their lock order).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable by guest loads and stores.
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `offset` into the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset` into the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device the bus may call from several vCPUs at once; it locks what it needs itself.
pub trait ConcurrentBusDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    InvalidRange { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap { base: u64, len: u64 },
    #[error("no device at bus address {0:#x}")]
    NotFound(u64),
}

type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Clone)]
enum Handler {
    Locked(SharedDevice),
    Concurrent(Arc<dyn ConcurrentBusDevice>),
}

impl Handler {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match self {
            Handler::Locked(device) => device.lock().unwrap().read(offset, data),
            Handler::Concurrent(device) => device.read(offset, data),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        match self {
            Handler::Locked(device) => device.lock().unwrap().write(offset, data),
            Handler::Concurrent(device) => device.write(offset, data),
        }
    }
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: Handler,
}

/// A set of devices keyed by the start of their range.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        self.insert_handler(Handler::Locked(device), base, len)
    }

    /// Places a device that does its own locking at `[base, base + len)`.
    pub fn insert_concurrent(
        &self,
        device: Arc<dyn ConcurrentBusDevice>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        self.insert_handler(Handler::Concurrent(device), base, len)
    }

    fn insert_handler(&self, device: Handler, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let mut ranges = self.ranges.write().unwrap();
        let before = ranges.range(..end).next_back();
        if let Some((&start, entry)) = before {
            if start + entry.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the device whose range starts at `base`.
    pub fn remove(&self, base: u64) -> Result<(), BusError> {
        self.ranges
            .write()
            .unwrap()
            .remove(&base)
            .map(|_| ())
            .ok_or(BusError::NotFound(base))
    }

    fn resolve(&self, addr: u64) -> Option<(u64, Handler)> {
        let ranges = self.ranges.read().unwrap();
        let (&start, entry) = ranges.range(..=addr).next_back()?;
        (addr - start < entry.len).then(|| (addr - start, entry.device.clone()))
    }

    /// Dispatches a read; returns false when no device claims `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, device)) => {
                device.read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, device)) => {
                device.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_with_offsets_relative_to_the_range() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        let mut buf = [0u8; 2];
        assert!(bus.read(0x105, &mut buf));
        assert_eq!(buf, [5, 5]);
        assert!(bus.write(0x10f, &[7]));
        assert_eq!(dev.lock().unwrap().last_write, Some((0xf, vec![7])));
        assert!(!bus.read(0x110, &mut buf));
        assert!(!bus.write(0xff, &[1]));
    }

    #[test]
    fn refuses_overlaps_and_empty_ranges() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        assert!(matches!(
            bus.insert(dev.clone(), 0x10f, 1),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0xf8, 0x10),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), 0x0, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(dev.clone(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(dev, 0x110, 0x10).unwrap();
    }
}
