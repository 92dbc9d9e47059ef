//! `sva-page-request`: a copy at PASID 1 from two pages to two others, none of them mapped
//! yet. Needs nestor started with `--dma-engine iommu=nested`.
//!
//! The engine asks for the four pages in one group (two reads, two writes, the last page
//! flagged); the guest maps the sources onto pages holding a pattern and the destinations
//! onto empty ones, invalidates and answers SUCCESS. The job completes and the pattern is
//! in the destinations. A second PAGE_RESP for the group is NOENT.

use super::{expect_completion, mapped_at, pool, word_at, Answer, Sva, IOVA_SVA};
use crate::probes::dma_engine::ST_OK;
use crate::probes::nested::copy;
use crate::probes::{Context, Outcome, Probe};
use crate::virtio_iommu::{page_resp_request, FAULT_F_WRITE, RESP_SUCCESS, S_NOENT};
use unikernel::format_line;

pub const PROBE: Probe = Probe {
    name: "sva-page-request",
    run,
};

const LEN: u64 = 0x2000;
const SRC: u64 = IOVA_SVA;
const DST: u64 = IOVA_SVA + 0x4000;

fn pattern(i: u64) -> u64 {
    0x5eed_0000_0000_0000 | i.wrapping_mul(0x9e37_79b9)
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut sva = Sva::open(ctx)?;
    // The source pages are the pool's first two: fill them now, hand them out in order.
    let sources = [sva.take_page()?, sva.take_page()?];
    for (p, _) in sources.iter().enumerate() {
        for (i, word) in pool(p).0.chunks_mut(8).enumerate() {
            word.copy_from_slice(&pattern((p * 512 + i) as u64).to_le_bytes());
        }
    }
    let job = sva.n.post_len(copy(1, SRC, DST), LEN);
    sva.n.ring();
    let served = sva.serve_until(job, 10_000, |sva, r| {
        if r.flags & FAULT_F_WRITE != 0 {
            return sva.take_page().map(Answer::Map);
        }
        let i = ((r.address - SRC) >> 12) as usize;
        Ok(Answer::Map(sources[i.min(1)]))
    })?;
    expect_completion("copy", job, (ST_OK, 0, LEN, 0))?;
    if (served.requests, served.reads, served.writes, served.groups) != (4, 2, 2, 1) {
        return Err(format_line!(
            "page requests ",
            served.requests,
            " (reads ",
            served.reads,
            ", writes ",
            served.writes,
            ") in ",
            served.groups,
            " groups; want 4 (2, 2) in 1"
        ));
    }
    for page in 0..2u64 {
        let at = mapped_at(1, DST + (page << 12)).ok_or_else(|| format_line!("unmapped"))?;
        for i in [0u64, 1, 255, 511] {
            if word_at(at + i * 8) != pattern(page * 512 + i) {
                return Err(format_line!("the copy missed page ", page, " word ", i));
            }
        }
    }
    let (pasid, group) = served.last_group;
    let again = page_resp_request(sva.n.endpoint, pasid, group, RESP_SUCCESS);
    sva.n.expect("PAGE_RESP again", &again, S_NOENT)?;
    crate::kprintln!(
        "sva-page-request: page_requests=",
        served.requests,
        " groups=",
        served.groups,
        " guest_exits=",
        served.exits
    );
    sva.n.close()
}
