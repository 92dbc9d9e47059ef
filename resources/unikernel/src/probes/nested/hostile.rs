//! `nested-hostile`: malformed requests and tables get their status or their fault, and
//! nestor stays up. Needs nestor started with `--dma-engine iommu=nested`.
//!
//! ATTACH_TABLE with reserved or host-owned STE bits, a Config the extension refuses, an
//! unknown format, a context pointer outside RAM and an S1CDMax past SSIDSIZE; INVALIDATE
//! with no cache, unknown caches, a TLB invalidation by PASID, no pages, a wrapping range
//! and a domain that does not exist; MAP on the table-mode domain. Then tables: a table
//! that points at itself (the walk ends after three levels, on a descriptor without the
//! access flag), a CD whose tables are outside RAM, a descriptor with address bits past
//! the output size, and a CD with AArch64 clear; each job fails with TRANSLATION_FAULT
//! and its record arrives. Last, a well-formed job still runs.

use super::{
    dst_page, fill, filled_with, set_cd, set_entry, ste_words, table_page, Nested, IOVA_DST,
    ST_TRANSLATION_FAULT,
};
use crate::probes::{Context, Outcome, Probe};
use crate::virtio_iommu::invalidate::{
    CACHE_CD, CACHE_TLB, FLAG_ASID, SCOPE_ADDRESS, SCOPE_DOMAIN, SCOPE_PASID,
};
use crate::virtio_iommu::{
    attach_table_request, Invalidate, FAULT_R_ADDRESS_SIZE, FAULT_R_BAD_CONFIG,
    FAULT_R_TRANSLATION, MAP_F_READ, MAP_F_WRITE, S_INVAL, S_NOENT, S_OK, S_RANGE,
};
use unikernel::format_line;
use unikernel::le::{put32, put64};
use unikernel::smmu_tables::{cd, index, table};
use unikernel::text::Line;

pub const PROBE: Probe = Probe {
    name: "nested-hostile",
    run,
};

/// FAULT_R_ACCESS: the access flag of the leaf is clear.
const FAULT_R_ACCESS: u8 = 6;
/// Far beyond the guest's RAM, inside a 48-bit output range.
const OUTSIDE_RAM: u64 = 0xff_0000_0000;

fn attach_tables(n: &mut Nested) -> Result<(), Line> {
    let (w0, w1) = ste_words();
    let d = n.domain;
    let e = n.endpoint;
    let mut unknown_format = attach_table_request(d, e, w0, w1);
    unknown_format[12] = 2;
    let mut reserved_byte = attach_table_request(d, e, w0, w1);
    reserved_byte[100] = 1;
    let cases: [(&str, [u8; 124], u8); 8] = [
        (
            "reserved STE0 bit",
            attach_table_request(d, e, w0 | 1 << 52, w1),
            S_INVAL,
        ),
        (
            "host-owned STE1 bit",
            attach_table_request(d, e, w0, w1 | 1 << 19),
            S_INVAL,
        ),
        (
            "stage-2 Config",
            attach_table_request(d, e, w0 & !0b1110 | 0b110 << 1, w1),
            S_INVAL,
        ),
        ("unknown format", unknown_format, S_INVAL),
        ("reserved byte", reserved_byte, S_INVAL),
        (
            "CDs outside RAM",
            attach_table_request(d, e, w0 & !0x000f_ffff_ffff_ffc0 | OUTSIDE_RAM, w1),
            S_RANGE,
        ),
        (
            "S1CDMax past SSIDSIZE",
            attach_table_request(d, e, w0 | 31 << 59, w1),
            S_RANGE,
        ),
        (
            "unknown endpoint",
            attach_table_request(d, 0xffff, w0, w1),
            S_NOENT,
        ),
    ];
    for (what, request, status) in cases {
        n.expect(what, &request, status)?;
    }
    Ok(())
}

