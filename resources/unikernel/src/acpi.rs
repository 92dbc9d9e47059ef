//! Just enough ACPI: RSDP -> XSDT (or RSDT) -> MADT for the CPUs, FADT for the sleep port
//! and the DSDT.

/// Most CPUs the MADT walk records.
pub const MAX_CPUS: usize = 64;

const HEADER_LEN: usize = 36;
/// Sanity bound on a table's length field.
const MAX_TABLE_LEN: usize = 1 << 20;

/// Bytes summing to zero, as every ACPI structure's checksum requires.
fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// # Safety
/// `paddr` must be identity mapped and readable for `len` bytes.
unsafe fn phys_bytes(paddr: u64, len: usize) -> &'static [u8] {
    core::slice::from_raw_parts(paddr as *const u8, len)
}

/// The system description table at `paddr`, if its length and checksum are sane.
fn table_at(paddr: u64) -> Option<&'static [u8]> {
    if paddr == 0 || paddr >= 1 << 32 {
        return None;
    }
    // SAFETY: ACPI tables lie in identity-mapped memory below 4 GiB (checked above).
    let header = unsafe { phys_bytes(paddr, HEADER_LEN) };
    let len = read_u32(header, 4) as usize;
    if !(HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return None;
    }
    // SAFETY: as above, for the length the header claims (bounded).
    let table = unsafe { phys_bytes(paddr, len) };
    checksum_ok(table).then_some(table)
}

/// Where to look for the RSDP when the start info gives none: the BIOS area.
const RSDP_SEARCH: core::ops::Range<u64> = 0xe0000..0x100000;

fn rsdp_valid(paddr: u64) -> bool {
    // SAFETY: callers pass identity-mapped low memory.
    let rsdp = unsafe { phys_bytes(paddr, 20) };
    &rsdp[..8] == b"RSD PTR " && checksum_ok(rsdp)
}

/// The root table: the XSDT (8-byte entries) or, for ACPI 1.0, the RSDT (4-byte entries).
#[derive(Clone, Copy)]
pub struct Acpi {
    root: &'static [u8],
    entry_size: usize,
}

impl Acpi {
    /// Finds the tables from the RSDP address the start info gave (or a BIOS-area scan).
    pub fn locate(rsdp_paddr: u64) -> Option<Acpi> {
        let rsdp_paddr = if rsdp_paddr != 0 {
            rsdp_paddr
        } else {
            RSDP_SEARCH.step_by(16).find(|&p| rsdp_valid(p))?
        };
        if rsdp_paddr >= 1 << 32 || !rsdp_valid(rsdp_paddr) {
            return None;
        }
        // SAFETY: a valid RSDP; revision 2 makes it 36 bytes.
        let rsdp = unsafe { phys_bytes(rsdp_paddr, 36) };
        if rsdp[15] >= 2 && checksum_ok(rsdp) {
            if let Some(root) = table_at(read_u64(rsdp, 24)).filter(|t| &t[..4] == b"XSDT") {
                return Some(Acpi {
                    root,
                    entry_size: 8,
                });
            }
        }
        let root = table_at(read_u32(rsdp, 16) as u64).filter(|t| &t[..4] == b"RSDT")?;
        Some(Acpi {
            root,
            entry_size: 4,
        })
    }

    /// The first table with this signature whose checksum holds.
    pub fn table(&self, signature: &[u8; 4]) -> Option<&'static [u8]> {
        self.root[HEADER_LEN..]
            .chunks_exact(self.entry_size)
            .map(|entry| match self.entry_size {
                8 => read_u64(entry, 0),
                _ => read_u32(entry, 0) as u64,
            })
            .filter_map(table_at)
            .find(|t| &t[..4] == signature)
    }

    /// The enabled processors in the MADT.
    pub fn cpus(&self) -> Option<CpuList> {
        let madt = self.table(b"APIC")?;
        let mut cpus = CpuList::new();
        let mut at = HEADER_LEN + 8;
        while at + 2 <= madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            if len < 2 || at + len > madt.len() {
                break;
            }
            let entry = &madt[at..at + len];
            match kind {
                // Processor local APIC: uid, APIC id, flags (bit 0: enabled).
                0 if len >= 8 && read_u32(entry, 4) & 1 != 0 => cpus.push(entry[3] as u32),
                // Processor local x2APIC: x2APIC id, flags.
                9 if len >= 16 && read_u32(entry, 8) & 1 != 0 => cpus.push(read_u32(entry, 4)),
                _ => {}
            }
            at += len;
        }
        Some(cpus)
    }

    /// The DSDT's AML (after its header), from the FADT's X_DSDT or else its DSDT field.
    pub fn dsdt_aml(&self) -> Option<&'static [u8]> {
        const DSDT: usize = 40;
        const X_DSDT: usize = 140;
        let fadt = self.table(b"FACP")?;
        let x_dsdt = fadt.get(X_DSDT..X_DSDT + 8).map(|f| read_u64(f, 0));
        let address = match x_dsdt {
            Some(address) if address != 0 => address,
            _ => read_u32(fadt.get(DSDT..DSDT + 4)?, 0) as u64,
        };
        let dsdt = table_at(address).filter(|t| &t[..4] == b"DSDT")?;
        Some(&dsdt[HEADER_LEN..])
    }

    /// The FADT's X_SLEEP_CONTROL_REG when it is a system I/O port.
    pub fn sleep_control_port(&self) -> Option<u16> {
        const X_SLEEP_CONTROL_REG: usize = 244;
        const SYSTEM_IO: u8 = 1;
        let fadt = self.table(b"FACP")?;
        let gas = fadt.get(X_SLEEP_CONTROL_REG..X_SLEEP_CONTROL_REG + 12)?;
        let address = read_u64(gas, 4);
        (gas[0] == SYSTEM_IO && address != 0 && address <= 0xffff).then_some(address as u16)
    }
}

/// APIC ids of the enabled CPUs, in MADT order.
pub struct CpuList {
    ids: [u32; MAX_CPUS],
    count: usize,
    /// Enabled entries past MAX_CPUS, counted but not recorded.
    overflow: usize,
}

impl CpuList {
    fn new() -> Self {
        CpuList {
            ids: [0; MAX_CPUS],
            count: 0,
            overflow: 0,
        }
    }

    fn push(&mut self, apic_id: u32) {
        if self.count < MAX_CPUS {
            self.ids[self.count] = apic_id;
            self.count += 1;
        } else {
            self.overflow += 1;
        }
    }

    /// Every enabled CPU the MADT lists.
    pub fn total(&self) -> usize {
        self.count + self.overflow
    }

    pub fn apic_ids(&self) -> &[u32] {
        &self.ids[..self.count]
    }
}
