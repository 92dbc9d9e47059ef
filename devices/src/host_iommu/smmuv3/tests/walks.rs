//! Stage-1, stage-2 and nested walks: every start level, every block size, the larger
//! granules, stage-2 concatenation, and the combined range of a nested translation.

use super::encode::*;
use super::*;
use crate::host_iommu::smmuv3::wire::event_id;

#[test]
fn four_kib_pages_from_every_start_level() {
    for (t0sz, start, va) in [
        (16, 0, 0x7f_1234_5789u64),
        (25, 1, 0x45_6789_a123),
        (34, 2, 0x2345_6789),
    ] {
        let rig = Rig::new();
        let s = stage1_stream(
            &rig,
            3,
            CdFields {
                t0sz,
                ..CdFields::default()
            },
        );
        map(&rig, s.root, start, va, 3, s1_page(0xab000));
        // The same address with one index bit flipped at each level maps elsewhere, so
        // each level's index is taken from its own bits.
        for level in start..=3 {
            let other = va ^ 1 << shift(12, level);
            map(
                &rig,
                s.root,
                start,
                other,
                3,
                s1_page(0x10_0000 + (u64::from(level) << 12)),
            );
        }
        let t = rig.translate(3, None, va, Access::READ).unwrap();
        assert_eq!(t.output_of(va), 0xab000 | (va & 0xfff), "T0SZ {t0sz}");
        assert_eq!((t.start, t.last), (va & !0xfff, va | 0xfff));
        for level in start..=3 {
            let other = va ^ 1 << shift(12, level);
            assert_eq!(
                rig.read(3, other).unwrap(),
                0x10_0000 + (u64::from(level) << 12) + (va & 0xfff),
                "T0SZ {t0sz} level {level}"
            );
        }
    }
}

#[test]
fn one_gib_and_two_mib_blocks() {
    let rig = Rig::new();
    let s = stage1_stream(&rig, 0, CdFields::default());
    let gib_va = 0x40_4000_0000u64;
    let mib_va = 0x40_8000_0000u64 + 0x20_0000 * 5;
    map(&rig, s.root, 0, gib_va, 1, s1_block(0x8000_0000));
    map(&rig, s.root, 0, mib_va, 2, s1_block(0x60_0000));
    let t = rig
        .translate(0, None, gib_va + 0x1234_5678, Access::WRITE)
        .unwrap();
    assert_eq!(t.output_of(gib_va + 0x1234_5678), 0x9234_5678);
    assert_eq!((t.start, t.size_bits()), (gib_va, 30));
    let t = rig
        .translate(0, None, mib_va + 0x1f_fff8, Access::READ)
        .unwrap();
    assert_eq!(t.output_of(mib_va + 0x1f_fff8), 0x7f_fff8);
    assert_eq!((t.start, t.size_bits()), (mib_va, 21));
}

#[test]
fn blocks_where_the_granule_has_none_are_translation_faults() {
    let rig = Rig::new();
    let s = stage1_stream(&rig, 0, CdFields::default());
    // Level 0 has no blocks with 4 KiB granules (without 52-bit addresses).
    map(&rig, s.root, 0, 0, 0, s1_block(0));
    // At level 3, bits[1:0] = 01 is reserved.
    let va = 0x80_0000_0000u64;
    map(&rig, s.root, 0, va, 3, s1_block(0x5000));
    assert_eq!(rig.read_fault(0, 0x1000), Some(event_id::F_TRANSLATION));
    assert_eq!(rig.read_fault(0, va), Some(event_id::F_TRANSLATION));
}

#[test]
fn sixty_four_kib_granule_pages_and_blocks() {
    let rig = Rig::new();
    // T0SZ 22: 42-bit VA, a walk from level 2 whose table has 2^13 entries (64 KiB).
    let root = rig.alloc(0x1_0000);
    let cd = CdFields {
        t0sz: 22,
        tg0: 1,
        ttb0: root,
        ..CdFields::default()
    };
    stage1_stream(&rig, 1, cd);
    let va = 0x2_3456_7890u64;
    map_at(&rig, 16, 0, root, 2, va, 3, s1_page(0x5_0000));
    let block_va = 0x3_e000_0000u64;
    map_at(&rig, 16, 0, root, 2, block_va, 2, s1_block(0x2000_0000));
    let t = rig.translate(1, None, va, Access::READ).unwrap();
    assert_eq!(t.output_of(va), 0x5_7890);
    assert_eq!(t.size_bits(), 16);
    let t = rig
        .translate(1, None, block_va + 0x1234_5678, Access::READ)
        .unwrap();
    assert_eq!(t.output_of(block_va + 0x1234_5678), 0x3234_5678);
    assert_eq!(t.size_bits(), 29, "512 MiB block");
}

