//! Where BARs decode on the MMIO bus as the guest programs them.

use std::sync::{Arc, Mutex};

use super::config::BarRegionKind;
use super::root::PciRoot;
use super::testing::{record_warnings, warnings_containing, IoEventLog, TestFunction};
use super::Bdf;
use crate::bus::Bus;

const COMMAND: usize = 4;
const BAR0: usize = 0x10;
const MEMORY_SPACE: u8 = 1 << 1;

/// xorshift64: reproducible, no dependency.
fn random(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

struct Rig {
    bus: Arc<Bus>,
    root: PciRoot,
    bdf: Bdf,
    kind: BarRegionKind,
    size: u64,
}

impl Rig {
    fn new(kind: BarRegionKind, size: u64, address: u64) -> Self {
        let bus = Arc::new(Bus::new());
        let mut root = PciRoot::new(bus.clone(), None);
        let bdf = root.reserve_slot().unwrap();
        let function = TestFunction::with_bar(kind, size, address);
        root.add_device(bdf, Arc::new(Mutex::new(function)))
            .unwrap();
        root.config_write_bytes(bdf, COMMAND, &[MEMORY_SPACE]);
        Self {
            bus,
            root,
            bdf,
            kind,
            size,
        }
    }

    /// The BAR's address as its registers hold it.
    fn register_address(&self) -> u64 {
        let low = u64::from(self.root.config_read(self.bdf, BAR0 / 4) & !0xf);
        let high = match self.kind {
            BarRegionKind::Memory64 => u64::from(self.root.config_read(self.bdf, BAR0 / 4 + 1)),
            BarRegionKind::Memory32 => 0,
        };
        high << 32 | low
    }

    fn decodes(&self, address: u64) -> bool {
        self.bus.read(address, &mut [0u8; 1])
    }

    /// True when the BAR answers on its whole range and not a byte either side.
    fn decodes_exactly_at(&self, address: u64) -> bool {
        let last = address + self.size - 1;
        self.decodes(address)
            && self.decodes(last)
            && (address == 0 || !self.decodes(address - 1))
            && (last == u64::MAX || !self.decodes(last + 1))
    }
}

#[test]
fn sub_dword_bar_writes_keep_the_bus_on_the_register_address() {
    for (kind, size, start) in [
        (BarRegionKind::Memory32, 0x1000, 0xc000_0000),
        (BarRegionKind::Memory64, 0x8000, 0xc000_8000),
    ] {
        let rig = Rig::new(kind, size, start);
        let registers = if kind == BarRegionKind::Memory64 {
            2
        } else {
            1
        };
        let mut next = random(0x9e37_79b9_7f4a_7c15);
        for step in 0..5_000 {
            let value = next();
            let reg = BAR0 + 4 * (value as usize % registers);
            let len = if value & 0x10 == 0 { 1 } else { 2 };
            let offset = (value >> 8) as usize % (5 - len);
            let bytes = (value >> 32).to_le_bytes();
            rig.root
                .config_write_bytes(rig.bdf, reg + offset, &bytes[..len]);
            let address = rig.register_address();
            if address.checked_add(size).is_none() {
                // Past the end of the address space: no place to decode at.
                continue;
            }
            assert!(
                rig.decodes_exactly_at(address),
                "{kind:?} step {step}: wrote {:x?} at {:#x}; the register says {address:#x}",
                &bytes[..len],
                reg + offset
            );
        }
    }
}

#[test]
fn bars_decode_only_while_memory_space_is_enabled() {
    let bus = Arc::new(Bus::new());
    let log = Arc::new(IoEventLog::default());
    let mut root = PciRoot::new(bus.clone(), Some(log.clone()));
    let bdf = root.reserve_slot().unwrap();
    let function = TestFunction::new(0xc000_0000);
    root.add_device(bdf, Arc::new(Mutex::new(function)))
        .unwrap();
    let decodes = |address: u64| bus.read(address, &mut [0u8; 4]);
    let registered = || log.0.lock().unwrap().clone();

    // Out of reset, decoding is off: nothing on the bus, no ioeventfd.
    assert!(!decodes(0xc000_0000));
    assert!(registered().is_empty());

    root.config_write_bytes(bdf, COMMAND, &[MEMORY_SPACE]);
    assert!(decodes(0xc000_0000));
    assert_eq!(registered(), [(true, 0xc000_0010)]);

    // Off again; a move while off decodes nowhere; on again decodes at the new address.
    root.config_write_bytes(bdf, COMMAND, &[0]);
    assert!(!decodes(0xc000_0000));
    root.config_write_bytes(bdf, BAR0, &0xc004_0000u32.to_le_bytes());
    assert!(!decodes(0xc000_0000) && !decodes(0xc004_0000));
    root.config_write_bytes(bdf, COMMAND, &[MEMORY_SPACE | 0x4]);
    assert!(decodes(0xc004_0000));
    assert!(!decodes(0xc000_0000));
    assert_eq!(
        registered(),
        [
            (true, 0xc000_0010),
            (false, 0xc000_0010),
            (true, 0xc004_0010)
        ]
    );

    // I/O space and bus mastering alone do not turn memory decoding on.
    root.config_write_bytes(bdf, COMMAND, &[0x1 | 0x4]);
    assert!(!decodes(0xc004_0000));
    assert_eq!(registered().last(), Some(&(false, 0xc004_0010)));
}

#[test]
fn bars_never_shadow_ram_the_apics_or_ecam() {
    record_warnings();
    let bus = Arc::new(Bus::new());
    let mut root = PciRoot::new(bus.clone(), None);
    root.exclude_range(0, 0x1000_0000, "guest RAM");
    root.exclude_range(0xe000_0000, 0x1000_0000, "the ECAM window");
    root.exclude_range(0xfec0_0000, 0x1000, "the IOAPIC");
    root.exclude_range(0xfee0_0000, 0x1000, "the local APIC");
    // Other tests log refusals for 00:01.0; this function is 00:04.0, so its count is its own.
    for _ in 0..3 {
        root.reserve_slot().unwrap();
    }
    let bdf = root.reserve_slot().unwrap();
    let function = TestFunction::new(0xc000_0000);
    root.add_device(bdf, Arc::new(Mutex::new(function)))
        .unwrap();
    root.config_write_bytes(bdf, COMMAND, &[MEMORY_SPACE]);
    let decodes = |address: u64| bus.read(address, &mut [0u8; 4]);
    assert!(decodes(0xc000_0000));

    // A guest hammering the same bad placement.
    for _ in 0..1000 {
        for target in [
            0xfee0_0000u32,
            0xfec0_0000,
            0xe000_0000,
            0xe7ff_f000,
            0x10_0000,
            0,
        ] {
            root.config_write_bytes(bdf, BAR0, &target.to_le_bytes());
            assert!(!decodes(u64::from(target)), "BAR shadows {target:#x}");
            assert!(!decodes(0xc000_0000));
        }
    }
    let refusals = warnings_containing(&format!("{bdf}: BAR 0 cannot decode"));
    assert_eq!(refusals, 1, "a refused placement is said once");

    // A good address brings it back.
    root.config_write_bytes(bdf, BAR0, &0xc000_2000u32.to_le_bytes());
    assert!(decodes(0xc000_2000));
    // Just below RAM's end and the ECAM window's start are still taken; just past is fine.
    root.config_write_bytes(bdf, BAR0, &0x0fff_f000u32.to_le_bytes());
    assert!(!decodes(0x0fff_f000));
    root.config_write_bytes(bdf, BAR0, &0x1000_0000u32.to_le_bytes());
    assert!(decodes(0x1000_0000));
    root.config_write_bytes(bdf, BAR0, &0xdfff_f000u32.to_le_bytes());
    assert!(decodes(0xdfff_f000));
}
