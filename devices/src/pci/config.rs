//! A type-0 configuration space: registers, what the guest may write, BAR sizing, and the
//! capability list.
//!
//! Every register is a dword with a writable mask; a guest write changes only writable bits,
//! so read-only fields, BAR flag bits and BAR size bits hold whatever the guest writes.
//! Writing all-ones to a BAR therefore reads back the size mask, as PCI requires.
//!
//! A BAR's address is its registers' value and nothing else: after any write, of any width
//! to either half, it is what the guest reads back. Sizing is no exception (the BAR then
//! sits at the size mask), which is why drivers turn decoding off while they size.

use super::CONFIG_SPACE_SIZE;

const REGS: usize = CONFIG_SPACE_SIZE / 4;
pub const NUM_BARS: usize = 6;

const VENDOR_DEVICE_REG: usize = 0;
const COMMAND_STATUS_REG: usize = 1;
const CLASS_REVISION_REG: usize = 2;
const HEADER_REG: usize = 3;
const BAR0_REG: usize = 4;
const SUBSYSTEM_REG: usize = 11;
const CAPABILITY_POINTER_REG: usize = 13;
const INTERRUPT_REG: usize = 15;

/// Command register: I/O space, memory space, bus master, INTx disable.
const COMMAND_WRITABLE: u32 = 0x0407;
/// Command register bit: the function may master the bus (DMA, MSI writes).
const COMMAND_BUS_MASTER: u32 = 1 << 2;
/// Status register bit: the capability list is valid.
const STATUS_CAPABILITIES: u32 = 1 << 20;
/// Cache line size and latency timer.
const HEADER_WRITABLE: u32 = 0x0000_ffff;
const INTERRUPT_LINE_WRITABLE: u32 = 0x0000_00ff;

const FIRST_CAPABILITY: usize = 0x40;

const BAR_MEM_64BIT: u32 = 0x4;
const BAR_MEM_PREFETCHABLE: u32 = 0x8;
const BAR_MEM_FLAGS: u32 = 0xf;

/// What a memory BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarRegionKind {
    Memory32,
    /// Takes this BAR register and the next.
    Memory64,
}

/// The guest moved a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarMove {
    pub bar: usize,
    pub old: u64,
    pub new: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bar {
    size: u64,
    kind: BarRegionKind,
}

/// Identity of a function, as its header shows it.
#[derive(Debug, Clone, Copy)]
pub struct PciIdentity {
    pub vendor: u16,
    pub device: u16,
    /// Class code, subclass, programming interface: 0xCCSSPP.
    pub class: u32,
    pub revision: u8,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("BAR {0} does not exist or is taken")]
    BarUnavailable(usize),
    #[error("BAR size {0:#x} is not a power of two of at least 16 bytes")]
    BarSize(u64),
    #[error("BAR address {address:#x} is not aligned to its size {size:#x}")]
    BarAlignment { address: u64, size: u64 },
    #[error("no room for a {0}-byte capability")]
    CapabilitySpace(usize),
}

/// The configuration space of one function.
#[derive(Debug, Clone)]
pub struct PciConfiguration {
    regs: [u32; REGS],
    writable: [u32; REGS],
    bars: [Option<Bar>; NUM_BARS],
    /// Register index of the second dword of a 64-bit BAR -> its BAR index.
    upper_half_of: [Option<usize>; NUM_BARS],
    last_capability: Option<usize>,
    next_capability: usize,
}

fn bar_register(bar: usize) -> usize {
    BAR0_REG + bar
}

impl PciConfiguration {
    pub fn new(id: PciIdentity) -> Self {
        let mut regs = [0u32; REGS];
        let mut writable = [0u32; REGS];
        regs[VENDOR_DEVICE_REG] = u32::from(id.device) << 16 | u32::from(id.vendor);
        regs[CLASS_REVISION_REG] = (id.class & 0xff_ffff) << 8 | u32::from(id.revision);
        regs[SUBSYSTEM_REG] = u32::from(id.subsystem) << 16 | u32::from(id.subsystem_vendor);
        writable[COMMAND_STATUS_REG] = COMMAND_WRITABLE;
        writable[HEADER_REG] = HEADER_WRITABLE;
        writable[INTERRUPT_REG] = INTERRUPT_LINE_WRITABLE;
        Self {
            regs,
            writable,
            bars: [None; NUM_BARS],
            upper_half_of: [None; NUM_BARS],
            last_capability: None,
            next_capability: FIRST_CAPABILITY,
        }
    }

