//! The VFIO passthrough PCI function against a fake host device whose configuration space
//! (BARs, capability chain, MSI and MSI-X capabilities), regions and interrupt vectors come
//! from the input, driven by guest configuration reads and writes of every size and offset
//! and BAR accesses (the MSI-X table, the PBA, the rest of each BAR), with the device
//! raising its vectors in between, checked against a reference model after every access:
//! - every register reads what the model says (the emulated ones: command, BARs, capability
//!   chain, MSI-X message control, MSI; the rest: the device's own);
//! - the host device's configuration space sees only the command register's forwarded bits
//!   and the bodies of capabilities nestor does not emulate: nothing written to a BAR, a
//!   pointer, MSI-X or MSI reaches it;
//! - each BAR decodes at the merged value of its registers, and a write moves it exactly
//!   when that value changes;
//! - MSI-X and MSI vectors are enabled on the host and routed exactly as the guest's
//!   control and mask bits allow; a masked MSI-X vector holds what the device raises, shows
//!   it in the PBA and delivers it through its route of the moment when unmasked;
//! - BAR accesses outside the MSI-X table and PBA reach the device unchanged; mapped BAR pieces
//!   reach the guest exactly while the BAR decodes, never over the MSI-X table or PBA.
#![no_main]

use std::sync::Arc;

use devices::pci::PciDevice;
use devices::vfio::testing::{
    fake_host_address, region_byte, CallLog, DeviceCall, FakeInterrupts, FakeSlots, FakeVfioDevice,
};
use devices::vfio::{RegionInfo, VfioPciFunction};
use libfuzzer_sys::fuzz_target;
use nestor_fuzz::input::Input;
use nestor_fuzz::passthrough_model::{per_byte, BarModel, PassthroughModel};

const PAGE: u64 = 4096;
const MSIX_ID: u8 = 0x11;
const MSI_ID: u8 = 0x05;

/// A host device as the input describes it: the BARs as (model, prefetchable), and whether
/// nestor can declare them all.
struct HostDevice {
    config: [u8; 256],
    regions: [RegionInfo; 6],
    bars: Vec<(BarModel, bool)>,
    declarable: bool,
    msix_vectors: u32,
    msi_vectors: u32,
}

fn put(config: &mut [u8; 256], at: usize, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(slot) = config.get_mut(at + i) {
            *slot = b;
        }
    }
}

fn host_device(input: &mut Input) -> HostDevice {
    let seed = input.u8();
    let mut config: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(0x9d) ^ seed);
    put(&mut config, 0, &input.u32().to_le_bytes());
    put(&mut config, 6, &input.u16().to_le_bytes());
    put(&mut config, 8, &input.u32().to_le_bytes());
    let mut regions = [RegionInfo::default(); 6];
    let mut bars = Vec::new();
    let mut declarable = true;
    let mut bar = 0;
    while bar < 6 {
        let kind = input.u8();
        let exponent = input.u8() % 34;
        let size = if exponent == 33 {
            0x3000
        } else {
            1u64 << exponent
        };
        let prefetchable = kind & 0x10 != 0;
        let info = RegionInfo {
            size,
            readable: true,
            writable: true,
            mappable: kind & 0x20 == 0,
        };
        let step = match kind % 4 {
            0 => {
                put(&mut config, 0x10 + 4 * bar, &[0; 4]);
                1
            }
            3 => {
                put(&mut config, 0x10 + 4 * bar, &0x1u32.to_le_bytes());
                regions[bar] = RegionInfo { size: 0x20, ..info };
                1
            }
            k => {
                let is_64 = k == 2;
                let flags = u32::from(is_64) << 2 | u32::from(prefetchable) << 3;
                put(&mut config, 0x10 + 4 * bar, &flags.to_le_bytes());
                regions[bar] = info;
                let too_big = !is_64 && size > 1 << 31;
                if !size.is_power_of_two() || size < 16 || too_big || is_64 && bar == 5 {
                    declarable = false;
                }
                let model = BarModel {
                    index: bar,
                    size,
                    is_64,
                };
                bars.push((model, prefetchable));
                if is_64 {
                    put(&mut config, 0x14 + 4 * bar, &[0; 4]);
                    2
                } else {
                    1
                }
            }
        };
        bar += step;
    }
    capabilities(input, &mut config);
    HostDevice {
        config,
        regions,
        bars,
        declarable,
        msix_vectors: input.pick(&[0, 1, 2, 4, 5, 8, 16, 33]),
        msi_vectors: input.pick(&[0, 1, 2, 4, 8, 32]),
    }
}

