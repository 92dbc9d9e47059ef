//! A small guest RAM with a hole in it, and a shadow copy the models write their expected
//! effects into; comparing the two after the real code ran shows every byte it wrote where
//! it should not have (or failed to write).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// RAM is `[0, LOW_END)` and `[HIGH_START, RAM_END)`: buffers that cross the hole or run
/// past the end are unreachable.
pub const LOW_END: u64 = 0x3_0000;
pub const HIGH_START: u64 = 0x3_8000;
pub const RAM_END: u64 = 0x4_0000;

pub fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), LOW_END as usize),
        (GuestAddress(HIGH_START), (RAM_END - HIGH_START) as usize),
    ])
    .expect("guest RAM")
}

/// Whether `[addr, addr + len)` lies in RAM (an empty range is reachable anywhere, as
/// vm-memory has it).
pub fn reachable(addr: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    (end <= LOW_END) || (addr >= HIGH_START && end <= RAM_END)
}

/// The guest's RAM as one flat array (the hole reads as zeros and is never compared).
#[derive(Clone, PartialEq, Eq)]
pub struct Shadow {
    pub bytes: Vec<u8>,
}

impl Shadow {
    pub fn of(ram: &GuestMemoryMmap) -> Self {
        let mut bytes = vec![0u8; RAM_END as usize];
        ram.read_slice(&mut bytes[..LOW_END as usize], GuestAddress(0))
            .expect("low RAM");
        ram.read_slice(&mut bytes[HIGH_START as usize..], GuestAddress(HIGH_START))
            .expect("high RAM");
        Self { bytes }
    }

    /// Reads `buf.len()` bytes at `addr`, which must be reachable.
    pub fn read(&self, addr: u64, buf: &mut [u8]) {
        let at = addr as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
    }

    pub fn write(&mut self, addr: u64, data: &[u8]) {
        let at = addr as usize;
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }

    /// Panics with the first differing address unless `actual` matches, ignoring `skip`.
    pub fn assert_matches(&self, actual: &Shadow, skip: &[(u64, u64)], what: &str) {
        if self.bytes == actual.bytes {
            return;
        }
        for (addr, (want, got)) in self.bytes.iter().zip(&actual.bytes).enumerate() {
            let addr = addr as u64;
            if want != got && !skip.iter().any(|&(s, l)| addr >= s && addr < s + l) {
                panic!("{what}: guest byte {addr:#x} is {got:#04x}, expected {want:#04x}");
            }
        }
    }
}

/// Writes `data` to the real RAM at a reachable `addr`.
pub fn poke(ram: &GuestMemoryMmap, addr: u64, data: &[u8]) {
    ram.write_slice(data, GuestAddress(addr))
        .expect("a reachable address");
}
