//! Every request type, well-formed and malformed, and the used-length rules.

use super::rig::*;
use crate::virtio::iommu::config::{IommuConfig, Limits, X86_MSI_START};
use crate::virtio::iommu::faults::FaultRateLimit;
use crate::virtio::iommu::protocol::{
    features, Status, ATTACH_F_BYPASS, MAP_F_MMIO, MAP_F_READ, MAP_F_WRITE, RESV_MEM_T_MSI,
    RESV_MEM_T_RESERVED,
};

const RW: u32 = MAP_F_READ | MAP_F_WRITE;
const OK: Option<Status> = Some(Status::Ok);
const INVAL: Option<Status> = Some(Status::Inval);
const RANGE: Option<Status> = Some(Status::Range);
const NOENT: Option<Status> = Some(Status::NoEnt);
const NOMEM: Option<Status> = Some(Status::NoMem);

// Used length and framing.

#[test]
fn used_length_is_the_writable_length_and_only_the_tail_is_written() {
    let rig = Rig::new();
    let reply = rig.send(&attach(1, DISK, 0, 0), 12);
    assert_eq!(reply.used_len, 12);
    assert_eq!(&reply.writable[..8], &[SENTINEL; 8]);
    assert_eq!(&reply.writable[8..], &[0, 0, 0, 0]);
}

#[test]
fn unknown_request_type_gets_used_length_zero_and_nothing_written() {
    let rig = Rig::new();
    for kind in [0u8, 6, 0x80, 0xff] {
        let mut req = attach(1, DISK, 0, 0);
        req[0] = kind;
        let reply = rig.send(&req, 4);
        assert_eq!(reply.used_len, 0, "type {kind}");
        assert_eq!(reply.writable, vec![SENTINEL; 4]);
    }
}

#[test]
fn too_short_requests_get_used_length_zero() {
    let rig = Rig::new();
    for full in [
        attach(1, DISK, 0, 0),
        detach(1, DISK, 0),
        map(1, 0, 0xfff, 0, RW),
        unmap(1, 0, 0xfff, 0),
        probe(DISK),
    ] {
        for len in [1, 4, full.len() - 1] {
            let reply = rig.send(&full[..len], 4);
            assert_eq!(reply.used_len, 0, "type {} length {len}", full[0]);
            assert_eq!(reply.writable, vec![SENTINEL; 4]);
        }
    }
    assert_eq!(rig.state.domains().domain_count(), 0);
}

#[test]
fn writable_part_shorter_than_the_tail_gets_used_length_zero() {
    let rig = Rig::new();
    for lens in [&[][..], &[3], &[1, 2]] {
        let reply = rig.send_split(&attach(1, DISK, 0, 0), &[], lens);
        assert_eq!(reply.used_len, 0, "{lens:?}");
    }
    assert_eq!(rig.state.domains().domain_count(), 0);
}

#[test]
fn requests_split_across_descriptors_read_as_one_stream() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    let reply = rig.send_split(&map(1, 0, 0xfff, 0x5000, RW), &[1, 6, 13], &[1, 1, 2]);
    assert_eq!(reply.used_len, 4);
    assert_eq!(reply.status(), OK);
    assert_eq!(rig.state.domains().mapping_count(1), Some(1));
}

#[test]
fn readable_bytes_past_the_request_are_ignored() {
    let rig = Rig::new();
    let mut req = attach(1, DISK, 0, 0);
    req.extend_from_slice(&[0xff; 40]);
    assert_eq!(rig.send(&req, 4).status(), OK);
}

#[test]
fn readable_descriptor_after_a_writable_one_is_refused() {
    let rig = Rig::new();
    let used = rig.run_request_chain(&[(0x30000, 20, 0), (0x31000, 4, 2), (0x32000, 4, 0)]);
    assert_eq!(used, 0);
}

