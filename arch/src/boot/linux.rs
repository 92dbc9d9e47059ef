//! Linux's boot_params ("zero page") for the 64-bit boot protocol.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{BootEntry, BootError, EntryMode, InitrdPlacement};
use crate::layout::{CMDLINE_START, HIMEM_START, ZERO_PAGE_START};
use crate::memory_map::memory_map;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// "Undefined" boot loader: we have no assigned ID.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// The 64-bit entry point sits 0x200 past the protected-mode kernel.
const STARTUP_64_OFFSET: u64 = 0x200;

pub(super) fn write_boot_params(
    mem: &GuestMemoryMmap,
    header: setup_header,
    cmdline_size: usize,
    initrd: Option<InitrdPlacement>,
    memory_size: u64,
    rsdp: GuestAddress,
) -> Result<BootEntry, BootError> {
    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_size as u32;
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = initrd.addr.0 as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
    }
    params.acpi_rsdp_addr = rsdp.0;
    let map = memory_map(memory_size);
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind as u32,
        };
    }
    params.e820_entries = map.len() as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| BootError::Setup(e.to_string()))?;
    Ok(BootEntry {
        entry: GuestAddress(HIMEM_START + STARTUP_64_OFFSET),
        mode: EntryMode::Linux64 {
            boot_params: GuestAddress(ZERO_PAGE_START),
        },
    })
}
