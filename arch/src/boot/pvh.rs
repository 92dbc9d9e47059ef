//! The PVH `hvm_start_info`, its memory map and module list.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{BootEntry, BootError, EntryMode, InitrdPlacement};
use crate::layout::{
    CMDLINE_START, PVH_INFO_START, PVH_MEMMAP_MAX_ENTRIES, PVH_MEMMAP_START, PVH_MODLIST_START,
};
use crate::memory_map::memory_map;

const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
const XEN_HVM_START_INFO_VERSION: u32 = 1;

pub(super) fn write_start_info(
    mem: &GuestMemoryMmap,
    entry: GuestAddress,
    initrd: Option<InitrdPlacement>,
    memory_size: u64,
    rsdp: GuestAddress,
) -> Result<BootEntry, BootError> {
    let memmap: Vec<hvm_memmap_table_entry> = memory_map(memory_size)
        .into_iter()
        .take(PVH_MEMMAP_MAX_ENTRIES)
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind as u32,
            reserved: 0,
        })
        .collect();
    let mut start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: XEN_HVM_START_INFO_VERSION,
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp.0,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let modules: Vec<hvm_modlist_entry> = initrd
        .map(|i| hvm_modlist_entry {
            paddr: i.addr.0,
            size: i.size,
            ..Default::default()
        })
        .into_iter()
        .collect();
    if !modules.is_empty() {
        start_info.nr_modules = modules.len() as u32;
        start_info.modlist_paddr = PVH_MODLIST_START;
    }
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(|e| BootError::Setup(e.to_string()))?;
    Ok(BootEntry {
        entry,
        mode: EntryMode::Pvh {
            start_info: GuestAddress(PVH_INFO_START),
        },
    })
}