#[test]
fn sixteen_kib_granule_pages_and_blocks() {
    let rig = Rig::new();
    // T0SZ 17: 47-bit VA from level 1, whose table has 2^11 entries (16 KiB).
    let root = rig.alloc(0x4000);
    let cd = CdFields {
        t0sz: 17,
        tg0: 2,
        ttb0: root,
        ..CdFields::default()
    };
    stage1_stream(&rig, 1, cd);
    let va = 0x7abc_1234_5678u64;
    map_at(&rig, 14, 0, root, 1, va, 3, s1_page(0x1_c000));
    let block_va = 0x1000_0400_0000u64;
    map_at(&rig, 14, 0, root, 1, block_va, 2, s1_block(0x200_0000));
    assert_eq!(rig.read(1, va).unwrap(), 0x1_c000 | (va & 0x3fff));
    let t = rig
        .translate(1, None, block_va + 0x1ff_fffc, Access::READ)
        .unwrap();
    assert_eq!(t.output_of(block_va + 0x1ff_fffc), 0x3ff_fffc);
    assert_eq!(t.size_bits(), 25, "32 MiB block");
}

/// A stage-2-only stream at `sid` (stream table of 16) with `s2`; returns the rig.
fn stage2_stream(rig: &Rig, sid: u32, s2: S2Fields) {
    let table = rig.linear_stream_table(4);
    let ste = SteFields {
        s2: Some(s2),
        ..SteFields::with_config(0b110)
    };
    rig.write_all(table + u64::from(sid) * 64, &ste.encode());
}

#[test]
fn stage2_concatenates_start_tables() {
    let rig = Rig::new();
    // 40-bit IPA from level 1: 10 index bits, two concatenated 4 KiB tables.
    let ttb = rig.alloc(0x2000);
    stage2_stream(
        &rig,
        2,
        S2Fields {
            t0sz: 24,
            sl0: 1,
            ttb,
            ..S2Fields::default()
        },
    );
    let high = 0xa0_1234_5000u64;
    let low = 0x1234_5000u64;
    map(&rig, ttb, 1, high, 3, s2_page(0x33_4000, true, true));
    map(&rig, ttb, 1, low, 3, s2_page(0x44_5000, true, false));
    // The high IPA's level-1 entry is in the second table: index 0x280 of 1024.
    assert_ne!(
        u64::from_le(
            rig.mem
                .read_obj(vm_memory::GuestAddress(ttb + 0x280 * 8))
                .unwrap()
        ),
        0
    );
    assert_eq!(rig.read(2, high + 0x123).unwrap(), 0x33_4123);
    assert_eq!(rig.read(2, low + 0x10).unwrap(), 0x44_5010);
    let f = rig.translate(2, None, low, Access::WRITE).unwrap_err();
    assert_eq!(f.event_id(), Some(event_id::F_PERMISSION));
    let e = f.event.unwrap();
    assert!(e.stage2() && !e.read());
    assert_eq!(e.dword3(), low);
    // Beyond the 40-bit IPA space.
    let f = rig.translate(2, None, 1 << 40, Access::READ).unwrap_err();
    assert_eq!(f.event_id(), Some(event_id::F_TRANSLATION));
    assert!(f.event.unwrap().stage2());
}

#[test]
fn stage2_from_level_two_with_blocks() {
    let rig = Rig::new();
    // 30-bit IPA from level 2 (SL0 = 0): 9 index bits.
    let ttb = rig.page();
    stage2_stream(
        &rig,
        0,
        S2Fields {
            t0sz: 34,
            sl0: 0,
            ttb,
            ..S2Fields::default()
        },
    );
    map(
        &rig,
        ttb,
        2,
        0x3fe0_0000,
        2,
        s2_block(0x80_0000, true, true),
    );
    let t = rig.translate(0, None, 0x3fe1_2345, Access::WRITE).unwrap();
    assert_eq!(t.output_of(0x3fe1_2345), 0x81_2345);
    assert_eq!(t.size_bits(), 21);
}

