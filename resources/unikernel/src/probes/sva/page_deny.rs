//! `sva-page-deny`: the guest refuses a page request, and the job writes nothing. Needs
//! nestor started with `--dma-engine iommu=nested`.
//!
//! A fill at PASID 2 over three pages: its mapped destination page, then two unmapped
//! ones. The engine asks for the two (one group, writes); the guest answers FAILURE. The
//! job ends with PAGE_REQUEST_FAILED at the first refused page, 0 bytes done, and the
//! mapped page keeps its contents.

use super::{expect_completion, mapped_at, Answer, Sva};
use crate::probes::dma_engine::{FAULT_WRITE, ST_PAGE_REQUEST_FAILED};
use crate::probes::nested::{dst_page, fill, IOVA_DST};
use crate::probes::{Context, Outcome, Probe};
use unikernel::format_line;

pub const PROBE: Probe = Probe {
    name: "sva-page-deny",
    run,
};

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut sva = Sva::open(ctx)?;
    dst_page(2).0.fill(0xa5);
    let job = sva
        .n
        .post_len(fill(2, IOVA_DST, 0x7777_7777_7777_7777), 0x3000);
    sva.n.ring();
    let served = sva.serve_until(job, 10_000, |_, _| Ok(Answer::Refuse))?;
    let refused_at = IOVA_DST + 0x1000;
    expect_completion(
        "fill",
        job,
        (ST_PAGE_REQUEST_FAILED, FAULT_WRITE, 0, refused_at),
    )?;
    if (served.requests, served.writes, served.groups) != (2, 2, 1) {
        return Err(format_line!(
            "page requests ",
            served.requests,
            " (writes ",
            served.writes,
            ") in ",
            served.groups,
            " groups; want 2 (2) in 1"
        ));
    }
    if dst_page(2).0.iter().any(|&b| b != 0xa5) {
        return Err(format_line!("the refused job wrote its mapped page"));
    }
    if mapped_at(2, refused_at).is_some() || mapped_at(2, refused_at + 0x1000).is_some() {
        return Err(format_line!("a refused page is mapped"));
    }
    sva.n.close()
}
