//! PCI configuration space through both mechanisms (the 0xcf8/0xcfc ports and ECAM) in
//! every access size and offset, and BAR accesses (common configuration, MSI-X table and
//! PBA, ...) through the MMIO bus, on a root with the host bridge and two virtio-pci
//! functions, checked against reference models:
//! - every configuration read returns what the function's register model holds (all-ones
//!   where no function answers or the access crosses a dword), through either mechanism;
//! - a BAR decodes on the MMIO bus exactly while Memory Space Enable is set and its address
//!   is free (not RAM, the APICs, ECAM, another BAR, nor past the top), and nowhere else;
//! - MSI-X routing and delivery, activation and device status follow each function's
//!   transport model.
#![no_main]

use std::sync::{Arc, Mutex};

use arch::layout::{bar_exclusions, PCI_ECAM_START};
use devices::bus::Bus;
use devices::pci::config_io::{CONFIG_ADDRESS_PORT, CONFIG_DATA_LEN, CONFIG_DATA_PORT};
use devices::pci::ecam::ECAM_SIZE;
use devices::pci::root::SharedPciDevice;
use devices::pci::{Bdf, PciConfigIo, PciEcam, PciRoot};
use devices::virtio::pci::VirtioPciDevice;
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::config_model::ConfigModel;
use nestor_fuzz::guest::ram;
use nestor_fuzz::input::Input;
use nestor_fuzz::interrupts::RecordingGroup;
use nestor_fuzz::observed::{device_dma, observed_device, ActivationLog};
use nestor_fuzz::transport_model::*;

const MEMORY_SIZE: u64 = 256 << 20;
const FIRST_BAR: u64 = 0xc000_0000;

struct Function {
    device: Arc<Mutex<VirtioPciDevice>>,
    group: Arc<RecordingGroup>,
    log: ActivationLog,
    /// Where its BAR decodes, as the model places it.
    decoding: Option<(u64, u64)>,
}

struct Rig {
    mmio: Arc<Bus>,
    pio: Bus,
    /// Register models by device number; 0 is the host bridge.
    models: Vec<ConfigModel>,
    functions: Vec<Function>,
    excluded: Vec<(u64, u64)>,
    /// The CF8 address register.
    address: u32,
}

fn regs_of(root: &PciRoot, device: u8) -> [u32; 64] {
    let mut regs = [0u32; 64];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = root.config_read(Bdf::new(0, device, 0), i);
    }
    regs
}

impl Rig {
    fn new(input: &mut Input) -> Self {
        let mmio = Arc::new(Bus::new());
        let mut root = PciRoot::new(mmio.clone(), None);
        let excluded: Vec<(u64, u64)> = bar_exclusions(MEMORY_SIZE)
            .into_iter()
            .map(|(b, l, _)| (b, l))
            .collect();
        for (base, len, owner) in bar_exclusions(MEMORY_SIZE) {
            root.exclude_range(base, len, owner);
        }
        let mut functions = Vec::new();
        let mut transports = Vec::new();
        for i in 0..2u64 {
            let bdf = root.reserve_slot().unwrap();
            let log = ActivationLog::default();
            let setup = input.u8();
            let (device, features, queues, device_model) = observed_device(setup, &log);
            let kind = if setup & 0x10 != 0 {
                DmaKind::Bypassed
            } else {
                DmaKind::Untranslated
            };
            let group = Arc::new(RecordingGroup::default());
            let dev = VirtioPciDevice::new(
                bdf,
                device,
                ram(),
                group.clone(),
                FIRST_BAR + i * BAR_SIZE,
                device_dma(kind),
            )
            .unwrap();
            let device = Arc::new(Mutex::new(dev));
            let shared: SharedPciDevice = device.clone();
            root.add_device(bdf, shared).unwrap();
            transports.push(TransportModel::new(features, &queues, kind, device_model));
            functions.push(Function {
                device,
                group,
                log,
                decoding: None,
            });
        }
        let mut models = vec![ConfigModel::new(regs_of(&root, 0))];
        for (i, t) in transports.into_iter().enumerate() {
            models.push(ConfigModel::virtio(regs_of(&root, i as u8 + 1), t));
        }
        let root = Arc::new(root);
        let (address_port, data_port) = PciConfigIo::ports(root.clone());
        let pio = Bus::new();
        pio.insert_concurrent(address_port, CONFIG_ADDRESS_PORT, 1)
            .unwrap();
        pio.insert_concurrent(data_port, CONFIG_DATA_PORT, CONFIG_DATA_LEN)
            .unwrap();
        mmio.insert_concurrent(Arc::new(PciEcam::new(root)), PCI_ECAM_START, ECAM_SIZE)
            .unwrap();
        Self {
            mmio,
            pio,
            models,
            functions,
            excluded,
            address: 0,
        }
    }

