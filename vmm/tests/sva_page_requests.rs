//! Page requests end to end on this machine's KVM: the DMA engine, with PRI enabled by the
//! bundled unikernel, misses pages of its guest-built stage-1 tables; its page requests go
//! into the software SMMUv3's PRI queue, the fault relay thread puts them on the
//! virtio-iommu's eventq, the guest maps the pages and answers with PAGE_RESP (or refuses,
//! or stays silent), and the engine resumes or fails its job
//! (resources/unikernel/src/probes/sva/). Seccomp filters on, nestor's default.

mod common;

use common::*;

const SVA_PROBES: &str = "probe=sva-page-request,sva-page-deny,sva-burst,sva-no-answer";

#[test]
fn the_page_request_probes_pass_with_the_engine_in_nested_mode() {
    if !kvm_available("the_page_request_probes_pass_with_the_engine_in_nested_mode") {
        return;
    }
    let output = run(&["--dma-engine", "iommu=nested", "--cmdline", SVA_PROBES]);
    assert_probes_passed(
        &output,
        &[
            "sva-page-request",
            "sva-page-deny",
            "sva-burst",
            "sva-no-answer",
        ],
    );
    // The unanswered group was failed by the relay, and said so once.
    let timeouts = stderr(&output)
        .lines()
        .filter(|l| l.contains("unanswered past the deadline"))
        .count();
    assert_eq!(timeouts, 1, "{}", stderr(&output));
}

/// The guest sees its request failed after 300 ms, not the default 5 s (the probe checks
/// the wait by the TSC: at least 90% of the timeout, at most 3 s past it).
#[test]
fn the_page_response_timeout_is_the_viommu_s() {
    if !kvm_available("the_page_response_timeout_is_the_viommu_s") {
        return;
    }
    let output = run(&[
        "--dma-engine",
        "iommu=nested",
        "--viommu",
        "page-response-timeout=300",
        "--cmdline",
        "probe=sva-no-answer sva_timeout_ms=300",
    ]);
    let lines = probe_lines(&output);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("PROBE done passed=1 failed=0"),
        "{lines:?}\n{}",
        stderr(&output)
    );
}
