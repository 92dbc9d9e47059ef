//! Tables a hostile guest might write: loops, pointers past guest RAM, bits above the
//! output size, and garbage. Each ends in an event (or a translation that is consistent),
//! never a hang or a panic.

use super::encode::*;
use super::walks::{nested_stream, offset_stage2, OFFSET};
use super::*;
use crate::host_iommu::smmuv3::wire::{event_id, Command};

const PAST_RAM: u64 = 0x10_0000_0000;

#[test]
fn a_table_that_points_at_itself_ends_at_level_three() {
    for af in [false, true] {
        let rig = Rig::new();
        let s = stage1_stream(&rig, 0, CdFields::default());
        // Every entry points back at the table. Levels 0-2 read it as a table; level 3
        // reads the same descriptor as a page (bits[1:0] = 11) of the table itself, with
        // AF as set in the (otherwise table) descriptor.
        let looping = table(s.root) | if af { AF | AP_UNPRIV } else { 0 };
        for i in 0..512 {
            rig.write(s.root + i * 8, looping);
        }
        let va = 0x1234_5678_9abc;
        match rig.read(0, va) {
            Ok(pa) => {
                assert!(af);
                assert_eq!(pa, s.root | 0xabc);
            }
            Err(f) => {
                assert!(!af);
                assert_eq!(f.event_id(), Some(event_id::F_ACCESS));
            }
        }
    }
}

#[test]
fn pointers_past_guest_ram_are_external_aborts() {
    // TTB0 past RAM (inside the 48-bit output size).
    let rig = Rig::new();
    stage1_stream(
        &rig,
        0,
        CdFields {
            ttb0: PAST_RAM,
            ..CdFields::default()
        },
    );
    let e = rig
        .read(0, 0x8000_0000_0000 - 0x1000)
        .unwrap_err()
        .event
        .unwrap();
    assert_eq!(e.id(), event_id::F_WALK_EABT);
    assert_eq!(e.dword3(), PAST_RAM + 255 * 8);

    // A table descriptor past RAM.
    let rig = Rig::new();
    let s = stage1_stream(&rig, 0, CdFields::default());
    map(&rig, s.root, 0, 0, 1, table(PAST_RAM));
    let e = rig.read(0, 0x20_0000 * 3).unwrap_err().event.unwrap();
    assert_eq!(
        (e.id(), e.dword3(), e.class()),
        (event_id::F_WALK_EABT, PAST_RAM + 3 * 8, 1)
    );

    // The stream table, a level-1 stream descriptor, the CD.
    let rig = Rig::new();
    rig.smmu.set_stream_table(Some(StreamTableConfig {
        base: PAST_RAM,
        log2_size: 8,
        format: StreamTableFormat::Linear,
    }));
    let f = rig.read(2, 0).unwrap_err();
    assert_eq!(f.event_id(), Some(event_id::F_STE_FETCH));
    assert_eq!(f.event.unwrap().dword3(), PAST_RAM + 128);
    rig.smmu.set_stream_table(Some(StreamTableConfig {
        base: PAST_RAM,
        log2_size: 8,
        format: StreamTableFormat::TwoLevel { split: 4 },
    }));
    assert_eq!(rig.read_fault(0x35, 0), Some(event_id::F_STE_FETCH));
    let table = rig.linear_stream_table(4);
    rig.write_all(table, &SteFields::stage1(PAST_RAM).encode());
    assert_eq!(rig.read_fault(0, 0), Some(event_id::F_CD_FETCH));
    // An STE at the very end of the address space.
    rig.smmu.set_stream_table(Some(StreamTableConfig {
        base: !63,
        log2_size: 1,
        format: StreamTableFormat::Linear,
    }));
    assert_eq!(rig.read_fault(0, 0), Some(event_id::F_STE_FETCH));
}

