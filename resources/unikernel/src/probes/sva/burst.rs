//! `sva-burst`: hundreds of page requests in flight at once, from three PASIDs, through an
//! event queue of eight buffers. Needs nestor started with `--dma-engine iommu=nested`.
//!
//! Three fills, one per PASID, each over 64 unmapped pages, are rung together: the engine
//! asks for all 192 pages before any job runs (its PRI allocation is 256), one group per
//! job. The guest maps each page as its request arrives and answers each group once. Every
//! page is asked for exactly once (a second request for a mapped page fails the probe), no
//! record is lost (none but page requests arrive), all three jobs complete and every page
//! holds its PASID's pattern. A second answer to a group is NOENT.

use super::{expect_completion, mapped_at, word_at, Answer, Sva, IOVA_SVA};
use crate::probes::dma_engine::ST_OK;
use crate::probes::nested::fill;
use crate::probes::{Context, Outcome, Probe};
use crate::virtio_iommu::{page_resp_request, RESP_SUCCESS, S_NOENT};
use unikernel::format_line;
use unikernel::text::hex;

pub const PROBE: Probe = Probe {
    name: "sva-burst",
    run,
};

const PASIDS: [u32; 3] = [1, 2, 3];
const PAGES: u64 = 64;

fn pattern(pasid: u32) -> u64 {
    (0x0101_0101_0101_0101 * u64::from(pasid)) ^ 0x8000_0000_0000_0000
}

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let mut sva = Sva::open(ctx)?;
    let jobs = PASIDS.map(|pasid| {
        sva.n
            .post_len(fill(pasid, IOVA_SVA, pattern(pasid)), PAGES << 12)
    });
    sva.n.ring();
    let served = sva.serve_until(jobs[2], 30_000, |sva, _| sva.take_page().map(Answer::Map))?;
    let total = PAGES as u32 * PASIDS.len() as u32;
    if served.requests != total || served.writes != total || served.groups != 3 {
        return Err(format_line!(
            "page requests ",
            served.requests,
            " (writes ",
            served.writes,
            ") in ",
            served.groups,
            " groups; want ",
            total,
            " in 3"
        ));
    }
    if served.other_records != 0 {
        return Err(format_line!(
            served.other_records,
            " other records (lost ones?)"
        ));
    }
    for (pasid, job) in PASIDS.into_iter().zip(jobs) {
        expect_completion("fill", job, (ST_OK, 0, PAGES << 12, 0))?;
        for page in 0..PAGES {
            let iova = IOVA_SVA + (page << 12);
            let at = mapped_at(pasid, iova).ok_or_else(|| {
                format_line!("PASID ", pasid, " page ", hex(iova, 16), " unmapped")
            })?;
            if word_at(at) != pattern(pasid) || word_at(at + 0xff8) != pattern(pasid) {
                return Err(format_line!(
                    "PASID ",
                    pasid,
                    " page ",
                    hex(iova, 16),
                    " not filled"
                ));
            }
        }
    }
    let (pasid, group) = served.last_group;
    let again = page_resp_request(sva.n.endpoint, pasid, group, RESP_SUCCESS);
    sva.n.expect("PAGE_RESP again", &again, S_NOENT)?;
    crate::kprintln!(
        "sva-burst: page_requests=",
        served.requests,
        " groups=",
        served.groups,
        " guest_exits=",
        served.exits
    );
    sva.n.close()
}
