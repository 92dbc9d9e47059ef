//! The boot GDT: flat code and data segments, 64-bit or 32-bit code.

use kvm_bindings::kvm_segment;

/// Builds a GDT entry from flags, base and limit (the layout of an x86 segment descriptor).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0x0000_f0ff) << 40)
}

pub const CODE64: u64 = gdt_entry(0xa09b, 0, 0xfffff);
pub const CODE32: u64 = gdt_entry(0xc09b, 0, 0xffff_ffff);
pub const DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
pub const TSS: u64 = gdt_entry(0x808b, 0, 0xfffff);

/// Null, code, data, TSS: selectors 0x08, 0x10, 0x18.
pub fn boot_gdt(code: u64) -> [u64; 4] {
    [0, code, DATA, TSS]
}

/// The hidden part of a segment register as loaded from GDT entry `index`.
pub fn segment_from_entry(entry: u64, index: u8) -> kvm_segment {
    let flag = |shift: u32, bits: u64| ((entry >> shift) & bits) as u8;
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let granularity = flag(55, 1);
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if granularity == 1 {
            (limit << 12) | 0xfff
        } else {
            limit
        },
        selector: u16::from(index) * 8,
        type_: flag(40, 0xf),
        present: flag(47, 1),
        dpl: flag(45, 0x3),
        db: flag(54, 1),
        s: flag(44, 1),
        l: flag(53, 1),
        g: granularity,
        avl: flag(52, 1),
        padding: 0,
        unusable: u8::from(flag(47, 1) == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_segment_is_long_mode_present_and_executable() {
        let seg = segment_from_entry(CODE64, 1);
        assert_eq!(seg.selector, 0x8);
        assert_eq!((seg.l, seg.db, seg.present, seg.s), (1, 0, 1, 1));
        assert_eq!(seg.type_, 0xb);
        assert_eq!(seg.limit, 0xffff_ffff);
    }

    #[test]
    fn data_segment_is_flat_and_writable() {
        let seg = segment_from_entry(DATA, 2);
        assert_eq!(
            (seg.base, seg.limit, seg.type_, seg.db),
            (0, 0xffff_ffff, 3, 1)
        );
    }

    #[test]
    fn code32_segment_is_32_bit() {
        let seg = segment_from_entry(CODE32, 1);
        assert_eq!((seg.l, seg.db, seg.g), (0, 1, 1));
    }
}