    /// Declares memory BAR `bar` of `size` bytes at `address`.
    pub fn add_memory_bar(
        &mut self,
        bar: usize,
        kind: BarRegionKind,
        size: u64,
        address: u64,
        prefetchable: bool,
    ) -> Result<(), ConfigError> {
        let regs_needed = if kind == BarRegionKind::Memory64 {
            2
        } else {
            1
        };
        let free =
            |b: usize| b < NUM_BARS && self.bars[b].is_none() && self.upper_half_of[b].is_none();
        if !(bar..bar + regs_needed).all(free) {
            return Err(ConfigError::BarUnavailable(bar));
        }
        let too_big = kind == BarRegionKind::Memory32 && size > 1 << 31;
        if !size.is_power_of_two() || size < 16 || too_big {
            return Err(ConfigError::BarSize(size));
        }
        if address & (size - 1) != 0
            || (kind == BarRegionKind::Memory32 && address > u64::from(u32::MAX))
        {
            return Err(ConfigError::BarAlignment { address, size });
        }
        let mut flags = if prefetchable {
            BAR_MEM_PREFETCHABLE
        } else {
            0
        };
        let mask = !(size - 1);
        let reg = bar_register(bar);
        if kind == BarRegionKind::Memory64 {
            flags |= BAR_MEM_64BIT;
            self.regs[reg + 1] = (address >> 32) as u32;
            self.writable[reg + 1] = (mask >> 32) as u32;
            self.upper_half_of[bar + 1] = Some(bar);
        }
        self.regs[reg] = address as u32 | flags;
        self.writable[reg] = mask as u32 & !BAR_MEM_FLAGS;
        self.bars[bar] = Some(Bar { size, kind });
        Ok(())
    }

    /// The programmed address and size of memory BAR `bar`.
    pub fn bar(&self, bar: usize) -> Option<(u64, u64)> {
        let b = self.bars.get(bar)?.as_ref()?;
        Some((self.bar_address(bar, b), b.size))
    }

    /// The address BAR `bar` holds: its register (and the next, for a 64-bit BAR) without the
    /// flag bits. The writable masks keep it aligned to the BAR's size.
    fn bar_address(&self, bar: usize, info: &Bar) -> u64 {
        let reg = bar_register(bar);
        let low = u64::from(self.regs[reg] & !BAR_MEM_FLAGS);
        let high = match info.kind {
            BarRegionKind::Memory64 => u64::from(self.regs[reg + 1]),
            BarRegionKind::Memory32 => 0,
        };
        high << 32 | low
    }

    /// Whether the guest set Bus Master Enable in the command register.
    pub fn bus_master_enabled(&self) -> bool {
        self.regs[COMMAND_STATUS_REG] & COMMAND_BUS_MASTER != 0
    }

    /// Appends a capability. `body` starts with the capability ID and a placeholder next
    /// pointer; `writable` (same length or shorter) marks the bits the guest may change.
    /// Returns the capability's offset.
    pub fn add_capability(&mut self, body: &[u8], writable: &[u8]) -> Result<usize, ConfigError> {
        let offset = self.next_capability;
        let len = body.len().next_multiple_of(4);
        if body.len() < 2 || offset + len > CONFIG_SPACE_SIZE {
            return Err(ConfigError::CapabilitySpace(body.len()));
        }
        for (i, &byte) in body.iter().enumerate() {
            self.set_byte(offset + i, byte, writable.get(i).copied().unwrap_or(0));
        }
        self.set_byte(offset + 1, 0, 0);
        match self.last_capability {
            Some(previous) => self.set_byte(previous + 1, offset as u8, 0),
            None => {
                self.regs[CAPABILITY_POINTER_REG] = offset as u32;
                self.regs[COMMAND_STATUS_REG] |= STATUS_CAPABILITIES;
            }
        }
        self.last_capability = Some(offset);
        self.next_capability = offset + len;
        Ok(offset)
    }

