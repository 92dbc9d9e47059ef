//! QEMU's `edu` teaching device (PCI 1234:11e8): an identification register, an interrupt
//! status register, and a DMA engine that copies between memory (at an address its
//! requester sees, masked to 28 bits) and a 4 KiB buffer of its own at 0x40000, raising an
//! interrupt when asked. The engine runs one transfer at a time, about 100 ms after it is
//! started.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

use crate::clock::Deadline;
use crate::pci::{scan_bus, Bdf, COMMAND_BUS_MASTER, COMMAND_MEMORY};

pub const VENDOR: u16 = 0x1234;
pub const DEVICE: u16 = 0x11e8;
/// What the identification register reads: version 1.0, then 0xed.
pub const IDENTIFICATION: u32 = 0x0100_00ed;
/// Where the device's own buffer starts in its DMA address space, and its size.
pub const BUFFER: u64 = 0x40000;
pub const BUFFER_SIZE: u32 = 4096;
/// Addresses the engine uses keep only these bits.
pub const DMA_MASK: u64 = (1 << 28) - 1;
/// The interrupt status bit of a finished transfer.
pub const DMA_DONE: u32 = 0x100;

const REG_IDENTIFICATION: u64 = 0x00;
const REG_INTERRUPT_STATUS: u64 = 0x24;
const REG_INTERRUPT_ACK: u64 = 0x64;
const REG_DMA_SOURCE: u64 = 0x80;
const REG_DMA_DESTINATION: u64 = 0x88;
const REG_DMA_COUNT: u64 = 0x90;
const REG_DMA_COMMAND: u64 = 0x98;
const DMA_START: u32 = 1 << 0;
/// Set: from the device's buffer to memory; clear: from memory to the buffer.
const DMA_TO_MEMORY: u32 = 1 << 1;
const DMA_INTERRUPT: u32 = 1 << 2;

/// Which way a transfer copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Reads memory at the source address into the buffer.
    MemoryToBuffer,
    /// Writes the buffer to memory at the destination address.
    BufferToMemory,
}

/// The first edu function on bus 0.
pub fn find() -> Option<Bdf> {
    let mut found = None;
    scan_bus(0, |f| {
        if found.is_none() && f.vendor == VENDOR && f.device == DEVICE {
            found = Some(f.bdf);
        }
    });
    found
}

pub struct Edu {
    /// BAR 0, guest-physical (identity mapped, uncached).
    registers: u64,
}

impl Edu {
    /// Enables memory decoding and bus mastering; `None` when BAR 0 is not placed.
    pub fn open(bdf: Bdf) -> Option<Edu> {
        bdf.enable_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
        let registers = bdf.bar_address(0);
        (registers != 0).then_some(Edu { registers })
    }

    fn read32(&self, reg: u64) -> u32 {
        // SAFETY: BAR 0 is this device's register page, mapped uncached.
        unsafe { read_volatile((self.registers + reg) as *const u32) }
    }

    fn write32(&self, reg: u64, value: u32) {
        // SAFETY: as above.
        unsafe { write_volatile((self.registers + reg) as *mut u32, value) }
    }

    fn write64(&self, reg: u64, value: u64) {
        // SAFETY: as above; the DMA registers take 8-byte accesses.
        unsafe { write_volatile((self.registers + reg) as *mut u64, value) }
    }

    pub fn identification(&self) -> u32 {
        self.read32(REG_IDENTIFICATION)
    }

    pub fn interrupt_status(&self) -> u32 {
        self.read32(REG_INTERRUPT_STATUS)
    }

    pub fn acknowledge(&self, bits: u32) {
        self.write32(REG_INTERRUPT_ACK, bits);
    }

    /// Starts copying `count` bytes between `address` (as the device's requests carry
    /// it) and `buffer_offset` in its buffer, with an interrupt when done. The device
    /// ignores the request while a transfer runs. A range outside the buffer is refused
    /// here: QEMU's model ends the whole emulator on one, and (QEMU 7.2) on one that
    /// ends exactly at the buffer's end too.
    pub fn start_dma(
        &self,
        direction: Direction,
        address: u64,
        buffer_offset: u32,
        count: u32,
    ) -> Result<(), &'static str> {
        if count == 0
            || buffer_offset
                .checked_add(count)
                .is_none_or(|end| end >= BUFFER_SIZE)
        {
            return Err("transfer outside the device buffer");
        }
        let on_device = BUFFER + u64::from(buffer_offset);
        let (source, destination, command) = match direction {
            Direction::MemoryToBuffer => (address, on_device, DMA_START | DMA_INTERRUPT),
            Direction::BufferToMemory => (
                on_device,
                address,
                DMA_START | DMA_TO_MEMORY | DMA_INTERRUPT,
            ),
        };
        // What the CPU wrote to the source is in memory before the device reads it.
        fence(Ordering::SeqCst);
        self.write64(REG_DMA_SOURCE, source);
        self.write64(REG_DMA_DESTINATION, destination);
        self.write64(REG_DMA_COUNT, u64::from(count));
        self.write32(REG_DMA_COMMAND, command);
        Ok(())
    }

    pub fn dma_running(&self) -> bool {
        self.read32(REG_DMA_COMMAND) & DMA_START != 0
    }

    /// Waits up to `ms` for the running transfer to end; false if it did not.
    pub fn wait_dma(&self, ms: u64) -> bool {
        let deadline = Deadline::after_ms(ms);
        while self.dma_running() {
            if deadline.passed() {
                return false;
            }
            core::hint::spin_loop();
        }
        // The CPU reads what the device wrote only after seeing it finished.
        fence(Ordering::SeqCst);
        true
    }
}