    /// What a configuration read of `len` bytes at byte `offset` of device `device`,
    /// function `function` returns, with the model's side effects.
    fn model_read(&mut self, device: u8, function: u8, offset: usize, len: usize) -> Vec<u8> {
        let within = offset % 4;
        if !matches!(len, 1 | 2 | 4) || within + len > 4 {
            return vec![0xff; len];
        }
        let value = match self
            .models
            .get_mut(usize::from(device))
            .filter(|_| function == 0)
        {
            Some(model) => model.read(offset / 4),
            None => u32::MAX,
        };
        value.to_le_bytes()[within..within + len].to_vec()
    }

    fn model_write(&mut self, device: u8, function: u8, offset: usize, data: &[u8]) {
        let within = offset % 4;
        if !matches!(data.len(), 1 | 2 | 4) || within + data.len() > 4 || function != 0 {
            return;
        }
        let Some(model) = self.models.get_mut(usize::from(device)) else {
            return;
        };
        let reg = offset / 4;
        model.write(reg, within, data);
        if device > 0 && (reg == 1 || (4..=9).contains(&reg)) {
            self.place(usize::from(device) - 1);
        }
    }

    /// Puts function `f`'s BAR where its registers say, if it may decode there.
    fn place(&mut self, f: usize) {
        let model = &self.models[f + 1];
        let wanted = if model.memory_enabled() {
            model.bar()
        } else {
            None
        };
        if self.functions[f].decoding == wanted {
            return;
        }
        self.functions[f].decoding = None;
        let Some((base, size)) = wanted else {
            return;
        };
        let end = base.saturating_add(size);
        let excluded = self
            .excluded
            .iter()
            .any(|&(b, l)| base < b.saturating_add(l) && b < end);
        let wraps = base.checked_add(size).is_none();
        let taken = self.owner_of_range(base, size).is_some();
        if !excluded && !wraps && !taken {
            self.functions[f].decoding = Some((base, size));
        }
    }

    /// What decodes some of `[base, base + len)` on the MMIO bus: Some(None) for ECAM,
    /// Some(Some(f)) for function f's BAR.
    fn owner_of_range(&self, base: u64, len: u64) -> Option<Option<usize>> {
        let end = base.saturating_add(len);
        let overlaps = |b: u64, l: u64| base < b + l && b < end;
        if overlaps(PCI_ECAM_START, ECAM_SIZE) {
            return Some(None);
        }
        self.functions
            .iter()
            .position(|f| f.decoding.is_some_and(|(b, l)| overlaps(b, l)))
            .map(Some)
    }

    fn cf8_write(&mut self, value: u32, len: usize) {
        let data = value.to_le_bytes();
        assert!(self.pio.write(CONFIG_ADDRESS_PORT, &data[..len]));
        if len == 4 {
            self.address = value & !0x7f00_0003;
        }
    }

    fn cf8_read(&mut self, len: usize) {
        let mut data = vec![0u8; len];
        assert!(self.pio.read(CONFIG_ADDRESS_PORT, &mut data));
        let want = if len == 4 {
            self.address.to_le_bytes().to_vec()
        } else {
            vec![0xff; len]
        };
        assert_eq!(data, want, "CF8 read of {len} bytes");
    }

