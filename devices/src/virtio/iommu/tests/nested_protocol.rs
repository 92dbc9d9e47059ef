//! The extension's requests from their bytes, laid out by hand from
//! docs/virtio-iommu-nested.md (offsets include the 4-byte head).

use super::rig::attach_table;
use crate::virtio::iommu::nested_protocol::*;
use crate::virtio::iommu::protocol::{RequestError, Status};

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

struct Inv {
    scope: u8,
    caches: u8,
    flags: u16,
    pasid: u32,
    asid: u16,
    address: u64,
    nr_pages: u64,
    page_shift: u8,
}

const INV: Inv = Inv {
    scope: 1,
    caches: 2,
    flags: 0,
    pasid: 0,
    asid: 0,
    address: 0,
    nr_pages: 0,
    page_shift: 0,
};

/// An INVALIDATE's readable part (60 bytes) on domain 9.
fn invalidate(i: &Inv) -> Vec<u8> {
    let mut bytes = vec![0u8; 60];
    bytes[0] = 7;
    bytes[4] = i.scope;
    bytes[5] = i.caches;
    put(&mut bytes, 6, &i.flags.to_le_bytes());
    put(&mut bytes, 8, &9u32.to_le_bytes());
    put(&mut bytes, 12, &i.pasid.to_le_bytes());
    put(&mut bytes, 16, &i.asid.to_le_bytes());
    put(&mut bytes, 24, &i.address.to_le_bytes());
    put(&mut bytes, 32, &i.nr_pages.to_le_bytes());
    bytes[40] = i.page_shift;
    bytes
}

fn commands(i: &Inv) -> Result<Vec<InvalidateCommand>, RequestError> {
    match parse_nested_request(&invalidate(i))? {
        NestedRequest::Invalidate(inv) => {
            assert_eq!(inv.domain, 9);
            Ok(inv.commands)
        }
        other => panic!("not an INVALIDATE: {other:?}"),
    }
}

const INVAL: RequestError = RequestError::Status(Status::Inval);

#[test]
fn sizes_and_negotiation() {
    assert_eq!(readable_size(6), Some(124));
    assert_eq!(readable_size(7), Some(60));
    assert_eq!(readable_size(8), Some(28));
    assert_eq!(readable_size(9), None);
    assert!(!is_negotiated(6, 0));
    assert!(is_negotiated(6, features::ATTACH_TABLE));
    assert!(is_negotiated(7, features::ATTACH_TABLE));
    assert!(!is_negotiated(8, features::ATTACH_TABLE));
    assert!(is_negotiated(8, features::PAGE_REQUEST));
    assert_eq!(
        parse_nested_request(&attach_table(1, 2, 0, 0)[..123]),
        Err(RequestError::Unanswerable)
    );
}

#[test]
fn attach_table_decodes_the_ste_words() {
    // V=1, Config=0b101, S1Fmt=1, S1ContextPtr=0x1234_5000, S1CDMax=5.
    let ste0 = 1 | (0b101 << 1) | (1 << 4) | 0x1234_5000 | (5u64 << 59);
    let ste1 = 0b01 | (1 << 27) | (1 << 28);
    let request = parse_nested_request(&attach_table(3, 0x18, ste0, ste1)).unwrap();
    let NestedRequest::AttachTable(attach) = request else {
        panic!("{request:?}");
    };
    assert_eq!((attach.domain, attach.endpoint), (3, 0x18));
    assert_eq!(
        attach.ste.mode(),
        SteMode::Translate {
            context_ptr: 0x1234_5000,
            s1fmt: 1,
            s1cdmax: 5
        }
    );
    let mode = |ste0| VirtualSte::new(ste0, 0).map(|s| s.mode());
    assert_eq!(mode(0), Ok(SteMode::Abort));
    assert_eq!(mode(1), Ok(SteMode::Abort));
    assert_eq!(mode(1 | (0b100 << 1)), Ok(SteMode::Bypass));
    // Without V nothing else matters but the allowed mask.
    assert_eq!(mode(0b110 << 1), Ok(SteMode::Abort));
}

