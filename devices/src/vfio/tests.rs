//! The passthrough function against a fake device: what reaches the device, and what the
//! guest reads back.

use std::sync::{Arc, Mutex};

use super::device_io::RegionInfo;
use super::function::VfioPciFunction;
use super::testing::{
    fake_host_address, region_byte, CallLog, DeviceCall, FakeGroup, FakeInterrupts, FakeSlots,
    FakeVfioDevice,
};
use crate::bus::Bus;
use crate::interrupt::MsiMessage;
use crate::pci::{BarMove, PciBar, PciDevice, PciRoot, CONFIG_SPACE_SIZE};

const BAR0_SIZE: u64 = 0x10_0000;
const BAR2_SIZE: u64 = 0x4000;
const MSIX_VECTORS: u16 = 4;

/// A function with a 32-bit BAR 0, a 64-bit prefetchable BAR 2 holding the MSI-X table (at
/// 0) and PBA (at 0x1000), an I/O BAR 4, and PM (0x40) -> MSI (0x48) -> MSI-X (0x60) ->
/// vendor (0x70) capabilities.
fn fake_device(calls: CallLog) -> FakeVfioDevice {
    let mut c = [0u8; CONFIG_SPACE_SIZE];
    c[0..4].copy_from_slice(&0x11e8_1234u32.to_le_bytes());
    c[4..8].copy_from_slice(&0x0010_0000u32.to_le_bytes());
    c[8..12].copy_from_slice(&0x00ff_0010u32.to_le_bytes());
    c[0x18] = 0x0c;
    c[0x20] = 0x01;
    c[0x34] = 0x40;
    c[0x3d] = 1;
    for (at, id, next) in [(0x40, 0x01, 0x48), (0x48, 0x05, 0x60), (0x60, 0x11, 0x70)] {
        c[at] = id;
        c[at + 1] = next;
    }
    c[0x70] = 0x09;
    // MSI: 64-bit, per-vector masking, 4 vectors capable.
    c[0x4a] = 0x84;
    c[0x4b] = 0x01;
    c[0x62..0x64].copy_from_slice(&(MSIX_VECTORS - 1).to_le_bytes());
    c[0x64..0x68].copy_from_slice(&2u32.to_le_bytes());
    c[0x68..0x6c].copy_from_slice(&0x1002u32.to_le_bytes());
    let mut device = FakeVfioDevice::new(c, calls);
    for (bar, size) in [(0, BAR0_SIZE), (2, BAR2_SIZE), (4, 0x20)] {
        device.regions[bar] = RegionInfo {
            size,
            readable: true,
            writable: true,
            mappable: bar != 4,
        };
    }
    device.msix_vectors = u32::from(MSIX_VECTORS);
    device.msi_vectors = 4;
    device
}

struct Rig {
    function: VfioPciFunction,
    calls: CallLog,
    interrupts: FakeInterrupts,
    slots: Arc<FakeSlots>,
}

impl Rig {
    fn new() -> Self {
        Self::with_device(|_| {})
    }

    /// Without host MSI-X vectors the guest gets MSI instead.
    fn with_host_msix(host_msix: bool) -> Self {
        Self::with_device(|device| {
            if !host_msix {
                device.msix_vectors = 0;
            }
        })
    }

    /// The standard fake device, changed by `adjust`.
    fn with_device(adjust: impl FnOnce(&mut FakeVfioDevice)) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let interrupts = FakeInterrupts::default();
        let slots = Arc::new(FakeSlots::default());
        let mut next = 0xc000_0000u64;
        let mut place = |_bar: usize, size: u64| {
            let address = next.next_multiple_of(size);
            next = address + size;
            Ok(address)
        };
        let mut device = fake_device(calls.clone());
        adjust(&mut device);
        let function = VfioPciFunction::new(
            Box::new(device),
            &interrupts,
            Some(slots.clone()),
            &mut place,
        )
        .unwrap();
        Self {
            function,
            calls,
            interrupts,
            slots,
        }
    }

    fn take_calls(&self) -> Vec<DeviceCall> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn write32(&mut self, offset: usize, value: u32) -> Option<BarMove> {
        self.function
            .write_config_register(offset / 4, 0, &value.to_le_bytes())
    }

    fn read32(&mut self, offset: usize) -> u32 {
        self.function.read_config_register(offset / 4)
    }

    fn routes(&self) -> Vec<Option<MsiMessage>> {
        self.group().routes()
    }

    fn group(&self) -> Arc<FakeGroup> {
        self.interrupts.last_group().unwrap()
    }

    fn pba(&mut self) -> u64 {
        let mut pba = [0u8; 8];
        self.function.read_bar(2, 0x1000, &mut pba);
        u64::from_le_bytes(pba)
    }
}