#[test]
fn descriptors_outside_guest_memory_never_panic() {
    let rig = Rig::new();
    let beyond = 0x100_0000;
    assert_eq!(
        rig.run_request_chain(&[(beyond, 20, 0), (0x31000, 4, 2)]),
        0
    );
    // A readable part that parses but a tail that cannot be written.
    use vm_memory::{Bytes, GuestAddress};
    rig.mem
        .write_slice(&attach(1, DISK, 0, 0), GuestAddress(0x30000))
        .unwrap();
    assert_eq!(
        rig.run_request_chain(&[(0x30000, 20, 0), (beyond - 2, 4, 2)]),
        0
    );
    assert_eq!(
        rig.run_request_chain(&[(0x30000, 20, 0), (u64::MAX - 1, 4, 2)]),
        0
    );
}

// ATTACH

#[test]
fn attach_creates_the_domain_and_ignores_head_reserved_bytes() {
    let rig = Rig::new();
    let mut req = attach(7, DISK, 0, 0);
    req[1..4].copy_from_slice(&[1, 2, 3]);
    assert_eq!(rig.send(&req, 4).status(), OK);
    assert_eq!(rig.state.domains().domain_of(DISK), Some(7));
}

#[test]
fn attach_malformed_variants() {
    let rig = Rig::new();
    assert_eq!(
        rig.send(&attach(1, DISK, 0, 1), 4).status(),
        INVAL,
        "reserved"
    );
    assert_eq!(rig.send(&attach(1, DISK, 2, 0), 4).status(), INVAL, "flag");
    assert_eq!(rig.send(&attach(0x1_0000, DISK, 0, 0), 4).status(), RANGE);
    assert_eq!(rig.send(&attach(1, 0x99, 0, 0), 4).status(), NOENT);
    assert_eq!(rig.state.domains().domain_count(), 0);
}

#[test]
fn attach_bypass_flag_needs_bypass_config_negotiated() {
    let mut rig = Rig::new();
    rig.negotiated &= !features::BYPASS_CONFIG;
    let req = attach(1, DISK, ATTACH_F_BYPASS, 0);
    assert_eq!(rig.send(&req, 4).status(), INVAL);
    rig.negotiated = ALL_FEATURES;
    assert_eq!(rig.send(&req, 4).status(), OK);
    // The same domain without the flag is inconsistent.
    assert_eq!(rig.send(&attach(1, RNG, 0, 0), 4).status(), INVAL);
}

#[test]
fn attach_moves_an_endpoint_and_its_old_domain_dies() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0, 0xfff, 0x5000, RW), OK);
    assert_eq!(rig.attach(2, DISK), OK);
    assert_eq!(rig.map(1, 0, 0xfff, 0x5000, RW), NOENT);
    assert_eq!(rig.state.domains().total_mappings(), 0);
}

// DETACH

#[test]
fn detach_ignores_reserved_and_kills_the_empty_domain() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0, 0xfff, 0x5000, RW), OK);
    assert_eq!(rig.send(&detach(1, DISK, u64::MAX), 4).status(), OK);
    assert_eq!(rig.state.domains().domain_count(), 0);
    assert_eq!(rig.state.domains().total_mappings(), 0);
}

#[test]
fn detach_malformed_variants() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.send(&detach(1, 0x99, 0), 4).status(), NOENT);
    assert_eq!(rig.send(&detach(2, DISK, 0), 4).status(), INVAL);
    assert_eq!(rig.send(&detach(1, RNG, 0), 4).status(), INVAL);
    assert_eq!(rig.send(&detach(u32::MAX, DISK, 0), 4).status(), RANGE);
    assert_eq!(rig.state.domains().domain_of(DISK), Some(1));
}

// MAP

