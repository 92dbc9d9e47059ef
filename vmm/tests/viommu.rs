//! The virtio-iommu end to end: the bundled unikernel's `viommu` probe drives it in front of
//! a virtio-blk disk (see resources/unikernel/src/probes/viommu.rs).

mod common;

use common::*;

/// A small disk image: 64 sectors of a recognisable pattern.
fn disk_image(dir: &TempDir) -> std::path::PathBuf {
    let bytes: Vec<u8> = (0..64 * 512).map(|i| (i % 251) as u8).collect();
    dir.file("disk.img", &bytes)
}

#[test]
fn viommu_probe_maps_reads_writes_faults_and_bypasses() {
    if !kvm_available("viommu_probe_maps_reads_writes_faults_and_bypasses") {
        return;
    }
    let dir = TempDir::new("viommu");
    let disk = disk_image(&dir);
    let output = run(&[
        "--disk",
        &format!("path={},iommu=on", disk.display()),
        "--cmdline",
        "probe=viommu blk_sector=3",
    ]);
    let lines = probe_lines(&output);
    assert!(
        lines.contains(&"PROBE viommu ok".to_string()),
        "{lines:?}\n{}",
        stderr(&output)
    );
    assert_eq!(lines.last().unwrap(), "PROBE done passed=1 failed=0");
    assert_status(&output, 0);
    // The probe wrote its pattern to sector 3 of the image.
    let image = std::fs::read(&disk).unwrap();
    let sector: Vec<u8> = (0..512).map(|i| (i as u8).wrapping_mul(7) ^ 0x5a).collect();
    assert_eq!(&image[3 * 512..4 * 512], &sector[..]);
}

#[test]
fn viommu_option_alone_creates_the_device() {
    if !kvm_available("viommu_option_alone_creates_the_device") {
        return;
    }
    let output = run(&["--viommu", "bypass=on"]);
    assert_status(&output, 0);
    // The unikernel's tour lists PCI bus 0: the virtio-iommu is 1af4:1057.
    assert!(stdout(&output).contains("1057"), "{}", stdout(&output));
}

#[test]
fn bad_viommu_options_are_usage_errors() {
    let output = run(&["--viommu", "bypass=maybe"]);
    assert_usage_error(&output, "bypass");
}