#[test]
fn start_resets_the_device_and_turns_decoding_off() {
    let rig = Rig::new();
    assert_eq!(
        rig.take_calls(),
        [
            DeviceCall::Reset,
            DeviceCall::ConfigWrite(4, 0x0400u16.to_le_bytes().to_vec()),
            // BAR 2 without the pages of the MSI-X table (page 0) and PBA (page 1).
            DeviceCall::Mmap(0, 0, BAR0_SIZE),
            DeviceCall::Mmap(2, 0x2000, 0x2000),
        ]
    );
    assert_eq!(rig.slots.live(), []);
    assert_eq!(
        rig.function.bars(),
        [
            PciBar {
                index: 0,
                address: 0xc000_0000,
                size: BAR0_SIZE
            },
            PciBar {
                index: 2,
                address: 0xc010_0000,
                size: BAR2_SIZE
            },
        ]
    );
}

#[test]
fn bar_sizing_reads_the_size_mask_and_never_reaches_the_device() {
    let mut rig = Rig::new();
    rig.take_calls();
    assert_eq!(rig.read32(0x10), 0xc000_0000);
    rig.write32(0x10, u32::MAX);
    assert_eq!(rig.read32(0x10), !(BAR0_SIZE as u32 - 1));
    rig.write32(0x18, u32::MAX);
    rig.write32(0x1c, u32::MAX);
    assert_eq!(rig.read32(0x18), !(BAR2_SIZE as u32 - 1) | 0xc);
    assert_eq!(rig.read32(0x1c), u32::MAX);
    // The I/O BAR, the unused BARs and the expansion ROM are absent.
    rig.write32(0x20, u32::MAX);
    rig.write32(0x30, u32::MAX);
    assert_eq!(rig.read32(0x20), 0);
    assert_eq!(rig.read32(0x24), 0);
    assert_eq!(rig.read32(0x30), 0);
    assert_eq!(rig.take_calls(), []);
}

#[test]
fn bar_relocation_is_kept_in_nestor() {
    let mut rig = Rig::new();
    rig.take_calls();
    let moved = rig.write32(0x10, 0xd000_0000).unwrap();
    assert_eq!(
        (moved.bar, moved.old, moved.new),
        (0, 0xc000_0000, 0xd000_0000)
    );
    rig.write32(0x1c, 0x1);
    assert_eq!(rig.function.bars()[1].address, 0x1_c010_0000);
    assert_eq!(rig.function.bars()[0].address, 0xd000_0000);
    assert_eq!(rig.take_calls(), []);
}

#[test]
fn command_register_forwards_decoding_and_bus_master_only() {
    let mut rig = Rig::new();
    rig.take_calls();
    rig.function.write_config_register(1, 0, &[0x06]);
    assert_eq!(
        rig.take_calls(),
        [DeviceCall::ConfigWrite(4, 0x0406u16.to_le_bytes().to_vec())]
    );
    assert_eq!(rig.read32(0x04) & 0xffff, 0x0006);
    // Every bit set: the device still gets only its three bits and INTx disabled; the
    // status half is the device's, with the capability list bit nestor's.
    rig.write32(0x04, u32::MAX);
    assert_eq!(
        rig.take_calls(),
        [DeviceCall::ConfigWrite(4, 0x0407u16.to_le_bytes().to_vec())]
    );
    assert_eq!(rig.read32(0x04), 0x0010_0407);
    // A status-only write never reaches the device.
    rig.function.write_config_register(1, 2, &[0xff, 0xff]);
    assert_eq!(rig.take_calls(), []);
}

