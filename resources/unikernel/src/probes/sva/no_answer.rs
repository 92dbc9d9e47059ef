//! `sva-no-answer`: the guest never answers a page request. Needs nestor started with
//! `--dma-engine iommu=nested`; `sva_timeout_ms=N` if its virtio-iommu was given another
//! `page-response-timeout` than the default 5000.
//!
//! A fill at PASID 1 of one unmapped page: the guest takes the request and stays silent.
//! After the timeout (not before 90% of it nor 3 s past it, by the TSC) nestor answers for
//! the guest and the job ends with PAGE_REQUEST_FAILED; a late PAGE_RESP for the group is
//! NOENT. Then the same fill, answered, completes: nestor is still serving.

use super::{expect_completion, mapped_at, word_at, Answer, Sva, IOVA_SVA};
use crate::clock::{elapsed_ms, rdtsc};
use crate::probes::dma_engine::{FAULT_WRITE, ST_OK, ST_PAGE_REQUEST_FAILED};
use crate::probes::nested::fill;
use crate::probes::{Context, Outcome, Probe};
use crate::virtio_iommu::{page_resp_request, RESP_SUCCESS, S_NOENT};
use unikernel::format_line;

pub const PROBE: Probe = Probe {
    name: "sva-no-answer",
    run,
};

const DEFAULT_TIMEOUT_MS: u64 = 5000;
const PATTERN: u64 = 0x0bad_cafe_0bad_cafe;
/// How late past the timeout the failure may come (the relay wakes within a millisecond;
/// the rest is a busy host).
const SLACK_MS: u64 = 3000;

fn run(ctx: &Context, _arg: Option<&str>) -> Outcome {
    let timeout = ctx
        .cmdline
        .number("sva_timeout_ms")
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let mut sva = Sva::open(ctx)?;
    let job = sva.n.post_len(fill(1, IOVA_SVA, PATTERN), 0x1000);
    let start = rdtsc();
    sva.n.ring();
    let served = sva.serve_until(job, timeout + 5000, |_, _| Ok(Answer::Ignore))?;
    let waited = elapsed_ms(start, rdtsc());
    expect_completion(
        "unanswered fill",
        job,
        (ST_PAGE_REQUEST_FAILED, FAULT_WRITE, 0, IOVA_SVA),
    )?;
    if served.requests != 1 || waited < timeout * 9 / 10 || waited > timeout + SLACK_MS {
        return Err(format_line!(
            "page requests ",
            served.requests,
            ", failed after ",
            waited,
            " ms of a ",
            timeout,
            " ms timeout"
        ));
    }
    let (pasid, group) = served.last_group;
    let late = page_resp_request(sva.n.endpoint, pasid, group, RESP_SUCCESS);
    sva.n.expect("late PAGE_RESP", &late, S_NOENT)?;

    let job = sva.n.post_len(fill(1, IOVA_SVA, PATTERN), 0x1000);
    sva.n.ring();
    let served = sva.serve_until(job, 10_000, |sva, _| sva.take_page().map(Answer::Map))?;
    expect_completion("answered fill", job, (ST_OK, 0, 0x1000, 0))?;
    let at = mapped_at(1, IOVA_SVA).ok_or_else(|| format_line!("the page is not mapped"))?;
    if served.groups != 1 || word_at(at) != PATTERN || word_at(at + 0xff8) != PATTERN {
        return Err(format_line!("the fill after the timeout missed"));
    }
    sva.n.close()
}
