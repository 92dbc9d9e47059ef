//! The DMA engine end to end: the bundled unikernel's `dma-engine` probe drives it behind the
//! virtio-iommu (see resources/unikernel/src/probes/dma_engine.rs).

mod common;

use common::*;

#[test]
fn dma_engine_probe_copies_fills_interrupts_and_faults_after_unmap() {
    if !kvm_available("dma_engine_probe_copies_fills_interrupts_and_faults_after_unmap") {
        return;
    }
    let output = run(&["--dma-engine", "iommu=on", "--cmdline", "probe=dma-engine"]);
    let lines = probe_lines(&output);
    assert!(
        lines.contains(&"PROBE dma-engine ok".to_string()),
        "{lines:?}\n{}",
        stderr(&output)
    );
    assert_eq!(lines.last().unwrap(), "PROBE done passed=1 failed=0");
    assert_status(&output, 0);
}

#[test]
fn without_the_iommu_the_probe_finds_no_virtio_iommu() {
    if !kvm_available("without_the_iommu_the_probe_finds_no_virtio_iommu") {
        return;
    }
    let output = run(&["--dma-engine", "--cmdline", "probe=dma-engine"]);
    let lines = probe_lines(&output);
    assert!(
        lines.contains(&"PROBE dma-engine FAIL no virtio-iommu on bus 0".to_string()),
        "{lines:?}"
    );
    assert_status(&output, 1);
}

#[test]
fn the_engine_is_on_bus_zero_as_1b36_00f0() {
    if !kvm_available("the_engine_is_on_bus_zero_as_1b36_00f0") {
        return;
    }
    let output = run(&["--dma-engine"]);
    assert_status(&output, 0);
    assert!(
        stdout(&output).contains("1b36:00f0 class 088000"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bad_dma_engine_options_are_usage_errors() {
    let output = run(&["--dma-engine", "iommu=maybe"]);
    assert_usage_error(&output, "maybe");
    let output = run(&["--dma-engine", "pasid=on"]);
    assert_usage_error(&output, "pasid");
}