#[test]
fn garbage_in_capability_pointers_changes_nothing() {
    let mut rig = Rig::new();
    rig.take_calls();
    // With MSI-X usable, MSI is left out of the chain: PM points straight at MSI-X.
    assert_eq!(rig.read32(0x34), 0x40);
    assert_eq!(rig.read32(0x40) & 0xffff, 0x6001);
    rig.write32(0x34, 0xffff_ffff);
    rig.function.write_config_register(0x40 / 4, 1, &[0x99]);
    rig.function
        .write_config_register(0x60 / 4, 0, &[0xee, 0x44]);
    rig.function.write_config_register(0x70 / 4, 0, &[0x00]);
    rig.function
        .write_config_register(0x48 / 4, 0, &[0x05, 0x00, 0x01, 0x00]);
    assert_eq!(rig.take_calls(), []);
    assert_eq!(rig.read32(0x34), 0x40);
    assert_eq!(rig.read32(0x40) & 0xffff, 0x6001);
    assert_eq!(rig.read32(0x60) & 0xffff, 0x7011);
    assert_eq!(rig.read32(0x70) & 0xffff, 0x0009);
    // The body of an exposed capability is the device's.
    rig.function
        .write_config_register(0x44 / 4, 0, &[0x03, 0x80]);
    assert_eq!(
        rig.take_calls(),
        [DeviceCall::ConfigWrite(0x44, vec![0x03, 0x80])]
    );
    // Past the PCI header: nothing, and the interrupt pin says no INTx.
    assert_eq!(rig.function.read_config_register(64), 0);
    assert_eq!(rig.read32(0x3c) >> 8, 0);
}

#[test]
fn msix_enable_reaches_the_host_and_masks_gate_the_routes() {
    let mut rig = Rig::new();
    rig.take_calls();
    let message = MsiMessage {
        address: 0xfee0_0000,
        data: 0x41,
    };
    rig.function.write_bar(2, 0, &message.address.to_le_bytes());
    rig.function.write_bar(2, 8, &message.data.to_le_bytes());
    assert_eq!(rig.take_calls(), []);
    // Enabled with the function masked: the host gets every vector, the guest none.
    rig.function.write_config_register(0x60 / 4, 3, &[0xc0]);
    assert_eq!(rig.take_calls(), [DeviceCall::EnableMsix(4)]);
    assert_eq!(rig.read32(0x60) >> 16, 0xc003);
    rig.function.write_bar(2, 12, &0u32.to_le_bytes());
    let group = rig.group();
    group.raise(0);
    assert_eq!(*group.delivered.lock().unwrap(), []);
    rig.function.write_config_register(0x60 / 4, 3, &[0x80]);
    assert_eq!(rig.routes()[0], Some(message));
    // The others are still masked: held, whatever they point at.
    assert_eq!(*group.held.lock().unwrap(), [false, true, true, true]);
    // What came while the function was masked arrives on unmasking.
    assert_eq!(*group.delivered.lock().unwrap(), [(0, Some(message))]);
    let mut entry = [0u8; 8];
    rig.function.read_bar(2, 8, &mut entry);
    assert_eq!(entry, [0x41, 0, 0, 0, 0, 0, 0, 0]);
    // Disabling reaches the host and takes the routes away.
    rig.function
        .write_config_register(0x60 / 4, 2, &[0x00, 0x00]);
    assert_eq!(rig.take_calls(), [DeviceCall::DisableMsix]);
    assert_eq!(rig.routes()[0], None);
    assert_eq!(rig.read32(0x60) >> 16, 0x0003);
}