/// A capability chain: in address order or anywhere (overlapping, looping, below 0x40).
fn capabilities(input: &mut Input, config: &mut [u8; 256]) {
    let count = input.below(7);
    let scattered = input.bool();
    let mut chain = Vec::new();
    let mut at = 0x40;
    for _ in 0..count {
        let offset = if scattered {
            usize::from(input.u8())
        } else {
            let offset = at;
            at += 4 * (2 + input.below(8));
            offset
        };
        if offset > 0xff {
            break;
        }
        // A pointer below 0x40 ends the chain; the header there is not a capability's.
        if offset < 0x40 {
            chain.push((offset, 0));
            continue;
        }
        let id = input.pick(&[0x01, MSI_ID, MSIX_ID, 0x09, 0x10, MSI_ID, MSIX_ID, 0xff]);
        match id {
            MSI_ID => put(config, offset + 2, &input.u16().to_le_bytes()),
            MSIX_ID => {
                let control = input.u16() & input.pick(&[0x7, 0x3f, 0x7ff]);
                let table = input.below(8) as u32 | (input.below(16) as u32) << 11;
                let pba = input.below(8) as u32 | (input.below(16) as u32) << 11;
                put(config, offset + 2, &control.to_le_bytes());
                put(config, offset + 4, &table.to_le_bytes());
                put(config, offset + 8, &pba.to_le_bytes());
            }
            _ => {}
        }
        chain.push((offset, id));
    }
    for (i, &(offset, id)) in chain.iter().enumerate() {
        let next = chain.get(i + 1).map_or(0, |&(o, _)| o as u8);
        if offset >= 0x40 {
            put(config, offset, &[id, next]);
        }
    }
    config[0x34] = chain.first().map_or(0, |&(o, _)| o as u8);
}

struct Rig {
    function: VfioPciFunction,
    model: PassthroughModel,
    calls: CallLog,
    interrupts: FakeInterrupts,
    slots: Arc<FakeSlots>,
    /// Mapped pieces of each BAR, as (offset, len).
    pieces: Vec<(usize, Vec<(u64, u64)>)>,
    /// Where each BAR decodes, as the root would tell the function.
    placed: Vec<Option<u64>>,
}

impl Rig {
    fn new(input: &mut Input) -> Option<Self> {
        let host = host_device(input);
        let high_64 = input.bool();
        let calls = CallLog::default();
        let mut device = FakeVfioDevice::new(host.config, calls.clone());
        device.regions = host.regions;
        device.msix_vectors = host.msix_vectors;
        device.msi_vectors = host.msi_vectors;
        let interrupts = FakeInterrupts::default();
        let slots = Arc::new(FakeSlots::default());
        let mut next_32 = 0xc000_0000u64;
        let mut next_64 = 0x40_0000_0000u64;
        let mut placed = Vec::new();
        let is_64 = |bar: usize| host.bars.iter().any(|(b, _)| b.index == bar && b.is_64);
        let mut place = |bar: usize, size: u64| {
            let next = if is_64(bar) && high_64 {
                &mut next_64
            } else {
                &mut next_32
            };
            let address = next.next_multiple_of(size);
            *next = address + size;
            placed.push((bar, address));
            Ok(address)
        };
        let made = VfioPciFunction::new(
            Box::new(device),
            &interrupts,
            Some(slots.clone()),
            &mut place,
        );
        let function = match made {
            Ok(function) => function,
            Err(e) => {
                let out_of_4g = placed
                    .iter()
                    .any(|&(bar, address)| !is_64(bar) && address > u64::from(u32::MAX));
                assert!(
                    !host.declarable || out_of_4g,
                    "a device with valid BARs refused: {e}"
                );
                return None;
            }
        };
        assert!(host.declarable, "a BAR nestor cannot declare was accepted");
        let declared: Vec<(BarModel, u64, bool)> = host
            .bars
            .iter()
            .map(|&(bar, prefetchable)| {
                let address = placed.iter().find(|p| p.0 == bar.index).unwrap().1;
                (bar, address, prefetchable)
            })
            .collect();
        let model =
            PassthroughModel::new(&host.config, &declared, host.msix_vectors, host.msi_vectors);
        let mut rig = Self {
            function,
            placed: vec![None; model.bars.len()],
            model,
            calls,
            interrupts,
            slots,
            pieces: Vec::new(),
        };
        rig.check_start(&host);
        Some(rig)
    }