#[test]
fn address_bits_beyond_the_output_size_are_address_size_faults() {
    let rig = Rig::new();
    let s = stage1_stream(&rig, 0, CdFields::default());
    // Bit 50 in a page and in a table descriptor: beyond 48 bits.
    map(&rig, s.root, 0, 0x1000, 3, s1_page(0x5000 | 1 << 50));
    map(&rig, s.root, 0, 0x80_0000_0000, 0, table(0x6000 | 1 << 49));
    assert_eq!(rig.read_fault(0, 0x1000), Some(event_id::F_ADDR_SIZE));
    assert_eq!(
        rig.read_fault(0, 0x80_0000_0000),
        Some(event_id::F_ADDR_SIZE)
    );

    // IPS 32 bits: an output address of 4 GiB is too large, 4 GiB - 4 KiB is not.
    let rig = Rig::new();
    let s = stage1_stream(
        &rig,
        0,
        CdFields {
            ips: 0,
            ..CdFields::default()
        },
    );
    map(&rig, s.root, 0, 0x1000, 3, s1_page(1 << 32));
    map(&rig, s.root, 0, 0x2000, 3, s1_page((1 << 32) - 0x1000));
    assert_eq!(rig.read_fault(0, 0x1000), Some(event_id::F_ADDR_SIZE));
    assert_eq!(rig.read(0, 0x2000).unwrap(), (1 << 32) - 0x1000);

    // Stage 2 with a 36-bit PS.
    let rig = Rig::new();
    let ttb = rig.page();
    let table = rig.linear_stream_table(4);
    let s2 = S2Fields {
        ps: 1,
        ttb,
        ..S2Fields::default()
    };
    rig.write_all(
        table,
        &SteFields {
            s2: Some(s2),
            ..SteFields::with_config(0b110)
        }
        .encode(),
    );
    map(&rig, ttb, 1, 0x1000, 3, s2_page(1 << 36, true, true));
    let e = rig.read(0, 0x1000).unwrap_err().event.unwrap();
    assert_eq!(
        (e.id(), e.stage2(), e.dword3()),
        (event_id::F_ADDR_SIZE, true, 0x1000)
    );
}

#[test]
fn stage1_table_ipas_beyond_stage2_are_stage2_translation_faults() {
    let rig = Rig::new();
    let s2 = offset_stage2(&rig);
    let root = nested_stream(&rig, 0, s2, CdFields::default());
    // IPA 2^45: inside stage 1's 48-bit IPS, outside stage 2's 39-bit input.
    rig.write(root, table(1 << 45));
    let e = rig.read(0, 0x1000).unwrap_err().event.unwrap();
    assert_eq!(
        (e.id(), e.stage2(), e.class(), e.dword3()),
        (event_id::F_TRANSLATION, true, 1, 1 << 45)
    );
    let _ = OFFSET;
}

#[test]
fn permissions_and_the_access_flag() {
    let rig = Rig::new();
    let s = stage1_stream(&rig, 0, CdFields::default());
    map(&rig, s.root, 0, 0x1000, 3, s1_page(0x1000) | AP_RO);
    map(&rig, s.root, 0, 0x2000, 3, s1_page(0x2000) & !AP_UNPRIV);
    map(&rig, s.root, 0, 0x3000, 3, s1_page(0x3000) & !AF);
    map(&rig, s.root, 0, 0x4000, 3, s1_page(0x4000) | UXN);
    // A read-only table over 1 GiB at VA 1 GiB.
    map(
        &rig,
        s.root,
        0,
        0x4000_0000,
        1,
        table(rig.page()) | AP_TABLE_RO,
    );
    map(&rig, s.root, 0, 0x4000_0000, 3, s1_page(0x5000));
    let privileged = Access {
        privileged: true,
        ..Access::READ
    };
    let fetch = Access {
        instruction: true,
        ..Access::READ
    };
    let kind = |va, access| {
        rig.translate(0, None, va, access)
            .err()
            .and_then(|f| f.event_id())
    };
    assert_eq!(kind(0x1000, Access::READ), None);
    assert_eq!(kind(0x1000, Access::WRITE), Some(event_id::F_PERMISSION));
    assert_eq!(
        kind(0x2000, Access::READ),
        Some(event_id::F_PERMISSION),
        "EL1 only"
    );
    assert_eq!(kind(0x2000, privileged), None);
    assert_eq!(kind(0x3000, Access::READ), Some(event_id::F_ACCESS));
    assert_eq!(kind(0x4000, Access::READ), None);
    assert_eq!(kind(0x4000, fetch), Some(event_id::F_PERMISSION));
    assert_eq!(kind(0x4000_0000, Access::READ), None);
    assert_eq!(
        kind(0x4000_0000, Access::WRITE),
        Some(event_id::F_PERMISSION),
        "APTable"
    );

    // AFFD: AF = 0 no longer faults; HAD0: APTable no longer applies.
    let rig = Rig::new();
    let s = stage1_stream(
        &rig,
        0,
        CdFields {
            affd: true,
            had0: true,
            ..CdFields::default()
        },
    );
    map(&rig, s.root, 0, 0x3000, 3, s1_page(0x3000) & !AF);
    map(
        &rig,
        s.root,
        0,
        0x4000_0000,
        1,
        table(rig.page()) | AP_TABLE_RO,
    );
    map(&rig, s.root, 0, 0x4000_0000, 3, s1_page(0x5000));
    assert_eq!(rig.read(0, 0x3000).unwrap(), 0x3000);
    assert!(rig.translate(0, None, 0x4000_0000, Access::WRITE).is_ok());
}