#[test]
fn stage2_from_level_zero_with_pages_and_gib_blocks() {
    let rig = Rig::new();
    // 48-bit IPA from level 0 (SL0 = 2): four levels.
    let ttb = rig.page();
    stage2_stream(
        &rig,
        0,
        S2Fields {
            t0sz: 16,
            sl0: 2,
            ttb,
            ..S2Fields::default()
        },
    );
    let page_ipa = 0xab_cdef_1000u64 << 4;
    let gib_ipa = 0x7f_c000_0000u64;
    map(&rig, ttb, 0, page_ipa, 3, s2_page(0x1234_5000, true, true));
    map(&rig, ttb, 0, gib_ipa, 1, s2_block(0x4000_0000, true, false));
    for level in 0..=3 {
        let other = page_ipa ^ 1 << shift(12, level);
        map(
            &rig,
            ttb,
            0,
            other,
            3,
            s2_page(0x50_0000 + (u64::from(level) << 12), true, true),
        );
    }
    assert_eq!(rig.read(0, page_ipa + 0x9).unwrap(), 0x1234_5009);
    for level in 0..=3 {
        let other = page_ipa ^ 1 << shift(12, level);
        assert_eq!(
            rig.read(0, other).unwrap(),
            0x50_0000 + (u64::from(level) << 12),
            "level {level}"
        );
    }
    let t = rig
        .translate(0, None, gib_ipa + 0x3fff_fff0, Access::READ)
        .unwrap();
    assert_eq!(t.output_of(gib_ipa + 0x3fff_fff0), 0x7fff_fff0);
    assert_eq!(t.size_bits(), 30);
    let f = rig.translate(0, None, gib_ipa, Access::WRITE).unwrap_err();
    assert_eq!(f.event_id(), Some(event_id::F_PERMISSION));
}

#[test]
fn stage2_with_sixty_four_kib_granules() {
    let rig = Rig::new();
    // 40-bit IPA, 64 KiB granule, SL0 = 1: walks from level 2, whose table resolves
    // bits [39:29]: 2^11 entries, 16 KiB.
    let ttb = rig.alloc(0x1_0000);
    stage2_stream(
        &rig,
        0,
        S2Fields {
            t0sz: 24,
            sl0: 1,
            tg: 1,
            ttb,
            ..S2Fields::default()
        },
    );
    let ipa = 0xf1_2345_6789u64;
    map_at(&rig, 16, 0, ttb, 2, ipa, 3, s2_page(0x3_0000, true, true));
    assert_eq!(rig.read(0, ipa).unwrap(), 0x3_6789);
    assert_eq!(
        rig.translate(0, None, ipa, Access::READ)
            .unwrap()
            .size_bits(),
        16
    );
}

/// Stage 2 mapping IPA [0, 16 MiB) to PA [16 MiB, 32 MiB) with 2 MiB blocks (all
/// readable and writable): tables allocated above 16 MiB have IPA = PA - 16 MiB.
pub const OFFSET: u64 = 16 << 20;

pub fn offset_stage2(rig: &Rig) -> S2Fields {
    let ttb = rig.page();
    for i in 0..8u64 {
        map(
            rig,
            ttb,
            1,
            i << 21,
            2,
            s2_block((i << 21) + OFFSET, true, true),
        );
    }
    S2Fields {
        ttb,
        ..S2Fields::default()
    }
}

/// A nested stream at `sid`: its CD and stage-1 tables are at IPAs; returns the
/// stage-1 root's PA.
pub fn nested_stream(rig: &Rig, sid: u32, s2: S2Fields, cd: CdFields) -> u64 {
    let table = rig.linear_stream_table(4);
    let root = rig.page();
    let cd_pa = rig.alloc(64);
    rig.write_all(
        cd_pa,
        &CdFields {
            ttb0: root - OFFSET,
            ..cd
        }
        .encode(),
    );
    let ste = SteFields {
        s2: Some(s2),
        ..SteFields::stage1(cd_pa - OFFSET)
    };
    rig.write_all(
        table + u64::from(sid) * 64,
        &SteFields {
            config: 0b111,
            ..ste
        }
        .encode(),
    );
    root
}

#[test]
fn nested_walk_translates_cd_tables_and_output_through_stage2() {
    let rig = Rig::new();
    let s2 = offset_stage2(&rig);
    let root = nested_stream(&rig, 5, s2, CdFields::default());
    let va = 0x12_3456_7000u64;
    map_at(&rig, 12, OFFSET, root, 0, va, 3, s1_page(0x40_0000));
    let t = rig.translate(5, None, va + 0x42, Access::WRITE).unwrap();
    assert_eq!(t.output_of(va + 0x42), 0x40_0042 + OFFSET);
    assert_eq!(
        t.size_bits(),
        12,
        "the smaller of the 4 KiB stage-1 page and the 2 MiB block"
    );
}