#[test]
fn map_malformed_variants() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    let top = IommuConfig::default().input_range.1;
    let cases = [
        (
            map(1, 0x1000, 0x1fff, 0x5000, 1 << 3),
            INVAL,
            "unknown flag",
        ),
        (
            map(1, 0x1000, 0x1fff, 0x5000, MAP_F_MMIO | 1 << 31),
            INVAL,
            "high flag",
        ),
        (map(1, 0x2000, 0x1fff, 0x5000, RW), INVAL, "reversed"),
        (map(1, 0x1800, 0x1fff, 0x5000, RW), RANGE, "start unaligned"),
        (map(1, 0x1000, 0x17ff, 0x5000, RW), RANGE, "end unaligned"),
        (map(1, 0x1000, 0x1fff, 0x5800, RW), RANGE, "phys unaligned"),
        (
            map(1, top + 1, top + 0x1000, 0x5000, RW),
            RANGE,
            "past input range",
        ),
        (
            map(1, top & !0xfff, u64::MAX, 0x5000, RW),
            RANGE,
            "straddles input end",
        ),
        (
            map(0x2_0000, 0x1000, 0x1fff, 0x5000, RW),
            RANGE,
            "domain range",
        ),
        (map(9, 0x1000, 0x1fff, 0x5000, RW), NOENT, "missing domain"),
        (
            map(1, X86_MSI_START, X86_MSI_START + 0xfff, 0, RW),
            INVAL,
            "MSI window",
        ),
    ];
    for (req, status, what) in cases {
        assert_eq!(rig.send(&req, 4).status(), status, "{what}");
    }
    assert_eq!(rig.state.domains().total_mappings(), 0);
}

#[test]
fn map_mmio_flag_needs_its_feature() {
    let mut rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0, 0xfff, 0x5000, MAP_F_MMIO | RW), OK);
    rig.negotiated &= !features::MMIO;
    assert_eq!(rig.map(1, 0x1000, 0x1fff, 0x5000, MAP_F_MMIO | RW), INVAL);
}

#[test]
fn map_over_an_existing_mapping_is_inval_and_bypass_domains_refuse_maps() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0x10_0000, 0x2f_ffff, 0x40_0000, RW), OK);
    assert_eq!(rig.map(1, 0x20_0000, 0x20_0fff, 0x40_0000, RW), INVAL);
    assert_eq!(
        rig.send(&attach(2, RNG, ATTACH_F_BYPASS, 0), 4).status(),
        OK
    );
    assert_eq!(rig.map(2, 0, 0xfff, 0, RW), INVAL);
    assert_eq!(rig.unmap(2, 0, 0xfff), INVAL);
}

#[test]
fn map_at_the_top_of_the_input_range_works() {
    let config = IommuConfig {
        input_range: (0, u64::MAX),
        ..IommuConfig::default()
    };
    let rig = Rig::with(config, FaultRateLimit::default());
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, u64::MAX - 0xfff, u64::MAX, 0x5000, RW), OK);
    assert_eq!(rig.unmap(1, 0, u64::MAX), OK);
}

// UNMAP

#[test]
fn spec_unmap_sequences_in_pages() {
    // The spec's examples with each unit a 4 KiB page: (maps, unmap, status, left).
    type Case = (
        &'static [(u64, u64)],
        (u64, u64),
        Option<Status>,
        &'static [u64],
    );
    let cases: [Case; 7] = [
        (&[], (0, 4), OK, &[]),
        (&[(0, 9)], (0, 9), OK, &[]),
        (&[(0, 4), (5, 9)], (0, 9), OK, &[]),
        (&[(0, 9)], (0, 4), RANGE, &[0]),
        (&[(0, 4), (5, 9)], (0, 4), OK, &[5]),
        (&[(0, 4)], (0, 9), OK, &[]),
        (&[(0, 4), (10, 14)], (0, 14), OK, &[]),
    ];
    for (maps, (first, last), status, left) in cases {
        let rig = Rig::new();
        assert_eq!(rig.attach(1, DISK), OK);
        for &(a, b) in maps {
            assert_eq!(rig.map(1, a * PAGE, (b + 1) * PAGE - 1, 0, RW), OK);
        }
        let got = rig.unmap(1, first * PAGE, (last + 1) * PAGE - 1);
        assert_eq!(got, status, "{maps:?} unmap {first}..={last}");
        assert_eq!(
            rig.state.domains().mapping_count(1),
            Some(left.len()),
            "{maps:?}"
        );
    }
}