    fn take_calls(&self) -> Vec<DeviceCall> {
        per_byte(std::mem::take(&mut *self.calls.lock().unwrap()))
    }

    /// The device is reset, then its decoding turned off; mappable BARs are mapped around
    /// the MSI-X table and PBA, whole pages each.
    fn check_start(&mut self, host: &HostDevice) {
        let calls = self.take_calls();
        let mut want = vec![DeviceCall::Reset];
        want.extend(per_byte(vec![DeviceCall::ConfigWrite(4, vec![0x00, 0x04])]));
        assert_eq!(calls[..want.len().min(calls.len())], want[..], "start");
        let mut mapped: Vec<(usize, Vec<(u64, u64)>)> = Vec::new();
        for call in &calls[want.len()..] {
            let DeviceCall::Mmap(bar, offset, len) = *call else {
                panic!("start: {call:?}");
            };
            match mapped.last_mut() {
                Some((b, pieces)) if *b == bar as usize => pieces.push((offset, len)),
                _ => mapped.push((bar as usize, vec![(offset, len)])),
            }
        }
        let mut holes: Vec<(u32, u64, u64)> = Vec::new();
        if let Some(msix) = &self.model.msix {
            holes.push((msix.table_bar, msix.table_offset, msix.table_len()));
            holes.push((msix.pba_bar, msix.pba_offset, msix.pba_len()));
        }
        for bar in &self.model.bars {
            let region = host.regions[bar.index];
            let pieces = mapped
                .iter()
                .find(|m| m.0 == bar.index)
                .map_or(&[][..], |m| &m.1[..]);
            if !region.mappable || bar.size < PAGE {
                assert!(pieces.is_empty(), "BAR {} mapped", bar.index);
                continue;
            }
            // Every page of the BAR is mapped exactly once unless the table or PBA touch it.
            for page in (0..bar.size).step_by(PAGE as usize) {
                let in_hole = holes.iter().any(|&(b, offset, len)| {
                    b as usize == bar.index
                        && len > 0
                        && page < offset + len
                        && offset < page + PAGE
                });
                let covering = pieces
                    .iter()
                    .filter(|&&(o, l)| o <= page && page < o + l)
                    .count();
                assert_eq!(
                    covering,
                    usize::from(!in_hole),
                    "BAR {} page {page:#x}: mapped {covering} times, pieces {pieces:x?}",
                    bar.index
                );
            }
            for &(offset, len) in pieces {
                assert!(
                    offset % PAGE == 0 && len % PAGE == 0 && len > 0 && offset + len <= bar.size,
                    "BAR {} piece {offset:#x}+{len:#x}",
                    bar.index
                );
            }
        }
        self.pieces = mapped;
        assert_eq!(self.slots.live(), [], "slots before decoding");
        self.check_registers();
    }

    fn check_registers(&mut self) {
        for reg in 0..64 {
            self.check_read(reg);
        }
    }