fn invalidations(n: &mut Nested) -> Result<(), Line> {
    let page = Invalidate {
        scope: SCOPE_ADDRESS,
        caches: CACHE_TLB,
        flags: FLAG_ASID,
        domain: n.domain,
        asid: 1,
        address: IOVA_DST,
        nr_pages: 1,
        page_shift: 12,
        ..Invalidate::default()
    };
    let cases = [
        ("no cache", Invalidate { caches: 0, ..page }, S_INVAL),
        (
            "unknown cache",
            Invalidate {
                caches: 1 << 5,
                ..page
            },
            S_INVAL,
        ),
        (
            "TLB by PASID",
            Invalidate {
                scope: SCOPE_PASID,
                ..page
            },
            S_INVAL,
        ),
        (
            "no pages",
            Invalidate {
                nr_pages: 0,
                ..page
            },
            S_INVAL,
        ),
        (
            "odd page size",
            Invalidate {
                page_shift: 13,
                ..page
            },
            S_INVAL,
        ),
        (
            "wrapping range",
            Invalidate {
                address: 0xffff_ffff_ffff_f000,
                nr_pages: 2,
                ..page
            },
            S_RANGE,
        ),
        (
            "no such domain",
            Invalidate {
                domain: n.domain + 1,
                scope: SCOPE_DOMAIN,
                flags: 0,
                ..page
            },
            S_NOENT,
        ),
    ];
    for (what, request, status) in cases {
        n.expect(what, &request.bytes(), status)?;
    }
    let mut map = [0u8; 36];
    map[0] = 3;
    put32(&mut map, 4, n.domain);
    put64(&mut map, 8, 0x10_0000);
    put64(&mut map, 16, 0x10_0fff);
    put64(&mut map, 24, 0x10_0000);
    put32(&mut map, 32, MAP_F_READ | MAP_F_WRITE);
    n.expect("MAP on a table-mode domain", &map, S_INVAL)
}

/// A fill at `pasid` fails and a record with `reason` and the PASID arrives.
fn faults(n: &mut Nested, what: &str, pasid: u32, reason: u8) -> Result<(), Line> {
    let (status, ..) = n.run(fill(pasid, IOVA_DST, 0x7777_7777_7777_7777))?;
    if status != ST_TRANSLATION_FAULT {
        return Err(format_line!(what, ": status ", status));
    }
    let record = n.iommu.wait_record(reason, n.endpoint)?;
    if record.pasid != pasid {
        return Err(format_line!(what, ": record for PASID ", record.pasid));
    }
    Ok(())
}

/// The SMMU forgets every CD and translation it cached for the domain, so each table
/// change below is seen.
fn invalidate_all(n: &mut Nested) -> Result<(), Line> {
    let all = Invalidate {
        scope: SCOPE_DOMAIN,
        caches: CACHE_CD | CACHE_TLB,
        domain: n.domain,
        ..Invalidate::default()
    };
    n.expect("INVALIDATE all", &all.bytes(), S_OK)
}

fn tables(n: &mut Nested) -> Result<(), Line> {
    // PASID 1's level-1 table as its own level 2 and 3: a table descriptor read as a page
    // has no access flag.
    let l1 = table_page(1, 1);
    let l1_address = l1.address();
    set_entry(l1, index(IOVA_DST, 1), table(l1_address));
    set_entry(l1, index(IOVA_DST, 2), table(l1_address));
    invalidate_all(n)?;
    faults(n, "a table pointing at itself", 1, FAULT_R_ACCESS)?;

    // PASID 2's tables outside RAM: the walk's first read finds nothing.
    set_cd(2, cd(OUTSIDE_RAM, 2));
    invalidate_all(n)?;
    faults(n, "tables outside RAM", 2, FAULT_R_TRANSLATION)?;

    // Back to PASID 2's tables, with its level-2 descriptor pointing past 48 bits.
    set_cd(2, cd(table_page(2, 1).address(), 2));
    let l3 = table_page(2, 3).address();
    set_entry(table_page(2, 2), index(IOVA_DST, 2), table(l3) | 1 << 48);
    invalidate_all(n)?;
    faults(
        n,
        "a table address past the output size",
        2,
        FAULT_R_ADDRESS_SIZE,
    )?;

    // A CD that is not AArch64: ILLEGAL.
    let mut not_aa64 = cd(table_page(2, 1).address(), 2);
    not_aa64[0] &= !(1 << 41);
    set_cd(2, not_aa64);
    invalidate_all(n)?;
    faults(n, "a CD without AA64", 2, FAULT_R_BAD_CONFIG)
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut n = Nested::open(ctx)?;
    attach_tables(&mut n)?;
    invalidations(&mut n)?;
    tables(&mut n)?;
    // Everything above left PASID 2's level-3 table alone, and the level-2 entry is fixed
    // now: a well-formed job runs.
    set_cd(2, cd(table_page(2, 1).address(), 2));
    let l3 = table_page(2, 3).address();
    set_entry(table_page(2, 2), index(IOVA_DST, 2), table(l3));
    invalidate_all(&mut n)?;
    let pattern = 0x0808_0808_0808_0808;
    n.run_ok("a job after all that", fill(2, IOVA_DST, pattern))?;
    if !filled_with(dst_page(2), pattern) {
        return Err(format_line!("the last fill missed"));
    }
    n.close()
}
