//! `nested-invalidate`: a stage-1 change reaches the engine once INVALIDATE says so.
//! Needs nestor started with `--dma-engine iommu=nested`.
//!
//! PASID 1's destination page is remapped to another page and a TLB invalidation of that
//! address (ASID 1) answered before the next fill, which must land in the new page only
//! (before the invalidation the SMMU may still use the old entry, as hardware may, so
//! nothing is checked then). Then PASID 2's context descriptor is pointed at PASID 1's
//! tables under a fresh ASID and invalidated (CFGI_CD by PASID): PASID 2 now reaches PASID
//! 1's pages. Last, PASID 1's destination goes back to its page and a whole-domain TLB
//! invalidation makes that seen too.

use super::{
    dst_page, fill, filled_with, set_cd, set_entry, spare_page, table_page, Nested, IOVA_DST,
};
use crate::probes::{Context, Outcome, Probe};
use crate::virtio_iommu::invalidate::{
    CACHE_CD, CACHE_TLB, FLAG_ASID, FLAG_PASID, SCOPE_ADDRESS, SCOPE_DOMAIN, SCOPE_PASID,
};
use crate::virtio_iommu::{Invalidate, S_OK};
use unikernel::format_line;
use unikernel::smmu_tables::{cd, index, page};

pub const PROBE: Probe = Probe {
    name: "nested-invalidate",
    run,
};

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut n = Nested::open(ctx)?;
    let domain = n.domain;
    let moved = spare_page(0);
    moved.0.fill(0);
    dst_page(1).0.fill(0);
    n.run_ok("first fill", fill(1, IOVA_DST, 0x1111_1111_1111_1111))?;
    if !filled_with(dst_page(1), 0x1111_1111_1111_1111) {
        return Err(format_line!("the first fill missed PASID 1's page"));
    }

    // One page, by address and ASID.
    set_entry(
        table_page(1, 3),
        index(IOVA_DST, 3),
        page(moved.address(), false),
    );
    let one_page = Invalidate {
        scope: SCOPE_ADDRESS,
        caches: CACHE_TLB,
        flags: FLAG_ASID,
        domain,
        asid: 1,
        address: IOVA_DST,
        nr_pages: 1,
        page_shift: 12,
        ..Invalidate::default()
    };
    n.expect("INVALIDATE address", &one_page.bytes(), S_OK)?;
    n.run_ok(
        "fill after the remap",
        fill(1, IOVA_DST, 0x2222_2222_2222_2222),
    )?;
    if !filled_with(moved, 0x2222_2222_2222_2222) {
        return Err(format_line!(
            "the fill after INVALIDATE missed the new page"
        ));
    }
    if !filled_with(dst_page(1), 0x1111_1111_1111_1111) {
        return Err(format_line!(
            "the fill after INVALIDATE reached the old page"
        ));
    }

    // A context descriptor, by PASID: PASID 2 now walks PASID 1's tables, as ASID 3.
    dst_page(2).0.fill(0);
    n.run_ok("PASID 2 fill", fill(2, IOVA_DST, 0x3333_3333_3333_3333))?;
    set_cd(2, cd(table_page(1, 1).address(), 3));
    let cd2 = Invalidate {
        scope: SCOPE_PASID,
        caches: CACHE_CD,
        flags: FLAG_PASID,
        domain,
        pasid: 2,
        ..Invalidate::default()
    };
    n.expect("INVALIDATE CD", &cd2.bytes(), S_OK)?;
    n.run_ok(
        "PASID 2 fill after the CD change",
        fill(2, IOVA_DST, 0x4444_4444_4444_4444),
    )?;
    if !filled_with(moved, 0x4444_4444_4444_4444)
        || !filled_with(dst_page(2), 0x3333_3333_3333_3333)
    {
        return Err(format_line!("PASID 2 kept its old context descriptor"));
    }

    // Everything in the domain.
    set_entry(
        table_page(1, 3),
        index(IOVA_DST, 3),
        page(dst_page(1).address(), false),
    );
    let all = Invalidate {
        scope: SCOPE_DOMAIN,
        caches: CACHE_TLB,
        domain,
        ..Invalidate::default()
    };
    n.expect("INVALIDATE domain", &all.bytes(), S_OK)?;
    n.run_ok(
        "fill after the domain invalidation",
        fill(1, IOVA_DST, 0x5555_5555_5555_5555),
    )?;
    if !filled_with(dst_page(1), 0x5555_5555_5555_5555)
        || !filled_with(moved, 0x4444_4444_4444_4444)
    {
        return Err(format_line!("the domain invalidation left a stale entry"));
    }
    n.close()
}