#[test]
fn unmap_malformed_variants() {
    let rig = Rig::new();
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.map(1, 0, 0xfff, 0x5000, RW), OK);
    let top = IommuConfig::default().input_range.1;
    assert_eq!(rig.send(&unmap(1, 0, 0xfff, 1), 4).status(), INVAL);
    assert_eq!(rig.send(&unmap(1, 0x1000, 0xfff, 0), 4).status(), INVAL);
    assert_eq!(rig.send(&unmap(1, 0, top + 1, 0), 4).status(), RANGE);
    assert_eq!(rig.send(&unmap(0x2_0000, 0, 0xfff, 0), 4).status(), RANGE);
    assert_eq!(rig.send(&unmap(5, 0, 0xfff, 0), 4).status(), NOENT);
    assert_eq!(rig.state.domains().total_mappings(), 1);
}

// PROBE

#[test]
fn probe_reports_the_msi_window_and_reserved_regions_then_zeroes() {
    let rig = Rig::with(
        IommuConfig::with_reserved([(0x9_fc00, 0xf_ffff)]),
        FaultRateLimit::default(),
    );
    let probe_size = rig.state.config.probe_size();
    assert_eq!(probe_size, 48);
    let reply = rig.send_split(&probe(DISK), &[72], &[probe_size + 4 + 16]);
    assert_eq!(reply.used_len, probe_size + 4 + 16);
    assert_eq!(reply.status(), OK);
    let p = &reply.writable;
    assert_eq!(&p[0..4], &[1, 0, 20, 0]);
    assert_eq!(p[4], RESV_MEM_T_MSI);
    assert_eq!(&p[8..16], &0xfee0_0000u64.to_le_bytes());
    assert_eq!(&p[16..24], &0xfeef_ffffu64.to_le_bytes());
    assert_eq!(p[28], RESV_MEM_T_RESERVED);
    assert_eq!(&p[32..40], &0x9_fc00u64.to_le_bytes());
    assert_eq!(&p[40..48], &0xf_ffffu64.to_le_bytes());
    assert!(p[48..64].iter().all(|&b| b == 0), "unused bytes zeroed");
}

#[test]
fn probe_malformed_variants() {
    let rig = Rig::new();
    let probe_size = rig.state.config.probe_size();
    assert_eq!(rig.send(&probe(0x99), probe_size + 4).status(), NOENT);
    let reply = rig.send(&probe(DISK), probe_size + 3);
    assert_eq!(reply.status(), INVAL);
    assert!(reply.writable[..probe_size as usize - 1]
        .iter()
        .all(|&b| b == SENTINEL));
    // Reserved bytes are ignored.
    let mut req = probe(DISK);
    req[8..72].fill(0xee);
    assert_eq!(rig.send(&req, probe_size + 4).status(), OK);
}

#[test]
fn probe_without_the_feature_is_an_unknown_request() {
    let mut rig = Rig::new();
    rig.negotiated &= !features::PROBE;
    let reply = rig.send(&probe(DISK), 28);
    assert_eq!(reply.used_len, 0);
    assert_eq!(reply.writable, vec![SENTINEL; 28]);
}

// Limits

#[test]
fn limits_answer_nomem() {
    let config = IommuConfig {
        limits: Limits {
            max_domains: 1,
            max_mappings_per_domain: 3,
            ..Limits::default()
        },
        ..IommuConfig::default()
    };
    let rig = Rig::with(config, FaultRateLimit::default());
    assert_eq!(rig.attach(1, DISK), OK);
    assert_eq!(rig.attach(2, RNG), NOMEM);
    for i in 0..3 {
        assert_eq!(rig.map(1, i * PAGE, (i + 1) * PAGE - 1, 0, RW), OK);
    }
    assert_eq!(rig.map(1, 3 * PAGE, 4 * PAGE - 1, 0, RW), NOMEM);
}