#[test]
fn attach_table_refuses_what_the_kernel_would() {
    let translate = 1 | (0b101 << 1);
    // Config 0b110 (stage 2) and 0b111 (nested) are the host's.
    for config in [0b001u64, 0b010, 0b011, 0b110, 0b111] {
        assert_eq!(VirtualSte::new(1 | (config << 1), 0), Err(Status::Inval));
    }
    // Bits outside the allowed masks: S2 fields in dword 0 (bits 52-58), dword 1's SHCFG.
    assert_eq!(
        VirtualSte::new(translate | (1 << 55), 0),
        Err(Status::Inval)
    );
    assert_eq!(VirtualSte::new(translate, 1 << 44), Err(Status::Inval));
    // EATS 2 and 3, S1Fmt 3.
    assert_eq!(VirtualSte::new(translate, 2 << 28), Err(Status::Inval));
    assert_eq!(VirtualSte::new(translate | (3 << 4), 0), Err(Status::Inval));
    // Unknown format, reserved bytes.
    let mut bytes = attach_table(1, 2, translate, 0);
    bytes[12] = 2;
    assert_eq!(parse_nested_request(&bytes), Err(INVAL));
    let mut bytes = attach_table(1, 2, translate, 0);
    bytes[100] = 1;
    assert_eq!(parse_nested_request(&bytes), Err(INVAL));
    let mut bytes = attach_table(1, 2, translate, 0);
    bytes[13] = 1;
    assert_eq!(parse_nested_request(&bytes), Err(INVAL));
}

#[test]
fn each_tlb_invalidation_is_one_command() {
    assert_eq!(commands(&INV), Ok(vec![InvalidateCommand::TlbiNhAll]));
    let asid = Inv {
        flags: 1 << 2,
        asid: 7,
        ..INV
    };
    assert_eq!(
        commands(&asid),
        Ok(vec![InvalidateCommand::TlbiNhAsid { asid: 7 }])
    );
    let va = Inv {
        scope: 3,
        flags: (1 << 2) | 1,
        asid: 7,
        address: 0x4000_0000,
        nr_pages: 3,
        page_shift: 12,
        ..INV
    };
    let range = PageRange {
        address: 0x4000_0000,
        nr_pages: 3,
        page_shift: 12,
        leaf: true,
    };
    assert_eq!(
        commands(&va),
        Ok(vec![InvalidateCommand::TlbiNhVa { asid: 7, range }])
    );
    let vaa = Inv {
        flags: 1 << 3,
        ..va
    };
    assert_eq!(
        commands(&vaa),
        Ok(vec![InvalidateCommand::TlbiNhVaa {
            range: PageRange {
                leaf: false,
                ..range
            }
        }])
    );
}

#[test]
fn cd_and_device_tlb_invalidations_and_their_order() {
    let cd = Inv {
        scope: 2,
        caches: 1,
        flags: (1 << 1) | 1,
        pasid: 4,
        ..INV
    };
    assert_eq!(
        commands(&cd),
        Ok(vec![InvalidateCommand::CfgiCd {
            pasid: 4,
            leaf: true
        }])
    );
    let all_cds = Inv { caches: 1, ..INV };
    assert_eq!(commands(&all_cds), Ok(vec![InvalidateCommand::CfgiCdAll]));
    // CD and device TLB for one PASID: CFGI_CD first, then ATC_INV.
    let both = Inv {
        caches: 1 | 4,
        flags: 1 << 1,
        ..cd
    };
    assert_eq!(
        commands(&both),
        Ok(vec![
            InvalidateCommand::CfgiCd {
                pasid: 4,
                leaf: false
            },
            InvalidateCommand::AtcInv {
                pasid: Some(4),
                range: None
            },
        ])
    );
}

