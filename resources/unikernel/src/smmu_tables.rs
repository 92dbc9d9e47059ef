//! ARM SMMUv3 stage-1 structures as a guest builds them by hand for nestor's virtio-iommu
//! extension (docs/virtio-iommu-nested.md): the STE words of ATTACH_TABLE, context
//! descriptors, and VMSAv8-64 descriptors for the 4 KiB granule, with the field positions
//! of the Arm architecture (SMMUv3 spec, STE and CD; Arm ARM, VMSAv8-64 translation table
//! formats).
//!
//! The address space is 39 bits (T0SZ 25), so a walk starts at level 1: three levels,
//! 1 GiB per level-1 entry, 2 MiB per level-2 entry, 4 KiB per level-3 entry.

/// T0SZ: a 2^(64 - 25) = 39-bit input range for TTB0.
pub const T0SZ: u64 = 25;

/// STE Config: stage 1 translates, stage 2 bypassed (as the guest sees it).
pub const STE_CONFIG_S1_TRANSLATE: u64 = 0b101;
/// STE Config: stage 1 bypassed.
pub const STE_CONFIG_BYPASS: u64 = 0b100;
/// STE.S1DSS: transactions without a PASID bypass stage 1.
pub const S1DSS_BYPASS: u64 = 0b01;

/// STE dword 0 for ATTACH_TABLE: V, Config, S1Fmt 0 (a linear CD table), S1ContextPtr
/// `cd_table` (64-byte aligned), S1CDMax `cd_max_bits` (2^bits CDs).
pub fn ste0(config: u64, cd_table: u64, cd_max_bits: u64) -> u64 {
    1 | config << 1 | (cd_table & 0x000f_ffff_ffff_ffc0) | cd_max_bits << 59
}

/// STE dword 1: S1DSS (bits 1:0); the cache attributes stay 0 (non-cacheable walks).
pub fn ste1(s1dss: u64) -> u64 {
    s1dss & 0b11
}

/// A context descriptor (eight dwords): T0SZ, TG0 4 KiB, EPD1 (no TTB1 region), V,
/// IPS 48 bits, AA64, R (faults recorded), A (faulting accesses abort), ASID, TTB0.
pub fn cd(ttb0: u64, asid: u16) -> [u64; 8] {
    cd_with(ttb0, asid, true)
}

/// [`cd`] with R (`record`) clear: translation faults are not recorded, as for a device
/// that asks for missing pages with page requests instead.
pub fn cd_with(ttb0: u64, asid: u16, record: bool) -> [u64; 8] {
    const EPD1: u64 = 1 << 30;
    const V: u64 = 1 << 31;
    const IPS_48: u64 = 5 << 32;
    const AA64: u64 = 1 << 41;
    const R: u64 = 1 << 45;
    const A: u64 = 1 << 46;
    let r = if record { R } else { 0 };
    let d0 = T0SZ | EPD1 | V | IPS_48 | AA64 | r | A | u64::from(asid) << 48;
    [d0, ttb0 & 0x000f_ffff_ffff_fff0, 0, 0, 0, 0, 0, 0]
}

/// A table descriptor at level 1 or 2: the next level's table.
pub fn table(next: u64) -> u64 {
    0b11 | (next & 0x0000_ffff_ffff_f000)
}

/// A level-3 page descriptor for `output`: AttrIndx 0, AP\[1\] (unprivileged, as DMA is),
/// AP\[2\] when `read_only`, AF (set: nothing updates it), nG (the translation is its
/// ASID's alone; a global one would serve every ASID).
pub fn page(output: u64, read_only: bool) -> u64 {
    const AP_UNPRIVILEGED: u64 = 1 << 6;
    const AP_READ_ONLY: u64 = 1 << 7;
    const AF: u64 = 1 << 10;
    const NG: u64 = 1 << 11;
    let ro = if read_only { AP_READ_ONLY } else { 0 };
    0b11 | (output & 0x0000_ffff_ffff_f000) | AP_UNPRIVILEGED | ro | AF | NG
}

/// The index of `iova`'s entry in its level-`level` table (1, 2 or 3).
pub fn index(iova: u64, level: u32) -> usize {
    ((iova >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ste_fields_sit_where_the_smmu_reads_them() {
        let w = ste0(STE_CONFIG_S1_TRANSLATE, 0x1234_5000, 2);
        assert_eq!(w & 1, 1, "V");
        assert_eq!(w >> 1 & 7, 0b101, "Config [3:1]");
        assert_eq!(w >> 4 & 3, 0, "S1Fmt [5:4]");
        assert_eq!(
            w & 0x000f_ffff_ffff_ffc0,
            0x1234_5000,
            "S1ContextPtr [51:6]"
        );
        assert_eq!(w >> 59, 2, "S1CDMax [63:59]");
        // Only the fields nestor's extension lets a guest set.
        assert_eq!(w & !0xf80f_ffff_ffff_ffff, 0);
        assert_eq!(ste1(S1DSS_BYPASS), 1);
    }

    #[test]
    fn cd_fields_sit_where_the_smmu_reads_them() {
        let c = cd(0x8000_0000, 0xbeef);
        assert_eq!(c[0] & 0x3f, 25, "T0SZ [5:0]");
        assert_eq!(c[0] >> 6 & 3, 0, "TG0 [7:6]: 4 KiB");
        assert_eq!(c[0] >> 30 & 1, 1, "EPD1");
        assert_eq!(c[0] >> 31 & 1, 1, "V");
        assert_eq!(c[0] >> 32 & 7, 5, "IPS [34:32]: 48 bits");
        assert_eq!(c[0] >> 41 & 1, 1, "AA64");
        assert_eq!(c[0] >> 44 & 7, 0b110, "S [44] clear, R [45] and A [46] set");
        assert_eq!(c[0] >> 48, 0xbeef, "ASID [63:48]");
        assert_eq!(c[1], 0x8000_0000, "TTB0 [51:4]");
        assert_eq!(
            cd_with(0x8000_0000, 1, false)[0] >> 44 & 7,
            0b100,
            "R clear"
        );
    }

    #[test]
    fn descriptors_and_indices() {
        assert_eq!(table(0x5000), 0x5003);
        let p = page(0x7000, true);
        assert_eq!(p & 0x0000_ffff_ffff_f000, 0x7000);
        assert_eq!(p & 0b11, 0b11, "valid page");
        assert_eq!(p >> 6 & 3, 0b11, "AP[2:1]: read-only, unprivileged");
        assert_eq!(p >> 10 & 3, 0b11, "AF and nG");
        assert_eq!(page(0x7000, false) >> 7 & 1, 0);
        let iova = 0x4020_3000;
        assert_eq!((index(iova, 1), index(iova, 2), index(iova, 3)), (1, 1, 3));
    }
}