    /// The function and byte offset a CFC access at `port_offset` reaches, if enabled.
    fn cfc_target(&self, port_offset: u64) -> Option<(u8, u8, u8, usize)> {
        let a = self.address;
        (a & 1 << 31 != 0).then(|| {
            let reg = (a & 0xfc) as usize + port_offset as usize;
            (
                (a >> 16) as u8,
                (a >> 11) as u8 & 0x1f,
                (a >> 8) as u8 & 7,
                reg,
            )
        })
    }

    fn cfc_read(&mut self, port_offset: u64, len: usize) {
        let mut data = vec![0u8; len];
        assert!(self.pio.read(CONFIG_DATA_PORT + port_offset, &mut data));
        let want = match self.cfc_target(port_offset) {
            Some((0, device, function, offset)) => self.model_read(device, function, offset, len),
            _ => vec![0xff; len],
        };
        assert_eq!(
            data, want,
            "CFC read of {len} bytes at {port_offset} (CF8 {:#x})",
            self.address
        );
    }

    fn cfc_write(&mut self, port_offset: u64, data: &[u8]) {
        assert!(self.pio.write(CONFIG_DATA_PORT + port_offset, data));
        if let Some((0, device, function, offset)) = self.cfc_target(port_offset) {
            self.model_write(device, function, offset, data);
        }
    }

    fn ecam_read(&mut self, offset: u64, len: usize) {
        let mut data = vec![0u8; len];
        assert!(self.mmio.read(PCI_ECAM_START + offset, &mut data));
        let (device, function, reg) = (
            (offset >> 15) as u8 & 0x1f,
            (offset >> 12) as u8 & 7,
            (offset & 0xfff) as usize,
        );
        let want = if len == 8 && offset % 8 == 0 {
            let mut v = self.model_read(device, function, reg, 4);
            v.extend(self.model_read(device, function, reg + 4, 4));
            v
        } else {
            self.model_read(device, function, reg, len)
        };
        assert_eq!(data, want, "ECAM read of {len} bytes at {offset:#x}");
    }

    fn ecam_write(&mut self, offset: u64, data: &[u8]) {
        assert!(self.mmio.write(PCI_ECAM_START + offset, data));
        let (device, function, reg) = (
            (offset >> 15) as u8 & 0x1f,
            (offset >> 12) as u8 & 7,
            (offset & 0xfff) as usize,
        );
        if data.len() == 8 && offset % 8 == 0 {
            self.model_write(device, function, reg, &data[..4]);
            self.model_write(device, function, reg + 4, &data[4..]);
        } else {
            self.model_write(device, function, reg, data);
        }
    }

    /// A BAR access through the MMIO bus at function `f`'s programmed address: reaches its
    /// device exactly when the model has the BAR decoding there.
    fn bar_access(&mut self, f: usize, offset: u64, data: &mut [u8], write: bool) {
        let (base, _) = self.models[f + 1].bar().unwrap();
        let addr = base.wrapping_add(offset);
        let owner = self.owner_of_range(addr, data.len() as u64);
        let mine = self.functions[f]
            .decoding
            .is_some_and(|(b, l)| addr >= b && addr - b < l);
        if owner.is_some() && !mine {
            // Someone else decodes there (ECAM, the other function): not this access's check.
            return;
        }
        let claimed = if write {
            self.mmio.write(addr, data)
        } else {
            self.mmio.read(addr, data)
        };
        assert_eq!(claimed, mine, "BAR {f} at {base:#x}: decoding");
        if !mine {
            return;
        }
        let transport = self.models[f + 1].transport.as_mut().unwrap();
        if write {
            transport.write_bar(offset, data);
        } else {
            let want = transport.read_bar(offset, data.len());
            assert_eq!(
                data,
                &want[..],
                "BAR {f} read of {} bytes at {offset:#x}",
                data.len()
            );
        }
    }