#[test]
fn malformed_invalidations_are_invalid() {
    let cases = [
        // No cache, an unknown cache bit, an unknown flag.
        Inv { caches: 0, ..INV },
        Inv { caches: 8, ..INV },
        Inv {
            flags: 1 << 4,
            ..INV
        },
        // TLB by PASID scope; CD by address; CD by PASID without the PASID flag.
        Inv { scope: 2, ..INV },
        Inv {
            scope: 3,
            caches: 1,
            ..INV
        },
        Inv {
            scope: 2,
            caches: 1,
            ..INV
        },
        // Scope 0 and 4.
        Inv { scope: 0, ..INV },
        Inv { scope: 4, ..INV },
        // An address range with both or neither ASID flag, a bad granule, no pages,
        // a misaligned address.
        Inv {
            scope: 3,
            flags: (1 << 2) | (1 << 3),
            nr_pages: 1,
            page_shift: 12,
            ..INV
        },
        Inv {
            scope: 3,
            nr_pages: 1,
            page_shift: 12,
            ..INV
        },
        Inv {
            scope: 3,
            flags: 1 << 3,
            nr_pages: 1,
            page_shift: 13,
            ..INV
        },
        Inv {
            scope: 3,
            flags: 1 << 3,
            nr_pages: 0,
            page_shift: 12,
            ..INV
        },
        Inv {
            scope: 3,
            flags: 1 << 3,
            address: 0x800,
            nr_pages: 1,
            page_shift: 12,
            ..INV
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(commands(case), Err(INVAL), "case {i}");
    }
    // A range that wraps is out of range.
    let wraps = Inv {
        scope: 3,
        flags: 1 << 3,
        address: u64::MAX - 0xfff,
        nr_pages: 2,
        page_shift: 12,
        ..INV
    };
    assert_eq!(commands(&wraps), Err(RequestError::Status(Status::Range)));
    // Reserved bytes after the ASID and after the page shift.
    let mut bytes = invalidate(&INV);
    bytes[20] = 1;
    assert_eq!(parse_nested_request(&bytes), Err(INVAL));
    let mut bytes = invalidate(&INV);
    bytes[59] = 1;
    assert_eq!(parse_nested_request(&bytes), Err(INVAL));
}

#[test]
fn page_responses() {
    let mut bytes = vec![0u8; 28];
    bytes[0] = 8;
    put(&mut bytes, 4, &0x18u32.to_le_bytes());
    put(&mut bytes, 8, &1u32.to_le_bytes());
    put(&mut bytes, 12, &5u32.to_le_bytes());
    put(&mut bytes, 16, &0x1ffu32.to_le_bytes());
    put(&mut bytes, 20, &2u16.to_le_bytes());
    assert_eq!(
        parse_nested_request(&bytes),
        Ok(NestedRequest::PageResp(PageResp {
            endpoint: 0x18,
            pasid: Some(5),
            grpid: 0x1ff,
            code: PageRespCode::Failure,
        }))
    );
    let mut no_pasid = bytes.clone();
    no_pasid[8] = 0;
    let Ok(NestedRequest::PageResp(resp)) = parse_nested_request(&no_pasid) else {
        panic!();
    };
    assert_eq!(resp.pasid, None);
    let mut bad_code = bytes.clone();
    bad_code[20] = 3;
    assert_eq!(parse_nested_request(&bad_code), Err(INVAL));
    let mut bad_flag = bytes.clone();
    bad_flag[8] = 2;
    assert_eq!(parse_nested_request(&bad_flag), Err(INVAL));
    let mut reserved = bytes;
    reserved[27] = 1;
    assert_eq!(parse_nested_request(&reserved), Err(INVAL));
}

#[test]
fn records_and_the_probe_property_are_laid_out_as_documented() {
    let record = NestedFaultRecord {
        reason: fault_reason::PAGE_REQUEST,
        flags: 0b11 | FAULT_F_PASID | FAULT_F_LAST_PAGE,
        endpoint: 0x18,
        pasid: 5,
        address: 0x1234_5000,
        grpid: 0x1ff,
    };
    let bytes = record.to_bytes();
    assert_eq!(bytes[0], 0x80);
    assert_eq!(&bytes[4..8], &0x603u32.to_le_bytes());
    assert_eq!(&bytes[8..12], &0x18u32.to_le_bytes());
    assert_eq!(&bytes[12..16], &5u32.to_le_bytes());
    assert_eq!(&bytes[16..24], &0x1234_5000u64.to_le_bytes());
    assert_eq!(&bytes[24..28], &0x1ffu32.to_le_bytes());
    assert_eq!(&bytes[28..32], &[0; 4]);

    let ids = SmmuIdRegisters {
        idr0: u32::MAX,
        idr1: u32::MAX,
        idr3: u32::MAX,
        idr5: u32::MAX,
    };
    let property = ids.property();
    assert_eq!(&property[0..4], &[0x00, 0x08, 52, 0]);
    let word = |offset: usize| u64::from_le_bytes(property[offset..offset + 8].try_into().unwrap());
    // Only the vouched-for fields survive (bit positions from the SMMUv3 architecture).
    assert_eq!(word(8), 0x1f68_100c);
    assert_eq!(word(16), 0x7ff);
    assert_eq!(word(32), 0x1c00);
    assert_eq!(word(48), 0xc70);
    assert_eq!(word(24), 0);
    assert_eq!(word(40), 0);
}
