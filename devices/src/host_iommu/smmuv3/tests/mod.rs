//! The model against tables built by hand: descriptors are encoded here from their fields
//! (never with the model's decoders), and every expected address, size and event follows
//! from the architecture's rules applied to those tables.

mod config_events;
mod encode;
mod hostile;
mod nested_backend;
mod stalls_and_queues;
mod tlb_commands;
mod walks;

use std::cell::Cell;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{Access, Fault, Smmuv3, Smmuv3Caps, StreamTableConfig, StreamTableFormat};
use super::{Transaction, Translation};
use encode::{CdFields, SteFields};

pub const RAM_SIZE: u64 = 64 << 20;
/// Tables are allocated from here up; data addresses tests translate to stay below.
const TABLES_START: u64 = 16 << 20;

pub struct Rig {
    pub smmu: Smmuv3<GuestMemoryMmap>,
    pub mem: GuestMemoryMmap,
    next: Cell<u64>,
}

impl Rig {
    pub fn new() -> Self {
        Self::with_caps(Smmuv3Caps::default())
    }

    pub fn with_caps(caps: Smmuv3Caps) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE as usize)]).unwrap();
        Self {
            smmu: Smmuv3::new(mem.clone(), caps).unwrap(),
            mem,
            next: Cell::new(TABLES_START),
        }
    }

    /// `size` zeroed bytes aligned to `size` (a power of two).
    pub fn alloc(&self, size: u64) -> u64 {
        let addr = self.next.get().next_multiple_of(size);
        self.next.set(addr + size);
        assert!(addr + size <= RAM_SIZE, "test RAM exhausted");
        addr
    }

    pub fn page(&self) -> u64 {
        self.alloc(0x1000)
    }

    pub fn write(&self, addr: u64, value: u64) {
        self.mem
            .write_obj(value.to_le(), GuestAddress(addr))
            .unwrap();
    }

    pub fn write_all(&self, addr: u64, dwords: &[u64]) {
        for (i, d) in dwords.iter().enumerate() {
            self.write(addr + 8 * i as u64, *d);
        }
    }

    pub fn read_u32(&self, addr: u64) -> u32 {
        u32::from_le(self.mem.read_obj(GuestAddress(addr)).unwrap())
    }

    /// A linear stream table of 2^log2 STEs.
    pub fn linear_stream_table(&self, log2: u32) -> u64 {
        let base = self.alloc((64u64 << log2).max(0x1000));
        self.smmu.set_stream_table(Some(StreamTableConfig {
            base,
            log2_size: log2,
            format: StreamTableFormat::Linear,
        }));
        base
    }

    pub fn translate(
        &self,
        sid: u32,
        ssid: Option<u32>,
        address: u64,
        access: Access,
    ) -> Result<Translation, Fault> {
        self.smmu.translate(&Transaction {
            sid,
            ssid,
            address,
            access,
        })
    }

    /// The output address of an unprivileged read of `address` by stream `sid`.
    pub fn read(&self, sid: u32, address: u64) -> Result<u64, Fault> {
        self.translate(sid, None, address, Access::READ)
            .map(|t| t.output_of(address))
    }

    /// The event ID a read of `address` by `sid` faults with.
    pub fn read_fault(&self, sid: u32, address: u64) -> Option<u8> {
        self.read(sid, address)
            .expect_err("translation should fault")
            .event_id()
    }
}

/// A stream with one CD (`cd`, its TTB0 a new page unless given), STE at `sid` of a new
/// linear stream table of 16 entries.
pub struct Stream1 {
    pub ste_addr: u64,
    pub cd_addr: u64,
    pub root: u64,
}

pub fn stage1_stream(rig: &Rig, sid: u32, cd: CdFields) -> Stream1 {
    let table = rig.linear_stream_table(4);
    let root = if cd.ttb0 != 0 { cd.ttb0 } else { rig.page() };
    let cd_addr = rig.alloc(64);
    rig.write_all(cd_addr, &CdFields { ttb0: root, ..cd }.encode());
    let ste_addr = table + u64::from(sid) * 64;
    rig.write_all(ste_addr, &SteFields::stage1(cd_addr).encode());
    Stream1 {
        ste_addr,
        cd_addr,
        root,
    }
}
