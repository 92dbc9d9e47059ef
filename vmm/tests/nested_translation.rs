//! Nested translation end to end: the bundled unikernel builds ARM SMMUv3 stage-1 tables
//! in its memory, hands them to the virtio-iommu with ATTACH_TABLE, and drives the DMA
//! engine at two PASIDs through them (resources/unikernel/src/probes/nested/), with the
//! seccomp filters on (nestor's default).

mod common;

use common::*;

const NESTED_PROBES: &str = "probe=nested-s1,nested-invalidate,nested-fault,nested-hostile";

#[test]
fn the_nested_probes_pass_with_the_engine_in_nested_mode() {
    if !kvm_available("the_nested_probes_pass_with_the_engine_in_nested_mode") {
        return;
    }
    let output = run(&[
        "--dma-engine",
        "iommu=nested",
        "--seccomp",
        "on",
        "--cmdline",
        NESTED_PROBES,
    ]);
    assert_probes_passed(
        &output,
        &[
            "nested-s1",
            "nested-invalidate",
            "nested-fault",
            "nested-hostile",
        ],
    );
}

#[test]
fn without_nested_mode_the_extension_is_not_offered() {
    if !kvm_available("without_nested_mode_the_extension_is_not_offered") {
        return;
    }
    let output = run(&["--dma-engine", "iommu=on", "--cmdline", "probe=nested-s1"]);
    let lines = probe_lines(&output);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PROBE nested-s1 FAIL virtio-iommu features")),
        "{lines:?}"
    );
    assert_status(&output, 1);
}

#[test]
fn the_config_file_takes_the_nested_engine() {
    if !kvm_available("the_config_file_takes_the_nested_engine") {
        return;
    }
    let dir = TempDir::new("nested-config");
    let text = format!(
        r#"{{"dma-engine": {{"iommu": "nested"}}, "cmdline": "{NESTED_PROBES}", "timeout": 120}}"#
    );
    let config = dir.file("vm.json", text.as_bytes());
    let output = nestor()
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        probe_lines(&output).last().unwrap(),
        "PROBE done passed=4 failed=0"
    );
    assert_status(&output, 0);
}
