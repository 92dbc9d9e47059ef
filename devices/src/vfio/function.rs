//! A host PCI function on nestor's bus: configuration space emulated over the device's
//! (see `config`), mappable BARs in guest memory slots (see `bar_mapping`) over a trapped
//! path that forwards region reads and writes, the MSI-X table kept here (see `msix`).

use std::io;
use std::sync::Arc;

use crate::interrupt::MsiInterruptManager;
use crate::io_counters::IoCounters;
use crate::pci::msix::MSIX_CAPABILITY_LEN;
use crate::pci::{BarMove, PciBar, PciDevice, CONFIG_SPACE_SIZE};

use super::bar_mapping::{BarMappings, GuestMemorySlots};
use super::capabilities::{CapabilityList, MSIX_CAPABILITY_ID, MSI_CAPABILITY_ID};
use super::config::{read_header, InterruptCapabilities, VfioConfigError, VfioConfigSpace};
use super::device_io::VfioDeviceIo;
use super::msi::VfioMsi;
use super::msix::{MsixLocation, VfioMsix};

#[derive(Debug, thiserror::Error)]
pub enum VfioFunctionError {
    #[error(transparent)]
    Config(#[from] VfioConfigError),
    #[error("MSI-X vectors: {0}")]
    Vectors(io::Error),
}

pub struct VfioPciFunction {
    device: Box<dyn VfioDeviceIo>,
    config: VfioConfigSpace,
    interrupts: InterruptCapabilities,
    mappings: Option<BarMappings>,
    /// BAR accesses trapped and forwarded to the host device (those through mapped BARs
    /// never reach nestor); `errors`: to a BAR the host does not let nestor read or write.
    counters: Arc<IoCounters>,
}

impl VfioPciFunction {
    /// Resets `device`, turns its decoding and bus mastering off, and declares its memory
    /// BARs at the addresses `place(bar, size)` picks. The guest gets MSI-X when the
    /// host gives it vectors, otherwise MSI when the host gives that; the other is left
    /// out of the chain.
    /// With `slots`, the BARs the host lets this process map are mapped now and reach the
    /// guest through memory slots while they decode; without, every access is trapped.
    pub fn new(
        device: Box<dyn VfioDeviceIo>,
        interrupts: &dyn MsiInterruptManager,
        slots: Option<Arc<dyn GuestMemorySlots>>,
        place: &mut dyn FnMut(usize, u64) -> io::Result<u64>,
    ) -> Result<Self, VfioFunctionError> {
        device.reset();
        let header = read_header(device.as_ref());
        let host_msix = device.msix_vectors() > 0;
        let host_msi = device.msi_vectors() > 0;
        // An MSI-X capability the end of configuration space cuts short has no table to
        // find.
        let msix_fits = CapabilityList::walk(&header, |_| true)
            .find(MSIX_CAPABILITY_ID)
            .is_some_and(|at| at + MSIX_CAPABILITY_LEN <= CONFIG_SPACE_SIZE);
        let msix_usable = host_msix && msix_fits;
        let capabilities = CapabilityList::walk(&header, |id| match id {
            MSIX_CAPABILITY_ID => msix_usable,
            MSI_CAPABILITY_ID => host_msi && !msix_usable,
            _ => true,
        });
        if capabilities.find(MSIX_CAPABILITY_ID).is_none()
            && capabilities.find(MSI_CAPABILITY_ID).is_none()
        {
            log::warn!(
                "the passthrough device has no MSI-X or MSI the host lets it use; the guest \
                 gets no interrupts"
            );
        }
        let mut interrupts_caps = InterruptCapabilities::default();
        if let Some(at) = capabilities.find(MSIX_CAPABILITY_ID) {
            let word = |offset: usize| {
                u32::from_le_bytes(header[offset..offset + 4].try_into().unwrap_or_default())
            };
            let control = (word(at) >> 16) as u16;
            let mut location = MsixLocation::parse(control, word(at + 4), word(at + 8));
            let host_vectors = device.msix_vectors().min(u32::from(u16::MAX)) as u16;
            location.vectors = location.vectors.min(host_vectors);
            let group = interrupts
                .create_group(location.vectors)
                .map_err(VfioFunctionError::Vectors)?;
            interrupts_caps.msix = Some(VfioMsix::new(location, group));
        }
        if let Some(at) = capabilities.find(MSI_CAPABILITY_ID) {
            let control = u16::from_le_bytes([header[at + 2], header[at + 3]]);
            let vectors = VfioMsi::vectors_wanted(control, device.msi_vectors());
            let group = interrupts
                .create_group(vectors)
                .map_err(VfioFunctionError::Vectors)?;
            interrupts_caps.msi = Some(VfioMsi::new(&header[at..], group, vectors));
        }
        let config = VfioConfigSpace::new(&header, device.as_ref(), capabilities, place)?;
        config.sync_command(device.as_ref());
        let mappings = slots.map(|slots| {
            let bars: Vec<(usize, u64)> = config.bars().iter().map(|b| (b.index, b.size)).collect();
            let location = interrupts_caps.msix.as_ref().map(|m| m.location());
            // The table traps; the PBA is left out with it, as the host may refuse to map
            // either.
            let holes = |bar: usize| {
                let mut holes = Vec::new();
                if let Some(l) = location {
                    if l.table_bar as usize == bar {
                        holes.push((l.table_offset, l.table_len()));
                    }
                    if l.pba_bar as usize == bar {
                        holes.push((l.pba_offset, l.pba_len()));
                    }
                }
                holes
            };
            BarMappings::new(device.as_ref(), slots, &bars, holes)
        });
        Ok(Self {
            device,
            config,
            interrupts: interrupts_caps,
            mappings,
            counters: Arc::default(),
        })
    }

