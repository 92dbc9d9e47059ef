//! Stream table lookups, STE and CD validation, and substream selection, with the events
//! the architecture prescribes for each bad configuration.

use super::encode::*;
use super::*;
use crate::host_iommu::smmuv3::wire::event_id;
use crate::host_iommu::smmuv3::{StallModel, Termination};

fn stream_with(rig: &Rig, sid: u32, ste: SteFields) {
    let table = rig.linear_stream_table(4);
    rig.write_all(table + u64::from(sid) * 64, &ste.encode());
}

#[test]
fn invalid_abort_and_bypass_streams() {
    let rig = Rig::new();
    let table = rig.linear_stream_table(4);
    rig.write_all(
        table + 64,
        &SteFields {
            valid: false,
            ..SteFields::with_config(0b100)
        }
        .encode(),
    );
    rig.write_all(table + 2 * 64, &SteFields::with_config(0b000).encode());
    rig.write_all(table + 3 * 64, &SteFields::with_config(0b100).encode());
    rig.write_all(table + 4 * 64, &SteFields::with_config(0b010).encode());
    assert_eq!(rig.read_fault(1, 0x1000), Some(event_id::C_BAD_STE));
    let f = rig.read(2, 0x1000).unwrap_err();
    assert_eq!(
        (f.event, f.recorded, f.termination),
        (None, false, Termination::Abort)
    );
    assert_eq!(rig.read(3, 0xdead_beef).unwrap(), 0xdead_beef);
    assert_eq!(
        rig.read(4, 0x1000).unwrap_err().event,
        None,
        "Config 0b0xx aborts silently"
    );
    let e = rig.smmu.pop_event().unwrap();
    assert_eq!((e.id(), e.sid()), (event_id::C_BAD_STE, 1));
    assert!(rig.smmu.pop_event().is_none(), "aborts record nothing");
}

#[test]
fn illegal_stage2_fields_are_bad_stes() {
    let good = S2Fields {
        ttb: 0x20_0000,
        ..S2Fields::default()
    };
    let bad = [
        S2Fields { tg: 3, ..good },
        S2Fields { sl0: 3, ..good },
        S2Fields {
            aa64: false,
            ..good
        },
        S2Fields { endi: true, ..good },
        S2Fields { t0sz: 15, ..good },
        S2Fields { t0sz: 40, ..good },
        // 39-bit IPA from level 2 would need 2^18 entries: more than 16 tables.
        S2Fields { sl0: 0, ..good },
        // 30-bit IPA from level 0 resolves nothing there.
        S2Fields {
            t0sz: 34,
            sl0: 2,
            ..good
        },
        // S2TTB beyond a 32-bit PA size.
        S2Fields {
            ps: 0,
            ttb: 1 << 32,
            ..good
        },
    ];
    let rig = Rig::new();
    stream_with(
        &rig,
        0,
        SteFields {
            s2: Some(good),
            ..SteFields::with_config(0b110)
        },
    );
    assert_eq!(
        rig.read_fault(0, 0x1000),
        Some(event_id::F_TRANSLATION),
        "valid, empty tables"
    );
    for s2 in bad {
        let rig = Rig::new();
        stream_with(
            &rig,
            0,
            SteFields {
                s2: Some(s2),
                ..SteFields::with_config(0b110)
            },
        );
        assert_eq!(
            rig.read_fault(0, 0x1000),
            Some(event_id::C_BAD_STE),
            "{s2:?}"
        );
    }
}