#[test]
fn a_masked_vector_is_left_pending_and_delivered_where_it_points_when_unmasked() {
    let mut rig = Rig::new();
    let first = MsiMessage {
        address: 0xfee0_0000,
        data: 0x41,
    };
    let moved = MsiMessage {
        address: 0xfee0_1000,
        data: 0x42,
    };
    rig.function.write_bar(2, 0, &first.address.to_le_bytes());
    rig.function.write_bar(2, 8, &first.data.to_le_bytes());
    rig.function.write_bar(2, 12, &0u32.to_le_bytes());
    rig.function.write_config_register(0x60 / 4, 3, &[0x80]);
    let group = rig.group();
    group.raise(0);
    assert_eq!(*group.delivered.lock().unwrap(), [(0, Some(first))]);
    assert_eq!(rig.pba(), 0);

    // Masked: held, pending in the PBA, and the guest may move it meanwhile.
    rig.function.write_bar(2, 12, &1u32.to_le_bytes());
    group.raise(0);
    assert_eq!(group.delivered.lock().unwrap().len(), 1);
    assert_eq!(rig.pba(), 1);
    rig.function.write_bar(2, 0, &moved.address.to_le_bytes());
    rig.function.write_bar(2, 8, &moved.data.to_le_bytes());
    // The PBA is read-only and nestor's: a write changes nothing and reaches nothing.
    rig.take_calls();
    rig.function.write_bar(2, 0x1000, &0u64.to_le_bytes());
    assert_eq!(rig.take_calls(), []);
    assert_eq!(rig.pba(), 1);

    rig.function.write_bar(2, 12, &0u32.to_le_bytes());
    assert_eq!(
        *group.delivered.lock().unwrap(),
        [(0, Some(first)), (0, Some(moved))]
    );
    assert_eq!(rig.pba(), 0);
    // A reset drops the hold too.
    rig.function.write_bar(2, 12, &1u32.to_le_bytes());
    rig.function.write_config_register(0x60 / 4, 3, &[0x00]);
    assert!(!group.held.lock().unwrap()[0]);
}

#[test]
fn bar_accesses_outside_the_msix_table_reach_the_device() {
    let mut rig = Rig::new();
    rig.take_calls();
    let mut data = [0u8; 4];
    rig.function.read_bar(0, 0x10, &mut data);
    assert_eq!(data, [0x10, 0x11, 0x12, 0x13].map(|at| region_byte(0, at)));
    rig.function.write_bar(0, 4, &[1, 2, 3, 4]);
    // Past the PBA (one qword for four vectors) is the device's again.
    rig.function.read_bar(2, 0x1008, &mut data);
    assert_eq!(
        rig.take_calls(),
        [
            DeviceCall::RegionRead(0, 0x10, 4),
            DeviceCall::RegionWrite(0, 4, vec![1, 2, 3, 4]),
            DeviceCall::RegionRead(2, 0x1008, 4),
        ]
    );
    let counts = rig.function.counters().snapshot();
    assert_eq!((counts.requests, counts.errors), (3, 0));
    assert_eq!((counts.read_bytes, counts.written_bytes), (8, 4));
    // The MSI-X table is nestor's: not forwarded, not counted.
    rig.function.read_bar(2, 0, &mut data);
    assert_eq!(rig.function.counters().snapshot().requests, 3);
}

#[test]
fn mapped_bars_follow_decoding_and_moves_on_the_bus() {
    let rig = Rig::new();
    let slots = rig.slots.clone();
    let bus = Arc::new(Bus::new());
    let mut root = PciRoot::new(bus.clone(), None);
    let bdf = root.reserve_slot().unwrap();
    root.add_device(bdf, Arc::new(Mutex::new(rig.function)))
        .unwrap();
    assert_eq!(slots.live(), []);

    root.config_write(bdf, 1, 0, &[0x02]);
    let bar0 = (0xc000_0000, fake_host_address(0, 0), BAR0_SIZE);
    let bar2 = (0xc010_2000, fake_host_address(2, 0x2000), 0x2000);
    assert_eq!(slots.live(), [bar0, bar2]);
    // The MSI-X table's page has no slot: it traps, and nestor answers.
    let mut entry = [0u8; 4];
    assert!(bus.read(0xc010_000c, &mut entry));
    assert_eq!(u32::from_le_bytes(entry), 1);

    root.config_write(bdf, 4, 0, &0xd000_0000u32.to_le_bytes());
    assert_eq!(slots.live(), [bar2, (0xd000_0000, bar0.1, bar0.2)]);

    // Sizing with decoding off, as drivers do: no slot anywhere meanwhile.
    root.config_write(bdf, 1, 0, &[0x00]);
    assert_eq!(slots.live(), []);
    root.config_write(bdf, 4, 0, &u32::MAX.to_le_bytes());
    root.config_write(bdf, 4, 0, &0xd000_0000u32.to_le_bytes());
    assert_eq!(slots.live(), []);
    root.config_write(bdf, 1, 0, &[0x02]);
    assert_eq!(slots.live(), [bar2, (0xd000_0000, bar0.1, bar0.2)]);
}

