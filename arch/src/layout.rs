//! Guest-physical memory layout (the table in `docs/guest-contract.md`).

use vm_memory::GuestAddress;

pub const BOOT_GDT_START: u64 = 0x500;
pub const BOOT_GDT_MAX_ENTRIES: usize = 4;
pub const BOOT_IDT_START: u64 = 0x520;

/// PVH `hvm_start_info`, then its memory map, then its module list, in one page.
pub const PVH_INFO_START: u64 = 0x6000;
pub const PVH_MEMMAP_START: u64 = 0x6040;
pub const PVH_MEMMAP_MAX_ENTRIES: usize = 128;
pub const PVH_MODLIST_START: u64 = 0x6e00;

/// Linux `boot_params`.
pub const ZERO_PAGE_START: u64 = 0x7000;

/// Identity page tables for the 64-bit bzImage entry.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;

pub const CMDLINE_START: u64 = 0x20000;
/// Includes the terminating NUL.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;

/// Start of the EBDA: RAM below 1 MiB ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables, RSDP first, in the BIOS area where guests scan for the RSDP.
pub const ACPI_START: u64 = 0xe0000;
pub const ACPI_END: u64 = 0x100000;

/// Kernels are loaded here, and RAM above it is where the initrd goes.
pub const HIMEM_START: u64 = 0x100000;

/// The 32-bit hole for devices: PCI BARs, ECAM, IOAPIC, local APIC.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
pub const PCI_MMIO32_START: u64 = 0xc000_0000;
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;
pub const PCI_ECAM_START: u64 = 0xe000_0000;
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const IOAPIC_SIZE: u64 = 0x1000;
pub const LAPIC_START: u64 = 0xfee0_0000;
pub const LAPIC_SIZE: u64 = 0x1000;
/// The ACPI Generic Event Device's event register (the DSDT's GED describes it).
pub const GED_START: u64 = 0xfef0_0000;
pub const GED_SIZE: u64 = 0x1000;
/// KVM's identity-map page and, above it, the three-page TSS that Intel VMX needs: memory
/// KVM keeps for itself, below 4 GiB, out of RAM and the MMIO hole's devices.
pub const KVM_IDENTITY_MAP_START: u64 = 0xfffb_c000;
pub const KVM_TSS_START: u64 = 0xfffb_d000;
pub const KVM_PRIVATE_END: u64 = 0xfffc_0000;

/// RAM that does not fit below the hole continues here.
pub const RAM_ABOVE_4G_START: u64 = 0x1_0000_0000;

/// Smallest guest nestor will build: room for the low-memory structures and a small kernel.
pub const MIN_MEMORY: u64 = 8 << 20;

/// Where RAM of `size` bytes lives in guest-physical memory.
pub fn ram_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    let below_hole = size.min(MMIO_HOLE_START);
    let mut regions = vec![(GuestAddress(0), below_hole as usize)];
    if size > MMIO_HOLE_START {
        regions.push((
            GuestAddress(RAM_ABOVE_4G_START),
            (size - MMIO_HOLE_START) as usize,
        ));
    }
    regions
}

/// What a guest must never place a PCI BAR over, with what owns it: RAM of `memory_size`
/// bytes and everything KVM or nestor decodes in the hole besides the BARs.
pub fn bar_exclusions(memory_size: u64) -> Vec<(u64, u64, &'static str)> {
    let mut ranges: Vec<(u64, u64, &'static str)> = ram_regions(memory_size)
        .into_iter()
        .map(|(start, len)| (start.0, len as u64, "guest RAM"))
        .collect();
    ranges.extend([
        (PCI_ECAM_START, PCI_ECAM_SIZE, "the ECAM window"),
        (IOAPIC_START, IOAPIC_SIZE, "the IOAPIC"),
        (LAPIC_START, LAPIC_SIZE, "the local APIC"),
        (GED_START, GED_SIZE, "the ACPI event device"),
        (
            KVM_IDENTITY_MAP_START,
            KVM_PRIVATE_END - KVM_IDENTITY_MAP_START,
            "KVM's TSS and identity map",
        ),
    ]);
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_below_the_hole_is_one_region() {
        assert_eq!(ram_regions(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn ram_past_the_hole_continues_at_4g() {
        let regions = ram_regions(4 << 30);
        assert_eq!(regions[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(regions[1], (GuestAddress(RAM_ABOVE_4G_START), (1 << 30)));
    }

    #[test]
    fn bar_exclusions_cover_ram_and_the_hole_devices_but_not_the_bar_window() {
        let ranges = bar_exclusions(5 << 30);
        let covered = |a: u64| ranges.iter().any(|&(s, l, _)| (s..s + l).contains(&a));
        for address in [0, MMIO_HOLE_START - 1, RAM_ABOVE_4G_START, (6 << 30) - 1] {
            assert!(covered(address), "{address:#x}");
        }
        for address in [
            PCI_ECAM_START,
            IOAPIC_START,
            LAPIC_START,
            GED_START,
            KVM_TSS_START,
        ] {
            assert!(covered(address), "{address:#x}");
        }
        for address in [PCI_MMIO32_START, PCI_ECAM_START - 1, 6 << 30] {
            assert!(!covered(address), "{address:#x}");
        }
    }

    #[test]
    fn low_structures_do_not_overlap() {
        let mut ranges = [
            (
                BOOT_GDT_START,
                BOOT_GDT_START + 8 * BOOT_GDT_MAX_ENTRIES as u64,
            ),
            (BOOT_IDT_START, BOOT_IDT_START + 8),
            (PVH_INFO_START, PVH_MEMMAP_START),
            (
                PVH_MEMMAP_START,
                PVH_MEMMAP_START + 24 * PVH_MEMMAP_MAX_ENTRIES as u64,
            ),
            (PVH_MODLIST_START, PVH_MODLIST_START + 32),
            (ZERO_PAGE_START, ZERO_PAGE_START + 0x1000),
            (PML4_START, PDE_START + 0x1000),
            (CMDLINE_START, CMDLINE_START + CMDLINE_MAX_SIZE as u64),
            (ACPI_START, ACPI_END),
        ];
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:x?} overlap");
        }
        assert!(CMDLINE_START + (CMDLINE_MAX_SIZE as u64) < EBDA_START);
    }
}
