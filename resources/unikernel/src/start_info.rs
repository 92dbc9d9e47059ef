//! The PVH `hvm_start_info` the VMM leaves for us (its address arrives in ebx).

use unikernel::cmdline::Cmdline;
use unikernel::memmap::Region;

const MAGIC: u32 = 0x336e_c578;
/// The command line is at most this long (the VMM reserves 64 KiB for it).
const CMDLINE_MAX: usize = 64 * 1024;

#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// A validated view of `hvm_start_info`.
#[derive(Clone, Copy)]
pub struct StartInfo {
    raw: &'static HvmStartInfo,
}

impl StartInfo {
    /// The start info at `paddr`, if it carries the PVH magic.
    pub fn at(paddr: u64) -> Option<StartInfo> {
        if paddr == 0 {
            return None;
        }
        // SAFETY: the VMM passed this address; memory below 4 GiB is identity mapped.
        let raw = unsafe { &*(paddr as *const HvmStartInfo) };
        (raw.magic == MAGIC).then_some(StartInfo { raw })
    }

    pub fn rsdp_paddr(&self) -> u64 {
        self.raw.rsdp_paddr
    }

    fn memmap(&self) -> &'static [MemmapEntry] {
        if self.raw.version < 1 || self.raw.memmap_paddr == 0 {
            return &[];
        }
        // SAFETY: the VMM describes `memmap_entries` entries at `memmap_paddr`.
        unsafe {
            core::slice::from_raw_parts(
                self.raw.memmap_paddr as *const MemmapEntry,
                self.raw.memmap_entries as usize,
            )
        }
    }

    /// The memory map entries, in the VMM's order.
    pub fn regions(&self) -> impl Iterator<Item = Region> + Clone {
        self.memmap().iter().map(|e| Region {
            addr: e.addr,
            size: e.size,
            kind: e.kind,
        })
    }

    /// The kernel command line (empty when the VMM gave none).
    pub fn cmdline(&self) -> Cmdline<'static> {
        let paddr = self.raw.cmdline_paddr;
        if paddr == 0 {
            return Cmdline::new("");
        }
        let start = paddr as *const u8;
        let mut len = 0;
        // SAFETY: the VMM reserves CMDLINE_MAX bytes at cmdline_paddr, NUL terminated.
        unsafe {
            while len < CMDLINE_MAX && *start.add(len) != 0 {
                len += 1;
            }
            Cmdline::from_bytes(core::slice::from_raw_parts(start, len))
        }
    }
}
