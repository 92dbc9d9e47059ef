//! The TLB and configuration caches against each command: a table changed behind the
//! SMMU's back stays invisible until a command that covers it, and becomes visible after.

use std::sync::{Arc, Mutex};

use super::encode::*;
use super::walks::{nested_stream, offset_stage2, OFFSET};
use super::*;
use crate::host_iommu::smmuv3::wire::{event_id, Command};
use crate::host_iommu::smmuv3::{DeviceEffect, DeviceNotifier};

const VA: u64 = 0x5555_0000_1000;
const OLD: u64 = 0xa000;
const NEW: u64 = 0xb000;

/// A stage-1 stream 0 (ASID 1, VMID 0) mapping VA to OLD, already translated (cached),
/// then remapped to NEW in memory. `leaf` encodes the page.
fn stale(leaf: fn(u64) -> u64) -> (Rig, Stream1) {
    let rig = Rig::new();
    let s = stage1_stream(
        &rig,
        0,
        CdFields {
            asid: 1,
            ..CdFields::default()
        },
    );
    map(&rig, s.root, 0, VA, 3, leaf(OLD));
    assert_eq!(rig.read(0, VA).unwrap(), OLD);
    map(&rig, s.root, 0, VA, 3, leaf(NEW));
    assert_eq!(rig.read(0, VA).unwrap(), OLD, "cached");
    (rig, s)
}

fn after(leaf: fn(u64) -> u64, cmd: Command) -> u64 {
    let (rig, _) = stale(leaf);
    rig.smmu.execute(&[cmd]).unwrap();
    rig.read(0, VA).unwrap()
}

#[test]
fn each_tlbi_removes_what_it_names_and_nothing_it_does_not() {
    let cases = [
        (cmd::tlbi_nh_va(0, 1, VA), NEW),
        (cmd::tlbi_nh_va(0, 2, VA), OLD),
        (cmd::tlbi_nh_va(1, 1, VA), OLD),
        (cmd::tlbi_nh_va(0, 1, VA + 0x1000), OLD),
        (cmd::tlbi_nh_va_range(0, 1, VA - 0x1000, 1, 0), NEW),
        (cmd::tlbi_nh_va_range(0, 1, VA - 0x2000, 1, 0), OLD),
        (cmd::tlbi_nh_vaa(0, VA), NEW),
        (cmd::tlbi_nh_vaa(1, VA), OLD),
        (cmd::tlbi_nh_asid(0, 1), NEW),
        (cmd::tlbi_nh_asid(0, 2), OLD),
        (cmd::tlbi_nh_all(0), NEW),
        (cmd::tlbi_nh_all(3), OLD),
        (cmd::tlbi_s12_vmall(0), NEW),
        (cmd::tlbi_s12_vmall(5), OLD),
        (cmd::tlbi_s2_ipa(0, OLD), OLD),
        (cmd::tlbi_nsnh_all(), NEW),
        (cmd::cfgi_ste(0), OLD),
        (cmd::cfgi_cd(0, 0), OLD),
        (cmd::sync_msi(0, 0), OLD),
    ];
    for (c, expected) in cases {
        assert_eq!(after(s1_page, c), expected, "{c:x?}");
    }
}

#[test]
fn global_translations_match_every_asid() {
    let global = |oa| s1_page(oa) & !NG;
    assert_eq!(after(global, cmd::tlbi_nh_asid(0, 1)), OLD);
    assert_eq!(after(global, cmd::tlbi_nh_va(0, 9, VA)), NEW);
    assert_eq!(after(global, cmd::tlbi_nh_all(0)), NEW);
}

#[test]
fn cfgi_ste_and_cfgi_cd_reread_the_configuration() {
    let (rig, s) = stale(s1_page);
    rig.write_all(s.ste_addr, &SteFields::with_config(0).encode());
    rig.smmu.execute(&[cmd::cfgi_ste(1)]).unwrap();
    assert_eq!(rig.read(0, VA).unwrap(), OLD, "another stream's STE");
    rig.smmu.execute(&[cmd::cfgi_ste(0)]).unwrap();
    assert_eq!(rig.read(0, VA).unwrap_err().event, None, "now an abort STE");

    for (c, invalidates) in [
        (cmd::cfgi_cd(0, 1), false),
        (cmd::cfgi_cd(1, 0), false),
        (cmd::cfgi_cd(0, 0), true),
        (cmd::cfgi_cd_all(0), true),
        (cmd::cfgi_ste(0), true),
        (cmd::cfgi_ste_range(1, 0), true),
        (cmd::cfgi_ste_range(2, 0), false),
        (cmd::cfgi_ste_range(0, 31), true),
    ] {
        let (rig, s) = stale(s1_page);
        rig.write_all(
            s.cd_addr,
            &CdFields {
                valid: false,
                ..CdFields::default()
            }
            .encode(),
        );
        rig.smmu.execute(&[c]).unwrap();
        let seen = rig.read(0, VA).err().and_then(|f| f.event_id());
        assert_eq!(seen == Some(event_id::C_BAD_CD), invalidates, "{c:x?}");
    }
}

