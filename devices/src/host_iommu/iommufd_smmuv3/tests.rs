use std::mem::offset_of;

use iommufd_bindings::iommufd as uapi;

use super::*;

/// A host SMMU with every feature the command checks look at.
const FULL: HostCommandFeatures = HostCommandFeatures {
    asid_bits: 16,
    ssid_bits: 20,
    ats: true,
    range_invalidation: true,
    ds: true,
};
/// One with none of them.
const BARE: HostCommandFeatures = HostCommandFeatures {
    asid_bits: 8,
    ssid_bits: 0,
    ats: false,
    range_invalidation: false,
    ds: false,
};

fn cmd(op: u8, dword0_fields: u64, dword1: u64) -> Command {
    Command([u64::from(op) | dword0_fields, dword1])
}

fn bytes_of<T>(value: &T) -> &[u8] {
    // SAFETY: reads the plain-integer bindgen structs these tests build.
    unsafe { std::slice::from_raw_parts((value as *const T).cast(), size_of::<T>()) }
}

#[test]
fn layouts_match_the_uapi() {
    // Sizes from include/uapi/linux/iommufd.h, and the bindgen structs agree.
    assert_eq!(size_of::<HwptArmSmmuv3>(), 16);
    assert_eq!(size_of::<uapi::iommu_hwpt_arm_smmuv3>(), 16);
    assert_eq!(align_of::<uapi::iommu_hwpt_arm_smmuv3>(), 8);
    assert_eq!(size_of::<ViommuArmSmmuv3Invalidate>(), 16);
    assert_eq!(size_of::<uapi::iommu_viommu_arm_smmuv3_invalidate>(), 16);
    assert_eq!(
        size_of::<uapi::iommu_hw_info_arm_smmuv3>(),
        HW_INFO_ARM_SMMUV3_SIZE
    );
    assert_eq!(offset_of!(HwInfoArmSmmuv3, flags), 0);
    assert_eq!(offset_of!(HwInfoArmSmmuv3, idr), 8);
    assert_eq!(offset_of!(HwInfoArmSmmuv3, iidr), 32);
    assert_eq!(offset_of!(HwInfoArmSmmuv3, aidr), 36);
    assert_eq!(offset_of!(uapi::iommu_hw_info_arm_smmuv3, idr), 8);
    assert_eq!(offset_of!(uapi::iommu_hw_info_arm_smmuv3, iidr), 32);
    assert_eq!(offset_of!(uapi::iommu_hw_info_arm_smmuv3, aidr), 36);
    assert_eq!(size_of::<uapi::iommufd_vevent_header>(), VEVENT_HEADER_SIZE);
    assert_eq!(size_of::<uapi::iommu_vevent_arm_smmuv3>(), EVENT_SIZE);
}

#[test]
fn type_numbers_match_the_uapi() {
    assert_eq!(
        HWPT_DATA_ARM_SMMUV3,
        uapi::iommu_hwpt_data_type_IOMMU_HWPT_DATA_ARM_SMMUV3
    );
    assert_eq!(
        VIOMMU_TYPE_ARM_SMMUV3,
        uapi::iommu_viommu_type_IOMMU_VIOMMU_TYPE_ARM_SMMUV3
    );
    assert_eq!(
        VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
        uapi::iommu_hwpt_invalidate_data_type_IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3
    );
    assert_eq!(
        HW_INFO_TYPE_ARM_SMMUV3,
        uapi::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_ARM_SMMUV3
    );
    assert_eq!(
        VEVENTQ_TYPE_ARM_SMMUV3,
        uapi::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_ARM_SMMUV3
    );
    assert_eq!(
        VEVENT_FLAG_LOST_EVENTS,
        uapi::iommu_veventq_flag_IOMMU_VEVENTQ_FLAG_LOST_EVENTS
    );
}

#[test]
fn nested_ste_is_the_guest_words_little_endian() {
    // V, Config = S1 translate, S1ContextPtr, S1CDMax 3; EATS translate, S1CIR WB.
    let vste = [1 | 0b101 << 1 | 0x1234_5000 | 3 << 59, 1 << 28 | 1 << 2];
    let data = HwptArmSmmuv3::from_vste(7, vste).unwrap();
    assert_eq!(data.ste(), vste);
    let reference = uapi::iommu_hwpt_arm_smmuv3 {
        ste: [vste[0].to_le(), vste[1].to_le()],
    };
    assert_eq!(&data.as_bytes()[..], bytes_of(&reference));
    let bytes = data.as_bytes();
    assert_eq!(bytes[0], 0x0b, "V and Config in the first byte");
    assert_eq!(bytes[7], 0x18, "S1CDMax at bits 63:59");
    assert_eq!(bytes[8], 0x04, "dword 1 starts at byte 8");
    assert_eq!(bytes[11], 0x10, "EATS at dword 1 bits 29:28");
}