    fn set_byte(&mut self, offset: usize, value: u8, writable: u8) {
        let (reg, shift) = (offset / 4, (offset % 4) * 8);
        self.regs[reg] = self.regs[reg] & !(0xff << shift) | u32::from(value) << shift;
        self.writable[reg] = self.writable[reg] & !(0xff << shift) | u32::from(writable) << shift;
    }

    /// The dword at register index `reg` (zero past the standard header and capabilities).
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Sets a register from the device side, ignoring the guest-writable mask.
    pub fn set_reg(&mut self, reg: usize, value: u32) {
        if let Some(r) = self.regs.get_mut(reg) {
            *r = value;
        }
    }

    /// A guest write of `data` (1, 2 or 4 bytes) at byte `offset` within register `reg`.
    /// Returns the BAR move it causes, if any.
    pub fn write_reg(&mut self, reg: usize, offset: usize, data: &[u8]) -> Option<BarMove> {
        if reg >= REGS || data.is_empty() || offset + data.len() > 4 {
            return None;
        }
        let mut value = 0u32;
        let mut bytes = 0u32;
        for (i, &b) in data.iter().enumerate() {
            let shift = (offset + i) * 8;
            value |= u32::from(b) << shift;
            bytes |= 0xff << shift;
        }
        let bar = reg
            .checked_sub(BAR0_REG)
            .filter(|&b| b < NUM_BARS)
            .and_then(|b| self.upper_half_of[b].or(Some(b)))
            .filter(|&b| self.bars[b].is_some());
        let old = bar.and_then(|b| self.bar(b));
        let mask = self.writable[reg] & bytes;
        self.regs[reg] = self.regs[reg] & !mask | value & mask;
        let (bar, (old, _)) = (bar?, old?);
        let (new, _) = self.bar(bar)?;
        (new != old).then_some(BarMove { bar, old, new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PciConfiguration {
        PciConfiguration::new(PciIdentity {
            vendor: 0x1af4,
            device: 0x1042,
            class: 0x01_00_00,
            revision: 1,
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        })
    }

    fn write32(c: &mut PciConfiguration, reg: usize, v: u32) -> Option<BarMove> {
        c.write_reg(reg, 0, &v.to_le_bytes())
    }

    #[test]
    fn identity_registers_are_read_only() {
        let mut c = config();
        assert_eq!(c.read_reg(0), 0x1042_1af4);
        assert_eq!(c.read_reg(2), 0x0100_0001);
        write32(&mut c, 0, 0);
        write32(&mut c, 2, 0);
        assert_eq!(c.read_reg(0), 0x1042_1af4);
        assert_eq!(c.read_reg(2), 0x0100_0001);
    }

    #[test]
    fn command_register_keeps_only_defined_bits() {
        let mut c = config();
        assert!(!c.bus_master_enabled());
        write32(&mut c, 1, 0xffff_ffff);
        assert_eq!(c.read_reg(1) & 0xffff, 0x0407);
        // Status is read-only.
        assert_eq!(c.read_reg(1) >> 16, 0);
        assert!(c.bus_master_enabled());
        c.write_reg(1, 0, &[0x02]);
        assert_eq!(c.read_reg(1) & 0xffff, 0x0402);
        assert!(!c.bus_master_enabled());
    }

    #[test]
    fn bar32_sizing_reads_back_the_size_mask_and_restoring_moves_back() {
        let mut c = config();
        c.add_memory_bar(1, BarRegionKind::Memory32, 0x4000, 0xc000_4000, false)
            .unwrap();
        assert_eq!(c.read_reg(5), 0xc000_4000);
        let sized = write32(&mut c, 5, 0xffff_ffff).unwrap();
        assert_eq!((sized.old, sized.new), (0xc000_4000, 0xffff_c000));
        assert_eq!(c.read_reg(5), 0xffff_c000);
        let restored = write32(&mut c, 5, 0xc000_4000).unwrap();
        assert_eq!((restored.old, restored.new), (0xffff_c000, 0xc000_4000));
        assert_eq!(c.bar(1), Some((0xc000_4000, 0x4000)));
        assert_eq!(write32(&mut c, 5, 0xc000_4000), None);
        let moved = write32(&mut c, 5, 0xc001_0007).unwrap();
        assert_eq!(
            moved,
            BarMove {
                bar: 1,
                old: 0xc000_4000,
                new: 0xc001_0000
            }
        );
        assert_eq!(c.read_reg(5), 0xc001_0000);
    }

    #[test]
    fn bar64_sizing_and_move_through_both_halves() {
        let mut c = config();
        c.add_memory_bar(0, BarRegionKind::Memory64, 0x8000, 0xc000_0000, true)
            .unwrap();
        assert_eq!(c.read_reg(4), 0xc000_000c);
        assert_eq!(c.read_reg(5), 0);
        write32(&mut c, 4, 0xffff_ffff);
        write32(&mut c, 5, 0xffff_ffff);
        assert_eq!(c.read_reg(4), 0xffff_800c);
        assert_eq!(c.read_reg(5), 0xffff_ffff);
        assert_eq!(c.bar(0), Some((0xffff_ffff_ffff_8000, 0x8000)));
        write32(&mut c, 4, 0xc000_0000);
        write32(&mut c, 5, 0);
        assert_eq!(c.bar(0), Some((0xc000_0000, 0x8000)));
        let moved = write32(&mut c, 5, 0x1).unwrap();
        assert_eq!((moved.old, moved.new), (0xc000_0000, 0x1_c000_0000));
        assert!(c
            .add_memory_bar(1, BarRegionKind::Memory32, 0x1000, 0, false)
            .is_err());
    }

    #[test]
    fn sub_dword_bar_writes_move_to_the_merged_value() {
        let mut c = config();
        c.add_memory_bar(0, BarRegionKind::Memory64, 0x1000, 0x1_c000_0000, false)
            .unwrap();
        let moved = c.write_reg(4, 1, &[0x50]).unwrap();
        assert_eq!(moved.new, 0x1_c000_5000);
        let moved = c.write_reg(5, 0, &[0x02]).unwrap();
        assert_eq!(moved.new, 0x2_c000_5000);
        let moved = c.write_reg(4, 2, &[0x34, 0x12]).unwrap();
        assert_eq!(moved.new, 0x2_1234_5000);
        // Bits below the size stay zero whatever is written.
        assert_eq!(c.write_reg(4, 0, &[0xff]), None);
        assert_eq!(c.bar(0), Some((0x2_1234_5000, 0x1000)));
    }

    #[test]
    fn bar_validation() {
        let mut c = config();
        assert_eq!(
            c.add_memory_bar(0, BarRegionKind::Memory32, 0x3000, 0, false),
            Err(ConfigError::BarSize(0x3000))
        );
        assert!(c
            .add_memory_bar(0, BarRegionKind::Memory32, 0x1000, 0x800, false)
            .is_err());
        assert!(c
            .add_memory_bar(5, BarRegionKind::Memory64, 0x1000, 0, false)
            .is_err());
        assert!(c
            .add_memory_bar(6, BarRegionKind::Memory32, 0x1000, 0, false)
            .is_err());
    }

    #[test]
    fn capabilities_chain_and_honour_their_masks() {
        let mut c = config();
        let first = c
            .add_capability(&[0x11, 0, 0x03, 0x00], &[0, 0, 0, 0xc0])
            .unwrap();
        let second = c.add_capability(&[0x09, 0, 4, 0xaa, 0xbb], &[]).unwrap();
        assert_eq!(first, 0x40);
        assert_eq!(second, 0x44);
        assert_eq!(c.read_reg(13), 0x40);
        assert_ne!(c.read_reg(1) & STATUS_CAPABILITIES, 0);
        assert_eq!(c.read_reg(0x40 / 4), 0x0003_4411);
        assert_eq!(c.read_reg(0x48 / 4), 0xbb);
        write32(&mut c, 0x40 / 4, 0xffff_ffff);
        assert_eq!(c.read_reg(0x40 / 4), 0xc003_4411);
        write32(&mut c, 0x44 / 4, 0);
        assert_eq!(c.read_reg(0x44 / 4), 0xaa04_0009);
    }

    #[test]
    fn odd_writes_are_ignored() {
        let mut c = config();
        assert_eq!(c.write_reg(1, 3, &[1, 2]), None);
        assert_eq!(c.write_reg(200, 0, &[1]), None);
        assert_eq!(c.write_reg(1, 0, &[]), None);
        assert_eq!(c.read_reg(300), 0);
    }
}