#[test]
fn addresses_outside_the_configured_regions_are_translation_faults() {
    let rig = Rig::new();
    let s = stage1_stream(
        &rig,
        0,
        CdFields {
            t0sz: 25,
            ..CdFields::default()
        },
    );
    map(&rig, s.root, 1, 0x1000, 3, s1_page(0x1000));
    assert!(rig.read(0, 0x1000).is_ok());
    // Bit 39 is above a 39-bit region; the TTB1 half (bit 55 set) is disabled (EPD1).
    assert_eq!(
        rig.read_fault(0, 1 << 39 | 0x1000),
        Some(event_id::F_TRANSLATION)
    );
    assert_eq!(
        rig.read_fault(0, 0xffff_ff80_0000_1000),
        Some(event_id::F_TRANSLATION)
    );
    // Top byte ignored: tags in bits 63:56 do not matter.
    let rig = Rig::new();
    let s = stage1_stream(
        &rig,
        0,
        CdFields {
            t0sz: 25,
            tbi: 1,
            ..CdFields::default()
        },
    );
    map(&rig, s.root, 1, 0x1000, 3, s1_page(0x1000));
    assert_eq!(rig.read(0, 0x5a00_0000_0000_1008).unwrap(), 0x1008);
}

/// xorshift64*: deterministic garbage.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly small addresses in the tables' area, so pointers often land on garbage.
    fn pointer(&mut self) -> u64 {
        match self.next() % 4 {
            0 => self.next(),
            _ => TABLES + self.next() % GARBAGE_SIZE,
        }
    }
}

const TABLES: u64 = 16 << 20;
const GARBAGE_SIZE: u64 = 1 << 20;

#[test]
fn garbage_tables_never_hang_or_panic() {
    for seed in 1..40u64 {
        let rig = Rig::new();
        let mut g = Garbage(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for addr in (TABLES..TABLES + GARBAGE_SIZE).step_by(8) {
            // Many descriptors valid, many tables, some with plausible pointers.
            let v = match g.next() % 3 {
                0 => g.next(),
                1 => g.pointer() & !0xfff | 3,
                _ => g.pointer() | g.next() & 0xfff,
            };
            rig.write(addr, v);
        }
        rig.smmu.set_stream_table(Some(StreamTableConfig {
            base: TABLES,
            log2_size: 8,
            format: if seed % 2 == 0 {
                StreamTableFormat::Linear
            } else {
                StreamTableFormat::TwoLevel { split: 4 }
            },
        }));
        if seed % 3 == 0 {
            let [d2, d3] = S2Fields {
                ttb: g.pointer(),
                ..S2Fields::default()
            }
            .encode();
            rig.smmu
                .set_host_stage2(Some(crate::host_iommu::smmuv3::HostStage2 {
                    ste_dword2: d2,
                    ste_dword3: d3,
                }));
            use crate::host_iommu::nested::NestedHostIommu;
            let _ = rig.smmu.install_ste(
                3,
                [g.next() & crate::host_iommu::nested::VSTE0_ALLOWED | 1, 0],
            );
        }
        for _ in 0..300 {
            let access = Access {
                write: g.next().is_multiple_of(2),
                privileged: g.next().is_multiple_of(2),
                instruction: g.next().is_multiple_of(5),
            };
            let sid = (g.next() % 300) as u32;
            let ssid = g
                .next()
                .is_multiple_of(3)
                .then(|| (g.next() % (1 << 20)) as u32);
            let address = g.next() >> (g.next() % 64);
            if let Ok(t) = rig.translate(sid, ssid, address, access) {
                assert!(t.contains(address) && t.permits(access), "{t:x?}");
            }
            if g.next().is_multiple_of(16) {
                let _ = rig.smmu.execute(&[Command([g.next(), g.next()])]);
            }
        }
        // Stream table registers with any values.
        for _ in 0..20 {
            rig.smmu.set_stream_table(Some(StreamTableConfig {
                base: g.next(),
                log2_size: (g.next() % 70) as u32,
                format: if g.next().is_multiple_of(2) {
                    StreamTableFormat::Linear
                } else {
                    StreamTableFormat::TwoLevel {
                        split: (g.next() % 70) as u32,
                    }
                },
            }));
            let _ = rig.read(g.next() as u32, g.next());
        }
        while rig.smmu.pop_event().is_some() {}
    }
}