#[test]
fn nested_ste_refuses_host_fields_and_zeroes_an_invalid_ste() {
    assert_eq!(
        HwptArmSmmuv3::from_vste(1, [0, u64::MAX]).unwrap().ste(),
        [0, 0],
        "V = 0 is sent as the kernel stores it"
    );
    assert!(
        HwptArmSmmuv3::from_vste(1, [1 | 0b110 << 1, 0]).is_err(),
        "stage 2 is the host's"
    );
    assert!(
        HwptArmSmmuv3::from_vste(1, [1 | 0b100 << 1, 1 << 19]).is_err(),
        "MEV"
    );
    assert!(matches!(
        HwptArmSmmuv3::from_vste(9, [1 | 0b100 << 1 | 1 << 52, 0]),
        Err(NestedError::IllegalSte { stream: 9, .. })
    ));
}

#[test]
fn accepted_commands_keep_their_fields_and_lose_the_vmid() {
    let va = cmd(
        opcode::TLBI_NH_VA,
        0xabcd << 48 | 0x77 << 32 | 3 << 12 | 1 << 20,
        0xdead_b000 | 1 << 10 | 3 << 8 | 1,
    );
    let entry = encode_invalidation(&FULL, &va).unwrap();
    assert_eq!(
        entry.command().0,
        [va.0[0] & !(0xffff << 32), va.0[1]],
        "VMID cleared, the rest as the guest wrote it"
    );
    let reference = uapi::iommu_viommu_arm_smmuv3_invalidate {
        cmd: entry.command().0.map(u64::to_le),
    };
    assert_eq!(
        ViommuArmSmmuv3Invalidate::slice_as_bytes(&[entry]),
        bytes_of(&reference)
    );
    for ok in [
        cmd(opcode::TLBI_NSNH_ALL, 0, 0),
        cmd(opcode::TLBI_NH_ALL, 0, 0),
        cmd(opcode::TLBI_NH_ASID, 0x1234 << 48, 0),
        cmd(opcode::TLBI_NH_VAA, 0, 0x4000 | 1),
        cmd(opcode::CFGI_CD, 5 << 32 | 0x42 << 12, 1),
        cmd(opcode::CFGI_CD_ALL, 5 << 32, 0),
        cmd(
            opcode::ATC_INV,
            5 << 32 | 1 << 11 | 3 << 12 | 1 << 9,
            0x8000 | 52,
        ),
    ] {
        assert_eq!(
            encode_invalidation(&FULL, &ok).map(|e| e.command()),
            Ok(ok),
            "{ok:x?}"
        );
    }
}

#[test]
fn commands_the_kernel_does_not_forward_are_refused() {
    for op in [
        opcode::CFGI_STE,
        opcode::CFGI_STE_RANGE,
        opcode::SYNC,
        opcode::TLBI_S12_VMALL,
        opcode::TLBI_S2_IPA,
        opcode::TLBI_EL2_ALL,
        opcode::PRI_RESP,
        opcode::RESUME,
        opcode::PREFETCH_CONFIG,
    ] {
        assert_eq!(
            encode_invalidation(&FULL, &cmd(op, 0, 0)),
            Err(RefusedCommand::Opcode(op))
        );
    }
}

#[test]
fn fields_outside_an_opcodes_list_are_refused() {
    let refused = |features: &HostCommandFeatures, c: Command| {
        matches!(
            encode_invalidation(features, &c),
            Err(RefusedCommand::Fields { .. })
        )
    };
    assert!(refused(&FULL, cmd(opcode::TLBI_NSNH_ALL, 1 << 40, 0)));
    assert!(refused(&FULL, cmd(opcode::TLBI_NH_ALL, 0, 1)));
    assert!(refused(&FULL, cmd(opcode::TLBI_NH_ALL, 1 << 48, 0)), "ASID");
    assert!(refused(&FULL, cmd(opcode::TLBI_NH_VAA, 1 << 48, 0x1000)));
    assert!(refused(&FULL, cmd(opcode::CFGI_CD_ALL, 1 << 12, 0)), "SSID");
    assert!(refused(&FULL, cmd(opcode::CFGI_CD, 1 << 11, 0)), "no SSV");
    assert!(refused(&FULL, cmd(opcode::ATC_INV, 0, 1 << 6)), "RES0");
    // Fields that exist only with a host feature.
    let asid16 = cmd(opcode::TLBI_NH_ASID, 0x100 << 48, 0);
    assert!(encode_invalidation(&FULL, &asid16).is_ok());
    assert!(refused(&BARE, asid16), "8-bit ASIDs");
    assert!(encode_invalidation(&BARE, &cmd(opcode::TLBI_NH_ASID, 0xff << 48, 0)).is_ok());
    let ranged = cmd(opcode::TLBI_NH_VAA, 1 << 12, 0x1000 | 1 << 10);
    assert!(encode_invalidation(&FULL, &ranged).is_ok());
    assert!(refused(&BARE, ranged), "no range invalidation");
    assert!(encode_invalidation(&BARE, &cmd(opcode::TLBI_NH_VAA, 0, 0x1000 | 1)).is_ok());
    let ssid = cmd(opcode::CFGI_CD, 1 << 32 | 5 << 12, 0);
    assert!(encode_invalidation(&FULL, &ssid).is_ok());
    assert!(refused(&BARE, ssid), "no substreams");
}