#[test]
fn msi_is_emulated_when_the_host_has_no_msix_vectors() {
    let mut rig = Rig::with_host_msix(false);
    rig.take_calls();
    // The chain now skips MSI-X: PM -> MSI -> vendor.
    assert_eq!(rig.read32(0x40) & 0xffff, 0x4801);
    assert_eq!(rig.read32(0x48), 0x0184_7005);
    rig.write32(0x4c, 0xfee0_1000);
    rig.write32(0x50, 0);
    rig.write32(0x54, 0x4020);
    // Read-only control bits stay: only per-vector masking in the upper byte.
    rig.function.write_config_register(0x48 / 4, 3, &[0xfe]);
    assert_eq!(rig.read32(0x48) >> 16, 0x0184);
    assert_eq!(rig.take_calls(), []);

    // Enable with four vectors: the host gets four eventfds, each vector its data.
    rig.function.write_config_register(0x48 / 4, 2, &[0x21]);
    assert_eq!(rig.take_calls(), [DeviceCall::EnableMsi(4)]);
    let message = |data| {
        Some(MsiMessage {
            address: 0xfee0_1000,
            data,
        })
    };
    assert_eq!(
        rig.routes(),
        [
            message(0x4020),
            message(0x4021),
            message(0x4022),
            message(0x4023)
        ]
    );
    // Masking vector 1 takes its route away; nothing reaches the device.
    rig.write32(0x58, 0x2);
    assert_eq!(rig.routes()[1], None);
    assert_eq!(rig.read32(0x58), 0x2);
    assert_eq!(rig.take_calls(), []);
    // One vector only, then off.
    rig.function.write_config_register(0x48 / 4, 2, &[0x01]);
    assert_eq!(
        rig.take_calls(),
        [DeviceCall::DisableMsi, DeviceCall::EnableMsi(1)]
    );
    assert_eq!(rig.routes(), [message(0x4020), None, None, None]);
    rig.function.write_config_register(0x48 / 4, 2, &[0x00]);
    assert_eq!(rig.take_calls(), [DeviceCall::DisableMsi]);
    assert_eq!(rig.routes(), [None, None, None, None]);
}

#[test]
fn msix_table_size_is_the_vectors_the_host_gives() {
    // The device's table has four entries; the host lets it use two.
    let mut rig = Rig::with_device(|device| device.msix_vectors = 2);
    rig.take_calls();
    assert_eq!(rig.read32(0x60) >> 16, 0x0001);
    rig.function.write_config_register(0x60 / 4, 3, &[0x80]);
    assert_eq!(rig.take_calls(), [DeviceCall::EnableMsix(2)]);
    assert_eq!(rig.read32(0x60) >> 16, 0x8001);
    // Entries past the second are not nestor's table.
    rig.function
        .write_bar(2, 0x20, &0xfee0_0000u32.to_le_bytes());
    assert_eq!(
        rig.take_calls(),
        [DeviceCall::RegionWrite(
            2,
            0x20,
            0xfee0_0000u32.to_le_bytes().to_vec()
        )]
    );
}

#[test]
fn an_msix_capability_cut_short_by_the_end_of_config_space_is_left_out() {
    // PM -> MSI -> MSI-X at 0xf8, whose table and PBA dwords would lie past 0x100.
    let mut rig = Rig::with_device(|device| {
        let config = device.config.get_mut().unwrap();
        config[0x49] = 0xf8;
        config[0xf8] = 0x11;
        config[0xf9] = 0x00;
    });
    rig.take_calls();
    // The guest gets MSI instead, at the end of the chain.
    assert_eq!(rig.read32(0x40) & 0xffff, 0x4801);
    assert_eq!(rig.read32(0x48) & 0xffff, 0x0005);
    assert_eq!(rig.read32(0x34), 0x40);
    rig.function.write_config_register(0x48 / 4, 2, &[0x01]);
    assert_eq!(rig.take_calls(), [DeviceCall::EnableMsi(1)]);
}
