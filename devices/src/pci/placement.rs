//! Where a function's BARs decode on the MMIO bus: at the address their registers hold, and
//! only while the command register's Memory Space Enable is set.
//!
//! Every function here has memory BARs only, so I/O Space Enable has nothing to gate.
//! A BAR must not shadow what decodes without the MMIO bus knowing (guest RAM, the local
//! APIC and IOAPIC, which KVM serves) nor the ECAM window. A placement over those, over
//! another device, or past the top of the address space leaves the BAR off the bus rather
//! than decoding at a stale address the guest can no longer read back; it is logged once
//! per BAR, since a guest can retry it in a loop. Queue-notification ioeventfds follow
//! the BAR: registered exactly while it decodes. So does whatever the function hangs on
//! `PciDevice::bar_placed` (a passthrough function's KVM memory slots), which is why only
//! accepted placements are reported: a slot must never shadow what the placer refused.

use std::sync::Arc;

use super::device::{IoEventRegistry, PciDevice};
use super::root::SharedPciDevice;
use super::Bdf;
use crate::bus::{Bus, BusError, ConcurrentBusDevice};

/// Command register index and its Memory Space Enable bit.
const COMMAND_REG: usize = 1;
const COMMAND_MEMORY_SPACE: u32 = 1 << 1;
/// Register indices of BAR 0 to BAR 5.
const BAR_REGS: std::ops::RangeInclusive<usize> = 4..=9;

/// Whether a write to register `reg` can change where BARs decode.
pub(super) fn affects_decoding(reg: usize) -> bool {
    reg == COMMAND_REG || BAR_REGS.contains(&reg)
}

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("it would cover {0}")]
    Excluded(&'static str),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A range no BAR may cover, and what owns it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExcludedRange {
    pub base: u64,
    pub len: u64,
    pub owner: &'static str,
}

impl ExcludedRange {
    fn overlaps(&self, base: u64, len: u64) -> bool {
        // Both ends exclusive and computed without overflow: the bus refuses ranges that
        // wrap, and an excluded range that wraps covers up to the top.
        let end = base.saturating_add(len);
        let own_end = self.base.saturating_add(self.len);
        base < own_end && self.base < end
    }
}

/// Routes a BAR's MMIO to its device.
struct BarRegion {
    device: SharedPciDevice,
    bar: usize,
}

impl ConcurrentBusDevice for BarRegion {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.device.lock().unwrap().read_bar(self.bar, offset, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.device
            .lock()
            .unwrap()
            .write_bar(self.bar, offset, data);
    }
}

/// One BAR's state on the bus.
#[derive(Debug)]
pub(super) struct BarPlacement {
    index: usize,
    /// `(address, size)` while it decodes.
    decoding: Option<(u64, u64)>,
    /// Where it decoded last, to tell the device when it moved.
    last_address: Option<u64>,
    /// A guest can retry a refused placement in a loop; say so once.
    refusal_logged: bool,
}

/// A refused placement: which BAR, where, and why.
pub(super) type Refusal = (usize, u64, PlacementError);

/// Puts BARs on the MMIO bus and takes them off.
pub(super) struct BarPlacer {
    pub mmio_bus: Arc<Bus>,
    pub ioevents: Option<Arc<dyn IoEventRegistry>>,
    pub excluded: Vec<ExcludedRange>,
}

impl BarPlacer {
    /// Brings `placements` in line with `device`'s registers. Called with the function's
    /// lock held: `device` is what `shared` guards. Returns the first placement refused.
    pub fn update(
        &self,
        bdf: Bdf,
        shared: &SharedPciDevice,
        device: &mut dyn PciDevice,
        placements: &mut Vec<BarPlacement>,
    ) -> Option<Refusal> {
        let decoding = device.read_config_register(COMMAND_REG) & COMMAND_MEMORY_SPACE != 0;
        let mut refused = None;
        for bar in device.bars() {
            let wanted = decoding.then_some((bar.address, bar.size));
            let position = match placements.iter().position(|p| p.index == bar.index) {
                Some(position) => position,
                None => {
                    placements.push(BarPlacement {
                        index: bar.index,
                        decoding: None,
                        last_address: None,
                        refusal_logged: false,
                    });
                    placements.len() - 1
                }
            };
            let placement = &mut placements[position];
            if placement.decoding == wanted {
                continue;
            }
            if let Some((address, _)) = placement.decoding.take() {
                self.set_ioevents(bdf, device, bar.index, address, false);
                if let Err(e) = self.mmio_bus.remove(address) {
                    log::warn!("{bdf}: BAR {} was not at {address:#x}: {e}", bar.index);
                }
                device.bar_placed(bar.index, None);
            }
            let Some((address, size)) = wanted else {
                continue;
            };
            match self.insert(shared, bar.index, address, size) {
                Ok(()) => {
                    placement.decoding = Some((address, size));
                    self.set_ioevents(bdf, device, bar.index, address, true);
                    device.bar_placed(bar.index, Some(address));
                    let moved_from = placement.last_address.replace(address);
                    if let Some(old) = moved_from.filter(|&old| old != address) {
                        device.bar_moved(bar.index, old, address);
                    }
                }
                Err(e) => {
                    if !placement.refusal_logged {
                        placement.refusal_logged = true;
                        log::warn!(
                            "{bdf}: BAR {} cannot decode at {address:#x}: {e}; it stays off \
                             the bus until moved elsewhere (said once)",
                            bar.index
                        );
                    }
                    refused.get_or_insert((bar.index, address, e));
                }
            }
        }
        refused
    }

    fn insert(
        &self,
        shared: &SharedPciDevice,
        bar: usize,
        address: u64,
        size: u64,
    ) -> Result<(), PlacementError> {
        if let Some(range) = self.excluded.iter().find(|r| r.overlaps(address, size)) {
            return Err(PlacementError::Excluded(range.owner));
        }
        let region = Arc::new(BarRegion {
            device: shared.clone(),
            bar,
        });
        Ok(self.mmio_bus.insert_concurrent(region, address, size)?)
    }

    fn set_ioevents(
        &self,
        bdf: Bdf,
        device: &dyn PciDevice,
        bar: usize,
        base: u64,
        register: bool,
    ) {
        let Some(ioevents) = &self.ioevents else {
            return;
        };
        for (offset, fd) in device.ioeventfds(bar) {
            let address = base.wrapping_add(offset);
            let result = if register {
                ioevents.register(fd, address)
            } else {
                ioevents.unregister(fd, address)
            };
            if let Err(e) = result {
                log::warn!("{bdf}: ioeventfd at {address:#x}: {e}");
            }
        }
    }
}