#[test]
fn illegal_stage1_fields_are_bad_stes() {
    let caps = Smmuv3Caps {
        ssid_bits: 4,
        ..Smmuv3Caps::default()
    };
    let base = SteFields::stage1(0x10_0000);
    for ste in [
        SteFields {
            s1_cd_max: 5,
            ..base
        },
        SteFields {
            s1_cd_max: 2,
            s1_fmt: 3,
            ..base
        },
        SteFields { strw: 2, ..base },
    ] {
        let rig = Rig::with_caps(caps);
        stream_with(&rig, 0, ste);
        assert_eq!(
            rig.read_fault(0, 0x1000),
            Some(event_id::C_BAD_STE),
            "{ste:?}"
        );
    }
    let forced = Smmuv3Caps {
        stall_model: StallModel::StallForced,
        ..caps
    };
    let rig = Rig::with_caps(forced);
    stream_with(
        &rig,
        0,
        SteFields {
            s1_stalld: true,
            ..base
        },
    );
    assert_eq!(rig.read_fault(0, 0x1000), Some(event_id::C_BAD_STE));
    let no_s2 = Smmuv3Caps {
        stage2: false,
        ..caps
    };
    let rig = Rig::with_caps(no_s2);
    stream_with(
        &rig,
        0,
        SteFields {
            s2: Some(S2Fields::default()),
            ..SteFields::with_config(0b110)
        },
    );
    assert_eq!(
        rig.read_fault(0, 0x1000),
        Some(event_id::C_BAD_STE),
        "stage 2 not implemented"
    );
}

#[test]
fn illegal_cds_are_bad_cds() {
    let good = CdFields::default();
    let bad = [
        CdFields {
            valid: false,
            ..good
        },
        CdFields {
            aa64: false,
            ..good
        },
        CdFields { endi: true, ..good },
        CdFields { t0sz: 40, ..good },
        CdFields { t0sz: 15, ..good },
        CdFields { tg0: 3, ..good },
        CdFields { ips: 7, ..good },
        // TTB0 beyond the 32-bit IPS.
        CdFields {
            ips: 0,
            ttb0: 1 << 32,
            ..good
        },
        CdFields {
            epd1: false,
            tg1: 0,
            ..good
        },
    ];
    let rig = Rig::new();
    stage1_stream(&rig, 0, good);
    assert_eq!(
        rig.read_fault(0, 0x1000),
        Some(event_id::F_TRANSLATION),
        "valid, empty tables"
    );
    for cd in bad {
        let rig = Rig::new();
        stage1_stream(&rig, 0, cd);
        let f = rig.read(0, 0x1000).unwrap_err();
        assert_eq!(f.event_id(), Some(event_id::C_BAD_CD), "{cd:?}");
        assert!(f.recorded);
    }
    let rig = Rig::with_caps(Smmuv3Caps {
        stall_model: StallModel::TerminateOnly,
        ..Smmuv3Caps::default()
    });
    stage1_stream(
        &rig,
        0,
        CdFields {
            stall: true,
            ..good
        },
    );
    assert_eq!(
        rig.read_fault(0, 0x1000),
        Some(event_id::C_BAD_CD),
        "no stalls to enable"
    );
}

#[test]
fn stream_ids_beyond_the_table_are_bad() {
    let rig = Rig::new();
    rig.linear_stream_table(4);
    let f = rig.read(16, 0).unwrap_err();
    assert_eq!(f.event_id(), Some(event_id::C_BAD_STREAMID));
    assert_eq!(f.event.unwrap().sid(), 16);
    let rig = Rig::new();
    assert_eq!(
        rig.read_fault(0, 0),
        Some(event_id::C_BAD_STREAMID),
        "no stream table"
    );
}

#[test]
fn two_level_stream_table() {
    let rig = Rig::new();
    // SPLIT 6: level-2 tables of up to 64 STEs; SID 0x1c5 -> L1 index 7, L2 index 5.
    let l1 = rig.page();
    let l2 = rig.page();
    rig.write(l1 + 7 * 8, l2 | 4); // SPAN 4: 8 STEs
    rig.write_all(l2 + 5 * 64, &SteFields::with_config(0b100).encode());
    rig.smmu.set_stream_table(Some(StreamTableConfig {
        base: l1,
        log2_size: 12,
        format: StreamTableFormat::TwoLevel { split: 6 },
    }));
    assert_eq!(rig.read(0x1c5, 0x1234).unwrap(), 0x1234);
    // Index 8 is beyond SPAN's 8 STEs; L1 index 6 is invalid (SPAN 0); SID 4096 is
    // beyond LOG2SIZE.
    assert_eq!(rig.read_fault(0x1c8, 0), Some(event_id::C_BAD_STREAMID));
    assert_eq!(rig.read_fault(0x185, 0), Some(event_id::C_BAD_STREAMID));
    assert_eq!(rig.read_fault(4096, 0), Some(event_id::C_BAD_STREAMID));
}

