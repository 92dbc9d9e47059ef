//! `run --config FILE` and `nestor config`: one VM, spelled as flags or as a file.

mod common;

use common::*;

/// The flags of a VM with a disk, an rng and two vCPUs running probes.
fn vm_flags(disk: &str) -> Vec<String> {
    [
        "--cmdline",
        "probe=boot,virtio-blk,virtio-rng",
        "--cpus",
        "2",
        "--memory",
        "128M",
        "--rng",
        "--timeout",
        "120",
        "--disk",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("path={disk}")])
    .collect()
}

#[test]
fn the_same_vm_from_flags_and_from_a_file_behaves_the_same() {
    if !kvm_available("the_same_vm_from_flags_and_from_a_file_behaves_the_same") {
        return;
    }
    let dir = TempDir::new("config-file");
    let disk = dir.file("disk.img", &vec![0u8; 1 << 20]);
    let flags = vm_flags(disk.to_str().unwrap());

    let from_flags = nestor().arg("run").args(&flags).output().unwrap();
    assert_status(&from_flags, 0);

    let printed = nestor().arg("config").args(&flags).output().unwrap();
    assert_status(&printed, 0);
    let file = dir.file("vm.json", &printed.stdout);
    let from_file = nestor()
        .args(["run", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_status(&from_file, 0);

    let probes = probe_lines(&from_flags);
    assert_eq!(
        probes.last().map(String::as_str),
        Some("PROBE done passed=3 failed=0"),
        "{probes:?}"
    );
    assert_eq!(probe_lines(&from_file), probes);
    // Printing the file's VM gives the file back.
    let reprinted = nestor()
        .args(["config", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(stdout(&reprinted), stdout(&printed));
}

#[test]
fn a_bad_file_is_one_line_naming_the_field() {
    let dir = TempDir::new("config-file-errors");
    let cases: [(&str, &str); 5] = [
        (r#"{"memroy": "1G"}"#, "memroy"),
        (r#"{"memory": true}"#, "memory"),
        (
            r#"{"disk": [{"path": "x", "readonly": "yes"}]}"#,
            "disk[0].readonly",
        ),
        (
            r#"{"vfio": [{"path": "x", "backend": "type1"}]}"#,
            "vfio[0].backend",
        ),
        (r#"{"seccomp": "maybe"}"#, "seccomp"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let file = dir.file(&format!("bad{i}.json"), text.as_bytes());
        let output = nestor()
            .args(["run", "--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert_usage_error(&output, field);
    }
    // A value the file spells right but the VM refuses is refused as the flag would be.
    let file = dir.file("odd.json", br#"{"memory": "1001K"}"#);
    let output = nestor()
        .args(["run", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_usage_error(&output, "4 KiB");
    let file = dir.file(
        "timeout.json",
        br#"{"viommu": {"page-response-timeout": 0}}"#,
    );
    let output = nestor()
        .args(["run", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_usage_error(&output, "page-response-timeout");
    let missing = dir.path().join("missing.json");
    let output = nestor()
        .args(["run", "--config", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_usage_error(&output, "missing.json");
}

#[test]
fn a_file_is_the_whole_vm() {
    let dir = TempDir::new("config-file-alone");
    let file = dir.file("vm.json", b"{}");
    let output = nestor()
        .args(["run", "--config", file.to_str().unwrap(), "--cpus", "2"])
        .output()
        .unwrap();
    assert_usage_error(&output, "--config");
}
