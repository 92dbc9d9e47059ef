//! `nested-s1`: the guest's own stage-1 tables translate the DMA engine's jobs at two
//! PASIDs. Needs nestor started with `--dma-engine iommu=nested`.
//!
//! PROBE reports the SMMU behind the endpoint (NESTOR_SMMUV3: SSIDSIZE wide enough for the
//! CD table, the 4 KiB granule); after ATTACH_TABLE, a copy at each PASID between the same
//! two IOVAs moves that PASID's source page into its destination page and touches the
//! other PASID's pages not at all, and a fill lands where its PASID's tables say.

use super::{
    copy, dst_page, fill, filled_with, src_page, Nested, CD_MAX_BITS, IOVA_DST, IOVA_SRC, LEN,
    PASIDS,
};
use crate::probes::{Context, Outcome, Probe};
use unikernel::format_line;
use unikernel::text::hex;

pub const PROBE: Probe = Probe {
    name: "nested-s1",
    run,
};

/// SMMU_IDR1.SSIDSIZE, bits 10:6.
fn ssid_bits(idr1: u64) -> u64 {
    idr1 >> 6 & 0x1f
}

/// SMMU_IDR5.GRAN4K, bit 4.
fn has_4k_granule(idr5: u64) -> bool {
    idr5 & 1 << 4 != 0
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut n = Nested::open(ctx)?;
    let [_, idr1, _, idr5] = n.iommu.smmu_id_registers(n.endpoint)?;
    if ssid_bits(idr1) < CD_MAX_BITS || !has_4k_granule(idr5) {
        return Err(format_line!(
            "SMMU IDR1 ",
            hex(idr1, 8),
            " IDR5 ",
            hex(idr5, 8)
        ));
    }
    for pasid in PASIDS {
        for (i, b) in src_page(pasid).0[..LEN].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7) ^ (pasid as u8 * 0x55);
        }
        dst_page(pasid).0.fill(0);
    }
    for pasid in PASIDS {
        n.run_ok("copy", copy(pasid, IOVA_SRC, IOVA_DST))?;
        if dst_page(pasid).0[..LEN] != src_page(pasid).0[..LEN] {
            return Err(format_line!("PASID ", pasid, ": the copy landed elsewhere"));
        }
    }
    // The other PASID's destination is its own: the first copy did not overwrite it.
    if dst_page(1).0[..LEN] == dst_page(2).0[..LEN] {
        return Err(format_line!("both PASIDs reached the same page"));
    }
    let pattern = 0x0f1e_2d3c_4b5a_6978;
    n.run_ok("fill", fill(2, IOVA_DST, pattern))?;
    if !filled_with(dst_page(2), pattern) || filled_with(dst_page(1), pattern) {
        return Err(format_line!("the fill at PASID 2 landed elsewhere"));
    }
    n.close()
}