#[test]
fn reserved_range_encodings_are_refused() {
    let va = |num_scale: u64, tg: u64, ttl: u64| {
        encode_invalidation(
            &FULL,
            &cmd(opcode::TLBI_NH_VA, num_scale, 0x1000 | tg << 10 | ttl << 8),
        )
    };
    let range = Err(RefusedCommand::Range(opcode::TLBI_NH_VA));
    assert_eq!(va(1 << 12, 0, 0), range, "NUM without TG");
    assert_eq!(va(0, 0, 1), range, "TTL without TG");
    assert_eq!(va(0, 1, 0), range, "TG with neither range nor TTL");
    assert!(va(0, 1, 3).is_ok());
    assert!(va(1 << 20, 3, 0).is_ok());
    assert!(va(0, 2, 1).is_ok(), "16K, TTL 1 with DS");
    let no_ds = HostCommandFeatures { ds: false, ..FULL };
    assert_eq!(
        encode_invalidation(
            &no_ds,
            &cmd(opcode::TLBI_NH_VA, 0, 0x1000 | 2 << 10 | 1 << 8)
        ),
        range,
        "16K, TTL 1 needs DS"
    );
    let scale_32 = cmd(opcode::TLBI_NH_VA, 32 << 20, 0x1000 | 1 << 10);
    assert!(encode_invalidation(&FULL, &scale_32).is_ok());
    assert!(matches!(
        encode_invalidation(&no_ds, &scale_32),
        Err(RefusedCommand::Fields { .. })
    ));
}

#[test]
fn atc_invalidation_needs_ats_and_a_sane_size() {
    let atc = |size: u64| cmd(opcode::ATC_INV, 3 << 32, size);
    assert_eq!(
        encode_invalidation(&BARE, &atc(0)),
        Err(RefusedCommand::NoAts)
    );
    assert!(encode_invalidation(&FULL, &atc(52)).is_ok());
    assert_eq!(
        encode_invalidation(&FULL, &atc(53)),
        Err(RefusedCommand::Range(opcode::ATC_INV))
    );
}

#[test]
fn a_batch_stops_at_the_first_refused_command() {
    let commands = [
        cmd(opcode::TLBI_NH_ASID, 1 << 48, 0),
        cmd(opcode::CFGI_CD_ALL, 2 << 32, 0),
        cmd(opcode::CFGI_STE, 2 << 32, 0),
        cmd(opcode::TLBI_NH_ALL, 0, 0),
    ];
    let (entries, refused) = encode_invalidations(&FULL, &commands);
    assert_eq!(entries.len(), 2);
    assert_eq!(refused, Some((2, RefusedCommand::Opcode(opcode::CFGI_STE))));
    assert_eq!(entries[1].command(), commands[1]);
    let (entries, refused) = encode_invalidations(&FULL, &commands[..2]);
    assert_eq!((entries.len(), refused), (2, None));
    assert_eq!(
        ViommuArmSmmuv3Invalidate::slice_as_bytes(&entries).len(),
        32
    );
}