#[test]
fn nested_range_is_the_smaller_of_the_two_stages() {
    let rig = Rig::new();
    let s2 = offset_stage2(&rig);
    // Replace IPA [6 MiB, 8 MiB)'s block by pages, one of them sent elsewhere.
    let l2 = rig.page();
    for i in 0..512u64 {
        let pa = if i == 0x35 {
            0x77_7000
        } else {
            0x60_0000 + OFFSET + (i << 12)
        };
        rig.write(l2 + i * 8, s2_page(pa, true, true));
    }
    map(&rig, s2.ttb, 1, 0x60_0000, 2, table(l2));
    let root = nested_stream(&rig, 5, s2, CdFields::default());
    let va = 0x4000_0000u64;
    map_at(&rig, 12, OFFSET, root, 0, va, 2, s1_block(0x60_0000));
    let t = rig.translate(5, None, va + 0x35_123, Access::READ).unwrap();
    assert_eq!(t.output_of(va + 0x35_123), 0x77_7123);
    assert_eq!((t.start, t.size_bits()), (va + 0x35_000, 12));
    assert_eq!(rig.read(5, va + 0x36_008).unwrap(), 0x63_6008 + OFFSET);
}

#[test]
fn nested_faults_name_the_stage_class_and_ipa() {
    let rig = Rig::new();
    let s2 = offset_stage2(&rig);
    // The final IPA page for `ro_va` is read-only at stage 2.
    let l2 = rig.page();
    for i in 0..512u64 {
        rig.write(
            l2 + i * 8,
            s2_page(0x20_0000 + OFFSET + (i << 12), true, i != 7),
        );
    }
    map(&rig, s2.ttb, 1, 0x20_0000, 2, table(l2));
    let root = nested_stream(&rig, 5, s2, CdFields::default());
    let ro_va = 0x1000_0000u64;
    map_at(&rig, 12, OFFSET, root, 0, ro_va, 3, s1_page(0x20_7000));
    // A stage-1 table at IPA 32 MiB, which stage 2 does not map.
    let hole_va = 0x2000_0000_0000u64;
    rig.write(root + (hole_va >> 39) * 8, table(0x200_0000));

    let f = rig
        .translate(5, None, ro_va + 8, Access::WRITE)
        .unwrap_err();
    let e = f.event.unwrap();
    assert_eq!(
        (e.id(), e.stage2(), e.class()),
        (event_id::F_PERMISSION, true, 2)
    );
    assert_eq!((e.input_address(), e.dword3()), (ro_va + 8, 0x20_7000));
    assert_eq!(rig.read(5, ro_va + 8).unwrap(), 0x20_7008 + OFFSET);

    let e = rig
        .translate(5, None, hole_va, Access::READ)
        .unwrap_err()
        .event
        .unwrap();
    assert_eq!(
        (e.id(), e.stage2(), e.class()),
        (event_id::F_TRANSLATION, true, 1)
    );
    assert_eq!(e.dword3(), 0x200_0000);
}

#[test]
fn nested_cd_fetch_through_an_unmapped_ipa_is_a_stage2_cd_fault() {
    let rig = Rig::new();
    let s2 = offset_stage2(&rig);
    let table = rig.linear_stream_table(4);
    let ste = SteFields {
        s2: Some(s2),
        config: 0b111,
        ..SteFields::stage1(0x300_0000)
    };
    rig.write_all(table, &ste.encode());
    let e = rig
        .translate(0, None, 0x1000, Access::READ)
        .unwrap_err()
        .event
        .unwrap();
    assert_eq!(
        (e.id(), e.stage2(), e.class()),
        (event_id::F_TRANSLATION, true, 0)
    );
    assert_eq!(e.dword3(), 0x300_0000);
}

#[test]
fn stage2_table_reads_need_read_permission() {
    let rig = Rig::new();
    let s2 = offset_stage2(&rig);
    let root = nested_stream(&rig, 5, s2, CdFields::default());
    // Stage 2 makes the stage-1 root's IPA write-only.
    let root_ipa = root - OFFSET;
    let l2 = rig.page();
    let base = root_ipa & !0x1f_ffff;
    for i in 0..512u64 {
        rig.write(
            l2 + i * 8,
            s2_page(
                base + OFFSET + (i << 12),
                base + (i << 12) != root_ipa,
                true,
            ),
        );
    }
    map(&rig, s2.ttb, 1, base, 2, table(l2));
    let e = rig
        .translate(5, None, 0x1000, Access::READ)
        .unwrap_err()
        .event
        .unwrap();
    assert_eq!(
        (e.id(), e.stage2(), e.class()),
        (event_id::F_PERMISSION, true, 1)
    );
    assert_eq!(e.dword3(), root_ipa);
}