/// A stream with 2^cd_max CDs in a table of `fmt`, each CD's stage 1 mapping page 0 to
/// 0x1000 * (1 + its index); CDs `valid` get a TTB, others stay zero (invalid).
fn substream_rig(cd_max: u64, fmt: u64, dss: u64, valid: &[u32]) -> Rig {
    let rig = Rig::new();
    let table = rig.linear_stream_table(4);
    let leaf_bits = match fmt {
        1 => 6,
        2 => 10,
        _ => cd_max,
    };
    let l1 = if fmt == 0 {
        rig.alloc(64 << cd_max)
    } else {
        rig.page()
    };
    let mut leaves = std::collections::HashMap::new();
    for &index in valid {
        let index = u64::from(index);
        let cd_addr = if fmt == 0 {
            l1 + index * 64
        } else {
            let leaf = *leaves.entry(index >> leaf_bits).or_insert_with(|| {
                let leaf = rig.alloc(64 << leaf_bits);
                rig.write(l1 + (index >> leaf_bits) * 8, leaf | 1);
                leaf
            });
            leaf + (index & ((1 << leaf_bits) - 1)) * 64
        };
        let root = rig.page();
        map(&rig, root, 0, 0, 3, s1_page(0x1000 * (1 + index)));
        rig.write_all(
            cd_addr,
            &CdFields {
                ttb0: root,
                asid: index,
                ..CdFields::default()
            }
            .encode(),
        );
    }
    let ste = SteFields {
        s1_cd_max: cd_max,
        s1_fmt: fmt,
        s1_dss: dss,
        ..SteFields::stage1(l1)
    };
    rig.write_all(table, &ste.encode());
    rig
}

fn read_ssid(rig: &Rig, ssid: Option<u32>) -> Result<u64, Option<u8>> {
    rig.translate(0, ssid, 0x10, Access::READ)
        .map(|t| t.output_of(0x10))
        .map_err(|f| f.event_id())
}

#[test]
fn substreams_in_linear_and_two_level_cd_tables() {
    for fmt in [0, 1, 2] {
        let rig = substream_rig(11, fmt, 2, &[0, 5, 70, 1500]);
        assert_eq!(read_ssid(&rig, Some(5)), Ok(0x6010), "fmt {fmt}");
        assert_eq!(read_ssid(&rig, Some(70)), Ok(0x47010), "fmt {fmt}");
        assert_eq!(read_ssid(&rig, Some(1500)), Ok(0x5dd010), "fmt {fmt}");
        assert_eq!(
            read_ssid(&rig, None),
            Ok(0x1010),
            "S1DSS=2: CD 0, fmt {fmt}"
        );
        assert_eq!(
            read_ssid(&rig, Some(0)),
            Err(Some(event_id::C_BAD_SUBSTREAMID))
        );
        assert_eq!(
            read_ssid(&rig, Some(2048)),
            Err(Some(event_id::C_BAD_SUBSTREAMID))
        );
        assert_eq!(
            read_ssid(&rig, Some(6)),
            Err(Some(event_id::C_BAD_CD)),
            "zeroed CD"
        );
    }
    // Two-level tables: SSID 200 is under an L1 descriptor never made valid.
    let rig = substream_rig(11, 1, 2, &[5]);
    assert_eq!(
        read_ssid(&rig, Some(200)),
        Err(Some(event_id::C_BAD_SUBSTREAMID))
    );
}

#[test]
fn transactions_without_a_substream_follow_s1dss() {
    let rig = substream_rig(3, 0, 0, &[1]);
    assert_eq!(
        read_ssid(&rig, None),
        Err(Some(event_id::F_STREAM_DISABLED))
    );
    assert_eq!(read_ssid(&rig, Some(1)), Ok(0x2010));
    let rig = substream_rig(3, 0, 1, &[1]);
    assert_eq!(read_ssid(&rig, None), Ok(0x10), "stage 1 bypassed");
    // Without substreams (S1CDMax 0), any SSID is bad.
    let rig = substream_rig(0, 0, 0, &[0]);
    assert_eq!(read_ssid(&rig, None), Ok(0x1010));
    assert_eq!(
        read_ssid(&rig, Some(0)),
        Err(Some(event_id::C_BAD_SUBSTREAMID))
    );
}