#[test]
fn hw_info_is_decoded_and_masked_for_the_guest() {
    let mut raw = uapi::iommu_hw_info_arm_smmuv3 {
        flags: HW_INFO_FLAG_REPEAT_TLBI_CFGI,
        ..Default::default()
    };
    raw.idr[0] = 0xffff_ffff;
    raw.idr[1] = 16 | 20 << 6 | 0x1f << 16;
    raw.idr[2] = 0xffff_ffff;
    raw.idr[3] = 1 << 10 | 1 << 8;
    raw.idr[5] = 5 | 1 << 4 | 1 << 6 | 1 << 7 | 64 << 16;
    raw.iidr = 0x4b;
    raw.aidr = 2;
    let info = HwInfoArmSmmuv3::from_le_bytes(bytes_of(&raw));
    assert_eq!(info.idr, raw.idr);
    assert_eq!((info.iidr, info.aidr), (0x4b, 2));
    assert!(info.repeat_tlbi_cfgi());
    let guest = info.guest_idr();
    assert_eq!(
        guest[0],
        3 << 27 | 1 << 26 | 3 << 24 | 3 << 21 | 1 << 19 | 1 << 12 | 1 << 4 | 3 << 2 | 1 << 1,
        "no ATS, PRI, HTTU, stage 2, MSI, VMID16 or HYP"
    );
    assert_eq!(guest[1], 16 | 20 << 6, "queue sizes are the VMM's");
    assert_eq!((guest[2], guest[4]), (0, 0));
    assert_eq!(guest[3], 1 << 10, "RIL, not FWB");
    assert_eq!(
        guest[5],
        1 << 4 | 1 << 6 | 1 << 7,
        "granules and DS, not OAS or STALL_MAX"
    );
    assert_eq!(
        info.command_features(),
        HostCommandFeatures {
            asid_bits: 16,
            ssid_bits: 20,
            ats: true,
            range_invalidation: true,
            ds: true,
        }
    );
    // A shorter report reads as zeroes past its end.
    let short = HwInfoArmSmmuv3::from_le_bytes(&bytes_of(&raw)[..12]);
    assert_eq!(short.idr, [raw.idr[0], 0, 0, 0, 0, 0]);
    assert_eq!(short.command_features().ssid_bits, 0);
    assert_eq!(short.command_features().asid_bits, 16);
}

#[test]
fn vevent_stream_is_split_into_records() {
    let record = EventRecord::new(0x10, 42).with_ipa(0x8000_0000);
    let mut stream = Vec::new();
    stream.extend_from_slice(&0u32.to_le_bytes());
    stream.extend_from_slice(&7u32.to_le_bytes());
    stream.extend_from_slice(&record.to_le_bytes());
    stream.extend_from_slice(&VEVENT_FLAG_LOST_EVENTS.to_le_bytes());
    stream.extend_from_slice(&8u32.to_le_bytes());
    assert_eq!(
        decode_vevents(&stream),
        Some(vec![
            Vevent::Event {
                sequence: 7,
                record
            },
            Vevent::Lost { sequence: 8 },
        ])
    );
    assert_eq!(decode_vevents(&[]), Some(vec![]));
    assert_eq!(decode_vevents(&stream[..20]), None, "cut inside the record");
    assert_eq!(decode_vevents(&stream[..44]), None, "cut inside a header");
}

#[test]
fn a_host_format_describes_the_host_smmu_and_reaches_all_guest_ram() {
    // IDR0: two-level tables, ASID16, stage 1 and 2, ATS; IDR1: 20 SSID bits, 16 SID bits;
    // IDR5: OAS 48 bits, 4K and 64K granules, and bits the guest may not see.
    let info = HwInfoArmSmmuv3::new(
        0,
        [
            1 << 27 | 1 << 12 | 1 << 10 | 3,
            20 << 6 | 16,
            0,
            1 << 10,
            0,
            1 << 6 | 1 << 4 | 5,
        ],
    );
    let format = Smmuv3Format::for_host(&info, 1 << 30);
    assert_eq!(format.features.asid_bits, 16);
    assert_eq!(format.features.ssid_bits, 20);
    assert!(format.features.range_invalidation);
    let idr = format.guest_idr;
    assert_eq!(idr[0] & (1 << 10), 0, "ATS is per device: clear");
    assert_eq!(idr[0] & 2, 2, "stage 1 offered");
    assert_eq!(idr[1], 20 << 6 | 16);
    assert_eq!(idr[5] & 7, 0, "1 GiB of RAM fits 32-bit IPAs");
    assert_eq!(idr[5] & !7, 1 << 6 | 1 << 4);
    let wide = |ram_end| Smmuv3Format::for_host(&info, ram_end).guest_idr[5] & 7;
    assert_eq!(
        wide(1 << 32),
        0,
        "RAM ending at 4 GiB: its last byte has 32 bits"
    );
    assert_eq!(wide((1 << 32) + 1), 1);
    assert_eq!(wide(1 << 40), 2);
    assert_eq!(wide(3 << 40), 3);
    assert_eq!(wide(1 << 48), 5);
    assert_eq!(wide(u64::MAX), 6);
}