    fn check(&mut self) {
        for (f, function) in self.functions.iter().enumerate() {
            let transport = self.models[f + 1].transport.as_mut().unwrap();
            assert_eq!(
                function.group.take_fired(),
                std::mem::take(&mut transport.msix.fired),
                "function {f}: MSI-X fired"
            );
            assert_eq!(
                function.group.take_routes(),
                std::mem::take(&mut transport.msix.routes),
                "function {f}: MSI-X routes"
            );
            assert_eq!(
                function.log.activations.lock().unwrap().len(),
                transport.activations.len(),
                "function {f}: activations"
            );
            assert_eq!(
                function.device.lock().unwrap().status(),
                transport.status,
                "function {f}: status"
            );
            transport.notified.iter_mut().for_each(|n| *n = 0);
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The ECAM window holds the root, which holds the bus: without this, every input
        // would leak both and the functions' eventfds with them.
        let _ = self.mmio.remove(PCI_ECAM_START);
    }
}

/// A byte offset in a function's configuration space that is interesting more often than not.
fn config_offset(input: &mut Input, extended: bool) -> usize {
    match input.u8() % 4 {
        0 => 4 + input.below(4),
        1 => 0x10 + input.below(0x18),
        2 => 0x40 + input.below(0x80),
        _ => input.below(if extended { 0x1000 } else { 0x100 }),
    }
}

fn bar_value(input: &mut Input) -> u64 {
    match input.u8() % 8 {
        0 => FIRST_BAR + BAR_SIZE * input.below(4) as u64,
        1 => 0x10_0000,
        2 => PCI_ECAM_START,
        3 => 0xfee0_0000,
        4 => u64::MAX & !(BAR_SIZE - 1),
        5 => 0x1_0000_0000 + BAR_SIZE * input.below(4) as u64,
        _ => input.u64(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut rig = Rig::new(&mut input);
    while !input.is_empty() {
        let device = input.pick(&[0u8, 1, 2, 1, 2, 3, 31]);
        let function = if input.u8() < 0xf0 { 0 } else { input.u8() & 7 };
        match input.u8() % 10 {
            0 => {
                let value = if input.bool() {
                    input.u32()
                } else {
                    1 << 31
                        | u32::from(device) << 11
                        | u32::from(function) << 8
                        | config_offset(&mut input, false) as u32
                };
                let len = input.pick(&[4, 4, 4, 1, 2]);
                rig.cf8_write(value, len);
            }
            1 => {
                let len = input.pick(&[4, 1, 2]);
                rig.cf8_read(len);
            }
            2 => {
                let len = input.pick(&[1, 2, 4]);
                let port_offset = input.below(4) as u64;
                rig.cfc_read(port_offset, len);
            }
            3 => {
                let len = input.pick(&[1, 2, 4]);
                let port_offset = input.below(4) as u64;
                let data: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                rig.cfc_write(port_offset, &data);
            }
            4 => {
                let offset = u64::from(device) << 15
                    | u64::from(function) << 12
                    | config_offset(&mut input, true) as u64;
                let len = input.pick(&[1, 2, 4, 8]);
                rig.ecam_read(offset, len);
            }
            5 | 6 => {
                let offset = u64::from(device) << 15
                    | u64::from(function) << 12
                    | config_offset(&mut input, true) as u64;
                let len = input.pick(&[1, 2, 4, 8]);
                let data: Vec<u8> = if input.bool() {
                    bar_value(&mut input).to_le_bytes()[..len].to_vec()
                } else {
                    (0..len).map(|_| input.u8()).collect()
                };
                rig.ecam_write(offset, &data);
            }
            7 | 8 => {
                let f = input.below(2);
                let offset = match input.u8() % 4 {
                    0 => input.below(0x40) as u64,
                    1 => TABLE_OFFSET + input.below(0x40) as u64,
                    2 => PBA_OFFSET + input.below(0x10) as u64,
                    _ => input.below(BAR_SIZE as usize + 0x10) as u64,
                };
                let len = input.pick(&[1, 2, 4, 8]);
                let write = input.bool();
                let mut data: Vec<u8> = (0..len).map(|_| input.u8()).collect();
                rig.bar_access(f, offset, &mut data, write);
            }
            _ => {
                // Memory decoding on or off, the driver's first step.
                let command = input.pick(&[0x02u8, 0x06, 0x00, 0x04]);
                let offset = u64::from(device) << 15 | 4;
                rig.ecam_write(offset, &[command]);
            }
        }
        rig.check();
    }
});
