//! Where a function's BARs decode on the MMIO bus: at the address their registers hold, and
//! only while the command register's Memory Space Enable is set.
//!
//! Every function here has memory BARs only, so I/O Space Enable has nothing to gate.
//! A placement the bus cannot take leaves the BAR off the bus rather than decoding at a
//! stale address the guest can no longer read back. Queue-notification ioeventfds follow
//! the BAR: registered exactly while it decodes.

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
    #[error(transparent)]
    Bus(#[from] BusError),
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
            }
            let Some((address, size)) = wanted else {
                continue;
            };
            let region = Arc::new(BarRegion {
                device: shared.clone(),
                bar: bar.index,
            });
            match self.mmio_bus.insert_concurrent(region, address, size) {
                Ok(()) => {
                    placement.decoding = Some((address, size));
                    self.set_ioevents(bdf, device, bar.index, address, true);
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
                    refused.get_or_insert((bar.index, address, e.into()));
                }
            }
        }
        refused
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