    fn check_read(&mut self, reg: usize) {
        let got = self.function.read_config_register(reg);
        assert_eq!(
            got,
            self.model.read(reg),
            "register {reg:#x} (offset {:#x})",
            reg * 4
        );
        assert_eq!(self.take_calls(), [], "read of register {reg:#x}");
    }

    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        let moved = self.function.write_config_register(reg, offset, data);
        let (want, want_moved) = self.model.write(reg, offset, data);
        assert_eq!(
            self.take_calls(),
            want,
            "write of {data:x?} at register {reg:#x} byte {offset}"
        );
        assert_eq!(
            moved.map(|m| (m.bar, m.old, m.new)),
            want_moved,
            "BAR move by {data:x?} at register {reg:#x} byte {offset}"
        );
        self.check_bars();
        self.check_routes();
        if reg == 1 || (4..=9).contains(&reg) {
            self.place_bars();
        }
    }

    /// Each BAR decodes where its registers say.
    fn check_bars(&mut self) {
        let bars = self.function.bars();
        assert_eq!(bars.len(), self.model.bars.len(), "BARs");
        for (bar, model) in bars.iter().zip(&self.model.bars) {
            let low = self.function.read_config_register(4 + bar.index);
            let high = if model.is_64 {
                self.function.read_config_register(5 + bar.index)
            } else {
                0
            };
            let merged = u64::from(high) << 32 | u64::from(low & !0xf);
            assert_eq!(
                (bar.index, bar.address, bar.size),
                (model.index, merged, model.size),
                "BAR {} address against its registers",
                bar.index
            );
            assert_eq!(merged, self.model.bar_address(model), "BAR {}", bar.index);
        }
    }

    /// Routes, holds and deliveries against the model.
    fn check_routes(&mut self) {
        let Some(group) = self.interrupts.last_group() else {
            assert!(self.model.msix.is_none() && self.model.msi.is_none());
            return;
        };
        let (routes, held) = match (&self.model.msix, &self.model.msi) {
            (Some(msix), _) => (msix.routes(), msix.held.clone()),
            (None, Some(msi)) => (msi.routes(), vec![false; msi.vectors as usize]),
            (None, None) => panic!("an interrupt group without MSI-X or MSI"),
        };
        assert_eq!(group.routes(), routes, "routes");
        assert_eq!(*group.held.lock().unwrap(), held, "held vectors");
        assert_eq!(
            group.take_delivered(),
            std::mem::take(&mut self.model.delivered),
            "deliveries"
        );
    }

    /// The host device signals vector `v`.
    fn raise(&mut self, v: usize) {
        if let Some(group) = self.interrupts.last_group() {
            group.raise(v as u16);
            self.model.raise(v);
            self.check_routes();
        }
    }

    /// Tells the function where its BARs decode, as the root would, and checks the memory
    /// slots follow.
    fn place_bars(&mut self) {
        for (i, bar) in self.model.bars.clone().iter().enumerate() {
            let wanted = self
                .model
                .memory_enabled()
                .then(|| self.model.bar_address(bar));
            if self.placed[i] != wanted {
                self.placed[i] = wanted;
                self.function.bar_placed(bar.index, wanted);
            }
        }
        let mut want = Vec::new();
        for (i, bar) in self.model.bars.iter().enumerate() {
            let (Some(address), Some((_, pieces))) = (
                self.placed[i],
                self.pieces.iter().find(|p| p.0 == bar.index),
            ) else {
                continue;
            };
            for &(offset, len) in pieces {
                want.push((
                    address + offset,
                    fake_host_address(bar.index as u32, offset),
                    len,
                ));
            }
        }
        want.sort_unstable();
        assert_eq!(self.slots.live(), want, "memory slots");
        assert_eq!(self.take_calls(), [], "placing BARs");
    }

    /// Where a BAR access lands in the MSI-X table or, failing that, the PBA.
    fn msix_target(&self, bar: usize, offset: u64, len: usize) -> (Option<u64>, Option<u64>) {
        let Some(msix) = &self.model.msix else {
            return (None, None);
        };
        let table = msix.table_offset_of(bar as u32, offset, len);
        let pba = table
            .is_none()
            .then(|| msix.pba_offset_of(bar as u32, offset, len))
            .flatten();
        (table, pba)
    }

    fn bar_read(&mut self, bar: usize, offset: u64, len: usize) {
        let mut data = vec![0u8; len];
        self.function.read_bar(bar, offset, &mut data);
        let (want, calls) = match (self.msix_target(bar, offset, len), &self.model.msix) {
            ((Some(within), _), Some(msix)) => (msix.read_table(within, len), vec![]),
            ((_, Some(within)), Some(msix)) => (msix.read_pba(within, len), vec![]),
            _ => (
                (0..len as u64)
                    .map(|i| region_byte(bar as u32, offset + i))
                    .collect(),
                vec![DeviceCall::RegionRead(bar as u32, offset, len)],
            ),
        };
        assert_eq!(data, want, "BAR {bar} read of {len} bytes at {offset:#x}");
        assert_eq!(self.take_calls(), calls, "BAR {bar} read at {offset:#x}");
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.function.write_bar(bar, offset, data);
        let target = self.msix_target(bar, offset, data.len());
        let calls = match (target, &mut self.model.msix) {
            ((Some(within), _), Some(msix)) => {
                msix.write_table(within, data, &mut self.model.delivered);
                vec![]
            }
            // The PBA is read-only.
            ((_, Some(_)), Some(_)) => vec![],
            _ => vec![DeviceCall::RegionWrite(bar as u32, offset, data.to_vec())],
        };
        assert_eq!(
            self.take_calls(),
            calls,
            "BAR {bar} write of {data:x?} at {offset:#x}"
        );
        self.check_routes();
    }

    /// A register worth aiming at: mostly the header and capabilities, now and then the
    /// extended space.
    fn register(&self, input: &mut Input) -> usize {
        match input.u8() {
            0..=15 => 16 + input.below(48),
            16..=31 => {
                let at = self.model.chain.first_exposed(MSIX_ID).unwrap_or(0x40);
                (at / 4 + input.below(4)).min(63)
            }
            32..=47 => {
                let at = self.model.chain.first_exposed(MSI_ID).unwrap_or(0x40);
                (at / 4 + input.below(6)).min(63)
            }
            48..=51 => 64 + input.below(960),
            r => usize::from(r) % 16,
        }
    }

    /// A BAR and an offset in it: mostly the MSI-X table and PBA.
    fn bar_target(&self, input: &mut Input) -> (usize, u64) {
        let size_of = |bar: usize| {
            self.model
                .bars
                .iter()
                .find(|b| b.index == bar)
                .map(|b| b.size)
        };
        let choice = input.u8();
        if let Some(msix) = &self.model.msix {
            let (bar, offset) = match choice % 4 {
                0 => (
                    msix.table_bar,
                    msix.table_offset + input.below(usize::from(msix.vectors) * 16 + 8) as u64,
                ),
                1 => (msix.pba_bar, msix.pba_offset + input.below(16) as u64),
                _ => (u32::MAX, 0),
            };
            // Only a BAR the function declared is reachable, and only inside it.
            if size_of(bar as usize).is_some_and(|size| offset < size) {
                return (bar as usize, offset);
            }
        }
        let Some(bar) = self
            .model
            .bars
            .get(input.below(self.model.bars.len().max(1)))
        else {
            return (0, 0);
        };
        (bar.index, u64::from(input.u32()) % bar.size)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let Some(mut rig) = Rig::new(&mut input) else {
        return;
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.u8() % 7 {
            0 => {
                let reg = rig.register(&mut input);
                rig.check_read(reg);
            }
            1 | 2 => {
                let reg = rig.register(&mut input);
                let (offset, len) = input.pick(&[
                    (0, 4),
                    (0, 2),
                    (2, 2),
                    (0, 1),
                    (1, 1),
                    (2, 1),
                    (3, 1),
                    (1, 2),
                ]);
                let value = input.u32().to_le_bytes();
                rig.config_write(reg, offset, &value[..len]);
            }
            3 if !rig.model.bars.is_empty() => {
                let (bar, offset) = rig.bar_target(&mut input);
                let len = input.pick(&[4, 8, 1, 2]);
                rig.bar_read(bar, offset, len);
            }
            4 if !rig.model.bars.is_empty() => {
                let (bar, offset) = rig.bar_target(&mut input);
                let len = input.pick(&[4, 8, 1, 2]);
                let value = input.u64().to_le_bytes();
                rig.bar_write(bar, offset, &value[..len]);
            }
            5 if rig.model.vectors() > 0 => {
                let v = input.below(rig.model.vectors());
                rig.raise(v);
            }
            _ => rig.check_registers(),
        }
    }
    rig.check_registers();
});