    pub fn counters(&self) -> Arc<IoCounters> {
        self.counters.clone()
    }

    fn msix_table_offset(&self, bar: usize, offset: u64, len: usize) -> Option<u64> {
        let location: MsixLocation = self.interrupts.msix.as_ref()?.location();
        location.table_offset_of(bar as u32, offset, len)
    }

    fn msix_pba_offset(&self, bar: usize, offset: u64, len: usize) -> Option<u64> {
        let location: MsixLocation = self.interrupts.msix.as_ref()?.location();
        location.pba_offset_of(bar as u32, offset, len)
    }
}

impl PciDevice for VfioPciFunction {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config
            .read(reg, self.device.as_ref(), &self.interrupts)
    }

    fn write_config_register(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove> {
        self.config.write(
            reg,
            offset,
            data,
            self.device.as_ref(),
            &mut self.interrupts,
        )
    }

    fn bars(&self) -> Vec<PciBar> {
        self.config.bars()
    }

    fn bar_placed(&mut self, bar: usize, address: Option<u64>) {
        if let Some(mappings) = &mut self.mappings {
            mappings.place(bar, address);
        }
    }

    /// The PBA is nestor's: the host device's pending bits say nothing of the guest's
    /// masks (see `msix`).
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        let len = data.len();
        match (
            self.msix_table_offset(bar, offset, len),
            self.msix_pba_offset(bar, offset, len),
            &self.interrupts.msix,
        ) {
            (Some(within), _, Some(msix)) => msix.read_table(within, data),
            (_, Some(within), Some(msix)) => msix.read_pba(within, data),
            _ => {
                self.device.region_read(bar as u32, offset, data);
                let readable = self.device.region(bar as u32).readable;
                self.counters.request(readable);
                if readable {
                    self.counters.read(len as u64);
                }
            }
        }
    }

    /// The PBA is read-only.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let len = data.len();
        match (
            self.msix_table_offset(bar, offset, len),
            self.msix_pba_offset(bar, offset, len),
            &mut self.interrupts.msix,
        ) {
            (Some(within), _, Some(msix)) => msix.write_table(within, data),
            (_, Some(_), Some(_)) => {}
            _ => {
                self.device.region_write(bar as u32, offset, data);
                let writable = self.device.region(bar as u32).writable;
                self.counters.request(writable);
                if writable {
                    self.counters.written(len as u64);
                }
            }
        }
    }
}