#[test]
fn stage2_translations_go_with_s2_ipa_and_vmall() {
    for (c, expected) in [
        (cmd::tlbi_s2_ipa(7, 0x3000), 0x40_0000),
        (cmd::tlbi_s2_ipa(8, 0x3000), 0x30_0000),
        (cmd::tlbi_s2_ipa(7, 0x4000), 0x30_0000),
        (cmd::tlbi_nh_all(7), 0x30_0000),
        (cmd::tlbi_s12_vmall(7), 0x40_0000),
    ] {
        let rig = Rig::new();
        let ttb = rig.page();
        let table = rig.linear_stream_table(4);
        let s2 = S2Fields {
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
        map(&rig, ttb, 1, 0x3000, 3, s2_page(0x30_0000, true, true));
        assert_eq!(rig.read(0, 0x3000).unwrap(), 0x30_0000);
        map(&rig, ttb, 1, 0x3000, 3, s2_page(0x40_0000, true, true));
        rig.smmu.execute(&[c]).unwrap();
        assert_eq!(rig.read(0, 0x3000).unwrap(), expected, "{c:x?}");
    }
}

#[test]
fn stage2_walk_cache_goes_with_stage2_invalidations_only() {
    for (c, fresh) in [
        (cmd::tlbi_nh_all(7), false),
        (cmd::tlbi_s2_ipa(7, 0x5000), true),
        (cmd::tlbi_s12_vmall(7), true),
        (cmd::tlbi_s12_vmall(8), false),
        (cmd::tlbi_nsnh_all(), true),
    ] {
        let rig = Rig::new();
        let ttb = rig.page();
        let streams = rig.linear_stream_table(4);
        let s2 = S2Fields {
            ttb,
            ..S2Fields::default()
        };
        rig.write_all(
            streams,
            &SteFields {
                s2: Some(s2),
                ..SteFields::with_config(0b110)
            }
            .encode(),
        );
        map(&rig, ttb, 1, 0x3000, 3, s2_page(0x30_0000, true, true));
        map(&rig, ttb, 1, 0x5000, 3, s2_page(0x50_0000, true, true));
        assert_eq!(rig.read(0, 0x3000).unwrap(), 0x30_0000);
        // Stage 2's level-2 entry for IPA [0, 2 MiB) now points at another last-level
        // table. A walk may still use the old one (the walk cache, as the architecture
        // allows) until a stage-2 invalidation; after one it must not.
        let l3 = rig.page();
        rig.write(l3 + 5 * 8, s2_page(0x70_0000, true, true));
        map(&rig, ttb, 1, 0, 2, table(l3));
        rig.smmu.execute(&[c]).unwrap();
        let expected = if fresh { 0x70_0000 } else { 0x50_0000 };
        assert_eq!(rig.read(0, 0x5000).unwrap(), expected, "{c:x?}");
    }
}

#[test]
fn nested_translations_go_with_nh_and_vmall_of_their_vmid() {
    for (c, fresh) in [
        (cmd::tlbi_nh_va(7, 1, 0x1000), true),
        (cmd::tlbi_nh_va(0, 1, 0x1000), false),
        (cmd::tlbi_s12_vmall(7), true),
    ] {
        let rig = Rig::new();
        let s2 = offset_stage2(&rig);
        let root = nested_stream(&rig, 0, s2, CdFields::default());
        map_at(&rig, 12, OFFSET, root, 0, 0x1000, 3, s1_page(0x5000));
        assert_eq!(rig.read(0, 0x1000).unwrap(), 0x5000 + OFFSET);
        map_at(&rig, 12, OFFSET, root, 0, 0x1000, 3, s1_page(0x6000));
        rig.smmu.execute(&[c]).unwrap();
        let expected = if fresh { 0x6000 } else { 0x5000 };
        assert_eq!(rig.read(0, 0x1000).unwrap(), expected + OFFSET, "{c:x?}");
    }
}

#[test]
fn cmd_sync_writes_its_msi_data() {
    let rig = Rig::new();
    rig.write(0x9000, u64::MAX);
    rig.smmu.execute(&[cmd::sync_msi(0x9000, 0)]).unwrap();
    assert_eq!(rig.read_u32(0x9000), 0);
    assert_eq!(rig.read_u32(0x9004), u32::MAX, "a 32-bit write");
    rig.smmu
        .execute(&[cmd::sync_msi(0x9004, 0x1234_5678)])
        .unwrap();
    assert_eq!(rig.read_u32(0x9004), 0x1234_5678);
    rig.smmu.execute(&[cmd::sync_msi(RAM_SIZE, 1)]).unwrap();
    assert_eq!(rig.smmu.sync_write_failures(), 1);
}

#[test]
fn illegal_commands_stop_execution_where_they_are() {
    let rig = Rig::new();
    let err = rig
        .smmu
        .execute(&[cmd::tlbi_nh_all(0), Command([0xff, 0]), cmd::tlbi_nh_all(0)])
        .unwrap_err();
    assert_eq!((err.0, err.1.opcode), (1, 0xff));
    assert_eq!(
        rig.smmu
            .execute(&[Command([0x20, 0])])
            .unwrap_err()
            .1
            .opcode,
        0x20,
        "EL2"
    );
    let bad_resume = Command([0x44 | 3 << 12, 0]);
    assert!(rig.smmu.execute(&[bad_resume]).is_err());
    let bad_pri = Command([0x41, 3 << 12]);
    assert!(rig.smmu.execute(&[bad_pri]).is_err());
}

#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<DeviceEffect>>);

impl DeviceNotifier for Recorder {
    fn notify(&self, effect: DeviceEffect) {
        self.0.lock().unwrap().push(effect);
    }
}

#[test]
fn atc_inv_reaches_the_device() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)]).unwrap();
    let recorder = Arc::new(Recorder::default());
    let smmu = Smmuv3::new(mem, Smmuv3Caps::default())
        .unwrap()
        .with_notifier(recorder.clone());
    smmu.execute(&[
        cmd::atc_inv(3, Some(4), 0x12_3000, 2),
        cmd::atc_inv(3, None, 0, 52),
    ])
    .unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            DeviceEffect::AtcInvalidate {
                sid: 3,
                ssid: Some(4),
                start: 0x12_0000,
                last: 0x12_3fff
            },
            DeviceEffect::AtcInvalidate {
                sid: 3,
                ssid: None,
                start: 0,
                last: u64::MAX
            },
        ]
    );
}
